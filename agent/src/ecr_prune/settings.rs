//! Stage two of the `[ecr]` config: `RawEcr` with the `ecr-prune` flags merged over it,
//! validated, defaults applied (min age 24h, max delete 50%, protect all ECS clusters,
//! concurrency 4). Every error names the key or flag and is a usage error (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};

use super::rules::{self, Rules};
use super::EcrError;
use crate::cli::{EcrPruneArgs, OutputFormat};
use crate::config::{MaxImages, RawEcr};

pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(24 * 3600);
pub const DEFAULT_MAX_DELETE_PERCENT: u8 = 50;
pub const DEFAULT_CONCURRENCY: usize = 4;
/// ECR's default images-per-repository quota, used when Service Quotas can't be read.
pub const DEFAULT_IMAGES_QUOTA: u64 = 10_000;
/// `--max-images auto` keeps repositories under this share of the quota.
pub const AUTO_WATERMARK_PERCENT: u64 = 90;

/// Quota mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MaxImagesSetting {
    Count(u64),
    Auto,
}

/// Which ECS clusters' usage protects images.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectClusters {
    All,
    Named(Vec<String>),
}

/// `--shard I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Stable across processes and releases: FNV-1a (64 bit) of the repository name.
    pub fn owns(&self, repository: &str) -> bool {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in repository.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash % u64::from(self.count) == u64::from(self.index)
    }
}

/// Validated settings of one `ecr-prune` run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub apply: bool,
    #[serde(skip)]
    pub output: OutputFormat,
    /// Names or globs; empty = all repositories.
    pub repository: Vec<String>,
    #[serde(skip)]
    pub repository_set: Option<GlobSet>,
    /// Where the rules came from (`--policy FILE`, `[ecr] rules`, shortcuts).
    pub rules_origin: String,
    pub rules: Rules,
    pub max_images: Option<MaxImagesSetting>,
    pub protect_ecs_cluster: ProtectClusters,
    pub protect_tag: Vec<String>,
    #[serde(skip)]
    pub protect_tag_set: GlobSet,
    #[serde(serialize_with = "super::rules::ser_duration")]
    pub min_age: Duration,
    pub max_delete_percent: u8,
    pub force: bool,
    pub shard: Option<Shard>,
    pub concurrency: usize,
}

fn invalid(key: &str, message: impl Into<String>) -> EcrError {
    EcrError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn glob_set(key: &str, patterns: &[String]) -> Result<GlobSet, EcrError> {
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).map_err(|e| invalid(key, format!("bad pattern {p:?}: {e}")))?);
    }
    builder
        .build()
        .map_err(|e| invalid(key, format!("bad patterns: {e}")))
}

/// Parse `I/N` with 0 ≤ I < N.
pub fn parse_shard(text: &str) -> Result<Shard, String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not I/N (e.g. 0/4)"))?;
    let index: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: shard index {i:?} is not a number"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: shard count {n:?} is not a number"))?;
    if count == 0 || index >= count {
        return Err(format!("{text:?}: need 0 <= I < N"));
    }
    Ok(Shard { index, count })
}

fn parse_max_images(text: &str) -> Result<MaxImagesSetting, String> {
    if text.trim().eq_ignore_ascii_case("auto") {
        return Ok(MaxImagesSetting::Auto);
    }
    match text.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(MaxImagesSetting::Count(n)),
        _ => Err(format!("{text:?} is not a positive number or \"auto\"")),
    }
}

