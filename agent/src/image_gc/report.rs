//! What a `gc` run reports: the plan and, beside it, what happened to each item
//! (or, for a dry run, what would). Rendered as a table a person can scan (image,
//! tags, size, action, reason, then containers, volumes and the total reclaimed)
//! or as the JSON document of SPEC.md, through the `#[derive(Serialize)]` types
//! below. `GcSummary` is the daemon's digest of it.

use std::fmt::Display;
use std::io::{self, Write};

use serde::Serialize;
use tabwriter::TabWriter;

use super::executor::{ExecStats, Outcomes};
use super::layers::Unaccounted;
use super::planner::{Action, ContainerEntry, ImageEntry, Plan, VolumeEntry};
use super::reason::Outcome;
use crate::config::value::{format_size, FreeSpace};
use crate::ports::disk::FsUsage;
use crate::ports::docker::DataUsage;
use crate::shared::reference::short_id;
use chrono::{DateTime, Utc};

/// The result of one pass, ready to print or summarise.
#[derive(Debug, Clone)]
pub struct Report {
    pub dry_run: bool,
    /// The plan as the planner made it.
    pub plan: Plan,
    /// What happened to the items the plan deletes (a dry run: what would).
    pub outcomes: Outcomes,
    /// `None` for a dry run.
    pub stats: Option<ExecStats>,
    pub disk_before: Option<FsUsage>,
    /// Engine API calls the snapshot (the plan) made.
    pub plan_api_calls: u64,
    /// `--ensure-free`: whether the filesystem has that much free after the pass
    /// (a dry run: estimated from the image sizes).
    pub ensure_free: Option<FreeCheck>,
    /// A dry run's estimates from `/system/df`; `None` otherwise or when unread.
    pub estimates: Option<Estimates>,
    /// Bytes of container log files under Docker's root directory, when measured.
    pub container_log_bytes: Option<u64>,
    /// Bytes under Docker's root directory the engine does not account for (leaked
    /// layers); `None` when not looked at.
    pub unaccounted: Option<Unaccounted>,
}

/// What a dry run predicts from the engine's own accounting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Estimates {
    /// Image ID → bytes only it holds.
    pub unique_sizes: std::collections::HashMap<String, u64>,
    /// Image ID → inodes its deletion frees, in plan order (the layer store, see
    /// `super::layers`); empty when not estimated.
    pub inodes: std::collections::HashMap<String, u64>,
    /// Build-cache records `/system/df` lists, and their total size.
    pub build_cache_records: u64,
    pub build_cache_size: u64,
    /// Build cache `--build-cache` would prune; `None` without the flag.
    pub build_cache_bytes: Option<u64>,
    /// How many records that prune would delete; `None` without the flag.
    pub build_cache_prunable: Option<u64>,
}

impl Estimates {
    /// From `/system/df`: the build cache a prune `older_than` before `now` takes
    /// is its unused, unshared records last used before then (a shared record
    /// frees less than its size, so it is left out: a lower bound).
    pub fn new(
        usage: DataUsage,
        build_cache: Option<std::time::Duration>,
        now: DateTime<Utc>,
    ) -> Self {
        let prunable: Option<Vec<u64>> = build_cache.map(|older_than| {
            let cutoff = now - chrono::Duration::from_std(older_than).unwrap_or_default();
            usage
                .build_cache
                .iter()
                .filter(|r| !r.in_use && !r.shared && r.last_used.is_some_and(|t| t <= cutoff))
                .map(|r| r.size)
                .collect()
        });
        Self {
            unique_sizes: usage.unique_sizes,
            inodes: std::collections::HashMap::new(),
            build_cache_records: usage.build_cache.len() as u64,
            build_cache_size: usage.build_cache.iter().map(|r| r.size).sum(),
            build_cache_bytes: prunable.as_ref().map(|p| p.iter().sum()),
            build_cache_prunable: prunable.as_ref().map(|p| p.len() as u64),
        }
    }
}

/// The `--ensure-free` gate after the pass (exit 3 when not met).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FreeCheck {
    pub target: FreeSpace,
    /// `None` when the filesystem could not be measured after the pass.
    pub free_bytes: Option<u64>,
    pub free_inodes: Option<u64>,
    pub met: bool,
}

/// One item as the report shows it: what was done (or would be) and why.
struct Shown {
    action: &'static str,
    reason: String,
}

