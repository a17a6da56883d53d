//! `shipshape bootstrap` end to end: the built binary against a real moto_server.
//! Round trip through an ecs-init style reader for both auth types, merge, idempotence,
//! fail-closed cases (file byte-identical, no temp files), access denied via moto's
//! IAM enforcement, timeouts, `--docker-config`, `--dry-run`, config file + `check`,
//! and a canary password that must never appear in any output at trace level.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use shipshape_tests::aws::{creds, Aws};
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::canary::{assert_no_canary, CANARY};
use shipshape_tests::moto::Moto;

const HUB: &str = "https://index.docker.io/v1/";

/// Passwords ecs-init must read back exactly.
const NASTY: &str = "p\"w\\d$HOME=x'y z:ü€🚀";

/// Read a file the way ecs-init does, following its `getEnvVars`
/// (aws/amazon-ecs-agent, ecs-init/docker/docker.go):
/// `strings.Split(strings.TrimSpace(file), "\n")`, then for each line
/// `strings.SplitN(strings.TrimSpace(line), "=", 2)`, lines without `=` skipped, the
/// last occurrence of a key wins. Go's `TrimSpace` removes Unicode White_Space, the
/// set `str::trim` removes; invalid UTF-8 decodes as U+FFFD for Go, which is not a
/// space, so reading lossily trims exactly as Go does.
fn ecs_init_read(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for line in text.trim().split('\n') {
        if let Some((k, v)) = line.trim().split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

fn ecs_init_read_bytes(bytes: &[u8]) -> HashMap<String, String> {
    ecs_init_read(&String::from_utf8_lossy(bytes))
}

/// Decode ECS_ENGINE_AUTH_DATA of either type into registry → (username, password).
fn decode_auth(auth_type: &str, data: &str) -> HashMap<String, (String, String)> {
    let v: serde_json::Value = serde_json::from_str(data).expect("auth data is JSON");
    let obj = v.as_object().expect("auth data is an object");
    assert!(!obj.contains_key("auths"), "no auths wrapper");
    obj.iter()
        .map(|(reg, entry)| {
            let pair = match auth_type {
                "docker" => (
                    entry["username"].as_str().expect("username").to_owned(),
                    entry["password"].as_str().expect("password").to_owned(),
                ),
                "dockercfg" => {
                    let raw = B64
                        .decode(entry["auth"].as_str().expect("auth"))
                        .expect("base64");
                    let text = String::from_utf8(raw).expect("utf8");
                    let (u, p) = text.split_once(':').expect("user:pass");
                    (u.to_owned(), p.to_owned())
                }
                other => panic!("unknown auth type {other}"),
            };
            (reg.clone(), pair)
        })
        .collect()
}

fn run(moto_env: &[(String, String)], args: &[&str]) -> Output {
    let mut all = vec!["--log-level", "trace", "bootstrap"];
    all.extend_from_slice(args);
    run_shipshape(all, moto_env)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).expect("metadata").permissions().mode() & 0o777
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const EXISTING: &str = "# written by the AMI build\nECS_LOGLEVEL=debug\n\nECS_CLUSTER=default\nECS_RESERVED_MEMORY=256\nECS_RESERVED_MEMORY=512\nECS_CLUSTER=stale-duplicate\n";

/// The issue's example, once per auth type: two registries (one secret by ARN in another
/// region), an S3 fragment, a seeded file with unmanaged duplicates.
mod issue_example_round_trips {
    use super::*;

    #[tokio::test]
    async fn with_auth_type_docker() {
        round_trip("docker").await;
    }

    #[tokio::test]
    async fn with_auth_type_dockercfg() {
        round_trip("dockercfg").await;
    }

    async fn round_trip(auth_type: &str) {
        let moto = Moto::start();
        let aws = Aws::new(&moto).await;
        aws.secret(
            "us-east-1",
            "prod/gitlab-registry",
            &creds("gitlab-bot", NASTY),
        )
        .await;
        let hub_pw = "hub \"pass\" \\ $x = 'q' ü";
        let hub_arn = aws
            .secret("eu-west-1", "hub", &creds("hubuser", hub_pw))
            .await;
        assert!(hub_arn.starts_with("arn:aws:secretsmanager:eu-west-1:"));
        aws.object(
            "my-config",
            "ecs/base.config",
            "ECS_ENABLE_TASK_IAM_ROLE=true\nECS_LOGLEVEL=info\n",
        )
        .await;

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ecs.config");
        fs::write(&path, EXISTING).expect("seed");
        let gitlab = "registry.gitlab.com=prod/gitlab-registry".to_owned();
        let hub = format!("docker.io={hub_arn}");
        let out = run(
            &moto.env(),
            &[
                "--ecs-config",
                path.to_str().expect("utf8"),
                "--cluster",
                "prod",
                "--registry-secret",
                &gitlab,
                "--registry-secret",
                &hub,
                "--from-s3",
                "s3://my-config/ecs/base.config",
                "--auth-type",
                auth_type,
            ],
        );
        assert_eq!(out.code, 0, "{auth_type}: {}", out.stderr);
        assert!(
            out.stdout.contains("updated (5 keys, 2 registries)"),
            "{}",
            out.stdout
        );
        for secret in [NASTY, hub_pw] {
            assert!(!out.stdout.contains(secret) && !out.stderr.contains(secret));
        }
        let text = fs::read_to_string(&path).expect("read");
        let read = ecs_init_read(&text);
        assert_eq!(read["ECS_CLUSTER"], "prod");
        assert_eq!(read["ECS_ENGINE_AUTH_TYPE"], auth_type);
        assert_eq!(read["ECS_ENABLE_TASK_IAM_ROLE"], "true");
        assert_eq!(
            read["ECS_LOGLEVEL"], "info",
            "fragment key replaced in place"
        );
        assert_eq!(
            read["ECS_RESERVED_MEMORY"], "512",
            "unmanaged duplicate kept"
        );
        let auths = decode_auth(auth_type, &read["ECS_ENGINE_AUTH_DATA"]);
        assert_eq!(auths.len(), 2);
        assert_eq!(
            auths["registry.gitlab.com"],
            ("gitlab-bot".to_owned(), NASTY.to_owned())
        );
        assert_eq!(auths[HUB], ("hubuser".to_owned(), hub_pw.to_owned()));
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("ECS_ENGINE_AUTH_DATA="))
                .count(),
            1,
            "one line"
        );
        assert_eq!(mode(&path), 0o600);
        assert_eq!(dir_entries(dir.path()), vec!["ecs.config"], "no temp files");
    }
}

