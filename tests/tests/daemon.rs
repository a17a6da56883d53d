//! `shipshape daemon` as systemd runs it, against a private dockerd: the notify socket
//! (READY, watchdog rate, STOPPING), last use tracked from real Docker events and
//! surviving a dockerd restart, SIGHUP with a broken config, disk-pressure GC on a
//! small tmpfs data root, SIGTERM during GC, and `/metrics` read with a real parser.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use shipshape_tests::aws::Aws;
use shipshape_tests::daemon::Daemon;
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::free_port;
use shipshape_tests::images::{self, ImageSpec};
use shipshape_tests::prometheus::{sample, scrape};

const OLD: i64 = 1_600_000_000; // 2020-09-13

fn image_count(d: &Dockerd) -> usize {
    d.image_ids().len()
}

const QUIET: &str = r#"
[daemon]
state = "@STATE@"
[daemon.jobs.gc]
enabled = false
"#;

#[test]
fn notify_socket_gets_ready_watchdog_pings_at_half_the_interval_and_stopping() {
    let d = Dockerd::start();
    // WATCHDOG_USEC = 1s: pings expected every 500 ms.
    let mut daemon = Daemon::start(&d, QUIET, &[("WATCHDOG_USEC", "1000000")]);
    assert!(
        daemon.last_status().starts_with("STATUS=Docker: connected"),
        "{}",
        daemon.last_status()
    );
    std::thread::sleep(Duration::from_millis(3200));
    let pings = daemon.notes_matching("WATCHDOG=1");
    assert!(
        (5..=8).contains(&pings.len()),
        "{} pings in 3.2s",
        pings.len()
    );
    for w in pings.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!(
            gap >= Duration::from_millis(300) && gap <= Duration::from_millis(900),
            "watchdog gap {gap:?}"
        );
    }
    let (code, took) = daemon.terminate(Duration::from_secs(20));
    assert_eq!(code, 0, "{}", daemon.log());
    assert!(took < Duration::from_secs(10), "{took:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(daemon.noted("STOPPING=1"));
    // READY came before the first STOPPING, and nothing after STOPPING but status.
    let notes = daemon.notes.lock().expect("lock").clone();
    let ready = notes
        .iter()
        .position(|(_, l)| l == "READY=1")
        .expect("ready");
    let stopping = notes
        .iter()
        .position(|(_, l)| l == "STOPPING=1")
        .expect("stopping");
    assert!(ready < stopping);
}

