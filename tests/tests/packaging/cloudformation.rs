//! The CloudFormation template and the IAM policy files under cfn-lint (which checks IAM
//! action names, rule W3037 — proven by a misspelt action it must reject), and the
//! template's task role carrying exactly the committed task policy.

use shipshape_tests::packaging::{cfn_lint, yaml_to_json};
use shipshape_tests::tools::{ok, read, repo, tempdir, write};

/// `{"Fn::Sub": "s"}` → `"s"`, recursively.
fn unsub(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) if m.len() == 1 && m.contains_key("Fn::Sub") => {
            m["Fn::Sub"].clone()
        }
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), unsub(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(unsub).collect()),
        other => other.clone(),
    }
}

#[test]
fn cloudformation_template_passes_cfn_lint() {
    let out = cfn_lint(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ));
    ok(&out, "cfn-lint");
    assert!(
        out.stdout.trim().is_empty(),
        "cfn-lint findings:\n{}",
        out.stdout
    );
}

#[test]
fn cfn_lint_rejects_an_unknown_iam_action() {
    // Proof that cfn-lint checks action names (rule W3037), which the next test relies on.
    let dir = tempdir();
    let bad = dir.path().join("bad.yaml");
    let text = read(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ))
    .replace("ecr:BatchDeleteImage", "ecr:BatchDeleteImages");
    write(&bad, &text);
    let out = cfn_lint(&bad);
    assert_ne!(out.code, 0, "cfn-lint accepted ecr:BatchDeleteImages");
    assert!(out.stdout.contains("W3037"), "{}", out.stdout);
}

#[test]
fn cloudformation_task_role_uses_the_committed_task_policy() {
    let template = yaml_to_json(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ));
    let doc = &template["Resources"]["TaskRole"]["Properties"]["Policies"][0]["PolicyDocument"];
    let file: serde_json::Value =
        serde_json::from_str(&read(&repo("packaging/iam/ecr-prune-task-policy.json")))
            .expect("task policy JSON");
    assert_eq!(
        unsub(doc),
        file,
        "TaskRole policy in the template differs from packaging/iam/ecr-prune-task-policy.json"
    );
    // Every shard runs the prune with --apply and its own I/N.
    let input = template["Resources"]["Fn::ForEach::Shard"][2]["Schedule${Index}"]["Properties"]
        ["Target"]["Input"]["Fn::ToJsonString"]["containerOverrides"][0]["command"]
        .clone();
    let args: Vec<serde_json::Value> = input.as_array().expect("command").clone();
    assert_eq!(args[0], "ecr-prune");
    assert!(args.contains(&serde_json::json!("--apply")));
    assert!(args.contains(&serde_json::json!({"Fn::Sub": "${Index}/${ShardCount}"})));
}

/// cfn-lint of one policy file, wrapped in a throwaway template so that cfn-lint checks
/// its action names.
fn lint_policy(rel: &str) {
    let dir = tempdir();
    let doc: serde_json::Value = serde_json::from_str(&read(&repo(rel))).expect("policy JSON");
    let mut params = serde_json::Map::new();
    let text = doc.to_string();
    for p in [
        "RegistrySecretName",
        "ConfigBucket",
        "ConfigPrefix",
        "SecretsKmsKeyId",
    ] {
        if text.contains(&format!("${{{p}}}")) {
            params.insert(p.into(), serde_json::json!({"Type": "String"}));
        }
    }
    let subbed = subify(&doc);
    let template = serde_json::json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Parameters": params,
        "Resources": {"Policy": {"Type": "AWS::IAM::ManagedPolicy",
            "Properties": {"PolicyDocument": subbed}}}
    });
    let path = dir.path().join("policy.json");
    write(&path, &template.to_string());
    let out = cfn_lint(&path);
    ok(&out, &format!("cfn-lint of {rel}"));
    assert!(out.stdout.trim().is_empty(), "{rel}:\n{}", out.stdout);
}

/// One test per policy file.
mod iam_policies_use_valid_actions_per_cfn_lint {
    use super::lint_policy;

    #[test]
    fn instance_role_policy() {
        lint_policy("packaging/iam/instance-role-policy.json");
    }

    #[test]
    fn ecr_prune_task_policy() {
        lint_policy("packaging/iam/ecr-prune-task-policy.json");
    }
}