#[tokio::test]
async fn merge_keeps_unmanaged_lines_and_replaces_managed_keys_in_place() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "r", &creds("u", "p")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let existing = "# comment = with equals\n\nECS_AVAILABLE_LOGGING_DRIVERS=[\"json-file\",\"awslogs\"]\nECS_CLUSTER=old\n  indented line kept  \nECS_INSTANCE_ATTRIBUTES={\"a\":\"b\"}\nDUP=1\nDUP=2\nECS_CLUSTER=later-duplicate\nECS_ENGINE_AUTH_TYPE=dockercfg\nno final newline";
    fs::write(&path, existing).expect("seed");
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--cluster",
            "prod",
            "--set",
            "ECS_ENABLE_SPOT_INSTANCE_DRAINING=true",
            "--registry-secret",
            "ghcr.io=r",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let data = r#"{"ghcr.io":{"username":"u","password":"p"}}"#;
    let expected = format!(
        "# comment = with equals\n\nECS_AVAILABLE_LOGGING_DRIVERS=[\"json-file\",\"awslogs\"]\nECS_CLUSTER=prod\n  indented line kept  \nECS_INSTANCE_ATTRIBUTES={{\"a\":\"b\"}}\nDUP=1\nDUP=2\nECS_ENGINE_AUTH_TYPE=docker\nno final newline\nECS_ENABLE_SPOT_INSTANCE_DRAINING=true\nECS_ENGINE_AUTH_DATA={data}\n"
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), expected);
    assert!(
        out.stderr.contains("removed a later duplicate") && out.stderr.contains("line=9"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn second_identical_run_reports_unchanged_and_keeps_mtime() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "r", &creds("u", CANARY)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let docker = dir.path().join("docker").join("config.json");
    let args = [
        "--ecs-config",
        path.to_str().expect("utf8"),
        "--cluster",
        "prod",
        "--registry-secret",
        "ghcr.io=r",
        "--docker-config",
        docker.to_str().expect("utf8"),
    ];
    let first = run(&moto.env(), &args);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert!(first.stdout.contains("updated"), "{}", first.stdout);
    let old = SystemTime::now() - Duration::from_secs(3600);
    for p in [&path, &docker] {
        fs::File::options()
            .write(true)
            .open(p)
            .expect("open")
            .set_modified(old)
            .expect("set mtime");
    }
    let before = fs::read(&path).expect("read");
    let second = run(&moto.env(), &args);
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        second.stdout.contains(&format!(
            "ecs.config {} unchanged (3 keys, 1 registries)",
            path.display()
        )),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("docker config"), "{}", second.stdout);
    assert!(!second.stdout.contains("updated"), "{}", second.stdout);
    assert_eq!(fs::read(&path).expect("read"), before);
    for p in [&path, &docker] {
        assert_eq!(
            fs::metadata(p).expect("meta").modified().expect("mtime"),
            old
        );
    }
    assert_no_canary(&first, "first run");
    assert_no_canary(&second, "second run");
}

#[tokio::test]
async fn auth_secret_formats_and_s3_auth_json() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let config_json = serde_json::json!({
        "auths": {
            "https://index.docker.io/v1/": {"auth": B64.encode(format!("hub:{NASTY}"))},
            "quay.io": {"username": "q", "password": "qp"}
        },
        "credsStore": "desktop"
    });
    aws.secret("us-east-1", "cfg", &config_json.to_string())
        .await;
    aws.secret(
        "us-east-1",
        "ecsdocker",
        r#"{"registry-1.docker.io":{"username":"hub2","password":"h2","email":"ops@example.com"}}"#,
    )
    .await;
    let dockercfg = format!(
        r#"{{"https://GHCR.io/":{{"auth":"{}"}}}}"#,
        B64.encode("g:gp")
    );
    aws.secret("us-east-1", "ecsdockercfg", &dockercfg).await;
    aws.object(
        "cfg",
        "auth.json",
        "\n {\"registry.example.com:5000\":{\"username\":\"s3\",\"password\":\"s3p\"}}",
    )
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let p = path.to_str().expect("utf8");
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            p,
            "--auth-secret",
            "cfg",
            "--auth-secret",
            "ecsdockercfg",
            "--from-s3",
            "s3://cfg/auth.json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let read = ecs_init_read(&fs::read_to_string(&path).expect("read"));
    let auths = decode_auth("docker", &read["ECS_ENGINE_AUTH_DATA"]);
    assert_eq!(auths[HUB], ("hub".to_owned(), NASTY.to_owned()));
    assert_eq!(auths["quay.io"], ("q".to_owned(), "qp".to_owned()));
    assert_eq!(auths["ghcr.io"], ("g".to_owned(), "gp".to_owned()));
    assert_eq!(
        auths["registry.example.com:5000"],
        ("s3".to_owned(), "s3p".to_owned())
    );
    assert!(!read.contains_key("ECS_CLUSTER"));

    // A later auth secret wins per registry, and the email survives.
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            p,
            "--auth-secret",
            "cfg",
            "--auth-secret",
            "ecsdocker",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let read = ecs_init_read(&fs::read_to_string(&path).expect("read"));
    let v: serde_json::Value = serde_json::from_str(&read["ECS_ENGINE_AUTH_DATA"]).expect("json");
    assert_eq!(v[HUB]["username"], "hub2");
    assert_eq!(v[HUB]["email"], "ops@example.com");
}

/// Fail-closed cases, one test each: every failure exits non-zero with one
/// `shipshape: error:` line naming what failed, leaves ecs.config byte-identical (mode
/// too), leaves no stray file, prints nothing on stdout and never the canary.
mod failures_leave_files_byte_identical_and_never_leak {
    use super::*;

    /// Where the binary's AWS calls go.
    enum Endpoint {
        /// The seeded moto.
        Moto,
        /// A port nothing listens on.
        Unreachable,
        /// The seeded moto, without any `*REGION` variable.
        NoRegion,
    }

