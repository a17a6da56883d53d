//! Planner cases: every example of the ECR lifecycle-policy documentation (expected
//! outcomes written from the documented semantics), and each unit/protection interaction.

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use crate::ecr_prune::rules::{parse_policy_json, with_shortcuts, Rules};
use crate::ports::ecr::EcrImage;
use crate::testing::ecr::{image_ago, index, now, repository};

fn rules(json_rules: &str) -> Rules {
    parse_policy_json(&format!(r#"{{"rules":[{json_rules}]}}"#), "test").expect("valid policy")
}

fn policy(rules: Rules) -> Policy {
    Policy {
        rules,
        protect_tags: Vec::new(),
        protect_tag_set: GlobSet::empty(),
        min_age: Duration::ZERO,
        max_images: None,
        max_delete_percent: 100,
        force: false,
    }
}

fn repo(images: Vec<EcrImage>) -> RepoSnapshot {
    RepoSnapshot {
        repository: repository("app"),
        images,
        children: HashMap::new(),
    }
}

fn run(repo: &RepoSnapshot, policy: &Policy) -> RepoPlan {
    plan_repository(repo, &EcsUsage::default(), policy, now())
}

/// digest (without `sha256:`) → (action, reason)
fn outcome(plan: &RepoPlan) -> HashMap<String, (Action, Reason)> {
    plan.units
        .iter()
        .map(|u| {
            (
                u.unit.digest.trim_start_matches("sha256:").to_owned(),
                (u.action, u.reason.clone()),
            )
        })
        .collect()
}

fn expired(plan: &RepoPlan) -> Vec<String> {
    let mut v: Vec<String> = plan
        .units
        .iter()
        .filter(|u| u.action == Action::Expire)
        .map(|u| u.unit.digest.trim_start_matches("sha256:").to_owned())
        .collect();
    v.sort();
    v
}

const PROD_OLDER_14D: &str = r#"{"rulePriority":1,"description":"Expire images older than 14 days","selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}"#;

// --- AWS documentation examples -------------------------------------------------

#[test]
fn doc_filtering_on_image_age() {
    let r = repo(vec![
        image_ago("a", &["prod-1"], 20),
        image_ago("b", &["prod-2"], 10),
        image_ago("c", &["dev-1"], 30),
        image_ago("d", &["latest"], 1),
    ]);
    let p = run(&r, &policy(rules(PROD_OLDER_14D)));
    let o = outcome(&p);
    assert_eq!(o["a"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(o["b"], (Action::Keep, Reason::WithinRule(1)));
    assert_eq!(o["c"], (Action::Keep, Reason::NoRule));
    assert_eq!(o["d"].0, Action::Keep);
    assert_eq!((p.images_before, p.images_after), (4, 3));
}

#[test]
fn doc_filtering_on_image_count_keeps_one_untagged() {
    let r = repo(vec![
        image_ago("u1", &[], 5),
        image_ago("u2", &[], 4),
        image_ago("u3", &[], 3),
        image_ago("t", &["v1"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"description":"Keep only one untagged image, expire all others","selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["u1", "u2"]);
    assert_eq!(outcome(&p)["u3"], (Action::Keep, Reason::WithinRule(1)));
}

#[test]
fn doc_multiple_rules_higher_rule_selection_shields_image() {
    // A [beta-1, prod-1] 10d, B [beta-2, prod-2] 9d, C [beta-3] 8d.
    // Rule 1 (prod*, keep 1) marks A. Rule 2 (beta*, keep 1) would mark A and B, but A
    // is already marked and B was selected by rule 1: only A expires.
    let r = repo(vec![
        image_ago("a", &["beta-1", "prod-1"], 10),
        image_ago("b", &["beta-2", "prod-2"], 9),
        image_ago("c", &["beta-3"], 8),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    let o = outcome(&p);
    assert_eq!(o["a"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(o["b"], (Action::Keep, Reason::WithinRule(1)));
    assert_eq!(o["c"].0, Action::Keep);
}

#[test]
fn doc_multiple_rules_all_tags_in_both_rules() {
    // A, B, C all carry beta and prod tags: rule 1 marks A and B; rule 2 sees the same
    // three images and has nothing left to mark.
    let r = repo(vec![
        image_ago("a", &["alpha-1", "beta-1", "prod-1"], 10),
        image_ago("b", &["alpha-2", "beta-2", "prod-2"], 9),
        image_ago("c", &["alpha-3", "beta-3", "prod-3"], 8),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["alpha*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPatternList":["beta*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    let o = outcome(&p);
    assert_eq!(o["a"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(o["b"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(o["c"].0, Action::Keep);
}

fn alpha_beta_repo() -> RepoSnapshot {
    repo(vec![
        image_ago("a", &["alpha-1"], 12),
        image_ago("b", &["beta-1"], 11),
        image_ago("c", &["alpha-2", "beta-2"], 10),
        image_ago("d", &["alpha-3"], 4),
        image_ago("e", &["alpha-4", "beta-4"], 3),
        image_ago("f", &["x"], 1),
    ])
}

#[test]
fn doc_multiple_tags_in_one_rule_by_age() {
    // Only images with BOTH an alpha* and a beta* tag are selected; of those, only the
    // one older than 5 days expires.
    let p = run(
        &alpha_beta_repo(),
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["alpha*","beta*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":5},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["c"]);
    assert_eq!(outcome(&p)["e"], (Action::Keep, Reason::WithinRule(1)));
    assert_eq!(outcome(&p)["a"], (Action::Keep, Reason::NoRule));
}

#[test]
fn doc_multiple_tags_in_one_rule_by_count() {
    let p = run(
        &alpha_beta_repo(),
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["alpha","beta"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["c"]);
}

#[test]
fn doc_filtering_on_all_images_keeps_newest_only() {
    let r = repo(vec![
        image_ago("a", &["alpha-1"], 4),
        image_ago("b", &[], 3),
        image_ago("c", &["alpha-2"], 2),
        image_ago("d", &["git-abc"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["a", "b", "c"]);
}

#[test]
fn doc_filtering_on_all_images_with_tagged_rule_first() {
    // Rule 1 (alpha, keep 1) marks A and shields C; rule 2 (any, keep 1) sees A, B, C, D,
    // keeps D and can only mark B.
    let r = repo(vec![
        image_ago("a", &["alpha-1"], 4),
        image_ago("b", &[], 3),
        image_ago("c", &["alpha-2"], 2),
        image_ago("d", &["git-abc"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["alpha"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    let o = outcome(&p);
    assert_eq!(o["a"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(o["b"], (Action::Expire, Reason::Rule(2)));
    assert_eq!(o["c"], (Action::Keep, Reason::WithinRule(1)));
    assert_eq!(o["d"].0, Action::Keep);
}

#[test]
fn doc_untagged_by_age_and_tagged_by_count() {
    // The common pair: untagged older than 14 days expire; tagged keep the newest 2.
    let r = repo(vec![
        image_ago("u-old", &[], 20),
        image_ago("u-new", &[], 2),
        image_ago("v1", &["v1"], 30),
        image_ago("v2", &["v2"], 20),
        image_ago("v3", &["v3"], 10),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPatternList":["v*"],"countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["u-old", "v1"]);
}

// --- rule semantics ---------------------------------------------------------------

#[test]
fn image_is_expired_by_one_rule_only() {
    let r = repo(vec![
        image_ago("old", &["prod-1"], 30),
        image_ago("new", &["x"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}},
               {"rulePriority":9,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(outcome(&p)["old"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(p.images_after, 1);
}

#[test]
fn tagged_selection_shields_even_when_within_count() {
    // Rule 1 keeps the newest 5 prod images (all of them), so "any older than 7 days"
    // cannot expire them.
    let r = repo(vec![
        image_ago("p1", &["prod-1"], 30),
        image_ago("p2", &["prod-2"], 20),
        image_ago("n", &["x"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}"#,
        )),
    );
    assert!(expired(&p).is_empty());
}

#[test]
fn untagged_selection_shields_from_a_lower_any_rule() {
    // Rule 1 keeps up to 5 untagged units: u is within it, so rule 2 (any, older than
    // 7 days) cannot expire it, as the documentation says for every rule.
    let r = repo(vec![image_ago("u", &[], 30), image_ago("n", &["x"], 1)]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":5},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(outcome(&p)["u"], (Action::Keep, Reason::WithinRule(1)));
}

#[test]
fn untagged_units_outside_a_higher_untagged_count_expire_by_it_not_later() {
    let r = repo(vec![
        image_ago("u1", &[], 30),
        image_ago("u2", &[], 20),
        image_ago("n", &["x"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
               {"rulePriority":2,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}"#,
        )),
    );
    let o = outcome(&p);
    assert_eq!(o["u1"], (Action::Expire, Reason::Rule(1)));
    assert_eq!(o["u2"], (Action::Keep, Reason::WithinRule(1)));
}

#[test]
fn keep_rule_wins_over_lower_rules_and_quota() {
    let r = repo(vec![
        image_ago("rel", &["release-1"], 50),
        image_ago("old", &["b"], 40),
        image_ago("n", &["x"], 1),
    ]);
    let mut pol = policy(rules(
        r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["release-*"]},"action":{"type":"keep"}},
           {"rulePriority":2,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
    ));
    pol.max_images = Some(1);
    let p = run(&r, &pol);
    assert_eq!(outcome(&p)["rel"], (Action::Keep, Reason::KeepRule(1)));
    assert_eq!(outcome(&p)["old"], (Action::Expire, Reason::Rule(2)));
}

#[test]
fn since_image_pulled_uses_last_pull_then_push() {
    let mut pulled = image_ago("pulled", &["a"], 90);
    pulled.last_pulled = Some(now() - chrono::Duration::days(2));
    let never = image_ago("never", &["b"], 90);
    let r = repo(vec![pulled, never, image_ago("n", &["x"], 1)]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["never"]);
}

#[test]
fn keep_last_shortcut_keeps_n_tagged_and_ignores_untagged() {
    let r = repo(vec![
        image_ago("t1", &["a"], 5),
        image_ago("t2", &["b"], 4),
        image_ago("t3", &["c"], 3),
        image_ago("u", &[], 2),
    ]);
    let rules = with_shortcuts(Rules::default(), Some(2), None).expect("valid");
    let p = run(&r, &policy(rules));
    assert_eq!(expired(&p), vec!["t1"]);
}

#[test]
fn no_rules_expire_nothing() {
    let r = repo(vec![image_ago("a", &[], 50), image_ago("b", &["x"], 1)]);
    let p = run(&r, &policy(Rules::default()));
    assert!(expired(&p).is_empty());
    assert_eq!(outcome(&p)["a"], (Action::Keep, Reason::NoRule));
}

// --- units ------------------------------------------------------------------------

fn multi_arch(children_pushed_days_ago: i64) -> RepoSnapshot {
    let mut r = repo(vec![
        {
            let mut i = index("idx", &["v2"], 100 - children_pushed_days_ago);
            i.pushed_at = Some(now() - chrono::Duration::days(children_pushed_days_ago));
            i
        },
        image_ago("amd64", &[], children_pushed_days_ago),
        image_ago("arm64", &[], children_pushed_days_ago),
        image_ago("att", &[], children_pushed_days_ago),
        image_ago("loose", &[], 30),
    ]);
    r.children.insert(
        "sha256:idx".into(),
        vec![
            "sha256:amd64".into(),
            "sha256:arm64".into(),
            "sha256:att".into(),
        ],
    );
    r
}

#[test]
fn untagged_children_of_a_kept_index_survive_an_untagged_rule() {
    let p = run(
        &multi_arch(20),
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["loose"]);
    assert_eq!(p.images_after, 4);
}

#[test]
fn expired_index_takes_children_index_first() {
    let mut r = multi_arch(20);
    r.images.push(image_ago("newer", &["v3"], 1));
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(expired(&p), vec!["idx", "loose"]);
    let order = p.deletions();
    assert_eq!(order.len(), 5);
    let pos = |d: &str| order.iter().position(|(x, _)| x == d).expect("present");
    assert!(pos("sha256:idx") < pos("sha256:amd64"));
    assert!(pos("sha256:idx") < pos("sha256:att"));
    assert_eq!(p.images_after, 1);
}

#[test]
fn units_are_counted_not_manifests() {
    // keep 1 tagged: the index (4 manifests) is one unit, so the plain older image goes.
    let mut r = multi_arch(2);
    r.images.push(image_ago("older", &["v1"], 10));
    let rules = with_shortcuts(Rules::default(), Some(1), None).expect("valid");
    let p = run(&r, &policy(rules));
    assert_eq!(expired(&p), vec!["older"]);
}

fn signed_repo() -> RepoSnapshot {
    let hex_kept = "a".repeat(64);
    let hex_old = "b".repeat(64);
    let kept = EcrImage {
        digest: format!("sha256:{hex_kept}"),
        ..image_ago("k", &["v2"], 2)
    };
    let old = EcrImage {
        digest: format!("sha256:{hex_old}"),
        ..image_ago("o", &["v1"], 20)
    };
    repo(vec![
        kept,
        image_ago("sig-kept", &[&format!("sha256-{hex_kept}.sig")], 1),
        old,
        image_ago("sig-old", &[&format!("sha256-{hex_old}.sig")], 19),
    ])
}

#[test]
fn signature_of_kept_image_survives_and_of_expired_goes_with_it() {
    let rules = with_shortcuts(Rules::default(), Some(1), None).expect("valid");
    let p = run(&signed_repo(), &policy(rules));
    let deleted: Vec<String> = p.deletions().into_iter().map(|(d, _)| d).collect();
    assert_eq!(deleted.len(), 2);
    assert!(deleted.contains(&"sha256:sig-old".to_owned()));
    assert!(!deleted.contains(&"sha256:sig-kept".to_owned()));
    assert_eq!(p.units.len(), 2, "signatures are not units of their own");
}

#[test]
fn signature_tags_do_not_make_an_untagged_image_tagged() {
    let hex = "c".repeat(64);
    let subject = EcrImage {
        digest: format!("sha256:{hex}"),
        ..image_ago("s", &[], 20)
    };
    let r = repo(vec![
        subject,
        image_ago("sig", &[&format!("sha256-{hex}.sig")], 19),
        image_ago("n", &["x"], 1),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(
        p.images_after, 1,
        "the untagged subject and its signature both go"
    );
}

/// Three releases whose indexes all list the same (unchanged) arm64 child.
fn three_releases_sharing_a_child() -> RepoSnapshot {
    let mut r = repo(vec![
        {
            let mut i = index("r1", &["v1"], 0);
            i.pushed_at = Some(now() - chrono::Duration::days(30));
            i
        },
        {
            let mut i = index("r2", &["v2"], 0);
            i.pushed_at = Some(now() - chrono::Duration::days(20));
            i
        },
        {
            let mut i = index("r3", &["v3"], 0);
            i.pushed_at = Some(now() - chrono::Duration::days(10));
            i
        },
        image_ago("arm64", &[], 30),
        image_ago("amd1", &[], 30),
        image_ago("amd2", &[], 20),
        image_ago("amd3", &[], 10),
    ]);
    for (idx, amd) in [("r1", "amd1"), ("r2", "amd2"), ("r3", "amd3")] {
        r.children.insert(
            format!("sha256:{idx}"),
            vec![format!("sha256:{amd}"), "sha256:arm64".into()],
        );
    }
    r
}

#[test]
fn releases_sharing_a_child_expire_and_the_shared_child_stays() {
    let rules = with_shortcuts(Rules::default(), Some(1), None).expect("valid");
    let p = run(&three_releases_sharing_a_child(), &policy(rules));
    assert_eq!(expired(&p), vec!["r1", "r2"], "two releases expire");
    let deleted: Vec<String> = p.deletions().into_iter().map(|(d, _)| d).collect();
    assert_eq!(
        deleted,
        vec!["sha256:r1", "sha256:r2", "sha256:amd1", "sha256:amd2"],
        "indexes first, then their own children; the shared child stays"
    );
    assert_eq!(p.images_after, 3);
}

#[test]
fn a_shared_child_goes_with_the_last_index_that_lists_it() {
    let mut r = three_releases_sharing_a_child();
    r.images.push(image_ago("plain", &["v4"], 1));
    let rules = with_shortcuts(Rules::default(), Some(1), None).expect("valid");
    let p = run(&r, &policy(rules));
    assert_eq!(expired(&p), vec!["r1", "r2", "r3"]);
    let order = p.deletions();
    assert_eq!(order.len(), 7, "every manifest once");
    let pos = |d: &str| order.iter().position(|(x, _)| x == d).expect("present");
    for idx in ["sha256:r1", "sha256:r2", "sha256:r3"] {
        assert!(
            pos(idx) < pos("sha256:arm64"),
            "{idx} before the child it lists"
        );
    }
    assert_eq!(p.images_after, 1);
    assert_eq!(
        p.units.iter().map(|u| u.unit.image_count()).sum::<usize>(),
        8,
        "no manifest counted twice"
    );
}

#[test]
fn a_tagged_child_of_a_kept_index_is_not_deleted() {
    let mut r = repo(vec![
        index("idx", &["v2"], 0),
        image_ago("amd", &["v1-amd64"], 40),
    ]);
    r.images[0].pushed_at = Some(now() - chrono::Duration::days(2));
    r.children
        .insert("sha256:idx".into(), vec!["sha256:amd".into()]);
    let rules = rules(
        r#"{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["v1*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":7},"action":{"type":"expire"}}"#,
    );
    let p = run(&r, &policy(rules));
    assert!(p.deletions().is_empty());
    assert_eq!(
        outcome(&p)["amd"],
        (Action::Keep, Reason::ListedByKeptIndex("sha256:idx".into()))
    );
}

#[test]
fn an_untagged_plain_image_younger_than_an_hour_is_never_deleted_alone() {
    let mut young = image_ago("young", &[], 0);
    young.pushed_at = Some(now() - chrono::Duration::minutes(20));
    let mut hour = image_ago("hour", &[], 0);
    hour.pushed_at = Some(now() - chrono::Duration::minutes(61));
    let r = repo(vec![image_ago("n", &["v"], 0), young, hour]);
    let mut pol = keep_one();
    pol.max_images = Some(0);
    let p = run(&r, &pol);
    assert_eq!(expired(&p), vec!["hour"]);
    assert_eq!(outcome(&p)["young"], (Action::Keep, Reason::PendingChild));
}

#[test]
fn archived_images_are_reported_not_counted_and_their_children_stay() {
    let mut old_index = index("arch", &["v0"], 1);
    old_index.archived = true;
    let mut archived_plain = image_ago("gone", &["v-1"], 90);
    archived_plain.archived = true;
    let mut r = repo(vec![
        old_index,
        archived_plain,
        image_ago("child", &[], 60),
        image_ago("v1", &["v1"], 30),
        image_ago("v2", &["v2"], 20),
    ]);
    r.children
        .insert("sha256:arch".into(), vec!["sha256:child".into()]);
    let mut pol = keep_one();
    pol.max_images = Some(0);
    let p = run(&r, &pol);
    assert_eq!(p.archived, 2);
    assert_eq!(p.images_before, 3, "only active images count");
    assert_eq!(expired(&p), vec!["v1"]);
    assert_eq!(
        outcome(&p)["child"],
        (
            Action::Keep,
            Reason::ListedByKeptIndex("sha256:arch".into())
        ),
        "an archived index still lists it"
    );
    assert!(p.units.iter().all(|u| !u.unit.contains("sha256:arch")));
}

// --- protections ------------------------------------------------------------------

fn keep_one() -> Policy {
    policy(rules(
        r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}"#,
    ))
}

fn four_tagged() -> RepoSnapshot {
    repo(vec![
        image_ago("a", &["v1"], 40),
        image_ago("b", &["v2"], 30),
        image_ago("c", &["v3"], 20),
        image_ago("d", &["v4"], 10),
    ])
}

#[test]
fn ecs_tag_reference_is_resolved_to_digest() {
    let ecs = EcsUsage {
        references: ["123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v2".to_owned()].into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&four_tagged(), &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["a", "c"]);
    assert!(matches!(&outcome(&p)["b"].1, Reason::InUseByEcs(r) if r.ends_with("app:v2")));
}

#[test]
fn ecs_digest_reference_and_resolved_digest_protect() {
    let ecs = EcsUsage {
        references: ["123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:a".to_owned()].into(),
        digests: ["sha256:c".to_owned()].into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&four_tagged(), &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["b"]);
}

#[test]
fn ecs_reference_to_another_repository_does_not_protect() {
    let ecs = EcsUsage {
        references: [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/other:v2".to_owned(),
            "docker.io/library/app:v3".to_owned(),
        ]
        .into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&four_tagged(), &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["a", "b", "c"]);
}

#[test]
fn fips_dual_stack_and_china_host_forms_protect_by_tag() {
    let ecs = EcsUsage {
        references: [
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/app:v1".to_owned(),
            "123456789012.dkr-ecr.us-east-1.on.aws/app:v2".to_owned(),
        ]
        .into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&four_tagged(), &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["c"]);
    let mut cn = four_tagged();
    cn.repository.uri = "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app".into();
    let ecs = EcsUsage {
        references: ["123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:v3".to_owned()].into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&cn, &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["a", "b"]);
}

#[test]
fn a_tag_reference_in_another_account_or_region_does_not_protect() {
    let ecs = EcsUsage {
        references: [
            "210987654321.dkr.ecr.us-east-1.amazonaws.com/app:v1".to_owned(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/app:v2".to_owned(),
        ]
        .into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&four_tagged(), &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["a", "b", "c"]);
}

#[test]
fn a_pinned_digest_protects_with_its_chain_though_the_tag_moved() {
    // The service's revision pinned b's digest when `v2` pointed at it; the tag has
    // since moved to d. b stays, and its reason names the chain.
    let mut r = four_tagged();
    r.images[3].tags = vec!["v2".into()];
    r.images[1].tags.clear();
    let mut ecs = EcsUsage::default();
    ecs.add_digest_from(
        "sha256:b".into(),
        "service web, deployment web/123, pinned sha256:b".into(),
    );
    let p = plan_repository(&r, &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["a", "c"]);
    assert_eq!(
        outcome(&p)["b"].1,
        Reason::InUseByEcs("service web, deployment web/123, pinned sha256:b".into())
    );
    assert_eq!(
        outcome(&p)["b"].1.to_string(),
        "in use by ECS (service web, deployment web/123, pinned sha256:b)"
    );
}

#[test]
fn a_tag_reference_protects_with_its_chain() {
    let mut ecs = EcsUsage::default();
    ecs.add_image_from(
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:v1".into(),
        "task definition family web, one of its latest 5 ACTIVE revisions, task definition web:4",
    );
    let p = plan_repository(&four_tagged(), &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["b", "c"]);
    assert!(
        matches!(&outcome(&p)["a"].1, Reason::InUseByEcs(r) if r.starts_with("task definition family web") && r.ends_with("app:v1")),
        "{:?}",
        outcome(&p)["a"]
    );
}

#[test]
fn ecs_use_of_a_child_protects_the_whole_index() {
    let mut r = multi_arch(20);
    r.images.push(image_ago("newer", &["v3"], 1));
    let ecs = EcsUsage {
        digests: ["sha256:arm64".to_owned()].into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&r, &ecs, &keep_one(), now());
    assert_eq!(expired(&p), vec!["loose"]);
}

#[test]
fn protect_tag_glob_keeps_unit() {
    let mut pol = keep_one();
    let mut b = globset::GlobSetBuilder::new();
    b.add(globset::Glob::new("v1*").expect("glob"));
    pol.protect_tag_set = b.build().expect("set");
    pol.protect_tags = vec!["v1*".into()];
    let p = run(&four_tagged(), &pol);
    assert_eq!(
        outcome(&p)["a"],
        (Action::Keep, Reason::ProtectedTag("v1*".into()))
    );
    assert_eq!(expired(&p), vec!["b", "c"]);
}

#[test]
fn min_age_keeps_young_units() {
    let mut pol = keep_one();
    pol.min_age = Duration::from_secs(25 * 86_400);
    let p = run(&four_tagged(), &pol);
    assert_eq!(expired(&p), vec!["a", "b"]);
    assert_eq!(outcome(&p)["c"], (Action::Keep, Reason::YoungerThanMinAge));
}

#[test]
fn newest_unit_is_always_kept() {
    let p = run(
        &four_tagged(),
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(outcome(&p)["d"], (Action::Keep, Reason::Newest));
    assert_eq!(p.images_after, 1);
}

// --- quota and safety ----------------------------------------------------------------

#[test]
fn quota_mode_expires_oldest_unprotected_until_under_watermark() {
    let mut pol = policy(Rules::default());
    pol.max_images = Some(2);
    let ecs = EcsUsage {
        digests: ["sha256:a".to_owned()].into(),
        ..EcsUsage::default()
    };
    let p = plan_repository(&four_tagged(), &ecs, &pol, now());
    assert_eq!(expired(&p), vec!["b", "c"]);
    assert_eq!(outcome(&p)["b"], (Action::Expire, Reason::Quota(2)));
    assert_eq!(p.images_after, 2);
}

#[test]
fn quota_mode_counts_manifests_of_units() {
    let mut r = multi_arch(20); // index unit of 4 images + loose
    r.images.push(image_ago("newer", &["v3"], 1));
    let mut pol = policy(Rules::default());
    pol.max_images = Some(3);
    let p = run(&r, &pol);
    assert_eq!(expired(&p), vec!["idx", "loose"]);
    assert_eq!(p.images_after, 1);
}

#[test]
fn quota_mode_does_nothing_under_watermark() {
    let mut pol = policy(Rules::default());
    pol.max_images = Some(4);
    assert!(expired(&run(&four_tagged(), &pol)).is_empty());
}

#[test]
fn safety_cap_refuses_and_force_overrides() {
    let mut pol = keep_one();
    pol.max_delete_percent = 50;
    let p = run(&four_tagged(), &pol);
    assert_eq!(
        p.refused,
        Some(Refusal {
            deleting: 3,
            of: 4,
            max_percent: 50
        })
    );
    pol.force = true;
    assert!(run(&four_tagged(), &pol).refused.is_none());
}

#[test]
fn safety_cap_allows_exactly_the_limit() {
    let mut pol = policy(rules(
        r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}"#,
    ));
    pol.max_delete_percent = 50;
    assert!(run(&four_tagged(), &pol).refused.is_none());
}

#[test]
fn empty_repository_plans_nothing() {
    let p = run(&repo(vec![]), &keep_one());
    assert_eq!((p.images_before, p.images_after, p.units.len()), (0, 0, 0));
    assert!(p.refused.is_none());
}

#[test]
fn plan_covers_every_repository() {
    let snapshot = Snapshot {
        repositories: vec![four_tagged(), repo(vec![])],
        ecs: EcsUsage::default(),
    };
    assert_eq!(plan(&snapshot, &keep_one(), now()).repositories.len(), 2);
}

#[test]
fn quota_mode_never_takes_young_or_newest_units() {
    let mut pol = policy(Rules::default());
    pol.max_images = Some(1);
    pol.min_age = Duration::from_secs(15 * 86_400);
    let p = run(&four_tagged(), &pol);
    // a (40d) and b (30d) may go; c (20d) too; d is newest. Watermark 1 cannot be reached
    // without d, so the plan stops at what is allowed.
    assert_eq!(expired(&p), vec!["a", "b", "c"]);
    pol.min_age = Duration::from_secs(25 * 86_400);
    let p = run(&four_tagged(), &pol);
    assert_eq!(expired(&p), vec!["a", "b"]);
    assert_eq!(outcome(&p)["c"], (Action::Keep, Reason::NoRule));
}

#[test]
fn ecs_protection_of_an_old_signed_image_keeps_its_signature() {
    let ecs = EcsUsage {
        digests: [format!("sha256:{}", "b".repeat(64))].into(),
        ..EcsUsage::default()
    };
    let rules = with_shortcuts(Rules::default(), Some(1), None).expect("valid");
    let p = plan_repository(&signed_repo(), &ecs, &policy(rules), now());
    assert!(p.deletions().is_empty(), "{:?}", p.deletions());
}

#[test]
fn protect_tag_matches_a_signature_tag_too() {
    let mut pol = policy(with_shortcuts(Rules::default(), Some(1), None).expect("valid"));
    let mut b = globset::GlobSetBuilder::new();
    b.add(globset::Glob::new("*.sig").expect("glob"));
    pol.protect_tag_set = b.build().expect("set");
    pol.protect_tags = vec!["*.sig".into()];
    let p = run(&signed_repo(), &pol);
    assert!(p.deletions().is_empty());
}

#[test]
fn image_without_push_time_is_young_not_ancient() {
    let unknown = || EcrImage {
        pushed_at: None,
        ..image_ago("unknown", &["v0"], 90)
    };
    let r = repo(vec![
        unknown(),
        image_ago("old", &["v1"], 60),
        image_ago("new", &["v2"], 50),
    ]);
    let p = run(
        &r,
        &policy(rules(
            r#"{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePushed","countUnit":"days","countNumber":30},"action":{"type":"expire"}}"#,
        )),
    );
    assert_eq!(
        outcome(&p)["unknown"],
        (Action::Keep, Reason::WithinRule(1))
    );
    assert_eq!(expired(&p), vec!["new", "old"]);
    // Pushed "now": younger than any min age.
    let mut pol = keep_one();
    pol.min_age = Duration::from_secs(3600);
    let p = run(&repo(vec![unknown(), image_ago("later", &["v3"], 0)]), &pol);
    assert_eq!(
        outcome(&p)["unknown"],
        (Action::Keep, Reason::YoungerThanMinAge)
    );
}

// --- how reasons read (the one Display test; the other cases assert variants) ----

#[test]
fn reasons_and_refusal_read_as_the_spec_shows_them() {
    let shown: Vec<String> = [
        Reason::Rule(3),
        Reason::Quota(9000),
        Reason::InUseByEcs("repo:v1".into()),
        Reason::ProtectedTag("release-*".into()),
        Reason::Newest,
        Reason::YoungerThanMinAge,
        Reason::KeepRule(1),
        Reason::WithinRule(2),
        Reason::NoRule,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(
        shown,
        [
            "rule 3",
            "quota watermark 9000 images",
            "in use by ECS (repo:v1)",
            "protected tag release-*",
            "newest in repository",
            "younger than min-age",
            "keep rule 1",
            "within rule 2",
            "no rule selects it",
        ]
    );
    let refusal = Refusal {
        deleting: 8,
        of: 10,
        max_percent: 50,
    };
    assert_eq!(
        refusal.to_string(),
        "refused: the plan deletes 8 of 10 images, more than --max-delete-percent 50%; review the plan, then raise --max-delete-percent or pass --force"
    );
}