#[test]
fn docker_events_move_last_use_and_tracking_survives_a_dockerd_restart() {
    let mut d = Dockerd::start();
    let busybox = images::busybox_image(&d, "busybox:test");
    let other = images::load(&d, &[ImageSpec::new("other/app:1", OLD)]).remove(0);
    let doomed = images::load(&d, &[ImageSpec::new("doomed/app:1", OLD)]).remove(0);
    let mut daemon = Daemon::start(&d, QUIET, &[]);
    daemon.wait_for("first state save", Duration::from_secs(10), || {
        daemon.last_used(&busybox).is_some()
    });
    let first_seen = daemon.last_used(&busybox).expect("busybox tracked");

    // run → create/start/die: busybox's last use moves forward.
    std::thread::sleep(Duration::from_millis(1100));
    images::run_container(&d, "busybox:test", "c1", &["true"]);
    daemon.wait_for("busybox last use to move", Duration::from_secs(15), || {
        daemon.last_used(&busybox).is_some_and(|t| t > first_seen)
    });
    // rmi → untag/delete: the image is forgotten.
    d.docker_ok(["rmi", "doomed/app:1"]);
    daemon.wait_for(
        "deleted image to leave the state",
        Duration::from_secs(15),
        || {
            daemon
                .state()
                .is_some_and(|s| !s.images.contains_key(&doomed))
        },
    );
    // load → a new image tracked from the event (reconciliation is 10 minutes away).
    let loaded_at = Utc::now();
    let fresh = images::load(&d, &[ImageSpec::new("fresh/app:1", OLD)]).remove(0);
    daemon.wait_for("loaded image tracked", Duration::from_secs(15), || {
        daemon
            .last_used(&fresh)
            .is_some_and(|t| t >= loaded_at - chrono::Duration::seconds(1))
    });

    // dockerd goes away under the daemon: it stays up and says so.
    d.stop();
    daemon.wait_for(
        "STATUS to report Docker unavailable",
        Duration::from_secs(30),
        || {
            daemon
                .last_status()
                .starts_with("STATUS=Docker unavailable")
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        daemon.alive(),
        "daemon died with dockerd:\n{}",
        daemon.log()
    );
    d.restart();
    daemon.wait_for("reconnection", Duration::from_secs(60), || {
        daemon.last_status().starts_with("STATUS=Docker: connected")
    });
    // Tracking resumed: a new container's image gets a fresh last use.
    let before = daemon.last_used(&other).expect("other tracked");
    let restarted_at = Utc::now();
    images::create_container(&d, "other/app:1", "c2", &["true"]);
    daemon.wait_for("last use after restart", Duration::from_secs(15), || {
        daemon
            .last_used(&other)
            .is_some_and(|t| t > before && t >= restarted_at - chrono::Duration::seconds(1))
    });
    assert!(daemon.log().contains("Docker unavailable; reconnecting"));
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", daemon.log());
}

#[test]
fn sighup_with_a_broken_config_keeps_the_old_schedule_and_says_why() {
    let d = Dockerd::start();
    let every_second = r#"
[gc]
min_age = "1000d"
[daemon]
state = "@STATE@"
[daemon.jobs.gc]
schedule = "* * * * * *"
"#;
    let mut daemon = Daemon::start(&d, every_second, &[]);
    let gc_runs = |daemon: &Daemon| daemon.log().matches("job started").count();
    daemon.wait_for("gc to run twice", Duration::from_secs(15), || {
        gc_runs(&daemon) >= 2
    });

    std::fs::write(
        daemon.path("shipshape.toml"),
        "[daemon.jobs.gc]\nschedule = \"every tuesday\"\n",
    )
    .expect("write");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for("reload refusal", Duration::from_secs(10), || {
        daemon.log().contains("keeping the previous one")
    });
    let log = daemon.log();
    let refusal = log
        .lines()
        .find(|l| l.contains("keeping the previous one"))
        .expect("line");
    assert!(refusal.contains("daemon.jobs.gc.schedule"), "{refusal}");
    let after_refusal = gc_runs(&daemon);
    daemon.wait_for(
        "old schedule to keep firing",
        Duration::from_secs(10),
        || gc_runs(&daemon) >= after_refusal + 2,
    );
    assert!(daemon.alive());

    // A valid config that disables gc takes effect.
    std::fs::write(
        daemon.path("shipshape.toml"),
        QUIET.replace("@STATE@", &daemon.path("state.json").display().to_string()),
    )
    .expect("write");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for("reload", Duration::from_secs(10), || {
        daemon.log().contains("configuration reloaded")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let settled = gc_runs(&daemon);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(gc_runs(&daemon), settled, "gc still scheduled after reload");
    assert!(daemon.noted("RELOADING=1"));
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0);
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_the_gc_deletions() {
    let d = Dockerd::start();
    let specs: Vec<ImageSpec> = (0..6)
        .map(|n| ImageSpec::light(&format!("stale/{n}:1"), OLD + n))
        .collect();
    images::load(&d, &specs);
    assert_eq!(image_count(&d), 6);
    let port = free_port();
    let config = format!(
        r#"
[gc]
min_age = "0s"
[daemon]
state = "@STATE@"
[daemon.jobs.gc]
schedule = "*/2 * * * * *"
[metrics]
listen = "127.0.0.1:{port}"
"#
    );
    let mut daemon = Daemon::start(&d, &config, &[]);
    daemon.wait_for("gc to delete the images", Duration::from_secs(30), || {
        image_count(&d) == 0
    });
    daemon.wait_for("gc run recorded", Duration::from_secs(10), || {
        sample(&scrape(port), "shipshape_gc_images_deleted_total", None) >= 6.0
    });
    let m = scrape(port);
    assert_eq!(sample(&m, "shipshape_gc_images_deleted_total", None), 6.0);
    assert!(sample(&m, "shipshape_job_runs_total", Some(("job", "gc"))) >= 1.0);
    assert_eq!(
        sample(&m, "shipshape_job_failures_total", Some(("job", "gc"))),
        0.0
    );
    assert!(
        sample(
            &m,
            "shipshape_job_last_success_timestamp_seconds",
            Some(("job", "gc"))
        ) > 1.7e9
    );
    assert!(sample(&m, "shipshape_gc_reclaimed_bytes_total", None) >= 0.0);
    assert_eq!(sample(&m, "shipshape_docker_up", None), 1.0);
    assert!(
        sample(&m, "shipshape_docker_events_total", None) >= 6.0,
        "delete events seen"
    );
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0);
}

#[test]
fn disk_above_high_water_triggers_gc_down_to_low_water() {
    let d = Dockerd::builder().tmpfs_data_root(256 << 20).start();
    let specs: Vec<ImageSpec> = (0..12)
        .map(|n| ImageSpec::new(&format!("big/{n}:1"), OLD + n * 100).payload(8 << 20))
        .collect();
    for chunk in specs.chunks(4) {
        images::load(&d, chunk);
    }
    let before = d.data_root_used_pct();
    assert!(before > 35.0, "test set-up: only {before:.1}% used");
    let high = before + 3.0;
    let low = before - 15.0;
    let config = format!(
        r#"
[gc]
min_age = "0s"
high_water = "{high:.0}%"
low_water = "{low:.0}%"
[daemon]
state = "@STATE@"
disk_check_interval = "1s"
[daemon.jobs.gc]
enabled = false
"#
    );
    let daemon = Daemon::start(&d, &config, &[]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(image_count(&d), 12, "GC ran below high water");
    // Cross high water with a plain file on Docker's filesystem (GC cannot remove it).
    std::fs::write(d.data_root().join("filler"), vec![7u8; 16 << 20]).expect("filler");
    let crossed = Instant::now();
    let now_pct = d.data_root_used_pct();
    assert!(
        now_pct > high,
        "test set-up: {now_pct:.1}% is not above {high:.1}%"
    );
    let deadline = crossed + Duration::from_secs(10);
    let reaction = loop {
        if daemon.log().contains("disk above high water; starting GC") {
            break crossed.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "no disk-pressure GC:\n{}",
            daemon.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    daemon.wait_for("usage under low water", Duration::from_secs(60), || {
        d.data_root_used_pct() <= low + 0.5
    });
    eprintln!(
        "disk-pressure reaction: {} ms from crossing high water to GC start (check interval 1s); {:.1}% -> {:.1}%",
        reaction.as_millis(),
        now_pct,
        d.data_root_used_pct()
    );
    assert!(reaction < Duration::from_secs(3), "{reaction:?}");
    let left = image_count(&d);
    assert!(left < 12 && left > 0, "{left} images left");
}

#[test]
fn sigterm_during_gc_exits_zero_within_the_bound_with_state_saved() {
    let d = Dockerd::start();
    let specs: Vec<ImageSpec> = (0..400)
        .map(|n| ImageSpec::light(&format!("many/{n}:1"), OLD + n))
        .collect();
    images::load(&d, &specs);
    let config = r#"
[gc]
min_age = "0s"
concurrency = 1
[daemon]
state = "@STATE@"
shutdown_timeout = "15s"
[daemon.jobs.gc]
schedule = "* * * * * *"
"#;
    let mut daemon = Daemon::start(&d, config, &[]);
    daemon.wait_for("gc to start", Duration::from_secs(15), || {
        daemon.log().contains("job started")
    });
    std::thread::sleep(Duration::from_millis(300));
    let running = !daemon.log().contains("job finished");
    let (code, took) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", daemon.log());
    assert!(took < Duration::from_secs(16), "{took:?}");
    let state = daemon.state().expect("state saved");
    assert_eq!(state.version, 1);
    let log = daemon.log();
    assert!(log.contains("state saved; daemon stopped"), "{log}");
    let left = image_count(&d);
    eprintln!("SIGTERM with gc in flight={running}: exited in {took:?}, {left} of 400 images left");
    assert!(
        running,
        "gc had already finished: the test did not interrupt it"
    );
    assert!(left > 0, "the pass was not interrupted");
    // The saved state covers every image still there (deleted ones may linger: gc ignores them).
    for id in d.docker_ok(["images", "-q", "--no-trunc"]).lines() {
        assert!(
            state.images.contains_key(id),
            "{id} missing from the saved state"
        );
    }
}

#[test]
fn docker_down_at_start_is_reported_and_tracking_begins_when_it_comes_up() {
    let mut d = Dockerd::start();
    let late = images::load(&d, &[ImageSpec::new("late/app:1", OLD)]).remove(0);
    d.stop();
    let mut daemon = Daemon::start(&d, QUIET, &[]);
    assert!(
        daemon
            .last_status()
            .starts_with("STATUS=Docker unavailable"),
        "{}",
        daemon.last_status()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(daemon.alive(), "{}", daemon.log());
    d.restart();
    daemon.wait_for("connection", Duration::from_secs(60), || {
        daemon.last_status().starts_with("STATUS=Docker: connected")
    });
    daemon.wait_for("image tracked", Duration::from_secs(15), || {
        daemon.last_used(&late).is_some()
    });
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0, "{}", daemon.log());
}

/// A password with every character ecs.config and JSON make awkward, planted to be
/// looked for where it must not be.
const CANARY: &str = "canary-Pa55\"w0rd$='\\ ünï";
const CANARY_ROTATED: &str = "canary-R0tated\"$=' ünï";

fn lines_in(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.lines().count())
}

fn registry_password(ecs_config: &Path, registry: &str) -> String {
    let text = std::fs::read_to_string(ecs_config).expect("ecs.config written");
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("ECS_ENGINE_AUTH_DATA="))
        .expect("ECS_ENGINE_AUTH_DATA line");
    let json: serde_json::Value = serde_json::from_str(data).expect("auth data is JSON");
    json[registry]["password"]
        .as_str()
        .expect("password")
        .to_owned()
}

#[test]
fn refresh_auth_runs_on_change_only_when_ecs_config_changed_and_never_leaks_the_secret() {
    let moto = shipshape_tests::moto::Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let aws = rt.block_on(Aws::new(&moto));
    let secret =
        |password: &str| serde_json::json!({"username": "ci", "password": password}).to_string();
    rt.block_on(aws.secret("us-east-1", "prod/registry", &secret(CANARY)));

    let d = Dockerd::start();
    let work = tempfile::tempdir().expect("tempdir");
    let ecs_config = work.path().join("ecs.config");
    let hook_out = work.path().join("hook.out");
    let hook_runs = work.path().join("hook.runs");
    let hook = work.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\n{{ echo \"args: $*\"; env; }} >> '{}'\necho run >> '{}'\n",
            hook_out.display(),
            hook_runs.display()
        ),
    )
    .expect("write hook");
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod hook");
    let config = format!(
        r#"
[bootstrap]
ecs_config = "{ecs}"
cluster = "prod"
registry_secret = {{ "registry.example.com" = "prod/registry" }}
timeout = "20s"

[daemon]
state = "@STATE@"
[daemon.jobs.gc]
enabled = false
[daemon.jobs.refresh_auth]
schedule = "* * * * * *"
jitter = "0s"
on_change = ["{hook}", "ecs.config changed"]
"#,
        ecs = ecs_config.display(),
        hook = hook.display()
    );
    let env = moto.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut daemon = Daemon::start(&d, &config, &env);

    daemon.wait_for(
        "first refresh to write ecs.config and run on_change",
        Duration::from_secs(30),
        || lines_in(&hook_runs) == 1,
    );
    assert_eq!(
        registry_password(&ecs_config, "registry.example.com"),
        CANARY
    );
    let mtime = std::fs::metadata(&ecs_config)
        .and_then(|m| m.modified())
        .expect("mtime");

    // The job keeps firing every second; with the same secret nothing changes.
    std::thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        lines_in(&hook_runs),
        1,
        "on_change ran although nothing changed"
    );
    assert_eq!(
        std::fs::metadata(&ecs_config)
            .and_then(|m| m.modified())
            .expect("mtime"),
        mtime,
        "ecs.config rewritten although unchanged"
    );

    // Rotating the secret changes the file and runs on_change exactly once more.
    rt.block_on(aws.rotate_secret("us-east-1", "prod/registry", &secret(CANARY_ROTATED)));
    daemon.wait_for(
        "refresh after rotation to run on_change",
        Duration::from_secs(30),
        || lines_in(&hook_runs) == 2,
    );
    assert_eq!(
        registry_password(&ecs_config, "registry.example.com"),
        CANARY_ROTATED
    );

    let (code, _) = daemon.terminate(Duration::from_secs(20));
    assert_eq!(code, 0, "log:\n{}", daemon.log());

    let hook_seen = std::fs::read_to_string(&hook_out).expect("hook output");
    assert!(
        hook_seen.contains("args: ecs.config changed"),
        "{hook_seen}"
    );
    assert!(
        !hook_seen.contains("AWS_"),
        "on_change inherited the AWS environment:\n{hook_seen}"
    );
    let log = daemon.log();
    for canary in [CANARY, CANARY_ROTATED, "canary-"] {
        assert!(
            !hook_seen.contains(canary),
            "secret in on_change args or environment"
        );
        assert!(!log.contains(canary), "secret in the daemon log");
    }
}

/// A tmpfs of `size` mounted on a fresh directory, filled to the last byte; unmounted on drop.
struct FullTmpfs {
    dir: tempfile::TempDir,
}

impl FullTmpfs {
    /// Mounted, `files` written, then filled.
    fn new(files: &[(&str, String)]) -> FullTmpfs {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            mount.success(),
            "cannot mount a tmpfs (the tests run as root)"
        );
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).expect("write before filling");
        }
        // Fill it: dd stops with ENOSPC.
        let _ = std::process::Command::new("dd")
            .args(["if=/dev/zero", "bs=4k"])
            .arg(format!("of={}", dir.path().join("fill").display()))
            .stderr(std::process::Stdio::null())
            .status();
        assert!(
            std::fs::write(dir.path().join("probe"), vec![0u8; 8192]).is_err(),
            "the tmpfs is not full"
        );
        FullTmpfs { dir }
    }
}

