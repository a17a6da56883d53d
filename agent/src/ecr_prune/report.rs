//! What a run did: per repository its plan and, beside it, the outcome (typed), for
//! people (a text plan) and for programs (the JSON of SPEC.md: `{"apply","repositories":
//! [{"name","images_before","images_after","units":[{"digest","tags","pushed_at",
//! "action","reason"}],"error"}]}`, built from `#[derive(Serialize)]` types), and the
//! daemon's figures (`EcrSummary`).

use std::io::Write;

use serde::Serialize;

use super::executor::Deletion;
use super::planner::{Reason, Refusal, RepoPlan};
use super::rules::Action;
use super::validation::{Validation, Violation};
use crate::ports::ecr::{ApiError, DeleteFailure, FailureCode};

/// What happened to one repository in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoOutcome {
    /// Cancelled before it was read: no plan.
    NotRead,
    /// Its images could not be read: no plan.
    ReadFailed(ApiError),
    /// Planned only (no `--apply`).
    Planned,
    /// The plan deletes more than `--max-delete-percent`: nothing was deleted (in plan
    /// mode too, so the plan shows it would be refused).
    Refused(Refusal),
    /// The plan's deletions, carried out.
    Applied(Deletion),
}

/// Why a repository counts as failed (the CLI exits 1): the report's `error` line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoError {
    #[error("cancelled before this repository was read")]
    NotRead,
    #[error("cannot read images ({0})")]
    Unreadable(ApiError),
    #[error("{0}")]
    Refused(Refusal),
    #[error("delete failed ({error}); {deleted_before} images deleted before")]
    DeleteCall {
        error: ApiError,
        deleted_before: usize,
    },
    #[error("{count} images could not be deleted (first: {first_digest} {first_code})")]
    ImagesFailed {
        count: usize,
        first_digest: String,
        first_code: FailureCode,
    },
    #[error("cancelled before all deletions")]
    Cancelled,
    #[error("validation after the apply failed: {first}{}", more_violations(*count))]
    Validation { count: usize, first: Violation },
    #[error("cannot validate the apply: reading the repository again failed ({0})")]
    ValidationUnreadable(ApiError),
}

fn more_violations(count: usize) -> String {
    match count {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    }
}

/// One repository: its plan (None when it was not read) and what happened.
#[derive(Debug, Clone)]
pub struct RepoReport {
    pub name: String,
    pub plan: Option<RepoPlan>,
    pub outcome: RepoOutcome,
    /// Digest of the snapshot the plan was made from (`reviewed::repository_digest`).
    pub inputs_digest: Option<String>,
    /// The validation pass after deletions (None when nothing was deleted).
    pub validation: Option<Result<Validation, ApiError>>,
    /// Applying a reviewed plan: was the repository as it was when planned?
    pub unchanged_since_plan: Option<bool>,
}

impl RepoReport {
    /// Images in the repository after this run (planned, or after deleting).
    pub fn images_after(&self) -> usize {
        let Some(plan) = &self.plan else { return 0 };
        match &self.outcome {
            RepoOutcome::Refused(_) => plan.images_before,
            RepoOutcome::Applied(d) => plan.images_before.saturating_sub(d.deleted()),
            RepoOutcome::Planned | RepoOutcome::NotRead | RepoOutcome::ReadFailed(_) => {
                plan.images_after
            }
        }
    }

    /// Images deleted (or already gone), when deletions ran.
    pub fn deleted(&self) -> Option<usize> {
        match &self.outcome {
            RepoOutcome::Applied(d) => Some(d.deleted()),
            _ => None,
        }
    }

    /// Per-image refusals by ECR, when deletions ran.
    pub fn failures(&self) -> Vec<DeleteFailure> {
        match &self.outcome {
            RepoOutcome::Applied(d) => d.failures(),
            _ => Vec::new(),
        }
    }

    /// A violated or unreadable validation pass.
    fn validation_error(&self) -> Option<RepoError> {
        match self.validation.as_ref()? {
            Err(e) => Some(RepoError::ValidationUnreadable(e.clone())),
            Ok(v) => v.violations.first().map(|first| RepoError::Validation {
                count: v.violations.len(),
                first: first.clone(),
            }),
        }
    }