impl Report {
    /// The verb for an action, in this run's tense.
    pub fn verb(&self, action: Action) -> &'static str {
        match (action, self.dry_run) {
            (Action::Delete, true) => "would delete",
            (Action::Delete, false) => "deleted",
            (Action::Keep, _) => "kept",
        }
    }

    /// An item whose deletion did not happen is kept, with the outcome as reason;
    /// everything else reads as planned.
    fn shown(&self, action: Action, reason: &dyn Display, outcome: Option<&Outcome>) -> Shown {
        match outcome {
            // Someone else removed it meanwhile: gone, but not by this run.
            Some(Outcome::AlreadyGone) => Shown {
                action: self.verb(action),
                reason: Outcome::AlreadyGone.to_string(),
            },
            Some(outcome) if !outcome.is_gone() => Shown {
                action: self.verb(Action::Keep),
                reason: outcome.to_string(),
            },
            _ => Shown {
                action: self.verb(action),
                reason: reason.to_string(),
            },
        }
    }

    fn images(&self) -> impl Iterator<Item = (&ImageEntry, Shown)> {
        self.plan.images.iter().enumerate().map(|(i, e)| {
            let outcome = self.outcomes.images.get(i).and_then(Option::as_ref);
            (e, self.shown(e.action, &e.reason, outcome))
        })
    }

    fn containers(&self) -> impl Iterator<Item = (&ContainerEntry, Shown)> {
        self.plan.containers.iter().enumerate().map(|(i, c)| {
            let outcome = self.outcomes.containers.get(i).and_then(Option::as_ref);
            (c, self.shown(c.action, &c.reason, outcome))
        })
    }

    fn volumes(&self) -> impl Iterator<Item = (&VolumeEntry, Shown)> {
        self.plan.volumes.iter().enumerate().map(|(i, v)| {
            let outcome = self.outcomes.volumes.get(i).and_then(Option::as_ref);
            (v, self.shown(v.action, &v.reason, outcome))
        })
    }

    /// Images gone (or, in a dry run, that would go).
    pub fn images_deleted(&self) -> usize {
        self.outcomes
            .images
            .iter()
            .flatten()
            .filter(|o| o.is_gone())
            .count()
    }

    /// Bytes reclaimed: in a real run, measured on Docker's filesystem (used bytes
    /// before the snapshot minus after the run, so shared layers count once and
    /// what else wrote meanwhile counts too); without both measures, and in a dry
    /// run, the estimate ([`Self::estimated_reclaimed_bytes`]).
    pub fn reclaimed_bytes(&self) -> u64 {
        self.measured_reclaimed()
            .map_or_else(|| self.estimated_reclaimed_bytes(), |(bytes, _)| bytes)
    }

    /// A real run: the sum of the deleted images' sizes plus the build cache the
    /// engine says it pruned; an image's size counts the layers it shares in full,
    /// so this is an upper bound. A dry run: each image's unique size and the build
    /// cache a prune would take, from `/system/df` when it was read, else the sizes.
    pub fn estimated_reclaimed_bytes(&self) -> u64 {
        if let Some(s) = &self.stats {
            return s.reclaimed_bytes;
        }
        let images: u64 = self
            .plan
            .images
            .iter()
            .zip(&self.outcomes.images)
            .filter(|(_, o)| o.as_ref().is_some_and(Outcome::is_gone))
            .map(|(e, _)| self.unique_size(&e.id).unwrap_or(e.size))
            .sum();
        images + self.predicted_build_cache().unwrap_or(0)
    }

    /// The bytes only this image holds, when the dry run read them.
    pub fn unique_size(&self, id: &str) -> Option<u64> {
        self.estimates.as_ref()?.unique_sizes.get(id).copied()
    }

    fn predicted_build_cache(&self) -> Option<u64> {
        self.estimates.as_ref()?.build_cache_bytes
    }

    /// (bytes, inodes) freed on Docker's filesystem by a real run, when it was
    /// measured before and after; a filesystem fuller after counts as nothing freed.
    pub fn measured_reclaimed(&self) -> Option<(u64, u64)> {
        let (before, after) = (self.disk_before?, self.disk_after()?);
        Some((
            before.used_bytes.saturating_sub(after.used_bytes),
            before.used_inodes.saturating_sub(after.used_inodes),
        ))
    }

    pub fn disk_after(&self) -> Option<FsUsage> {
        self.stats.as_ref().and_then(|s| s.disk_after)
    }

    /// `--ensure-free` was given and is not met (exit 3)?
    pub fn free_goal_missed(&self) -> bool {
        self.ensure_free.is_some_and(|c| !c.met)
    }

    /// Anything failed (other than 404/409, which are expected)?
    pub fn failed(&self) -> bool {
        self.stats.as_ref().is_some_and(|s| s.failures > 0)
    }

    /// The build cache as the engine accounts for it (a dry run: `/system/df`) and
    /// what the prune took (a real run with `--build-cache`) or would take; `None`
    /// when neither was asked.
    pub fn build_cache(&self) -> Option<BuildCacheDto> {
        match (&self.stats, &self.estimates) {
            (Some(stats), _) => stats.build_cache_bytes.map(|bytes| BuildCacheDto {
                bytes: None,
                deleted_records: stats.build_cache_records,
                reclaimed_bytes: Some(bytes),
                records: None,
            }),
            (None, Some(e)) => Some(BuildCacheDto {
                bytes: Some(e.build_cache_size),
                deleted_records: e.build_cache_prunable,
                reclaimed_bytes: e.build_cache_bytes,
                records: Some(e.build_cache_records),
            }),
            (None, None) => None,
        }
    }

    /// The SPEC JSON document.
    pub fn to_dto(&self) -> ReportDto<'_> {
        ReportDto {
            build_cache: self.build_cache(),
            build_cache_reclaimed_bytes: match &self.stats {
                Some(s) => s.build_cache_bytes,
                None => self.predicted_build_cache(),
            },
            container_log_bytes: self.container_log_bytes,
            containers: self
                .containers()
                .map(|(c, shown)| ContainerDto {
                    action: shown.action,
                    id: &c.id,
                    image: &c.image,
                    name: &c.name,
                    reason: shown.reason,
                })
                .collect(),
            disk: DiskDto {
                after: self.disk_after().map(UsageDto::from),
                before: self.disk_before.map(UsageDto::from),
            },
            dry_run: self.dry_run,
            ensure_free: self.ensure_free.map(|c| EnsureFreeDto {
                free_bytes: c.free_bytes,
                free_inodes: c.free_inodes,
                met: c.met,
                target_bytes: c.target.bytes,
                target_inodes: c.target.inodes,
            }),
            images: self
                .images()
                .map(|(e, shown)| ImageDto {
                    action: shown.action,
                    digests: &e.digests,
                    id: &e.id,
                    reason: shown.reason,
                    size: e.size,
                    tags: &e.tags,
                    unique_size: self.unique_size(&e.id),
                })
                .collect(),
            estimated_reclaimed_bytes: self.estimated_reclaimed_bytes(),
            reclaimed_bytes: self.reclaimed_bytes(),
            reclaimed_bytes_measured: self.measured_reclaimed().is_some(),
            reclaimed_inodes: self.measured_reclaimed().map(|(_, inodes)| inodes),
            unaccounted_bytes: self.unaccounted.as_ref().and_then(Unaccounted::bytes),
            volumes: self
                .volumes()
                .map(|(v, shown)| VolumeDto {
                    action: shown.action,
                    name: &v.name,
                    reason: shown.reason,
                })
                .collect(),
        }
    }

    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &self.to_dto())?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let rows: Vec<[String; 5]> = self
            .images()
            .map(|(e, shown)| {
                [
                    short_id(&e.id).to_owned(),
                    // A digest-only image is named by its `repo@digest`s.
                    if e.tags.is_empty() && e.digests.is_empty() {
                        "<none>".to_owned()
                    } else if e.tags.is_empty() {
                        e.digests.join(",")
                    } else {
                        e.tags.join(",")
                    },
                    format_size(e.size),
                    shown.action.to_owned(),
                    shown.reason,
                ]
            })
            .collect();
        table(out, ["IMAGE", "TAGS", "SIZE", "ACTION", "REASON"], &rows)?;
        if !self.plan.containers.is_empty() {
            writeln!(out)?;
            let rows: Vec<[String; 5]> = self
                .containers()
                .map(|(c, shown)| {
                    [
                        short_id(&c.id).to_owned(),
                        c.name.clone(),
                        c.image.clone(),
                        shown.action.to_owned(),
                        shown.reason,
                    ]
                })
                .collect();
            table(
                out,
                ["CONTAINER", "NAME", "IMAGE", "ACTION", "REASON"],
                &rows,
            )?;
        }
        if !self.plan.volumes.is_empty() {
            writeln!(out)?;
            let rows: Vec<[String; 3]> = self
                .volumes()
                .map(|(v, shown)| [v.name.clone(), shown.action.to_owned(), shown.reason])
                .collect();
            table(out, ["VOLUME", "ACTION", "REASON"], &rows)?;
        }
        writeln!(out)?;
        let deleted = self.images_deleted();
        let kept = self.plan.images.len() - deleted;
        let (done, verb) = if self.dry_run {
            ("to delete", "would reclaim")
        } else {
            ("deleted", "reclaimed")
        };
        write!(
            out,
            "Total: {deleted} images {done}, {kept} kept; {verb} {}",
            format_size(self.reclaimed_bytes())
        )?;
        match self.measured_reclaimed() {
            Some((_, inodes)) => writeln!(
                out,
                " and {inodes} inodes, measured (image and build cache sizes sum to {})",
                format_size(self.estimated_reclaimed_bytes())
            )?,
            None if self.estimates.is_some() => writeln!(
                out,
                " (unique sizes{})",
                if self.predicted_build_cache().is_some() {
                    " and build cache records"
                } else {
                    ""
                }
            )?,
            None if self.estimated_reclaimed_bytes() > 0 => {
                writeln!(out, " at most (image sizes; shared layers counted in full)")?
            }
            None => writeln!(out)?,
        }
        match self.build_cache() {
            Some(BuildCacheDto {
                reclaimed_bytes: Some(bytes),
                records: None,
                deleted_records,
                ..
            }) => {
                write!(out, "Build cache: {} reclaimed", format_size(bytes))?;
                match deleted_records {
                    Some(n) => writeln!(out, " ({n} records deleted)")?,
                    None => writeln!(out)?,
                }
            }
            Some(BuildCacheDto {
                records: Some(records),
                bytes: Some(size),
                reclaimed_bytes,
                deleted_records,
            }) => {
                let all = format!("{records} records, {} in all", format_size(size));
                match (reclaimed_bytes, deleted_records) {
                    (Some(bytes), Some(n)) => writeln!(
                        out,
                        "Build cache: would reclaim {} ({n} of {all})",
                        format_size(bytes)
                    )?,
                    _ if records > 0 => {
                        writeln!(out, "Build cache: {all}; pruned only with --build-cache")?
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if let Some(bytes) = self.container_log_bytes.filter(|b| *b > 0) {
            writeln!(
                out,
                "Container logs: {} (not removed by gc; limit them with the log driver's max-size)",
                format_size(bytes)
            )?;
        }
        match &self.unaccounted {
            Some(Unaccounted::Measured { bytes, dirs }) if *bytes > 0 => writeln!(
                out,
                "Unaccounted: {} in {dirs} {} under overlay2/ that no image, container \
                 or build cache names (leaked layers; not removed by gc)",
                format_size(*bytes),
                if *dirs == 1 {
                    "directory"
                } else {
                    "directories"
                }
            )?,
            Some(Unaccounted::OtherDriver(driver)) => writeln!(
                out,
                "Unaccounted: not measured (storage driver {driver}; only overlay2 is read)"
            )?,
            Some(Unaccounted::TooLarge) => writeln!(
                out,
                "Unaccounted: not measured (more than {} entries to walk)",
                super::layers::WALK_LIMIT
            )?,
            _ => {}
        }
        if let Some(check) = self.ensure_free {
            let free = check
                .free_bytes
                .map_or("unmeasured".to_owned(), format_size);
            let (verb, state) = match (self.dry_run, check.met) {
                (true, true) => ("would be", "met"),
                (true, false) => ("would be", "NOT met"),
                (false, true) => ("is", "met"),
                (false, false) => ("is", "NOT met"),
            };
            writeln!(
                out,
                "Ensure free {}: {free} {verb} free; {state}",
                check.target.describe()
            )?;
        }
        if let Some(before) = self.disk_before {
            match self.disk_after() {
                Some(after) => writeln!(
                    out,
                    "Disk: {:.1}% used before, {:.1}% after",
                    before.bytes_ratio() * 100.0,
                    after.bytes_ratio() * 100.0
                )?,
                None => writeln!(out, "Disk: {:.1}% used", before.bytes_ratio() * 100.0)?,
            }
        }
        Ok(())
    }
}

/// Left-aligned columns two spaces apart; the last column is not padded and no
/// line ends in blanks.
fn table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut tw = TabWriter::new(Vec::new()).minwidth(0).padding(2);
    for cells in std::iter::once(header.map(str::to_owned)).chain(rows.iter().cloned()) {
        // A tab would end a cell early; the engine allows none in these fields.
        let cells = cells.map(|c| c.replace('\t', " "));
        writeln!(tw, "{}", cells.join("\t"))?;
    }
    let text = tw
        .into_inner()
        .map_err(|e| io::Error::new(e.error().kind(), e.to_string()))?;
    for line in String::from_utf8_lossy(&text).lines() {
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

/// The JSON report (SPEC.md, `gc`). Fields are in alphabetical order, as every
/// version of shipshape has printed them.
#[derive(Debug, Serialize)]
pub struct ReportDto<'a> {
    /// The build cache: accounted and would-be pruned (dry run), pruned (real run
    /// with `--build-cache`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_cache: Option<BuildCacheDto>,
    /// `build_cache.reclaimed_bytes`, as shipshape printed it before the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_cache_reclaimed_bytes: Option<u64>,
    /// Container log files under Docker's root directory (gc does not remove them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_log_bytes: Option<u64>,
    pub containers: Vec<ContainerDto<'a>>,
    pub disk: DiskDto,
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ensure_free: Option<EnsureFreeDto>,
    /// Deleted images' sizes plus build cache pruned (shared layers in full).
    pub estimated_reclaimed_bytes: u64,
    pub images: Vec<ImageDto<'a>>,
    /// Measured on the filesystem when `reclaimed_bytes_measured`, else the estimate.
    pub reclaimed_bytes: u64,
    pub reclaimed_bytes_measured: bool,
    /// Inodes freed, measured; absent when not measured (and in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimed_inodes: Option<u64>,
    /// Bytes under `overlay2/` that no layer, container or BuildKit snapshot
    /// names (leaked layers); absent when not measured (another storage driver, an
    /// engine on another host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unaccounted_bytes: Option<u64>,
    pub volumes: Vec<VolumeDto<'a>>,
}

/// The report's `build_cache` object; fields absent when not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BuildCacheDto {
    /// Total size of the records (a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Records the prune deleted (real run) or would delete (dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_records: Option<u64>,
    /// What the prune reclaimed (the engine's answer) or would reclaim (unused,
    /// unshared records old enough: a lower bound).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reclaimed_bytes: Option<u64>,
    /// Records the engine lists (a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
}

/// `--ensure-free` after the pass.
#[derive(Debug, Serialize)]
pub struct EnsureFreeDto {
    pub free_bytes: Option<u64>,
    pub free_inodes: Option<u64>,
    pub met: bool,
    pub target_bytes: u64,
    pub target_inodes: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ImageDto<'a> {
    pub action: &'static str,
    pub digests: &'a [String],
    pub id: &'a str,
    pub reason: String,
    pub size: u64,
    pub tags: &'a [String],
    /// Bytes only this image holds (`/system/df`), in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unique_size: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct ContainerDto<'a> {
    pub action: &'static str,
    pub id: &'a str,
    pub image: &'a str,
    pub name: &'a str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct VolumeDto<'a> {
    pub action: &'static str,
    pub name: &'a str,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct DiskDto {
    pub after: Option<UsageDto>,
    pub before: Option<UsageDto>,
}

#[derive(Debug, Serialize)]
pub struct UsageDto {
    pub total_bytes: u64,
    pub total_inodes: u64,
    pub used_bytes: u64,
    pub used_inodes: u64,
}

impl From<FsUsage> for UsageDto {
    fn from(u: FsUsage) -> Self {
        Self {
            total_bytes: u.total_bytes,
            total_inodes: u.total_inodes,
            used_bytes: u.used_bytes,
            used_inodes: u.used_inodes,
        }
    }
}

/// What one GC pass did, for the daemon's metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcSummary {
    pub images_deleted: u64,
    pub containers_deleted: u64,
    pub volumes_deleted: u64,
    pub bytes_reclaimed: u64,
    /// Usage ratio (0..1) of Docker's filesystem after the pass, when measured.
    pub disk_usage_ratio: Option<f64>,
    /// Bytes of container log files under Docker's root directory, when measured.
    pub container_log_bytes: Option<u64>,
    /// Bytes under Docker's root directory the engine does not account for, when
    /// measured.
    pub unaccounted_bytes: Option<u64>,
}

impl GcSummary {
    pub fn from_report(report: &Report) -> Self {
        let stats = report.stats.clone().unwrap_or_default();
        Self {
            images_deleted: stats.images_deleted,
            containers_deleted: stats.containers_deleted,
            volumes_deleted: stats.volumes_deleted,
            bytes_reclaimed: report.reclaimed_bytes(),
            disk_usage_ratio: report
                .disk_after()
                .or(report.disk_before)
                .map(|u| u.bytes_ratio()),
            container_log_bytes: report.container_log_bytes,
            unaccounted_bytes: report.unaccounted.as_ref().and_then(Unaccounted::bytes),
        }
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