impl Drop for FullTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn a_state_that_cannot_be_saved_never_makes_gc_forget_a_use_seconds_ago() {
    let mut d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            ImageSpec::light("app/used:1", OLD),
            ImageSpec::light("app/unused:1", OLD),
        ],
    );
    // Loaded long ago, as far as the engine's event log (which the daemon replays) knows.
    d.forget_events();
    // Saved long ago: both last used in 2020. Then the disk fills up.
    let saved = serde_json::json!({
        "version": 1,
        "updated_at": "2020-09-13T12:26:40Z",
        "images": {
            &ids[0]: {"last_used": "2020-09-13T12:26:40Z", "tags": ["app/used:1"]},
            &ids[1]: {"last_used": "2020-09-13T12:26:40Z", "tags": ["app/unused:1"]},
        },
    });
    let full = FullTmpfs::new(&[("state.json", saved.to_string())]);
    let state = full.dir.path().join("state.json");
    let port = free_port();
    let config = |gc: &str| {
        format!(
            "[gc]\nmin_age = \"1h\"\nkeep_per_repo = 0\n[daemon]\nstate = \"{}\"\n[daemon.jobs.gc]\n{gc}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n",
            state.display()
        )
    };
    let mut daemon = Daemon::start(&d, &config("enabled = false"), &[]);
    // Used seconds ago: created and removed (a live container alone would protect it).
    let id = images::create_container(&d, "app/used:1", "used-once", &["true"]);
    d.docker_ok(["rm", id.trim()]);
    // Docker events arrive within milliseconds; give the debounced save time to fail.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        daemon.log().contains("cannot save last-use state"),
        "the full disk did not fail a save:\n{}",
        daemon.log()
    );
    assert!(
        daemon
            .last_status()
            .contains("; last-use state not saved ("),
        "STATUS does not say the state is not saved: {}",
        daemon.last_status()
    );
    let on_disk = std::fs::read_to_string(&state).expect("the old state file");
    assert!(
        on_disk.contains("2020-09-13"),
        "the state file changed on a full disk"
    );

    std::fs::write(
        daemon.path("shipshape.toml"),
        config("schedule = \"* * * * * *\""),
    )
    .expect("write config");
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for(
        "gc to delete the unused image",
        Duration::from_secs(30),
        || {
            d.docker_ok(["images", "-q", "app/unused:1"])
                .trim()
                .is_empty()
        },
    );
    assert!(
        !d.docker_ok(["images", "-q", "app/used:1"])
            .trim()
            .is_empty(),
        "gc deleted an image used seconds ago because the state could not be saved:\n{}",
        daemon.log()
    );
    let m = scrape(port);
    assert!(
        sample(&m, "shipshape_state_save_failures_total", None) >= 1.0,
        "save failures not counted"
    );
    // Room again: the retried save succeeds and STATUS stops saying otherwise.
    std::fs::remove_file(full.dir.path().join("fill")).expect("free the tmpfs");
    daemon.wait_for(
        "STATUS to drop the unsaved state once a save succeeds",
        Duration::from_secs(15),
        || {
            let status = daemon.last_status();
            status.starts_with("STATUS=Docker: connected") && !status.contains("not saved")
        },
    );
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0);
}

