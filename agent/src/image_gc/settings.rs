//! `[gc]` and the `gc` flags: one options struct filled by clap and by serde, resolved
//! (flags over file over the defaults below) into validated `GcSettings`. Every bad
//! value is an `Invalid` naming the key both ways; the exclude file is read here, once.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

use super::docker_gc::{self, GrepLine};
use super::policy::{DiskWatermarks, ExcludeSet, Policy};
use crate::config::layer::{Invalid, Key, Layered};
use crate::config::value::{ser_duration, with_default, FreeSpace, HumanDuration, Watermark};
use crate::last_use::DEFAULT_STATE_PATH;

pub const DEFAULT_MIN_AGE: Duration = Duration::from_secs(3600);
pub const DEFAULT_KEEP_PER_REPO: u32 = 0;
pub const DEFAULT_CONTAINER_GRACE: Duration = Duration::from_secs(3600);
pub const DEFAULT_CONCURRENCY: usize = 4;
const MAX_CONCURRENCY: usize = 64;

const SECTION: &str = "gc";
const EXCLUDE: Key = Key::new(SECTION, "exclude");
const EXCLUDE_FILE: Key = Key::new(SECTION, "exclude_file");
const MAX_AGE: Key = Key::new(SECTION, "max_age");
const HIGH_WATER: Key = Key::new(SECTION, "high_water");
const LOW_WATER: Key = Key::new(SECTION, "low_water");
const CONCURRENCY: Key = Key::file_only(SECTION, "concurrency");

/// `[gc]` in the file and the flags of `gc`: the same keys, dashes for underscores.
#[derive(Debug, Default, Clone, PartialEq, clap::Args, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GcOptions {
    #[arg(long, value_name = "DURATION", help = with_default(
        "Images younger than this (from the later of creation and last use) are kept",
        HumanDuration(DEFAULT_MIN_AGE)))]
    pub min_age: Option<HumanDuration>,
    /// Images unused for longer than this go whatever the disk (kubelet's
    /// imageMaximumGCAge, docker-gc's grace period); with watermarks, in the same pass.
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<HumanDuration>,
    #[arg(long, value_name = "N", help = with_default(
        "Keep the newest N images of every repository", DEFAULT_KEEP_PER_REPO))]
    pub keep_per_repo: Option<u32>,
    /// Glob on repo:tag, or an image-ID prefix; repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// docker-gc exclude file: each line a grep basic regex matched against ` repo:tag id `.
    #[arg(long, value_name = "PATH")]
    pub exclude_file: Option<PathBuf>,
    /// Disk-pressure mode: act only above this usage (percent or size).
    #[arg(long, value_name = "PCT|SIZE", requires = "low_water")]
    pub high_water: Option<Watermark>,
    /// Disk-pressure mode: delete until usage is at or below this.
    #[arg(long, value_name = "PCT|SIZE", requires = "high_water")]
    pub low_water: Option<Watermark>,
    /// CI pre-job gate: evict least recently used images until this much of Docker's
    /// filesystem is free (and INODES inodes); exit 3 when it cannot.
    #[arg(long, value_name = "SIZE[,INODES]")]
    pub ensure_free: Option<FreeSpace>,
    /// Also remove exited/dead containers past the grace period (any mode).
    #[arg(long)]
    pub containers: bool,
    #[arg(long, value_name = "DURATION", help = with_default(
        "How long a container must have been finished",
        HumanDuration(DEFAULT_CONTAINER_GRACE)))]
    pub container_grace: Option<HumanDuration>,
    /// Also remove dangling volumes.
    #[arg(long)]
    pub volumes: bool,
    /// Also prune build cache older than min-age.
    #[arg(long)]
    pub build_cache: bool,
    /// Cap on deletions in one run.
    #[arg(long, value_name = "N")]
    pub max_deletions: Option<u32>,
    #[arg(long, value_name = "PATH", help = with_default(
        "Last-use state file kept by the daemon", DEFAULT_STATE_PATH))]
    pub state: Option<PathBuf>,
    /// File only: set to false to let GC remove ECS agent images (protected by default).
    #[arg(skip)]
    pub protect_ecs_agent: Option<bool>,
    /// File only: set to true to let `--containers` remove ECS-managed containers too.
    #[arg(skip)]
    pub remove_ecs_containers: Option<bool>,
    /// File only: concurrent delete requests.
    #[arg(skip)]
    pub concurrency: Option<usize>,
}

