//! Benchmark of `shipshape gc` against `docker image prune -a -f` on a private dockerd.
//! For each N (default 1000 and 5000; or the numbers given as arguments): load N
//! distinct small generated images (sharing one layer) plus a few hundred created containers, time the
//! plan (`gc --dry-run`, with its Engine API call count and peak RSS), then a full run
//! deleting every unprotected image; reload the same state and time the engine's prune.
//! Run: `cargo run --release -p shipshape-tests --bin bench-gc [N...]`.
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::{self, ImageSpec};

const OLD: i64 = 1_600_000_000;
const CONTAINERS: usize = 200;
const PLAN_RUNS: usize = 3;

fn specs(n: usize) -> Vec<ImageSpec> {
    (0..n)
        .map(|i| {
            let created = OLD + i as i64;
            // Light images: distinct IDs (own config) sharing one layer, as thousands of
            // images with their own layers take ~150 ms each to register on overlay2.
            let spec = ImageSpec::light(&format!("bench/r{}:t{i}", i % 100), created);
            if i % 10 == 9 {
                ImageSpec {
                    repo_tags: Vec::new(),
                    ..spec
                }
            } else {
                spec
            }
        })
        .collect()
}

/// Load the images and create `CONTAINERS` containers from the first of them.
fn load_state(d: &Dockerd, specs: &[ImageSpec]) -> Duration {
    let start = Instant::now();
    let ids = images::load(d, specs);
    let per_thread = CONTAINERS.div_ceil(8);
    std::thread::scope(|s| {
        for chunk in ids[..CONTAINERS.min(ids.len())].chunks(per_thread) {
            s.spawn(move || {
                for id in chunk {
                    d.docker_ok(["create", "--network", "none", id.as_str()]);
                }
            });
        }
    });
    start.elapsed()
}

fn clear_state(d: &Dockerd) {
    d.docker_ok(["container", "prune", "-f"]);
    d.docker_ok(["image", "prune", "-a", "-f"]);
}

fn image_count(d: &Dockerd) -> usize {
    d.docker_ok(["images", "-aq"]).lines().count()
}

/// The binary under test: the release build when present (the benchmark driver
/// itself need not be optimised), else the one next to this executable.
fn shipshape_path() -> std::path::PathBuf {
    let release = shipshape_tests::target_dir().join("release/shipshape");
    if release.exists() {
        release
    } else {
        shipshape_tests::bin::shipshape_path()
    }
}

struct Measured {
    wall: Duration,
    peak_rss_kib: u64,
    stdout: String,
    stderr: String,
}

/// Run the release binary under `/usr/bin/time` for its peak RSS.
fn shipshape(d: &Dockerd, args: &[&str]) -> Measured {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let time_out = dir.path().join("time");
    let start = Instant::now();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(&time_out)
        .arg(shipshape_path())
        .args([
            "--docker-host",
            &d.host(),
            "--log-level",
            "debug",
            "--log-format",
            "json",
        ])
        .args(args)
        .args(["--state", "/nonexistent/state.json"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run /usr/bin/time shipshape: {e}"));
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "shipshape {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let peak_rss_kib = std::fs::read_to_string(&time_out)
        .ok()
        .and_then(|t| t.trim().lines().last()?.trim().parse().ok())
        .unwrap_or(0);
    Measured {
        wall,
        peak_rss_kib,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn docker_calls(stderr: &str) -> usize {
    stderr
        .lines()
        .filter(|l| l.contains("\"docker call\""))
        .count()
}

/// Time from the first Engine API call to the "planned" log line: snapshot + plan
/// inside the process, without process start-up and report printing.
fn in_process_plan(stderr: &str) -> Option<Duration> {
    let ts = |l: &str| -> Option<DateTime<Utc>> {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        v["timestamp"].as_str()?.parse().ok()
    };
    let first = stderr
        .lines()
        .find(|l| l.contains("\"docker call\""))
        .and_then(ts)?;
    let planned = stderr
        .lines()
        .find(|l| l.contains("\"planned\""))
        .and_then(ts)?;
    (planned - first).to_std().ok()
}

fn count_action(stdout: &str, action: &str) -> usize {
    let doc: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("report is not JSON: {e}"));
    doc["images"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["action"] == action).count())
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let ns: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let ns = if ns.is_empty() { vec![1000, 5000] } else { ns };
    let d = Dockerd::start();
    let version = d.docker_ok([
        "version",
        "-f",
        "{{.Server.Version}} (API {{.Server.APIVersion}})",
    ]);
    println!(
        "bench-gc: private dockerd {} storage driver {}, {} created containers, binary {}",
        version.trim(),
        d.driver(),
        CONTAINERS,
        shipshape_path().display()
    );
    for n in ns {
        let specs = specs(n);
        let load = load_state(&d, &specs);
        let total = image_count(&d);
        println!(
            "\nN = {n}: loaded {total} images + {CONTAINERS} containers in {}",
            ms(load)
        );

        // Reference: the engine's own listing cost, as the docker CLI sees it.
        let mut lists: Vec<Duration> = (0..PLAN_RUNS)
            .map(|_| {
                let start = Instant::now();
                d.docker_ok(["image", "ls", "-q", "--no-trunc"]);
                start.elapsed()
            })
            .collect();
        lists.sort();
        println!(
            "  reference: `docker image ls -q` (one /images/json) median of {PLAN_RUNS}: {}",
            ms(lists[PLAN_RUNS / 2])
        );

        let mut plans: Vec<Measured> = (0..PLAN_RUNS)
            .map(|_| {
                shipshape(
                    &d,
                    &["gc", "--dry-run", "--min-age", "0s", "--output", "json"],
                )
            })
            .collect();
        plans.sort_by_key(|m| m.wall);
        let plan = &plans[PLAN_RUNS / 2];
        let would = count_action(&plan.stdout, "would delete");
        assert_eq!(image_count(&d), total, "--dry-run changed the engine");
        println!(
            "  plan (--dry-run, median of {PLAN_RUNS}): {} wall, {} snapshot+plan in process, \
             {} Engine API calls, peak RSS {} KiB, {would} would delete",
            ms(plan.wall),
            in_process_plan(&plan.stderr)
                .map(ms)
                .unwrap_or_else(|| "?".into()),
            docker_calls(&plan.stderr),
            plan.peak_rss_kib
        );

        let full = shipshape(&d, &["gc", "--min-age", "0s", "--output", "json"]);
        let deleted = count_action(&full.stdout, "deleted");
        let left = image_count(&d);
        println!(
            "  full run: {} wall, {deleted} deleted, {left} images left, {} Engine API calls, peak RSS {} KiB",
            ms(full.wall),
            docker_calls(&full.stderr),
            full.peak_rss_kib
        );
        assert_eq!(
            deleted, would,
            "the real run deleted other than the dry run said"
        );

        clear_state(&d);
        load_state(&d, &specs);
        assert_eq!(image_count(&d), total, "reloaded state differs");
        let start = Instant::now();
        let out = d.docker_ok(["image", "prune", "-a", "-f"]);
        let prune = start.elapsed();
        let pruned = out.lines().filter(|l| l.starts_with("deleted: ")).count();
        let prune_left = image_count(&d);
        println!(
            "  docker image prune -a -f: {} wall, {pruned} image records deleted, {prune_left} images left",
            ms(prune)
        );
        println!(
            "  ratio full run / prune: {:.2}",
            full.wall.as_secs_f64() / prune.as_secs_f64()
        );
        clear_state(&d);
    }
}