    struct Case {
        args: Vec<String>,
        code: i32,
        message: &'static [&'static str],
        endpoint: Endpoint,
    }

    fn case<S: ToString>(args: &[S], code: i32, message: &'static [&'static str]) -> Case {
        Case {
            args: args.iter().map(ToString::to_string).collect(),
            code,
            message,
            endpoint: Endpoint::Moto,
        }
    }

    /// A moto holding every secret and object the cases read, each broken its own way.
    async fn seeded_moto() -> Moto {
        let moto = Moto::start();
        let aws = Aws::new(&moto).await;
        aws.secret("us-east-1", "notjson", &format!("{CANARY} is not json"))
            .await;
        aws.secret(
            "us-east-1",
            "shape",
            &format!(r#"{{"user":"canary-user","pass":"{CANARY}"}}"#),
        )
        .await;
        aws.secret("us-east-1", "emptyuser", &creds("", CANARY))
            .await;
        aws.secret("us-east-1", "emptypass", &creds("canary-user", ""))
            .await;
        aws.secret("us-east-1", "good", &creds("canary-user", CANARY))
            .await;
        aws.secret(
            "us-east-1",
            "authshape",
            &format!(r#"{{"ghcr.io":{{"token":"{CANARY}"}}}}"#),
        )
        .await;
        aws.object("cfg", "bad.config", &format!("A=1\nbad key={CANARY}\n"))
            .await;
        aws.object(
            "cfg",
            "badauth.config",
            &format!("ECS_ENGINE_AUTH_DATA={{\"r\":{{\"password\":\"{CANARY}\"}}}}\n"),
        )
        .await;
        moto
    }

    /// Runs `case` against a freshly seeded moto and checks that it failed closed.
    async fn fails_closed(name: &str, case: Case) {
        let moto = seeded_moto().await;
        let env = match case.endpoint {
            Endpoint::Moto => moto.env(),
            Endpoint::Unreachable => moto.env_with_endpoint(&format!(
                "http://127.0.0.1:{}",
                shipshape_tests::free_port()
            )),
            Endpoint::NoRegion => moto
                .env()
                .into_iter()
                .filter(|(k, _)| !k.ends_with("REGION"))
                .collect(),
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ecs.config");
        fs::write(&path, EXISTING).expect("seed");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        let mut args = vec!["--ecs-config".to_owned(), path.display().to_string()];
        args.extend(case.args.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let out = run(&env, &arg_refs);
        let took = started.elapsed();
        assert_eq!(out.code, case.code, "{name}: {}", out.stderr);
        let last = out.stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("shipshape: error: "), "{name}: {last}");
        for m in case.message {
            assert!(last.contains(m), "{name}: expected {m:?} in {last:?}");
        }
        assert_eq!(
            fs::read_to_string(&path).expect("read"),
            EXISTING,
            "{name}: file changed"
        );
        assert_eq!(mode(&path), 0o644, "{name}: mode changed");
        assert_eq!(
            dir_entries(dir.path()),
            vec!["ecs.config"],
            "{name}: stray files"
        );
        assert_eq!(out.stdout, "", "{name}: stdout");
        assert_no_canary(&out, name);
        if matches!(case.endpoint, Endpoint::Unreachable) {
            assert!(
                took >= Duration::from_millis(1800) && took < Duration::from_secs(5),
                "timeout took {took:?}"
            );
        }
    }

    /// One `#[tokio::test]` per case, so that one failing case does not hide the others.
    macro_rules! cases {
        ($($test:ident: $case:expr;)*) => {$(
            #[tokio::test]
            async fn $test() {
                fails_closed(stringify!($test), $case).await;
            }
        )*};
    }

    cases! {
        secret_not_found: case(
            &["--registry-secret", "ghcr.io=does/not/exist"],
            1,
            &["secret does/not/exist", "not found", "ResourceNotFoundException"],
        );
        secret_not_json: case(
            &["--registry-secret", "ghcr.io=notjson"],
            1,
            &["secret notjson", "is not JSON"],
        );
        unknown_shape: case(
            &["--registry-secret", "ghcr.io=shape"],
            1,
            &["secret shape", "unknown shape"],
        );
        auth_map_unknown_shape: case(
            &["--auth-secret", "authshape"],
            1,
            &["secret authshape", "neither \"auth\""],
        );
        empty_username: case(
            &["--registry-secret", "ghcr.io=emptyuser"],
            1,
            &["secret emptyuser", "empty username"],
        );
        empty_password: case(
            &["--registry-secret", "ghcr.io=emptypass"],
            1,
            &["secret emptypass", "empty password"],
        );
        s3_object_missing: case(
            &["--from-s3", "s3://cfg/missing.config", "--registry-secret", "ghcr.io=good"],
            1,
            &["s3://cfg/missing.config", "not found"],
        );
        s3_bucket_missing: case(
            &["--from-s3", "s3://no-such-bucket/x"],
            1,
            &["s3://no-such-bucket/x", "not found"],
        );
        fragment_with_bad_key: case(
            &["--from-s3", "s3://cfg/bad.config"],
            1,
            &["s3://cfg/bad.config", "line 2"],
        );
        fragment_auth_data_bad: case(
            &["--from-s3", "s3://cfg/badauth.config"],
            1,
            &["s3://cfg/badauth.config", "ECS_ENGINE_AUTH_DATA"],
        );
        value_with_a_newline: case(
            &[
                "--registry-secret".to_owned(),
                "ghcr.io=good".to_owned(),
                "--set".to_owned(),
                format!("ECS_X=a\n{CANARY}"),
            ],
            2,
            &["--set", "ECS_X", "line break"],
        );
        invalid_set_key: case(
            &["--set", "ecs_lower=1", "--registry-secret", "ghcr.io=good"],
            2,
            &["--set", "ecs_lower"],
        );
        auth_key_via_set: case(
            &["--set".to_owned(), format!("ECS_ENGINE_AUTH_DATA={CANARY}")],
            2,
            &["ECS_ENGINE_AUTH_DATA cannot be set"],
        );
        bad_registry_secret_syntax: case(
            &["--registry-secret", "ghcr.io"],
            2,
            &["--registry-secret", "REGISTRY=SECRET_ID"],
        );
        ecr_registry: case(
            &["--registry-secret", "123456789012.dkr.ecr.eu-west-1.amazonaws.com=good"],
            2,
            &["ECR", "dkr.ecr"],
        );
        timeout_endpoint_unreachable: Case {
            endpoint: Endpoint::Unreachable,
            ..case(
                &["--registry-secret", "ghcr.io=good", "--timeout", "2s"],
                1,
                &["gave up on secret good", "after 2s", "Connection refused"],
            )
        };
        no_region: Case {
            endpoint: Endpoint::NoRegion,
            ..case(
                &["--registry-secret", "ghcr.io=good"],
                2,
                &["no AWS region", "secret good", "--region"],
            )
        };
        nothing_to_do: case(&[] as &[&str], 2, &["nothing to write"]);
    }
}

#[tokio::test]
async fn docker_config_failure_leaves_both_files_alone() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "good", &creds("canary-user", CANARY))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let docker = dir.path().join("config.json");
    fs::write(&path, EXISTING).expect("seed");
    fs::write(&docker, "{not json").expect("seed");
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--registry-secret",
            "ghcr.io=good",
            "--docker-config",
            docker.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("config.json is not JSON"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), EXISTING);
    assert_eq!(fs::read_to_string(&docker).expect("read"), "{not json");
    assert_eq!(dir_entries(dir.path()), vec!["config.json", "ecs.config"]);
    assert_no_canary(&out, "docker config failure");
}