/// Validated settings of one `gc` run; `check` prints them serialized.
#[derive(Debug, Clone, Serialize)]
pub struct GcSettings {
    /// Set by the caller (`--dry-run`), not by the file.
    #[serde(skip)]
    pub dry_run: bool,
    #[serde(serialize_with = "ser_duration")]
    pub min_age: Duration,
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_age: Option<Duration>,
    pub keep_per_repo: u32,
    /// Patterns from `--exclude`/`exclude` then from the exclude file, in order.
    pub exclude: Vec<String>,
    pub exclude_file: Option<PathBuf>,
    #[serde(flatten, serialize_with = "ser_watermarks")]
    pub disk: Option<DiskWatermarks>,
    pub ensure_free: Option<FreeSpace>,
    pub containers: bool,
    #[serde(serialize_with = "ser_duration")]
    pub container_grace: Duration,
    pub volumes: bool,
    pub build_cache: bool,
    pub max_deletions: Option<u32>,
    pub state: PathBuf,
    pub protect_ecs_agent: bool,
    pub remove_ecs_containers: bool,
    pub concurrency: usize,
    /// Compiled from `exclude`.
    #[serde(skip)]
    pub excludes: ExcludeSet,
}

/// `high_water`/`low_water` as the file writes them (both null without disk mode).
fn ser_watermarks<S: Serializer>(disk: &Option<DiskWatermarks>, s: S) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Marks {
        high_water: Option<Watermark>,
        low_water: Option<Watermark>,
    }
    Marks {
        high_water: disk.map(|d| d.high),
        low_water: disk.map(|d| d.low),
    }
    .serialize(s)
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    d.map(HumanDuration).serialize(s)
}

/// The exclude file, compiled with docker-gc's semantics (`docker_gc`).
fn read_exclude_file(path: &Path) -> Result<Vec<GrepLine>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read exclude file {}: {e}", path.display()))?;
    docker_gc::parse(&text).map_err(|e| format!("exclude file {}: {e}", path.display()))
}

/// Flags win; a repeatable flag given at all replaces the file's list.
fn list<'a>(flags: &'a [String], file: &'a [String]) -> &'a [String] {
    if flags.is_empty() {
        file
    } else {
        flags
    }
}

impl GcSettings {
    /// The built-in defaults (no file, no flags).
    pub fn defaults() -> Self {
        let none = GcOptions::default();
        Self::resolve(Layered::new(&none, &none, &Default::default()))
            .unwrap_or_else(|e| unreachable!("defaults are valid: {e}"))
    }

    /// Merge flags over the file over the defaults, and validate.
    pub fn resolve(l: Layered<'_, GcOptions>) -> Result<Self, Invalid> {
        let (flags, file) = (l.flags, l.file);
        let disk = Self::watermarks(&l)?;
        let concurrency = file.concurrency.unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 || concurrency > MAX_CONCURRENCY {
            return Err(l.invalid(
                CONCURRENCY,
                false,
                true,
                format!("{concurrency} is outside 1..={MAX_CONCURRENCY}"),
            ));
        }
        // `--exclude` flags (globs) add to the file's lines (docker-gc regexes).
        let mut exclude = list(&flags.exclude, &file.exclude).to_vec();
        let exclude_file = flags
            .exclude_file
            .clone()
            .or_else(|| file.exclude_file.clone());
        let excludes = ExcludeSet::new(&exclude)
            .map_err(|e| l.invalid(EXCLUDE, !flags.exclude.is_empty(), true, e.to_string()))?;
        let excludes = match &exclude_file {
            Some(path) => {
                let lines = read_exclude_file(path)
                    .map_err(|m| l.invalid(EXCLUDE_FILE, flags.exclude_file.is_some(), true, m))?;
                exclude.extend(lines.iter().map(|g| g.line.clone()));
                excludes.with_file(lines)
            }
            None => excludes,
        };
        let min_age = flags
            .min_age
            .or(file.min_age)
            .map_or(DEFAULT_MIN_AGE, |d| d.0);
        let max_age = flags.max_age.or(file.max_age).map(|d| d.0);
        if let Some(max_age) = max_age.filter(|&m| m <= min_age) {
            return Err(l.invalid(
                MAX_AGE,
                flags.max_age.is_some(),
                true,
                format!(
                    "max age {} is not above min age {}; images younger than min age are \
                     always kept, so set max age above it",
                    HumanDuration(max_age),
                    HumanDuration(min_age)
                ),
            ));
        }
        Ok(Self {
            dry_run: false,
            min_age,
            max_age,
            keep_per_repo: flags
                .keep_per_repo
                .or(file.keep_per_repo)
                .unwrap_or(DEFAULT_KEEP_PER_REPO),
            exclude,
            exclude_file,
            disk,
            ensure_free: flags.ensure_free.or(file.ensure_free),
            containers: flags.containers || file.containers,
            container_grace: flags
                .container_grace
                .or(file.container_grace)
                .map_or(DEFAULT_CONTAINER_GRACE, |d| d.0),
            volumes: flags.volumes || file.volumes,
            build_cache: flags.build_cache || file.build_cache,
            max_deletions: flags.max_deletions.or(file.max_deletions),
            state: flags
                .state
                .clone()
                .or_else(|| file.state.clone())
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
            protect_ecs_agent: file.protect_ecs_agent.unwrap_or(true),
            remove_ecs_containers: file.remove_ecs_containers.unwrap_or(false),
            concurrency,
            excludes,
        })
    }

