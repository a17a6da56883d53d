//! `[ecr]` and the `ecr-prune` flags: one options struct filled by clap and by serde,
//! resolved (flags over file over the defaults below: min age 24h, max delete 50%,
//! protect all ECS clusters, concurrency 4, 5 task definition revisions per family) into validated `Settings`. Every error is an
//! `Invalid` naming the key both ways (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use super::rules::{self, Rules};
use crate::config::layer::{Invalid, Key, Layered};
use crate::config::value::{ser_duration, with_default, HumanDuration, MaxImages, Shard};

pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_DELETE_PERCENT: u8 = 50;
pub const DEFAULT_CONCURRENCY: usize = 4;
/// ACTIVE revisions kept per task family in use (rollback targets).
pub const DEFAULT_KEEP_TASK_DEFINITIONS: u32 = 5;
/// `--apply --plan` refuses a plan file older than this.
pub const DEFAULT_PLAN_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// ECR's default images-per-repository quota, used when Service Quotas can't be read.
pub const DEFAULT_IMAGES_QUOTA: u64 = 10_000;
/// `--max-images auto` keeps repositories under this share of the quota.
pub const AUTO_WATERMARK_PERCENT: u64 = 90;

/// Quota mode (`N` or `auto`).
pub type MaxImagesSetting = MaxImages;

const SECTION: &str = "ecr";
const REPOSITORY: Key = Key::new(SECTION, "repository");
const POLICY: Key = Key::new(SECTION, "policy");
const RULES: Key = Key::file_only(SECTION, "rules");
const KEEP_LAST: Key = Key::new(SECTION, "keep_last");
const PROTECT_TAG: Key = Key::new(SECTION, "protect_tag");
const MAX_DELETE_PERCENT: Key = Key::new(SECTION, "max_delete_percent");
const CONCURRENCY: Key = Key::new(SECTION, "concurrency");
const USAGE_ROLE: Key = Key::new(SECTION, "usage_role");
const USAGE_REGION: Key = Key::new(SECTION, "usage_region");