/// Strings containing `${` become `{"Fn::Sub": s}`.
fn subify(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::String(s) if s.contains("${") => serde_json::json!({"Fn::Sub": s}),
        serde_json::Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), subify(v))).collect())
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(a.iter().map(subify).collect()),
        other => other.clone(),
    }
}

#[test]
fn the_workload_account_role_template_passes_cfn_lint_and_reads_what_the_pruner_reads() {
    let rel = "packaging/cloudformation/ecr-usage-role.yaml";
    let out = cfn_lint(&repo(rel));
    ok(&out, "cfn-lint");
    assert!(
        out.stdout.trim().is_empty(),
        "cfn-lint findings:\n{}",
        out.stdout
    );
    let template = yaml_to_json(&repo(rel));
    let role = &template["Resources"]["UsageRole"]["Properties"];
    let statements = unsub(&role["Policies"][0]["PolicyDocument"]["Statement"]);
    let task: serde_json::Value =
        serde_json::from_str(&read(&repo("packaging/iam/ecr-prune-task-policy.json")))
            .expect("task policy JSON");
    // The usage-reading statements of the pruner's own policy, the same in both.
    let reading: Vec<serde_json::Value> = task["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .filter(|s| {
            s["Action"].as_array().is_some_and(|a| {
                a.iter().all(|x| {
                    let x = x.as_str().unwrap_or_default();
                    ["ecs:", "events:", "scheduler:", "lambda:"]
                        .iter()
                        .any(|p| x.starts_with(p))
                })
            })
        })
        .cloned()
        .collect();
    assert_eq!(statements, serde_json::Value::Array(reading));
    let task_role_arns = task["Statement"]
        .as_array()
        .expect("statements")
        .iter()
        .find(|s| s["Action"][0] == "sts:AssumeRole")
        .map(|s| s["Resource"][0].clone())
        .expect("the pruner may assume the workload role");
    assert_eq!(
        task_role_arns,
        format!(
            "arn:aws:iam::*:role/{}",
            role["RoleName"].as_str().expect("role name")
        )
    );
}

/// `v` with the intrinsics the scheduled-task template's command and usage policy use
/// (Ref, Fn::Sub of a string, Fn::Join, Fn::If, and in conditions Fn::Not, Fn::Equals)
/// evaluated for `params` (list parameters as JSON arrays) — a renderer for these
/// shapes only, as CloudFormation would render them.
fn render(
    v: &serde_json::Value,
    params: &serde_json::Map<String, serde_json::Value>,
    conditions: &serde_json::Value,
) -> serde_json::Value {
    use serde_json::Value;
    let string = |v: Value| match v {
        Value::String(s) => s,
        other => panic!("not a string: {other}"),
    };
    match v {
        Value::Object(m) if m.len() == 1 => {
            let (key, arg) = m.iter().next().expect("one key");
            match key.as_str() {
                "Ref" if arg == "AWS::NoValue" => v.clone(),
                "Ref" => params
                    .get(arg.as_str().expect("Ref name"))
                    .cloned()
                    .unwrap_or_else(|| panic!("no parameter {arg}")),
                "Fn::Sub" => {
                    let mut s = arg.as_str().expect("Fn::Sub of a string").to_owned();
                    for (k, p) in params {
                        if let Value::String(p) = p {
                            s = s.replace(&format!("${{{k}}}"), p);
                        }
                    }
                    assert!(!s.contains("${"), "unresolved: {s}");
                    Value::String(s)
                }
                "Fn::Join" => {
                    let sep = arg[0].as_str().expect("separator");
                    let items = match render(&arg[1], params, conditions) {
                        Value::Array(a) => a,
                        other => panic!("Fn::Join of {other}"),
                    };
                    let parts: Vec<String> = items.into_iter().map(string).collect();
                    Value::String(parts.join(sep))
                }
                "Fn::If" => {
                    let name = arg[0].as_str().expect("condition name");
                    let holds = render(&conditions[name], params, conditions);
                    let branch = if holds == Value::Bool(true) { 1 } else { 2 };
                    render(&arg[branch], params, conditions)
                }
                "Fn::Not" => Value::Bool(render(&arg[0], params, conditions) != Value::Bool(true)),
                "Fn::Equals" => Value::Bool(
                    render(&arg[0], params, conditions) == render(&arg[1], params, conditions),
                ),
                _ => Value::Object(
                    m.iter()
                        .map(|(k, v)| (k.clone(), render(v, params, conditions)))
                        .collect(),
                ),
            }
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), render(v, params, conditions)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|v| render(v, params, conditions)).collect()),
        other => other.clone(),
    }
}