/// Read the rules: `--policy` (flag) over `[ecr] policy` / `[ecr] rules`, then shortcuts.
fn load_rules(raw: &RawEcr, args: &EcrPruneArgs) -> Result<(Rules, String), EcrError> {
    let policy_path: Option<&PathBuf> = args.policy.as_ref().or(raw.policy.as_ref());
    if args.policy.is_none() && raw.policy.is_some() && raw.rules.is_some() {
        return Err(invalid(
            "[ecr] policy",
            "give either `policy` (a lifecycle-policy file) or `rules`, not both",
        ));
    }
    let (base, mut origin) = match policy_path {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| EcrError::PolicyFile {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let origin = path.display().to_string();
            (
                rules::parse_policy_json(&text, &origin).map_err(EcrError::Policy)?,
                origin,
            )
        }
        None => match &raw.rules {
            Some(values) => (
                rules::parse_rule_values(values, "[ecr] rules").map_err(EcrError::Policy)?,
                "[ecr] rules".to_owned(),
            ),
            None => (Rules::default(), String::new()),
        },
    };
    let keep_last = args.keep_last.or(raw.keep_last);
    let untagged_text = args
        .expire_untagged_after
        .as_ref()
        .or(raw.expire_untagged_after.as_ref());
    let untagged = untagged_text
        .map(|t| crate::units::parse_duration(t).map_err(|m| invalid("expire_untagged_after", m)))
        .transpose()?;
    if keep_last == Some(0) {
        return Err(invalid("keep_last", "must be at least 1"));
    }
    if keep_last.is_some() || untagged.is_some() {
        let rules = rules::with_shortcuts(base, keep_last, untagged).map_err(EcrError::Policy)?;
        let shortcut = "shortcuts (keep_last/expire_untagged_after)";
        origin = if origin.is_empty() {
            shortcut.to_owned()
        } else {
            format!("{origin} + {shortcut}")
        };
        return Ok((rules, origin));
    }
    Ok((base, origin))
}

