//! What can start next beyond ECS services and tasks, through the binary against moto
//! behind the strict proxy: scheduled tasks (an EventBridge rule's and an EventBridge
//! Scheduler schedule's ECS targets) and Lambda container-image functions (an alias's
//! version by its resolved digest). moto serves EventBridge, Scheduler and Lambda's
//! lists; its GetFunction makes `ResolvedImageUri` up, so the proxy answers GetFunction
//! from fixtures shaped like the Lambda API reference. Many accounts: a workload
//! account (moto switches accounts on AssumeRole) read through `--usage-role`, and
//! through `ecr-usage --output` there and `--usage-file` in the registry account.

use super::{tick, KEEP_ONE};
use shipshape_tests::aws::Aws;
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::moto::Moto;
use shipshape_tests::proxy::AwsProxy;

pub(super) const ACCOUNT: &str = "123456789012";

fn prune(env: &[(String, String)], args: &[&str]) -> Output {
    super::prune_env(env, args)
}

/// `ecr-prune EXTRA KEEP_ONE`: the usage flags under test, then keep-newest-and-apply.
fn prune_keeping_one(env: &[(String, String)], extra: &[&str]) -> Output {
    prune(env, &[extra, &KEEP_ONE[..]].concat())
}

/// Number of HTTP attempts of `op` the binary logged.
fn calls(out: &Output, op: &str) -> usize {
    super::count(&super::calls(out), op)
}

/// The reason the JSON report gives for `digest` in `repository`.
pub(super) fn reason(out: &Output, repository: &str, digest: &str) -> String {
    super::reason_of(super::repo_json(&super::json(out), repository), digest).to_owned()
}

/// `n` images `v0…v{n-1}` of a new repository, oldest first; its URI and their digests.
pub(super) async fn images(aws: &Aws, repository: &str, n: usize) -> (String, Vec<String>) {
    let uri = aws.repo(repository).await;
    let mut digests = Vec::new();
    for i in 0..n {
        digests.push(
            aws.image(
                repository,
                Some(&format!("v{i}")),
                &format!("{repository}-{i}"),
            )
            .await,
        );
        tick();
    }
    (uri, digests)
}

/// Repository `etl` (v0…v4) whose v1 an EventBridge rule's ECS target runs and whose v2
/// the schedule `nightly` runs (beside a schedule `ping` with an SQS target); its URI and
/// digests.
async fn scheduled_tasks(moto: &Moto, aws: &Aws) -> (String, Vec<String>) {
    let (uri, digests) = images(aws, "etl", 5).await;
    let cluster = format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/prod");
    let by_rule = aws.task_definition("etl", &format!("{uri}:v1")).await;
    let by_schedule = aws.task_definition("report", &format!("{uri}:v2")).await;
    moto.aws_cli(&[
        "events",
        "put-rule",
        "--name",
        "etl-hourly",
        "--schedule-expression",
        "rate(1 hour)",
    ]);
    let targets = serde_json::json!([{
        "Id": "etl",
        "Arn": cluster,
        "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/events-run-task"),
        "EcsParameters": {"TaskDefinitionArn": by_rule, "TaskCount": 1, "LaunchType": "EC2"}
    }]);
    moto.aws_cli(&[
        "events",
        "put-targets",
        "--rule",
        "etl-hourly",
        "--targets",
        &targets.to_string(),
    ]);
    let schedule = |name: &str, target: serde_json::Value| {
        moto.aws_cli(&[
            "scheduler",
            "create-schedule",
            "--name",
            name,
            "--schedule-expression",
            "cron(0 2 * * ? *)",
            "--flexible-time-window",
            "Mode=OFF",
            "--target",
            &target.to_string(),
        ]);
    };
    schedule(
        "nightly",
        serde_json::json!({
            "Arn": cluster,
            "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/scheduler-run-task"),
            "EcsParameters": {"TaskDefinitionArn": by_schedule, "TaskCount": 1}
        }),
    );
    schedule(
        "ping",
        serde_json::json!({
            "Arn": format!("arn:aws:sqs:us-east-1:{ACCOUNT}:pings"),
            "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/scheduler-send"),
        }),
    );
    (uri, digests)
}