/// The UsageRoles and UsageRegions parameters reach every shard's command as
/// `--usage-role A,B --usage-region X,Y`, and the task may assume exactly those roles;
/// left empty (CloudFormation's `[""]`) they give the no-op `--usage-region <this
/// region>` twice and no policy. Each rendered command is handed to the binary, which
/// must parse it and accept its roles and regions: with `--plan-out` added it stops at
/// the one check that comes after them ("leave out --apply"), exit 2.
#[test]
fn the_schedules_command_carries_the_usage_roles_and_regions_and_the_binary_takes_it() {
    use shipshape_tests::bin::run_shipshape;
    let template = yaml_to_json(&repo(
        "packaging/cloudformation/ecr-prune-scheduled-task.yaml",
    ));
    let schedule = &template["Resources"]["Fn::ForEach::Shard"][2]["Schedule${Index}"];
    let command = &schedule["Properties"]["Target"]["Input"]["Fn::ToJsonString"]
        ["containerOverrides"][0]["command"];
    let usage_policy = &template["Resources"]["TaskRole"]["Properties"]["Policies"][1];
    let roles = [
        "arn:aws:iam::210987654321:role/shipshape-ecr-usage",
        "arn:aws:iam::310987654321:role/team/reader",
    ];
    let cases: [(serde_json::Value, serde_json::Value, Vec<String>); 2] = [
        (
            serde_json::json!(roles),
            serde_json::json!(["us-west-2", "eu-west-1"]),
            vec![
                "--usage-role".into(),
                roles.join(","),
                "--usage-region".into(),
                "us-west-2,eu-west-1".into(),
            ],
        ),
        (
            serde_json::json!([""]),
            serde_json::json!([""]),
            ["--usage-region", "us-east-1", "--usage-region", "us-east-1"]
                .map(String::from)
                .to_vec(),
        ),
    ];
    for (usage_roles, usage_regions, tail) in cases {
        let mut params = serde_json::Map::new();
        for (k, v) in [
            ("Index", "0"),
            ("ShardCount", "2"),
            ("KeepLast", "50"),
            ("ExpireUntaggedAfter", "7d"),
            ("MaxImages", "auto"),
            ("AWS::Region", "us-east-1"),
        ] {
            params.insert(k.into(), serde_json::json!(v));
        }
        params.insert("UsageRoles".into(), usage_roles.clone());
        params.insert("UsageRegions".into(), usage_regions);
        let rendered = render(command, &params, &template["Conditions"]);
        let args: Vec<String> = rendered
            .as_array()
            .expect("command list")
            .iter()
            .map(|a| a.as_str().expect("string argument").to_owned())
            .collect();
        assert_eq!(args[..4], ["ecr-prune", "--apply", "--shard", "0/2"]);
        assert_eq!(args[args.len() - 4..], tail[..], "{args:?}");
        assert!(args.iter().all(|a| !a.is_empty()), "{args:?}");

        let policy = render(usage_policy, &params, &template["Conditions"]);
        if usage_roles == serde_json::json!([""]) {
            assert_eq!(policy, serde_json::json!({"Ref": "AWS::NoValue"}));
        } else {
            let statement = &policy["PolicyDocument"]["Statement"][0];
            assert_eq!(statement["Action"], serde_json::json!(["sts:AssumeRole"]));
            assert_eq!(
                statement["Resource"], usage_roles,
                "exactly the listed roles"
            );
        }

        let mut run: Vec<&str> = args.iter().map(String::as_str).collect();
        run.extend(["--plan-out", "/dev/null"]);
        let env = [("AWS_REGION".to_owned(), "us-east-1".to_owned())];
        let out = run_shipshape(&run, &env);
        assert_eq!(out.code, 2, "{run:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("leave out --apply"),
            "{run:?}: {}",
            out.stderr
        );
    }
}