#[tokio::test]
async fn access_denied_is_reported_and_changes_nothing() {
    // Four setup calls: CreateUser, CreateAccessKey, PutUserPolicy, CreateSecret.
    let moto = Moto::start_enforcing_iam(4);
    let cli = |args: &[&str]| moto.aws_cli(args);
    cli(&["iam", "create-user", "--user-name", "boot"]);
    let keys = cli(&[
        "iam",
        "create-access-key",
        "--user-name",
        "boot",
        "--query",
        "AccessKey.[AccessKeyId,SecretAccessKey]",
    ]);
    let (key_id, secret_key) = keys.split_once(char::is_whitespace).expect("two keys");
    cli(&[
        "iam",
        "put-user-policy",
        "--user-name",
        "boot",
        "--policy-name",
        "list-only",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"secretsmanager:ListSecrets","Resource":"*"}]}"#,
    ]);
    cli(&[
        "secretsmanager",
        "create-secret",
        "--name",
        "locked",
        "--secret-string",
        &creds("canary-user", CANARY),
    ]);

    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", moto.endpoint().as_str()),
        ("AWS_ACCESS_KEY_ID", key_id),
        ("AWS_SECRET_ACCESS_KEY", secret_key.trim()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    fs::write(&path, EXISTING).expect("seed");
    let started = Instant::now();
    let out = run(
        &env,
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--registry-secret",
            "ghcr.io=locked",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.contains("cannot read secret locked"), "{last}");
    assert!(last.contains("access denied"), "{last}");
    assert!(last.contains("secretsmanager:GetSecretValue"), "{last}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "denied is not retried"
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), EXISTING);
    assert_eq!(dir_entries(dir.path()), vec!["ecs.config"]);
    assert_no_canary(&out, "access denied");
}

#[tokio::test]
async fn canary_never_leaks_on_success_paths() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "good", &creds("canary-user", CANARY))
        .await;
    aws.object(
        "cfg",
        "frag.config",
        &format!(
            "ECS_ENGINE_AUTH_TYPE=docker\nECS_ENGINE_AUTH_DATA={{\"quay.io\":{{\"username\":\"canary-user\",\"password\":\"{CANARY}\"}}}}\nECS_PROXY_PASSWORD={CANARY}\n"
        ),
    )
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let docker = dir.path().join("config.json");
    let base = [
        "--ecs-config",
        path.to_str().expect("utf8"),
        "--registry-secret",
        "ghcr.io=good",
        "--from-s3",
        "s3://cfg/frag.config",
        "--docker-config",
        docker.to_str().expect("utf8"),
    ];
    for (label, extra, format) in [
        ("dry run text", vec!["--dry-run"], "text"),
        (
            "dry run json",
            vec!["--dry-run", "--output", "json"],
            "text",
        ),
        (
            "dockercfg run, json logs",
            vec!["--auth-type", "dockercfg"],
            "json",
        ),
        ("docker run json output", vec!["--output", "json"], "text"),
        ("unchanged run", vec![], "text"),
    ] {
        let mut args = vec!["--log-level", "trace", "--log-format", format, "bootstrap"];
        args.extend_from_slice(&base);
        args.extend(extra.iter().copied());
        let out = run_shipshape(args, &moto.env());
        assert_eq!(out.code, 0, "{label}: {}", out.stderr);
        assert_no_canary(&out, label);
        if label == "dry run text" {
            assert!(!path.exists(), "dry run wrote a file");
            assert!(
                out.stdout
                    .contains("ECS_ENGINE_AUTH_DATA=<redacted: 2 registries>"),
                "{}",
                out.stdout
            );
            assert!(
                out.stdout.contains("ECS_PROXY_PASSWORD=<redacted>"),
                "{}",
                out.stdout
            );
        }
        if label == "dry run json" {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            assert_eq!(v["dry_run"], true);
            assert_eq!(v["changed"], true);
            assert_eq!(v["registries"], serde_json::json!(["ghcr.io", "quay.io"]));
            assert!(!path.exists());
        }
        if label == "docker run json output" {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            assert_eq!(v["path"], path.display().to_string());
            assert_eq!(
                v["keys"],
                serde_json::json!([
                    "ECS_PROXY_PASSWORD",
                    "ECS_ENGINE_AUTH_TYPE",
                    "ECS_ENGINE_AUTH_DATA"
                ])
            );
        }
    }
    // The secret did reach the files, so the canary test is meaningful.
    assert!(fs::read_to_string(&path).expect("read").contains(CANARY));
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&docker).expect("read")).expect("json");
    assert_eq!(
        cfg["auths"]["ghcr.io"]["auth"],
        B64.encode(format!("canary-user:{CANARY}"))
    );
    assert_eq!(mode(&docker), 0o600);
    assert_eq!(mode(&path), 0o600);
}

#[tokio::test]
async fn docker_config_merge_keeps_other_fields() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let arn = aws
        .secret("eu-west-1", "hub", &creds("hubuser", NASTY))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let docker: PathBuf = dir.path().join("config.json");
    fs::write(
        &docker,
        r#"{"auths":{"other.example.com":{"auth":"b3RoZXI6cGFzcw=="}},"psFormat":"table {{.ID}}"}"#,
    )
    .expect("seed");
    let hub = format!("https://index.docker.io/v1/={arn}");
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--registry-secret",
            &hub,
            "--docker-config",
            docker.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&docker).expect("read")).expect("json");
    assert_eq!(cfg["psFormat"], "table {{.ID}}");
    assert_eq!(
        cfg["auths"]["other.example.com"]["auth"],
        "b3RoZXI6cGFzcw=="
    );
    let auth = cfg["auths"][HUB]["auth"].as_str().expect("auth");
    assert_eq!(
        B64.decode(auth).expect("b64"),
        format!("hubuser:{NASTY}").into_bytes()
    );
    assert_eq!(mode(&docker), 0o600);
}

