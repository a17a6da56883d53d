//! `shipshape ecr-prune` against a real moto server: multi-arch indexes, cosign
//! signatures, images used by ECS tasks and services, the safety cap, batching of
//! BatchDeleteImage, quota mode, and bad input. API calls are counted from the binary's
//! `shipshape::aws_call` debug lines (one per HTTP attempt).

use std::collections::BTreeMap;

use shipshape_tests::aws::Aws;
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::moto::Moto;
use shipshape_tests::proxy::AwsProxy;

mod plan;

/// moto's `imagePushedAt` has one-second resolution: space pushes that must be ordered.
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

/// Through a strict proxy (real page sizes, index-first deletion): moto alone is lenient.
/// The proxy learns the repository's indexes from the pruner's own BatchGetImage reads.
/// Pushes `REPO:v0`…`v{n-1}`, a second apart (oldest first); returns their digests.
async fn versions(aws: &Aws, repo: &str, n: usize) -> Vec<String> {
    let mut digests = Vec::new();
    for i in 0..n {
        digests.push(
            aws.image(repo, Some(&format!("v{i}")), &format!("{repo}-{i}"))
                .await,
        );
        tick();
    }
    digests
}

/// Keep the newest tagged image, delete the rest now, print JSON.
const KEEP_ONE: [&str; 8] = [
    "--keep-last",
    "1",
    "--min-age",
    "0s",
    "--force",
    "--apply",
    "--output",
    "json",
];

fn prune(moto: &Moto, args: &[&str]) -> Output {
    prune_env(&AwsProxy::start(moto).env(moto), args)
}

fn prune_env(env: &[(String, String)], args: &[&str]) -> Output {
    let mut all = vec!["--log-level", "debug", "--log-format", "json", "ecr-prune"];
    all.extend_from_slice(args);
    run_shipshape(all, env)
}

/// operation → number of HTTP attempts the binary logged.
fn calls(out: &Output) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for line in out.stderr.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // The JSON log omits targets; the CallLogger's events are the "aws call" ones.
        if v["message"] == "aws call" && v["operation"].is_string() {
            let op = v["operation"].as_str().unwrap_or("?").to_owned();
            *map.entry(op).or_default() += 1;
        }
    }
    map
}

fn count(map: &BTreeMap<String, usize>, op: &str) -> usize {
    map.get(op).copied().unwrap_or(0)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            out.stdout, out.stderr
        )
    })
}

fn repo_json<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no repository {name} in {doc}"))
}

fn reason_of<'a>(repo: &'a serde_json::Value, digest: &str) -> &'a str {
    repo["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["digest"] == digest))
        .and_then(|u| u["reason"].as_str())
        .unwrap_or_else(|| panic!("no unit {digest} in {repo}"))
}

