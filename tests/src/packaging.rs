//! Throwaway trees for the packaging tests: a root in which `systemd-analyze --root`
//! resolves the units, the DEB and RPM built once per test run, installs of them into
//! private rpm/dpkg databases, YAML read as JSON, and a sandbox in which the user-data
//! scripts run with a stub systemctl.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::bin::{run, shipshape_path, Output};
use crate::target_dir;
use crate::tools::{cmd, ok, repo, tempdir, tool, write};

/// The units shipped in `systemd/`.
pub const UNITS: [&str; 6] = [
    "shipshape.service",
    "shipshape-bootstrap.service",
    "shipshape-gc.service",
    "shipshape-gc.timer",
    "shipshape-ecs-restart.path",
    "shipshape-ecs-restart.service",
];
/// A throwaway root in which `systemd-analyze --root` resolves the units: the host's
/// system units (sysinit.target…), the built binary as /usr/bin/shipshape, /bin/kill, /bin/sh,
/// and stubs for docker.service / ecs.service, which live on the real hosts.
pub fn unit_root(units_dir: &Path) -> tempfile::TempDir {
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
        (tool("sh"), r.join("bin/sh")),
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
pub fn verify(root: &Path, units: &[&str]) -> Output {
    let mut c = cmd("systemd-analyze");
    c.arg("verify").arg(format!("--root={}", root.display()));
    for unit in units {
        c.arg(root.join("etc/systemd/system").join(unit));
    }
    run(&mut c)
}
/// The two packages built from the debug binary.
pub struct Packages {
    _dir: tempfile::TempDir,
    /// The `.deb`.
    pub deb: PathBuf,
    /// The `.rpm`.
    pub rpm: PathBuf,
}

/// Builds both packages once per test binary with packaging/build.sh, from the debug
/// binary the test run already has (dev profile, --no-build: no release compile).
pub fn packages() -> &'static Packages {
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
/// Installs `rpm` into `root` with its own rpm database (`extra` flags appended).
pub fn rpm_install(root: &Path, rpm: &Path, extra: &[&str]) -> Output {
    std::fs::create_dir_all(root.join("var/lib/rpm")).expect("mkdir rpmdb");
    // --noscripts: scriptlets would run chrooted into a root without /bin/sh.
    run(cmd("rpm")
        .arg(format!("--root={}", root.display()))
        .args(["--dbpath=/var/lib/rpm", "--nodeps", "--noscripts", "-i"])
        .args(extra)
        .arg(rpm))
}
/// An empty dpkg database in a throwaway root; scripts run unchrooted with DPKG_ROOT.
pub fn dpkg_install(root: &Path, deb: &Path) -> Output {
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
/// A YAML file (cloud-config, CloudFormation) as JSON, read by the venv's PyYAML.
pub fn yaml_to_json(path: &Path) -> serde_json::Value {
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
/// `cfn-lint --format parseable` of `path`.
pub fn cfn_lint(path: &Path) -> Output {
    run(cmd("cfn-lint").arg("--format").arg("parseable").arg(path))
}
/// A throwaway user-data run: a temp dir, the root the script writes under
/// (`SHIPSHAPE_ROOT`), and a stub systemctl (`SHIPSHAPE_SYSTEMCTL`) that records its
/// arguments in `log`, one call a line.
pub struct Sandbox {
    /// The temp dir holding everything.
    pub dir: tempfile::TempDir,
    /// `SHIPSHAPE_ROOT`: where the script writes /etc and /root.
    pub root: PathBuf,
    systemctl: PathBuf,
    /// One line per systemctl call; absent when none was made.
    pub log: PathBuf,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A fresh sandbox with the stub systemctl in place.
    pub fn new() -> Sandbox {
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
    pub fn run_userdata(&self, script: &str, bin: &Path, env: &[(String, String)]) -> Output {
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
