//! Packaging, systemd units, IAM policies, CloudFormation, packer and user data, checked
//! with the real tools (systemd-analyze, cargo-deb, cargo-generate-rpm, rpm, dpkg, cfn-lint,
//! packer, shellcheck, cloud-init) and the user-data scripts run end to end against moto.
//! A missing tool is a failure, never a skip: `bash scripts/test.sh` installs them all.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use shipshape_tests::bin::{run, shipshape_path, Output};
use shipshape_tests::moto::Moto;
use shipshape_tests::{target_dir, workspace_root};

/// The committed bound on `systemd-analyze security` exposure of shipshape.service.
const EXPOSURE_BOUND: f64 = 2.0;

const UNITS: [&str; 4] = [
    "shipshape.service",
    "shipshape-bootstrap.service",
    "shipshape-gc.service",
    "shipshape-gc.timer",
];

fn repo(rel: &str) -> PathBuf {
    workspace_root().join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("shipshape-packaging-")
        .tempdir()
        .unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"))
}

/// Path of a required tool; panics (never skips) with the install hint when absent.
fn tool(name: &str) -> PathBuf {
    let venv = target_dir().join("venv/bin").join(name);
    if venv.exists() {
        return venv;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return candidate;
        }
    }
    let cargo_bin = std::env::var_os("HOME")
        .map(|h| PathBuf::from(h).join(".cargo/bin").join(name))
        .filter(|p| p.exists());
    cargo_bin.unwrap_or_else(|| {
        panic!("{name} not found — run `bash scripts/test.sh`, which installs the packaging tools")
    })
}

fn cmd(name: &str) -> Command {
    Command::new(tool(name))
}

