//! A private `dockerd` per test: own data root, exec root, pidfile, unix socket under a
//! short `/tmp` path, `--bridge=none`, no iptables, unique containerd namespaces; it never
//! touches `/var/run/docker.sock`. Storage driver: `overlay2` when it works on this host,
//! else `vfs` (probed once per process; override with `SHIPSHAPE_TEST_STORAGE_DRIVER`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long dockerd may take to answer `/_ping`.
const STARTUP_LIMIT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd dockerd may take to exit before SIGKILL.
const STOP_LIMIT: Duration = Duration::from_secs(20);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Options for a private dockerd.
#[derive(Debug, Clone, Default)]
pub struct DockerdBuilder {
    tmpfs_bytes: Option<u64>,
    tmpfs_inodes: Option<u64>,
    storage_driver: Option<String>,
    extra_args: Vec<String>,
}

impl DockerdBuilder {
    /// Puts the data root on a tmpfs of `bytes` (for disk-pressure tests).
    pub fn tmpfs_data_root(mut self, bytes: u64) -> Self {
        self.tmpfs_bytes = Some(bytes);
        self
    }

    /// With `tmpfs_data_root`: at most `inodes` inodes on it (for inode-pressure tests).
    pub fn tmpfs_inodes(mut self, inodes: u64) -> Self {
        self.tmpfs_inodes = Some(inodes);
        self
    }

    /// Forces a storage driver instead of the probed one.
    pub fn storage_driver(mut self, driver: &str) -> Self {
        self.storage_driver = Some(driver.to_string());
        self
    }

    /// Extra dockerd arguments.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Starts the daemon; panics with its log tail when it does not come up.
    pub fn start(self) -> Dockerd {
        let driver = match &self.storage_driver {
            Some(d) => d.clone(),
            None => storage_driver(),
        };
        Dockerd::start_with(self, driver)
    }
}

/// A running private dockerd; stopped and cleaned up on drop.
pub struct Dockerd {
    root: PathBuf,
    child: Option<Child>,
    driver: String,
    namespace: String,
    args: Vec<String>,
    tmpfs: bool,
}

impl std::fmt::Debug for Dockerd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dockerd")
            .field("root", &self.root)
            .field("driver", &self.driver)
            .finish()
    }
}

/// The storage driver private dockerds use: `overlay2` when a probe daemon can run a
/// container-free start with it, else `vfs`.
pub fn storage_driver() -> String {
    static DRIVER: OnceLock<String> = OnceLock::new();
    DRIVER
        .get_or_init(|| {
            if let Ok(d) = std::env::var("SHIPSHAPE_TEST_STORAGE_DRIVER") {
                if !d.is_empty() {
                    return d;
                }
            }
            probe_overlay2()
        })
        .clone()
}