    /// Units the reviewed plan expired that this apply kept (newly protected or changed).
    pub fn kept_at_apply(&self) -> Vec<&str> {
        self.plan.as_ref().map_or_else(Vec::new, |p| {
            p.units
                .iter()
                .filter(|u| matches!(u.reason, Reason::KeptAtApply(_)))
                .map(|u| u.unit.digest.as_str())
                .collect()
        })
    }

    /// Why this repository failed, if it did. A failed call comes before per-image
    /// failures, which come before a cancellation.
    pub fn error(&self) -> Option<RepoError> {
        match &self.outcome {
            RepoOutcome::NotRead => Some(RepoError::NotRead),
            RepoOutcome::ReadFailed(e) => Some(RepoError::Unreadable(e.clone())),
            RepoOutcome::Planned => None,
            RepoOutcome::Refused(r) => Some(RepoError::Refused(*r)),
            RepoOutcome::Applied(d) => {
                let failures = d.failures();
                if let Some(error) = &d.call_error {
                    Some(RepoError::DeleteCall {
                        error: error.clone(),
                        deleted_before: d.deleted(),
                    })
                } else if let Some(first) = failures.first() {
                    Some(RepoError::ImagesFailed {
                        count: failures.len(),
                        first_digest: first.digest.clone(),
                        first_code: first.code.clone(),
                    })
                } else if d.cancelled() {
                    Some(RepoError::Cancelled)
                } else {
                    self.validation_error()
                }
            }
        }
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub apply: bool,
    /// Sorted by name.
    pub repositories: Vec<RepoReport>,
    /// The reviewed plan this run applied (`--apply --plan`).
    pub reviewed: Option<ReviewedInfo>,
}

/// The reviewed plan a run applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewedInfo {
    pub path: std::path::PathBuf,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub inputs_digest: String,
}

/// What one prune pass did, for the daemon's metrics and logs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EcrSummary {
    /// Repository → images deleted in it.
    pub deleted_per_repository: Vec<(String, u64)>,
    /// Some repository failed or was refused (the CLI would exit 1).
    pub partial_failure: bool,
}

/// The SPEC JSON of a run. Fields are in alphabetical order: that is the order the
/// output has always had (it used to go through `serde_json::Value`, whose maps sort).
#[derive(Debug, Serialize)]
pub struct ReportJson<'a> {
    pub apply: bool,
    pub repositories: Vec<RepoJson<'a>>,
    /// Only when a reviewed plan was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviewed_plan: Option<&'a ReviewedInfo>,
}

#[derive(Debug, Serialize)]
pub struct RepoJson<'a> {
    /// Archived images: reported (only when there are any), never counted as active.
    #[serde(skip_serializing_if = "is_zero")]
    pub archived_images: usize,
    pub bytes_expired: u64,
    pub deleted: Option<usize>,
    pub error: Option<String>,
    pub failures: Vec<FailureJson>,
    pub images_after: usize,
    pub images_before: usize,
    /// Applying a reviewed plan: the units it expired that were kept now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kept_at_apply: Option<Vec<&'a str>>,
    /// Applying a reviewed plan: the repository was as planned (same inputs digest).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchanged_since_plan: Option<bool>,
    pub name: &'a str,
    pub units: Vec<UnitJson<'a>>,
    /// After an apply that deleted: the validation pass.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub validation: Option<ValidationJson<'a>>,
}

#[derive(Debug, Serialize)]
pub struct ValidationJson<'a> {
    pub error: Option<String>,
    pub indexes_checked: usize,
    pub ok: bool,
    pub referrers_checked: usize,
    pub violations: &'a [Violation],
}

#[derive(Debug, Serialize)]
pub struct FailureJson {
    pub code: FailureCode,
    pub digest: String,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct UnitJson<'a> {
    pub action: Action,
    pub bytes: u64,
    pub digest: &'a str,
    /// Every manifest of the unit.
    pub images: Vec<&'a str>,
    /// RFC 3339 with `+00:00`, as it always was.
    pub pushed_at: String,
    pub reason: String,
    pub tags: &'a [String],
}

impl Report {
    pub fn failed(&self) -> bool {
        self.repositories.iter().any(|r| r.error().is_some())
    }

