//! Benchmark of `shipshape gc` against `docker image prune -a -f` on a private dockerd.
//! For each N (default 1000 and 5000; or the numbers given as arguments) it loads a CI
//! host's mix: most images with two tags in one repository (`$SHA` + `latest`), some
//! pushed to a local registry and pulled back by digest then tagged in another
//! repository (a tag plus a RepoDigest), a few legacy-builder chains (child with its
//! `Parent`), 10% dangling, and created containers from some of them. It times the
//! plan (`gc --dry-run`, with its Engine API call count and peak RSS) against one
//! `docker image ls`, then a full run deleting every unprotected image; reloads the
//! same mix and times the engine's prune, comparing what each left.
//! Run: `cargo run --release -p shipshape-tests --bin bench-gc [N...]`;
//! `BENCH_GC_LOGS=DIR` keeps each full run's debug log (JSON lines) as
//! `DIR/full-run-N.log`, for a breakdown of where its time went;
//! `BENCH_GC_ROUNDS=R` times R full runs and R prunes, alternating, each on the mix
//! reloaded and synced, and compares their medians; `BENCH_GC_CONCURRENCY=N` runs gc
//! with `[gc] concurrency = N`.
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::{self, ImageSpec};
use shipshape_tests::registry::DigestRegistry;

const OLD: i64 = 1_600_000_000;
const CONTAINERS: usize = 200;
const PLAN_RUNS: usize = 3;
/// Images pushed and pulled back by digest (each costs a push and a pull).
const DIGESTS: usize = 100;
/// Legacy-builder chains (parent + child).
const CHAINS: usize = 10;

/// What one load made: every image ID, and how many of each shape.
struct Mix {
    specs: Vec<ImageSpec>,
    /// Indices of the images to push and pull back by digest.
    digests: Vec<usize>,
}

fn mix(n: usize) -> Mix {
    let plain = n.saturating_sub(DIGESTS + 2 * CHAINS);
    let mut specs: Vec<ImageSpec> = (0..plain)
        .map(|i| {
            let created = OLD + i as i64;
            // Light images: distinct IDs (own config) sharing one layer, as thousands of
            // images with their own layers take ~150 ms each to register on overlay2.
            let mut spec = ImageSpec::light("x:x", created);
            spec.repo_tags = if i % 10 == 9 {
                Vec::new()
            } else {
                // One service per repository: its build's commit and `latest`.
                vec![
                    format!("ci/s{i}:{:08x}", i * 2_654_435_761 % (1 << 32)),
                    format!("ci/s{i}:latest"),
                ]
            };
            spec
        })
        .collect();
    let digests: Vec<usize> = (plain..plain + DIGESTS).collect();
    for i in &digests {
        specs.push(ImageSpec {
            repo_tags: Vec::new(),
            ..ImageSpec::light("x:x", OLD + *i as i64)
        });
    }
    for c in 0..CHAINS {
        let base = specs.len();
        specs.push(ImageSpec::new(&format!("chain/base{c}:1"), OLD));
        specs.push(ImageSpec::child(&format!("chain/app{c}:1"), OLD, base));
    }
    Mix { specs, digests }
}

