//! `shipshape daemon` as systemd runs it: its own config, state file and log in a temp
//! directory, a notify socket (`NOTIFY_SOCKET`) whose messages are recorded with their
//! arrival time, signals, and bounded waits that fail with the daemon's log.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shipshape::last_use::LastUseState;

use crate::dockerd::Dockerd;

/// Messages received on the notify socket, with their arrival time.
pub type Received = Arc<Mutex<Vec<(Instant, String)>>>;

/// A running `shipshape daemon` with its own notify socket, config and log; killed on drop.
pub struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    /// Every notify message so far, with its arrival time.
    pub notes: Received,
    listening: Arc<AtomicBool>,
}

impl Daemon {
    /// Writes `config` (with `@STATE@` replaced by a state path in the daemon's own
    /// directory), starts the daemon against `d` with the extra `env` and waits for READY=1.
    pub fn start(d: &Dockerd, config: &str, env: &[(&str, &str)]) -> Daemon {
        Self::start_with_args(d, config, env, &[])
    }

    /// `start`, with `args` (global flags such as `--log-format json`) before `daemon`.
    pub fn start_with_args(
        d: &Dockerd,
        config: &str,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = config.replace(
            "@STATE@",
            &dir.path().join("state.json").display().to_string(),
        );
        std::fs::write(dir.path().join("shipshape.toml"), config).expect("write config");
        let sock_path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        let notes: Received = Arc::default();
        let listening = Arc::new(AtomicBool::new(true));
        {
            let notes = Arc::clone(&notes);
            let listening = Arc::clone(&listening);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while listening.load(Ordering::Relaxed) {
                    if let Ok(n) = sock.recv(&mut buf) {
                        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                        for line in text.lines() {
                            notes
                                .lock()
                                .expect("lock")
                                .push((Instant::now(), line.to_owned()));
                        }
                    }
                }
            });
        }
        let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log file");
        let mut cmd = crate::bin::shipshape();
        cmd.arg("--config")
            .arg(dir.path().join("shipshape.toml"))
            .args(["--docker-host", &d.host(), "--log-level", "debug"])
            .args(args)
            .arg("daemon")
            .env("NOTIFY_SOCKET", &sock_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn shipshape daemon");
        let daemon = Daemon {
            child,
            dir,
            notes,
            listening,
        };
        daemon.wait_for("READY=1", Duration::from_secs(30), || {
            daemon.noted("READY=1")
        });
        daemon
    }

    /// A file in the daemon's directory (`shipshape.toml`, `state.json`, `daemon.log`).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The daemon's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.path("daemon.log")).unwrap_or_default()
    }

    /// Whether the notify socket received exactly `line`.
    pub fn noted(&self, line: &str) -> bool {
        self.notes
            .lock()
            .expect("lock")
            .iter()
            .any(|(_, l)| l == line)
    }

    /// The notify messages starting with `prefix`, in arrival order.
    pub fn notes_matching(&self, prefix: &str) -> Vec<(Instant, String)> {
        self.notes
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, l)| l.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The last `STATUS=` message (empty when none).
    pub fn last_status(&self) -> String {
        self.notes_matching("STATUS=")
            .last()
            .map(|(_, s)| s.clone())
            .unwrap_or_default()
    }

    /// Whether the process is still running.
    /// The daemon's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The saved last-use state, when the daemon has written one.
    pub fn state(&self) -> Option<LastUseState> {
        LastUseState::load(&self.path("state.json")).expect("state file readable")
    }

    /// The last use of image `id` in the saved state.
    pub fn last_used(&self, id: &str) -> Option<DateTime<Utc>> {
        self.state().and_then(|s| s.last_used(id))
    }

    /// Poll `cond` until true; panic naming `what` with the daemon log.
    pub fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; daemon log:\n{}", self.log());
    }

    /// Sends `sig` to the daemon.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        nix::sys::signal::kill(pid, sig).expect("signal daemon");
    }

    /// SIGTERM and wait (bounded); returns the exit code and how long it took.
    pub fn terminate(&mut self, limit: Duration) -> (i32, Duration) {
        let t0 = Instant::now();
        self.signal(nix::sys::signal::Signal::SIGTERM);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return (status.code().unwrap_or(-1), t0.elapsed());
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                panic!("daemon did not exit within {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.listening.store(false, Ordering::Relaxed);
    }
}
