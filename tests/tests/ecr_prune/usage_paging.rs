//! Paging of the usage calls through the strict proxy: EventBridge ListEventBuses,
//! ListRules, ListTargetsByRule, Scheduler ListSchedules, Lambda ListFunctions,
//! ListVersionsByFunction and ListAliases. moto answers each in one page; the proxy
//! pages them (see `tests/src/proxy.rs`). Each call gets a run whose protection lies on
//! its third page (the proxy serves one item a page with `short_pages`, as AWS may: a
//! rule holds at most five targets, so only a short page shows ListTargetsByRule's
//! paging at all), and a contract case: a page size above the API reference's maximum
//! is refused as AWS refuses it, through the AWS CLI (botocore checks minima, not
//! maxima, so the request reaches the proxy).

use super::usage::{get_function, images, reason, ACCOUNT};
use super::KEEP_ONE;
use shipshape_tests::aws::Aws;
use shipshape_tests::moto::{moto_server_path, Moto};
use shipshape_tests::proxy::AwsProxy;

/// The usage calls, as the proxy and the binary's call log name them.
const CALLS: [&str; 7] = [
    "ListEventBuses",
    "ListRules",
    "ListTargetsByRule",
    "ListSchedules",
    "ListFunctions",
    "ListVersionsByFunction",
    "ListAliases",
];

/// Repository `paged` (v0…v6) and, each named so the protecting one sorts (and is
/// created) last, three of everything:
/// - event buses `default`, `b-bus`, `z-bus`; on `z-bus` rules `a-rule`, `b-rule`
///   (SQS targets) and `z-rule`, whose targets `a`, `b` (SQS) and `z` (ECS) run v1;
/// - schedules `a-ping`, `b-ping` (SQS) and `z-nightly` (ECS) running v2;
/// - image functions `a-fn`, `b-fn` (v6) and `z-fn`: `$LATEST` resolved to v3, versions
///   1 (v5) and 2 (v4), aliases `a-live`, `b-live` → 2 and `z-prod` → 1.
///
/// With `--keep-task-definitions 1` v5 is protected by alias `z-prod` alone.
/// Returns the digests and the GetFunction fixtures every proxy needs.
async fn three_of_everything(moto: &Moto, aws: &Aws) -> (Vec<String>, Vec<Fixture>) {
    let (uri, digests) = images(aws, "paged", 7).await;
    let cluster = format!("arn:aws:ecs:us-east-1:{ACCOUNT}:cluster/prod");
    let queue = format!("arn:aws:sqs:us-east-1:{ACCOUNT}:pings");
    let by_rule = aws.task_definition("etl", &format!("{uri}:v1")).await;
    let by_schedule = aws.task_definition("report", &format!("{uri}:v2")).await;
    for bus in ["b-bus", "z-bus"] {
        moto.aws_cli(&["events", "create-event-bus", "--name", bus]);
    }
    let pattern = r#"{"source":["shipshape.test"]}"#;
    for rule in ["a-rule", "b-rule", "z-rule"] {
        moto.aws_cli(&[
            "events",
            "put-rule",
            "--event-bus-name",
            "z-bus",
            "--name",
            rule,
            "--event-pattern",
            pattern,
        ]);
    }
    let sqs = |id: &str| serde_json::json!({"Id": id, "Arn": queue});
    let ecs = serde_json::json!({
        "Id": "z",
        "Arn": cluster,
        "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/events-run-task"),
        "EcsParameters": {"TaskDefinitionArn": by_rule, "TaskCount": 1, "LaunchType": "EC2"}
    });
    for (rule, targets) in [
        ("a-rule", serde_json::json!([sqs("a")])),
        ("b-rule", serde_json::json!([sqs("a")])),
        ("z-rule", serde_json::json!([sqs("a"), sqs("b"), ecs])),
    ] {
        moto.aws_cli(&[
            "events",
            "put-targets",
            "--event-bus-name",
            "z-bus",
            "--rule",
            rule,
            "--targets",
            &targets.to_string(),
        ]);
    }
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
    let send = serde_json::json!({"Arn": queue, "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/scheduler-send")});
    schedule("a-ping", send.clone());
    schedule("b-ping", send);
    schedule(
        "z-nightly",
        serde_json::json!({
            "Arn": cluster,
            "RoleArn": format!("arn:aws:iam::{ACCOUNT}:role/scheduler-run-task"),
            "EcsParameters": {"TaskDefinitionArn": by_schedule, "TaskCount": 1}
        }),
    );

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
    let live = format!("{uri}:live");
    for function in ["a-fn", "b-fn", "z-fn"] {
        moto.aws_cli(&[
            "lambda",
            "create-function",
            "--function-name",
            function,
            "--package-type",
            "Image",
            "--code",
            &format!("ImageUri={live}"),
            "--role",
            &role,
        ]);
    }
    // Lambda publishes a new version only when the code changed.
    moto.aws_cli(&["lambda", "publish-version", "--function-name", "z-fn"]);
    moto.aws_cli(&[
        "lambda",
        "update-function-code",
        "--function-name",
        "z-fn",
        "--image-uri",
        &format!("{uri}:live2"),
    ]);
    moto.aws_cli(&["lambda", "publish-version", "--function-name", "z-fn"]);
    for (alias, version) in [("a-live", "2"), ("b-live", "2"), ("z-prod", "1")] {
        moto.aws_cli(&[
            "lambda",
            "create-alias",
            "--function-name",
            "z-fn",
            "--name",
            alias,
            "--function-version",
            version,
        ]);
    }
    let resolved = |i: usize| format!("{uri}@{}", digests[i]);
    let fixtures = vec![
        ("a-fn", "$LATEST", resolved(6)),
        ("b-fn", "$LATEST", resolved(6)),
        ("z-fn", "$LATEST", resolved(3)),
        ("z-fn", "2", resolved(4)),
        ("z-fn", "1", resolved(5)),
    ]
    .into_iter()
    .map(|(f, v, r)| (f.to_owned(), v.to_owned(), get_function(f, v, &live, &r)))
    .collect();
    (digests, fixtures)
}

