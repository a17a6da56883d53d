//! A real Docker registry: Debian's `docker-registry` (distribution) on 127.0.0.1 with
//! htpasswd (bcrypt) auth, in a temp directory. The password goes to `htpasswd -B -i`
//! on stdin, never into an argument. 127.0.0.0/8 registries are plain HTTP for
//! dockerd without configuration. Stopped (killed) on drop.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry.
pub struct Registry {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Registry {
    /// Start a registry that accepts `user` / `password` only.
    pub fn start(user: &str, password: &str) -> Registry {
        let dir = tempfile::tempdir().expect("tempdir");
        let htpasswd = dir.path().join("htpasswd");
        let mut child = Command::new("htpasswd")
            .args(["-B", "-i", "-c"])
            .arg(&htpasswd)
            .arg(user)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run htpasswd ({e}); run `bash scripts/test.sh` (apache2-utils)")
            });
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(password.as_bytes())
            .expect("write password");
        let out = child.wait_with_output().expect("htpasswd");
        assert!(
            out.status.success(),
            "htpasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {data}\nhttp:\n  addr: 127.0.0.1:{port}\nauth:\n  htpasswd:\n    realm: shipshape-test\n    path: {htpasswd}\n",
                data = dir.path().join("data").display(),
                htpasswd = htpasswd.display(),
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run docker-registry ({e}); run `bash scripts/test.sh`")
            });
        let registry = Registry {
            child: Some(child),
            dir,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "docker-registry did not listen: {}",
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    /// `127.0.0.1:PORT`: the registry key clients and config.json use.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The registry's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A registry with a fixed throwaway login, and images pushed to it and pulled back by
/// digest through a private dockerd, so the engine records real `RepoDigests` — the
/// reference shapes gc must handle: a tag plus a `repo@digest` of another repository,
/// and a digest-only image (`docker pull reg/pinned@sha256:…`, no tag).
pub struct DigestRegistry {
    registry: Registry,
}

const DIGEST_USER: &str = "gc-tests";
const DIGEST_PASSWORD: &str = "gc-tests-password";

impl DigestRegistry {
    /// Start a registry and log `d`'s docker CLI in to it.
    pub fn start(d: &crate::dockerd::Dockerd) -> DigestRegistry {
        let registry = Registry::start(DIGEST_USER, DIGEST_PASSWORD);
        let mut login = d.docker();
        login
            .args(["login", "--username", DIGEST_USER, "--password-stdin"])
            .arg(registry.host())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = login.spawn().expect("docker login");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(DIGEST_PASSWORD.as_bytes())
            .expect("write password");
        let out = child.wait_with_output().expect("docker login");
        assert!(
            out.status.success(),
            "docker login {}: {}\nregistry log: {}",
            registry.host(),
            String::from_utf8_lossy(&out.stderr),
            registry.log()
        );
        DigestRegistry { registry }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.registry.host()
    }

    /// Push the image `id` as `<host>/<repo>:push` and return its digest reference
    /// `<host>/<repo>@sha256:…`; the image keeps the pushed tag and gains the digest.
    pub fn push(&self, d: &crate::dockerd::Dockerd, id: &str, repo: &str) -> String {
        let tagged = format!("{}/{repo}:push", self.host());
        d.docker_ok(["tag", id, &tagged]);
        d.docker_ok(["push", "--quiet", &tagged]);
        let digests = d.docker_ok(["image", "inspect", "--format", "{{json .RepoDigests}}", id]);
        let digests: Vec<String> = serde_json::from_str(digests.trim()).expect("RepoDigests");
        let prefix = format!("{}/{repo}@", self.host());
        digests
            .into_iter()
            .find(|r| r.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no digest of {prefix} after the push"))
    }

    /// Make `id` a digest-only image of `<host>/<repo>`: push it, remove every tag
    /// (the image goes), pull it back by digest. Returns the digest reference; the image
    /// ID is unchanged.
    pub fn digest_only(&self, d: &crate::dockerd::Dockerd, id: &str, repo: &str) -> String {
        let digest = self.push(d, id, repo);
        let tags = d.docker_ok(["image", "inspect", "--format", "{{json .RepoTags}}", id]);
        let tags: Vec<String> = serde_json::from_str(tags.trim()).expect("RepoTags");
        for tag in tags {
            d.docker_ok(["rmi", &tag]);
        }
        d.docker_ok(["pull", "--quiet", &digest]);
        digest
    }
}
