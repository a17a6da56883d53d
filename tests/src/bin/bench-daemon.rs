//! Idle cost of `shipshape daemon` beside docuum: a private dockerd holding 1,000
//! images; each daemon is started, left to settle, then its process tree's resident
//! memory and CPU time are read from /proc over one minute. Prints both and the ratio.
//!
//! Then, with shipshape still running, a container event storm (`STORM_CYCLES`, default
//! 2,000 create/start/die/destroy cycles through the Engine API, 4 at a time) and its RSS
//! once settled again. RSS is also split into anonymous (heap, stacks) and file-backed
//! (the binary's code) pages.
//!
//! `SHIPSHAPE_BIN` / `DOCUUM_BIN` pick the binaries (default: the built shipshape next
//! to this bench, `docuum` on PATH); `BENCH_SECONDS` shortens the window.
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::{self, ImageSpec};

const IMAGES: usize = 1000;

/// RssAnon and RssFile (KiB) of one process.
fn rss_split(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (kib("RssAnon:"), kib("RssFile:") + kib("RssShmem:"))
}

/// Resident KiB of one process per mapping kind, from /proc/PID/smaps: the binary's
/// own sections by permission (text `r-x`, rodata `r--`, data `rw-`), each shared
/// library, the heap, thread stacks and other anonymous mappings, largest first. It
/// says which pages an idle RSS figure is made of.
fn smaps_breakdown(pid: u32) -> Vec<(String, u64)> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
    let mut sums: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    let mut kind = String::new();
    for line in smaps.lines() {
        let mut f = line.split_whitespace();
        let first = f.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: `start-end perms offset dev inode [path]`.
            let perms = f.next().unwrap_or_default();
            let path = f.nth(3).unwrap_or_default();
            let sect = &perms[..3.min(perms.len())];
            kind = if std::path::Path::new(path) == exe {
                format!("binary {sect}")
            } else if path.starts_with('/') {
                let name = path.rsplit('/').next().unwrap_or(path);
                format!("{name} {sect}")
            } else if path.is_empty() {
                format!("anonymous {sect}")
            } else {
                path.to_owned()
            };
        } else if first == "Rss:" {
            let kib: u64 = f.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            *sums.entry(kind.clone()).or_default() += kib;
        }
    }
    let mut out: Vec<(String, u64)> = sums.into_iter().filter(|(_, k)| *k > 0).collect();
    out.sort_by_key(|b| std::cmp::Reverse(b.1));
    out
}

fn print_breakdown(label: &str, pid: u32) {
    let parts: Vec<String> = smaps_breakdown(pid)
        .iter()
        .map(|(kind, kib)| format!("{kind} {kib}"))
        .collect();
    println!("{label} resident KiB by mapping: {}", parts.join(", "));
}

