//! The IAM policies in `packaging/iam/` against the code: every AWS SDK call the adapters
//! make (operations read from the SDK crates' own sources) is allowed by the policy meant
//! for its service, and nothing else is.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use shipshape_tests::bin::run;
use shipshape_tests::tools::{ok, read, repo, rs_files};
use shipshape_tests::workspace_root;

/// IAM action of an SDK operation, where it is not `prefix:PascalCase(op)`.
const ACTION_EXCEPTIONS: [(&str, &str, &str); 4] = [
    ("s3", "head_object", "s3:GetObject"),
    ("s3", "list_objects_v2", "s3:ListBucket"),
    ("s3", "list_objects", "s3:ListBucket"),
    ("s3", "head_bucket", "s3:ListBucket"),
];

/// Actions AWS evaluates on our behalf, allowed only because a called action needs them.
const IMPLIED: [(&str, &str); 1] = [
    // GetSecretValue of a secret encrypted with a customer-managed key.
    ("secretsmanager:GetSecretValue", "kms:Decrypt"),
];

/// IAM prefix of an SDK crate's service, where it is not the crate's name.
const IAM_PREFIX: [(&str, &str); 1] = [("eventbridge", "events")];

/// Which policy file grants which service's actions.
const POLICY_OF_SERVICE: [(&str, &str); 10] = [
    ("secretsmanager", "packaging/iam/instance-role-policy.json"),
    ("s3", "packaging/iam/instance-role-policy.json"),
    ("kms", "packaging/iam/instance-role-policy.json"),
    ("ecr", "packaging/iam/ecr-prune-task-policy.json"),
    ("ecs", "packaging/iam/ecr-prune-task-policy.json"),
    ("servicequotas", "packaging/iam/ecr-prune-task-policy.json"),
    ("sts", "packaging/iam/ecr-prune-task-policy.json"),
    ("events", "packaging/iam/ecr-prune-task-policy.json"),
    ("scheduler", "packaging/iam/ecr-prune-task-policy.json"),
    ("lambda", "packaging/iam/ecr-prune-task-policy.json"),
];

fn pascal(snake: &str) -> String {
    snake
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The host's target triple (`host:` in `rustc -vV`), for `cargo metadata --filter-platform`.
fn host_triple() -> String {
    let out =
        run(Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into())).arg("-vV"));
    ok(&out, "rustc -vV");
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|t| t.trim().to_owned())
        .unwrap_or_else(|| panic!("no host line in rustc -vV:\n{}", out.stdout))
}

/// SDK crate name (`aws_sdk_ecr`) → its operations (`describe_images`…), read from the
/// crates' own `src/operation/` directories as resolved by `cargo metadata`.
///
/// `--filter-platform <host>` makes cargo resolve (and need on disk) only the packages a
/// build for this machine uses — the ones the build of this test already fetched — so
/// `--offline` holds on a machine whose cargo cache never saw the other targets' crates
/// (without it, cargo wants every package of the lock file, windows and android ones
/// included). `--offline` stays: the test must not depend on the network.
fn sdk_operations() -> BTreeMap<String, BTreeSet<String>> {
    let out = run(
        Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args(["metadata", "--format-version", "1", "--offline", "--locked"])
            .arg("--filter-platform")
            .arg(host_triple()),
    );
    ok(&out, "cargo metadata");
    let meta: serde_json::Value = serde_json::from_str(&out.stdout).expect("cargo metadata JSON");
    let mut ops = BTreeMap::new();
    for pkg in meta["packages"].as_array().expect("packages") {
        let name = pkg["name"].as_str().unwrap_or_default();
        if !name.starts_with("aws-sdk-") {
            continue;
        }
        let manifest = PathBuf::from(pkg["manifest_path"].as_str().expect("manifest_path"));
        let dir = manifest.parent().expect("crate dir").join("src/operation");
        let set: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        ops.insert(name.replace('-', "_"), set);
    }
    assert!(
        ops.contains_key("aws_sdk_ecr"),
        "aws-sdk-ecr not resolved by cargo metadata"
    );
    ops
}

/// Every `.name(` in `text` (method calls).
fn method_calls(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut calls = BTreeSet::new();
    for (i, _) in text.match_indices('.') {
        let rest = &bytes[i + 1..];
        let len = rest
            .iter()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || **b == b'_')
            .count();
        if len > 0 && rest.get(len) == Some(&b'(') {
            calls.insert(text[i + 1..i + 1 + len].to_owned());
        }
    }
    calls
}

/// One SDK call site: the IAM actions it may be (an operation name such as
/// `list_services` exists in several SDKs a file may import) and the file making it.
#[derive(Debug)]
struct Call {
    candidates: Vec<String>,
    file: String,
}

