//! `gc`'s policy through the binary on a private dockerd whose data root is a small
//! tmpfs: `--max-age` deleting what is unused for longer while high water is not
//! reached, max age and LRU eviction in one pass stopping at low water,
//! `--ensure-free` met (exit 0) and not met (exit 3) — each time the dry run
//! predicting exactly what the real run then does.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use shipshape::last_use::LastUseState;
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::dockerd::Dockerd;
use shipshape_tests::images::{self, ImageSpec};

const OLD: i64 = 1_600_000_000; // 2020-09-13
const MIB: u64 = 1 << 20;
/// Each generated image's own layer: deleting it frees about this much.
const PAYLOAD: u64 = 8 * MIB;
/// `--max-age` for these tests: long enough for a dry run and a real run after
/// the "recent" uses, short enough to wait out after loading.
const MAX_AGE_SECS: u64 = 20;

/// `gc` with a state file and JSON output; returns the output and its document.
fn gc(d: &Dockerd, state: &Path, args: &[&str]) -> (Output, Value) {
    let mut argv = vec![
        "--docker-host".to_owned(),
        d.host(),
        "gc".to_owned(),
        "--output".to_owned(),
        "json".to_owned(),
        "--state".to_owned(),
        state.display().to_string(),
    ];
    argv.extend(args.iter().map(|s| s.to_string()));
    let out = run_shipshape(argv, &[]);
    let doc = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            out.stdout, out.stderr
        )
    });
    (out, doc)
}

/// Image ID → (action, reason), the dry run's "would delete" read as "deleted".
fn decisions(doc: &Value) -> BTreeMap<String, (String, String)> {
    doc["images"]
        .as_array()
        .expect("images array")
        .iter()
        .map(|i| {
            let action = i["action"].as_str().unwrap_or_default();
            (
                i["id"].as_str().unwrap_or_default().to_owned(),
                (
                    action.replace("would delete", "deleted"),
                    i["reason"].as_str().unwrap_or_default().to_owned(),
                ),
            )
        })
        .collect()
}

/// The dry run first, then the real run with the same arguments: the same decision
/// for every image and the same exit code. Returns the real run's document.
fn dry_then_real(d: &Dockerd, state: &Path, args: &[&str]) -> (i32, Value) {
    let mut dry_args = vec!["--dry-run"];
    dry_args.extend_from_slice(args);
    let (dry_out, dry) = gc(d, state, &dry_args);
    let (out, real) = gc(d, state, args);
    assert_eq!(
        decisions(&dry),
        decisions(&real),
        "the dry run predicted another outcome\ndry stderr: {}\nreal stderr: {}",
        dry_out.stderr,
        out.stderr
    );
    assert_eq!(dry_out.code, out.code, "exit codes differ: {}", out.stderr);
    (out.code, real)
}

fn deleted_ids(doc: &Value) -> Vec<String> {
    decisions(doc)
        .into_iter()
        .filter(|(_, (a, _))| a == "deleted")
        .map(|(id, _)| id)
        .collect()
}

fn used_bytes(d: &Dockerd) -> u64 {
    let st = nix::sys::statvfs::statvfs(&d.data_root()).expect("statvfs");
    (st.blocks() - st.blocks_free()) as u64 * st.fragment_size() as u64
}

fn free_bytes(d: &Dockerd) -> u64 {
    let st = nix::sys::statvfs::statvfs(&d.data_root()).expect("statvfs");
    st.blocks_free() as u64 * st.fragment_size() as u64
}

/// `count` images of `PAYLOAD` bytes each, named `{prefix}/{n}:1`, oldest first,
/// loaded in batches (`docker load` stages the archive on the same small filesystem).
fn load_big(d: &Dockerd, prefix: &str, count: i64) -> Vec<String> {
    let specs: Vec<ImageSpec> = (0..count)
        .map(|n| {
            ImageSpec::new(&format!("{prefix}/{n}:1"), OLD + n * 100)
                .payload(usize::try_from(PAYLOAD).expect("payload fits usize"))
        })
        .collect();
    specs.chunks(4).flat_map(|c| images::load(d, c)).collect()
}

/// A state file in which `ids` were used just now, in that order a millisecond
/// apart (the daemon's record; later than the loads, so it sets the LRU order).
fn used_now(dir: &Path, ids: &[String]) -> std::path::PathBuf {
    let path = dir.join("state.json");
    let now = chrono::Utc::now();
    let mut state = LastUseState::empty(now);
    for (n, id) in ids.iter().enumerate() {
        state.touch(id, now + chrono::Duration::milliseconds(n as i64));
    }
    state.save(&path).expect("save state");
    path
}