/// GetFunction's answer for (function, qualifier).
type Fixture = (String, String, serde_json::Value);

/// A new proxy in front of `moto` answering GetFunction from `fixtures`.
fn proxy_with(moto: &Moto, fixtures: &[Fixture]) -> AwsProxy {
    let proxy = AwsProxy::start(moto);
    for (function, qualifier, answer) in fixtures {
        proxy.answer_rest(
            "GET",
            &format!("/2015-03-31/functions/{function}"),
            &[("Qualifier", qualifier)],
            answer.clone(),
        );
    }
    proxy
}

#[tokio::test]
async fn protection_on_the_third_page_of_every_usage_call_is_found() {
    let moto = Moto::start();
    let seed = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &seed.endpoint()).await;
    let (digests, fixtures) = three_of_everything(&moto, &aws).await;
    // Plan only: every run sees the same repository.
    let mut args = vec!["--keep-task-definitions", "1"];
    args.extend(KEEP_ONE.iter().copied().filter(|a| *a != "--apply"));
    for call in CALLS {
        let proxy = proxy_with(&moto, &fixtures);
        proxy.short_pages(call, 1);
        let out = super::prune_env(&proxy.env(&moto), &args);
        assert_eq!(out.code, 0, "{call}: stderr: {}", out.stderr);
        for (i, digest) in digests.iter().enumerate().take(6).skip(1) {
            let why = reason(&out, "paged", digest);
            assert!(why.starts_with("in use by"), "{call}, v{i}: {why}");
        }
        assert!(
            !reason(&out, "paged", &digests[0]).starts_with("in use"),
            "{call}: v0 runs nowhere"
        );
        assert!(
            proxy.requests(call) >= 3,
            "{call}: its pages followed ({} requests)",
            proxy.requests(call)
        );
    }
}

/// The AWS CLI of the test venv against `proxy`: (succeeded, stdout, stderr).
fn cli(moto: &Moto, proxy: &AwsProxy, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(moto_server_path().with_file_name("aws"))
        .args(args)
        .args(["--output", "json"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(proxy.env(moto))
        .output()
        .expect("run the AWS CLI");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The API references' ranges (`Limit` 1..100, `MaxResults` 1..100, `MaxItems`
/// 1..10000, as the service models botocore ships say too) and AWS's refusal above them:
/// HTTP 400 ValidationException, "1 validation error detected: Value '…' at '<member>'
/// failed to satisfy constraint: Member must have value less than or equal to …". At
/// the maximum the call goes through.
#[tokio::test]
async fn a_page_size_above_the_api_maximum_is_refused_as_aws_refuses_it() {
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let aws = Aws::with_endpoint(&moto, &proxy.endpoint()).await;
    three_of_everything(&moto, &aws).await;
    let cases: [(&str, &[&str], &str, i64); 7] = [
        (
            "ListEventBuses",
            &["events", "list-event-buses", "--limit"],
            "limit",
            100,
        ),
        (
            "ListRules",
            &[
                "events",
                "list-rules",
                "--event-bus-name",
                "z-bus",
                "--limit",
            ],
            "limit",
            100,
        ),
        (
            "ListTargetsByRule",
            &[
                "events",
                "list-targets-by-rule",
                "--event-bus-name",
                "z-bus",
                "--rule",
                "z-rule",
                "--limit",
            ],
            "limit",
            100,
        ),
        (
            "ListSchedules",
            &["scheduler", "list-schedules", "--max-results"],
            "maxResults",
            100,
        ),
        (
            "ListFunctions",
            &["lambda", "list-functions", "--page-size"],
            "maxItems",
            10_000,
        ),
        (
            "ListVersionsByFunction",
            &[
                "lambda",
                "list-versions-by-function",
                "--function-name",
                "z-fn",
                "--page-size",
            ],
            "maxItems",
            10_000,
        ),
        (
            "ListAliases",
            &[
                "lambda",
                "list-aliases",
                "--function-name",
                "z-fn",
                "--page-size",
            ],
            "maxItems",
            10_000,
        ),
    ];
    for (call, args, member, max) in cases {
        let over = (max + 1).to_string();
        let mut with = args.to_vec();
        with.push(&over);
        let (ok, _, stderr) = cli(&moto, &proxy, &with);
        assert!(!ok, "{call} with {over}");
        let expected = format!(
            "An error occurred (ValidationException) when calling the {call} operation: 1 validation error detected: Value '{over}' at '{member}' failed to satisfy constraint: Member must have value less than or equal to {max}"
        );
        assert!(stderr.contains(&expected), "{call}: {stderr}");
        let at_max = max.to_string();
        let mut with = args.to_vec();
        with.push(&at_max);
        let (ok, stdout, stderr) = cli(&moto, &proxy, &with);
        assert!(ok, "{call} with {at_max}: {stderr}");
        let _: serde_json::Value = serde_json::from_str(&stdout).expect("JSON answer");
    }
}
