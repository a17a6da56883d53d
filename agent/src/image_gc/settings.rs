//! Stage two of `[gc]` configuration: `RawGc` (file) and `GcArgs` (flags, which win)
//! become validated `GcSettings` with SPEC defaults applied. Every bad value is a
//! usage error naming the flag or key; the exclude file is read here, once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::policy::{DiskWatermarks, ExcludeSet, Policy};
use super::GcError;
use crate::cli::{GcArgs, OutputFormat};
use crate::config::RawGc;
use crate::last_use::DEFAULT_STATE_PATH;
use crate::units::{format_duration, parse_duration, Watermark};

pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_CONTAINER_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Validated settings of one `gc` run.
#[derive(Debug, Clone)]
pub struct GcSettings {
    pub dry_run: bool,
    pub output: OutputFormat,
    pub min_age: Duration,
    pub keep_per_repo: u32,
    /// Patterns from `--exclude`/`exclude` then from the exclude file, in order.
    pub exclude: Vec<String>,
    pub exclude_file: Option<PathBuf>,
    pub disk: Option<DiskWatermarks>,
    pub containers: bool,
    pub container_grace: Duration,
    pub volumes: bool,
    pub build_cache: bool,
    pub max_deletions: Option<u32>,
    pub state: PathBuf,
    pub protect_ecs_agent: bool,
    pub remove_ecs_containers: bool,
    pub concurrency: usize,
    /// Compiled from `exclude`.
    pub excludes: ExcludeSet,
}

/// `--flag` when the flag was given, else `gc.key`: errors name what the user wrote.
fn key(flag_given: bool, flag: &str, file_key: &str) -> String {
    if flag_given {
        format!("--{flag}")
    } else {
        format!("gc.{file_key}")
    }
}

fn duration(
    flag: Option<&String>,
    file: Option<&String>,
    names: (&str, &str),
    default: Duration,
) -> Result<Duration, GcError> {
    match flag.or(file) {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|message| GcError::Invalid {
            key: key(flag.is_some(), names.0, names.1),
            message,
        }),
    }
}

fn watermark(
    flag: Option<&String>,
    file: Option<&String>,
    names: (&str, &str),
) -> Result<Option<Watermark>, GcError> {
    match flag.or(file) {
        None => Ok(None),
        Some(text) => Watermark::parse(text)
            .map(Some)
            .map_err(|message| GcError::Invalid {
                key: key(flag.is_some(), names.0, names.1),
                message,
            }),
    }
}

