//! The DEB and RPM (cargo-deb, cargo-generate-rpm via `packaging/build.sh`) under rpm and
//! dpkg: payload, `%config(noreplace)` and conffiles, installs into throwaway roots that
//! run and keep a local config edit on upgrade; the shipped default config passes `check`;
//! the binary needs no glibc newer than Amazon Linux 2023's (objdump).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use shipshape_tests::bin::{run, shipshape_path};
use shipshape_tests::packaging::{dpkg_install, packages, rpm_install, UNITS};
use shipshape_tests::tools::{cmd, ok, read, repo, tempdir, write};

const PAYLOAD: [&str; 8] = [
    "/usr/bin/shipshape",
    "/etc/shipshape/shipshape.toml",
    "/usr/lib/systemd/system/shipshape.service",
    "/usr/lib/systemd/system/shipshape-bootstrap.service",
    "/usr/lib/systemd/system/shipshape-gc.service",
    "/usr/lib/systemd/system/shipshape-gc.timer",
    "/usr/lib/systemd/system/shipshape-ecs-restart.path",
    "/usr/lib/systemd/system/shipshape-ecs-restart.service",
];

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

    let link = r.join("usr/bin/docker-credential-shipshape");
    let target = std::fs::read_link(&link)
        .unwrap_or_else(|e| panic!("postinst did not link {}: {e}", link.display()));
    assert_eq!(target, std::path::Path::new("shipshape"));

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
