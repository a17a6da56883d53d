//! `shipshape gc` against a private dockerd with real images and containers: the
//! protection rules end to end, `--dry-run` against the real run, a container
//! created between plan and delete (the engine's own 409), an unreachable engine,
//! and usage errors that leave the engine untouched.

use std::collections::BTreeSet;

use serde_json::Value;
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::{self, ImageSpec};

const OLD: i64 = 1_600_000_000; // 2020-09-13

fn gc(d: &Dockerd, args: &[&str]) -> Output {
    let mut argv = vec!["--docker-host".to_owned(), d.host(), "gc".to_owned()];
    argv.extend(args.iter().map(|s| s.to_string()));
    // A state path that does not exist: creation time counts.
    argv.extend(["--state".to_owned(), "/nonexistent/state.json".to_owned()]);
    run_shipshape(argv, &[])
}

fn json(out: &Output) -> Value {
    assert_eq!(
        out.code, 0,
        "stderr: {}\nstdout: {}",
        out.stderr, out.stdout
    );
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", out.stdout))
}

/// Image ID → (action, reason) from the JSON report.
fn decisions(doc: &Value) -> std::collections::BTreeMap<String, (String, String)> {
    doc["images"]
        .as_array()
        .expect("images array")
        .iter()
        .map(|i| {
            (
                i["id"].as_str().unwrap_or_default().to_owned(),
                (
                    i["action"].as_str().unwrap_or_default().to_owned(),
                    i["reason"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn protected_images_survive_and_dry_run_reports_exactly_what_the_run_deletes() {
    let mut d = Dockerd::start();
    let now = chrono::Utc::now().timestamp();
    let specs = vec![
        ImageSpec::new("keep/stopped:1", OLD),    // 0 stopped container
        ImageSpec::new("redis:7", OLD),           // 1 excluded
        ImageSpec::new("young/app:1", now - 600), // 2 younger than 2h
        ImageSpec::new("app:1", OLD),             // 3 old, not newest
        ImageSpec::new("app:2", OLD + 1000),      // 4 newest of app
        ImageSpec::dangling(OLD),                 // 5 dangling
        ImageSpec::new("amazon/amazon-ecs-agent:latest", OLD), // 6 ECS agent
        ImageSpec::new("m1/x:old", OLD),          // 7 tags in two repos
        ImageSpec::new("m1/x:new", OLD + 5000),   // 8 newest of m1/x
        ImageSpec::new("m2/x:new", OLD + 5000),   // 9 newest of m2/x
        ImageSpec::new("lonely:1", OLD),          // 10 newest of its repo
    ];
    let mut specs = specs;
    specs[7].repo_tags.push("m2/x:old".to_owned());
    let ids = images::load(&d, &specs);
    d.forget_events();
    let running = images::busybox_image(&d, "keep/running:1");
    images::run_container(&d, "keep/running:1", "runner", &["sleep", "1000"]);
    images::create_container(&d, "keep/stopped:1", "stopped", &[]);

    let before = d.image_ids();
    let args = [
        "--output",
        "json",
        "--min-age",
        "2h",
        "--keep-per-repo",
        "1",
        "--exclude",
        "redis:*",
    ];
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = json(&gc(&d, &dry_args));
    assert_eq!(d.image_ids(), before, "--dry-run changed the engine");
    assert_eq!(dry["dry_run"], Value::Bool(true));
    let planned = decisions(&dry);
    assert_eq!(planned.len(), before.len(), "every image appears once");

    let reason = |id: &str| planned[id].1.clone();
    assert!(
        reason(&running).starts_with("in use by container "),
        "{}",
        reason(&running)
    );
    assert!(
        reason(&ids[0]).starts_with("in use by container "),
        "{}",
        reason(&ids[0])
    );
    assert_eq!(reason(&ids[1]), "excluded by redis:*");
    assert_eq!(reason(&ids[2]), "younger than 2h");
    assert_eq!(
        planned[&ids[3]],
        ("would delete".into(), "least recently used".into())
    );
    assert_eq!(reason(&ids[4]), "newest 1 of repo app");
    assert_eq!(planned[&ids[5]], ("would delete".into(), "dangling".into()));
    assert_eq!(reason(&ids[6]), "ECS agent image");
    assert_eq!(planned[&ids[7]].0, "would delete");
    assert_eq!(reason(&ids[10]), "newest 1 of repo lonely");

    let would: BTreeSet<String> = planned
        .iter()
        .filter(|(_, (a, _))| a == "would delete")
        .map(|(id, _)| id.clone())
        .collect();
    let expected: BTreeSet<String> = [&ids[3], &ids[5], &ids[7]].into_iter().cloned().collect();
    assert_eq!(would, expected);

    let real = json(&gc(&d, &args));
    assert_eq!(real["dry_run"], Value::Bool(false));
    let done: BTreeSet<String> = decisions(&real)
        .into_iter()
        .filter(|(_, (a, _))| a == "deleted")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        done, would,
        "the real run deleted other images than the dry run reported"
    );
    let after = d.image_ids();
    let survivors: BTreeSet<String> = before.difference(&would).cloned().collect();
    assert_eq!(after, survivors);
    // Measured on a filesystem other processes write too (this host's): it may
    // show nothing freed; the estimate is the deleted images' sizes.
    assert!(real["estimated_reclaimed_bytes"].as_u64().unwrap_or(0) > 0);
    assert_eq!(real["reclaimed_bytes_measured"], true, "{real}");
    // Both containers are still there.
    let names = d.docker_ok(["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        names.contains("runner") && names.contains("stopped"),
        "{names}"
    );
}

#[test]
fn text_output_is_a_table_with_a_total() {
    let mut d = Dockerd::start();
    let ids = images::load(
        &d,
        &[ImageSpec::new("app:1", OLD), ImageSpec::new("redis:7", OLD)],
    );
    d.forget_events();
    let out = gc(&d, &["--dry-run", "--exclude", "redis:*"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE") && lines[0].contains("REASON"),
        "{}",
        out.stdout
    );
    let row = |id: &str| {
        let short = &id["sha256:".len().."sha256:".len() + 12];
        lines
            .iter()
            .find(|l| l.starts_with(short))
            .copied()
            .unwrap_or_default()
    };
    assert!(row(&ids[0]).contains("would delete"), "{}", out.stdout);
    assert!(row(&ids[1]).contains("kept") && row(&ids[1]).contains("excluded by redis:*"));
    assert!(
        out.stdout.contains("Total: 1 images to delete, 1 kept"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_plan_makes_a_constant_number_of_engine_api_calls() {
    let d = Dockerd::start();
    let count = |d: &Dockerd| {
        let out = run_shipshape(
            [
                "--docker-host",
                &d.host(),
                "--log-level",
                "debug",
                "--log-format",
                "json",
                "gc",
                "--dry-run",
                "--min-age",
                "0s",
                "--output",
                "json",
            ],
            &[],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stderr
            .lines()
            .filter(|l| l.contains("\"docker call\""))
            .count()
    };
    images::load(
        &d,
        &(0..5)
            .map(|n| ImageSpec::new(&format!("a/{n}:1"), OLD))
            .collect::<Vec<_>>(),
    );
    let small = count(&d);
    images::load(
        &d,
        &(0..200)
            .map(|n| ImageSpec::new(&format!("b/{n}:1"), OLD))
            .collect::<Vec<_>>(),
    );
    let large = count(&d);
    assert_eq!(small, large, "API calls grew with the number of images");
    assert_eq!(
        large, 6,
        "version + images + containers + info + the event log, and /system/df for the dry run's estimates"
    );
}

#[tokio::test]
async fn container_created_between_plan_and_delete_keeps_the_image_with_a_conflict() {
    use shipshape::adapters::bollard::BollardEngine;
    use shipshape::adapters::statvfs::Statvfs;
    use shipshape::image_gc::planner::{plan, Action};
    use shipshape::image_gc::reason::Outcome;
    use shipshape::image_gc::{executor, snapshot, GcSettings};
    use tokio_util::sync::CancellationToken;

    let d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            ImageSpec::new("race/a:1", OLD),
            ImageSpec::new("race/b:1", OLD),
        ],
    );
    let client = BollardEngine::connect_to(d.host()).await.expect("connect");
    let flags = shipshape::image_gc::settings::GcOptions {
        min_age: Some("0s".parse().expect("duration")),
        state: Some("/nonexistent/state.json".into()),
        ..Default::default()
    };
    let settings = GcSettings::resolve(shipshape::config::layer::Layered::new(
        &flags,
        &Default::default(),
        &Default::default(),
    ))
    .expect("settings");
    let options = snapshot::SnapshotOptions {
        require_disk: false,
        container_grace: None,
        volumes: false,
        state_path: None,
        last_use: None,
        log_applied_until: None,
    };
    let now = chrono::Utc::now();
    let snap = snapshot::take(&client, &Statvfs, &options, now)
        .await
        .expect("snapshot");
    let the_plan = plan(&snap, &settings.policy(), now);
    assert_eq!(the_plan.deletions().count(), 2);

    // Meanwhile someone creates a container from the first candidate.
    images::create_container(&d, "race/a:1", "late", &[]);

    let exec = executor::ExecOptions {
        concurrency: 2,
        root_dir: snap.root_dir.clone(),
        build_cache: None,
        origin: None,
    };
    let done = executor::execute(
        &client,
        &Statvfs,
        &the_plan,
        &exec,
        &CancellationToken::new(),
    )
    .await;
    let stats = &done.stats;
    // The plan stays as planned; what happened is beside it.
    let outcome = |id: &str| {
        let i = the_plan
            .images
            .iter()
            .position(|e| e.id == id)
            .expect("in plan");
        assert_eq!(the_plan.images[i].action, Action::Delete);
        done.outcomes.images[i].clone()
    };
    assert_eq!(outcome(&ids[0]), Some(Outcome::Conflict));
    assert_eq!(Outcome::Conflict.to_string(), "conflict: in use");
    assert_eq!(outcome(&ids[1]), Some(Outcome::Deleted));
    assert_eq!(
        (stats.conflicts, stats.failures, stats.images_deleted),
        (1, 0, 1)
    );
    let left = d.image_ids();
    assert!(
        left.contains(&ids[0]) && !left.contains(&ids[1]),
        "{left:?}"
    );
}

#[test]
fn containers_volumes_and_build_cache_when_asked() {
    let d = Dockerd::start();
    images::busybox_image(&d, "bb:1");
    let exited = images::run_container(&d, "bb:1", "done", &["true"]);
    d.docker_ok(["wait", &exited]);
    let running = images::run_container(&d, "bb:1", "busy", &["sleep", "1000"]);
    d.docker_ok(["volume", "create", "orphan"]);
    let out = json(&gc(
        &d,
        &[
            "--output",
            "json",
            "--containers",
            "--container-grace",
            "0s",
            "--volumes",
            "--build-cache",
        ],
    ));
    let containers = out["containers"].as_array().expect("containers");
    let action = |id: &str| {
        containers
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["action"].as_str().unwrap_or_default().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(action(&exited), "deleted", "{out}");
    assert_eq!(action(&running), "kept");
    assert_eq!(out["volumes"][0]["action"], "deleted", "{out}");
    let ps = d.docker_ok(["ps", "-a", "-q", "--no-trunc"]);
    assert!(!ps.contains(&exited) && ps.contains(&running), "{ps}");
    assert!(d.docker_ok(["volume", "ls", "-q"]).trim().is_empty());
}

#[test]
fn unreachable_docker_is_exit_1_with_a_clear_message() {
    let out = run_shipshape(
        [
            "--docker-host",
            "unix:///tmp/shipshape-no-such.sock",
            "gc",
            "--dry-run",
        ],
        &[],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("cannot reach the Docker engine at unix:///tmp/shipshape-no-such.sock")
            && out.stderr.contains("DOCKER_HOST"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stdout.is_empty());
}

#[test]
fn a_docker_host_the_client_cannot_use_is_a_usage_error() {
    for (host, hint) in [
        ("/var/run/docker.sock", "use unix:///var/run/docker.sock"),
        (
            "ftp://example",
            "use unix:///path/to/docker.sock or tcp://HOST:PORT",
        ),
    ] {
        let env = [("DOCKER_HOST".to_owned(), host.to_owned())];
        let out = run_shipshape(["gc", "--dry-run"], &env);
        assert_eq!(out.code, 2, "{host}: {}", out.stderr);
        assert!(
            out.stderr
                .contains(&format!("invalid DOCKER_HOST \"{host}\""))
                && out.stderr.contains(hint),
            "{}",
            out.stderr
        );
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        assert!(out.stdout.is_empty());
    }
    let out = run_shipshape(["--docker-host", "docker.sock", "gc", "--dry-run"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("invalid --docker-host"),
        "{}",
        out.stderr
    );
}

/// One test per bad value: exit 2 naming the flag and value, nothing printed on stdout,
/// nothing deleted.
mod bad_exclude_pattern_or_size_is_exit_2_naming_it_and_changes_nothing {
    use super::*;

    /// Runs gc with `args` on an engine holding one deletable image.
    fn refused(args: &[&str], needles: &[&str]) {
        let d = Dockerd::start();
        images::load(&d, &[ImageSpec::new("app:1", OLD)]);
        let before = d.image_ids();
        let out = gc(&d, args);
        assert_eq!(out.code, 2, "{}", out.stderr);
        for n in needles {
            assert!(out.stderr.contains(n), "{n:?} missing: {}", out.stderr);
        }
        assert_eq!(d.image_ids(), before);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }

    #[test]
    fn exclude_pattern() {
        refused(
            &["--min-age", "0s", "--exclude", "app:[1"],
            &["--exclude", "app:[1"],
        );
    }

    #[test]
    fn high_water() {
        refused(
            &[
                "--min-age",
                "0s",
                "--high-water",
                "lots",
                "--low-water",
                "10%",
            ],
            &["--high-water", "lots"],
        );
    }

    #[test]
    fn min_age() {
        refused(&["--min-age", "soon"], &["--min-age"]);
    }
}

#[test]
fn disk_pressure_mode_deletes_oldest_first_until_low_water() {
    let d = Dockerd::builder().tmpfs_data_root(256 << 20).start();
    let specs: Vec<ImageSpec> = (0..16)
        .map(|n| ImageSpec::new(&format!("big/{n}:1"), OLD + n * 100).payload(8 << 20))
        .collect();
    // In batches: `docker load` stages the archive on the same small filesystem.
    let ids: Vec<String> = specs.chunks(4).flat_map(|c| images::load(&d, c)).collect();
    let used_pct = || d.data_root_used_pct();
    let before = used_pct();
    assert!(before > 45.0, "test set-up: only {before:.1}% used");
    let low = before - 20.0;
    let (high_arg, low_arg) = (format!("{:.0}%", before - 5.0), format!("{low:.0}%"));
    let base = [
        "--min-age",
        "0s",
        "--high-water",
        &high_arg,
        "--low-water",
        &low_arg,
    ];

    // Below high water: nothing happens.
    let calm = json(&gc(
        &d,
        &[
            "--output",
            "json",
            "--min-age",
            "0s",
            "--high-water",
            "99%",
            "--low-water",
            "90%",
        ],
    ));
    assert!(decisions(&calm)
        .values()
        .all(|(a, r)| a == "kept" && r.contains("high water")));
    assert_eq!(d.image_ids().len(), 16);

    let mut args = base.to_vec();
    args.extend(["--output", "json"]);
    let real = json(&gc(&d, &args));
    let after = used_pct();
    assert!(
        after <= low + 0.5,
        "stopped at {after:.1}%, low water {low:.1}%"
    );
    let left = d.image_ids();
    assert!(!left.is_empty() && left.len() < 16, "{} left", left.len());
    // Oldest first: the survivors are exactly the newest ones.
    let deleted = 16 - left.len();
    for (n, id) in ids.iter().enumerate() {
        assert_eq!(left.contains(id), n >= deleted, "image {n} (oldest first)");
    }
    let low_water_kept = decisions(&real)
        .values()
        .filter(|(a, r)| a == "kept" && r.contains("low water"))
        .count();
    assert_eq!(low_water_kept, left.len());
    assert!(
        real["disk"]["after"]["used_bytes"].as_u64()
            < real["disk"]["before"]["used_bytes"].as_u64()
    );
}

#[test]
fn last_use_from_the_daemon_state_file_keeps_an_old_image_young() {
    use shipshape::last_use::LastUseState;
    let mut d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            ImageSpec::new("used/a:1", OLD),
            ImageSpec::new("unused/b:1", OLD),
        ],
    );
    d.forget_events();
    let dir = tempfile::tempdir().expect("tempdir");
    let state_path = dir.path().join("state.json");
    let now = chrono::Utc::now();
    let mut state = LastUseState::empty(now);
    state.touch(&ids[0], now - chrono::Duration::minutes(5));
    state.save(&state_path).expect("save state");
    let state_arg = state_path.display().to_string();
    let out = run_shipshape(
        [
            "--docker-host",
            &d.host(),
            "gc",
            "--dry-run",
            "--output",
            "json",
            "--state",
            &state_arg,
        ],
        &[],
    );
    let doc = json(&out);
    let planned = decisions(&doc);
    assert_eq!(planned[&ids[0]], ("kept".into(), "younger than 1h".into()));
    assert_eq!(planned[&ids[1]].0, "would delete");
}

#[test]
fn exclude_file_in_docker_gc_format_and_max_deletions_through_the_binary() {
    let d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            ImageSpec::new("ci-base:1", OLD),
            ImageSpec::new("tools/ci-base:2", OLD + 1),
            ImageSpec::new("app:1", OLD + 2),
            ImageSpec::new("app:2", OLD + 3),
            ImageSpec::new("app:3", OLD + 4),
            ImageSpec::new("pinned:1", OLD + 5),
            ImageSpec::new("redis:7", OLD + 6),
            ImageSpec::new("spotify/cassandra:2", OLD + 7),
            ImageSpec::new("web:latest", OLD + 8),
            ImageSpec::new("redis-extra:1", OLD + 9),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("exclude");
    // docker-gc's file: a grep basic regex a line (a glob line such as `redis:*`
    // would be a regex too, protecting nothing), a short image ID.
    let pinned_prefix = &ids[5]["sha256:".len().."sha256:".len() + 12];
    let lines = format!(
        "# keep the CI base images\n.*ci-base:.*\n\n{pinned_prefix}\nredis:.*\nspotify/.*\n.*:latest\n"
    );
    std::fs::write(&file, &lines).expect("write exclude file");
    let file_arg = file.display().to_string();

    // What docker-gc's own rule (compute_exclude_ids) excludes, run as it runs it.
    let script = r#"sed 's/^\(.*\)$/ \1 /' "$1" | sed '/^ *$/d' > "$1.p"
docker images | tail -n+2 | sed 's/^\([^ ]*\) *\([^ ]*\) *\([^ ]*\).*/ \1:\2 \3 /' | grep -f "$1.p" | cut -d' ' -f3"#;
    let out = std::process::Command::new("bash")
        .args(["-c", script, "docker-gc", &file_arg])
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", dir.path())
        .output()
        .expect("run docker-gc's rule");
    let docker_gc_keeps: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();

    let out = gc(
        &d,
        &[
            "--min-age",
            "0s",
            "--exclude-file",
            &file_arg,
            "--exclude",
            "redis-extra:*",
            "--max-deletions",
            "2",
            "--output",
            "json",
        ],
    );
    let doc = json(&out);
    let plan = decisions(&doc);
    let excluded_by_file: BTreeSet<String> = plan
        .iter()
        .filter(|(_, (_, reason))| {
            reason.starts_with("excluded by ") && reason != "excluded by redis-extra:*"
        })
        .map(|(id, _)| id["sha256:".len().."sha256:".len() + 12].to_owned())
        .collect();
    assert_eq!(
        excluded_by_file, docker_gc_keeps,
        "shipshape and docker-gc disagree"
    );
    let short = |i: usize| ids[i]["sha256:".len().."sha256:".len() + 12].to_owned();
    let expected: BTreeSet<String> = [0, 1, 5, 6, 7, 8].into_iter().map(short).collect();
    assert_eq!(docker_gc_keeps, expected);
    assert_eq!(
        plan[&ids[9]],
        ("kept".into(), "excluded by redis-extra:*".into())
    );
    assert_eq!(plan[&ids[6]].1, "excluded by redis:.*");
    let deleted: Vec<&String> = ids
        .iter()
        .filter(|id| plan[id.as_str()].0 == "deleted")
        .collect();
    assert_eq!(deleted.len(), 2, "--max-deletions 2: {plan:?}");
    let left = d.image_ids();
    assert_eq!(left.len(), 8, "{left:?}");
    for id in [
        &ids[0], &ids[1], &ids[5], &ids[6], &ids[7], &ids[8], &ids[9],
    ] {
        assert!(
            left.contains(id.as_str()),
            "excluded image {id} was deleted"
        );
    }

    // A missing exclude file is a usage error naming it, and nothing is deleted.
    let out = gc(
        &d,
        &["--min-age", "0s", "--exclude-file", "/nonexistent/exclude"],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("/nonexistent/exclude"),
        "{}",
        out.stderr
    );
    assert_eq!(d.image_ids(), left);

    // An invalid line is a usage error naming the file and the line.
    std::fs::write(&file, "redis:.*\napp:\\(\n").expect("write exclude file");
    let out = gc(&d, &["--min-age", "0s", "--exclude-file", &file_arg]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("line 2") && out.stderr.contains(&file_arg),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
    assert_eq!(d.image_ids(), left);
}

/// The tags of `id` now (`None`: no such image).
fn tags_now(d: &Dockerd, id: &str) -> Option<BTreeSet<String>> {
    let out = d
        .docker()
        .args(["image", "inspect", "--format", "{{json .RepoTags}}", id])
        .output()
        .expect("docker image inspect");
    if !out.status.success() {
        return None;
    }
    let tags: Vec<String> = serde_json::from_slice(&out.stdout).expect("RepoTags JSON");
    Some(tags.into_iter().collect())
}

/// `gc --output json --min-age 0s` plus `extra`, through `proxy`, on a thread (the
/// test meanwhile acts on the held request).
fn gc_in_background(
    proxy: &shipshape_tests::dockerd::HoldingProxy,
    extra: &[&str],
) -> std::thread::JoinHandle<Output> {
    let argv: Vec<String> = ["--docker-host", &proxy.host(), "gc"]
        .iter()
        .chain(&["--output", "json", "--min-age", "0s"])
        .chain(extra)
        .chain(&["--state", "/nonexistent/state.json"])
        .map(|a| a.to_string())
        .collect();
    std::thread::spawn(move || run_shipshape(argv, &[]))
}

fn two_tags(tags: &[&str], created: i64) -> ImageSpec {
    let mut spec = ImageSpec::new(tags[0], created);
    spec.repo_tags = tags.iter().map(|t| t.to_string()).collect();
    spec
}

#[test]
fn every_reference_shape_is_deleted_in_one_pass_without_a_conflict() {
    let d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            two_tags(&["ci/app:0a1b2c3d", "ci/app:latest"], OLD), // 0 the common CI image
            two_tags(&["ci/app:1.2.3", "ci/app:stable", "ci/app:v1"], OLD), // 1 three tags
            two_tags(&["m1/y:1", "m2/y:1"], OLD),                 // 2 across repos
            ImageSpec::new("lonely:1", OLD),                      // 3 one tag
            ImageSpec::dangling(OLD),                             // 4 dangling
            ImageSpec::new("chain/base:1", OLD),                  // 5 legacy parent
            ImageSpec::child("chain/app:1", OLD, 5),              // 6 its child
        ],
    );
    let before = d.image_ids();
    let dry = json(&gc(
        &d,
        &["--output", "json", "--min-age", "0s", "--dry-run"],
    ));
    let would: BTreeSet<String> = decisions(&dry)
        .into_iter()
        .filter(|(_, (a, _))| a == "would delete")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(would, ids.iter().cloned().collect(), "{dry}");
    let real = json(&gc(&d, &["--output", "json", "--min-age", "0s"]));
    let done = decisions(&real);
    for id in &ids {
        assert_eq!(done[id].0, "deleted", "{id}: {:?}\n{real}", done[id]);
    }
    assert!(!real.to_string().contains("conflict"), "{real}");
    let left: BTreeSet<String> = d.image_ids();
    assert!(left.is_disjoint(&before), "left behind: {left:?}");
}

#[test]
fn an_image_that_gains_a_container_mid_run_keeps_every_tag() {
    use shipshape_tests::dockerd::HoldingProxy;
    let d = Dockerd::start();
    let ids = images::load(
        &d,
        &[two_tags(
            &["race:0a1b2c3d", "race:latest", "mirror/race:1"],
            OLD,
        )],
    );
    let hex = ids[0].trim_start_matches("sha256:").to_owned();
    // Hold the final delete by ID: by then the other tags are off the image.
    let proxy = HoldingProxy::start(&d, "DELETE", &hex);
    let run = gc_in_background(&proxy, &[]);
    let held = proxy.wait_held(std::time::Duration::from_secs(60));
    // Requests carry the negotiated API version (20.10 here: 1.41).
    assert!(held.contains(" /v1.41/images/"), "{held}");
    assert_eq!(
        tags_now(&d, &ids[0]),
        Some(BTreeSet::from(["race:latest".to_owned()])),
        "the other tags should be off before the delete by ID"
    );
    d.docker_ok([
        "create",
        "--network",
        "none",
        "--name",
        "late",
        &ids[0],
        "sh",
    ]);
    proxy.release();
    let out = run.join().expect("gc thread");
    let doc = json(&out);
    assert_eq!(
        decisions(&doc)[&ids[0]],
        ("kept".to_owned(), "conflict: in use".to_owned())
    );
    assert_eq!(
        tags_now(&d, &ids[0]),
        Some(BTreeSet::from([
            "mirror/race:1".to_owned(),
            "race:0a1b2c3d".to_owned(),
            "race:latest".to_owned()
        ])),
        "the image lost tags"
    );
}

/// `web:<other>` + `web:latest` (old) and a newer build `web:1b2c3d4e`: the request
/// `DELETE …<held>` is held while CI moves `web:<moved>` to the new build; the old
/// image must go and the moved tag end on the new build.
fn tag_moved_while_held(other: &str, held: &str, moved: &str) {
    use shipshape_tests::dockerd::HoldingProxy;
    let d = Dockerd::start();
    let ids = images::load(
        &d,
        &[
            two_tags(&[&format!("web:{other}"), "web:latest"], OLD),
            ImageSpec::new("web:1b2c3d4e", OLD + 10),
        ],
    );
    let proxy = HoldingProxy::start(&d, "DELETE", held);
    let run = gc_in_background(&proxy, &["--keep-per-repo", "1"]);
    proxy.wait_held(std::time::Duration::from_secs(60));
    d.docker_ok(["tag", &ids[1], &format!("web:{moved}")]);
    proxy.release();
    let out = run.join().expect("gc thread");
    let doc = json(&out);
    assert_eq!(decisions(&doc)[&ids[0]].0, "deleted", "{doc}");
    assert_eq!(tags_now(&d, &ids[0]), None);
    assert_eq!(
        tags_now(&d, &ids[1]),
        Some(BTreeSet::from([
            "web:1b2c3d4e".to_owned(),
            format!("web:{moved}")
        ])),
        "the moved tag must end on the new build\n{}",
        out.stderr
    );
}

#[test]
fn a_tag_moved_to_a_new_build_mid_run_stays_on_it() {
    // Hold the untag of the commit tag; meanwhile CI moves `latest` to a new build.
    tag_moved_while_held("0a1b2c3d", "web:0a1b2c3d", "latest");
}

/// `DOCKER_BUILDKIT=0 docker build -t <tag>` of `dockerfile` (the legacy builder, the
/// default on 20.10): every step commits an intermediate image whose `Parent` is the
/// step before.
fn legacy_build(d: &Dockerd, tag: &str, dockerfile: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("Dockerfile"), dockerfile).expect("Dockerfile");
    std::fs::write(dir.path().join("f"), tag).expect("context file");
    let out = d
        .docker()
        .env("DOCKER_BUILDKIT", "0")
        .args(["build", "-q", "--network", "none", "-t", tag])
        .arg(dir.path())
        .output()
        .expect("docker build");
    assert!(
        out.status.success(),
        "legacy build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Every image, intermediates included.
fn all_image_ids(d: &Dockerd) -> BTreeSet<String> {
    d.docker_ok(["images", "-a", "-q", "--no-trunc"])
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn legacy_builder_chains_are_kept_whole_or_cleaned_in_one_pass() {
    let d = Dockerd::start();
    let base = images::busybox_image(&d, "bb:1");
    let used = legacy_build(
        &d,
        "chain/a:1",
        "FROM bb:1\nENV A=1\nCOPY f /f\nLABEL step=a\n",
    );
    let free = legacy_build(
        &d,
        "chain/b:1",
        "FROM bb:1\nENV B=2\nCOPY f /g\nLABEL step=b\n",
    );
    images::create_container(&d, "chain/a:1", "user", &[]);
    let before = all_image_ids(&d);
    assert_eq!(before.len(), 7, "base + 3 steps per chain: {before:?}");

    let args = ["--output", "json", "--min-age", "0s"];
    let mut dry_args = args.to_vec();
    dry_args.push("--dry-run");
    let dry = decisions(&json(&gc(&d, &dry_args)));
    assert_eq!(
        dry.len(),
        before.len(),
        "intermediates must be listed: {dry:?}"
    );
    assert!(
        dry[&used].1.starts_with("in use by container"),
        "{:?}",
        dry[&used]
    );
    assert!(
        dry[&base].1.starts_with("parent of kept image"),
        "{:?}",
        dry[&base]
    );
    let kept_parents = dry
        .values()
        .filter(|(_, r)| r.starts_with("parent of kept image"))
        .count();
    assert_eq!(kept_parents, 3, "two intermediates and the base: {dry:?}");
    let would: BTreeSet<String> = dry
        .iter()
        .filter(|(_, (a, _))| a == "would delete")
        .map(|(id, _)| id.clone())
        .collect();
    assert!(would.contains(&free) && would.len() == 3, "{would:?}");

    let real = json(&gc(&d, &args));
    assert!(!real.to_string().contains("conflict"), "{real}");
    let done: BTreeSet<String> = decisions(&real)
        .into_iter()
        .filter(|(_, (a, _))| a == "deleted")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(done, would, "the dry run did not predict the run");
    let after = all_image_ids(&d);
    assert_eq!(after, before.difference(&would).cloned().collect());
}

/// Digest-only and tag-plus-digest images made the way users make them: pushed to a
/// local registry and pulled back by digest (`docker pull reg/web@sha256:… && docker
/// tag … web:prod`), so the engine holds real `RepoDigests`.
#[test]
fn registry_digest_shapes_are_deleted_in_one_pass_and_repository_excludes_keep_digest_only_images()
{
    use shipshape_tests::registry::DigestRegistry;
    let d = Dockerd::start();
    let registry = DigestRegistry::start(&d);
    let reg = registry.host();
    let ids = images::load(
        &d,
        &[
            ImageSpec::dangling(OLD),       // 0 web: digest + web:prod
            ImageSpec::dangling(OLD),       // 1 pinned: digest-only, excluded repo
            ImageSpec::dangling(OLD + 1),   // 2 pinned: a second digest-only image
            ImageSpec::dangling(OLD),       // 3 loose: digest-only, not excluded
            ImageSpec::new("redis:7", OLD), // 4 excluded by its fully qualified name
            ImageSpec::dangling(OLD),       // 5 two tags and a digest in one repo
            ImageSpec::new("agent:1", OLD), // 6 pinned by digest in an excluded repo, plus a tag
        ],
    );
    let web = registry.digest_only(&d, &ids[0], "web");
    d.docker_ok(["tag", &ids[0], "web:prod"]);
    registry.digest_only(&d, &ids[1], "pinned");
    registry.digest_only(&d, &ids[2], "pinned");
    let loose = registry.digest_only(&d, &ids[3], "loose");
    registry.push(&d, &ids[5], "two");
    d.docker_ok(["tag", &ids[5], &format!("{reg}/two:latest")]);
    registry.digest_only(&d, &ids[6], "agents/ecs");
    d.docker_ok(["tag", &ids[6], "agent:1"]);
    let refs = |id: &str| {
        d.docker_ok([
            "image",
            "inspect",
            "--format",
            "{{json .RepoTags}} {{json .RepoDigests}}",
            id,
        ])
    };
    assert_eq!(
        refs(&ids[0]).trim(),
        format!("[\"web:prod\"] [\"{web}\"]"),
        "a tag plus another repository's digest"
    );
    assert_eq!(
        refs(&ids[3]).trim(),
        format!("[] [\"{loose}\"]"),
        "digest-only"
    );

    let pinned = format!("{reg}/pinned:*");
    let agents = format!("{reg}/agents/*");
    let args = [
        "--min-age",
        "0s",
        "--exclude",
        pinned.as_str(),
        "--exclude",
        "docker.io/library/redis:*",
        "--exclude",
        agents.as_str(),
    ];
    let with = |extra: &[&'static str]| -> Vec<String> {
        args.iter().chain(extra).map(|a| a.to_string()).collect()
    };
    let argv = |extra: &[&'static str]| with(extra);
    let run = |extra: &[&'static str]| {
        let a = argv(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        gc(&d, &a)
    };
    let dry = json(&run(&["--output", "json", "--dry-run"]));
    let text = run(&["--dry-run"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(
        text.stdout.contains(&loose),
        "digest-only named by repo@digest:\n{}",
        text.stdout
    );
    let real = json(&run(&["--output", "json"]));
    let (planned, done) = (decisions(&dry), decisions(&real));
    let kept_by = |id: &str, pattern: &str| {
        assert_eq!(
            done[id],
            ("kept".to_owned(), format!("excluded by {pattern}")),
            "{id}\n{real}"
        );
    };
    kept_by(&ids[1], &pinned);
    kept_by(&ids[2], &pinned);
    kept_by(&ids[4], "docker.io/library/redis:*");
    kept_by(&ids[6], &agents);
    for i in [0, 3, 5] {
        assert_eq!(planned[&ids[i]].0, "would delete", "{}\n{dry}", ids[i]);
        assert_eq!(done[&ids[i]].0, "deleted", "{}\n{real}", ids[i]);
    }
    for (id, (action, reason)) in &planned {
        let (real_action, real_reason) = &done[id];
        assert_eq!(
            (action.replace("would delete", "deleted"), reason),
            (real_action.clone(), real_reason),
            "dry run vs run for {id}"
        );
    }
    assert!(!real.to_string().contains("conflict"), "{real}");
    let left = d.image_ids();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(
            left.contains(id),
            [1, 2, 4, 6].contains(&i),
            "{id}: {left:?}"
        );
    }
}

/// The round trip between checking a tag and removing it by name: CI moves that very
/// tag to a new build while the untag is held, so the engine takes it off the new
/// build. The engine's tag log shows the move, and the run puts the tag back there.
#[test]
fn a_tag_moved_inside_the_round_trip_of_its_untag_is_put_back_on_the_new_build() {
    // `latest` is kept for the delete by ID; `stable` goes by name: hold that untag
    // and move `stable` itself.
    tag_moved_while_held("stable", "web:stable", "stable");
}

/// The one race the engine leaves open (executor.rs, `delete_image`): the tag removed
/// by name moves, inside that untag's round trip, to a new build whose only reference
/// it is. The engine has no conditional untag, so it untags the new build and deletes
/// it. The run cannot undo that; it must say so: a failure naming the tag and the
/// deleted build, exit 1, and the planned image kept with the tag left for its delete.
#[test]
fn a_new_build_deleted_by_an_untag_that_raced_its_only_tag_is_a_failure_naming_it() {
    use shipshape_tests::dockerd::HoldingProxy;
    let d = Dockerd::start();
    // `latest` is kept for the delete by ID; `stable` goes by name.
    let ids = images::load(&d, &[two_tags(&["web:stable", "web:latest"], OLD)]);
    let proxy = HoldingProxy::start(&d, "DELETE", "web:stable");
    let run = gc_in_background(&proxy, &[]);
    proxy.wait_held(std::time::Duration::from_secs(60));
    // CI loads a new build tagged only `web:stable`: the tag leaves the old image.
    let new = images::load(&d, &[ImageSpec::new("web:stable", OLD + 10)]);
    assert_eq!(
        tags_now(&d, &new[0]),
        Some(BTreeSet::from(["web:stable".to_owned()]))
    );
    proxy.release();
    let out = run.join().expect("gc thread");
    assert_eq!(
        out.code, 1,
        "stderr: {}\nstdout: {}",
        out.stderr, out.stdout
    );
    let doc: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    let (action, reason) = &decisions(&doc)[&ids[0]];
    assert_eq!(action, "kept", "{doc}");
    assert!(
        reason.starts_with("failed: tag web:stable moved to image ")
            && reason.contains(&new[0])
            && reason.contains("the engine deleted that image"),
        "{reason}"
    );
    assert_eq!(
        tags_now(&d, &new[0]),
        None,
        "the engine deleted the new build"
    );
    assert_eq!(
        tags_now(&d, &ids[0]),
        Some(BTreeSet::from(["web:latest".to_owned()]))
    );
}

/// A dry run estimates from the engine's accounting (`/system/df`: what each image
/// holds alone), a real run measures Docker's filesystem before and after.
#[test]
fn a_dry_run_estimates_unique_sizes_and_a_real_run_measures_what_it_freed() {
    // Its own filesystem: nothing else writes there while the run measures it.
    let d = Dockerd::builder().tmpfs_data_root(256 << 20).start();
    let base = ImageSpec::new("layers/base:1", OLD).payload(200_000);
    let ids = images::load(
        &d,
        &[
            base,
            ImageSpec {
                shares_base_with: Some(0),
                ..ImageSpec::new("layers/top:1", OLD).payload(1000)
            },
            ImageSpec::new("alone:1", OLD).payload(300_000),
        ],
    );
    let dry = json(&gc(
        &d,
        &["--output", "json", "--min-age", "0s", "--dry-run"],
    ));
    let image = |doc: &Value, id: &str| {
        doc["images"]
            .as_array()
            .expect("images")
            .iter()
            .find(|i| i["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {doc}"))
    };
    let top = image(&dry, &ids[1]);
    let (size, unique) = (
        top["size"].as_u64().expect("size"),
        top["unique_size"].as_u64().expect("unique_size"),
    );
    assert!(
        unique < size,
        "the top image shares the base layer: {unique} < {size}"
    );
    let alone = image(&dry, &ids[2]);
    assert_eq!(alone["unique_size"], alone["size"], "{alone}");
    let sizes: u64 = ids
        .iter()
        .map(|id| image(&dry, id)["size"].as_u64().unwrap_or(0))
        .sum();
    let estimate = dry["estimated_reclaimed_bytes"].as_u64().expect("estimate");
    assert!(
        estimate < sizes,
        "shared layers counted once: {estimate} < {sizes}\n{dry}"
    );
    assert_eq!(dry["reclaimed_bytes_measured"], false);

    let real = json(&gc(&d, &["--output", "json", "--min-age", "0s"]));
    assert_eq!(real["reclaimed_bytes_measured"], true, "{real}");
    assert!(real["reclaimed_inodes"].as_u64().is_some(), "{real}");
    assert!(real.get("unique_size").is_none());
    // The layers held 500 kB of payload; the filesystem freed about that, not the
    // size sum that counts the base twice.
    let measured = real["reclaimed_bytes"].as_u64().expect("measured");
    assert!(measured >= 400_000, "{measured}\n{real}");
}

/// Container log files are space gc does not free: the report names how much.
#[test]
fn the_report_counts_container_log_bytes() {
    let d = Dockerd::start();
    images::busybox_image(&d, "talk:1");
    images::run_container(
        &d,
        "talk:1",
        "talker",
        &["sh", "-c", "yes 0123456789 | head -c 200000"],
    );
    d.docker_ok(["wait", "talker"]);
    let doc = json(&gc(&d, &["--output", "json", "--dry-run"]));
    let logs = doc["container_log_bytes"]
        .as_u64()
        .expect("container_log_bytes");
    assert!(logs >= 200_000, "{logs}\n{doc}");
    let text = gc(&d, &["--dry-run"]);
    assert!(text.stdout.contains("Container logs: "), "{}", text.stdout);
}

/// The build cache as an object: what the engine lists and what a prune would take
/// (dry run), what the prune took (real run). This engine's CLI has no BuildKit
/// client (no buildx), so its cache stays empty: the shape and the zeros are shown.
#[test]
fn the_report_has_a_build_cache_object() {
    let d = Dockerd::start();
    let dry = json(&gc(&d, &["--output", "json", "--dry-run", "--build-cache"]));
    assert_eq!(
        dry["build_cache"],
        serde_json::json!({"bytes": 0, "deleted_records": 0, "reclaimed_bytes": 0, "records": 0}),
        "{dry}"
    );
    let plain = json(&gc(&d, &["--output", "json", "--dry-run"]));
    assert_eq!(
        plain["build_cache"],
        serde_json::json!({"bytes": 0, "records": 0}),
        "without --build-cache nothing would be pruned: {plain}"
    );
    let real = json(&gc(&d, &["--output", "json", "--build-cache"]));
    assert_eq!(
        real["build_cache"],
        serde_json::json!({"deleted_records": 0, "reclaimed_bytes": 0}),
        "{real}"
    );
    assert_eq!(
        real["build_cache_reclaimed_bytes"], 0,
        "the old field stays"
    );
    let text = gc(&d, &["--build-cache"]);
    assert!(
        text.stdout
            .contains("Build cache: 0 B reclaimed (0 records deleted)"),
        "{}",
        text.stdout
    );
}

/// Bytes under the data root's `overlay2/` that no layer, container or BuildKit
/// snapshot names (a leaked layer): 0 on a clean engine with an image and a
/// container, then a planted directory is counted, in a dry run and a real run.
#[test]
fn a_leaked_layer_directory_is_reported_as_unaccounted_bytes() {
    let d = Dockerd::builder().storage_driver("overlay2").start();
    images::busybox_image(&d, "bb:1");
    images::run_container(&d, "bb:1", "done", &["true"]);
    d.docker_ok(["wait", "done"]);
    let clean = json(&gc(&d, &["--output", "json", "--dry-run"]));
    assert_eq!(clean["unaccounted_bytes"], 0, "{clean}");
    let text = gc(&d, &["--dry-run"]);
    assert!(!text.stdout.contains("Unaccounted"), "{}", text.stdout);

    let leaked = d.data_root().join("overlay2").join("f".repeat(64));
    std::fs::create_dir_all(leaked.join("diff/usr")).expect("plant a leaked layer");
    std::fs::write(leaked.join("diff/usr/blob"), vec![7u8; 300_000]).expect("write");
    let dry = json(&gc(&d, &["--output", "json", "--dry-run"]));
    let bytes = dry["unaccounted_bytes"]
        .as_u64()
        .expect("unaccounted_bytes");
    assert!((300_000..400_000).contains(&bytes), "{bytes}\n{dry}");
    let text = gc(&d, &["--dry-run"]);
    assert!(
        text.stdout.contains("Unaccounted: ")
            && text.stdout.contains("in 1 directory under overlay2/"),
        "{}",
        text.stdout
    );
    let real = json(&gc(&d, &["--output", "json", "--min-age", "0s"]));
    assert_eq!(real["unaccounted_bytes"], bytes, "{real}");
    assert!(
        leaked.exists(),
        "gc reports a leaked directory, never removes it"
    );
}

/// Another storage driver: its layout is not read, and the report says so.
#[test]
fn unaccounted_bytes_are_not_measured_on_vfs() {
    let d = Dockerd::builder().storage_driver("vfs").start();
    let doc = json(&gc(&d, &["--output", "json", "--dry-run"]));
    assert!(doc.get("unaccounted_bytes").is_none(), "{doc}");
    let text = gc(&d, &["--dry-run"]);
    assert!(
        text.stdout
            .contains("Unaccounted: not measured (storage driver vfs; only overlay2 is read)"),
        "{}",
        text.stdout
    );
}