    pub fn summary(&self) -> EcrSummary {
        EcrSummary {
            deleted_per_repository: self
                .repositories
                .iter()
                .map(|r| (r.name.clone(), r.deleted().unwrap_or(0) as u64))
                .collect(),
            partial_failure: self.failed(),
        }
    }

    pub fn to_json(&self) -> ReportJson<'_> {
        ReportJson {
            apply: self.apply,
            repositories: self.repositories.iter().map(repo_json).collect(),
            reviewed_plan: self.reviewed.as_ref(),
        }
    }

    /// The JSON document, pretty-printed, with a final newline.
    pub fn write_json(&self, out: &mut dyn Write) -> std::io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &self.to_json()).map_err(std::io::Error::from)?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        if let Some(r) = &self.reviewed {
            writeln!(
                out,
                "reviewed plan {} (planned {}, inputs {})",
                r.path.display(),
                r.created_at.to_rfc3339(),
                r.inputs_digest
            )?;
        }
        let mut total_expired = 0usize;
        let mut failed = 0usize;
        for r in &self.repositories {
            let error = r.error();
            failed += usize::from(error.is_some());
            let Some(plan) = &r.plan else {
                let error = error.map(|e| e.to_string()).unwrap_or_default();
                writeln!(out, "repository {}: ERROR {error}", r.name)?;
                continue;
            };
            let expiring = plan.images_before - plan.images_after;
            total_expired += expiring;
            writeln!(
                out,
                "repository {}: {} -> {} images ({} to delete, {})",
                r.name,
                plan.images_before,
                r.images_after(),
                expiring,
                crate::config::value::format_size(plan.bytes_expired()),
            )?;
            if plan.archived > 0 {
                writeln!(
                    out,
                    "  {} archived images, not counted as active",
                    plan.archived
                )?;
            }
            for u in &plan.units {
                let action = match u.action {
                    Action::Keep => "keep  ",
                    Action::Expire => "expire",
                };
                let tags = if u.unit.tags.is_empty() {
                    "<untagged>".to_owned()
                } else {
                    u.unit.tags.join(",")
                };
                let extra = match u.unit.image_count() {
                    1 => String::new(),
                    n => format!(" [{n} manifests]"),
                };
                writeln!(
                    out,
                    "  {action} {} {tags} pushed {}{extra}: {}",
                    short(&u.unit.digest),
                    u.unit.pushed_at.format("%Y-%m-%d %H:%M"),
                    u.reason
                )?;
            }
            if let Some(deleted) = r.deleted() {
                writeln!(out, "  deleted {deleted} images")?;
                for f in r.failures() {
                    writeln!(
                        out,
                        "  failed {} {}: {}",
                        short(&f.digest),
                        f.code,
                        f.reason
                    )?;
                }
            }
            match &r.validation {
                Some(Ok(v)) if v.ok() => writeln!(
                    out,
                    "  validation: ok ({} indexes, {} referrers checked)",
                    v.indexes_checked, v.referrers_checked
                )?,
                Some(Ok(v)) => {
                    for violation in &v.violations {
                        writeln!(out, "  validation: VIOLATED {violation}")?;
                    }
                }
                Some(Err(_)) | None => {}
            }
            let kept = r.kept_at_apply();
            if !kept.is_empty() {
                writeln!(
                    out,
                    "  {} units the reviewed plan expired were kept at apply (see their reasons)",
                    kept.len()
                )?;
            }
            if let Some(e) = error {
                writeln!(out, "  ERROR {e}")?;
            }
        }
        writeln!(
            out,
            "{} repositories, {} images {}{}",
            self.repositories.len(),
            total_expired,
            if self.apply {
                "expired"
            } else {
                "would be deleted (plan only; rerun with --apply to delete)"
            },
            if failed > 0 {
                format!(", {failed} with errors")
            } else {
                String::new()
            }
        )
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn repo_json(r: &RepoReport) -> RepoJson<'_> {
    let plan = r.plan.as_ref();
    RepoJson {
        archived_images: plan.map_or(0, |p| p.archived),
        bytes_expired: plan.map_or(0, RepoPlan::bytes_expired),
        deleted: r.deleted(),
        error: r.error().map(|e| e.to_string()),
        failures: r
            .failures()
            .into_iter()
            .map(|f| FailureJson {
                code: f.code,
                digest: f.digest,
                reason: f.reason,
            })
            .collect(),
        images_after: r.images_after(),
        images_before: plan.map_or(0, |p| p.images_before),
        kept_at_apply: r.unchanged_since_plan.map(|_| r.kept_at_apply()),
        unchanged_since_plan: r.unchanged_since_plan,
        name: &r.name,
        validation: r.validation.as_ref().map(|v| match v {
            Ok(v) => ValidationJson {
                error: None,
                indexes_checked: v.indexes_checked,
                ok: v.ok(),
                referrers_checked: v.referrers_checked,
                violations: &v.violations,
            },
            Err(e) => ValidationJson {
                error: Some(e.to_string()),
                indexes_checked: 0,
                ok: false,
                referrers_checked: 0,
                violations: &[],
            },
        }),
        units: plan.map_or_else(Vec::new, |p| {
            p.units
                .iter()
                .map(|u| UnitJson {
                    action: u.action,
                    bytes: u.unit.bytes,
                    digest: &u.unit.digest,
                    images: u.unit.members.iter().map(|(d, _)| d.as_str()).collect(),
                    pushed_at: u.unit.pushed_at.to_rfc3339(),
                    reason: u.reason.to_string(),
                    tags: &u.unit.tags,
                })
                .collect()
        }),
    }
}

fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecr_prune::executor::ImageOutcome;
    use crate::ecr_prune::grouping::Unit;
    use crate::ecr_prune::planner::{Reason, UnitPlan};
    use crate::testing::ecr::ts;

    fn unit(digest: &str, tags: &[&str], members: &[&str], day: i64) -> Unit {
        Unit {
            digest: digest.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            all_tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            pushed_at: ts(day),
            last_used: ts(day),
            bytes: 1000 * members.len() as u64,
            members: members
                .iter()
                .enumerate()
                .map(|(i, d)| ((*d).to_owned(), u8::from(i > 0)))
                .collect(),
            root_is_index: members.len() > 1,
        }
    }

    /// Every kind of repository line: applied with a refusal by ECR, refused by the
    /// cap, unreadable.
    fn report() -> Report {
        let app = RepoPlan {
            name: "app".into(),
            images_before: 3,
            images_after: 1,
            units: vec![
                UnitPlan {
                    unit: unit("sha256:a", &["v2"], &["sha256:a"], 9),
                    action: Action::Keep,
                    reason: Reason::Newest,
                },
                UnitPlan {
                    unit: unit("sha256:b", &[], &["sha256:b", "sha256:c"], 1),
                    action: Action::Expire,
                    reason: Reason::Rule(1),
                },
            ],
            refused: None,
            archived: 0,
        };
        let refusal = Refusal {
            deleting: 1,
            of: 1,
            max_percent: 50,
        };
        let big = RepoPlan {
            name: "big".into(),
            images_before: 1,
            images_after: 0,
            units: vec![UnitPlan {
                unit: unit("sha256:d", &["v1"], &["sha256:d"], 2),
                action: Action::Expire,
                reason: Reason::Quota(0),
            }],
            archived: 0,
            refused: Some(refusal),
        };
        Report {
            apply: true,
            repositories: vec![
                RepoReport {
                    name: "app".into(),
                    inputs_digest: None,
                    validation: None,
                    unchanged_since_plan: None,
                    plan: Some(app),
                    outcome: RepoOutcome::Applied(Deletion {
                        images: vec![
                            ("sha256:b".into(), ImageOutcome::Deleted),
                            (
                                "sha256:c".into(),
                                ImageOutcome::Failed {
                                    code: FailureCode::ImageReferencedByManifestList,
                                    reason: "injected".into(),
                                },
                            ),
                        ],
                        call_error: None,
                    }),
                },
                RepoReport {
                    name: "big".into(),
                    inputs_digest: None,
                    validation: None,
                    unchanged_since_plan: None,
                    plan: Some(big),
                    outcome: RepoOutcome::Refused(refusal),
                },
                RepoReport {
                    name: "broken".into(),
                    inputs_digest: None,
                    validation: None,
                    unchanged_since_plan: None,
                    plan: None,
                    outcome: RepoOutcome::ReadFailed(ApiError {
                        operation: "DescribeImages",
                        message: "AccessDenied".into(),
                    }),
                },
            ],
            reviewed: None,
        }
    }

    /// The SPEC JSON, byte for byte: key order, nulls, RFC 3339 times, reason strings.
    #[test]
    fn json_is_pinned() {
        let mut out = Vec::new();
        report().write_json(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), JSON);
    }

    const JSON: &str = r#"{
  "apply": true,
  "repositories": [
    {
      "bytes_expired": 2000,
      "deleted": 1,
      "error": "1 images could not be deleted (first: sha256:c ImageReferencedByManifestList)",
      "failures": [
        {
          "code": "ImageReferencedByManifestList",
          "digest": "sha256:c",
          "reason": "injected"
        }
      ],
      "images_after": 2,
      "images_before": 3,
      "name": "app",
      "units": [
        {
          "action": "keep",
          "bytes": 1000,
          "digest": "sha256:a",
          "images": [
            "sha256:a"
          ],
          "pushed_at": "2026-01-10T00:00:00+00:00",
          "reason": "newest in repository",
          "tags": [
            "v2"
          ]
        },
        {
          "action": "expire",
          "bytes": 2000,
          "digest": "sha256:b",
          "images": [
            "sha256:b",
            "sha256:c"
          ],
          "pushed_at": "2026-01-02T00:00:00+00:00",
          "reason": "rule 1",
          "tags": []
        }
      ]
    },
    {
      "bytes_expired": 1000,
      "deleted": null,
      "error": "refused: the plan deletes 1 of 1 images, more than --max-delete-percent 50%; review the plan, then raise --max-delete-percent or pass --force",
      "failures": [],
      "images_after": 1,
      "images_before": 1,
      "name": "big",
      "units": [
        {
          "action": "expire",
          "bytes": 1000,
          "digest": "sha256:d",
          "images": [
            "sha256:d"
          ],
          "pushed_at": "2026-01-03T00:00:00+00:00",
          "reason": "quota watermark 0 images",
          "tags": [
            "v1"
          ]
        }
      ]
    },
    {
      "bytes_expired": 0,
      "deleted": null,
      "error": "cannot read images (DescribeImages: AccessDenied)",
      "failures": [],
      "images_after": 0,
      "images_before": 0,
      "name": "broken",
      "units": []
    }
  ]
}
"#;

    #[test]
    fn text_is_pinned() {
        let mut out = Vec::new();
        report().write_text(&mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), TEXT);
    }

    const TEXT: &str = r#"repository app: 3 -> 2 images (2 to delete, 2.0 KiB)
  keep   sha256:a v2 pushed 2026-01-10 00:00: newest in repository
  expire sha256:b <untagged> pushed 2026-01-02 00:00 [2 manifests]: rule 1
  deleted 1 images
  failed sha256:c ImageReferencedByManifestList: injected
  ERROR 1 images could not be deleted (first: sha256:c ImageReferencedByManifestList)
