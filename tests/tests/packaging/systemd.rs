//! The systemd units under `systemd-analyze`: `verify` without a warning (and proof that
//! it catches a typo), the daemon's `security` exposure within the committed bound and as
//! the README states it, and the directives SPEC requires of each unit.

use std::path::Path;

use shipshape_tests::bin::run;
use shipshape_tests::packaging::{unit_root, verify, UNITS};
use shipshape_tests::tools::{cmd, ok, read, repo, write};

/// The committed bound on `systemd-analyze security` exposure of shipshape.service.
const EXPOSURE_BOUND: f64 = 2.0;

#[test]
fn every_unit_passes_systemd_analyze_verify_without_warnings() {
    let root = unit_root(&repo("systemd"));
    let out = verify(root.path(), &UNITS);
    ok(&out, "systemd-analyze verify");
    assert!(
        out.stderr.trim().is_empty() && out.stdout.trim().is_empty(),
        "systemd-analyze verify printed warnings:\n{}{}",
        out.stdout,
        out.stderr
    );
}

#[test]
fn verify_catches_a_misspelled_directive() {
    // Proof that the check above can fail: systemd only warns about unknown keys.
    let root = unit_root(&repo("systemd"));
    let unit = root.path().join("etc/systemd/system/shipshape.service");
    let text = read(&unit).replace("NoNewPrivileges=yes", "NoNewPrivilegez=yes");
    write(&unit, &text);
    let out = verify(root.path(), &["shipshape.service"]);
    assert!(
        out.stderr.contains("NoNewPrivilegez"),
        "verify did not report the typo: {}",
        out.stderr
    );
}

fn exposure(root: &Path, unit: &str) -> f64 {
    let out = run(cmd("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(format!("--root={}", root.display()))
        .arg(unit));
    ok(&out, "systemd-analyze security");
    let needle = format!("Overall exposure level for {unit}: ");
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.split_once(&needle).map(|(_, rest)| rest.to_owned()))
        .unwrap_or_else(|| panic!("no exposure line in:\n{}", out.stdout));
    line.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure in {line:?}"))
}

#[test]
fn daemon_exposure_is_within_the_committed_bound_and_matches_the_readme() {
    let root = unit_root(&repo("systemd"));
    let score = exposure(root.path(), "shipshape.service");
    assert!(
        score <= EXPOSURE_BOUND,
        "shipshape.service exposure {score} exceeds the committed bound {EXPOSURE_BOUND}"
    );
    let readme = read(&repo("README.md"));
    let stated = format!("exposure level for shipshape.service: {score:.1}");
    assert!(
        readme.contains(&stated),
        "README must report the current score; expected the text `{stated}`"
    );
}

fn directives(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn assert_has(unit: &str, want: &[(&str, &str)]) {
    let have = directives(&read(&repo("systemd").join(unit)));
    for (k, v) in want {
        assert!(
            have.iter().any(|(hk, hv)| hk == k && hv.contains(v)),
            "{unit}: expected {k}= containing {v:?}"
        );
    }
}

/// One test per unit, so that a unit missing a directive does not hide the others.
mod units_carry_the_spec_directives {
    use super::assert_has;

    #[test]
    fn daemon_service() {
        assert_has(
            "shipshape.service",
            &[
                ("Type", "notify"),
                ("WatchdogSec", "s"),
                ("Restart", "on-failure"),
                ("After", "docker.service"),
                ("NoNewPrivileges", "yes"),
                ("ProtectSystem", "strict"),
                ("StateDirectory", "shipshape"),
                ("ConfigurationDirectory", "ecs"),
                ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
                ("SystemCallFilter", "@system-service"),
                ("CapabilityBoundingSet", ""),
                ("ExecStart", "/usr/bin/shipshape daemon"),
                ("ReadOnlyPaths", "/run"),
                ("InaccessiblePaths", "/run/systemd/private"),
                ("InaccessiblePaths", "/run/dbus/system_bus_socket"),
                ("LimitNOFILE", ""),
                ("Wants", "shipshape-ecs-restart.path"),
                ("RuntimeDirectory", "shipshape"),
                ("RuntimeDirectoryPreserve", "yes"),
            ],
        );
    }

    #[test]
    fn bootstrap_service() {
        assert_has(
            "shipshape-bootstrap.service",
            &[
                ("Type", "oneshot"),
                ("RemainAfterExit", "yes"),
                ("Before", "ecs.service"),
                ("After", "network-online.target"),
                ("ExecStart", "/usr/bin/shipshape bootstrap"),
                ("ReadOnlyPaths", "/run"),
                ("RuntimeDirectory", "shipshape"),
                ("RuntimeDirectoryPreserve", "yes"),
                ("InaccessiblePaths", "/run/systemd/private"),
                ("InaccessiblePaths", "/run/dbus/system_bus_socket"),
            ],
        );
    }

    #[test]
    fn gc_service() {
        assert_has(
            "shipshape-gc.service",
            &[
                ("Type", "oneshot"),
                ("ExecStart", "/usr/bin/shipshape gc"),
                ("ReadOnlyPaths", "/run"),
                ("InaccessiblePaths", "/run/systemd/private"),
                ("InaccessiblePaths", "/run/dbus/system_bus_socket"),
                ("RestrictAddressFamilies", "AF_UNIX"),
            ],
        );
    }

    #[test]
    fn ecs_restart_path() {
        assert_has(
            "shipshape-ecs-restart.path",
            &[
                ("PathChanged", "/var/lib/shipshape/ecs-restart"),
                ("Unit", "shipshape-ecs-restart.service"),
            ],
        );
        assert_has(
            "shipshape-ecs-restart.service",
            &[
                ("Type", "oneshot"),
                ("ExecStart", "systemctl restart --no-block ecs.service"),
            ],
        );
    }

    #[test]
    fn gc_timer() {
        assert_has(
            "shipshape-gc.timer",
            &[("RandomizedDelaySec", "min"), ("WantedBy", "timers.target")],
        );
    }
}