/// Load the mix, push and pull back its digest images (tagging each `web{i}:prod`),
/// and create `CONTAINERS` containers from the first images.
fn load_state(d: &Dockerd, registry: &DigestRegistry, mix: &Mix) -> Duration {
    let start = Instant::now();
    let ids = images::load(d, &mix.specs);
    std::thread::scope(|s| {
        for part in mix.digests.chunks(mix.digests.len().div_ceil(4).max(1)) {
            let ids = &ids;
            s.spawn(move || {
                for &i in part {
                    registry.digest_only(d, &ids[i], &format!("pinned/web{i}"));
                    d.docker_ok(["tag", &ids[i], &format!("web{i}:prod")]);
                }
            });
        }
    });
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

/// Distinct images, the legacy builder's untagged intermediates included (the CLI
/// prints an image once per tag).
fn image_count(d: &Dockerd) -> usize {
    let out = d.docker_ok(["images", "-aq", "--no-trunc"]);
    out.lines().collect::<std::collections::BTreeSet<_>>().len()
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

/// `--config FILE` setting `[gc] concurrency` when `BENCH_GC_CONCURRENCY` is set
/// (default: none, the shipped default of 4).
fn gc_config(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let Some(n) = std::env::var("BENCH_GC_CONCURRENCY").ok() else {
        return Vec::new();
    };
    let path = dir.join("shipshape.toml");
    std::fs::write(&path, format!("[gc]\nconcurrency = {n}\n"))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    vec!["--config".into(), path.into()]
}

/// Flush what loading the mix left dirty, so neither timed run pays the other's
/// writeback.
fn sync() {
    nix::unistd::sync();
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
        .args(gc_config(dir.path()))
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

/// A field of a JSON log line (tracing puts them under `fields`).
fn log_field(line: &str, key: &str) -> Option<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    v.get("fields")
        .and_then(|f| f.get(key))
        .or_else(|| v.get(key))
        .cloned()
}

/// Where the plan's time went, from its debug lines: each snapshot read (they run
/// concurrently), the snapshot as a whole and the planning after it.
fn plan_breakdown(stderr: &str) -> String {
    let mut parts: Vec<String> = stderr
        .lines()
        .filter(|l| l.contains("\"snapshot read\""))
        .filter_map(|l| {
            let step = log_field(l, "step")?;
            let ms = log_field(l, "ms")?.as_f64()?;
            Some(format!("{} {ms:.1} ms", step.as_str()?))
        })
        .collect();
    if let Some(events) = stderr
        .lines()
        .find(|l| l.contains("\"engine event log replayed\""))
        .and_then(|l| log_field(l, "events"))
    {
        parts.push(format!("{events} events replayed"));
    }
    if let Some(l) = stderr.lines().find(|l| l.contains("\"planned\"")) {
        for key in ["snapshot_ms", "plan_ms"] {
            if let Some(ms) = log_field(l, key).and_then(|v| v.as_f64()) {
                parts.push(format!("{key} {ms:.1}"));
            }
        }
    }
    parts.join(", ")
}

/// The engine's own time for one endpoint, without any client parsing: `curl` on the
/// socket, median of `PLAN_RUNS`, with the answer's size.
fn engine_time(d: &Dockerd, path: &str) -> String {
    let mut runs: Vec<(f64, f64)> = (0..PLAN_RUNS)
        .filter_map(|_| {
            let out = Command::new("curl")
                .args([
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{time_total} %{size_download}",
                ])
                .arg("--unix-socket")
                .arg(d.socket_path())
                .arg(format!("http://engine{path}"))
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let mut it = text.split_whitespace();
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    match runs.get(runs.len() / 2) {
        Some((secs, bytes)) => format!("{:.1} ms ({:.0} KiB)", secs * 1000.0, bytes / 1024.0),
        None => "? (curl failed)".to_owned(),
    }
}

fn count_action(stdout: &str, action: &str) -> usize {
    let doc: serde_json::Value =
        serde_json::from_str(stdout).unwrap_or_else(|e| panic!("report is not JSON: {e}"));
    doc["images"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["action"] == action).count())
        .unwrap_or(0)
}

/// The machine's load average (1, 5, 15 min), printed with the figures it shaped.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
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
    let registry = DigestRegistry::start(&d);
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
        let mix = mix(n);
        let load = load_state(&d, &registry, &mix);
        let total = image_count(&d);
        println!(
            "\nN = {n}: loaded {total} images ({} with sha + latest, {DIGESTS} by digest + a tag \
             in another repository, {CHAINS} legacy chains, the rest dangling) + {CONTAINERS} \
             containers in {}; load average {}",
            mix.specs.iter().filter(|s| s.repo_tags.len() == 2).count(),
            ms(load),
            load_average()
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

        println!(
            "  plan breakdown (median run): {}",
            plan_breakdown(&plan.stderr)
        );
        let until = Utc::now().timestamp();
        println!(
            "  engine alone (curl, median of {PLAN_RUNS}): /images/json?all=1 {}, \
             /containers/json?all=1 {}, /info {}, /events (whole log) {}",
            engine_time(&d, "/v1.41/images/json?all=1"),
            engine_time(&d, "/v1.41/containers/json?all=1"),
            engine_time(&d, "/v1.41/info"),
            engine_time(&d, &format!("/v1.41/events?since=0&until={until}")),
        );

        let list = lists[PLAN_RUNS / 2];
        // What the dry run's estimates cost: the engine's `/system/df`.
        let mut dfs: Vec<Duration> = (0..PLAN_RUNS)
            .map(|_| {
                let start = Instant::now();
                d.docker_ok(["system", "df"]);
                start.elapsed()
            })
            .collect();
        dfs.sort();
        println!(
            "  `docker system df` (one /system/df, read by the dry run only) median of {PLAN_RUNS}: {}",
            ms(dfs[PLAN_RUNS / 2])
        );
        // The plan proper (snapshot + plan, what a real run pays too) ends at the
        // "planned" line; the dry run's `/system/df` and report come after it.
        let planned = in_process_plan(&plan.stderr).unwrap_or(plan.wall);
        println!(
            "  ratio plan (snapshot+plan) / `docker image ls`: {:.2} (goal <= 1.5); \
             dry-run wall / `docker image ls`: {:.2}",
            planned.as_secs_f64() / list.as_secs_f64(),
            plan.wall.as_secs_f64() / list.as_secs_f64()
        );

        println!("  load average before the full run: {}", load_average());
        sync();
        let full = shipshape(&d, &["gc", "--min-age", "0s", "--output", "json"]);
        if let Some(dir) = std::env::var_os("BENCH_GC_LOGS") {
            let path = std::path::Path::new(&dir).join(format!("full-run-{n}.log"));
            std::fs::write(&path, &full.stderr)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
        let deleted = count_action(&full.stdout, "deleted");
        let conflicts = full.stdout.matches("conflict: in use").count();
        let left = image_count(&d);
        println!(
            "  full run: {} wall, {deleted} deleted ({conflicts} conflicts), {left} images left, {} Engine API calls, peak RSS {} KiB",
            ms(full.wall),
            docker_calls(&full.stderr),
            full.peak_rss_kib
        );
        assert_eq!(
            deleted, would,
            "the real run deleted other than the dry run said"
        );

        // More rounds (`BENCH_GC_ROUNDS`, default 1) alternate the engine's prune and
        // our full run, each on the mix reloaded and synced; medians are compared.
        let rounds: usize = std::env::var("BENCH_GC_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let mut fulls = vec![full.wall];
        let mut prunes = Vec::new();
        let mut prune_left = 0;
        for round in 0..rounds {
            clear_state(&d);
            load_state(&d, &registry, &mix);
            assert_eq!(image_count(&d), total, "reloaded state differs");
            sync();
            let start = Instant::now();
            let out = d.docker_ok(["image", "prune", "-a", "-f"]);
            let prune = start.elapsed();
            let pruned = out.lines().filter(|l| l.starts_with("deleted: ")).count();
            prune_left = image_count(&d);
            println!(
                "  docker image prune -a -f: {} wall, {pruned} image records deleted, {prune_left} images left",
                ms(prune)
            );
            prunes.push(prune);
            if round + 1 < rounds {
                clear_state(&d);
                load_state(&d, &registry, &mix);
                sync();
                let again = shipshape(&d, &["gc", "--min-age", "0s", "--output", "json"]);
                assert_eq!(image_count(&d), left, "another full run left other images");
                println!(
                    "  full run again: {} wall, {} Engine API calls",
                    ms(again.wall),
                    docker_calls(&again.stderr)
                );
                fulls.push(again.wall);
            }
        }
        fulls.sort();
        prunes.sort();
        let (full_wall, prune_wall) = (fulls[fulls.len() / 2], prunes[prunes.len() / 2]);
        println!(
            "  ratio full run / prune (medians of {} and {}): {:.2} (goal <= 1.0); same images left: {}",
            fulls.len(),
            prunes.len(),
            full_wall.as_secs_f64() / prune_wall.as_secs_f64(),
            left == prune_left
        );
        clear_state(&d);
    }
}
