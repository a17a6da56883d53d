//! Benchmark: `docker pull` with `docker-credential-shipshape` (config.json names the
//! helper, which answers from Secrets Manager at pull time) against the reference, a
//! plain config.json holding the password in `auths`. Both pull the same image from
//! Debian's `docker-registry` (htpasswd, bcrypt) through a private dockerd with the real
//! docker CLI; the helper asks moto. The image is removed before every pull, the two
//! ways alternate, and the median of `PULL_RUNS` (default 15) each is printed with the
//! difference and the ratio.
//!
//! Run: `cargo build --release -p shipshape && cargo run --release -p shipshape-tests
//! --bin bench-pull` (`SHIPSHAPE_BIN` picks another binary).
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use shipshape_tests::aws::creds;
use shipshape_tests::bench::{median, ms, release_binary};
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::busybox_image;
use shipshape_tests::moto::Moto;
use shipshape_tests::registry::Registry;

const USER: &str = "bench-user";
const PASSWORD: &str = "bench-pw-3c1e";

/// One client configuration: a config dir for the CLI and the environment it runs with.
struct Client {
    config_dir: PathBuf,
    env: Vec<(String, String)>,
}

impl Client {
    fn docker(&self, d: &Dockerd, args: &[&str]) -> Command {
        let mut cmd = d.docker();
        cmd.arg("--config")
            .arg(&self.config_dir)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd
    }

    /// Wall time of one `docker pull image`.
    fn pull(&self, d: &Dockerd, image: &str) -> Duration {
        let start = Instant::now();
        let out = self
            .docker(d, &["pull", "-q", image])
            .output()
            .expect("docker pull");
        let took = start.elapsed();
        assert!(
            out.status.success(),
            "pull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        took
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn main() {
    let runs: usize = std::env::var("PULL_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let bin = release_binary();
    let registry = Registry::start(USER, PASSWORD);
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let sdk = moto.sdk_config().await;
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name("ci/registry")
            .secret_string(creds(USER, PASSWORD))
            .send()
            .await
            .expect("CreateSecret");
    });
    let d = Dockerd::start();
    busybox_image(&d, "local/busybox:1");
    let image = format!("{}/bench/busybox:1", registry.host());
    d.docker_ok(["tag", "local/busybox:1", &image]);
    let work = tempfile::tempdir().expect("tempdir");

    // The reference: the password in config.json's auths.
    let plain = Client {
        config_dir: work.path().join("plain"),
        env: Vec::new(),
    };
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    write(
        &plain.config_dir.join("config.json"),
        &format!(
            r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#,
            registry.host()
        ),
    );
    // Ours: credHelpers names shipshape; the helper (a link to the binary) on PATH.
    let bin_dir = work.path().join("bin");
    std::fs::create_dir_all(&bin_dir).expect("mkdir");
    std::os::unix::fs::symlink(&bin, bin_dir.join("docker-credential-shipshape")).expect("link");
    let toml = work.path().join("shipshape.toml");
    write(
        &toml,
        &format!(
            "[bootstrap]\nregistry_secret = {{ \"{}\" = \"ci/registry\" }}\n",
            registry.host()
        ),
    );
    let mut env = moto.env();
    env.push((
        "PATH".to_owned(),
        format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    ));
    env.push(("SHIPSHAPE_CONFIG".to_owned(), toml.display().to_string()));
    let helper = Client {
        config_dir: work.path().join("helper"),
        env,
    };
    write(
        &helper.config_dir.join("config.json"),
        &format!(r#"{{"credHelpers":{{"{}":"shipshape"}}}}"#, registry.host()),
    );

    let out = plain
        .docker(&d, &["push", "-q", &image])
        .output()
        .expect("push");
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Warm-up of both paths (and proof the helper's answer is what the registry wants).
    for client in [&plain, &helper] {
        d.docker_ok(["rmi", &image]);
        client.pull(&d, &image);
    }
    let (mut with_plain, mut with_helper) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (client, times) in [(&plain, &mut with_plain), (&helper, &mut with_helper)] {
            d.docker_ok(["rmi", &image]);
            times.push(client.pull(&d, &image));
        }
    }
    println!(
        "docker pull of {image} (busybox, one layer) through a private dockerd, {runs} runs each, alternating"
    );
    for (what, xs) in [
        ("plain config.json (auths)", &with_plain),
        ("docker-credential-shipshape", &with_helper),
    ] {
        println!(
            "  {what:<28} median {:8.1} ms  min {:8.1} ms  max {:8.1} ms",
            ms(median(xs.clone())),
            ms(*xs.iter().min().expect("runs")),
            ms(*xs.iter().max().expect("runs"))
        );
    }
    let (a, b) = (median(with_helper), median(with_plain));
    println!(
        "helper - plain: {:+.1} ms; ratio helper/plain {:.2}",
        ms(a) - ms(b),
        a.as_secs_f64() / b.as_secs_f64()
    );
}