#[test]
fn eleven_hundred_idle_metrics_connections_neither_stall_the_watchdog_nor_lose_an_image() {
    let d = Dockerd::start();
    let port = free_port();
    let config = format!(
        "[daemon]\nstate = \"@STATE@\"\n[daemon.jobs.gc]\nenabled = false\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let mut daemon = Daemon::start(&d, &config, &[("WATCHDOG_USEC", "1000000")]);
    // systemd's default soft limit, as the issue measured: 1,100 connections would exhaust it.
    let limited = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", daemon.pid()))
        .arg("--nofile=1024:4096")
        .status()
        .expect("prlimit");
    assert!(limited.success(), "prlimit failed");
    let flood_started = Instant::now();
    let flood: Vec<std::net::TcpStream> = (0..1100)
        .map(|n| {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .unwrap_or_else(|e| panic!("idle connection {n} to the metrics port: {e}"))
        })
        .collect();
    // An image loaded during the flood is tracked.
    let ids = images::load(&d, &[ImageSpec::light("flood/new:1", OLD)]);
    daemon.wait_for(
        "the new image to be tracked",
        Duration::from_secs(15),
        || {
            daemon
                .state()
                .is_some_and(|s| s.images.contains_key(&ids[0]))
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    let pings: Vec<Instant> = daemon
        .notes_matching("WATCHDOG=1")
        .into_iter()
        .map(|(at, _)| at)
        .filter(|at| *at >= flood_started)
        .collect();
    assert!(
        pings.len() >= 5,
        "{} watchdog pings during the flood",
        pings.len()
    );
    for w in pings.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap <= Duration::from_millis(900),
            "watchdog gap {gap:?} during the flood"
        );
    }
    drop(flood);
    daemon.wait_for("a scrape to succeed", Duration::from_secs(15), || {
        std::panic::catch_unwind(|| scrape(port)).is_ok()
    });
    let m = scrape(port);
    // Some of the flood is accepted as earlier connections reach their deadline (a loaded
    // machine), so the count is not exact; that the cap engaged at all is the point.
    let refused = sample(&m, "shipshape_metrics_connections_refused_total", None);
    assert!(
        refused >= 1.0,
        "the connection cap never engaged: {refused}"
    );
    assert!(daemon.alive());
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0);
}

