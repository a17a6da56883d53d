//! The strict proxy in front of moto, behaviour by behaviour (real page sizes and
//! `nextToken`, index-first deletion, throttling on demand), each with raw SDK calls,
//! then `ecr-prune` surviving all of them at once.

use shipshape_tests::aws::Aws;
use shipshape_tests::bin::run_shipshape;
use shipshape_tests::moto::Moto;
use shipshape_tests::proxy::AwsProxy;

fn error_code<E: std::fmt::Debug>(e: &E) -> String {
    let text = format!("{e:?}");
    for code in [
        "InvalidParameterException",
        "ThrottlingException",
        "ImageReferencedByManifestList",
    ] {
        if text.contains(code) {
            return code.to_owned();
        }
    }
    text
}

async fn seed(aws: &Aws, repo: &str, n: usize) {
    aws.repo(repo).await;
    let seeds: Vec<String> = (0..n).map(|i| format!("{repo}-{i}")).collect();
    for chunk in seeds.chunks(50) {
        futures_util::future::join_all(chunk.iter().map(|s| aws.image(repo, Some(s), s))).await;
    }
}

#[tokio::test]
async fn describe_images_pages_at_100_by_default_up_to_1000_with_its_own_tokens() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    seed(&aws, "big", 250).await;
    let mut sizes = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = aws
            .ecr
            .describe_images()
            .repository_name("big")
            .set_next_token(token.take())
            .send()
            .await
            .expect("DescribeImages");
        sizes.push(page.image_details().len());
        match page.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    assert_eq!(
        sizes,
        vec![100, 100, 50],
        "moto alone answers one page of 250"
    );
    let all = aws
        .ecr
        .describe_images()
        .repository_name("big")
        .max_results(1000)
        .send()
        .await
        .expect("DescribeImages 1000");
    assert_eq!(all.image_details().len(), 250);
    assert!(all.next_token().is_none());
    let over = aws
        .ecr
        .describe_images()
        .repository_name("big")
        .max_results(1001)
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&over), "InvalidParameterException");
    let bad = aws
        .ecr
        .describe_images()
        .repository_name("big")
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&bad), "InvalidParameterException");
    let listed = aws
        .ecr
        .list_images()
        .repository_name("big")
        .send()
        .await
        .expect("ListImages");
    assert_eq!(listed.image_ids().len(), 100, "ListImages: default 100 too");
    assert!(listed.next_token().is_some());
}

#[tokio::test]
async fn list_services_pages_at_10_and_describe_repositories_at_100() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.ecs
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("CreateCluster");
    let arn = aws.task_definition("svc", "busybox").await;
    for i in 0..25 {
        aws.ecs
            .create_service()
            .cluster("prod")
            .service_name(format!("svc{i}"))
            .task_definition(&arn)
            .desired_count(0)
            .send()
            .await
            .expect("CreateService");
    }
    let first = aws
        .ecs
        .list_services()
        .cluster("prod")
        .send()
        .await
        .expect("ListServices");
    assert_eq!(first.service_arns().len(), 10);
    let second = aws
        .ecs
        .list_services()
        .cluster("prod")
        .max_results(100)
        .set_next_token(first.next_token().map(str::to_owned))
        .send()
        .await
        .expect("ListServices page 2");
    assert_eq!(
        second.service_arns().len(),
        15,
        "the rest, at the larger size"
    );
    assert!(second.next_token().is_none());
    let eleven: Vec<String> = (0..11).map(|i| format!("svc{i}")).collect();
    let refused = aws
        .ecs
        .describe_services()
        .cluster("prod")
        .set_services(Some(eleven))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&refused), "InvalidParameterException");

    for i in 0..105 {
        aws.repo(&format!("r{i:03}")).await;
    }
    let repos = aws
        .ecr
        .describe_repositories()
        .send()
        .await
        .expect("DescribeRepositories");
    assert_eq!(repos.repositories().len(), 100);
    assert!(repos.next_token().is_some());
}

#[tokio::test]
async fn a_child_deleted_before_its_index_is_refused_with_image_referenced_by_manifest_list() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("multi").await;
    let child = aws.image("multi", None, "amd64").await;
    let other = aws.image("multi", Some("plain"), "plain").await;
    let index = aws
        .index("multi", Some("v1"), std::slice::from_ref(&child))
        .await;
    let id = |d: &str| {
        aws_sdk_ecr::types::ImageIdentifier::builder()
            .image_digest(d)
            .build()
    };
    let out = aws
        .ecr
        .batch_delete_image()
        .repository_name("multi")
        .image_ids(id(&child))
        .image_ids(id(&other))
        .send()
        .await
        .expect("BatchDeleteImage answers, with failures");
    let failures = out.failures();
    assert_eq!(failures.len(), 1, "{out:?}");
    assert_eq!(
        failures[0].failure_code().map(|c| c.as_str()),
        Some("ImageReferencedByManifestList")
    );
    assert_eq!(
        failures[0].image_id().and_then(|i| i.image_digest()),
        Some(child.as_str())
    );
    assert!(failures[0]
        .failure_reason()
        .is_some_and(|r| r.contains(&index)));
    assert_eq!(out.image_ids().len(), 1, "the other id of the call went");
    // The strict reading: an index deleted in the same call still protects its child.
    let same_call = aws
        .ecr
        .batch_delete_image()
        .repository_name("multi")
        .image_ids(id(&index))
        .image_ids(id(&child))
        .send()
        .await
        .expect("BatchDeleteImage");
    assert_eq!(same_call.failures().len(), 1);
    let after = aws
        .ecr
        .batch_delete_image()
        .repository_name("multi")
        .image_ids(id(&child))
        .send()
        .await
        .expect("BatchDeleteImage");
    assert!(after.failures().is_empty(), "index gone: {after:?}");
    assert!(aws.digests("multi").await.is_empty());
}