#[tokio::test]
async fn a_scheduled_tasks_image_is_kept_for_a_rule_and_a_schedule() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (uri, digests) = scheduled_tasks(&moto, &aws).await;
    let out = prune(&proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![digests[1].clone(), digests[2].clone(), digests[4].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("etl").await,
        expected,
        "v1 (the rule's task) and v2 (the schedule's task) kept"
    );
    let rule = reason(&out, "etl", &digests[1]);
    assert!(
        rule.starts_with("in use by ECS (EventBridge rule etl-hourly, task definition")
            && rule.ends_with(&format!("{uri}:v1)")),
        "{rule}"
    );
    let nightly = reason(&out, "etl", &digests[2]);
    assert!(
        nightly.starts_with("in use by ECS (schedule nightly, task definition")
            && nightly.ends_with(&format!("{uri}:v2)")),
        "{nightly}"
    );
    assert_eq!(
        calls(&out, "GetSchedule"),
        1,
        "only the schedule whose target is an ECS cluster is read"
    );
    assert!(!out.stderr.contains("is not available"), "{}", out.stderr);
}

#[tokio::test]
async fn an_endpoint_without_scheduler_or_lambda_is_one_warning_each_and_rules_still_protect() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (_, digests) = scheduled_tasks(&moto, &aws).await;
    proxy.refuse_rest("GET", "/schedules");
    proxy.refuse_rest("GET", "/2015-03-31/functions");
    let out = prune(&proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("\"WARN\""))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", out.stderr);
    for what in [
        "EventBridge Scheduler is not available",
        "Lambda is not available",
    ] {
        let line = warnings
            .iter()
            .find(|l| l.contains(what))
            .unwrap_or_else(|| panic!("no warning {what:?}: {warnings:?}"));
        assert!(line.len() < 400, "{line}");
    }
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("sinceImagePulled may be skewed")),
        "the third: no pull-time exclusion API behind this proxy: {warnings:?}"
    );
    let mut expected = vec![digests[1].clone(), digests[4].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("etl").await,
        expected,
        "the rule's image kept; the schedule's is not known here"
    );
}

/// GetFunction's answer for one version of an image function, shaped like the Lambda
/// API reference (`Configuration`, `Code` with `ImageUri` and `ResolvedImageUri`).
pub(super) fn get_function(
    function: &str,
    version: &str,
    image: &str,
    resolved: &str,
) -> serde_json::Value {
    let arn = format!("arn:aws:lambda:us-east-1:{ACCOUNT}:function:{function}");
    serde_json::json!({
        "Configuration": {
            "FunctionName": function,
            "FunctionArn": format!("{arn}:{version}"),
            "Role": format!("arn:aws:iam::{ACCOUNT}:role/lambda-run"),
            "CodeSize": 0,
            "Timeout": 3,
            "MemorySize": 128,
            "Version": version,
            "PackageType": "Image",
            "State": "Active",
            "LastUpdateStatus": "Successful",
            "Architectures": ["x86_64"]
        },
        "Code": {"RepositoryType": "ECR", "ImageUri": image, "ResolvedImageUri": resolved}
    })
}

#[tokio::test]
async fn a_lambda_aliases_image_is_kept_by_its_resolved_digest() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (uri, digests) = images(&aws, "fn", 4).await;
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    moto.aws_cli(&[
        "iam",
        "create-role",
        "--role-name",
        "lambda-run",
        "--assume-role-policy-document",
        &trust.to_string(),
    ]);
    let role = format!("arn:aws:iam::{ACCOUNT}:role/lambda-run");
    // `live` is the tag each deploy pushes; Lambda resolved it to v1's digest for
    // version 1 (alias prod), v2's for version 2, and v3's for $LATEST.
    let live = format!("{uri}:live");
    moto.aws_cli(&[
        "lambda",
        "create-function",
        "--function-name",
        "fn",
        "--package-type",
        "Image",
        "--code",
        &format!("ImageUri={live}"),
        "--role",
        &role,
    ]);
    moto.aws_cli(&["lambda", "publish-version", "--function-name", "fn"]);
    moto.aws_cli(&["lambda", "publish-version", "--function-name", "fn"]);
    moto.aws_cli(&[
        "lambda",
        "create-alias",
        "--function-name",
        "fn",
        "--name",
        "prod",
        "--function-version",
        "1",
    ]);
    for (version, digest) in [
        ("1", &digests[1]),
        ("2", &digests[2]),
        ("$LATEST", &digests[3]),
    ] {
        proxy.answer_rest(
            "GET",
            "/2015-03-31/functions/fn",
            &[("Qualifier", version)],
            get_function("fn", version, &live, &format!("{uri}@{digest}")),
        );
    }

    let out = prune_keeping_one(&proxy.env(&moto), &["--keep-task-definitions", "0"]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![digests[1].clone(), digests[3].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("fn").await,
        expected,
        "v1 (alias prod → version 1) and v3 ($LATEST) kept; version 2, not aliased, is not \
         protected with --keep-task-definitions 0"
    );
    assert_eq!(
        reason(&out, "fn", &digests[1]),
        format!(
            "in use by Lambda (lambda fn alias prod → version 1 → {})",
            digests[1]
        )
    );
    assert_eq!(
        calls(&out, "GetFunction"),
        2,
        "one per version that runs next"
    );
}