/// Sends SIGCONT to a frozen process on drop, so a failed assertion never leaves it stopped.
struct Frozen(nix::unistd::Pid);

impl Frozen {
    fn new(pid: u32) -> Frozen {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP dockerd");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

#[test]
fn a_frozen_dockerd_is_reported_within_one_ping_period_and_tracking_resumes_after() {
    let d = Dockerd::start();
    let port = free_port();
    let config = format!(
        "[daemon]\nstate = \"@STATE@\"\n[daemon.jobs.gc]\nenabled = false\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n"
    );
    let mut daemon = Daemon::start(&d, &config, &[]);
    assert!(
        daemon.last_status().starts_with("STATUS=Docker: connected"),
        "{}",
        daemon.last_status()
    );
    assert_eq!(sample(&scrape(port), "shipshape_docker_up", None), 1.0);

    // SIGSTOP: the socket still accepts, nothing answers, no stream ends.
    let frozen = Frozen::new(d.pid().expect("dockerd pid"));
    // One ping period: a ping every 10 s, each given 5 s to answer (+ slack for a loaded host).
    daemon.wait_for(
        "STATUS to stop saying connected while dockerd is frozen",
        Duration::from_secs(18),
        || !daemon.last_status().starts_with("STATUS=Docker: connected"),
    );
    let status = daemon.last_status();
    assert!(
        status.starts_with("STATUS=Docker unavailable (Docker did not answer a ping within 5s)"),
        "{status}"
    );
    assert_eq!(sample(&scrape(port), "shipshape_docker_up", None), 0.0);
    // Reconnect attempts against the frozen engine are bounded too: still not "connected".
    std::thread::sleep(Duration::from_secs(12));
    assert!(
        !daemon.last_status().starts_with("STATUS=Docker: connected"),
        "{}",
        daemon.last_status()
    );
    assert!(daemon.alive(), "{}", daemon.log());

    drop(frozen);
    daemon.wait_for(
        "reconnection after SIGCONT",
        Duration::from_secs(60),
        || daemon.last_status().starts_with("STATUS=Docker: connected"),
    );
    assert_eq!(sample(&scrape(port), "shipshape_docker_up", None), 1.0);
    let loaded = images::load(&d, &[ImageSpec::light("thawed/app:1", OLD)]);
    daemon.wait_for(
        "an image loaded after the thaw",
        Duration::from_secs(15),
        || {
            daemon
                .state()
                .is_some_and(|s| s.images.contains_key(&loaded[0]))
        },
    );
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0);
}

/// The daemon's JSON log lines (one object each; other lines skipped).
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn text<'a>(line: &'a serde_json::Value, key: &str) -> &'a str {
    line[key].as_str().unwrap_or_default()
}