#[tokio::test]
async fn multi_arch_index_keeps_untagged_children_and_goes_index_first() {
    // The loose untagged image was pushed seconds ago: it may be a child of an index
    // still being pushed, so it stays though `--expire-untagged-after 1s` selects it.
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("multi").await;
    let loose = aws.image("multi", None, "loose").await;
    let old_children = vec![
        aws.image("multi", None, "old-amd64").await,
        aws.image("multi", None, "old-arm64").await,
    ];
    let old_index = aws.index("multi", Some("v1"), &old_children).await;
    tick();
    let children = vec![
        aws.image("multi", None, "amd64").await,
        aws.image("multi", None, "arm64").await,
        aws.image("multi", None, "attestation").await,
    ];
    let new_index = aws.index("multi", Some("v2"), &children).await;
    tick();

    let out = prune(
        &moto,
        &[
            "--keep-last",
            "1",
            "--expire-untagged-after",
            "1s",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected: Vec<String> = children.clone();
    expected.push(new_index.clone());
    expected.push(loose.clone());
    expected.sort();
    assert_eq!(
        aws.digests("multi").await,
        expected,
        "kept index and its untagged children survive, so does the young loose image"
    );
    let doc = json(&out);
    let repo = repo_json(&doc, "multi");
    assert_eq!(repo["images_before"], 8);
    assert_eq!(repo["images_after"], 5);
    assert_eq!(reason_of(repo, &old_index), "rule 2");
    assert_eq!(
        reason_of(repo, &loose),
        "untagged, pushed less than 1h ago (may be a child of an index still being pushed)"
    );
    let c = calls(&out);
    assert_eq!(count(&c, "DescribeRepositories"), 1);
    assert_eq!(
        count(&c, "DescribeImages"),
        2,
        "the read, and the validation pass after the apply"
    );
    assert_eq!(
        count(&c, "BatchGetImage"),
        1,
        "both indexes in one call, nothing else read"
    );
    // Stage 0 (old index) then stage 1 (old children): two calls.
    assert_eq!(count(&c, "BatchDeleteImage"), 2);
}

#[tokio::test]
async fn signature_of_a_kept_image_survives() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("signed").await;
    let old = aws.image("signed", Some("v1"), "v1").await;
    let old_sig = aws
        .image(
            "signed",
            Some(&format!("{}.sig", old.replace(':', "-"))),
            "sig-v1",
        )
        .await;
    tick();
    let kept = aws.image("signed", Some("v2"), "v2").await;
    let kept_sig = aws
        .image(
            "signed",
            Some(&format!("{}.sig", kept.replace(':', "-"))),
            "sig-v2",
        )
        .await;
    let kept_att = aws
        .image(
            "signed",
            Some(&format!("{}.att", kept.replace(':', "-"))),
            "att-v2",
        )
        .await;
    tick();
    let out = prune(&moto, &KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![kept.clone(), kept_sig, kept_att];
    expected.sort();
    assert_eq!(aws.digests("signed").await, expected);
    let doc = json(&out);
    let repo = repo_json(&doc, "signed");
    assert_eq!(
        repo["units"].as_array().map(Vec::len),
        Some(2),
        "signatures are part of their image's unit"
    );
    assert_eq!(reason_of(repo, &old), "rule 1");
    assert!(!aws.digests("signed").await.contains(&old_sig));
}

#[tokio::test]
async fn images_used_by_ecs_tasks_and_services_survive_keep_last_1() {
    let moto = Moto::start();
    moto.set_ecs_manual_transitions();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let uri = aws.repo("web").await;
    let digests = versions(&aws, "web", 5).await;
    aws.cluster_with_instances(&moto, "prod", 1).await;
    let by_tag = aws.task_definition("by-tag", &format!("{uri}:v1")).await;
    let by_digest = aws
        .task_definition("by-digest", &format!("{uri}@{}", digests[2]))
        .await;
    let service_td = aws.task_definition("svc", &format!("{uri}:v3")).await;
    for td in [&by_tag, &by_digest] {
        aws.run_tasks("prod", td, 1).await;
    }
    aws.ecs
        .create_service()
        .cluster("prod")
        .service_name("web")
        .task_definition(&service_td)
        .desired_count(0)
        .send()
        .await
        .expect("CreateService");

    let out = prune_env(&proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let left = aws.digests("web").await;
    for (i, d) in digests.iter().enumerate() {
        assert_eq!(
            left.contains(d),
            i != 0,
            "v{i} ({d}) survival; left: {left:?}"
        );
    }
    let doc = json(&out);
    let repo = repo_json(&doc, "web");
    assert!(
        reason_of(repo, &digests[1]).starts_with("in use by ECS"),
        "{repo}"
    );
    assert!(
        reason_of(repo, &digests[2]).starts_with("in use by ECS"),
        "{repo}"
    );
    assert!(
        reason_of(repo, &digests[3]).starts_with("in use by ECS"),
        "{repo}"
    );
    let c = calls(&out);
    assert_eq!(count(&c, "ListClusters"), 1);
    assert_eq!(count(&c, "ListTasks"), 2, "running, then recently stopped");
    assert_eq!(count(&c, "DescribeTasks"), 1);
    assert_eq!(count(&c, "ListServices"), 1);
    assert_eq!(count(&c, "DescribeServices"), 1);
    assert_eq!(
        count(&c, "ListServiceDeployments"),
        1,
        "tried once; the proxy has no fixture, so the DescribeServices fallback protects"
    );
    assert!(out
        .stderr
        .contains("ListServiceDeployments is not available"));
    assert_eq!(
        count(&c, "ListTaskDefinitions"),
        3,
        "one per family in use (by-tag, by-digest, svc)"
    );
    assert_eq!(
        count(&c, "DescribeTaskDefinition"),
        3,
        "each family's one ACTIVE revision, once"
    );
    assert_eq!(count(&c, "BatchDeleteImage"), 1);
}

#[tokio::test]
async fn safety_cap_refuses_one_repository_and_the_others_go_ahead() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("big").await;
    aws.repo("small").await;
    for i in 0..10 {
        aws.image("big", Some(&format!("b{i}")), &format!("big-{i}"))
            .await;
    }
    for i in 0..3 {
        aws.image("small", Some(&format!("s{i}")), &format!("small-{i}"))
            .await;
    }
    let out = prune(&moto, &["--keep-last", "2", "--min-age", "0s", "--apply"]);
    assert_eq!(
        out.code, 1,
        "refusal is a failure; stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout
            .contains("refused: the plan deletes 8 of 10 images"),
        "{}",
        out.stdout
    );
    assert_eq!(
        aws.digests("big").await.len(),
        10,
        "nothing deleted in the refused repository"
    );
    assert_eq!(
        aws.digests("small").await.len(),
        2,
        "the other repository was pruned"
    );
    assert_eq!(count(&calls(&out), "BatchDeleteImage"), 1);
}

#[tokio::test]
async fn two_hundred_fifty_deletions_take_three_calls() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("ci").await;
    let seeds: Vec<String> = (0..251).map(|i| format!("ci-{i}")).collect();
    futures_util::future::join_all(seeds.iter().map(|s| aws.image("ci", Some(s), s))).await;
    let out = prune(
        &moto,
        &["--keep-last", "1", "--min-age", "0s", "--force", "--apply"],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(aws.digests("ci").await.len(), 1);
    let c = calls(&out);
    assert_eq!(count(&c, "BatchDeleteImage"), 3);
    assert_eq!(count(&c, "DescribeImages"), 2, "read, then validated");
    assert_eq!(count(&c, "BatchGetImage"), 0, "no index, no manifest read");
}

#[tokio::test]
async fn plan_mode_deletes_nothing_and_prints_spec_json() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("plan").await;
    for i in 0..4 {
        aws.image("plan", Some(&format!("p{i}")), &format!("plan-{i}"))
            .await;
    }
    let out = prune(
        &moto,
        &[
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(aws.digests("plan").await.len(), 4);
    let doc = json(&out);
    assert_eq!(doc["apply"], false);
    let repo = repo_json(&doc, "plan");
    assert_eq!(
        (
            repo["images_before"].as_u64(),
            repo["images_after"].as_u64()
        ),
        (Some(4), Some(1))
    );
    assert!(repo["error"].is_null());
    for unit in repo["units"].as_array().expect("units") {
        for key in ["digest", "tags", "pushed_at", "action", "reason"] {
            assert!(!unit[key].is_null(), "{key} missing in {unit}");
        }
    }
    assert_eq!(count(&calls(&out), "BatchDeleteImage"), 0);
}

#[tokio::test]
async fn quota_mode_auto_reads_service_quotas_and_count_mode_trims() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("quota").await;
    for i in 0..5 {
        aws.image("quota", Some(&format!("q{i}")), &format!("quota-{i}"))
            .await;
        if i < 4 {
            tick();
        }
    }
    let out = prune(
        &moto,
        &["--max-images", "auto", "--min-age", "0s", "--apply"],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(count(&calls(&out), "GetServiceQuota"), 1);
    assert_eq!(
        aws.digests("quota").await.len(),
        5,
        "far under 90% of 10,000"
    );
    let out = prune(
        &moto,
        &[
            "--max-images",
            "3",
            "--min-age",
            "0s",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(aws.digests("quota").await.len(), 3);
    let doc = json(&out);
    let reasons: Vec<&str> = repo_json(&doc, "quota")["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter(|u| u["action"] == "expire")
        .filter_map(|u| u["reason"].as_str())
        .collect();
    assert_eq!(reasons, vec!["quota watermark 3 images"; 2]);
}

/// One test per invalid input: exit 2 naming the rule and field (or the flag), no panic,
/// nothing deleted, no AWS call before validation.
mod invalid_policy_is_rejected_naming_rule_and_field {
    use super::*;

    /// Runs ecr-prune with `args` (a policy file `policy` when given) against a moto
    /// holding two deletable images; checks the refusal and returns stderr.
    async fn refused(policy: Option<&str>, args: &[&str]) -> String {
        let moto = Moto::start();
        let aws = Aws::new(&moto).await;
        aws.repo("safe").await;
        aws.image("safe", Some("a"), "a").await;
        aws.image("safe", Some("b"), "b").await;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("policy.json");
        let mut all: Vec<&str> = Vec::new();
        if let Some(policy) = policy {
            std::fs::write(&path, policy).expect("write policy");
            all.extend(["--policy", path.to_str().expect("utf8")]);
        }
        all.extend_from_slice(args);
        let out = prune(&moto, &all);
        assert_eq!(out.code, 2, "stderr: {}", out.stderr);
        assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
        assert_eq!(aws.digests("safe").await.len(), 2);
        assert!(calls(&out).is_empty(), "no AWS call before validation");
        out.stderr
    }

    #[tokio::test]
    async fn rule_priorities_out_of_order() {
        let stderr = refused(
            Some(
                r#"{"rules":[
          {"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
          {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
            ),
            &["--apply", "--force"],
        )
        .await;
        assert!(
            stderr.contains("rulePriority 1") && stderr.contains("highest rulePriority"),
            "{stderr}"
        );
    }

    #[tokio::test]
    async fn since_image_pushed_without_count_unit() {
        let stderr = refused(
            Some(
                r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#,
            ),
            &[],
        )
        .await;
        assert!(
            stderr.contains("selection.countUnit is required"),
            "{stderr}"
        );
    }

    #[tokio::test]
    async fn shard_out_of_range() {
        let stderr = refused(None, &["--shard", "2/2"]).await;
        assert!(stderr.contains("shard"), "{stderr}");
    }
}

#[tokio::test]
async fn shards_split_repositories_between_runs() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    for i in 0..8 {
        aws.repo(&format!("svc-{i}")).await;
    }
    let mut seen = Vec::new();
    for shard in ["0/3", "1/3", "2/3"] {
        let out = prune(&moto, &["--shard", shard, "--output", "json"]);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        for r in json(&out)["repositories"].as_array().expect("repositories") {
            seen.push(r["name"].as_str().expect("name").to_owned());
        }
    }
    seen.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("svc-{i}")).collect();
    assert_eq!(seen, expected, "every repository in exactly one shard");
}

#[tokio::test]
async fn throttled_deletes_are_retried_with_backoff() {
    let moto = Moto::start();
    let aws = Aws::new(&moto).await;
    aws.repo("busy").await;
    let seeds: Vec<String> = (0..151).map(|i| format!("busy-{i}")).collect();
    futures_util::future::join_all(seeds.iter().map(|s| aws.image("busy", Some(s), s))).await;
    let proxy = AwsProxy::start_throttling(&moto, "BatchDeleteImage", 2);
    let out = prune_env(
        &proxy.env(&moto),
        &[
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(
        aws.digests("busy").await.len(),
        1,
        "every deletion went through"
    );
    // Two batches (100 + 50), the first throttled twice: four attempts.
    assert_eq!(count(&calls(&out), "BatchDeleteImage"), 4);
}

/// A cluster `prod` with one service (desired count 0) per image reference.
async fn services_using(aws: &Aws, images: &[String]) {
    aws.ecs
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("CreateCluster");
    for (i, image) in images.iter().enumerate() {
        let td = aws.task_definition(&format!("fam{i}"), image).await;
        aws.ecs
            .create_service()
            .cluster("prod")
            .service_name(format!("svc{i}"))
            .task_definition(td)
            .desired_count(0)
            .send()
            .await
            .expect("CreateService");
    }
}

#[tokio::test]
async fn fips_and_dual_stack_references_protect_and_another_account_does_not() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("web").await;
    let digests = versions(&aws, "web", 5).await;
    services_using(
        &aws,
        &[
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/web:v1".to_owned(),
            "123456789012.dkr-ecr.us-east-1.on.aws/web:v2".to_owned(),
            "210987654321.dkr.ecr.us-east-1.amazonaws.com/web:v3".to_owned(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/web:v0".to_owned(),
        ],
    )
    .await;
    let out = prune_env(&proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let left = aws.digests("web").await;
    let mut expected = vec![digests[1].clone(), digests[2].clone(), digests[4].clone()];
    expected.sort();
    assert_eq!(
        left, expected,
        "v1 (FIPS) and v2 (dual-stack) kept, v0 and v3 not"
    );
    let doc = json(&out);
    let repo = repo_json(&doc, "web");
    assert!(
        reason_of(repo, &digests[1]).contains("dkr.ecr-fips"),
        "{repo}"
    );
    assert!(
        reason_of(repo, &digests[2]).contains("dkr-ecr.us-east-1.on.aws"),
        "{repo}"
    );
}

/// The fixtures the proxy answers for one service: one SUCCESSFUL deployment moving
/// from revision `source` to revision `target`, each revision pinning one digest —
/// shaped like ListServiceDeployments / DescribeServiceDeployments /
/// DescribeServiceRevisions in the ECS API reference.
fn service_deployment_fixtures(
    proxy: &AwsProxy,
    service_arn: &str,
    task_definition: &str,
    image: &str,
    (source_digest, target_digest): (&str, &str),
) {
    let base = "arn:aws:ecs:us-east-1:123456789012";
    let cluster_arn = format!("{base}:cluster/prod");
    let deployment = format!("{base}:service-deployment/prod/web/Ab1cD2eF3");
    let source = format!("{base}:service-revision/prod/web/1111111111111111111");
    let target = format!("{base}:service-revision/prod/web/2222222222222222222");
    proxy.answer_list(
        "ListServiceDeployments",
        serde_json::json!({"service": service_arn}),
        serde_json::json!({"serviceDeployments": [{
            "serviceDeploymentArn": deployment,
            "serviceArn": service_arn,
            "clusterArn": cluster_arn,
            "createdAt": 1.7e9,
            "startedAt": 1.7e9,
            "finishedAt": 1.7e9 + 300.0,
            "targetServiceRevisionArn": target,
            "status": "SUCCESSFUL"
        }]}),
    );
    let summary = |arn: &str| serde_json::json!({"arn": arn, "requestedTaskCount": 0, "runningTaskCount": 0, "pendingTaskCount": 0});
    proxy.answer_items(
        "DescribeServiceDeployments",
        "serviceDeploymentArns",
        "serviceDeployments",
        "serviceDeploymentArn",
        vec![serde_json::json!({
            "serviceDeploymentArn": deployment,
            "serviceArn": service_arn,
            "clusterArn": cluster_arn,
            "createdAt": 1.7e9,
            "startedAt": 1.7e9,
            "finishedAt": 1.7e9 + 300.0,
            "sourceServiceRevisions": [summary(&source)],
            "targetServiceRevision": summary(&target),
            "status": "SUCCESSFUL"
        })],
    );
    let revision = |arn: &str, digest: &str| {
        serde_json::json!({
            "serviceRevisionArn": arn,
            "serviceArn": service_arn,
            "clusterArn": cluster_arn,
            "taskDefinition": task_definition,
            "launchType": "EC2",
            "containerImages": [{"containerName": "app", "imageDigest": digest, "image": image}],
            "guardDutyEnabled": false,
            "createdAt": 1.7e9
        })
    };
    proxy.answer_items(
        "DescribeServiceRevisions",
        "serviceRevisionArns",
        "serviceRevisions",
        "serviceRevisionArn",
        vec![
            revision(&source, source_digest),
            revision(&target, target_digest),
        ],
    );
}

#[tokio::test]
async fn a_scaled_to_zero_service_keeps_its_pinned_digest_and_rollback_target_after_its_tag_moved()
{
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let uri = aws.repo("web").await;
    let previous = aws.image("web", Some("build-0"), "b0").await;
    tick();
    let unused = aws.image("web", Some("build-x"), "bx").await;
    tick();
    let pinned = aws.image("web", Some("build-1"), "b1").await;
    assert_eq!(aws.image("web", Some("live"), "b1").await, pinned);
    tick();
    // The tag moves: `live` now names build-2; the service (desired count 0) still
    // scales out from build-1's digest, which its deployment pinned.
    let newest = aws.image("web", Some("build-2"), "b2").await;
    assert_eq!(aws.image("web", Some("live"), "b2").await, newest);
    tick();
    aws.ecs
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("CreateCluster");
    let td = aws.task_definition("web", &format!("{uri}:live")).await;
    let service_arn = aws
        .ecs
        .create_service()
        .cluster("prod")
        .service_name("web")
        .task_definition(&td)
        .desired_count(0)
        .send()
        .await
        .expect("CreateService")
        .service()
        .and_then(|s| s.service_arn())
        .expect("service arn")
        .to_owned();
    service_deployment_fixtures(
        &proxy,
        &service_arn,
        &td,
        &format!("{uri}:live"),
        (&previous, &pinned),
    );

    let out = prune_env(&proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let left = aws.digests("web").await;
    let mut expected = vec![previous.clone(), pinned.clone(), newest.clone()];
    expected.sort();
    assert_eq!(left, expected, "only the unused build goes ({unused})");
    let doc = json(&out);
    let repo = repo_json(&doc, "web");
    assert_eq!(
        reason_of(repo, &pinned),
        format!("in use by ECS (service web, deployment web/Ab1cD2eF3, pinned {pinned})")
    );
    assert_eq!(
        reason_of(repo, &previous),
        format!("in use by ECS (service web, deployment web/Ab1cD2eF3 (source revision), pinned {previous})")
    );
    let c = calls(&out);
    assert_eq!(count(&c, "ListServiceDeployments"), 1);
    assert_eq!(count(&c, "DescribeServiceDeployments"), 1);
    assert_eq!(count(&c, "DescribeServiceRevisions"), 1);
    assert!(!out
        .stderr
        .contains("ListServiceDeployments is not available"));
}

#[tokio::test]
async fn an_unreadable_quota_is_one_short_warning_and_the_default() {
    let moto = Moto::start();
    let proxy = AwsProxy::start_throttling(&moto, "GetServiceQuota", 1000);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("quota").await;
    aws.image("quota", Some("q0"), "quota-0").await;
    let out = prune_env(
        &proxy.env(&moto),
        &[
            "--max-images",
            "auto",
            "--min-age",
            "0s",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("cannot read the images-per-repository quota"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(
        warnings[0].len() < 400,
        "one short line, not an SDK dump ({} bytes): {}",
        warnings[0].len(),
        warnings[0]
    );
    assert!(
        warnings[0].contains("using the default 10000"),
        "{}",
        warnings[0]
    );
}

/// Operations in the order the binary called them.
fn call_order(out: &Output) -> Vec<String> {
    out.stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "aws call")
        .filter_map(|v| v["operation"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_caller_is_excluded_from_pull_times_before_any_manifest_read() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    proxy.serve_pull_time_exclusions();
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("multi").await;
    let child = aws.image("multi", None, "amd64").await;
    aws.index("multi", Some("v1"), &[child]).await;
    let first = prune_env(&proxy.env(&moto), &["--keep-last", "1"]);
    assert_eq!(first.code, 0, "stderr: {}", first.stderr);
    let order = call_order(&first);
    let pos = |op: &str| {
        order
            .iter()
            .position(|o| o == op)
            .unwrap_or_else(|| panic!("no {op} in {order:?}"))
    };
    assert!(
        pos("RegisterPullTimeUpdateExclusion") < pos("BatchGetImage"),
        "{order:?}"
    );
    assert_eq!(
        proxy.pull_time_exclusions(),
        vec!["arn:aws:iam::123456789012:user/moto".to_owned()],
        "moto's caller, a user, registered as itself"
    );
    let second = prune_env(&proxy.env(&moto), &["--keep-last", "1"]);
    assert_eq!(second.code, 0, "stderr: {}", second.stderr);
    let c = calls(&second);
    assert_eq!(count(&c, "ListPullTimeUpdateExclusions"), 1);
    assert_eq!(
        count(&c, "RegisterPullTimeUpdateExclusion"),
        0,
        "already listed"
    );
    let opted_out = prune_env(
        &proxy.env(&moto),
        &["--keep-last", "1", "--no-pull-time-exclusion"],
    );
    assert_eq!(count(&calls(&opted_out), "ListPullTimeUpdateExclusions"), 0);
}

#[tokio::test]
async fn without_the_exclusion_api_one_warning_and_the_run_goes_on() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    aws.repo("app").await;
    aws.image("app", Some("v1"), "v1").await;
    let out = prune_env(&proxy.env(&moto), &["--keep-last", "1"]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("sinceImagePulled may be skewed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].len() < 400, "{}", warnings[0]);
}

#[tokio::test]
async fn the_latest_task_definition_revisions_of_a_family_in_use_are_rollback_targets() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let uri = aws.repo("web").await;
    let digests = versions(&aws, "web", 5).await;
    aws.ecs
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("CreateCluster");
    let mut latest = String::new();
    for i in 1..=3 {
        latest = aws.task_definition("web", &format!("{uri}:v{i}")).await;
    }
    aws.ecs
        .create_service()
        .cluster("prod")
        .service_name("web")
        .task_definition(&latest)
        .desired_count(0)
        .send()
        .await
        .expect("CreateService");
    let out = prune_env(
        &proxy.env(&moto),
        &[
            "--keep-last",
            "1",
            "--keep-task-definitions",
            "2",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![digests[2].clone(), digests[3].clone(), digests[4].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("web").await,
        expected,
        "web:3 (the service's) and web:2 (its rollback target) kept, web:1 not"
    );
    let doc = json(&out);
    let repo = repo_json(&doc, "web");
    assert!(
        reason_of(repo, &digests[2]).starts_with(
            "in use by ECS (task definition family web, one of its latest 2 ACTIVE revisions"
        ),
        "{repo}"
    );
}

mod usage;
mod usage_paging;