/// `cycles` containers created, started, waited for and removed, `parallel` at a time:
/// create, start, die and destroy events for the daemon to follow.
fn storm(d: &Dockerd, image: &str, cycles: usize, parallel: usize) -> Duration {
    use bollard::models::{ContainerCreateBody, HostConfig};
    use futures_util::StreamExt;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t = Instant::now();
    rt.block_on(async {
        let docker = d.client().await;
        futures_util::stream::iter(0..cycles)
            .for_each_concurrent(parallel, |_| {
                let docker = docker.clone();
                async move {
                    let body = ContainerCreateBody {
                        image: Some(image.to_owned()),
                        cmd: Some(vec!["true".to_owned()]),
                        host_config: Some(HostConfig {
                            network_mode: Some("none".to_owned()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    };
                    let id = docker
                        .create_container(None, body)
                        .await
                        .expect("create container")
                        .id;
                    docker
                        .start_container(&id, None)
                        .await
                        .expect("start container");
                    let _ = docker.wait_container(&id, None).collect::<Vec<_>>().await;
                    docker
                        .remove_container(&id, None)
                        .await
                        .expect("remove container");
                }
            })
            .await;
    });
    t.elapsed()
}

/// utime+stime (ticks) and VmRSS (KiB) of one process.
fn proc_stat(pid: u32) -> Option<(u64, u64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)`, which may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ppid: u32 = f.get(1)?.parse().ok()?;
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()?
        + f.get(12)?.parse::<u64>().ok()?
        + f.get(13)?.parse::<u64>().ok()?
        + f.get(14)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Some((ticks, rss, ppid))
}

/// CPU ticks (children reaped included) and RSS (KiB) of `root` and its descendants.
fn tree(root: u32) -> (u64, u64, usize) {
    let mut all: Vec<(u32, u64, u64, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            if let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() {
                if let Some((t, r, pp)) = proc_stat(pid) {
                    all.push((pid, t, r, pp));
                }
            }
        }
    }
    let mut members = vec![root];
    let mut i = 0;
    while i < members.len() {
        let parent = members[i];
        members.extend(all.iter().filter(|p| p.3 == parent).map(|p| p.0));
        i += 1;
    }
    let (mut ticks, mut rss) = (0, 0);
    for p in all.iter().filter(|p| members.contains(&p.0)) {
        ticks += p.1;
        rss += p.2;
    }
    (ticks, rss, members.len())
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Wait until the tree uses < 2% CPU for 3 consecutive seconds (max 180 s).
fn settle(pid: u32, tck: f64) -> Duration {
    let t0 = Instant::now();
    let mut quiet = 0;
    let mut last = tree(pid).0;
    while quiet < 3 && t0.elapsed() < Duration::from_secs(180) {
        std::thread::sleep(Duration::from_secs(1));
        let now = tree(pid).0;
        quiet = if ((now - last) as f64 / tck) < 0.02 {
            quiet + 1
        } else {
            0
        };
        last = now;
    }
    t0.elapsed()
}

struct Figures {
    rss_kib: u64,
    max_rss_kib: u64,
    cpu_seconds: f64,
    processes: usize,
}

fn measure(child: &mut Child, window: Duration, tck: f64) -> Figures {
    let pid = child.id();
    let (t0, _, _) = tree(pid);
    let start = Instant::now();
    let mut max_rss = 0;
    while start.elapsed() < window {
        std::thread::sleep(Duration::from_secs(1));
        max_rss = max_rss.max(tree(pid).1);
        assert!(child.try_wait().expect("wait").is_none(), "process exited");
    }
    let (t1, rss, n) = tree(pid);
    Figures {
        rss_kib: rss,
        max_rss_kib: max_rss.max(rss),
        cpu_seconds: (t1 - t0) as f64 / tck,
        processes: n,
    }
}

fn stop(mut child: Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn main() {
    let window = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let shipshape = std::env::var_os("SHIPSHAPE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(shipshape_tests::bin::shipshape_path);
    let docuum = std::env::var_os("DOCUUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("docuum"));
    let tck = clk_tck();
    let d = Dockerd::start();
    let t = Instant::now();
    let specs: Vec<ImageSpec> = (0..IMAGES)
        .map(|n| ImageSpec::light(&format!("bench/img{n}:1"), 1_600_000_000 + n as i64))
        .collect();
    for chunk in specs.chunks(250) {
        images::load(&d, chunk);
    }
    println!(
        "loaded {IMAGES} images in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    let work = tempfile::tempdir().expect("tempdir");

    // shipshape: gc job off, so only tracking, reconciliation and pings remain.
    let cfg = work.path().join("shipshape.toml");
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nstate = \"{}\"\n[daemon.jobs.gc]\nenabled = false\n",
            work.path().join("state.json").display()
        ),
    )
    .expect("config");
    let ours = Command::new(&shipshape)
        .args(["--config"])
        .arg(&cfg)
        .args(["--docker-host", &d.host(), "--log-level", "warn", "daemon"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", shipshape.display()));
    let mut ours = ours;
    let spawned = Instant::now();
    let settled = settle(ours.id(), tck);
    let state_images = shipshape::last_use::LastUseState::load(&work.path().join("state.json"))
        .ok()
        .flatten()
        .map_or(0, |s| s.images.len());
    println!(
        "shipshape settled after {:.1}s, tracking {state_images} images",
        settled.as_secs_f64()
    );
    // The daemon hands start-up's pages back 30 s after READY (`daemon::RELEASE_AFTER_READY`);
    // idle is measured from then on, start-up's own figure is printed beside it.
    let (anon, file) = rss_split(ours.id());
    println!(
        "shipshape before the first release: RSS {} KiB (anonymous {anon} KiB, file-backed {file} KiB)",
        anon + file
    );
    let first_release = Duration::from_secs(32);
    if let Some(wait) = first_release.checked_sub(spawned.elapsed()) {
        std::thread::sleep(wait);
    }
    println!(
        "idle window starts {:.0}s after start",
        spawned.elapsed().as_secs_f64()
    );
    let a = measure(&mut ours, window, tck);
    let (anon, file) = rss_split(ours.id());
    println!("shipshape idle RSS split: anonymous {anon} KiB, file-backed {file} KiB");
    print_breakdown("shipshape idle", ours.id());

    let cycles: usize = std::env::var("STORM_CYCLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let busybox = images::busybox_image(&d, "storm/busybox:1");
    let took = storm(&d, "storm/busybox:1", cycles, 4);
    println!(
        "event storm: {cycles} container cycles ({} events) in {:.1}s",
        cycles * 4,
        took.as_secs_f64()
    );
    let settled = settle(ours.id(), tck);
    let storm_figures = measure(&mut ours, Duration::from_secs(10), tck);
    let (anon, file) = rss_split(ours.id());
    let storm_seen = shipshape::last_use::LastUseState::load(&work.path().join("state.json"))
        .ok()
        .flatten()
        .and_then(|s| s.last_used(&busybox))
        .is_some();
    println!(
        "shipshape after the storm (settled {:.1}s): RSS {} KiB (max {} KiB during 10 s), anonymous {anon} KiB, file-backed {file} KiB; storm image tracked: {storm_seen}",
        settled.as_secs_f64(),
        storm_figures.rss_kib,
        storm_figures.max_rss_kib
    );
    print_breakdown("shipshape after the storm", ours.id());
    stop(ours);

    // docuum: threshold far above usage so it only watches; own HOME for its state.
    let home = work.path().join("docuum-home");
    std::fs::create_dir_all(&home).expect("home");
    let mut theirs = Command::new(&docuum)
        .args(["--threshold", "1 TB"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", work.path().join("docker-cfg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(work.path().join("docuum.log")).expect("log"),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", docuum.display()));
    let settled = settle(theirs.id(), tck);
    println!("docuum settled after {:.1}s", settled.as_secs_f64());
    let b = measure(&mut theirs, window, tck);
    stop(theirs);
    let log = std::fs::read_to_string(work.path().join("docuum.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(3).collect();
    println!("docuum log tail: {tail:?}");

    let secs = window.as_secs_f64();
    for (name, f) in [("shipshape daemon", &a), ("docuum", &b)] {
        println!(
            "{name:17} RSS {:>7} KiB (max {:>7}) over {} process(es); CPU {:.3}s in {:.0}s = {:.3}%",
            f.rss_kib,
            f.max_rss_kib,
            f.processes,
            f.cpu_seconds,
            secs,
            100.0 * f.cpu_seconds / secs
        );
    }
    println!(
        "ratio shipshape/docuum: RSS {:.2}, CPU {}",
        a.rss_kib as f64 / b.rss_kib.max(1) as f64,
        if b.cpu_seconds > 0.0 {
            format!("{:.2}", a.cpu_seconds / b.cpu_seconds)
        } else {
            "n/a (docuum used no measurable CPU)".to_owned()
        }
    );
}