#[test]
fn every_gc_deletion_logs_job_image_id_and_repository_at_info_and_each_pass_one_summary() {
    let d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            ImageSpec::new("journal/a:1", OLD),
            ImageSpec::new("registry.example.com:5000/journal/b:1", OLD + 1),
        ],
    );
    let config = "[gc]\nmin_age = \"0s\"\nkeep_per_repo = 0\n[daemon]\nstate = \"@STATE@\"\n[daemon.jobs.gc]\nschedule = \"*/2 * * * * *\"\n";
    let mut daemon = Daemon::start_with_args(&d, config, &[], &["--log-format", "json"]);
    daemon.wait_for("gc to delete both images", Duration::from_secs(30), || {
        let left = d.image_ids();
        ids.iter().all(|id| !left.contains(id))
    });
    // A few more passes with nothing to delete.
    std::thread::sleep(Duration::from_secs(5));
    let (code, _) = daemon.terminate(Duration::from_secs(30));
    assert_eq!(code, 0);
    let log = json_lines(&daemon.log());
    assert!(!log.is_empty(), "no JSON log lines:\n{}", daemon.log());

    let deleted: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| text(l, "message") == "image deleted" && text(l, "job") == "gc")
        .collect();
    for (id, repository) in ids
        .iter()
        .zip(["journal/a", "registry.example.com:5000/journal/b"])
    {
        let line = deleted
            .iter()
            .find(|l| text(l, "image_id") == id)
            .unwrap_or_else(|| panic!("no deletion line with image_id={id}:\n{deleted:#?}"));
        assert_eq!(text(line, "level"), "INFO", "{line}");
        assert_eq!(text(line, "job"), "gc", "{line}");
        assert_eq!(text(line, "repository"), repository, "{line}");
    }
    assert_eq!(deleted.len(), 2, "{deleted:#?}");

    let finished = log
        .iter()
        .filter(|l| text(l, "message") == "job finished" && text(l, "job") == "gc")
        .count();
    let summaries: Vec<&serde_json::Value> = log
        .iter()
        .filter(|l| text(l, "message") == "gc pass done")
        .collect();
    assert!(finished >= 2, "{finished} gc passes");
    assert_eq!(
        summaries.len(),
        finished,
        "not one summary line per pass: {summaries:#?}"
    );
    assert!(summaries
        .iter()
        .all(|l| text(l, "job") == "gc" && text(l, "level") == "INFO"));
}