const WORKLOAD: &str = "210987654321";

/// `env` with `creds` in place of its credentials.
fn with_creds(env: &[(String, String)], creds: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !creds.iter().any(|(c, _)| c == k))
        .cloned()
        .collect();
    out.extend_from_slice(creds);
    out
}

/// A registry repository `shared` (v0…v3) in moto's default account, and a workload
/// account whose service (scaled to zero) runs `shared:v1`; the role's ARN and the
/// workload's credentials.
async fn registry_and_workload(
    moto: &Moto,
    aws: &Aws,
) -> (Vec<String>, String, Vec<(String, String)>) {
    let (uri, digests) = images(aws, "shared", 4).await;
    assert!(uri.starts_with(ACCOUNT), "{uri}");
    let role = format!("arn:aws:iam::{WORKLOAD}:role/shipshape-usage");
    let creds = moto.assume_role(&role);
    let caller = moto.aws_cli_as(
        &creds,
        &["sts", "get-caller-identity", "--query", "Account"],
    );
    assert_eq!(caller, WORKLOAD, "moto switched accounts");
    moto.aws_cli_as(&creds, &["ecs", "create-cluster", "--cluster-name", "apps"]);
    let containers = serde_json::json!([{"name": "app", "image": format!("{uri}:v1"), "memoryReservation": 128}]);
    let td = moto.aws_cli_as(
        &creds,
        &[
            "ecs",
            "register-task-definition",
            "--family",
            "api",
            "--container-definitions",
            &containers.to_string(),
            "--query",
            "taskDefinition.taskDefinitionArn",
        ],
    );
    moto.aws_cli_as(
        &creds,
        &[
            "ecs",
            "create-service",
            "--cluster",
            "apps",
            "--service-name",
            "api",
            "--task-definition",
            &td,
            "--desired-count",
            "0",
        ],
    );
    (digests, role, creds)
}

#[tokio::test]
async fn a_workload_accounts_usage_through_its_role_protects_a_registry_image() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (digests, role, _) = registry_and_workload(&moto, &aws).await;
    let out = prune_keeping_one(&proxy.env(&moto), &["--usage-role", role.as_str()]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![digests[1].clone(), digests[3].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("shared").await,
        expected,
        "v1, run by the workload account's service, kept"
    );
    let why = reason(&out, "shared", &digests[1]);
    assert!(
        why.starts_with(&format!(
            "in use by ECS (account {WORKLOAD} (role {role}): service api"
        )),
        "{why}"
    );
    assert_eq!(calls(&out, "AssumeRole"), 1);
}

#[tokio::test]
async fn a_usage_file_written_in_the_workload_account_protects_and_an_unreadable_one_fails_closed()
{
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (digests, _, creds) = registry_and_workload(&moto, &aws).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("workload-usage.json");
    let file_arg = file.to_str().expect("utf-8 path");
    let written = run_shipshape(
        ["--log-format", "json", "ecr-usage", "--output", file_arg],
        &with_creds(&proxy.env(&moto), &creds),
    );
    assert_eq!(written.code, 0, "stderr: {}", written.stderr);
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("usage file")).expect("JSON");
    assert_eq!(doc["format"], "shipshape-ecr-usage");
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["account"], WORKLOAD);

    // A usage file that cannot be read: exit 1, one line, nothing deleted.
    let missing = dir.path().join("missing.json");
    let failed = prune_keeping_one(
        &proxy.env(&moto),
        &["--usage-file", missing.to_str().expect("utf-8")],
    );
    assert_eq!(failed.code, 1, "stderr: {}", failed.stderr);
    assert!(
        failed.stderr.contains("cannot use the usage file")
            && failed.stderr.contains("nothing was deleted"),
        "{}",
        failed.stderr
    );
    assert_eq!(aws.digests("shared").await.len(), 4, "nothing deleted");
    assert_eq!(calls(&failed, "BatchDeleteImage"), 0);

    let out = prune_keeping_one(&proxy.env(&moto), &["--usage-file", file_arg]);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![digests[1].clone(), digests[3].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("shared").await,
        expected,
        "v1 kept by the usage file"
    );
    let why = reason(&out, "shared", &digests[1]);
    assert!(
        why.starts_with(&format!(
            "in use by ECS (usage file {file_arg} (account {WORKLOAD}): service api"
        )),
        "{why}"
    );
}

