//! The global CLI and the config file through the built binary: help and version,
//! a missing or malformed config file, unknown keys, bad values and bad cron
//! expressions are exit 2 with one line naming the file, key and line, and nothing
//! is written.

use std::fs;

use shipshape_tests::bin::{run_shipshape, Output};

fn check(config: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("shipshape.toml");
    fs::write(&path, config).expect("write config");
    let out = run_shipshape(
        ["--config".as_ref(), path.as_os_str(), "check".as_ref()],
        &[],
    );
    assert_eq!(
        fs::read_to_string(&path).expect("config still there"),
        config,
        "check changed the config file"
    );
    assert_eq!(
        fs::read_dir(dir.path()).expect("dir").count(),
        1,
        "check wrote a file"
    );
    (out, dir)
}

fn assert_usage_error(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.code, 2,
        "stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(out.stdout.is_empty(), "stdout: {}", out.stdout);
    assert_eq!(
        out.stderr.trim().lines().count(),
        1,
        "not one line: {}",
        out.stderr
    );
    assert!(
        out.stderr.starts_with("shipshape: error: "),
        "{}",
        out.stderr
    );
    for n in needles {
        assert!(out.stderr.contains(n), "{n:?} missing from: {}", out.stderr);
    }
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn version_and_help_exit_zero() {
    let out = run_shipshape(["--version"], &[]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("shipshape "), "{}", out.stdout);
    let out = run_shipshape(["--help"], &[]);
    assert_eq!(out.code, 0);
    for cmd in [
        "bootstrap",
        "gc",
        "ecr-prune",
        "ecr-usage",
        "daemon",
        "check",
    ] {
        assert!(
            out.stdout.contains(cmd),
            "{cmd} not in help:\n{}",
            out.stdout
        );
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let out = run_shipshape(["gc", "--min-agee", "1h"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("--min-agee"), "{}", out.stderr);
}

#[test]
fn a_missing_config_named_with_config_is_exit_2_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nope.toml");
    let out = run_shipshape(
        ["--config".as_ref(), path.as_os_str(), "check".as_ref()],
        &[],
    );
    assert_usage_error(&out, &["nope.toml"]);
    assert!(!path.exists());
}

#[test]
fn unknown_key_names_the_key_and_line() {
    let (out, _dir) = check("[gc]\nmin_age = \"1h\"\nkeep_per_rep = 2\n");
    assert_usage_error(&out, &["keep_per_rep", "line 3", "shipshape.toml"]);
}

#[test]
fn unknown_section_is_refused() {
    let (out, _dir) = check("[gcc]\nmin_age = \"1h\"\n");
    assert_usage_error(&out, &["gcc"]);
}

#[test]
fn not_toml_is_refused_with_the_line() {
    let (out, _dir) = check("[gc]\nmin_age = 1h\n");
    assert_usage_error(&out, &["line 2"]);
}

#[test]
fn a_bad_duration_names_its_key() {
    let (out, _dir) = check("[gc]\nmin_age = \"soon\"\n");
    assert_usage_error(&out, &["min_age", "soon"]);
}

#[test]
fn a_bad_watermark_names_its_key() {
    let (out, _dir) = check("[gc]\nhigh_water = \"lots\"\nlow_water = \"10%\"\n");
    assert_usage_error(&out, &["high_water", "lots"]);
}

/// One test per kind of bad schedule.
mod a_bad_cron_expression_names_the_job {
    use super::*;

    #[test]
    fn not_cron_at_all() {
        let (out, _dir) = check("[daemon.jobs.gc]\nschedule = \"every tuesday\"\n");
        assert_usage_error(&out, &["daemon.jobs.gc.schedule"]);
    }

    #[test]
    fn minute_out_of_range() {
        let (out, _dir) = check("[daemon.jobs.gc]\nschedule = \"61 * * * *\"\n");
        assert_usage_error(&out, &["daemon.jobs.gc.schedule"]);
    }
}

#[test]
fn a_bad_ecr_rule_names_the_rule_and_field() {
    let (out, _dir) = check(
        "[[ecr.rules]]\nrulePriority = 1\n[ecr.rules.selection]\ntagStatus = \"sometimes\"\ncountType = \"imageCountMoreThan\"\ncountNumber = 3\n[ecr.rules.action]\ntype = \"expire\"\n",
    );
    assert_usage_error(&out, &["tagStatus"]);
}

#[test]
fn check_prints_the_effective_config_with_secret_looking_values_redacted() {
    let (out, _dir) = check(
        "[bootstrap]\ncluster = \"prod\"\nset = { MY_REGISTRY_TOKEN = \"hunter2\", ECS_LOGLEVEL = \"debug\" }\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("config OK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("\"prod\"") && out.stdout.contains("\"debug\""),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("<redacted>"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("hunter2") && !out.stderr.contains("hunter2"),
        "{}",
        out.stdout
    );
}

/// On a host without CA certificates the SDK's TLS connector asserts ("no CA
/// certificates found") when the first AWS client is built, which aborts the process
/// (panic = "abort" in release). Every AWS command checks first: one line naming where
/// it looked and what to install, exit 1, nothing done. `SSL_CERT_FILE` names an empty
/// file and `SSL_CERT_DIR` an empty directory, as on a host without ca-certificates.
#[test]
fn no_ca_certificates_is_one_line_and_exit_1_for_every_aws_command() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    fs::create_dir(&certs).expect("mkdir");
    let bundle = dir.path().join("ca.pem");
    fs::write(&bundle, "").expect("write");
    let (certs, bundle) = (
        certs.to_str().expect("utf-8").to_owned(),
        bundle.to_str().expect("utf-8").to_owned(),
    );
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let endpoint = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let env: Vec<(String, String)> = [
        ("SSL_CERT_FILE", bundle.as_str()),
        ("SSL_CERT_DIR", certs.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
    ]
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .to_vec();
    let usage = dir.path().join("usage.json");
    let ecs_config = dir.path().join("ecs.config");
    let runs: [Vec<&str>; 3] = [
        vec!["ecr-prune"],
        vec!["ecr-usage", "--output", usage.to_str().expect("utf-8")],
        vec![
            "bootstrap",
            "--ecs-config",
            ecs_config.to_str().expect("utf-8"),
            "--auth-secret",
            "registry-auth",
        ],
    ];
    for args in runs {
        let out = run_shipshape(&args, &env);
        assert_eq!(out.code, 1, "{args:?}: stderr: {}", out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "{args:?}: one line: {}", out.stderr);
        let expected = format!(
            "no CA certificates found in SSL_CERT_FILE={bundle} and SSL_CERT_DIR={certs}; install ca-certificates"
        );
        assert!(lines[0].contains(&expected), "{args:?}: {}", lines[0]);
    }
    assert!(!usage.exists() && !ecs_config.exists(), "nothing written");
}