/// overlay2 needs a kernel overlay mount on the data root's filesystem; test that directly
/// (cheaper than starting a daemon).
fn probe_overlay2() -> String {
    let Ok(dir) = tempfile::Builder::new().prefix("ssd-ovl-").tempdir() else {
        return "vfs".to_string();
    };
    let p = dir.path();
    for sub in ["l", "u", "w", "m"] {
        if std::fs::create_dir(p.join(sub)).is_err() {
            return "vfs".to_string();
        }
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        p.join("l").display(),
        p.join("u").display(),
        p.join("w").display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(p.join("m"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let _ = Command::new("umount").arg(p.join("m")).status();
        "overlay2".to_string()
    } else {
        "vfs".to_string()
    }
}

impl Dockerd {
    /// Starts a private dockerd with default options.
    pub fn start() -> Dockerd {
        DockerdBuilder::default().start()
    }

    /// Options: tmpfs data root, storage driver, extra args.
    pub fn builder() -> DockerdBuilder {
        DockerdBuilder::default()
    }

    fn start_with(builder: DockerdBuilder, driver: String) -> Dockerd {
        if Command::new("dockerd")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            panic!(
                "dockerd not found on PATH — run `bash scripts/test.sh` (it installs docker.io)"
            );
        }
        // Unix socket paths must stay under ~100 chars: keep the root short.
        let root = tempfile::Builder::new()
            .prefix("ssd-")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temp dir for dockerd: {e}"))
            .keep();
        for sub in ["data", "exec", "cfg"] {
            std::fs::create_dir_all(root.join(sub))
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", root.join(sub).display()));
        }
        let mut tmpfs = false;
        if let Some(bytes) = builder.tmpfs_bytes {
            let mut options = format!("size={bytes}");
            if let Some(inodes) = builder.tmpfs_inodes {
                options.push_str(&format!(",nr_inodes={inodes}"));
            }
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &options, "tmpfs"])
                .arg(root.join("data"))
                .status()
                .unwrap_or_else(|e| panic!("cannot run mount: {e}"));
            assert!(status.success(), "mount -t tmpfs size={bytes} failed");
            tmpfs = true;
        }
        // An empty config file so the host's /etc/docker/daemon.json is not read.
        std::fs::write(root.join("cfg/daemon.json"), "{}")
            .unwrap_or_else(|e| panic!("cannot write daemon.json: {e}"));
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let namespace = format!("shipshape-test-{}-{n}", std::process::id());
        let mut d = Dockerd {
            root,
            child: None,
            driver,
            namespace,
            args: builder.extra_args,
            tmpfs,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path().display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the dockerd log handle: {e}"));
        let started = Instant::now();
        let mut child = Command::new("dockerd")
            .arg("--config-file")
            .arg(self.root.join("cfg/daemon.json"))
            .arg("--data-root")
            .arg(self.root.join("data"))
            .arg("--exec-root")
            .arg(self.root.join("exec"))
            .arg("--pidfile")
            .arg(self.root.join("d.pid"))
            .arg("-H")
            .arg(self.host())
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip6tables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver",
                &self.driver,
                "--containerd-namespace",
                &self.namespace,
                "--containerd-plugins-namespace",
                &format!("{}-plugins", self.namespace),
            ])
            .args(&self.args)
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dockerd: {e} — run `bash scripts/test.sh` to install it")
            });
        let outcome = crate::wait_for_startup(&mut child, started + STARTUP_LIMIT, || self.ping());
        match outcome {
            crate::Startup::Ready => {
                self.child = Some(child);
                tracing_free_note(started.elapsed());
            }
            crate::Startup::Exited(status) => panic!(
                "private dockerd exited early with {status}. Log tail:\n{}",
                self.log_tail(30)
            ),
            crate::Startup::TimedOut => {
                self.child = Some(child);
                let tail = self.log_tail(30);
                self.stop();
                panic!(
                    "private dockerd did not answer /_ping within {}s. Log tail:\n{tail}",
                    STARTUP_LIMIT.as_secs()
                );
            }
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::os::unix::net::UnixStream::connect(self.socket_path()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200")
    }

    /// The directory holding everything of this daemon.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The data root (`--data-root`).
    pub fn data_root(&self) -> PathBuf {
        self.root.join("data")
    }

    /// The daemon's combined stdout/stderr log.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("dockerd.log")
    }

    /// The last `lines` lines of the daemon log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The storage driver this daemon runs with.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Path of the API socket.
    pub fn socket_path(&self) -> PathBuf {
        self.root.join("d.sock")
    }

    /// `unix://<socket>`, for `DOCKER_HOST` / `--docker-host`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket_path().display())
    }

    /// PID of the running dockerd, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The docker CLI talking to this daemon (own client config dir, no DOCKER_HOST).
    pub fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env("DOCKER_CONFIG", self.root.join("cfg"))
            .arg("-H")
            .arg(self.host());
        cmd
    }

    /// Runs the docker CLI with `args`; panics with its stderr when it fails. Returns stdout.
    pub fn docker_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.docker();
        cmd.args(args);
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The full IDs of the images in this daemon (`docker images -q --no-trunc`).
    pub fn image_ids(&self) -> std::collections::BTreeSet<String> {
        self.docker_ok(["images", "-q", "--no-trunc"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// How full the data root's filesystem is, in percent of its blocks (statvfs).
    pub fn data_root_used_pct(&self) -> f64 {
        let st = nix::sys::statvfs::statvfs(&self.data_root()).expect("statvfs");
        let total = st.blocks() as f64;
        100.0 * (total - st.blocks_free() as f64) / total
    }

    /// A bollard client for this daemon with the API version negotiated (20.10 = 1.41).
    pub async fn client(&self) -> bollard::Docker {
        let socket = self.socket_path();
        let client = bollard::Docker::connect_with_unix(
            &socket.to_string_lossy(),
            120,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap_or_else(|e| panic!("cannot connect bollard to {}: {e}", socket.display()));
        client
            .negotiate_version()
            .await
            .unwrap_or_else(|e| panic!("cannot negotiate the API version: {e}"))
    }

    /// Stops the daemon (SIGTERM, bounded wait, SIGKILL); the data stays for `restart`.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // Containerd shims of our namespace may outlive the daemon; end them.
        self.kill_leftover_shims();
    }

    /// Starts the daemon again on the same directories (keeps images and containers).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Empties the engine's in-memory event log (a restart): the images loaded so far
    /// look as if they arrived long ago, so their age counts from `Created` (gc and the
    /// daemon date images by the pulls, loads and tags the log replays).
    pub fn forget_events(&mut self) {
        self.restart();
    }

    fn kill_leftover_shims(&self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        let marker = self.root.to_string_lossy().into_owned();
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline);
            if cmdline.contains("containerd") && cmdline.contains(&marker)
                || cmdline.contains(&self.namespace)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }

    fn unmount_all(&self) {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let prefix = self.root.to_string_lossy().into_owned();
        let mut points: Vec<&str> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&prefix))
            .collect();
        // Deepest first.
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = Command::new("umount")
                .arg("-l")
                .arg(p)
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Startup time is printed (stderr, visible with `--nocapture`) so slow hosts are visible.
fn tracing_free_note(elapsed: Duration) {
    eprintln!("private dockerd ready in {} ms", elapsed.as_millis());
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        self.stop();
        self.unmount_all();
        let _ = self.tmpfs;
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A unix-socket proxy in front of a dockerd that holds the first request whose
/// method and path match until the test releases it, so a race between "check" and
/// "delete" happens exactly where the test wants it. Everything else passes through.
pub struct HoldingProxy {
    dir: PathBuf,
    held: std::sync::mpsc::Receiver<String>,
    release: std::sync::mpsc::Sender<()>,
}

impl HoldingProxy {
    /// Proxy to `d`, holding the first `method` request whose path contains `needle`.
    pub fn start(d: &Dockerd, method: &str, needle: &str) -> HoldingProxy {
        use std::sync::{mpsc, Arc, Mutex};
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = PathBuf::from(format!("/tmp/shp-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {dir:?}: {e}"));
        let listener = std::os::unix::net::UnixListener::bind(dir.join("p.sock"))
            .unwrap_or_else(|e| panic!("cannot bind the proxy socket: {e}"));
        let (held_tx, held) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(Some((held_tx, release_rx))));
        let upstream = d.socket_path();
        let want = (method.to_owned(), needle.to_owned());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let gate = Arc::clone(&gate);
                let upstream = upstream.clone();
                let want = want.clone();
                std::thread::spawn(move || proxy_connection(client, &upstream, &want, &gate));
            }
        });
        HoldingProxy { dir, held, release }
    }

    /// `unix://…` of the proxy.
    pub fn host(&self) -> String {
        format!("unix://{}", self.dir.join("p.sock").display())
    }

    /// Waits until the matching request arrived and is held; returns its request line.
    pub fn wait_held(&self, limit: Duration) -> String {
        self.held
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("no matching request within {limit:?}: {e}"))
    }

    /// Lets the held request go on to the engine.
    pub fn release(&self) {
        let _ = self.release.send(());
    }
}