/// Wait until everything loaded so far is unused for longer than `--max-age`
/// (the engine saw the loads: they count as uses).
fn outlive_max_age() {
    std::thread::sleep(Duration::from_secs(MAX_AGE_SECS + 2));
}

#[test]
fn max_age_deletes_what_is_unused_for_longer_while_high_water_is_not_reached() {
    let d = Dockerd::builder().tmpfs_data_root(128 << 20).start();
    let stale = load_big(&d, "stale", 3);
    let recent = load_big(&d, "recent", 2);
    outlive_max_age();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = used_now(dir.path(), &recent);
    let max_age = format!("{MAX_AGE_SECS}s");
    let args = [
        "--min-age",
        "0s",
        "--max-age",
        &max_age,
        "--high-water",
        "99%",
        "--low-water",
        "98%",
    ];
    let (code, real) = dry_then_real(&d, &state, &args);
    assert_eq!(code, 0);
    let planned = decisions(&real);
    for id in &stale {
        assert_eq!(
            planned[id],
            ("deleted".to_owned(), format!("unused for over {max_age}"))
        );
    }
    for id in &recent {
        assert_eq!(
            planned[id],
            (
                "kept".to_owned(),
                "disk usage not above high water 99%".to_owned()
            )
        );
    }
    let left = d.image_ids();
    assert!(recent.iter().all(|id| left.contains(id)));
    assert!(stale.iter().all(|id| !left.contains(id)));
}