#[tokio::test]
async fn throttling_on_demand_after_some_requests_pass() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("r").await;
    proxy.throttle("DescribeRepositories", 1, 2);
    // The test client's own SDK retries are off only in part: count what the proxy saw.
    let first = aws.ecr.describe_repositories().send().await;
    assert!(first.is_ok(), "the first request passes");
    let before = proxy.requests("DescribeRepositories");
    let second = aws.ecr.describe_repositories().send().await;
    let attempts = proxy.requests("DescribeRepositories") - before;
    match second {
        Ok(_) => assert_eq!(attempts, 3, "two throttled, retried, then through"),
        Err(e) => assert_eq!(error_code(&e), "ThrottlingException"),
    }
}

/// ecr-prune through every strictness at once: 1,050 images (two DescribeImages pages
/// of 1000), the second page throttled twice, an index whose child must go after it.
#[tokio::test]
async fn ecr_prune_pages_exactly_and_survives_throttled_pages_and_index_order() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    seed(&aws, "big", 1048).await;
    let child = aws.image("big", None, "old-child").await;
    aws.index("big", Some("old-index"), &[child]).await;
    std::thread::sleep(std::time::Duration::from_millis(1100));
    aws.image("big", Some("newest"), "newest").await;
    proxy.throttle("DescribeImages", 1, 2);
    let out = run_shipshape(
        [
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "ecr-prune",
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--output",
            "json",
        ],
        &proxy.env(&moto),
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    let big = &doc["repositories"][0];
    assert_eq!(big["images_before"], 1051, "every page read, none twice");
    assert_eq!(big["images_after"], 1);
    assert!(
        big["failures"].as_array().is_some_and(Vec::is_empty),
        "{big}"
    );
    assert_eq!(big["validation"]["ok"], true);
    // DescribeImages: page 1, page 2 throttled twice then served, the validation read.
    assert_eq!(proxy.requests("DescribeImages"), 5);
    assert_eq!(aws.digests("big").await.len(), 1);
}

/// `FakeEcr`'s refusal of a child deleted before its index, against the strict proxy
/// through the product's own ECR adapter: the same three BatchDeleteImage calls (the
/// child with a plain image, then the index, then the child) answered alike.
#[tokio::test]
async fn the_fake_registry_refuses_a_child_before_its_index_as_the_proxy_does() {
    use shipshape::ports::ecr::EcrApi;
    use shipshape::testing::ecr::{image, index, FakeEcr};
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("multi").await;
    let child = aws.image("multi", None, "amd64").await;
    let plain = aws.image("multi", Some("plain"), "plain").await;
    let idx = aws
        .index("multi", Some("v1"), std::slice::from_ref(&child))
        .await;
    let real = shipshape::adapters::aws::ecr::clients_for(aws.sdk()).ecr;
    let with_digest = |mut i: shipshape::ports::ecr::EcrImage, d: &str| {
        i.digest = d.to_owned();
        i
    };
    let mut fake = FakeEcr::with(vec![(
        "multi",
        vec![
            with_digest(image("c", &[], 1), &child),
            with_digest(image("p", &["plain"], 1), &plain),
            with_digest(index("i", &["v1"], 1), &idx),
        ],
    )]);
    fake.manifests.insert(
        idx.clone(),
        serde_json::json!({"manifests": [{"digest": child}]}).to_string(),
    );
    let calls = [
        vec![child.clone(), plain.clone()],
        vec![idx.clone()],
        vec![child.clone()],
    ];
    let mut seen = Vec::new();
    for engine in [&fake as &dyn EcrApi, real.as_ref()] {
        let mut answers = Vec::new();
        for digests in &calls {
            let failures = engine.batch_delete("multi", digests).await.expect("answer");
            answers.push(
                failures
                    .into_iter()
                    .map(|f| (f.digest, format!("{:?}", f.code)))
                    .collect::<Vec<_>>(),
            );
        }
        seen.push(answers);
    }
    assert_eq!(seen[0], seen[1], "fake vs strict proxy");
    assert_eq!(
        seen[1][0],
        [(child.clone(), "ImageReferencedByManifestList".to_owned())]
    );
    assert!(seen[1][1].is_empty() && seen[1][2].is_empty(), "{seen:?}");
}