fn ok(out: &Output, what: &str) {
    assert_eq!(
        out.code, 0,
        "{what} failed (exit {}):\nstdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
}

// ---------------------------------------------------------------- systemd units

/// A throwaway root in which `systemd-analyze --root` resolves the units: the host's
/// system units (sysinit.target…), the built binary as /usr/bin/shipshape, /bin/kill,
/// and stubs for docker.service / ecs.service, which live on the real hosts.
fn unit_root(units_dir: &Path) -> tempfile::TempDir {
    let root = tempdir();
    let r = root.path();
    let mut cp = Command::new("cp");
    cp.arg("-a")
        .arg("/usr/lib/systemd/system")
        .arg(r.join("usr/lib/systemd/"));
    std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir usr/lib/systemd");
    ok(&run(&mut cp), "copying the host's system units");
    for (src, dst) in [
        (shipshape_path(), r.join("usr/bin/shipshape")),
        (tool("kill"), r.join("bin/kill")),
    ] {
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::copy(&src, &dst).unwrap_or_else(|e| panic!("cannot copy {}: {e}", src.display()));
    }
    let etc = r.join("etc/systemd/system");
    for stub in ["docker.service", "ecs.service"] {
        write(
            &etc.join(stub),
            "[Unit]\nDescription=stub\n[Service]\nExecStart=/usr/bin/shipshape --version\n",
        );
    }
    for unit in UNITS {
        std::fs::copy(units_dir.join(unit), etc.join(unit))
            .unwrap_or_else(|e| panic!("cannot copy {unit}: {e}"));
    }
    root
}

/// `systemd-analyze verify` of the units as installed in `root`; every warning counts.
fn verify(root: &Path, units: &[&str]) -> Output {
    let mut c = cmd("systemd-analyze");
    c.arg("verify").arg(format!("--root={}", root.display()));
    for unit in units {
        c.arg(root.join("etc/systemd/system").join(unit));
    }
    run(&mut c)
}

#[test]
fn every_unit_passes_systemd_analyze_verify_without_warnings() {
    let root = unit_root(&repo("systemd"));
    let out = verify(root.path(), &UNITS);
    ok(&out, "systemd-analyze verify");
    assert!(
        out.stderr.trim().is_empty() && out.stdout.trim().is_empty(),
        "systemd-analyze verify printed warnings:\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn verify_catches_a_misspelled_directive() {
    // Proof that the check above can fail: systemd only warns about unknown keys.
    let root = unit_root(&repo("systemd"));
    let unit = root.path().join("etc/systemd/system/shipshape.service");
    let text = read(&unit).replace("NoNewPrivileges=yes", "NoNewPrivilegez=yes");
    write(&unit, &text);
    let out = verify(root.path(), &["shipshape.service"]);
    assert!(
        out.stderr.contains("NoNewPrivilegez"),
        "verify did not report the typo: {}",
        out.stderr
    );
}

fn exposure(root: &Path, unit: &str) -> f64 {
    let out = run(cmd("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(unit));
    ok(&out, "systemd-analyze security");
    let needle = format!("Overall exposure level for {unit}: ");
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.split_once(&needle).map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("no exposure line in:\n{}", out.stdout));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure in {line:?}"))
}

#[test]
fn daemon_exposure_is_within_the_committed_bound_and_matches_the_readme() {
    let root = unit_root(&repo("systemd"));
    let score = exposure(root.path(), "shipshape.service");
    assert!(
        score <= EXPOSURE_BOUND,
        "shipshape.service exposure {score} exceeds the committed bound {EXPOSURE_BOUND}"
    );
    let readme = read(&repo("README.md"));
    let stated = format!("exposure level for shipshape.service: {score:.1}");
    assert!(
        readme.contains(&stated),
        "README must report the current score; expected the text `{stated}`"
    );
}

fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn assert_has(unit: &str, want: &[(&str, &str)]) {
    let have = directives(&read(&repo("systemd").join(unit)));
    for (k, v) in want {
        assert!(
            have.iter().any(|(hk, hv)| hk == k && hv.contains(v)),
            "{unit}: expected {k}= containing {v:?}"
        );
    }
}

#[test]
fn units_carry_the_spec_directives() {
    assert_has(
        "shipshape.service",
        &[
            ("Type", "notify"),
            ("WatchdogSec", "s"),
            ("Restart", "on-failure"),
            ("After", "docker.service"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("StateDirectory", "shipshape"),
            ("ConfigurationDirectory", "ecs"),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("SystemCallFilter", "@system-service"),
            ("CapabilityBoundingSet", ""),
            ("ExecStart", "/usr/bin/shipshape daemon"),
        ],
    );
    assert_has(
        "shipshape-bootstrap.service",
        &[
            ("Type", "oneshot"),
            ("RemainAfterExit", "yes"),
            ("Before", "ecs.service"),
            ("After", "network-online.target"),
            ("ExecStart", "/usr/bin/shipshape bootstrap"),
        ],
    );
    assert_has(
        "shipshape-gc.service",
        &[("Type", "oneshot"), ("ExecStart", "/usr/bin/shipshape gc")],
    );
    assert_has(
        "shipshape-gc.timer",
        &[("RandomizedDelaySec", "min"), ("WantedBy", "timers.target")],
    );
}

// ---------------------------------------------------------------- packages

struct Packages {
    _dir: tempfile::TempDir,
    deb: PathBuf,
    rpm: PathBuf,
}

/// Builds both packages once per test binary with packaging/build.sh, from the debug
/// binary the test run already has (dev profile, --no-build: no release compile).
fn packages() -> &'static Packages {
    static PACKAGES: OnceLock<Packages> = OnceLock::new();
    PACKAGES.get_or_init(|| {
        let dir = tempdir();
        let mut c = Command::new("bash");
        c.arg(repo("packaging/build.sh"))
            .args(["--profile", "dev", "--no-build", "--out"])
            .arg(dir.path());
        let cargo_bin = std::env::var("HOME")
            .map(|h| format!("{h}/.cargo/bin"))
            .unwrap_or_default();
        let path = std::env::var("PATH").unwrap_or_default();
        c.env("PATH", format!("{path}:{cargo_bin}"));
        ok(&run(&mut c), "packaging/build.sh");
        let find = |ext: &str| {
            std::fs::read_dir(dir.path())
                .expect("read package dir")
                .filter_map(Result::ok)
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == ext))
                .unwrap_or_else(|| panic!("build.sh made no .{ext}"))
        };
        let (deb, rpm) = (find("deb"), find("rpm"));
        Packages {
            _dir: dir,
            deb,
            rpm,
        }
    })
}

const PAYLOAD: [&str; 6] = [
    "/usr/bin/shipshape",
    "/etc/shipshape/shipshape.toml",
    "/usr/lib/systemd/system/shipshape.service",
    "/usr/lib/systemd/system/shipshape-bootstrap.service",
    "/usr/lib/systemd/system/shipshape-gc.service",
    "/usr/lib/systemd/system/shipshape-gc.timer",
];

fn rpm_install(root: &Path, rpm: &Path, extra: &[&str]) -> Output {
    std::fs::create_dir_all(root.join("var/lib/rpm")).expect("mkdir rpmdb");
    // --noscripts: scriptlets would run chrooted into a root without /bin/sh.
    run(cmd("rpm")
        .arg(format!("--root={}", root.display()))
        .args(["--dbpath=/var/lib/rpm", "--nodeps", "--noscripts", "-i"])
        .args(extra)
        .arg(rpm))
}

#[test]
fn rpm_installs_binary_units_noreplace_config_and_state_dir() {
    let p = packages();
    let list = run(cmd("rpm").arg("-qpl").arg(&p.rpm));
    ok(&list, "rpm -qpl");
    let files: BTreeSet<&str> = list.stdout.lines().collect();
    for want in PAYLOAD {
        assert!(files.contains(want), "RPM lacks {want}:\n{}", list.stdout);
    }
    // %config(noreplace): flags c (config) and n (noreplace).
    let q = run(cmd("rpm")
        .args([
            "-qp",
            "--qf",
            "[%{FILENAMES} %{FILEFLAGS:fflags} %{FILEMODES:perms}\\n]",
        ])
        .arg(&p.rpm));
    ok(&q, "rpm -qp --qf");
    let line = |path: &str| {
        q.stdout
            .lines()
            .find(|l| l.starts_with(&format!("{path} ")))
            .unwrap_or_else(|| panic!("{path} not in:\n{}", q.stdout))
            .to_owned()
    };
    let conf = line("/etc/shipshape/shipshape.toml");
    assert!(
        conf.contains(" cn "),
        "config not %config(noreplace): {conf}"
    );
    assert!(line("/usr/bin/shipshape").ends_with("-rwxr-xr-x"));
    // The state directory comes from %post (cargo-generate-rpm cannot package a dir).
    let scripts = run(cmd("rpm").args(["-qp", "--scripts"]).arg(&p.rpm));
    ok(&scripts, "rpm -qp --scripts");
    assert!(
        scripts
            .stdout
            .contains("install -d -m 0700 /var/lib/shipshape"),
        "{}",
        scripts.stdout
    );
    assert!(
        scripts.stdout.contains("daemon-reload"),
        "{}",
        scripts.stdout
    );

    // Unpacks and runs; a reinstall keeps the operator's edit of the config.
    let root = tempdir();
    let r = root.path();
    ok(&rpm_install(r, &p.rpm, &[]), "rpm -i into a throwaway root");
    let version = run(Command::new(r.join("usr/bin/shipshape")).arg("--version"));
    ok(&version, "shipshape --version from the RPM");
    let conf = r.join("etc/shipshape/shipshape.toml");
    let edited = format!("{}\n# local edit\n", read(&conf));
    write(&conf, &edited);
    ok(
        &rpm_install(r, &p.rpm, &["--replacepkgs"]),
        "rpm -i --replacepkgs",
    );
    assert_eq!(read(&conf), edited, "reinstall overwrote the local config");
}

#[test]
fn deb_installs_binary_units_and_conffile() {
    let p = packages();
    let list = run(cmd("dpkg-deb").arg("-c").arg(&p.deb));
    ok(&list, "dpkg-deb -c");
    for want in PAYLOAD {
        assert!(
            list.stdout.contains(&format!(".{want}\n")),
            "DEB lacks {want}:\n{}",
            list.stdout
        );
    }
    let conffiles = run(cmd("dpkg-deb").args(["-I"]).arg(&p.deb).arg("conffiles"));
    ok(&conffiles, "dpkg-deb -I conffiles");
    assert_eq!(conffiles.stdout.trim(), "/etc/shipshape/shipshape.toml");
}

/// An empty dpkg database in a throwaway root; scripts run unchrooted with DPKG_ROOT.
fn dpkg_install(root: &Path, deb: &Path) -> Output {
    for d in [
        "var/lib/dpkg/info",
        "var/lib/dpkg/updates",
        "var/lib/dpkg/triggers",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir dpkg db");
    }
    let status = root.join("var/lib/dpkg/status");
    if !status.exists() {
        write(&status, "");
    }
    run(cmd("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-script-chrootless", "--force-depends", "-i"])
        .arg(deb))
}