/// An AWS region name: lower-case words joined by `-`, the last a number
/// (`us-east-1`, `us-gov-west-1`, `cn-north-1`, `eusc-de-east-1`). A well-formed name
/// that is not a region (or not enabled for the account) is found out when it is read,
/// and fails that run closed.
fn is_region(name: &str) -> bool {
    let parts: Vec<&str> = name.split('-').collect();
    let Some((number, words)) = parts.split_last() else {
        return false;
    };
    words.len() >= 2
        && words
            .iter()
            .all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:<partition>:iam::<12 digits>:role/<path/name>`.
fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if partition.starts_with("aws")
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.strip_prefix("role/").is_some_and(|n| !n.is_empty()))
}

/// The account of a role ARN (`arn:aws:iam::210987654321:role/x` → `210987654321`).
pub fn role_account(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or(arn)
}

const PLAN: Key = Key::new(SECTION, "plan");

/// Which ECS clusters' usage protects images.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectClusters {
    All,
    Named(Vec<String>),
}

/// `[ecr]` in the file and the flags of `ecr-prune`.
#[derive(Debug, Default, Clone, PartialEq, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EcrOptions {
    /// Delete (without it, only plan).
    #[arg(long)]
    pub apply: bool,
    #[arg(long, value_name = "NAME|GLOB", help = with_default(
        "Repository name or glob; repeatable", "all repositories"))]
    pub repository: Vec<String>,
    /// ECR lifecycle-policy JSON file.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// File only: lifecycle-policy rules written in TOML, same shape as the policy's `rules`.
    #[arg(skip)]
    pub rules: Option<Vec<serde_json::Value>>,
    /// Shortcut rule: keep the newest N tagged units.
    #[arg(long, value_name = "N")]
    pub keep_last: Option<u32>,
    /// Shortcut rule: expire untagged units older than this.
    #[arg(long, value_name = "DURATION")]
    pub expire_untagged_after: Option<HumanDuration>,
    /// Quota watermark: a number, or `auto` (90% of the Service Quotas value).
    #[arg(long, value_name = "N|auto")]
    pub max_images: Option<MaxImages>,
    #[arg(long, value_name = "NAME|all", help = with_default(
        "ECS cluster whose running images are protected, or `all`; repeatable", "all"))]
    pub protect_ecs_cluster: Vec<String>,
    /// Tags matching this glob are never expired; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub protect_tag: Vec<String>,
    #[arg(long, value_name = "DURATION", help = with_default(
        "Units younger than this are kept", HumanDuration(DEFAULT_MIN_AGE)))]
    pub min_age: Option<HumanDuration>,
    #[arg(long, value_name = "P", help = with_default(
        "Refuse a repository's plan deleting more than this percent", DEFAULT_MAX_DELETE_PERCENT))]
    pub max_delete_percent: Option<u8>,
    /// Override --max-delete-percent.
    #[arg(long)]
    pub force: bool,
    /// Process only shard I of N (repositories split by a stable hash), e.g. 0/4.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    #[arg(long, value_name = "N", help = with_default(
        "Repositories processed at once", DEFAULT_CONCURRENCY))]
    pub concurrency: Option<usize>,
    #[arg(long, value_name = "N", help = with_default(
        "Newest ACTIVE task definition revisions protected per family in use (rollback targets)",
        DEFAULT_KEEP_TASK_DEFINITIONS))]
    pub keep_task_definitions: Option<u32>,
    /// Do not put this caller on the registry's pull-time update exclusion list (our
    /// BatchGetImage reads then count as pulls for sinceImagePulled rules).
    #[arg(long)]
    pub no_pull_time_exclusion: bool,
    /// IAM role ARN of a workload account to assume: what ECS, EventBridge, Scheduler
    /// and Lambda run there (in this region and each --usage-region) is protected too;
    /// repeatable, or comma-separated.
    #[arg(long, value_name = "ARN", value_delimiter = ',')]
    pub usage_role: Vec<String>,
    /// Another region whose ECS, EventBridge, Scheduler and Lambda usage (of this
    /// account and of each --usage-role) is protected too, besides this region;
    /// repeatable, or comma-separated.
    #[arg(long, value_name = "REGION", value_delimiter = ',')]
    pub usage_region: Vec<String>,
    /// Usage written by `shipshape ecr-usage --output` in a workload account, protected
    /// too; repeatable. A file that cannot be read fails the run (nothing deleted).
    #[arg(long, value_name = "FILE")]
    pub usage_file: Vec<PathBuf>,
    /// Write the plan (JSON, with its creation time and a digest of what it was planned
    /// from) to FILE, for review and a later `--apply --plan FILE`.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub plan_out: Option<PathBuf>,
    /// With --apply: delete exactly what this reviewed plan file expired, re-checking
    /// every protection now.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub plan: Option<PathBuf>,
    #[arg(long, value_name = "DURATION", help = with_default(
        "--plan refuses a plan file older than this", HumanDuration(DEFAULT_PLAN_MAX_AGE)))]
    pub plan_max_age: Option<HumanDuration>,
}

/// Validated settings of one `ecr-prune` run; `check` prints them serialized.
#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub apply: bool,
    /// Names or globs; empty = all repositories.
    pub repository: Vec<String>,
    #[serde(skip)]
    pub repository_set: Option<GlobSet>,
    /// Where the rules came from (`--policy FILE`, `[ecr] rules`, shortcuts).
    pub rules_origin: String,
    pub rules: Rules,
    pub max_images: Option<MaxImages>,
    pub protect_ecs_cluster: ProtectClusters,
    pub protect_tag: Vec<String>,
    #[serde(skip)]
    pub protect_tag_set: GlobSet,
    #[serde(serialize_with = "ser_duration")]
    pub min_age: Duration,
    pub max_delete_percent: u8,
    pub force: bool,
    pub shard: Option<Shard>,
    pub concurrency: usize,
    pub keep_task_definitions: u32,
    pub pull_time_exclusion: bool,
    /// Workload-account roles to assume for their usage.
    pub usage_role: Vec<String>,
    /// Regions scanned for usage besides the pruner's own (which always is).
    pub usage_region: Vec<String>,
    /// Usage files from workload accounts.
    pub usage_file: Vec<PathBuf>,
    pub plan_out: Option<PathBuf>,
    /// A reviewed plan file to apply (only with `apply`).
    pub plan: Option<PathBuf>,
    #[serde(serialize_with = "ser_duration")]
    pub plan_max_age: Duration,
}

fn glob_set(patterns: &[String]) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).map_err(|e| format!("bad pattern {p:?}: {e}"))?);
    }
    builder.build().map_err(|e| format!("bad patterns: {e}"))
}

/// Flags win; a repeatable flag given at all replaces the file's list.
fn list<'a>(flags: &'a [String], file: &'a [String]) -> &'a [String] {
    if flags.is_empty() {
        file
    } else {
        flags
    }
}

/// Read the rules: `--policy` (flag) over `[ecr] policy` / `[ecr] rules`, then shortcuts.
fn load_rules(l: &Layered<'_, EcrOptions>) -> Result<(Rules, String), Invalid> {
    let (flags, file) = (l.flags, l.file);
    if flags.policy.is_none() && file.policy.is_some() && file.rules.is_some() {
        return Err(l.invalid(
            POLICY,
            false,
            true,
            "give either `policy` (a lifecycle-policy file) or `rules`, not both",
        ));
    }
    let (base, mut origin) = match flags.policy.as_ref().or(file.policy.as_ref()) {
        Some(path) => {
            let bad = |m: String| l.invalid(POLICY, flags.policy.is_some(), true, m);
            let text = std::fs::read_to_string(path)
                .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
            let origin = path.display().to_string();
            (
                rules::parse_policy_json(&text, &origin).map_err(|e| bad(e.to_string()))?,
                origin,
            )
        }
        None => match &file.rules {
            Some(values) => (
                rules::parse_rule_values(values, "[ecr] rules")
                    .map_err(|e| l.invalid(RULES, false, true, e.to_string()))?,
                "[ecr] rules".to_owned(),
            ),
            None => (Rules::default(), String::new()),
        },
    };
    let keep_last = flags.keep_last.or(file.keep_last);
    let untagged = flags
        .expire_untagged_after
        .or(file.expire_untagged_after)
        .map(|d| d.0);
    if keep_last == Some(0) {
        return Err(l.invalid(
            KEEP_LAST,
            flags.keep_last.is_some(),
            true,
            "must be at least 1",
        ));
    }
    if keep_last.is_none() && untagged.is_none() {
        return Ok((base, origin));
    }
    let rules = rules::with_shortcuts(base, keep_last, untagged)
        .map_err(|e| l.invalid(KEEP_LAST, flags.keep_last.is_some(), true, e.to_string()))?;
    let shortcut = "shortcuts (keep_last/expire_untagged_after)";
    origin = if origin.is_empty() {
        shortcut.to_owned()
    } else {
        format!("{origin} + {shortcut}")
    };
    Ok((rules, origin))
}

impl Settings {
    /// The built-in defaults (no file, no flags).
    pub fn defaults() -> Self {
        let none = EcrOptions::default();
        Self::resolve(Layered::new(&none, &none, &Default::default()))
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }

    /// Merge flags over the file and validate.
    pub fn resolve(l: Layered<'_, EcrOptions>) -> Result<Self, Invalid> {
        let (flags, file) = (l.flags, l.file);
        let (rules, rules_origin) = load_rules(&l)?;
        let repository = list(&flags.repository, &file.repository).to_vec();
        let repository_set = if repository.is_empty() {
            None
        } else {
            Some(
                glob_set(&repository)
                    .map_err(|m| l.invalid(REPOSITORY, !flags.repository.is_empty(), true, m))?,
            )
        };
        let clusters = list(&flags.protect_ecs_cluster, &file.protect_ecs_cluster).to_vec();
        let protect_ecs_cluster = if clusters.is_empty() || clusters.iter().any(|c| c == "all") {
            ProtectClusters::All
        } else {
            ProtectClusters::Named(clusters)
        };
        let usage_role = list(&flags.usage_role, &file.usage_role).to_vec();
        if let Some(bad) = usage_role.iter().find(|r| !is_role_arn(r)) {
            return Err(l.invalid(
                USAGE_ROLE,
                !flags.usage_role.is_empty(),
                true,
                format!("{bad:?} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>)"),
            ));
        }
        let usage_region = list(&flags.usage_region, &file.usage_region).to_vec();
        if let Some(bad) = usage_region.iter().find(|r| !is_region(r)) {
            return Err(l.invalid(
                USAGE_REGION,
                !flags.usage_region.is_empty(),
                true,
                format!("{bad:?} is not an AWS region name (e.g. us-west-2)"),
            ));
        }
        let protect_tag = list(&flags.protect_tag, &file.protect_tag).to_vec();
        let protect_tag_set = glob_set(&protect_tag)
            .map_err(|m| l.invalid(PROTECT_TAG, !flags.protect_tag.is_empty(), true, m))?;
        let max_delete_percent = flags
            .max_delete_percent
            .or(file.max_delete_percent)
            .unwrap_or(DEFAULT_MAX_DELETE_PERCENT);
        if max_delete_percent > 100 {
            return Err(l.invalid(
                MAX_DELETE_PERCENT,
                flags.max_delete_percent.is_some(),
                true,
                format!("{max_delete_percent} is over 100"),
            ));
        }
        let concurrency = flags
            .concurrency
            .or(file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(l.invalid(
                CONCURRENCY,
                flags.concurrency.is_some(),
                true,
                "must be at least 1",
            ));
        }
        let apply = flags.apply || file.apply;
        if flags.plan.is_some() && !apply {
            return Err(l.invalid(
                PLAN,
                true,
                false,
                "applies a reviewed plan: give --apply with it (plan first with --plan-out FILE)",
            ));
        }
        if flags.plan.is_some() && flags.plan_out.is_some() {
            return Err(l.invalid(
                PLAN,
                true,
                false,
                "give --plan-out when planning and --plan when applying that plan, not both",
            ));
        }
        if flags.plan_out.is_some() && apply {
            return Err(l.invalid(
                Key::new(SECTION, "plan_out"),
                true,
                false,
                "writes a plan for review: leave out --apply, then apply it with --apply --plan FILE",
            ));
        }
        Ok(Self {
            apply,
            repository,
            repository_set,
            rules_origin,
            rules,
            max_images: flags.max_images.or(file.max_images),
            protect_ecs_cluster,
            protect_tag,
            protect_tag_set,
            min_age: flags
                .min_age
                .or(file.min_age)
                .map_or(DEFAULT_MIN_AGE, |d| d.0),
            max_delete_percent,
            force: flags.force || file.force,
            shard: flags.shard.or(file.shard),
            concurrency,
            keep_task_definitions: flags
                .keep_task_definitions
                .or(file.keep_task_definitions)
                .unwrap_or(DEFAULT_KEEP_TASK_DEFINITIONS),
            pull_time_exclusion: !(flags.no_pull_time_exclusion || file.no_pull_time_exclusion),
            usage_role,
            usage_region,
            usage_file: if flags.usage_file.is_empty() {
                file.usage_file.clone()
            } else {
                flags.usage_file.clone()
            },
            plan_out: flags.plan_out.clone(),
            plan: flags.plan.clone(),
            plan_max_age: flags
                .plan_max_age
                .or(file.plan_max_age)
                .map_or(DEFAULT_PLAN_MAX_AGE, |d| d.0),
        })
    }

    /// Is this repository selected by `--repository` and `--shard`?
    pub fn selects(&self, repository: &str) -> bool {
        self.repository_set
            .as_ref()
            .is_none_or(|set| set.is_match(repository))
            && self.shard.is_none_or(|s| s.owns(repository))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use clap::Parser;

    use super::*;
    use crate::config::layer::{FileText, Origin};

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        options: EcrOptions,
    }

    fn try_flags(args: &[&str]) -> Result<EcrOptions, clap::Error> {
        Flags::try_parse_from(std::iter::once("ecr-prune").chain(args.iter().copied()))
            .map(|f| f.options)
    }

    fn resolve(flag_args: &[&str], text: &str) -> Result<Settings, Invalid> {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            ecr: EcrOptions,
        }
        let flags = try_flags(flag_args).expect("flags parse");
        let doc: Doc = toml::from_str(text).expect("file parses");
        let text = FileText::new(Path::new("x.toml"), text);
        Settings::resolve(Layered::new(&flags, &doc.ecr, &text))
    }

    #[test]
    fn defaults() {
        let s = Settings::defaults();
        assert_eq!(s.min_age, DEFAULT_MIN_AGE);
        assert_eq!(s.max_delete_percent, 50);
        assert_eq!(s.concurrency, 4);
        assert_eq!(s.protect_ecs_cluster, ProtectClusters::All);
        assert!(!s.apply && !s.force);
        assert!(s.rules.0.is_empty());
        assert!(s.selects("anything"));
    }

    #[test]
    fn flags_override_file() {
        let s = resolve(
            &["--min-age", "1d", "--repository", "b*", "--keep-last", "5"],
            "[ecr]\nmin_age = \"2h\"\nmax_delete_percent = 10\nrepository = [\"a\"]\nkeep_last = 3\n",
        )
        .unwrap();
        assert_eq!(s.min_age, Duration::from_secs(86_400));
        assert_eq!(s.max_delete_percent, 10);
        assert!(s.selects("build") && !s.selects("a"));
        assert_eq!(
            s.rules.0[0].criterion,
            rules::Criterion::ImageCountMoreThan(5)
        );
    }

    #[test]
    fn shard_is_parsed_at_the_edge() {
        for bad in ["4/4", "0/0", "x/2", "3", "-1/2", "5/2"] {
            let arg = format!("--shard={bad}");
            let e = try_flags(&[&arg]).unwrap_err();
            assert!(e.to_string().contains("--shard"), "{e}");
        }
        let s = resolve(&[], "[ecr]\nshard = \"1/4\"\n").unwrap();
        assert_eq!(s.shard, Some(Shard { index: 1, count: 4 }));
    }

    #[test]
    fn shards_partition_repositories_stably() {
        let names: Vec<String> = (0..200).map(|i| format!("team/service-{i}")).collect();
        let shards: Vec<Shard> = (0..3).map(|index| Shard { index, count: 3 }).collect();
        for n in &names {
            assert_eq!(shards.iter().filter(|s| s.owns(n)).count(), 1, "{n}");
        }
        let first = names.iter().filter(|n| shards[0].owns(n)).count();
        assert!((40..=95).contains(&first), "roughly a third: {first}");
        // Fixed value: FNV-1a must not change between releases.
        assert!(Shard { index: 0, count: 1 }.owns("x"));
    }

    #[test]
    fn max_images_forms() {
        let s = resolve(&[], "[ecr]\nmax_images = \"auto\"\n").unwrap();
        assert_eq!(s.max_images, Some(MaxImages::Auto));
        let s = resolve(&[], "[ecr]\nmax_images = 700\n").unwrap();
        assert_eq!(s.max_images, Some(MaxImages::Count(700)));
        let s = resolve(&["--max-images", "900"], "").unwrap();
        assert_eq!(s.max_images, Some(MaxImages::Count(900)));
        assert!(try_flags(&["--max-images", "lots"]).is_err());
    }

    #[test]
    fn max_delete_percent_over_100_is_refused() {
        let e = resolve(&["--max-delete-percent", "101"], "").unwrap_err();
        assert_eq!((e.key, e.origin), (MAX_DELETE_PERCENT, Origin::Flag));
    }

    #[test]
    fn zero_concurrency_is_refused_with_its_line() {
        let e = resolve(&[], "[ecr]\n\nconcurrency = 0\n").unwrap_err();
        assert_eq!(
            (e.key, e.origin),
            (CONCURRENCY, Origin::File { line: Some(3) })
        );
    }

    #[test]
    fn bad_min_age_is_refused_by_the_parser() {
        assert!(try_flags(&["--min-age", "soon"]).is_err());
    }

    #[test]
    fn reviewed_plan_flags_go_with_the_right_mode() {
        let s = resolve(&["--plan-out", "p.json"], "").unwrap();
        assert_eq!(s.plan_out, Some(PathBuf::from("p.json")));
        assert_eq!(s.plan_max_age, DEFAULT_PLAN_MAX_AGE);
        let s = resolve(&["--apply", "--plan", "p.json", "--plan-max-age", "2h"], "").unwrap();
        assert_eq!(s.plan, Some(PathBuf::from("p.json")));
        assert_eq!(s.plan_max_age, Duration::from_secs(7200));
        let s = resolve(&[], "[ecr]\nplan_max_age = \"3h\"\n").unwrap();
        assert_eq!(s.plan_max_age, Duration::from_secs(3 * 3600));
        let e = resolve(&["--plan", "p.json"], "").unwrap_err();
        assert_eq!(e.key, PLAN);
        assert!(e.to_string().contains("give --apply with it"), "{e}");
        let e = resolve(&["--apply", "--plan-out", "p.json"], "").unwrap_err();
        assert!(e.to_string().contains("leave out --apply"), "{e}");
        let e = resolve(&["--apply", "--plan", "a", "--plan-out", "b"], "").unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        assert!(try_flags(&["--plan-max-age", "soon"]).is_err());
    }

    #[test]
    fn usage_regions_are_region_names() {
        let s = resolve(&["--usage-region", "us-west-2"], "").unwrap();
        assert_eq!(s.usage_region, vec!["us-west-2".to_owned()]);
        let s = resolve(
            &[],
            "[ecr]\nusage_region = [\"us-gov-west-1\", \"cn-north-1\", \"eusc-de-east-1\"]\n",
        )
        .unwrap();
        assert_eq!(s.usage_region.len(), 3);
        assert!(Settings::defaults().usage_region.is_empty());
        for bad in [
            "us-west",
            "US-WEST-2",
            "us_west_2",
            "us-west-2a",
            "us--1",
            "west-2",
        ] {
            let e = resolve(&["--usage-region", bad], "").unwrap_err();
            assert_eq!((e.key, e.origin), (USAGE_REGION, Origin::Flag), "{bad}");
            assert!(e.to_string().contains("is not an AWS region name"), "{e}");
        }
        let e = resolve(&[], "[ecr]\nusage_region = [\"west\"]\n").unwrap_err();
        assert_eq!(e.origin, Origin::File { line: Some(2) });
    }

    #[test]
    fn zero_keep_last_is_refused() {
        let e = resolve(&["--keep-last", "0"], "").unwrap_err();
        assert_eq!(e.key, KEEP_LAST);
    }

    #[test]
    fn policy_file_and_toml_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#).unwrap();
        let p = path.display().to_string();
        let s = resolve(&["--policy", &p, "--keep-last", "1"], "").unwrap();
        assert_eq!(s.rules.0.len(), 2);
        assert!(s.rules_origin.contains("policy.json"));

        let nope = dir.path().join("nope.json").display().to_string();
        let missing = resolve(&["--policy", &nope], "").unwrap_err();
        assert!(missing.to_string().contains("nope.json"), "{missing}");
        assert_eq!(missing.key, POLICY);

        let both = resolve(&[], &format!("[ecr]\npolicy = {p:?}\nrules = []\n")).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }
}