impl Settings {
    /// Merge flags over the file and validate.
    pub fn resolve(raw: &RawEcr, args: &EcrPruneArgs) -> Result<Self, EcrError> {
        let (rules, rules_origin) = load_rules(raw, args)?;
        let repository = if args.repository.is_empty() {
            raw.repository.clone()
        } else {
            args.repository.clone()
        };
        let repository_set = if repository.is_empty() {
            None
        } else {
            Some(glob_set("repository", &repository)?)
        };
        let max_images = match (&args.max_images, &raw.max_images) {
            (Some(text), _) => Some(parse_max_images(text).map_err(|m| invalid("max_images", m))?),
            (None, Some(MaxImages::Count(n))) if *n > 0 => {
                Some(MaxImagesSetting::Count(u64::from(*n)))
            }
            (None, Some(MaxImages::Count(_))) => {
                return Err(invalid(
                    "max_images",
                    "must be a positive number or \"auto\"",
                ))
            }
            (None, Some(MaxImages::Text(t))) => {
                Some(parse_max_images(t).map_err(|m| invalid("max_images", m))?)
            }
            (None, None) => None,
        };
        let clusters = if args.protect_ecs_cluster.is_empty() {
            raw.protect_ecs_cluster.clone()
        } else {
            args.protect_ecs_cluster.clone()
        };
        let protect_ecs_cluster = if clusters.is_empty() || clusters.iter().any(|c| c == "all") {
            ProtectClusters::All
        } else {
            ProtectClusters::Named(clusters)
        };
        let protect_tag = if args.protect_tag.is_empty() {
            raw.protect_tag.clone()
        } else {
            args.protect_tag.clone()
        };
        let protect_tag_set = glob_set("protect_tag", &protect_tag)?;
        let min_age = match args.min_age.as_ref().or(raw.min_age.as_ref()) {
            Some(t) => crate::units::parse_duration(t).map_err(|m| invalid("min_age", m))?,
            None => DEFAULT_MIN_AGE,
        };
        let max_delete_percent = args
            .max_delete_percent
            .or(raw.max_delete_percent)
            .unwrap_or(DEFAULT_MAX_DELETE_PERCENT);
        if max_delete_percent > 100 {
            return Err(invalid(
                "max_delete_percent",
                format!("{max_delete_percent} is over 100"),
            ));
        }
        let shard = args
            .shard
            .as_ref()
            .or(raw.shard.as_ref())
            .map(|t| parse_shard(t).map_err(|m| invalid("shard", m)))
            .transpose()?;
        let concurrency = args
            .concurrency
            .or(raw.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(invalid("concurrency", "must be at least 1"));
        }
        Ok(Self {
            apply: args.apply || raw.apply.unwrap_or(false),
            output: args.output,
            repository,
            repository_set,
            rules_origin,
            rules,
            max_images,
            protect_ecs_cluster,
            protect_tag,
            protect_tag_set,
            min_age,
            max_delete_percent,
            force: args.force || raw.force.unwrap_or(false),
            shard,
            concurrency,
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
    use super::*;

    fn resolve(raw: RawEcr, args: EcrPruneArgs) -> Result<Settings, EcrError> {
        Settings::resolve(&raw, &args)
    }

    #[test]
    fn defaults() {
        let s = resolve(RawEcr::default(), EcrPruneArgs::default()).unwrap();
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
        let raw = RawEcr {
            min_age: Some("2h".into()),
            max_delete_percent: Some(10),
            repository: vec!["a".into()],
            keep_last: Some(3),
            ..RawEcr::default()
        };
        let args = EcrPruneArgs {
            min_age: Some("1d".into()),
            repository: vec!["b*".into()],
            keep_last: Some(5),
            ..EcrPruneArgs::default()
        };
        let s = resolve(raw, args).unwrap();
        assert_eq!(s.min_age, Duration::from_secs(86_400));
        assert_eq!(s.max_delete_percent, 10);
        assert!(s.selects("build") && !s.selects("a"));
        assert_eq!(
            s.rules.0[0].criterion,
            rules::Criterion::ImageCountMoreThan(5)
        );
    }

    #[test]
    fn shard_validation() {
        assert_eq!(parse_shard("1/4"), Ok(Shard { index: 1, count: 4 }));
        for bad in ["4/4", "0/0", "x/2", "3", "-1/2"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        let e = resolve(
            RawEcr::default(),
            EcrPruneArgs {
                shard: Some("5/2".into()),
                ..EcrPruneArgs::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        assert!(e.to_string().contains("shard"), "{e}");
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
        let s = resolve(
            RawEcr {
                max_images: Some(MaxImages::Text("auto".into())),
                ..RawEcr::default()
            },
            EcrPruneArgs::default(),
        )
        .unwrap();
        assert_eq!(s.max_images, Some(MaxImagesSetting::Auto));
        let s = resolve(
            RawEcr::default(),
            EcrPruneArgs {
                max_images: Some("900".into()),
                ..EcrPruneArgs::default()
            },
        )
        .unwrap();
        assert_eq!(s.max_images, Some(MaxImagesSetting::Count(900)));
        assert!(resolve(
            RawEcr::default(),
            EcrPruneArgs {
                max_images: Some("lots".into()),
                ..EcrPruneArgs::default()
            }
        )
        .is_err());
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            EcrPruneArgs {
                max_delete_percent: Some(101),
                ..EcrPruneArgs::default()
            },
            EcrPruneArgs {
                concurrency: Some(0),
                ..EcrPruneArgs::default()
            },
            EcrPruneArgs {
                min_age: Some("soon".into()),
                ..EcrPruneArgs::default()
            },
            EcrPruneArgs {
                keep_last: Some(0),
                ..EcrPruneArgs::default()
            },
        ] {
            let e = resolve(RawEcr::default(), args).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{e}");
        }
    }

    #[test]
    fn policy_file_and_toml_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"imageCountMoreThan","countNumber":2},"action":{"type":"expire"}}]}"#).unwrap();
        let s = resolve(
            RawEcr::default(),
            EcrPruneArgs {
                policy: Some(path.clone()),
                keep_last: Some(1),
                ..EcrPruneArgs::default()
            },
        )
        .unwrap();
        assert_eq!(s.rules.0.len(), 2);
        assert!(s.rules_origin.contains("policy.json"));

        let missing = resolve(
            RawEcr::default(),
            EcrPruneArgs {
                policy: Some(dir.path().join("nope.json")),
                ..EcrPruneArgs::default()
            },
        )
        .unwrap_err();
        assert!(missing.to_string().contains("nope.json"), "{missing}");
        assert_eq!(missing.exit_code(), crate::error::EXIT_USAGE);

        let both = resolve(
            RawEcr {
                policy: Some(path),
                rules: Some(vec![]),
                ..RawEcr::default()
            },
            EcrPruneArgs::default(),
        )
        .unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
    }
}