#[test]
fn deb_installed_into_a_throwaway_root_runs_and_keeps_local_config_on_upgrade() {
    let p = packages();
    let root = tempdir();
    let r = root.path();
    ok(&dpkg_install(r, &p.deb), "dpkg -i into a throwaway root");

    let bin = r.join("usr/bin/shipshape");
    let version = run(Command::new(&bin).arg("--version"));
    ok(&version, "installed shipshape --version");
    assert!(
        version
            .stdout
            .starts_with(&format!("shipshape {}", env!("CARGO_PKG_VERSION"))),
        "{}",
        version.stdout
    );
    let conf = r.join("etc/shipshape/shipshape.toml");
    let check = run(Command::new(&bin).arg("--config").arg(&conf).arg("check"));
    ok(&check, "installed shipshape check");
    assert!(check.stdout.starts_with("config OK"), "{}", check.stdout);

    let state = r.join("var/lib/shipshape");
    let mode = std::fs::metadata(&state)
        .unwrap_or_else(|e| panic!("postinst did not create {}: {e}", state.display()))
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "state dir mode {mode:o}");
    for unit in UNITS {
        assert!(
            r.join("usr/lib/systemd/system").join(unit).exists(),
            "{unit} missing"
        );
    }

    // Upgrade (reinstall): the operator's edit of the conffile survives.
    let edited = format!("{}\n# local edit\n", read(&conf));
    write(&conf, &edited);
    ok(&dpkg_install(r, &p.deb), "dpkg -i again (upgrade)");
    assert_eq!(read(&conf), edited, "upgrade overwrote the local config");
}

#[test]
fn default_config_passes_check() {
    let out = run(shipshape_tests::bin::shipshape()
        .arg("--config")
        .arg(repo("packaging/shipshape.toml"))
        .arg("check"));
    ok(&out, "shipshape check packaging/shipshape.toml");
}

// ---------------------------------------------------------------- IAM policies