#[test]
fn max_age_and_lru_eviction_in_one_pass_stop_at_low_water() {
    let d = Dockerd::builder().tmpfs_data_root(256 << 20).start();
    let stale = load_big(&d, "stale", 2);
    outlive_max_age();
    let recent = load_big(&d, "recent", 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = used_now(dir.path(), &recent);
    // The two stale images free about 16 MiB: still above high water (20 MiB
    // below today), so the least recently used of the others go until low water
    // (28 MiB below): two more. Each boundary sits half an image from the
    // figures, so the dry run's sizes and the real filesystem agree.
    let before = used_bytes(&d);
    let high = (before - 20 * MIB).to_string();
    let low = (before - 28 * MIB).to_string();
    let max_age = format!("{MAX_AGE_SECS}s");
    let args = [
        "--min-age",
        "0s",
        "--max-age",
        &max_age,
        "--high-water",
        &format!("{high}B"),
        "--low-water",
        &format!("{low}B"),
    ];
    let (code, real) = dry_then_real(&d, &state, &args);
    assert_eq!(code, 0);
    let planned = decisions(&real);
    let mut gone = stale.clone();
    gone.extend(recent[..2].iter().cloned());
    gone.sort();
    assert_eq!(deleted_ids(&real), gone, "{planned:#?}");
    for id in &stale {
        assert_eq!(planned[id].1, format!("unused for over {max_age}"));
    }
    assert_eq!(planned[&recent[0]].1, "least recently used");
    assert!(planned[&recent[2]].1.contains("low water"), "{planned:#?}");
    assert!(used_bytes(&d) <= before - 28 * MIB);
    assert_eq!(d.image_ids().len(), 4);
}

#[test]
fn watermarks_alone_evict_to_low_water_as_the_dry_run_said() {
    let d = Dockerd::builder().tmpfs_data_root(128 << 20).start();
    let ids = load_big(&d, "lru", 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = used_now(dir.path(), &ids);
    // Above high water by half an image; low water 2.5 images below: three go.
    let before = used_bytes(&d);
    let high = format!("{}B", before - 4 * MIB);
    let low = format!("{}B", before - 20 * MIB);
    let args = [
        "--min-age",
        "0s",
        "--high-water",
        &high,
        "--low-water",
        &low,
    ];
    let (code, real) = dry_then_real(&d, &state, &args);
    assert_eq!(code, 0);
    let mut gone = ids[..3].to_vec();
    gone.sort();
    assert_eq!(deleted_ids(&real), gone);
    assert!(used_bytes(&d) <= before - 20 * MIB);
}

/// Images that share most of their bytes with a kept base: the listing's `Size`
/// counts the base in each, so an estimate from it would stop after one eviction;
/// the dry run uses the unique sizes (`/system/df`) and predicts the three the disk
/// needs.
#[test]
fn evictions_of_images_sharing_a_base_are_estimated_from_unique_sizes() {
    let d = Dockerd::builder().tmpfs_data_root(256 << 20).start();
    let mib = usize::try_from(MIB).expect("fits");
    let mut specs = vec![ImageSpec::new("shared/base:1", OLD).payload(8 * mib)];
    specs.extend((0..6).map(|n| ImageSpec {
        shares_base_with: Some(0),
        ..ImageSpec::new(&format!("shared/app{n}:1"), OLD + n).payload(4 * mib)
    }));
    let ids = images::load(&d, &specs);
    let apps = ids[1..].to_vec();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = used_now(dir.path(), &apps);
    // Each app lists 12 MiB, holds 4 alone; 10 MiB must go: three apps (12 MiB),
    // where their listed sizes would say one.
    let before = used_bytes(&d);
    let high = format!("{}B", before - 2 * MIB);
    let low = format!("{}B", before - 10 * MIB);
    let args = [
        "--min-age",
        "0s",
        "--exclude",
        "shared/base:*",
        "--high-water",
        &high,
        "--low-water",
        &low,
    ];
    let (code, real) = dry_then_real(&d, &state, &args);
    assert_eq!(code, 0);
    let mut gone = apps[..3].to_vec();
    gone.sort();
    assert_eq!(deleted_ids(&real), gone, "{:#?}", decisions(&real));
    assert!(used_bytes(&d) <= before - 10 * MIB);
}

/// Inode pressure on a filesystem with few inodes: the engine tells nothing about
/// an image's inodes, so the dry run walks the layers each deletion frees (the layer
/// store under the data root) and predicts the count the real run re-measures.
#[test]
fn under_inode_pressure_the_dry_run_predicts_the_real_count() {
    const FILES: u64 = 400;
    const INODES: u64 = 6000;
    let d = Dockerd::builder()
        .tmpfs_data_root(256 << 20)
        .tmpfs_inodes(INODES)
        .start();
    let specs: Vec<ImageSpec> = (0..6)
        .map(|n| ImageSpec::new(&format!("many/{n}:1"), OLD + n * 100).files(FILES as usize))
        .collect();
    let ids: Vec<String> = specs.chunks(2).flat_map(|c| images::load(&d, c)).collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let state = used_now(dir.path(), &ids);
    let st = nix::sys::statvfs::statvfs(&d.data_root()).expect("statvfs");
    let (total, free) = (st.files() as u64, st.files_free() as u64);
    let used = total - free;
    // Above high water by half an image's files; low water 2.5 images' files below
    // today: three images go. Bytes stay far below both marks.
    let pct = |inodes: u64| format!("{:.4}%", inodes as f64 * 100.0 / total as f64);
    let high = pct(used - FILES / 2);
    let low = pct(used - FILES * 5 / 2);
    let args = [
        "--min-age",
        "0s",
        "--high-water",
        &high,
        "--low-water",
        &low,
    ];
    let (code, real) = dry_then_real(&d, &state, &args);
    assert_eq!(code, 0);
    let mut gone = ids[..3].to_vec();
    gone.sort();
    assert_eq!(deleted_ids(&real), gone, "{:#?}", decisions(&real));
    let st = nix::sys::statvfs::statvfs(&d.data_root()).expect("statvfs");
    assert!(total - (st.files_free() as u64) <= used - FILES * 5 / 2);
}

#[test]
fn ensure_free_evicts_until_met_and_exits_3_when_it_cannot() {
    let d = Dockerd::builder().tmpfs_data_root(128 << 20).start();
    let ids = load_big(&d, "ci", 6);
    let dir = tempfile::tempdir().expect("tempdir");
    let state = used_now(dir.path(), &ids);
    // 2.5 images more than free now: three go, oldest first.
    let want = free_bytes(&d) + 20 * MIB;
    let want_arg = format!("{want}B");
    let (code, real) = dry_then_real(&d, &state, &["--min-age", "0s", "--ensure-free", &want_arg]);
    assert_eq!(code, 0, "{real:#}");
    let mut gone = ids[..3].to_vec();
    gone.sort();
    assert_eq!(deleted_ids(&real), gone);
    assert_eq!(real["ensure_free"]["met"], true);
    assert!(free_bytes(&d) >= want);

    // More than the whole filesystem: every candidate goes, the goal is missed, exit 3
    // (the dry run says so first).
    let (code, real) = dry_then_real(&d, &state, &["--min-age", "0s", "--ensure-free", "1GiB"]);
    assert_eq!(code, 3);
    assert_eq!(real["ensure_free"]["met"], false);
    assert!(d.image_ids().is_empty());
}

#[test]
fn ensure_free_in_text_output_and_help() {
    let d = Dockerd::builder().tmpfs_data_root(64 << 20).start();
    let out = run_shipshape(
        [
            "--docker-host",
            &d.host(),
            "gc",
            "--dry-run",
            "--ensure-free",
            "1GiB",
            "--state",
            "/nonexistent/state.json",
        ],
        &[],
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stdout.contains("Ensure free 1.0 GiB:") && out.stdout.contains("NOT met"),
        "{}",
        out.stdout
    );
    let help = run_shipshape(["gc", "--help"], &[]);
    assert!(help.stdout.contains("--ensure-free") && help.stdout.contains("exit 3"));
    assert!(help.stdout.contains("--max-age"));
}

/// One test per bad policy value: exit 2 with one line naming the key or flag,
/// nothing on stdout, nothing deleted.
mod a_bad_policy_value_is_exit_2_naming_it_and_changes_nothing {
    use super::*;

    fn refused(args: &[&str], config: Option<&str>, needles: &[&str]) {
        let d = Dockerd::start();
        images::load(&d, &[ImageSpec::new("app:1", OLD)]);
        let before = d.image_ids();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut argv = vec!["--docker-host".to_owned(), d.host()];
        if let Some(text) = config {
            let path = dir.path().join("shipshape.toml");
            std::fs::write(&path, text).expect("write config");
            argv.extend(["--config".to_owned(), path.display().to_string()]);
        }
        argv.push("gc".to_owned());
        argv.extend(args.iter().map(|s| s.to_string()));
        let out = run_shipshape(argv, &[]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert_eq!(out.stderr.trim().lines().count(), 1, "{}", out.stderr);
        for n in needles {
            assert!(out.stderr.contains(n), "{n:?} missing: {}", out.stderr);
        }
        assert_eq!(d.image_ids(), before);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
    }

    #[test]
    fn max_age_flag_not_above_min_age() {
        refused(
            &["--min-age", "2h", "--max-age", "1h"],
            None,
            &["--max-age", "min age 2h"],
        );
    }

    #[test]
    fn max_age_in_the_file_not_above_min_age() {
        refused(
            &["--min-age", "0s"],
            Some("[gc]\nmin_age = \"0s\"\nmax_age = \"0s\"\n"),
            &["gc.max_age", "line 3"],
        );
    }

    #[test]
    fn ensure_free_that_is_no_size() {
        refused(
            &["--min-age", "0s", "--ensure-free", "10GB,lots"],
            None,
            &["--ensure-free", "lots"],
        );
    }
}

#[test]
fn an_old_image_freshly_pulled_is_kept_by_min_age_without_a_state_file() {
    let mut d = Dockerd::start();
    let registry = shipshape_tests::registry::DigestRegistry::start(&d);
    let ids = images::load(
        &d,
        &[
            ImageSpec::new("local/pulled:1", OLD),
            ImageSpec::new("local/loaded:1", OLD + 10),
            ImageSpec::new("local/retagged:1", OLD + 20),
        ],
    );
    let (pulled, loaded, retagged) = (&ids[0], &ids[1], &ids[2]);
    let remote = format!("{}/team/pulled:1", registry.host());
    d.docker_ok(["tag", "local/pulled:1", &remote]);
    d.docker_ok(["push", &remote]);
    d.docker_ok(["rmi", &remote, "local/pulled:1"]);
    // `docker tag` sets LastTagTime (the engine keeps it across restarts).
    d.docker_ok(["tag", "local/retagged:1", "local/retagged:2"]);
    // A restart empties the engine's event log: only what happens next is in it.
    d.forget_events();
    d.docker_ok(["pull", &remote]);
    assert!(
        d.image_ids().contains(pulled),
        "the pull brings the same image back"
    );

    let state = Path::new("/nonexistent/state.json");
    let (out, dry) = gc(&d, state, &["--dry-run", "--min-age", "1h"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let planned = decisions(&dry);
    let young = ("kept".to_owned(), "younger than 1h".to_owned());
    assert_eq!(planned[pulled], young, "built in 2020, pulled just now");
    assert_eq!(planned[retagged], young, "tagged minutes ago (LastTagTime)");
    assert_eq!(
        planned[loaded].0, "deleted",
        "loaded before the restart, no use the engine still knows of"
    );
    let (out, real) = gc(&d, state, &["--min-age", "1h"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(decisions(&real), planned);
    let left = d.image_ids();
    assert!(left.contains(pulled) && left.contains(retagged) && !left.contains(loaded));
}
