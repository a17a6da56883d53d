//! A live systemd: a Debian bookworm root filesystem made with `debootstrap` (cached in
//! `target/systemd-rootfs`, rebuilt when missing), imported into the machine's Docker
//! engine and booted with systemd as PID 1 in one container. The container shares the
//! host's network (moto on 127.0.0.1 is reachable) and gets the private dockerd's socket
//! as `/run/docker.sock`. Nothing here skips: a missing tool or engine fails with what to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::bin::{run, Output};
use crate::target_dir;
use crate::tools::{cmd, ok};

/// The image the root filesystem is imported as; a new [`INCLUDE`] needs a new tag.
const IMAGE: &str = "shipshape-systemd:bookworm-2";
/// Packages on top of minbase: systemd as init, a system bus to attack, `ps`, and the CA
/// roots every real host has (the AWS SDK refuses to build a TLS client without them).
const INCLUDE: &str = "systemd,systemd-sysv,dbus,procps,ca-certificates";
/// Written into the root filesystem: a cache made with another [`INCLUDE`] is rebuilt.
const MARKER: &str = ".shipshape-include";

/// Capabilities systemd as PID 1 needs in the container. An explicit list: this
/// machine's engine refuses `--privileged` (it may not grant CAP_SYS_RESOURCE).
const CAPS: [&str; 9] = [
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SETPCAP",
    "MKNOD",
    "DAC_READ_SEARCH",
    "IPC_LOCK",
    "SYS_NICE",
    "AUDIT_CONTROL",
];

/// The cached root filesystem, made with debootstrap when missing.
pub fn rootfs() -> PathBuf {
    let dir = target_dir().join("systemd-rootfs");
    let marker = dir.join(MARKER);
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == INCLUDE) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    let tmp = target_dir().join("systemd-rootfs.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    let out = run(cmd("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={INCLUDE}"),
            "bookworm",
        ])
        .arg(&tmp)
        .arg("http://deb.debian.org/debian"));
    ok(
        &out,
        "debootstrap of the live-systemd root filesystem (needs root and deb.debian.org)",
    );
    std::fs::write(tmp.join(MARKER), INCLUDE).expect("write the rootfs marker");
    std::fs::rename(&tmp, &dir).unwrap_or_else(|e| panic!("cannot move the rootfs: {e}"));
    dir
}

fn docker() -> std::process::Command {
    let mut c = cmd("docker");
    // The machine's engine, never a private dockerd a test exported.
    c.env_remove("DOCKER_HOST");
    c
}

/// Imports [`rootfs`] into the machine's engine unless the image is there.
fn image() -> &'static str {
    if run(docker().args(["image", "inspect", IMAGE])).code == 0 {
        return IMAGE;
    }
    let root = rootfs();
    let out = run(std::process::Command::new("sh").arg("-c").arg(format!(
        "tar -C '{}' -c . | '{}' import - {IMAGE}",
        root.display(),
        crate::tools::tool("docker").display()
    )));
    ok(&out, "docker import of the live-systemd root filesystem");
    IMAGE
}

/// One container with systemd as PID 1; removed on drop.
pub struct Machine {
    name: String,
}

impl Machine {
    /// Boots a machine with `binds` (host path, container path) and waits until
    /// `systemctl is-system-running` answers running (or degraded).
    pub fn boot(binds: &[(&Path, &str)]) -> Machine {
        let image = image();
        let name = format!("shipshape-live-{}", std::process::id());
        let _ = run(docker().args(["rm", "-f", &name]));
        let mut c = docker();
        c.args(["run", "-d", "--name", &name, "--network", "host"]);
        for cap in CAPS {
            c.args(["--cap-add", cap]);
        }
        c.args([
            "--security-opt",
            "seccomp=unconfined",
            "--security-opt",
            "apparmor=unconfined",
            "--tmpfs",
            "/run",
            "--tmpfs",
            "/run/lock",
            "--tmpfs",
            "/tmp",
            "-v",
            "/sys/fs/cgroup:/sys/fs/cgroup:rw",
            "--cgroupns=host",
            "-e",
            "container=docker",
        ]);
        for (host, inside) in binds {
            c.arg("-v").arg(format!("{}:{inside}", host.display()));
        }
        c.args([image, "/lib/systemd/systemd"]);
        ok(
            &run(&mut c),
            "docker run of the live-systemd container (the machine's Docker engine must run)",
        );
        let machine = Machine { name };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let state = machine.sh("systemctl is-system-running || true").stdout;
            if matches!(state.trim(), "running" | "degraded") {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "systemd in the container did not finish booting (state {:?}); logs:\n{}",
                state.trim(),
                run(docker().args(["logs", "--tail", "30", &machine.name])).stderr
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        machine
    }

    /// Runs `script` with `sh -c` inside the machine (as root, outside any sandbox).
    pub fn sh(&self, script: &str) -> Output {
        run(docker().args(["exec", &self.name, "sh", "-c", script]))
    }

    /// [`Machine::sh`] that must succeed.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        ok(&out, &format!("in the machine: {script}"));
        out.stdout
    }

    /// Writes `text` to `path` inside the machine.
    pub fn write(&self, path: &str, text: &str) {
        let mut child = docker()
            .args(["exec", "-i", &self.name, "sh", "-c"])
            .arg(format!(
                "mkdir -p \"$(dirname '{path}')\" && cat > '{path}'"
            ))
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run docker exec: {e}"));
        use std::io::Write as _;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write to docker exec");
        let status = child.wait().expect("docker exec");
        assert!(status.success(), "cannot write {path} in the machine");
    }

    /// Copies a host file into the machine (not under a tmpfs: /root is on the image).
    pub fn copy_in(&self, host: &Path, inside: &str) {
        ok(
            &run(docker()
                .arg("cp")
                .arg(host)
                .arg(format!("{}:{inside}", self.name))),
            "docker cp into the machine",
        );
    }

    /// A unit property (`systemctl show -p NAME --value`).
    pub fn prop(&self, unit: &str, name: &str) -> String {
        self.sh_ok(&format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// Waits until `check` holds, up to `timeout`; false if it never did.
    pub fn wait(&self, timeout: Duration, mut check: impl FnMut(&Machine) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if check(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        check(self)
    }

    /// The unit's journal as JSON objects (`journalctl -o json`).
    pub fn journal(&self, unit: &str) -> Vec<serde_json::Value> {
        self.sh_ok(&format!(
            "journalctl --no-pager -o json -u {unit} 2>/dev/null || true"
        ))
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = run(docker().args(["rm", "-f", &self.name]));
    }
}