/// Patterns of an exclude file: one a line; blank lines and `#` comments ignored
/// (docker-gc's `/etc/docker-gc-exclude` format).
pub fn parse_exclude_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn read_exclude_file(path: &Path) -> Result<Vec<String>, GcError> {
    std::fs::read_to_string(path)
        .map(|t| parse_exclude_file(&t))
        .map_err(|e| GcError::ExcludeFile {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

impl GcSettings {
    /// Merge flags over the file and validate.
    pub fn resolve(raw: &RawGc, args: &GcArgs) -> Result<Self, GcError> {
        let min_age = duration(
            args.min_age.as_ref(),
            raw.min_age.as_ref(),
            ("min-age", "min_age"),
            DEFAULT_MIN_AGE,
        )?;
        let container_grace = duration(
            args.container_grace.as_ref(),
            raw.container_grace.as_ref(),
            ("container-grace", "container_grace"),
            DEFAULT_CONTAINER_GRACE,
        )?;
        let high = watermark(
            args.high_water.as_ref(),
            raw.high_water.as_ref(),
            ("high-water", "high_water"),
        )?;
        let low = watermark(
            args.low_water.as_ref(),
            raw.low_water.as_ref(),
            ("low-water", "low_water"),
        )?;
        let disk = match (high, low) {
            (None, None) => None,
            (Some(high), Some(low)) => {
                let inverted = match (high, low) {
                    (Watermark::Percent(h), Watermark::Percent(l)) => l > h,
                    (Watermark::Bytes(h), Watermark::Bytes(l)) => l > h,
                    _ => false,
                };
                if inverted {
                    return Err(GcError::Invalid {
                        key: key(args.low_water.is_some(), "low-water", "low_water"),
                        message: format!("low water {low} is above high water {high}"),
                    });
                }
                Some(DiskWatermarks { high, low })
            }
            (Some(_), None) => {
                return Err(GcError::Invalid {
                    key: "gc.low_water".to_owned(),
                    message: "high water is set but low water is not; set both".to_owned(),
                })
            }
            (None, Some(_)) => {
                return Err(GcError::Invalid {
                    key: "gc.high_water".to_owned(),
                    message: "low water is set but high water is not; set both".to_owned(),
                })
            }
        };
        let concurrency = raw.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 || concurrency > 64 {
            return Err(GcError::Invalid {
                key: "gc.concurrency".to_owned(),
                message: format!("{concurrency} is outside 1..=64"),
            });
        }
        let mut exclude: Vec<String> = if args.exclude.is_empty() {
            raw.exclude.clone()
        } else {
            args.exclude.clone()
        };
        let exclude_file = args
            .exclude_file
            .clone()
            .or_else(|| raw.exclude_file.clone());
        if let Some(path) = &exclude_file {
            exclude.extend(read_exclude_file(path)?);
        }
        let excludes = ExcludeSet::new(&exclude).map_err(|e| GcError::Invalid {
            key: if args.exclude.is_empty() && exclude_file.is_none() {
                "gc.exclude".to_owned()
            } else {
                "--exclude".to_owned()
            },
            message: e.to_string(),
        })?;
        Ok(Self {
            dry_run: args.dry_run,
            output: args.output,
            min_age,
            keep_per_repo: args.keep_per_repo.or(raw.keep_per_repo).unwrap_or(0),
            exclude,
            exclude_file,
            disk,
            containers: args.containers || raw.containers.unwrap_or(false),
            container_grace,
            volumes: args.volumes || raw.volumes.unwrap_or(false),
            build_cache: args.build_cache || raw.build_cache.unwrap_or(false),
            max_deletions: args.max_deletions.or(raw.max_deletions),
            state: args
                .state
                .clone()
                .or_else(|| raw.state.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
            protect_ecs_agent: raw.protect_ecs_agent.unwrap_or(true),
            remove_ecs_containers: raw.remove_ecs_containers.unwrap_or(false),
            concurrency,
            excludes,
        })
    }

    /// The planner's view of these settings.
    pub fn policy(&self) -> Policy {
        Policy {
            min_age: self.min_age,
            keep_per_repo: self.keep_per_repo,
            excludes: self.excludes.clone(),
            protect_ecs_agent: self.protect_ecs_agent,
            disk: self.disk,
            containers: self.containers,
            container_grace: self.container_grace,
            remove_ecs_containers: self.remove_ecs_containers,
            volumes: self.volumes,
            max_deletions: self.max_deletions,
        }
    }

    /// The effective settings as JSON, for `shipshape check`.
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Effective<'a> {
            min_age: String,
            keep_per_repo: u32,
            exclude: &'a [String],
            exclude_file: Option<String>,
            high_water: Option<String>,
            low_water: Option<String>,
            containers: bool,
            container_grace: String,
            volumes: bool,
            build_cache: bool,
            max_deletions: Option<u32>,
            state: String,
            protect_ecs_agent: bool,
            remove_ecs_containers: bool,
            concurrency: usize,
        }
        serde_json::to_value(Effective {
            min_age: format_duration(self.min_age),
            keep_per_repo: self.keep_per_repo,
            exclude: &self.exclude,
            exclude_file: self.exclude_file.as_ref().map(|p| p.display().to_string()),
            high_water: self.disk.map(|d| d.high.to_string()),
            low_water: self.disk.map(|d| d.low.to_string()),
            containers: self.containers,
            container_grace: format_duration(self.container_grace),
            volumes: self.volumes,
            build_cache: self.build_cache,
            max_deletions: self.max_deletions,
            state: self.state.display().to_string(),
            protect_ecs_agent: self.protect_ecs_agent,
            remove_ecs_containers: self.remove_ecs_containers,
            concurrency: self.concurrency,
        })
        .unwrap_or(serde_json::Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(raw: RawGc, args: GcArgs) -> Result<GcSettings, GcError> {
        GcSettings::resolve(&raw, &args)
    }

    #[test]
    fn defaults_match_spec() {
        let s = resolve(RawGc::default(), GcArgs::default()).unwrap();
        assert_eq!(s.min_age, Duration::from_secs(3600));
        assert_eq!(s.keep_per_repo, 0);
        assert_eq!(s.container_grace, Duration::from_secs(3600));
        assert_eq!(s.state, PathBuf::from("/var/lib/shipshape/state.json"));
        assert_eq!(s.concurrency, 4);
        assert!(s.protect_ecs_agent && !s.remove_ecs_containers);
        assert!(s.disk.is_none() && !s.containers && !s.volumes && !s.build_cache);
    }

    #[test]
    fn flags_override_file() {
        let raw = RawGc {
            min_age: Some("2h".into()),
            keep_per_repo: Some(3),
            exclude: vec!["redis:*".into()],
            ..Default::default()
        };
        let args = GcArgs {
            min_age: Some("0s".into()),
            exclude: vec!["app:*".into()],
            ..Default::default()
        };
        let s = resolve(raw, args).unwrap();
        assert_eq!(s.min_age, Duration::ZERO);
        assert_eq!(s.keep_per_repo, 3);
        assert_eq!(s.exclude, vec!["app:*".to_owned()]);
    }

    #[test]
    fn bad_duration_names_the_flag_or_key() {
        let e = resolve(
            RawGc::default(),
            GcArgs {
                min_age: Some("soon".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--min-age"), "{e}");
        let e = resolve(
            RawGc {
                container_grace: Some("x".into()),
                ..Default::default()
            },
            GcArgs::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("gc.container_grace"), "{e}");
    }

    #[test]
    fn bad_size_names_the_flag() {
        let e = resolve(
            RawGc::default(),
            GcArgs {
                high_water: Some("lots".into()),
                low_water: Some("10%".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--high-water") && e.to_string().contains("lots"));
    }

    #[test]
    fn low_above_high_is_refused() {
        let e = resolve(
            RawGc {
                high_water: Some("70%".into()),
                low_water: Some("80%".into()),
                ..Default::default()
            },
            GcArgs::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("gc.low_water"), "{e}");
    }

    #[test]
    fn high_without_low_in_file_is_refused() {
        let e = resolve(
            RawGc {
                high_water: Some("70%".into()),
                ..Default::default()
            },
            GcArgs::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("low_water"), "{e}");
    }

    #[test]
    fn bad_glob_is_a_usage_error_naming_it() {
        let e = resolve(
            RawGc::default(),
            GcArgs {
                exclude: vec!["app:[1".into()],
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("app:[1"), "{e}");
    }

    #[test]
    fn docker_gc_exclude_file_format() {
        let text = "# keep these\nredis:*\n\n  busybox  \n# sha\nsha256:abcd\n";
        assert_eq!(
            parse_exclude_file(text),
            vec!["redis:*", "busybox", "sha256:abcd"]
        );
    }

    #[test]
    fn exclude_file_adds_to_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exclude");
        std::fs::write(&path, "busybox\n").unwrap();
        let s = resolve(
            RawGc {
                exclude: vec!["redis:*".into()],
                exclude_file: Some(path),
                ..Default::default()
            },
            GcArgs::default(),
        )
        .unwrap();
        assert_eq!(s.exclude, vec!["redis:*", "busybox"]);
    }

    #[test]
    fn missing_exclude_file_is_a_usage_error_naming_it() {
        let e = resolve(
            RawGc::default(),
            GcArgs {
                exclude_file: Some("/nonexistent/excl".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("/nonexistent/excl"), "{e}");
    }
}
