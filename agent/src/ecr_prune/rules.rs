//! ECR lifecycle-policy rules: parsing (policy JSON, or `[ecr] rules` from TOML),
//! validation as ECR itself validates a policy, and the shortcuts `--keep-last` /
//! `--expire-untagged-after` turned into ordinary rules. Errors name the rule and field.
//! Extensions beyond ECR: action `keep`, and `sinceImagePulled` with `expire`.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

/// Which images a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TagStatus {
    Tagged,
    Untagged,
    Any,
}

/// How a tagged rule filters tags: every entry must be matched by some tag of the image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum TagFilter {
    /// `tagPrefixList`.
    Prefixes(Vec<String>),
    /// `tagPatternList` (`*` is the only wildcard).
    Patterns(Vec<String>),
}

impl TagFilter {
    /// ECR semantics: the image is selected only if each listed prefix/pattern is
    /// matched by at least one of its tags.
    pub fn matches(&self, tags: &[String]) -> bool {
        match self {
            Self::Prefixes(list) => list
                .iter()
                .all(|p| tags.iter().any(|t| t.starts_with(p.as_str()))),
            Self::Patterns(list) => list
                .iter()
                .all(|p| tags.iter().any(|t| wildcard_match(p, t))),
        }
    }
}

/// `*` matches any run of characters (including none); everything else is literal.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

/// The age or count criterion of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Criterion {
    /// Keep the newest N selected units, expire the rest.
    ImageCountMoreThan(u32),
    /// Expire selected units pushed longer ago than this.
    SinceImagePushed(#[serde(serialize_with = "ser_duration")] Duration),
    /// Expire selected units not pulled for this long (push time when never pulled).
    SinceImagePulled(#[serde(serialize_with = "ser_duration")] Duration),
    /// `keep` rules select without a criterion.
    None,
}

/// Serialize a duration as users write it (`14days`), for rules and settings alike.
pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::config::value::format_duration(*d))
}

/// Keep or expire: what a rule does with the units it picks, and so also what the plan
/// does with each unit (`planner::UnitPlan::action`). The one action enum of `ecr-prune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Expire,
    Keep,
}

/// One validated rule.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rule {
    pub priority: u32,
    pub description: Option<String>,
    pub tag_status: TagStatus,
    pub tag_filter: Option<TagFilter>,
    pub criterion: Criterion,
    pub action: Action,
}

impl Rule {
    /// Does the rule's tag selection (tagStatus + tag lists) pick a unit with `tags`?
    pub fn selects(&self, tags: &[String]) -> bool {
        match self.tag_status {
            TagStatus::Any => true,
            TagStatus::Untagged => tags.is_empty(),
            TagStatus::Tagged => {
                !tags.is_empty() && self.tag_filter.as_ref().is_none_or(|f| f.matches(tags))
            }
        }
    }
}

/// Validated rules, sorted by priority (lowest number first = evaluated first).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct Rules(pub Vec<Rule>);