#[tokio::test]
async fn config_file_alone_drives_bootstrap_and_check() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "prod/gitlab-registry", &creds("gl", CANARY))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let config = dir.path().join("shipshape.toml");
    fs::write(
        &config,
        format!(
            "[bootstrap]\necs_config = \"{}\"\ncluster = \"prod\"\nregistry_secret = {{ \"registry.gitlab.com\" = \"prod/gitlab-registry\" }}\nset = {{ ECS_ENABLE_TASK_IAM_ROLE = \"true\", ECS_PROXY_PASSWORD = \"{CANARY}\" }}\nauth_type = \"dockercfg\"\ntimeout = \"30s\"\n",
            path.display()
        ),
    )
    .expect("config");
    let cfg = config.to_str().expect("utf8");
    let out = run_shipshape(["--config", cfg, "bootstrap"], &moto.env());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let read = ecs_init_read(&fs::read_to_string(&path).expect("read"));
    assert_eq!(read["ECS_CLUSTER"], "prod");
    assert_eq!(read["ECS_ENGINE_AUTH_TYPE"], "dockercfg");
    assert_eq!(read["ECS_ENABLE_TASK_IAM_ROLE"], "true");
    let auths = decode_auth("dockercfg", &read["ECS_ENGINE_AUTH_DATA"]);
    assert_eq!(
        auths["registry.gitlab.com"],
        ("gl".to_owned(), CANARY.to_owned())
    );

    // A flag overrides the file's scalar.
    let out = run_shipshape(
        ["--config", cfg, "bootstrap", "--cluster", "staging"],
        &moto.env(),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        ecs_init_read(&fs::read_to_string(&path).expect("read"))["ECS_CLUSTER"],
        "staging"
    );

    let out = run_shipshape(["--config", cfg, "check", "--output", "json"], &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_no_canary(&out, "check");
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let b = &v["bootstrap"];
    assert_eq!(b["cluster"], "prod");
    assert_eq!(
        b["registry_secret"]["registry.gitlab.com"],
        "prod/gitlab-registry"
    );
    assert_eq!(b["set"]["ECS_PROXY_PASSWORD"], "<redacted>");
    assert_eq!(b["auth_type"], "dockercfg");
    assert_eq!(b["timeout"], "30s");

    // An invalid [bootstrap] is a config error (exit 2) naming the key.
    fs::write(&config, "[bootstrap]\nset = { lower = \"x\" }\n").expect("config");
    let out = run_shipshape(["--config", cfg, "check"], &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("bootstrap.set"), "{}", out.stderr);
}

/// A later duplicate of a managed key behind Unicode whitespace (VT, NBSP, U+0085,
/// U+3000) is a duplicate for ecs-init (Go's TrimSpace) and would win: it is removed.
#[test]
fn later_duplicates_behind_unicode_whitespace_are_removed() {
    for space in ["\u{b}", "\u{a0}", "\u{85}", "\u{3000}"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ecs.config");
        let existing = format!("ECS_CLUSTER=first\nA=1\n{space}ECS_CLUSTER=old-cluster\n");
        fs::write(&path, &existing).expect("seed");
        let out = run(
            &[],
            &[
                "--ecs-config",
                path.to_str().expect("utf8"),
                "--cluster",
                "prod",
            ],
        );
        assert_eq!(out.code, 0, "{space:?}: {}", out.stderr);
        let bytes = fs::read(&path).expect("read");
        let read = ecs_init_read_bytes(&bytes);
        assert_eq!(
            read["ECS_CLUSTER"],
            "prod",
            "{space:?}: {:?}",
            String::from_utf8_lossy(&bytes)
        );
        assert_eq!(read["A"], "1");
        assert_eq!(
            String::from_utf8_lossy(&bytes),
            "ECS_CLUSTER=prod\nA=1\n",
            "{space:?}"
        );
        assert!(
            out.stderr.contains("removed a later duplicate") && out.stderr.contains("line=3"),
            "{space:?}: {}",
            out.stderr
        );
    }
}

/// `dir` made read-only by a read-only bind mount of itself (root ignores mode
/// bits, so a chmod would not stop the write); unmounted on drop.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Self {
        let sh = |args: &[&str]| {
            let st = std::process::Command::new("mount")
                .args(args)
                .status()
                .expect("run mount");
            assert!(st.success(), "mount {args:?}");
        };
        let d = dir.to_str().expect("utf8");
        sh(&["--bind", d, d]);
        let guard = Self(dir.to_path_buf());
        sh(&["-o", "remount,bind,ro", d]);
        assert!(
            fs::write(dir.join("probe"), "x").is_err(),
            "{d} is read-only"
        );
        guard
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// The second file of the transaction cannot be written (its directory is
/// read-only): exit 1 and ecs.config is byte-for-byte what it was.
#[tokio::test]
async fn failed_docker_config_write_leaves_ecs_config_untouched() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "good", &creds("canary-user", CANARY))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    fs::write(&path, EXISTING).expect("seed");
    let docker_dir = dir.path().join("docker");
    fs::create_dir(&docker_dir).expect("mkdir");
    let docker = docker_dir.join("config.json");
    fs::write(&docker, "{\"x\":1}\n").expect("seed");
    let _ro = ReadOnly::mount(&docker_dir);
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--cluster",
            "prod",
            "--registry-secret",
            "ghcr.io=good",
            "--docker-config",
            docker.to_str().expect("utf8"),
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("config.json") && out.stderr.contains("Read-only"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read_to_string(&path).expect("read"), EXISTING);
    assert_eq!(fs::read_to_string(&docker).expect("read"), "{\"x\":1}\n");
    assert_eq!(dir_entries(dir.path()), vec!["docker", "ecs.config"]);
    assert_no_canary(&out, "read-only docker config");
}

