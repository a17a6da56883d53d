//! Benchmark: `shipshape bootstrap` (release binary) against the way operators do the
//! same job in user data today — `aws secretsmanager get-secret-value` + `aws s3 cp` +
//! `jq` + shell — both against the same moto_server. Prints the median wall time from
//! process start to ecs.config written over N runs, the ratio, the binary's size and
//! its peak RSS (`/usr/bin/time -v`). Run: `cargo build --release -p shipshape &&
//! cargo run --release -p shipshape-tests --bin bench-bootstrap`.
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use shipshape_tests::bench::{median, ms, release_binary};
use shipshape_tests::moto::{moto_server_path, Moto};

const RUNS: usize = 15;

/// The user-data way: two secrets, one S3 fragment, jq to build the auth JSON.
const REFERENCE_SCRIPT: &str = r#"#!/bin/bash
set -euo pipefail
cfg="$1"
gl=$(aws secretsmanager get-secret-value --secret-id prod/gitlab-registry --query SecretString --output text)
hub=$(aws secretsmanager get-secret-value --secret-id "$HUB_ARN" --region eu-west-1 --query SecretString --output text)
base=$(aws s3 cp s3://my-config/ecs/base.config -)
auth=$(jq -cn --argjson gl "$gl" --argjson hub "$hub" \
  '{"registry.gitlab.com": {username: $gl.username, password: $gl.password},
    "https://index.docker.io/v1/": {username: $hub.username, password: $hub.password}}')
umask 077
{
  echo "ECS_CLUSTER=prod"
  printf '%s\n' "$base"
  echo "ECS_ENGINE_AUTH_TYPE=docker"
  echo "ECS_ENGINE_AUTH_DATA=$auth"
} > "$cfg"
"#;

fn timed(cmd: &mut Command, out_file: &Path) -> Duration {
    let _ = std::fs::remove_file(out_file);
    let start = Instant::now();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let took = start.elapsed();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out_file.exists(), "{} not written", out_file.display());
    took
}

/// Parse "Maximum resident set size (kbytes): N" from `/usr/bin/time -v`.
fn max_rss_kib(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes):")
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no max RSS in /usr/bin/time output: {stderr}"))
}