impl Drop for HoldingProxy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

type Gate = std::sync::Mutex<
    Option<(
        std::sync::mpsc::Sender<String>,
        std::sync::mpsc::Receiver<()>,
    )>,
>;

/// Forward one client connection request by request (the engine's requests here carry
/// `Content-Length` bodies, never chunked ones); responses stream back untouched.
fn proxy_connection(
    client: std::os::unix::net::UnixStream,
    upstream: &Path,
    want: &(String, String),
    gate: &Gate,
) {
    use std::io::{BufRead, BufReader, Read, Write};
    let Ok(mut server) = std::os::unix::net::UnixStream::connect(upstream) else {
        return;
    };
    let (Ok(mut back), Ok(mut to_client)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut back, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    let mut reader = BufReader::new(client);
    loop {
        let mut head = String::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => head.push_str(&line),
            }
            if line == "\r\n" {
                break;
            }
        }
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())
                    .flatten()
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request_line = head.lines().next().unwrap_or_default().to_owned();
        let matches =
            request_line.starts_with(&format!("{} ", want.0)) && request_line.contains(&want.1);
        if matches {
            let taken = gate
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take();
            if let Some((held, release)) = taken {
                let _ = held.send(request_line);
                let _ = release.recv_timeout(Duration::from_secs(120));
            }
        }
        if server.write_all(head.as_bytes()).is_err() || server.write_all(&body).is_err() {
            return;
        }
    }
}