/// IAM action of an SDK operation, where it is not `prefix:PascalCase(op)`.
const ACTION_EXCEPTIONS: [(&str, &str, &str); 4] = [
    ("s3", "head_object", "s3:GetObject"),
    ("s3", "list_objects_v2", "s3:ListBucket"),
    ("s3", "list_objects", "s3:ListBucket"),
    ("s3", "head_bucket", "s3:ListBucket"),
];

/// Actions AWS evaluates on our behalf, allowed only because a called action needs them.
const IMPLIED: [(&str, &str); 1] = [
    // GetSecretValue of a secret encrypted with a customer-managed key.
    ("secretsmanager:GetSecretValue", "kms:Decrypt"),
];

/// Which policy file grants which service's actions.
const POLICY_OF_SERVICE: [(&str, &str); 6] = [
    ("secretsmanager", "packaging/iam/instance-role-policy.json"),
    ("s3", "packaging/iam/instance-role-policy.json"),
    ("kms", "packaging/iam/instance-role-policy.json"),
    ("ecr", "packaging/iam/ecr-prune-task-policy.json"),
    ("ecs", "packaging/iam/ecr-prune-task-policy.json"),
    ("servicequotas", "packaging/iam/ecr-prune-task-policy.json"),
];

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The host's target triple (`host:` in `rustc -vV`), for `cargo metadata --filter-platform`.
fn host_triple() -> String {
    let out =
        run(Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())).arg("-vV"));
    ok(&out, "rustc -vV");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no host line in rustc -vV:\n{}", out.stdout))
}

/// SDK crate name (`aws_sdk_ecr`) → its operations (`describe_images`…), read from the
/// crates' own `src/operation/` directories as resolved by `cargo metadata`.
///
/// `--filter-platform <host>` makes cargo resolve (and need on disk) only the packages a
/// build for this machine uses — the ones the build of this test already fetched — so
/// `--offline` holds on a machine whose cargo cache never saw the other targets' crates
/// (without it, cargo wants every package of the lock file, windows and android ones
/// included). `--offline` stays: the test must not depend on the network.
fn sdk_operations() -> BTreeMap<String, BTreeSet<String>> {
    let out = run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args(["metadata", "--format-version", "1", "--offline", "--locked"])
            .arg("--filter-platform")
            .arg(host_triple()),
    );
    ok(&out, "cargo metadata");
    let meta: serde_json::Value = serde_json::from_str(&out.stdout).expect("cargo metadata JSON");
    let mut ops = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().unwrap_or_default();
        if !name.starts_with("aws-sdk-") {
            continue;
        }
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest.parent().expect("crate dir").join("src/operation");
        let set: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ops.insert(name.replace('-', "_"), set);
    }
    assert!(
        ops.contains_key("aws_sdk_ecr"),
        "aws-sdk-ecr not resolved by cargo metadata"
    );
    ops
}

/// Every `.name(` in `text` (method calls).
fn method_calls(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut calls = BTreeSet::new();
    for (i, _) in text.match_indices('.') {
        let rest = &bytes[i + 1..];
        let len = rest
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
            .count();
        if len > 0 && rest.get(len) == Some(&b'(') {
            calls.insert(text[i + 1..i + 1 + len].to_owned());
        }
    }
    calls
}

/// One SDK call site: the IAM actions it may be (an operation name such as
/// `list_services` exists in several SDKs a file may import) and the file making it.
#[derive(Debug)]
struct Call {
    candidates: Vec<String>,
    file: String,
}

/// The SDK calls in `agent/src/adapters/*.rs`, as IAM actions.
fn adapter_calls() -> Vec<Call> {
    let ops = sdk_operations();
    let exceptions: BTreeMap<(&str, &str), &str> = ACTION_EXCEPTIONS
        .iter()
        .map(|(s, o, a)| ((*s, *o), *a))
        .collect();
    let mut out = Vec::new();
    let dir = repo("agent/src/adapters");
    for entry in std::fs::read_dir(&dir).expect("read adapters dir") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = read(&path);
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut by_op: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let calls = method_calls(&text);
        for (krate, crate_ops) in &ops {
            if !text.contains(krate.as_str()) {
                continue;
            }
            let service = krate.trim_start_matches("aws_sdk_");
            for op in calls.intersection(crate_ops) {
                let action = exceptions
                    .get(&(service, op.as_str()))
                    .map(|a| (*a).to_owned())
                    .unwrap_or_else(|| format!("{service}:{}", pascal(op)));
                by_op.entry(op.clone()).or_default().push(action);
            }
        }
        out.extend(by_op.into_values().map(|candidates| Call {
            candidates,
            file: file.clone(),
        }));
    }
    out
}

fn policy_actions(rel: &str) -> BTreeSet<String> {
    let doc: serde_json::Value = serde_json::from_str(&read(&repo(rel)))
        .unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"));
    let mut actions = BTreeSet::new();
    for st in doc["Statement"].as_array().expect("Statement array") {
        assert_eq!(
            st["Effect"], "Allow",
            "{rel}: only Allow statements expected"
        );
        assert!(
            st.get("NotAction").is_none() && st.get("NotResource").is_none(),
            "{rel}"
        );
        let list = match &st["Action"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().expect("action string").to_owned())
                .collect(),
            other => panic!("{rel}: bad Action {other}"),
        };
        for a in list {
            assert!(
                !a.contains('*'),
                "{rel}: wildcard action {a} is not least privilege"
            );
            actions.insert(a);
        }
    }
    actions
}