/// kill -9 while the temp file is being written (a large ecs.config makes the
/// window wide), then a clean run: no temp file is left, the file is complete.
#[test]
fn killed_mid_write_then_clean_run_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let big: String = (0..400_000)
        .map(|i| format!("X_{i}=padding padding padding padding\n"))
        .collect();
    fs::write(&path, &big).expect("seed");
    let temp_files = |d: &Path| {
        dir_entries(d)
            .into_iter()
            .filter(|n| n.starts_with(".ecs.config.shipshape-"))
            .count()
    };
    let mut killed_mid_write = 0;
    for attempt in 0..20 {
        let cluster = format!("c{attempt}");
        let mut child = shipshape_tests::bin::shipshape()
            .args([
                "bootstrap",
                "--ecs-config",
                path.to_str().expect("utf8"),
                "--cluster",
                &cluster,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let pid = child.id();
        loop {
            if temp_files(dir.path()) > 0 {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
                break;
            }
            if child.try_wait().expect("wait").is_some() {
                break;
            }
        }
        let status = child.wait().expect("wait");
        if status.code().is_none() && temp_files(dir.path()) > 0 {
            killed_mid_write += 1;
            if killed_mid_write == 3 {
                break;
            }
        }
    }
    assert!(
        killed_mid_write > 0,
        "no run was killed with its temp file on disk"
    );
    let out = run(
        &[],
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--cluster",
            "final",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("removed temp files"), "{}", out.stderr);
    assert_eq!(dir_entries(dir.path()), vec!["ecs.config"]);
    let read = ecs_init_read(&fs::read_to_string(&path).expect("read"));
    assert_eq!(read["ECS_CLUSTER"], "final");
    assert_eq!(read["X_399999"], "padding padding padding padding");
}

/// Unchanged content but another owner and mode: rewritten as root:root 0600.
/// A symlinked ecs.config is refused and its target left as it was.
#[test]
fn owner_and_mode_enforced_on_unchanged_content_and_symlinks_refused() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let args = [
        "--ecs-config",
        path.to_str().expect("utf8"),
        "--cluster",
        "prod",
    ];
    assert_eq!(run(&[], &args).code, 0);
    std::os::unix::fs::chown(&path, Some(1000), Some(1000)).expect("chown");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
    let before = fs::read(&path).expect("read");
    let out = run(&[], &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let meta = fs::metadata(&path).expect("meta");
    assert_eq!(
        (meta.uid(), meta.gid(), meta.mode() & 0o7777),
        (0, 0, 0o600)
    );
    assert_eq!(fs::read(&path).expect("read"), before);
    assert!(out.stdout.contains("unchanged"), "{}", out.stdout);

    let target = dir.path().join("real.config");
    fs::write(&target, "ECS_CLUSTER=old\n").expect("seed");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");
    let link = dir.path().join("linked.config");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = run(
        &[],
        &[
            "--ecs-config",
            link.to_str().expect("utf8"),
            "--cluster",
            "prod",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("is a symbolic link"), "{}", out.stderr);
    assert_eq!(
        fs::read_to_string(&target).expect("read"),
        "ECS_CLUSTER=old\n"
    );
    assert_eq!(mode(&target), 0o644);
    assert!(fs::symlink_metadata(&link)
        .expect("lstat")
        .file_type()
        .is_symlink());
}

/// An endpoint that answers every request `200 OK` with a body that is not an AWS
/// answer; returns its URL. The thread lives as long as the test process.
fn malformed_200_endpoint() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 65536];
            let _ = stream.read(&mut buf);
            let body = "<html>captive portal</html>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

/// A malformed 200 answer: the message says what happened and points at nothing
/// that is not there ("see the AWS error above").
#[test]
fn malformed_200_answer_is_reported_without_pointing_above() {
    let endpoint = malformed_200_endpoint();
    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let out = run_shipshape(
        [
            "bootstrap",
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--registry-secret",
            "ghcr.io=s",
            "--timeout",
            "3s",
        ],
        &env,
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(!out.stderr.contains("above"), "{}", out.stderr);
    assert!(last.contains("secret s"), "{}", out.stderr);
    assert!(!path.exists());
}

/// A username with `:` and a Docker Hub key with a path are refused with a clear
/// message, and nothing is written.
#[tokio::test]
async fn colon_usernames_and_docker_hub_paths_are_refused() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "colon", &creds("bot:1", CANARY))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let p = path.to_str().expect("utf8");
    let out = run(
        &moto.env(),
        &["--ecs-config", p, "--registry-secret", "ghcr.io=colon"],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("contains ':'"), "{}", out.stderr);
    assert_no_canary(&out, "colon username");
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            p,
            "--registry-secret",
            "docker.io/myorg=colon",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("Docker Hub with a path"),
        "{}",
        out.stderr
    );
    assert!(!path.exists());
}

/// config.json: a managed registry loses its stale tokens; a credsStore or a
/// credHelpers entry that would answer for it is overridden with `""` (the Docker
/// CLI then reads auths), and only a real shadow is warned about.
#[tokio::test]
async fn docker_config_drops_tokens_and_overrides_only_real_shadows() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "g", &creds("u", CANARY)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let docker = dir.path().join("config.json");
    let args = [
        "--ecs-config",
        path.to_str().expect("utf8"),
        "--registry-secret",
        "ghcr.io=g",
        "--docker-config",
        docker.to_str().expect("utf8"),
    ];
    fs::write(
        &docker,
        r#"{"auths":{"ghcr.io":{"identitytoken":"OLD","registrytoken":"OLD2"}},"credsStore":"desktop","credHelpers":{"x.io":"y"}}"#,
    )
    .expect("seed");
    let out = run(&moto.env(), &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&docker).expect("read")).expect("json");
    assert_eq!(
        v["auths"]["ghcr.io"],
        serde_json::json!({"auth": B64.encode(format!("u:{CANARY}"))})
    );
    assert_eq!(v["credHelpers"]["ghcr.io"], "");
    assert_eq!(v["credHelpers"]["x.io"], "y");
    assert_eq!(v["credsStore"], "desktop");
    assert!(out.stderr.contains("overridden for it"), "{}", out.stderr);

    fs::write(&docker, r#"{"credHelpers":{"x.io":"y"}}"#).expect("seed");
    let out = run(&moto.env(), &args);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("overridden"), "{}", out.stderr);
    assert!(!out.stderr.contains("credsStore"), "{}", out.stderr);
    assert_no_canary(&out, "docker config merge");
}