#[test]
fn a_usage_role_that_is_not_a_role_arn_is_a_usage_error() {
    let env = [("AWS_REGION".to_owned(), "us-east-1".to_owned())];
    let out = prune(&env, &["--usage-role", "arn:aws:iam::2109:user/alice"]);
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("usage-role"))
        .unwrap_or_else(|| panic!("no line names --usage-role: {}", out.stderr));
    assert!(line.contains("is not an IAM role ARN"), "{line}");
}

#[tokio::test]
async fn a_usage_role_that_cannot_be_assumed_fails_the_run_and_deletes_nothing() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (digests, role, _) = registry_and_workload(&moto, &aws).await;
    // STS behind a closed port: AssumeRole cannot be answered (after the SDK's retries).
    let closed = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let mut env = proxy.env(&moto);
    env.push((
        "AWS_ENDPOINT_URL_STS".into(),
        format!("http://127.0.0.1:{port}"),
    ));
    let out = prune_keeping_one(&env, &["--usage-role", role.as_str()]);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("cannot assume the usage role")
            && out.stderr.contains("nothing was deleted"),
        "{}",
        out.stderr
    );
    assert_eq!(
        aws.digests("shared").await.len(),
        digests.len(),
        "nothing deleted"
    );
    assert_eq!(calls(&out, "DescribeImages"), 0);
}

/// The fakes' refusals, on the real path: a role whose policy lacks `events:ListRules`
/// or `lambda:GetFunction` fails the run closed (exit 1, nothing deleted), as
/// `scheduled::tests::an_unavailable_scheduler_is_skipped_and_denied_rules_fail_closed`
/// and `lambda::tests::an_unavailable_lambda_is_skipped_and_a_denied_read_fails_closed`
/// expect of the fakes.
#[tokio::test]
async fn denied_rule_or_lambda_reads_fail_the_run_closed_as_the_fakes_do() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (uri, _) = scheduled_tasks(&moto, &aws).await;
    let before = aws.digests("etl").await;
    proxy.deny("ListRules");
    let out = prune(&proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(out.stderr.contains("ListRules"), "{}", out.stderr);
    assert_eq!(aws.digests("etl").await, before, "nothing deleted");

    let lambda_proxy = AwsProxy::start(&moto);
    let trust = serde_json::json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    moto.aws_cli(&[
        "iam",
        "create-role",
        "--role-name",
        "lambda-run",
        "--assume-role-policy-document",
        &trust.to_string(),
    ]);
    moto.aws_cli(&[
        "lambda",
        "create-function",
        "--function-name",
        "fn",
        "--package-type",
        "Image",
        "--code",
        &format!("ImageUri={uri}:v1"),
        "--role",
        &format!("arn:aws:iam::{ACCOUNT}:role/lambda-run"),
    ]);
    lambda_proxy.deny_rest("GET", "/2015-03-31/functions/fn");
    let out = prune(&lambda_proxy.env(&moto), &KEEP_ONE);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    assert!(out.stderr.contains("GetFunction"), "{}", out.stderr);
    assert_eq!(aws.digests("etl").await, before, "nothing deleted");
}

/// Usage in other regions (`--usage-region`): a registry repository `shared` (v0…v4) in
/// us-east-1 whose v1 this account's service in us-west-2 runs, and whose v2 the
/// workload account's service in eu-west-1 runs (both scaled to zero, naming the image
/// by its full us-east-1 URI); the digests and the workload role.
async fn usage_in_other_regions(moto: &Moto, aws: &Aws) -> (Vec<String>, String) {
    let (uri, digests) = images(aws, "shared", 5).await;
    let service = |creds: &[(String, String)], region: &str, image: &str| {
        let cli = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend_from_slice(&["--region", region]);
            moto.aws_cli_as(creds, &all)
        };
        cli(&["ecs", "create-cluster", "--cluster-name", "apps"]);
        let containers =
            serde_json::json!([{"name": "app", "image": image, "memoryReservation": 128}]);
        let td = cli(&[
            "ecs",
            "register-task-definition",
            "--family",
            "api",
            "--container-definitions",
            &containers.to_string(),
            "--query",
            "taskDefinition.taskDefinitionArn",
        ]);
        assert!(td.contains(&format!(":ecs:{region}:")), "{td}");
        cli(&[
            "ecs",
            "create-service",
            "--cluster",
            "apps",
            "--service-name",
            "api",
            "--task-definition",
            &td,
            "--desired-count",
            "0",
        ]);
    };
    service(&[], "us-west-2", &format!("{uri}:v1"));
    let role = format!("arn:aws:iam::{WORKLOAD}:role/shipshape-usage");
    let creds = moto.assume_role(&role);
    service(&creds, "eu-west-1", &format!("{uri}:v2"));
    (digests, role)
}