fn main() {
    let bin = release_binary();
    let venv_bin = moto_server_path()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    assert!(
        venv_bin.join("aws").exists(),
        "aws CLI not found in {} — run `bash scripts/test.sh` (installs moto and awscli into target/venv)",
        venv_bin.display()
    );
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let hub_arn = rt.block_on(async {
        let sdk = moto.sdk_config().await;
        let sm = aws_sdk_secretsmanager::Client::new(&sdk);
        sm.create_secret()
            .name("prod/gitlab-registry")
            .secret_string(r#"{"username":"gitlab-bot","password":"p\"w$x= y ü"}"#)
            .send()
            .await
            .expect("CreateSecret");
        let eu = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .region(aws_config::Region::new("eu-west-1"))
                .build(),
        );
        let arn = eu
            .create_secret()
            .name("hub")
            .secret_string(r#"{"username":"hubuser","password":"hubpass"}"#)
            .send()
            .await
            .expect("CreateSecret")
            .arn()
            .expect("arn")
            .to_owned();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&sdk)
                .force_path_style(true)
                .build(),
        );
        s3.create_bucket()
            .bucket("my-config")
            .send()
            .await
            .expect("CreateBucket");
        s3.put_object()
            .bucket("my-config")
            .key("ecs/base.config")
            .body(
                b"ECS_ENABLE_TASK_IAM_ROLE=true\nECS_LOGLEVEL=info\n"
                    .to_vec()
                    .into(),
            )
            .send()
            .await
            .expect("PutObject");
        arn
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("ecs.config");
    let script = dir.path().join("userdata.sh");
    std::fs::write(&script, REFERENCE_SCRIPT).expect("write script");
    let path_env = format!(
        "{}:{}",
        venv_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let env = moto.env();
    let hub = format!("docker.io={hub_arn}");
    let shipshape_args: Vec<String> = [
        "bootstrap",
        "--ecs-config",
        cfg.to_str().expect("utf8"),
        "--cluster",
        "prod",
        "--registry-secret",
        "registry.gitlab.com=prod/gitlab-registry",
        "--registry-secret",
        &hub,
        "--from-s3",
        "s3://my-config/ecs/base.config",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();

    let shipshape_cmd = |prefix: Option<&str>| {
        let mut c = match prefix {
            Some(p) => {
                let mut c = Command::new(p);
                c.arg("-v").arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        c.args(&shipshape_args).env_clear().env("PATH", &path_env);
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };
    let reference_cmd = |prefix: Option<&str>| {
        let mut c = match prefix {
            Some(p) => {
                let mut c = Command::new(p);
                c.arg("-v").arg("bash");
                c
            }
            None => Command::new("bash"),
        };
        c.arg(&script)
            .arg(&cfg)
            .env_clear()
            .env("PATH", &path_env)
            .env("HUB_ARN", &hub_arn)
            .env("HOME", dir.path());
        for (k, v) in &env {
            c.env(k, v);
        }
        c
    };

    // Warm-up (page cache, moto's first-request costs), then alternate the two.
    timed(&mut shipshape_cmd(None), &cfg);
    timed(&mut reference_cmd(None), &cfg);
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        ours.push(timed(&mut shipshape_cmd(None), &cfg));
        theirs.push(timed(&mut reference_cmd(None), &cfg));
    }
    let ours_m = median(ours.clone());
    let theirs_m = median(theirs.clone());

    let rss = |mut c: Command| {
        let _ = std::fs::remove_file(&cfg);
        let out = c.stdin(Stdio::null()).output().expect("/usr/bin/time");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        max_rss_kib(&String::from_utf8_lossy(&out.stderr))
    };
    let ours_rss = rss(shipshape_cmd(Some("/usr/bin/time")));
    let theirs_rss = rss(reference_cmd(Some("/usr/bin/time")));
    let size = std::fs::metadata(&bin).expect("binary").len();

    println!("bootstrap benchmark against moto_server ({RUNS} runs each, after one warm-up)");
    println!(
        "  job: 2 Secrets Manager secrets (one by ARN in eu-west-1) + 1 S3 fragment -> ecs.config"
    );
    println!(
        "  shipshape                  median {:8.1} ms  min {:8.1} ms  max {:8.1} ms",
        ms(ours_m),
        ms(*ours.iter().min().expect("runs")),
        ms(*ours.iter().max().expect("runs"))
    );
    println!(
        "  aws CLI + jq + bash        median {:8.1} ms  min {:8.1} ms  max {:8.1} ms",
        ms(theirs_m),
        ms(*theirs.iter().min().expect("runs")),
        ms(*theirs.iter().max().expect("runs"))
    );
    println!(
        "  ratio (reference / shipshape medians): {:.1}x",
        theirs_m.as_secs_f64() / ours_m.as_secs_f64()
    );
    println!(
        "  shipshape binary size: {} bytes ({:.1} MiB), {}",
        size,
        size as f64 / 1048576.0,
        bin.display()
    );
    println!("  peak RSS (/usr/bin/time -v): shipshape {ours_rss} KiB, reference script tree {theirs_rss} KiB");

    credential_helper(&bin, &moto);
}

const HELPER_RUNS: usize = 20;

/// `docker-credential-shipshape get` (a link to the binary) against the same moto:
/// a configured registry (one GetSecretValue) and an unconfigured one (no AWS call).
fn credential_helper(bin: &Path, moto: &Moto) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let link = dir.path().join("docker-credential-shipshape");
    std::os::unix::fs::symlink(bin, &link).expect("link");
    let toml = dir.path().join("shipshape.toml");
    std::fs::write(
        &toml,
        "[bootstrap]\nregistry_secret = { \"registry.gitlab.com\" = \"prod/gitlab-registry\" }\n",
    )
    .expect("config");
    let get = |registry: &str, want_ok: bool| {
        let start = Instant::now();
        let mut child = Command::new(&link)
            .arg("get")
            .env_clear()
            .env("SHIPSHAPE_CONFIG", &toml)
            .envs(moto.env())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn helper");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(registry.as_bytes())
            .expect("write");
        let out = child.wait_with_output().expect("helper");
        let took = start.elapsed();
        assert_eq!(
            out.status.success(),
            want_ok,
            "{registry}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        took
    };
    get("registry.gitlab.com", true);
    let configured: Vec<Duration> = (0..HELPER_RUNS)
        .map(|_| get("registry.gitlab.com", true))
        .collect();
    let unconfigured: Vec<Duration> = (0..HELPER_RUNS).map(|_| get("quay.io", false)).collect();
    println!("docker-credential-shipshape get ({HELPER_RUNS} runs each, after one warm-up)");
    for (what, xs) in [
        ("configured (GetSecretValue)", &configured),
        ("unconfigured (no AWS call)", &unconfigured),
    ] {
        println!(
            "  {what:<28} median {:8.1} ms  min {:8.1} ms  max {:8.1} ms",
            ms(median(xs.clone())),
            ms(*xs.iter().min().expect("runs")),
            ms(*xs.iter().max().expect("runs"))
        );
    }
}
