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
    let before = moto.get_transition("ecs::task");
    moto.set_ecs_manual_transitions();
    let after = moto.get_transition("ecs::task");
    assert_ne!(before, after);
    assert_eq!(after["progression"], "manual", "transition now: {after}");
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

mod dockerd {
    use shipshape_tests::dockerd::Dockerd;
    use shipshape_tests::images::{self, ImageSpec};

    #[test]
    fn private_dockerd_loads_images_with_requested_created_times() {
        let d = Dockerd::start();
        eprintln!("storage driver: {}", d.driver());
        let specs = [
            ImageSpec::new("harness/a:1", 1_600_000_000),
            ImageSpec::new("harness/b:2", 1_700_000_000).payload(4096),
            ImageSpec::dangling(1_650_000_000),
        ];
        let ids = images::load(&d, &specs);
        assert_eq!(ids.len(), 3);
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), 3, "image ids must be distinct");
        for (id, want) in ids.iter().zip([
            "2020-09-13T12:26:40Z",
            "2023-11-14T22:13:20Z",
            "2022-04-15T05:20:00Z",
        ]) {
            let created = d.docker_ok(["image", "inspect", "-f", "{{.Created}}", id]);
            assert_eq!(created.trim(), want, "created time of {id}");
        }
        let tags = d.docker_ok(["image", "inspect", "-f", "{{.RepoTags}}", &ids[0]]);
        assert_eq!(tags.trim(), "[harness/a:1]");
    }

    #[test]
    fn private_dockerd_runs_a_busybox_container_without_network() {
        let d = Dockerd::start();
        images::busybox_image(&d, "harness/busybox:1");
        let id = images::run_container(&d, "harness/busybox:1", "sleeper", &["sleep", "1000"]);
        assert!(!id.is_empty());
        let state = d.docker_ok(["inspect", "-f", "{{.State.Running}}", "sleeper"]);
        assert_eq!(state.trim(), "true");
        let echoed = d.docker_ok([
            "run",
            "--rm",
            "--network",
            "none",
            "harness/busybox:1",
            "echo",
            "hello",
        ]);
        assert_eq!(echoed.trim(), "hello");
    }

    #[tokio::test]
    async fn two_private_dockerds_are_independent_of_each_other() {
        let one = Dockerd::start();
        let two = Dockerd::start();
        images::load(&one, &[ImageSpec::new("harness/only-one:1", 1_600_000_000)]);
        let listed_one = one.docker_ok(["images", "-q"]);
        let listed_two = two.docker_ok(["images", "-q"]);
        assert_eq!(listed_one.lines().count(), 1);
        assert_eq!(listed_two.lines().count(), 0);
        let client = two.client().await;
        let version = client
            .version()
            .await
            .expect("version from private dockerd");
        assert!(version.api_version.is_some());
        let images = client
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .expect("list images");
        assert!(images.is_empty());
    }

    #[test]
    fn private_dockerd_survives_restart_with_its_images() {
        let mut d = Dockerd::start();
        images::load(&d, &[ImageSpec::new("harness/kept:1", 1_600_000_000)]);
        let before = d.pid();
        d.restart();
        assert_ne!(before, d.pid());
        assert_eq!(d.docker_ok(["images", "-q"]).lines().count(), 1);
    }

    #[test]
    fn private_dockerd_on_a_small_tmpfs() {
        let d = Dockerd::builder().tmpfs_data_root(256 << 20).start();
        images::load(&d, &[ImageSpec::new("harness/tmpfs:1", 1_600_000_000)]);
        assert_eq!(d.docker_ok(["images", "-q"]).lines().count(), 1);
    }
}
