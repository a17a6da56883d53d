//! The user-data scripts run end to end in a sandbox (own root, stub systemctl) with the
//! built binary against moto: ecs.config with registry auth and the daemon enabled, fail
//! closed on a missing secret or a value that would break the config, the CI runner's
//! Docker config with a drop-in that `systemd-analyze verify` accepts, and no secret in
//! any output.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use shipshape_tests::aws::Aws;
use shipshape_tests::bin::shipshape_path;
use shipshape_tests::canary::{assert_no_canary, CANARY};
use shipshape_tests::moto::Moto;
use shipshape_tests::packaging::{unit_root, verify, Sandbox};
use shipshape_tests::tools::{ok, read, repo, write};

#[test]
fn userdata_refuses_a_value_that_would_break_the_config() {
    let sb = Sandbox::new();
    let (root, log) = (&sb.root, &sb.log);
    let env = [("CLUSTER".to_owned(), "prod\"\ninjected = \"x".to_owned())];
    let out = sb.run_userdata("userdata/ecs-al2023.sh", Path::new("/bin/true"), &env);
    assert_ne!(out.code, 0, "script accepted a quote in the cluster name");
    assert!(
        out.stderr.contains("not allowed in config"),
        "{}",
        out.stderr
    );
    assert!(!root.join("etc/shipshape/shipshape.toml").exists());
    assert!(!log.exists(), "systemctl was called after a failure");
}

#[tokio::test]
async fn ecs_userdata_end_to_end_writes_ecs_config_and_enables_the_daemon() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let secret = serde_json::json!({"username": "deploy", "password": CANARY}).to_string();
    aws.secret("us-east-1", "prod/ecs/gitlab-registry", &secret)
        .await;
    let sb = Sandbox::new();
    let (root, log) = (&sb.root, &sb.log);
    let mut env = moto.env();
    env.push(("CLUSTER".into(), "prod-cluster".into()));
    let out = sb.run_userdata("userdata/ecs-al2023.sh", &shipshape_path(), &env);
    ok(&out, "userdata/ecs-al2023.sh against moto");
    assert_no_canary(&out, "userdata/ecs-al2023.sh");

    let ecs_config = root.join("etc/ecs/ecs.config");
    let text = read(&ecs_config);
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "ECS_CLUSTER=prod-cluster",
        "ECS_ENGINE_AUTH_TYPE=docker",
        "ECS_ENABLE_TASK_IAM_ROLE=true",
    ] {
        assert!(lines.contains(&want), "ecs.config lacks {want}:\n{text}");
    }
    let auth = lines
        .iter()
        .find_map(|l| l.strip_prefix("ECS_ENGINE_AUTH_DATA="))
        .unwrap_or_else(|| panic!("no ECS_ENGINE_AUTH_DATA:\n{text}"));
    let auth: serde_json::Value = serde_json::from_str(auth).expect("auth data is JSON");
    assert_eq!(
        auth,
        serde_json::json!({"registry.gitlab.com": {"username": "deploy", "password": CANARY}})
    );
    let mode = std::fs::metadata(&ecs_config)
        .expect("stat")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let calls = read(log);
    assert!(
        calls
            .lines()
            .any(|l| l == "enable --now --no-block shipshape.service"),
        "daemon not enabled: {calls}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l == "try-reload-or-restart --no-block shipshape.service"),
        "a running daemon would keep its old config: {calls}"
    );
    assert!(
        calls
            .lines()
            .any(|l| l == "enable shipshape-bootstrap.service"),
        "{calls}"
    );
}

#[tokio::test]
async fn ecs_userdata_fails_closed_when_the_secret_is_missing() {
    let moto = Moto::start();
    let sb = Sandbox::new();
    let ecs_config = sb.root.join("etc/ecs/ecs.config");
    let before = "ECS_CLUSTER=old\nECS_LOGLEVEL=info\n";
    write(&ecs_config, before);
    let log = &sb.log;
    let mut env = moto.env();
    env.push((
        "REGISTRY_SECRETS".into(),
        "registry.gitlab.com=prod/ecs/absent".into(),
    ));
    let out = sb.run_userdata("userdata/ecs-al2023.sh", &shipshape_path(), &env);
    assert_ne!(
        out.code, 0,
        "script succeeded without its secret:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("prod/ecs/absent"),
        "error must name the secret:\n{}",
        out.stderr
    );
    assert_eq!(read(&ecs_config), before, "ecs.config changed on failure");
    assert!(
        !log.exists(),
        "systemctl was called after a failed bootstrap"
    );
}

#[tokio::test]
async fn gitlab_runner_userdata_writes_docker_config_and_a_verified_drop_in() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    let gitlab = serde_json::json!({"username": "ci-bot", "password": CANARY}).to_string();
    aws.secret("us-east-1", "ci/gitlab-registry", &gitlab).await;
    let hub = serde_json::json!({"username": "hubuser", "password": "hub-pw"}).to_string();
    aws.secret("us-east-1", "ci/dockerhub", &hub).await;
    let sb = Sandbox::new();
    let (root, log) = (&sb.root, &sb.log);
    let out = sb.run_userdata("userdata/gitlab-runner.sh", &shipshape_path(), &moto.env());
    ok(&out, "userdata/gitlab-runner.sh against moto");
    assert_no_canary(&out, "userdata/gitlab-runner.sh");

    let config: serde_json::Value =
        serde_json::from_str(&read(&root.join("root/.docker/config.json"))).expect("config.json");
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    assert_eq!(
        config["auths"]["registry.gitlab.com"]["auth"],
        b64(&format!("ci-bot:{CANARY}"))
    );
    assert_eq!(
        config["auths"]["https://index.docker.io/v1/"]["auth"],
        b64("hubuser:hub-pw")
    );
    let calls = read(log);
    assert!(
        calls
            .lines()
            .any(|l| l == "enable --now --no-block shipshape.service"),
        "{calls}"
    );

    // The drop-in it wrote is a valid systemd fragment for the daemon unit.
    let units = unit_root(&repo("systemd"));
    let dropin = "etc/systemd/system/shipshape.service.d/ci-docker-config.conf";
    std::fs::create_dir_all(units.path().join(dropin).parent().expect("parent")).expect("mkdir");
    std::fs::copy(root.join(dropin), units.path().join(dropin)).expect("copy drop-in");
    let v = verify(units.path(), &["shipshape.service"]);
    ok(&v, "systemd-analyze verify with the CI drop-in");
    assert!(v.stderr.trim().is_empty(), "{}", v.stderr);
}