#[test]
fn method_call_scanner_finds_sdk_calls() {
    let calls = method_calls("self.ecr.describe_images().repository_name(r).into_paginator()");
    assert!(calls.contains("describe_images") && calls.contains("repository_name"));
    assert_eq!(pascal("batch_get_image"), "BatchGetImage");
}

#[test]
fn only_adapters_import_the_aws_sdk() {
    // The IAM check below scans the adapters; SDK calls elsewhere would escape it.
    let mut offenders = Vec::new();
    let mut stack = vec![repo("agent/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if !path.ends_with("adapters") && !path.ends_with("testing") {
                    stack.push(path);
                }
            } else if path.extension().is_some_and(|e| e == "rs")
                && read(&path).contains("aws_sdk_")
            {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "aws_sdk_* used outside adapters: {offenders:?}"
    );
}

#[test]
fn iam_policies_allow_exactly_the_calls_the_adapters_make() {
    let calls = adapter_calls();
    let policy_of: BTreeMap<&str, &str> = POLICY_OF_SERVICE.iter().copied().collect();
    let service_of = |action: &str| action.split(':').next().unwrap_or_default().to_owned();
    let mut granted: BTreeMap<String, String> = BTreeMap::new();
    for rel in BTreeSet::from_iter(policy_of.values().copied()) {
        for action in policy_actions(rel) {
            granted.insert(action, rel.to_owned());
        }
    }
    let mut problems = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for call in &calls {
        // A call is covered when one of its candidate actions is granted by the policy
        // meant for that service.
        let covering: Vec<&String> = call
            .candidates
            .iter()
            .filter(|a| {
                granted.get(*a).map(String::as_str)
                    == policy_of.get(service_of(a).as_str()).copied()
                    && granted.contains_key(*a)
            })
            .collect();
        if covering.is_empty() {
            problems.push(format!(
                "adapters/{} calls {}: not allowed by {}",
                call.file,
                call.candidates.join(" or "),
                call.candidates
                    .iter()
                    .map(|a| policy_of
                        .get(service_of(a).as_str())
                        .copied()
                        .unwrap_or("any policy"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
        used.extend(covering.into_iter().cloned());
    }
    let implied: Vec<&str> = IMPLIED
        .iter()
        .filter(|(by, _)| used.contains(*by))
        .map(|(_, implied)| *implied)
        .collect();
    for (action, rel) in &granted {
        if !used.contains(action) && !implied.contains(&action.as_str()) {
            problems.push(format!("{rel} allows {action}, which no adapter calls"));
        }
        if policy_of.get(service_of(action).as_str()) != Some(&rel.as_str()) {
            problems.push(format!(
                "{rel} grants {action}, which belongs in another policy"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "IAM policies drifted from the code (calls found: {calls:?}):\n{}",
        problems.join("\n")
    );
}

// ---------------------------------------------------------------- CloudFormation

fn yaml_to_json(path: &Path) -> serde_json::Value {
    let py = target_dir().join("venv/bin/python");
    let out = run(Command::new(&py)
        .args([
            "-c",
            "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(path));
    ok(&out, "YAML to JSON with the venv's PyYAML");
    serde_json::from_str(&out.stdout).expect("JSON from python")
}

/// `{"Fn::Sub": "s"}` → `"s"`, recursively.
fn unsub(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
            m["Fn::Sub"].clone()
        }
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), unsub(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(unsub).collect()),
        other => other.clone(),
    }
}

fn cfn_lint(path: &Path) -> Output {
    run(cmd("cfn-lint").arg("--format").arg("parseable").arg(path))
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let out = cfn_lint(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ));
    ok(&out, "cfn-lint");
    assert!(
        out.stdout.trim().is_empty(),
        "cfn-lint findings:\n{}",
        out.stdout
    );
}

#[test]
fn cfn_lint_rejects_an_unknown_iam_action() {
    // Proof that cfn-lint checks action names (rule W3037), which the next test relies on.
    let dir = tempdir();
    let bad = dir.path().join("bad.yaml");
    let text = read(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ))
    .replace("ecr:BatchDeleteImage", "ecr:BatchDeleteImages");
    write(&bad, &text);
    let out = cfn_lint(&bad);
    assert_ne!(out.code, 0, "cfn-lint accepted ecr:BatchDeleteImages");
    assert!(out.stdout.contains("W3037"), "{}", out.stdout);
}

#[test]
fn cloudformation_task_role_uses_the_committed_task_policy() {
    let template = yaml_to_json(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ));
    let doc = &template["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let file: serde_json::Value =
        serde_json::from_str(&read(&repo("packaging/iam/ecr-prune-task-policy.json")))
            .expect("task policy JSON");
    assert_eq!(
        unsub(doc),
        file,
        "TaskRole policy in the template differs from packaging/iam/ecr-prune-task-policy.json"
    );
    // Every shard runs the prune with --apply and its own I/N.
    let input = template["Resources"]["Fn::ForEach::Shard"][2]["Schedule${Index}"]["Properties"]
        ["Target"]["Input"]["Fn::ToJsonString"]["containerOverrides"][0]["command"]
        .clone();
    let args: Vec<serde_json::Value> = input.as_array().expect("command").clone();
    assert_eq!(args[0], "ecr-prune");
    assert!(args.contains(&serde_json::json!("--apply")));
    assert!(args.contains(&serde_json::json!({"Fn::Sub": "${Index}/${ShardCount}"})));
}

#[test]
fn iam_policies_use_valid_actions_per_cfn_lint() {
    // Wrap each policy file in a throwaway template so cfn-lint checks its action names.
    let dir = tempdir();
    for rel in [
        "packaging/iam/instance-role-policy.json",
        "packaging/iam/ecr-prune-task-policy.json",
    ] {
        let doc: serde_json::Value = serde_json::from_str(&read(&repo(rel))).expect("policy JSON");
        let mut params = serde_json::Map::new();
        let text = doc.to_string();
        for p in [
            "RegistrySecretName",
            "ConfigBucket",
            "ConfigPrefix",
            "SecretsKmsKeyId",
        ] {
            if text.contains(&format!("${{{p}}}")) {
                params.insert(p.into(), serde_json::json!({"Type": "String"}));
            }
        }
        let subbed = subify(&doc);
        let template = serde_json::json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Parameters": params,
            "Resources": {"Policy": {"Type": "AWS::IAM::ManagedPolicy",
                "Properties": {"PolicyDocument": subbed}}}
        });
        let path = dir.path().join("policy.json");
        write(&path, &template.to_string());
        let out = cfn_lint(&path);
        ok(&out, &format!("cfn-lint of {rel}"));
        assert!(out.stdout.trim().is_empty(), "{rel}:\n{}", out.stdout);
    }
}

/// Strings containing `${` become `{"Fn::Sub": s}`.
fn subify(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) if s.contains("${") => serde_json::json!({"Fn::Sub": s}),
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), subify(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(subify).collect()),
        other => other.clone(),
    }
}

// ---------------------------------------------------------------- packer

#[test]
fn packer_template_is_formatted_and_validates() {
    let template = repo("packaging/packer/shipshape-ecs-al2023.pkr.hcl");
    let fmt = run(cmd("packer").args(["fmt", "-check"]).arg(&template));
    ok(&fmt, "packer fmt -check");
    // Debian's packer (1.6.6) predates the `packer { required_plugins }` block that
    // packer >= 1.7 needs to fetch the amazon plugin: validate everything else.
    let text = read(&template);
    let start = text.find("\npacker {").expect("packer block");
    let end = start + text[start..].find("\n}\n").expect("end of packer block") + 3;
    let dir = tempdir();
    write(
        &dir.path().join("t.pkr.hcl"),
        &format!("{}{}", &text[..start], &text[end..]),
    );
    let rpm = &packages().rpm;
    let validate = |rpm: &Path| {
        run(cmd("packer")
            .current_dir(dir.path())
            .env("CHECKPOINT_DISABLE", "1")
            .args(["validate", "-var", "region=eu-west-1", "-var"])
            .arg(format!("rpm={}", rpm.display()))
            .arg("."))
    };
    ok(&validate(rpm), "packer validate");
    let missing = validate(&dir.path().join("missing.rpm"));
    assert_ne!(missing.code, 0, "packer validate accepted a missing RPM");
}

// ---------------------------------------------------------------- user data

#[test]
fn userdata_and_scripts_pass_shellcheck() {
    let bash = run(cmd("shellcheck")
        .arg(repo("userdata/ecs-al2023.sh"))
        .arg(repo("userdata/gitlab-runner.sh"))
        .arg(repo("packaging/build.sh"))
        .arg(repo("scripts/test.sh")));
    ok(&bash, "shellcheck (bash scripts)");
    // Maintainer scripts run under /bin/sh (dash on Debian).
    let sh = run(cmd("shellcheck")
        .arg("--shell=sh")
        .arg(repo("packaging/deb/postinst"))
        .arg(repo("packaging/deb/prerm"))
        .arg(repo("packaging/deb/postrm"))
        .arg(repo("packaging/rpm/post.sh"))
        .arg(repo("packaging/rpm/preun.sh"))
        .arg(repo("packaging/rpm/postun.sh")));
    ok(&sh, "shellcheck (maintainer scripts)");
}

#[test]
fn cloud_config_passes_cloud_init_schema() {
    let out = run(cmd("cloud-init")
        .args(["schema", "--config-file"])
        .arg(repo("userdata/ecs-al2023.yaml")));
    ok(&out, "cloud-init schema");
    assert!(out.stdout.contains("Valid cloud-config"), "{}", out.stdout);
}

/// A throwaway user-data run: a temp dir, the root the script writes under
/// (`SHIPSHAPE_ROOT`), and a stub systemctl (`SHIPSHAPE_SYSTEMCTL`) that records its
/// arguments in `log`, one call a line.
struct Sandbox {
    dir: tempfile::TempDir,
    root: PathBuf,
    systemctl: PathBuf,
    log: PathBuf,
}

impl Sandbox {
    fn new() -> Sandbox {
        let dir = tempdir();
        let root = dir.path().join("root");
        let log = dir.path().join("systemctl.log");
        let systemctl = dir.path().join("systemctl");
        write(
            &systemctl,
            &format!("#!/bin/sh\necho \"$*\" >> '{}'\n", log.display()),
        );
        std::fs::set_permissions(&systemctl, std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Sandbox {
            dir,
            root,
            systemctl,
            log,
        }
    }

    /// Runs `script` with a clean environment (PATH kept), `bin` as the shipshape binary
    /// and the extra `env` pairs.
    fn run_userdata(&self, script: &str, bin: &Path, env: &[(String, String)]) -> Output {
        let mut c = Command::new("bash");
        c.arg(repo(script)).env_clear();
        c.env("PATH", std::env::var("PATH").unwrap_or_default());
        c.env("SHIPSHAPE_ROOT", &self.root)
            .env("SHIPSHAPE_BIN", bin)
            .env("SHIPSHAPE_SYSTEMCTL", &self.systemctl);
        for (k, v) in env {
            c.env(k, v);
        }
        run(&mut c)
    }
}

#[test]
fn cloud_config_writes_the_same_config_as_the_bash_script() {
    let sb = Sandbox::new();
    let root = &sb.root;
    // /bin/true stands in for shipshape: only the written config is compared here.
    let out = sb.run_userdata("userdata/ecs-al2023.sh", Path::new("/bin/true"), &[]);
    ok(&out, "userdata/ecs-al2023.sh with defaults");
    let root_prefix = root.display().to_string();
    let from_bash: Vec<String> = read(&root.join("etc/shipshape/shipshape.toml"))
        .lines()
        .filter(|l| !l.contains(&root_prefix) && !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let cloud = yaml_to_json(&repo("userdata/ecs-al2023.yaml"));
    let files = cloud["write_files"].as_array().expect("write_files");
    let file = files
        .iter()
        .find(|f| f["path"] == "/etc/shipshape/shipshape.toml")
        .expect("cloud-config writes /etc/shipshape/shipshape.toml");
    let content = file["content"].as_str().expect("content");
    let from_yaml: Vec<String> = content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    assert_eq!(
        from_yaml, from_bash,
        "the cloud-config twin drifted from the bash script"
    );
    // And the twin's config is valid for the real binary.
    let conf = sb.dir.path().join("cloud.toml");
    write(&conf, content);
    ok(
        &run(shipshape_tests::bin::shipshape()
            .arg("--config")
            .arg(&conf)
            .arg("check")),
        "shipshape check of the cloud-config's file",
    );
    let runcmd = cloud["runcmd"].to_string();
    for step in ["bootstrap", "enable --now --no-block shipshape.service"] {
        assert!(
            runcmd.contains(step),
            "cloud-config runcmd lacks {step}: {runcmd}"
        );
    }
}

#[test]
fn userdata_refuses_a_value_that_would_break_the_config() {
    let sb = Sandbox::new();
    let (root, log) = (&sb.root, &sb.log);
    let env = [("CLUSTER".to_owned(), "prod\"\ninjected = \"x".to_owned())];
    let out = sb.run_userdata("userdata/ecs-al2023.sh", Path::new("/bin/true"), &env);
    assert_ne!(out.code, 0, "script accepted a quote in the cluster name");
    assert!(
        out.stderr.contains("not allowed in config"),
        "{}",
        out.stderr
    );
    assert!(!root.join("etc/shipshape/shipshape.toml").exists());
    assert!(!log.exists(), "systemctl was called after a failure");
}

const CANARY: &str = "canary-pw-5f3e9a";

async fn create_secret(moto: &Moto, name: &str, value: &str) {
    let sdk = moto.sdk_config().await;
    aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateSecret {name} against moto: {e}"));
}

fn assert_no_canary(out: &Output) {
    assert!(
        !out.stdout.contains(CANARY) && !out.stderr.contains(CANARY),
        "secret leaked into output:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[tokio::test]
async fn ecs_userdata_end_to_end_writes_ecs_config_and_enables_the_daemon() {
    let moto = Moto::start();
    let secret = serde_json::json!({"username": "deploy", "password": CANARY}).to_string();
    create_secret(&moto, "prod/ecs/gitlab-registry", &secret).await;
    let sb = Sandbox::new();
    let (root, log) = (&sb.root, &sb.log);
    let mut env = moto.env();
    env.push(("CLUSTER".into(), "prod-cluster".into()));
    let out = sb.run_userdata("userdata/ecs-al2023.sh", &shipshape_path(), &env);
    ok(&out, "userdata/ecs-al2023.sh against moto");
    assert_no_canary(&out);

    let ecs_config = root.join("etc/ecs/ecs.config");
    let text = read(&ecs_config);
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "ECS_CLUSTER=prod-cluster",
        "ECS_ENGINE_AUTH_TYPE=docker",
        "ECS_ENABLE_TASK_IAM_ROLE=true",
    ] {
        assert!(lines.contains(&want), "ecs.config lacks {want}:\n{text}");
    }
    let auth = lines
        .iter()
        .find_map(|l| l.strip_prefix("ECS_ENGINE_AUTH_DATA="))
        .unwrap_or_else(|| panic!("no ECS_ENGINE_AUTH_DATA:\n{text}"));
    let auth: serde_json::Value = serde_json::from_str(auth).expect("auth data is JSON");
    assert_eq!(
        auth,
        serde_json::json!({"registry.gitlab.com": {"username": "deploy", "password": CANARY}})
    );
    let mode = std::fs::metadata(&ecs_config)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let calls = read(log);
    assert!(
        calls
            .lines()
            .any(|l| l == "enable --now --no-block shipshape.service"),
        "daemon not enabled: {calls}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l == "enable shipshape-bootstrap.service"),
        "{calls}"
    );
}

#[tokio::test]
async fn ecs_userdata_fails_closed_when_the_secret_is_missing() {
    let moto = Moto::start();
    let sb = Sandbox::new();
    let ecs_config = sb.root.join("etc/ecs/ecs.config");
    let before = "ECS_CLUSTER=old\nECS_LOGLEVEL=info\n";
    write(&ecs_config, before);
    let log = &sb.log;
    let mut env = moto.env();
    env.push((
        "REGISTRY_SECRETS".into(),
        "registry.gitlab.com=prod/ecs/absent".into(),
    ));
    let out = sb.run_userdata("userdata/ecs-al2023.sh", &shipshape_path(), &env);
    assert_ne!(
        out.code, 0,
        "script succeeded without its secret:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("prod/ecs/absent"),
        "error must name the secret:\n{}",
        out.stderr
    );
    assert_eq!(read(&ecs_config), before, "ecs.config changed on failure");
    assert!(
        !log.exists(),
        "systemctl was called after a failed bootstrap"
    );
}

#[tokio::test]
async fn gitlab_runner_userdata_writes_docker_config_and_a_verified_drop_in() {
    let moto = Moto::start();
    let gitlab = serde_json::json!({"username": "ci-bot", "password": CANARY}).to_string();
    create_secret(&moto, "ci/gitlab-registry", &gitlab).await;
    let hub = serde_json::json!({"username": "hubuser", "password": "hub-pw"}).to_string();
    create_secret(&moto, "ci/dockerhub", &hub).await;
    let sb = Sandbox::new();
    let (root, log) = (&sb.root, &sb.log);
    let out = sb.run_userdata("userdata/gitlab-runner.sh", &shipshape_path(), &moto.env());
    ok(&out, "userdata/gitlab-runner.sh against moto");
    assert_no_canary(&out);

    let config: serde_json::Value =
        serde_json::from_str(&read(&root.join("root/.docker/config.json"))).expect("config.json");
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        config["auths"]["registry.gitlab.com"]["auth"],
        b64(&format!("ci-bot:{CANARY}"))
    );
    assert_eq!(
        config["auths"]["https://index.docker.io/v1/"]["auth"],
        b64("hubuser:hub-pw")
    );
    let calls = read(log);
    assert!(
        calls
            .lines()
            .any(|l| l == "enable --now --no-block shipshape.service"),
        "{calls}"
    );

    // The drop-in it wrote is a valid systemd fragment for the daemon unit.
    let units = unit_root(&repo("systemd"));
    let dropin = "etc/systemd/system/shipshape.service.d/ci-docker-config.conf";
    std::fs::create_dir_all(units.path().join(dropin).parent().expect("parent")).expect("mkdir");
    std::fs::copy(root.join(dropin), units.path().join(dropin)).expect("copy drop-in");
    let v = verify(units.path(), &["shipshape.service"]);
    ok(&v, "systemd-analyze verify with the CI drop-in");
    assert!(v.stderr.trim().is_empty(), "{}", v.stderr);
}

#[test]
fn binary_needs_no_glibc_newer_than_amazon_linux_2023s() {
    // AL2023 ships glibc 2.34; a binary built on a newer distribution could need more.
    let out = run(cmd("objdump").arg("-T").arg(shipshape_path()));
    ok(&out, "objdump -T");
    let newest = out
        .stdout
        .split("GLIBC_")
        .skip(1)
        .filter_map(|rest| {
            let v: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            Some((parts.next()?, parts.next().unwrap_or(0)))
        })
        .max()
        .expect("no GLIBC symbol versions found");
    assert!(
        newest <= (2, 34),
        "binary needs GLIBC_{}.{} (> 2.34, AL2023)",
        newest.0,
        newest.1
    );
}