/// `--credential-helper`: credHelpers names shipshape, and no password is on disk
/// in config.json (ecs.config still gets the credentials for the agent).
#[tokio::test]
async fn credential_helper_mode_keeps_no_password_in_config_json() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "g", &creds("u", CANARY)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let docker = dir.path().join("config.json");
    fs::write(&docker, r#"{"auths":{"ghcr.io":{"auth":"b2xkOm9sZA=="}}}"#).expect("seed");
    let out = run(
        &moto.env(),
        &[
            "--ecs-config",
            path.to_str().expect("utf8"),
            "--registry-secret",
            "ghcr.io=g",
            "--docker-config",
            docker.to_str().expect("utf8"),
            "--credential-helper",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = fs::read_to_string(&docker).expect("read");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["credHelpers"]["ghcr.io"], "shipshape");
    assert!(v["auths"].get("ghcr.io").is_none(), "{text}");
    assert!(!text.contains(&B64.encode(format!("u:{CANARY}"))), "{text}");
    assert_no_canary(&out, "credential helper mode");
}

/// `docker-credential-shipshape` (a link to the binary) with `input` on stdin.
fn helper(
    link_dir: &Path,
    config: &Path,
    env: &[(String, String)],
    action: &str,
    input: &str,
) -> Output {
    use std::io::Write;
    let link = link_dir.join("docker-credential-shipshape");
    if !link.exists() {
        std::os::unix::fs::symlink(shipshape_tests::bin::shipshape_path(), &link).expect("link");
    }
    let mut child = std::process::Command::new(&link)
        .arg(action)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SHIPSHAPE_CONFIG", config)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn helper");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The helper's `get` for a configured registry answers from Secrets Manager (moto);
/// for an unconfigured one it says "credentials not found" without any connection to
/// AWS; `store`/`erase` are refused; `list` shows usernames only.
#[tokio::test]
async fn credential_helper_get_list_store_erase() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.secret("us-east-1", "ci/ghcr", &creds("bot", CANARY))
        .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("shipshape.toml");
    fs::write(
        &config,
        "[bootstrap]\nregistry_secret = { \"ghcr.io\" = \"ci/ghcr\" }\n",
    )
    .expect("config");

    let out = helper(dir.path(), &config, &moto.env(), "get", "ghcr.io\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(
        v,
        serde_json::json!({"ServerURL": "ghcr.io", "Username": "bot", "Secret": CANARY})
    );
    assert!(!out.stderr.contains(CANARY), "{}", out.stderr);

    // Unconfigured: no AWS connection at all (the endpoint counts connections).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let counting =
        moto.env_with_endpoint(&format!("http://{}", listener.local_addr().expect("addr")));
    let started = Instant::now();
    let out = helper(dir.path(), &config, &counting, "get", "quay.io");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert_eq!(
        out.stdout.trim(),
        "credentials not found in native keychain"
    );
    assert!(
        listener.accept().is_err(),
        "no connection to AWS for an unconfigured registry"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let out = helper(dir.path(), &config, &moto.env(), "list", "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout.trim(), r#"{"ghcr.io":"bot"}"#);
    for action in ["store", "erase"] {
        let out = helper(
            dir.path(),
            &config,
            &moto.env(),
            action,
            r#"{"ServerURL":"ghcr.io","Username":"x","Secret":"y"}"#,
        );
        assert_eq!(out.code, 1, "{action}");
        assert!(
            out.stdout.contains("Secrets Manager"),
            "{action}: {}",
            out.stdout
        );
    }
}

/// The real clients: Debian's `docker-registry` with htpasswd (bcrypt) auth, the
/// real docker CLI pushing and pulling through a private dockerd, with the
/// config.json bootstrap writes (over a shadowing `credsStore` and a stale token) and
/// with `docker-credential-shipshape` answering from moto.
mod real_clients {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    use shipshape_tests::canary::{canary_forms, CANARY_USER};
    use shipshape_tests::dockerd::Dockerd;
    use shipshape_tests::images::busybox_image;
    use shipshape_tests::registry::Registry;

    use super::*;

    /// Scans every process's argv and environment while alive; the hits at the end.
    struct ProcScan {
        stop: Arc<AtomicBool>,
        hits: Arc<Mutex<Vec<String>>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl ProcScan {
        fn start() -> Self {
            let stop = Arc::new(AtomicBool::new(false));
            let hits = Arc::new(Mutex::new(Vec::new()));
            let (s, h) = (stop.clone(), hits.clone());
            let thread = std::thread::spawn(move || {
                let forms = canary_forms();
                while !s.load(Ordering::Relaxed) {
                    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                        for file in ["cmdline", "environ"] {
                            let Ok(bytes) = fs::read(entry.path().join(file)) else {
                                continue;
                            };
                            let text = String::from_utf8_lossy(&bytes);
                            for form in &forms {
                                if text.contains(form.as_str()) {
                                    let exe =
                                        fs::read(entry.path().join("cmdline")).unwrap_or_default();
                                    h.lock().expect("lock").push(format!(
                                        "{file} of {:?}",
                                        String::from_utf8_lossy(&exe).replace('\0', " ")
                                    ));
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
            Self {
                stop,
                hits,
                thread: Some(thread),
            }
        }

        fn finish(mut self) -> Vec<String> {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                t.join().expect("scanner");
            }
            std::mem::take(&mut *self.hits.lock().expect("lock"))
        }
    }

    struct Setup {
        moto: Moto,
        registry: Registry,
        dockerd: Dockerd,
        dir: tempfile::TempDir,
        image: String,
    }

    async fn setup() -> Setup {
        let registry = Registry::start(CANARY_USER, CANARY);
        let moto = Moto::start();
        let aws = Aws::new(&moto).await;
        aws.secret("us-east-1", "ci/registry", &creds(CANARY_USER, CANARY))
            .await;
        let dockerd = Dockerd::start();
        busybox_image(&dockerd, "local/busybox:1");
        let image = format!("{}/ci/busybox:1", registry.host());
        dockerd.docker_ok(["tag", "local/busybox:1", &image]);
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("docker")).expect("mkdir");
        Setup {
            moto,
            registry,
            dockerd,
            dir,
            image,
        }
    }

    impl Setup {
        fn config_json(&self) -> PathBuf {
            self.dir.path().join("docker/config.json")
        }

        fn bootstrap(&self, extra: &[&str]) -> Output {
            let ecs = self.dir.path().join("ecs.config");
            let cfg = self.config_json();
            let reg = format!("{}=ci/registry", self.registry.host());
            let mut args = vec![
                "--ecs-config",
                ecs.to_str().expect("utf8"),
                "--registry-secret",
                &reg,
                "--docker-config",
                cfg.to_str().expect("utf8"),
            ];
            args.extend_from_slice(extra);
            let out = run(&self.moto.env(), &args);
            assert_eq!(out.code, 0, "{}", out.stderr);
            assert_no_canary(&out, "bootstrap");
            out
        }

        /// The docker CLI with our config dir; `helper_env`: the helper on PATH with
        /// its config and AWS environment.
        fn docker(&self, args: &[&str], helper_env: bool) -> Output {
            let mut cmd = self.dockerd.docker();
            cmd.arg("--config")
                .arg(self.dir.path().join("docker"))
                .args(args);
            // A store that exists and knows nothing of our registry, like ecr-login
            // on an AWS CI host: it answers "credentials not found".
            let other = self.dir.path().join("bin-other");
            fs::create_dir_all(&other).expect("mkdir");
            let store = other.join("docker-credential-otherstore");
            if !store.exists() {
                fs::write(&store, "#!/bin/sh\ncat >/dev/null\necho 'credentials not found in native keychain'\nexit 1\n").expect("script");
                fs::set_permissions(&store, fs::Permissions::from_mode(0o755)).expect("chmod");
            }
            let mut path = format!(
                "{}:{}",
                other.display(),
                std::env::var("PATH").unwrap_or_default()
            );
            if helper_env {
                let bin = self.dir.path().join("bin");
                fs::create_dir_all(&bin).expect("mkdir");
                let link = bin.join("docker-credential-shipshape");
                if !link.exists() {
                    std::os::unix::fs::symlink(shipshape_tests::bin::shipshape_path(), &link)
                        .expect("link");
                }
                let toml = self.dir.path().join("shipshape.toml");
                fs::write(
                    &toml,
                    format!(
                        "[bootstrap]\nregistry_secret = {{ \"{}\" = \"ci/registry\" }}\n",
                        self.registry.host()
                    ),
                )
                .expect("toml");
                path = format!("{}:{path}", bin.display());
                cmd.env("SHIPSHAPE_CONFIG", &toml).envs(self.moto.env());
            }
            cmd.env("PATH", path);
            let out = cmd
                .stdin(std::process::Stdio::null())
                .output()
                .expect("docker");
            Output {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        }

        fn push_and_pull(&self, helper_env: bool) {
            let out = self.docker(&["push", &self.image], helper_env);
            assert_eq!(out.code, 0, "push: {}", out.stderr);
            self.dockerd.docker_ok(["rmi", &self.image]);
            let out = self.docker(&["pull", &self.image], helper_env);
            assert_eq!(out.code, 0, "pull: {}", out.stderr);
        }

        fn assert_no_canary_in_logs(&self) {
            let logs = [self.registry.log(), self.dockerd.log_tail(100_000)];
            for form in canary_forms() {
                for log in &logs {
                    assert!(!log.contains(&form), "canary form {form:?} in a log");
                }
            }
        }
    }

    /// Over a credsStore whose helper knows nothing of our registry and a stale
    /// identity token, the push fails before bootstrap (the CLI never reads auths) and works
    /// after it: the `credHelpers[host] = ""` override is what the CLI honours.
    #[tokio::test]
    async fn docker_cli_pushes_and_pulls_with_the_written_config_json() {
        let s = setup().await;
        let host = s.registry.host();
        fs::write(
            s.config_json(),
            format!(r#"{{"auths":{{"{host}":{{"identitytoken":"stale-token"}}}},"credsStore":"otherstore"}}"#),
        )
        .expect("seed");
        let before = s.docker(&["push", &s.image], false);
        assert_ne!(
            before.code, 0,
            "push should fail with the shadowing store: {}",
            before.stdout
        );

        // Without the override: auths alone under a credsStore still fail.
        fs::write(
            s.config_json(),
            format!(
                r#"{{"auths":{{"{host}":{{"auth":"{}"}}}},"credsStore":"otherstore"}}"#,
                B64.encode(format!("{CANARY_USER}:{CANARY}"))
            ),
        )
        .expect("seed");
        let shadowed = s.docker(&["push", &s.image], false);
        assert_ne!(
            shadowed.code, 0,
            "credsStore shadows auths: {}",
            shadowed.stdout
        );

        fs::write(
            s.config_json(),
            format!(r#"{{"auths":{{"{host}":{{"identitytoken":"stale-token"}}}},"credsStore":"otherstore"}}"#),
        )
        .expect("seed");
        let scan = ProcScan::start();
        let out = s.bootstrap(&[]);
        assert!(out.stderr.contains("overridden for it"), "{}", out.stderr);
        s.push_and_pull(false);
        assert_eq!(
            scan.finish(),
            Vec::<String>::new(),
            "canary in a process's argv or environment"
        );
        let v: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(s.config_json()).expect("read"))
                .expect("json");
        assert_eq!(v["credHelpers"][&host], "");
        assert!(v["auths"][&host].get("identitytoken").is_none());
        s.assert_no_canary_in_logs();
    }

    /// `--credential-helper`: config.json names shipshape and holds no password; the
    /// CLI asks docker-credential-shipshape, which answers from Secrets Manager.
    #[tokio::test]
    async fn docker_cli_pushes_and_pulls_through_the_credential_helper() {
        let s = setup().await;
        let scan = ProcScan::start();
        s.bootstrap(&["--credential-helper"]);
        let text = fs::read_to_string(s.config_json()).expect("read");
        for form in canary_forms() {
            assert!(!text.contains(&form), "password on disk: {text}");
        }
        s.push_and_pull(true);
        assert_eq!(
            scan.finish(),
            Vec::<String>::new(),
            "canary in a process's argv or environment"
        );
        s.assert_no_canary_in_logs();
        // And the CLI really needed the helper: without it on PATH the push fails.
        let out = s.docker(&["push", &s.image], false);
        assert_ne!(out.code, 0, "{}", out.stdout);
    }
}

/// A failed run leaves a marker under /run/shipshape; the next successful run
/// reports `recovered` (a change for the daemon, which then starts `ecs`) even when
/// ecs.config ends up byte-for-byte as before, and only once.
#[tokio::test]
async fn success_after_failure_reports_recovered_once() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ecs.config");
    let args = [
        "--ecs-config",
        path.to_str().expect("utf8"),
        "--cluster",
        "prod",
        "--registry-secret",
        "ghcr.io=late",
        "--output",
        "json",
    ];
    let json = |out: &Output| -> serde_json::Value {
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_str(&out.stdout).expect("json")
    };
    aws.secret("us-east-1", "late", &creds("u", "p")).await;
    let first = json(&run(&moto.env(), &args));
    assert_eq!(first["recovered"], false);
    let written = fs::read(&path).expect("read");
    // The cause: the secret is gone for a while (as at boot before IAM propagated).
    let failing = [
        "--ecs-config",
        path.to_str().expect("utf8"),
        "--cluster",
        "prod",
        "--registry-secret",
        "ghcr.io=missing",
    ];
    assert_eq!(run(&moto.env(), &failing).code, 1);
    let again = json(&run(&moto.env(), &args));
    assert_eq!(again["changed"], false, "same content");
    assert_eq!(again["recovered"], true);
    assert_eq!(fs::read(&path).expect("read"), written);
    let third = json(&run(&moto.env(), &args));
    assert_eq!(third["recovered"], false);
}