/// The SDK calls in `agent/src/adapters/**.rs`, as IAM actions.
fn adapter_calls() -> Vec<Call> {
    let ops = sdk_operations();
    let exceptions: BTreeMap<(&str, &str), &str> = ACTION_EXCEPTIONS
        .iter()
        .map(|(s, o, a)| ((*s, *o), *a))
        .collect();
    let mut out = Vec::new();
    for (file, path) in rs_files(&repo("agent/src/adapters")) {
        let text = read(&path);
        let mut by_op: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let calls = method_calls(&text);
        for (krate, crate_ops) in &ops {
            if !text.contains(krate.as_str()) {
                continue;
            }
            let service = krate.trim_start_matches("aws_sdk_");
            let service = IAM_PREFIX
                .iter()
                .find(|(c, _)| *c == service)
                .map_or(service, |(_, p)| *p);
            for op in calls.intersection(crate_ops) {
                let action = exceptions
                    .get(&(service, op.as_str()))
                    .map(|a| (*a).to_owned())
                    .unwrap_or_else(|| format!("{service}:{}", pascal(op)));
                by_op.entry(op.clone()).or_default().push(action);
            }
        }
        out.extend(by_op.into_values().map(|candidates| Call {
            candidates,
            file: file.clone(),
        }));
    }
    out
}

fn policy_actions(rel: &str) -> BTreeSet<String> {
    let doc: serde_json::Value = serde_json::from_str(&read(&repo(rel)))
        .unwrap_or_else(|e| panic!("{rel} is not JSON: {e}"));
    let mut actions = BTreeSet::new();
    for st in doc["Statement"].as_array().expect("Statement array") {
        assert_eq!(
            st["Effect"], "Allow",
            "{rel}: only Allow statements expected"
        );
        assert!(
            st.get("NotAction").is_none() && st.get("NotResource").is_none(),
            "{rel}"
        );
        let list = match &st["Action"] {
            serde_json::Value::String(s) => vec![s.clone()],
            serde_json::Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().expect("action string").to_owned())
                .collect(),
            other => panic!("{rel}: bad Action {other}"),
        };
        for a in list {
            assert!(
                !a.contains('*'),
                "{rel}: wildcard action {a} is not least privilege"
            );
            actions.insert(a);
        }
    }
    actions
}

#[test]
fn method_call_scanner_finds_sdk_calls() {
    let calls = method_calls("self.ecr.describe_images().repository_name(r).into_paginator()");
    assert!(calls.contains("describe_images") && calls.contains("repository_name"));
    assert_eq!(pascal("batch_get_image"), "BatchGetImage");
}

#[test]
fn iam_policies_allow_exactly_the_calls_the_adapters_make() {
    let calls = adapter_calls();
    let policy_of: BTreeMap<&str, &str> = POLICY_OF_SERVICE.iter().copied().collect();
    let service_of = |action: &str| action.split(':').next().unwrap_or_default().to_owned();
    let mut granted: BTreeMap<String, String> = BTreeMap::new();
    for rel in BTreeSet::from_iter(policy_of.values().copied()) {
        for action in policy_actions(rel) {
            granted.insert(action, rel.to_owned());
        }
    }
    let mut problems = Vec::new();
    let mut used: BTreeSet<String> = BTreeSet::new();
    for call in &calls {
        // A call is covered when one of its candidate actions is granted by the policy
        // meant for that service.
        let covering: Vec<&String> = call
            .candidates
            .iter()
            .filter(|a| {
                granted.get(*a).map(String::as_str)
                    == policy_of.get(service_of(a).as_str()).copied()
                    && granted.contains_key(*a)
            })
            .collect();
        if covering.is_empty() {
            problems.push(format!(
                "adapters/{} calls {}: not allowed by {}",
                call.file,
                call.candidates.join(" or "),
                call.candidates
                    .iter()
                    .map(|a| policy_of
                        .get(service_of(a).as_str())
                        .copied()
                        .unwrap_or("any policy"))
                    .collect::<Vec<_>>()
                    .join(" / ")
            ));
        }
        used.extend(covering.into_iter().cloned());
    }
    let implied: Vec<&str> = IMPLIED
        .iter()
        .filter(|(by, _)| used.contains(*by))
        .map(|(_, implied)| *implied)
        .collect();
    for (action, rel) in &granted {
        if !used.contains(action) && !implied.contains(&action.as_str()) {
            problems.push(format!("{rel} allows {action}, which no adapter calls"));
        }
        if policy_of.get(service_of(action).as_str()) != Some(&rel.as_str()) {
            problems.push(format!(
                "{rel} grants {action}, which belongs in another policy"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "IAM policies drifted from the code (calls found: {calls:?}):\n{}",
        problems.join("\n")
    );
}