/// A policy that failed ECR's validation: where it came from, which rule and field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    pub message: String,
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    rules: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawRule {
    rule_priority: Option<serde_json::Value>,
    description: Option<String>,
    selection: Option<RawSelection>,
    action: Option<RawAction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSelection {
    tag_status: Option<String>,
    tag_prefix_list: Option<Vec<String>>,
    tag_pattern_list: Option<Vec<String>>,
    storage_class: Option<String>,
    count_type: Option<String>,
    count_unit: Option<String>,
    count_number: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAction {
    #[serde(rename = "type")]
    kind: Option<String>,
    target_storage_class: Option<String>,
}

/// Parse a lifecycle-policy JSON document (`{"rules": [...]}`) as ECR accepts it.
pub fn parse_policy_json(text: &str, origin: &str) -> Result<Rules, RuleError> {
    let raw: RawPolicy = serde_json::from_str(text).map_err(|e| RuleError {
        message: format!("{origin}: not a lifecycle policy ({e}); expected {{\"rules\": [...]}}"),
    })?;
    parse_rule_values(&raw.rules, origin)
}

/// Parse rules given as JSON values (the policy's `rules`, or `[ecr] rules` from TOML).
pub fn parse_rule_values(values: &[serde_json::Value], origin: &str) -> Result<Rules, RuleError> {
    if values.is_empty() {
        return Err(RuleError {
            message: format!("{origin}: `rules` is empty; give at least one rule"),
        });
    }
    let mut rules = Vec::with_capacity(values.len());
    for (index, value) in values.iter().enumerate() {
        let label = format!("{origin}: rule #{}", index + 1);
        let raw: RawRule = serde_json::from_value(value.clone()).map_err(|e| RuleError {
            message: format!("{label}: {e}"),
        })?;
        rules.push(validate_rule(raw, &label)?);
    }
    validate_set(rules, origin)
}

fn field_error(label: &str, field: &str, what: &str) -> RuleError {
    RuleError {
        message: format!("{label}: {field} {what}"),
    }
}

fn positive_int(value: &serde_json::Value, label: &str, field: &str) -> Result<u32, RuleError> {
    value
        .as_u64()
        .filter(|n| *n >= 1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            field_error(
                label,
                field,
                &format!("must be a positive integer, got {value}"),
            )
        })
}

/// One rule as ECR validates it. The checks run in a fixed order (priority, selection,
/// action, storage class, tag status, tag lists, count), so a rule with several faults
/// always reports the same one first.
fn validate_rule(raw: RawRule, label: &str) -> Result<Rule, RuleError> {
    let priority = positive_int(
        raw.rule_priority
            .as_ref()
            .ok_or_else(|| field_error(label, "rulePriority", "is required"))?,
        label,
        "rulePriority",
    )?;
    let label = format!("{label} (rulePriority {priority})");
    let label = label.as_str();
    let mut sel = raw
        .selection
        .ok_or_else(|| field_error(label, "selection", "is required"))?;
    let action = rule_action(raw.action.as_ref(), label)?;
    check_storage_class(&sel, label)?;
    let tag_status = tag_status(&sel, label)?;
    let tag_filter = tag_filter(
        tag_status,
        sel.tag_prefix_list.take(),
        sel.tag_pattern_list.take(),
        label,
    )?;
    let criterion = match action {
        Action::Keep => keep_criterion(&sel, label)?,
        Action::Expire => expire_criterion(&sel, label)?,
    };
    Ok(Rule {
        priority,
        description: raw.description,
        tag_status,
        tag_filter,
        criterion,
        action,
    })
}

/// `action.type` (and the archive-only `action.targetStorageClass`).
fn rule_action(raw: Option<&RawAction>, label: &str) -> Result<Action, RuleError> {
    let action = match raw
        .and_then(|a| a.kind.as_deref())
        .ok_or_else(|| field_error(label, "action.type", "is required (\"expire\" or \"keep\")"))?
    {
        "expire" => Action::Expire,
        "keep" => Action::Keep,
        "transition" => return Err(field_error(
            label,
            "action.type",
            "\"transition\" (archiving) is not supported by shipshape; use \"expire\" or \"keep\"",
        )),
        other => {
            return Err(field_error(
                label,
                "action.type",
                &format!("{other:?} is not one of \"expire\", \"keep\""),
            ))
        }
    };
    if raw.is_some_and(|a| a.target_storage_class.is_some()) {
        return Err(field_error(
            label,
            "action.targetStorageClass",
            "is only valid with action \"transition\", which shipshape does not support",
        ));
    }
    Ok(action)
}

/// `selection.storageClass`: only the standard class (archived images are out of scope).
fn check_storage_class(sel: &RawSelection, label: &str) -> Result<(), RuleError> {
    match sel.storage_class.as_deref() {
        Some(class) if class != "standard" => Err(field_error(
            label,
            "selection.storageClass",
            &format!("{class:?} is not supported; only \"standard\""),
        )),
        _ => Ok(()),
    }
}

/// `selection.tagStatus`.
fn tag_status(sel: &RawSelection, label: &str) -> Result<TagStatus, RuleError> {
    match sel.tag_status.as_deref().ok_or_else(|| {
        field_error(
            label,
            "selection.tagStatus",
            "is required (tagged, untagged or any)",
        )
    })? {
        "tagged" => Ok(TagStatus::Tagged),
        "untagged" => Ok(TagStatus::Untagged),
        "any" => Ok(TagStatus::Any),
        other => Err(field_error(
            label,
            "selection.tagStatus",
            &format!("{other:?} is not one of tagged, untagged, any"),
        )),
    }
}

/// `selection.tagPrefixList` / `selection.tagPatternList`: exactly one of them, and
/// only (and always) with tagStatus "tagged".
fn tag_filter(
    tag_status: TagStatus,
    prefixes: Option<Vec<String>>,
    patterns: Option<Vec<String>>,
    label: &str,
) -> Result<Option<TagFilter>, RuleError> {
    let given = match (prefixes, patterns) {
        (Some(_), Some(_)) => {
            return Err(field_error(
                label,
                "selection.tagPrefixList",
                "and selection.tagPatternList cannot both be given",
            ))
        }
        (Some(list), None) => Some(("selection.tagPrefixList", TagFilter::Prefixes(list))),
        (None, Some(list)) => Some(("selection.tagPatternList", TagFilter::Patterns(list))),
        (None, None) => None,
    };
    match (tag_status, given) {
        (TagStatus::Tagged, None) => Err(field_error(
            label,
            "selection.tagPrefixList",
            "or selection.tagPatternList is required when tagStatus is \"tagged\"",
        )),
        (TagStatus::Tagged, Some((field, filter))) => {
            check_tag_list(&filter, field, label)?;
            Ok(Some(filter))
        }
        (_, Some((field, _))) => Err(field_error(
            label,
            field,
            "can only be used when tagStatus is \"tagged\"",
        )),
        (_, None) => Ok(None),
    }
}

/// A tag list is non-empty, has no empty entry, and a pattern has at most 4 wildcards.
fn check_tag_list(filter: &TagFilter, field: &str, label: &str) -> Result<(), RuleError> {
    let list = match filter {
        TagFilter::Prefixes(l) | TagFilter::Patterns(l) => l,
    };
    if list.is_empty() {
        return Err(field_error(label, field, "must not be empty"));
    }
    for entry in list {
        if entry.is_empty() {
            return Err(field_error(
                label,
                field,
                "must not contain an empty string",
            ));
        }
        if matches!(filter, TagFilter::Patterns(_)) && entry.matches('*').count() > 4 {
            return Err(field_error(
                label,
                field,
                &format!("entry {entry:?} has more than 4 wildcards (*)"),
            ));
        }
    }
    Ok(())
}

/// A `keep` rule keeps everything it selects: no count fields.
fn keep_criterion(sel: &RawSelection, label: &str) -> Result<Criterion, RuleError> {
    if sel.count_type.is_some() || sel.count_number.is_some() || sel.count_unit.is_some() {
        return Err(field_error(
            label,
            "selection.countType",
            "must be omitted for action \"keep\" (it keeps everything it selects)",
        ));
    }
    Ok(Criterion::None)
}

/// An `expire` rule's countType, countNumber and countUnit.
fn expire_criterion(sel: &RawSelection, label: &str) -> Result<Criterion, RuleError> {
    let count_type = sel.count_type.as_deref().ok_or_else(|| {
        field_error(
            label,
            "selection.countType",
            "is required (imageCountMoreThan, sinceImagePushed or sinceImagePulled)",
        )
    })?;
    let number = positive_int(
        sel.count_number
            .as_ref()
            .ok_or_else(|| field_error(label, "selection.countNumber", "is required"))?,
        label,
        "selection.countNumber",
    )?;
    match count_type {
        "imageCountMoreThan" => {
            if sel.count_unit.is_some() {
                return Err(field_error(
                    label,
                    "selection.countUnit",
                    "must be omitted with countType imageCountMoreThan",
                ));
            }
            Ok(Criterion::ImageCountMoreThan(number))
        }
        "sinceImagePushed" => Ok(Criterion::SinceImagePushed(days(
            sel, number, count_type, label,
        )?)),
        "sinceImagePulled" => Ok(Criterion::SinceImagePulled(days(
            sel, number, count_type, label,
        )?)),
        "sinceImageTransitioned" => Err(field_error(
            label,
            "selection.countType",
            "sinceImageTransitioned (archive) is not supported by shipshape",
        )),
        other => Err(field_error(
            label,
            "selection.countType",
            &format!(
                "{other:?} is not one of imageCountMoreThan, sinceImagePushed, sinceImagePulled"
            ),
        )),
    }
}

/// `countNumber` days, for the age criteria (`countUnit` must be "days").
fn days(
    sel: &RawSelection,
    number: u32,
    count_type: &str,
    label: &str,
) -> Result<Duration, RuleError> {
    match sel.count_unit.as_deref() {
        Some("days") => Ok(Duration::from_secs(u64::from(number) * 86_400)),
        Some(other) => Err(field_error(
            label,
            "selection.countUnit",
            &format!("{other:?} is not valid; only \"days\""),
        )),
        None => Err(field_error(
            label,
            "selection.countUnit",
            &format!("is required (\"days\") with countType {count_type}"),
        )),
    }
}

/// The checks ECR makes across rules: unique priorities, one untagged rule, `any`
/// evaluated last, no two rules with the same tag list.
fn validate_set(mut rules: Vec<Rule>, origin: &str) -> Result<Rules, RuleError> {
    rules.sort_by_key(|r| r.priority);
    let err = |message: String| RuleError {
        message: format!("{origin}: {message}"),
    };
    for pair in rules.windows(2) {
        if pair[0].priority == pair[1].priority {
            return Err(err(format!(
                "rule rulePriority {} appears twice; rulePriority must be unique",
                pair[0].priority
            )));
        }
    }
    let untagged: Vec<u32> = rules
        .iter()
        .filter(|r| r.tag_status == TagStatus::Untagged)
        .map(|r| r.priority)
        .collect();
    if untagged.len() > 1 {
        return Err(err(format!(
            "rules with rulePriority {untagged:?} all select untagged images; only one rule may have tagStatus \"untagged\""
        )));
    }
    let max = rules.last().map(|r| r.priority).unwrap_or_default();
    if let Some(any) = rules.iter().find(|r| r.tag_status == TagStatus::Any) {
        if any.priority != max {
            return Err(err(format!(
                "rule rulePriority {}: selection.tagStatus \"any\" must have the highest rulePriority (highest is {max})",
                any.priority
            )));
        }
    }
    let mut seen: BTreeSet<(bool, Vec<String>)> = BTreeSet::new();
    for rule in &rules {
        if let Some(filter) = &rule.tag_filter {
            let key = match filter {
                TagFilter::Prefixes(l) => (true, sorted(l)),
                TagFilter::Patterns(l) => (false, sorted(l)),
            };
            if !seen.insert(key) {
                return Err(err(format!(
                    "rule rulePriority {}: its tag list repeats another rule's; each rule needs a unique set of tag prefixes/patterns",
                    rule.priority
                )));
            }
        }
    }
    Ok(Rules(rules))
}

fn sorted(list: &[String]) -> Vec<String> {
    let mut v = list.to_vec();
    v.sort();
    v.dedup();
    v
}

/// Append the shortcut rules after `base` (they are evaluated after the policy's
/// own rules), then validate the whole set again.
pub fn with_shortcuts(
    base: Rules,
    keep_last: Option<u32>,
    expire_untagged_after: Option<Duration>,
) -> Result<Rules, RuleError> {
    let mut rules = base.0;
    let mut next = rules.iter().map(|r| r.priority).max().unwrap_or(0);
    if let Some(after) = expire_untagged_after {
        next += 1;
        rules.push(Rule {
            priority: next,
            description: Some("--expire-untagged-after".to_owned()),
            tag_status: TagStatus::Untagged,
            tag_filter: None,
            criterion: Criterion::SinceImagePushed(after),
            action: Action::Expire,
        });
    }
    if let Some(n) = keep_last {
        if n == 0 {
            return Err(RuleError {
                message: "--keep-last must be at least 1".to_owned(),
            });
        }
        next += 1;
        rules.push(Rule {
            priority: next,
            description: Some("--keep-last".to_owned()),
            tag_status: TagStatus::Tagged,
            tag_filter: Some(TagFilter::Patterns(vec!["*".to_owned()])),
            criterion: Criterion::ImageCountMoreThan(n),
            action: Action::Expire,
        });
    }
    validate_set(
        rules,
        "shortcut rules (--keep-last/--expire-untagged-after) with the policy",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Rules, RuleError> {
        parse_policy_json(json, "policy.json")
    }

    fn err(json: &str) -> String {
        match parse(json) {
            Ok(r) => panic!("expected an error, got {r:?}"),
            Err(e) => e.message,
        }
    }

    #[test]
    fn wildcard_matching() {
        assert!(wildcard_match("prod*", "prod-1"));
        assert!(wildcard_match("prod*", "prod"));
        assert!(!wildcard_match("prod*", "xprod"));
        assert!(wildcard_match("*web", "prod-web"));
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("a*b*c", "aXbYc"));
        assert!(!wildcard_match("a*b*c", "aXcYb"));
        assert!(wildcard_match("exact", "exact"));
        assert!(!wildcard_match("exact", "exactly"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }

    #[test]
    fn prefix_list_needs_every_prefix() {
        let f = TagFilter::Prefixes(vec!["prod".into(), "beta".into()]);
        assert!(f.matches(&["prod-1".into(), "beta-1".into()]));
        assert!(!f.matches(&["prod-1".into()]));
    }

    #[test]
    fn parses_documented_age_example() {
        let rules = parse(r#"{"rules":[{"rulePriority":1,"description":"Expire images older than 14 days","selection":{"tagStatus":"tagged","tagPatternList":["prod*"],"countType":"sinceImagePushed","countUnit":"days","countNumber":14},"action":{"type":"expire"}}]}"#).unwrap();
        assert_eq!(rules.0.len(), 1);
        assert_eq!(
            rules.0[0].criterion,
            Criterion::SinceImagePushed(Duration::from_secs(14 * 86_400))
        );
        assert_eq!(
            rules.0[0].tag_filter,
            Some(TagFilter::Patterns(vec!["prod*".into()]))
        );
    }

    #[test]
    fn sorts_by_priority() {
        let rules = parse(r#"{"rules":[
            {"rulePriority":5,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}},
            {"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).unwrap();
        assert_eq!(
            rules.0.iter().map(|r| r.priority).collect::<Vec<_>>(),
            vec![1, 5]
        );
    }

    #[test]
    fn rejects_two_untagged_rules() {
        let m = err(r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}"#);
        assert!(
            m.contains("only one rule may have tagStatus \"untagged\""),
            "{m}"
        );
    }

    #[test]
    fn rejects_any_not_last() {
        let m = err(r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#);
        assert!(
            m.contains("rulePriority 1") && m.contains("highest rulePriority"),
            "{m}"
        );
    }

    #[test]
    fn rejects_duplicate_priority() {
        let m = err(r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["b"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#);
        assert!(m.contains("must be unique"), "{m}");
    }

    #[test]
    fn rejects_tagged_without_list() {
        let m = err(
            r#"{"rules":[{"rulePriority":3,"selection":{"tagStatus":"tagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(
            m.contains("rule #1 (rulePriority 3)") && m.contains("tagPatternList is required"),
            "{m}"
        );
    }

    #[test]
    fn rejects_both_lists() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["a"],"tagPatternList":["a*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("cannot both"), "{m}");
    }

    #[test]
    fn rejects_list_on_untagged() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(
            m.contains("selection.tagPrefixList can only be used"),
            "{m}"
        );
    }

    #[test]
    fn rejects_count_unit_with_count_type_count() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("selection.countUnit must be omitted"), "{m}");
    }

    #[test]
    fn rejects_missing_or_bad_count_unit() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("selection.countUnit is required"), "{m}");
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countUnit":"hours","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("\"hours\" is not valid"), "{m}");
    }

    #[test]
    fn rejects_zero_or_negative_count() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":0},"action":{"type":"expire"}}]}"#,
        );
        assert!(
            m.contains("selection.countNumber must be a positive integer"),
            "{m}"
        );
        let m = err(
            r#"{"rules":[{"rulePriority":-1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("rulePriority must be a positive integer"), "{m}");
    }

    #[test]
    fn rejects_unknown_fields_and_values() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1,"bogus":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("rule #1") && m.contains("bogus"), "{m}");
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"sometimes","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("selection.tagStatus"), "{m}");
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"transition","targetStorageClass":"archive"}}]}"#,
        );
        assert!(m.contains("action.type") && m.contains("transition"), "{m}");
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImageTransitioned","countUnit":"days","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("selection.countType"), "{m}");
    }

    #[test]
    fn rejects_too_many_wildcards_and_duplicate_lists() {
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["a*b*c*d*e*f"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
        );
        assert!(m.contains("more than 4 wildcards"), "{m}");
        let m = err(r#"{"rules":[
            {"rulePriority":1,"selection":{"tagStatus":"tagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
            {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPrefixList":["a"],"countType":"imageCountMoreThan","countNumber":3},"action":{"type":"expire"}}]}"#);
        assert!(m.contains("unique set"), "{m}");
    }

    #[test]
    fn rejects_empty_and_malformed() {
        assert!(err(r#"{"rules":[]}"#).contains("empty"));
        assert!(err("not json").contains("not a lifecycle policy"));
        assert!(err(r#"{"rules":[],"extra":1}"#).contains("extra"));
    }

    #[test]
    fn keep_action_extension() {
        let rules = parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["release-*"]},"action":{"type":"keep"}}]}"#).unwrap();
        assert_eq!(rules.0[0].action, Action::Keep);
        let m = err(
            r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"tagged","tagPatternList":["release-*"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"keep"}}]}"#,
        );
        assert!(m.contains("must be omitted for action \"keep\""), "{m}");
    }

    #[test]
    fn since_image_pulled_extension() {
        let rules = parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"any","countType":"sinceImagePulled","countUnit":"days","countNumber":30},"action":{"type":"expire"}}]}"#).unwrap();
        assert_eq!(
            rules.0[0].criterion,
            Criterion::SinceImagePulled(Duration::from_secs(30 * 86_400))
        );
    }

    #[test]
    fn toml_rules_parse_like_json() {
        let toml_text = r#"
            rules = [
              { rulePriority = 1, selection = { tagStatus = "untagged", countType = "sinceImagePushed", countUnit = "days", countNumber = 7 }, action = { type = "expire" } },
            ]
        "#;
        #[derive(Deserialize)]
        struct T {
            rules: Vec<serde_json::Value>,
        }
        let t: T = toml::from_str(toml_text).unwrap();
        let rules = parse_rule_values(&t.rules, "[ecr] rules").unwrap();
        assert_eq!(rules.0[0].tag_status, TagStatus::Untagged);
    }

    #[test]
    fn shortcuts_become_rules_after_the_policy() {
        let rules =
            with_shortcuts(Rules::default(), Some(3), Some(Duration::from_secs(3600))).unwrap();
        assert_eq!(rules.0.len(), 2);
        assert_eq!(rules.0[0].tag_status, TagStatus::Untagged);
        assert_eq!(rules.0[1].criterion, Criterion::ImageCountMoreThan(3));
        assert!(with_shortcuts(Rules::default(), Some(0), None).is_err());
    }

    #[test]
    fn shortcut_conflicting_with_policy_is_rejected() {
        let base = parse(r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#).unwrap();
        let e = with_shortcuts(base, None, Some(Duration::from_secs(60))).unwrap_err();
        assert!(e.message.contains("only one rule"), "{}", e.message);
    }
}