    /// Both watermarks or neither; low water not above high water (same units).
    fn watermarks(l: &Layered<'_, GcOptions>) -> Result<Option<DiskWatermarks>, Invalid> {
        let (flags, file) = (l.flags, l.file);
        let high = flags.high_water.or(file.high_water);
        let low = flags.low_water.or(file.low_water);
        let low_from_flag = flags.low_water.is_some();
        match (high, low) {
            (None, None) => Ok(None),
            (Some(high), Some(low)) => {
                let inverted = match (high, low) {
                    (Watermark::Percent(h), Watermark::Percent(l)) => l > h,
                    (Watermark::Bytes(h), Watermark::Bytes(l)) => l > h,
                    _ => false,
                };
                if inverted {
                    return Err(l.invalid(
                        LOW_WATER,
                        low_from_flag,
                        true,
                        format!("low water {low} is above high water {high}"),
                    ));
                }
                Ok(Some(DiskWatermarks { high, low }))
            }
            (Some(_), None) => Err(l.invalid(
                LOW_WATER,
                false,
                false,
                "high water is set but low water is not; set both",
            )),
            (None, Some(_)) => Err(l.invalid(
                HIGH_WATER,
                false,
                false,
                "low water is set but high water is not; set both",
            )),
        }
    }

    /// The planner's view of these settings.
    pub fn policy(&self) -> Policy {
        Policy {
            min_age: self.min_age,
            max_age: self.max_age,
            keep_per_repo: self.keep_per_repo,
            excludes: self.excludes.clone(),
            protect_ecs_agent: self.protect_ecs_agent,
            disk: self.disk,
            ensure_free: self.ensure_free,
            containers: self.containers,
            container_grace: self.container_grace,
            remove_ecs_containers: self.remove_ecs_containers,
            volumes: self.volumes,
            max_deletions: self.max_deletions,
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::config::layer::{FileText, Origin};

    /// `gc` flags as the command line gives them.
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        options: GcOptions,
    }

    fn flags(args: &[&str]) -> GcOptions {
        Flags::try_parse_from(std::iter::once("gc").chain(args.iter().copied()))
            .expect("flags parse")
            .options
    }

    fn file(text: &str) -> (GcOptions, FileText) {
        #[derive(Deserialize)]
        struct Doc {
            #[serde(default)]
            gc: GcOptions,
        }
        let doc: Doc = toml::from_str(text).expect("file parses");
        (doc.gc, FileText::new(Path::new("x.toml"), text))
    }

    fn resolve(flag_args: &[&str], text: &str) -> Result<GcSettings, Invalid> {
        let flags = flags(flag_args);
        let (file, text) = file(text);
        GcSettings::resolve(Layered::new(&flags, &file, &text))
    }

    #[test]
    fn defaults_match_spec() {
        let s = GcSettings::defaults();
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
        let s = resolve(
            &["--min-age", "0s", "--exclude", "app:*"],
            "[gc]\nmin_age = \"2h\"\nkeep_per_repo = 3\nexclude = [\"redis:*\"]\n",
        )
        .unwrap();
        assert_eq!(s.min_age, Duration::ZERO);
        assert_eq!(s.keep_per_repo, 3);
        assert_eq!(s.exclude, vec!["app:*".to_owned()]);
    }

    #[test]
    fn help_shows_the_defaults_written_once() {
        use clap::CommandFactory;
        let help = Flags::command().render_long_help().to_string();
        assert!(help.contains("[default: 1h]"), "{help}");
        assert!(
            help.contains("[default: /var/lib/shipshape/state.json]"),
            "{help}"
        );
    }

    #[test]
    fn bad_duration_flag_is_refused_by_the_parser_naming_the_flag() {
        let e = Flags::try_parse_from(["gc", "--min-age", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--min-age"), "{e}");
        assert!(e.to_string().contains("\"soon\""), "{e}");
    }

    #[test]
    fn bad_watermark_flag_is_refused_by_the_parser() {
        let e = Flags::try_parse_from(["gc", "--high-water", "lots", "--low-water", "10%"])
            .unwrap_err();
        assert!(e.to_string().contains("--high-water") && e.to_string().contains("lots"));
    }

    #[test]
    fn low_above_high_is_refused_naming_key_and_line() {
        let e = resolve(&[], "[gc]\nhigh_water = \"70%\"\nlow_water = \"80%\"\n").unwrap_err();
        assert_eq!(e.key, LOW_WATER);
        assert_eq!(e.origin, Origin::File { line: Some(3) });
        assert!(e.to_string().contains("gc.low_water"), "{e}");
    }

    #[test]
    fn low_above_high_from_flags_names_the_flag() {
        let e = resolve(&["--high-water", "70%", "--low-water", "80%"], "").unwrap_err();
        assert_eq!(e.origin, Origin::Flag);
        assert!(e.to_string().starts_with("invalid --low-water"), "{e}");
    }

    #[test]
    fn high_without_low_in_file_is_refused() {
        let e = resolve(&[], "[gc]\nhigh_water = \"70%\"\n").unwrap_err();
        assert_eq!(e.key, LOW_WATER);
    }

    #[test]
    fn max_age_and_ensure_free_come_from_flags_or_file() {
        let s = resolve(
            &["--ensure-free", "2GiB,1000"],
            "[gc]\nmax_age = \"1d\"\nhigh_water = \"85%\"\nlow_water = \"75%\"\n",
        )
        .unwrap();
        assert_eq!(s.max_age, Some(Duration::from_secs(86_400)));
        assert_eq!(
            s.ensure_free,
            Some(FreeSpace {
                bytes: 2 << 30,
                inodes: Some(1000)
            })
        );
        let p = s.policy();
        assert!(p.max_age.is_some() && p.disk.is_some() && p.ensure_free.is_some());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["max_age"], "1day");
        assert_eq!(v["ensure_free"], "2.0 GiB,1000");
        assert!(GcSettings::defaults().max_age.is_none());
    }

    #[test]
    fn max_age_not_above_min_age_is_refused_naming_the_key() {
        let e = resolve(&[], "[gc]\nmin_age = \"2h\"\nmax_age = \"1h\"\n").unwrap_err();
        assert_eq!(e.key, MAX_AGE);
        assert_eq!(e.origin, Origin::File { line: Some(3) });
        let e = resolve(&["--max-age", "30m"], "").unwrap_err();
        assert!(e.to_string().starts_with("invalid --max-age"), "{e}");
    }

    #[test]
    fn bad_ensure_free_flag_is_refused_by_the_parser() {
        let e = Flags::try_parse_from(["gc", "--ensure-free", "10GB,lots"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("--ensure-free"), "{e}");
    }

    #[test]
    fn concurrency_out_of_range_is_refused() {
        let e = resolve(&[], "[gc]\nconcurrency = 0\n").unwrap_err();
        assert_eq!(e.key, CONCURRENCY);
        assert_eq!(e.origin, Origin::File { line: Some(2) });
    }

    #[test]
    fn bad_glob_is_refused_naming_it() {
        let e = resolve(&["--exclude", "app:[1"], "").unwrap_err();
        assert_eq!(e.key, EXCLUDE);
        assert!(e.to_string().contains("app:[1"), "{e}");
    }

    #[test]
    fn an_invalid_exclude_file_line_is_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exclude");
        std::fs::write(&path, "redis:.*\napp:\\(\n").unwrap();
        let e = resolve(&["--exclude-file", path.to_str().unwrap()], "").unwrap_err();
        assert_eq!(e.key, EXCLUDE_FILE);
        let text = e.to_string();
        assert!(
            text.contains("line 2") && text.contains(path.to_str().unwrap()),
            "{text}"
        );
    }

    #[test]
    fn exclude_file_adds_to_patterns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exclude");
        std::fs::write(&path, "busybox\n").unwrap();
        let text = format!(
            "[gc]\nexclude = [\"redis:*\"]\nexclude_file = {:?}\n",
            path.display().to_string()
        );
        let s = resolve(&[], &text).unwrap();
        assert_eq!(s.exclude, vec!["redis:*", "busybox"]);
    }

    #[test]
    fn missing_exclude_file_is_refused_naming_it() {
        let e = resolve(&["--exclude-file", "/nonexistent/excl"], "").unwrap_err();
        assert_eq!(e.key, EXCLUDE_FILE);
        assert!(e.to_string().contains("/nonexistent/excl"), "{e}");
    }

    #[test]
    fn check_shows_the_resolved_settings() {
        let s = resolve(&[], "[gc]\nhigh_water = \"85%\"\nlow_water = \"75%\"\n").unwrap();
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["min_age"], "1h");
        assert_eq!(v["high_water"], "85%");
        assert_eq!(v["low_water"], "75%");
        assert_eq!(v["concurrency"], 4);
        assert!(v.get("excludes").is_none() && v.get("dry_run").is_none());
    }
}