/// The protection reasons of `digests` in the plan of `shared`.
fn reasons(out: &Output, digests: &[String]) -> Vec<String> {
    digests.iter().map(|d| reason(out, "shared", d)).collect()
}

#[tokio::test]
async fn usage_in_another_region_protects_with_usage_region_and_not_without() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (digests, role) = usage_in_other_regions(&moto, &aws).await;
    let plan_only: Vec<&str> = KEEP_ONE
        .iter()
        .copied()
        .filter(|a| *a != "--apply")
        .collect();

    // Without --usage-region only us-east-1 is read: neither service protects (by design:
    // a region nobody lists is not scanned).
    let mut args = vec!["--usage-role", role.as_str()];
    args.extend_from_slice(&plan_only);
    let out = prune(&proxy.env(&moto), &args);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    for (i, why) in reasons(&out, &digests[1..3]).iter().enumerate() {
        assert!(!why.starts_with("in use"), "v{}: {why}", i + 1);
    }

    let mut args = vec![
        "--usage-role",
        role.as_str(),
        "--usage-region",
        "us-west-2",
        "--usage-region",
        "eu-west-1",
        "--usage-region",
        "us-east-1",
    ];
    args.extend_from_slice(&KEEP_ONE);
    let out = prune(&proxy.env(&moto), &args);
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![digests[1].clone(), digests[2].clone(), digests[4].clone()];
    expected.sort();
    assert_eq!(
        aws.digests("shared").await,
        expected,
        "v1 (this account, us-west-2) and v2 (the workload account, eu-west-1) kept"
    );
    let why = reasons(&out, &digests[1..3]);
    assert!(
        why[0].starts_with("in use by ECS (region us-west-2: service api"),
        "{}",
        why[0]
    );
    assert!(
        why[1].starts_with(&format!(
            "in use by ECS (account {WORKLOAD} (role {role}) in region eu-west-1: service api"
        )),
        "{}",
        why[1]
    );
    assert_eq!(calls(&out, "AssumeRole"), 1, "one role, assumed once");
    assert_eq!(
        calls(&out, "ListClusters"),
        6,
        "two accounts × three regions (us-east-1 listed twice counts once)"
    );
}

#[tokio::test]
async fn an_unreadable_usage_region_fails_the_run_closed() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    let (digests, _) = usage_in_other_regions(&moto, &aws).await;
    proxy.deny_region("us-west-2");
    let out = prune_keeping_one(&proxy.env(&moto), &["--usage-region", "us-west-2"]);
    assert_eq!(out.code, 1, "stderr: {}", out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("nothing was deleted"))
        .unwrap_or_else(|| panic!("no failure line: {}", out.stderr));
    assert!(
        line.contains("region us-west-2") && line.contains("UnrecognizedClientException"),
        "{line}"
    );
    assert_eq!(
        aws.digests("shared").await.len(),
        digests.len(),
        "nothing deleted"
    );
    assert_eq!(calls(&out, "BatchDeleteImage"), 0);
}

#[test]
fn a_usage_region_that_is_not_a_region_name_is_a_usage_error_for_both_commands() {
    let env = [("AWS_REGION".to_owned(), "us-east-1".to_owned())];
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("usage.json");
    let usage = [
        "ecr-usage",
        "--output",
        file.to_str().expect("utf-8"),
        "--usage-region",
        "uswest2",
    ];
    for out in [
        run_shipshape(["ecr-prune", "--usage-region", "us-west"], &env),
        run_shipshape(usage, &env),
    ] {
        assert_eq!(out.code, 2, "stderr: {}", out.stderr);
        let lines: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line: {}", out.stderr);
        assert!(
            lines[0].contains("usage-region") && lines[0].contains("is not an AWS region name"),
            "{}",
            lines[0]
        );
    }
    assert!(!file.exists());
}
