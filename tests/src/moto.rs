//! A real `moto_server` on a free 127.0.0.1 port, one per test for isolation, optionally
//! enforcing IAM; the test venv's AWS CLI against it.
//! The binary comes from `SHIPSHAPE_MOTO_SERVER` or `<workspace>/target/venv/bin/moto_server`
//! (installed by `scripts/test.sh`); the process is killed when the fixture drops.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long moto may take to answer its first request.
const STARTUP_LIMIT: Duration = Duration::from_secs(30);

/// A running `moto_server`; killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    log_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Moto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Moto").field("port", &self.port).finish()
    }
}

/// Path of the `moto_server` binary the fixture runs.
pub fn moto_server_path() -> PathBuf {
    match std::env::var_os("SHIPSHAPE_MOTO_SERVER") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => crate::workspace_root().join("target/venv/bin/moto_server"),
    }
}

/// One HTTP/1.0 request over a raw TCP socket; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let request = format!(
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:.80}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

impl Moto {
    /// Starts `moto_server` and waits until it answers HTTP. Panics (never skips) when the
    /// binary is missing or the server does not come up.
    pub fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// A moto that enforces IAM: the first `free_actions` requests are unauthenticated
    /// (for set-up), every later one is checked against the IAM policies created in it.
    pub fn start_enforcing_iam(free_actions: u32) -> Moto {
        Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", free_actions.to_string())])
    }

    /// Starts `moto_server` with extra environment variables (moto's settings). The
    /// readiness probe is a moto-api call, which IAM enforcement does not count.
    fn start_with(env: &[(&str, String)]) -> Moto {
        let bin = moto_server_path();
        if !bin.exists() {
            panic!(
                "moto_server not found at {} — run `bash scripts/test.sh` (it installs moto into target/venv) or set SHIPSHAPE_MOTO_SERVER",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("shipshape-moto-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for moto: {e}"));
        let log_path = dir.path().join("moto.log");
        let port = crate::free_port();
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the moto log handle: {e}"));
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} — run `bash scripts/test.sh` to install moto",
                    bin.display()
                )
            });
        let started = Instant::now();
        let mut moto = Moto {
            child,
            port,
            log_path,
            _dir: dir,
        };
        if let Err(e) = moto.wait_ready() {
            let log = std::fs::read_to_string(&moto.log_path).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            panic!(
                "moto_server did not start: {e} — run `bash scripts/test.sh` to (re)install moto. Log tail:\n{tail}"
            );
        }
        eprintln!("moto_server ready in {} ms", started.elapsed().as_millis());
        moto
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let port = self.port;
        let answers =
            || matches!(http(port, "GET", "/moto-api/data.json", ""), Ok((code, _)) if code < 500);
        match crate::wait_for_startup(&mut self.child, Instant::now() + STARTUP_LIMIT, answers) {
            crate::Startup::Ready => Ok(()),
            crate::Startup::Exited(status) => {
                Err(format!("moto_server exited early with {status}"))
            }
            crate::Startup::TimedOut => Err(format!(
                "no HTTP answer on 127.0.0.1:{port} within {}s",
                STARTUP_LIMIT.as_secs()
            )),
        }
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Path of moto's log (stdout+stderr), useful in assertion messages.
    pub fn log_path(&self) -> &std::path::Path {
        &self.log_path
    }

    /// Environment for the shipshape binary (or the aws CLI) to reach this moto.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_ACCESS_KEY_ID", "testing".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_DEFAULT_REGION", "us-east-1".to_string()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// [`Moto::env`] with `AWS_ENDPOINT_URL` replaced, e.g. by a proxy or a closed port.
    pub fn env_with_endpoint(&self, endpoint: &str) -> Vec<(String, String)> {
        self.env()
            .into_iter()
            .map(|(k, v)| {
                if k == "AWS_ENDPOINT_URL" {
                    (k, endpoint.to_owned())
                } else {
                    (k, v)
                }
            })
            .collect()
    }

    /// Runs the AWS CLI of the test venv (next to `moto_server`) against this moto with
    /// `--output text`; returns its trimmed stdout, panics when it fails.
    pub fn aws_cli(&self, args: &[&str]) -> String {
        self.aws_cli_as(&[], args)
    }

    /// Credentials of `role` as AWS CLI environment variables (moto's AssumeRole
    /// switches to the role's account).
    pub fn assume_role(&self, role: &str) -> Vec<(String, String)> {
        let out = self.aws_cli(&[
            "sts",
            "assume-role",
            "--role-arn",
            role,
            "--role-session-name",
            "seed",
            "--query",
            "Credentials.[AccessKeyId,SecretAccessKey,SessionToken]",
        ]);
        let parts: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "assume-role: {out}");
        vec![
            ("AWS_ACCESS_KEY_ID".into(), parts[0].into()),
            ("AWS_SECRET_ACCESS_KEY".into(), parts[1].into()),
            ("AWS_SESSION_TOKEN".into(), parts[2].into()),
        ]
    }

    /// [`Moto::aws_cli`] with `creds` (e.g. an assumed role's, which moto maps to the
    /// role's account) over the test credentials.
    pub fn aws_cli_as(&self, creds: &[(String, String)], args: &[&str]) -> String {
        let aws_cli = moto_server_path().with_file_name("aws");
        let out = Command::new(&aws_cli)
            .args(args)
            .args(["--output", "text"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.env())
            .envs(creds.iter().cloned())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", aws_cli.display()));
        assert!(
            out.status.success(),
            "aws {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// An SDK config pointing at this moto (us-east-1, static test credentials).
    pub async fn sdk_config(&self) -> aws_config::SdkConfig {
        let creds = aws_sdk_secretsmanager::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "shipshape-tests",
        );
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(self.endpoint())
            .credentials_provider(creds)
            .load()
            .await
    }

    /// Sets a moto state-manager transition for `model` (e.g. `ecs::task`), see
    /// <https://docs.getmoto.org/en/latest/docs/configuration/state_transition/>.
    pub fn set_transition(&self, model: &str, transition: serde_json::Value) {
        let body = serde_json::json!({ "model_name": model, "transition": transition }).to_string();
        match http(
            self.port,
            "POST",
            "/moto-api/state-manager/set-transition",
            &body,
        ) {
            Ok((code, _)) if code < 300 => {}
            Ok((code, text)) => panic!("moto set-transition for {model} answered {code}: {text}"),
            Err(e) => panic!("moto set-transition for {model} failed: {e}"),
        }
    }

    /// The transition moto currently applies to `model`.
    pub fn get_transition(&self, model: &str) -> serde_json::Value {
        let path = format!("/moto-api/state-manager/get-transition?model_name={model}");
        match http(self.port, "GET", &path, "") {
            Ok((code, body)) if code < 300 => serde_json::from_str(&body).unwrap_or_else(|e| {
                panic!("moto get-transition for {model}: bad JSON {body:?}: {e}")
            }),
            Ok((code, text)) => panic!("moto get-transition for {model} answered {code}: {text}"),
            Err(e) => panic!("moto get-transition for {model} failed: {e}"),
        }
    }

    /// Makes ECS task status advance only when described many times, so tasks stay in the
    /// status the test put them in (by default moto advances them on DescribeTasks).
    pub fn set_ecs_manual_transitions(&self) {
        self.set_transition(
            "ecs::task",
            serde_json::json!({ "progression": "manual", "times": 1_000_000 }),
        );
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