repository big: 1 -> 1 images (1 to delete, 1000 B)
  expire sha256:d v1 pushed 2026-01-03 00:00: quota watermark 0 images
  ERROR refused: the plan deletes 1 of 1 images, more than --max-delete-percent 50%; review the plan, then raise --max-delete-percent or pass --force
repository broken: ERROR cannot read images (DescribeImages: AccessDenied)
3 repositories, 3 images expired, 3 with errors
"#;

    #[test]
    fn summary_counts_deletions_and_failures() {
        let summary = report().summary();
        assert_eq!(
            summary.deleted_per_repository,
            vec![("app".into(), 1), ("big".into(), 0), ("broken".into(), 0)]
        );
        assert!(summary.partial_failure);
    }

    #[test]
    fn plan_mode_shows_planned_counts() {
        let mut r = report();
        r.apply = false;
        r.repositories[0].outcome = RepoOutcome::Planned;
        let app = &r.repositories[0];
        assert_eq!(
            (app.images_after(), app.deleted(), app.error()),
            (1, None, None)
        );
        let json = serde_json::to_value(r.to_json()).unwrap();
        assert_eq!(json["apply"], false);
        assert!(json["repositories"][0]["error"].is_null());
        assert!(json["repositories"][0]["deleted"].is_null());
        let mut text = Vec::new();
        r.write_text(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.ends_with(
            "3 repositories, 3 images would be deleted (plan only; rerun with --apply to delete), 2 with errors\n"
        ), "{text}");
    }
}
