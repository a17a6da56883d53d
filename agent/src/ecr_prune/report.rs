//! What a run did, per repository, for people (a text plan) and for programs (the JSON
//! of SPEC.md: `{"apply","repositories":[{"name","images_before","images_after",
//! "units":[{"digest","tags","pushed_at","action","reason"}],"error"}]}`).

use std::io::Write;

use serde_json::json;

use super::executor::Outcome;
use super::planner::{Action, RepoPlan};

/// One repository's result.
#[derive(Debug, Clone)]
pub struct RepoResult {
    pub name: String,
    /// None when the repository could not be read.
    pub plan: Option<RepoPlan>,
    pub outcome: Option<Outcome>,
    /// Read failure, refusal, failed call or per-image failures, as one line.
    pub error: Option<String>,
}

impl RepoResult {
    /// Images in the repository after this run (planned, or after deleting).
    pub fn images_after(&self, apply: bool) -> usize {
        let Some(plan) = &self.plan else { return 0 };
        if plan.refused.is_some() {
            return plan.images_before;
        }
        match (&self.outcome, apply) {
            (Some(o), true) => plan.images_before.saturating_sub(o.deleted),
            (None, true) => plan.images_before,
            _ => plan.images_after,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone)]
pub struct Report {
    pub apply: bool,
    pub repositories: Vec<RepoResult>,
}

impl Report {
    pub fn failed(&self) -> bool {
        self.repositories.iter().any(|r| r.error.is_some())
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "apply": self.apply,
            "repositories": self.repositories.iter().map(|r| {
                let plan = r.plan.as_ref();
                json!({
                    "name": r.name,
                    "images_before": plan.map_or(0, |p| p.images_before),
                    "images_after": r.images_after(self.apply),
                    "bytes_expired": plan.map_or(0, RepoPlan::bytes_expired),
                    "deleted": r.outcome.as_ref().map(|o| o.deleted),
                    "failures": r.outcome.as_ref().map(|o| o.failures.iter().map(|f| json!({
                        "digest": f.digest, "code": f.code, "reason": f.reason,
                    })).collect::<Vec<_>>()).unwrap_or_default(),
                    "units": plan.map(|p| p.units.iter().map(|u| json!({
                        "digest": u.unit.digest,
                        "tags": u.unit.tags,
                        "pushed_at": u.unit.pushed_at.to_rfc3339(),
                        "action": u.action,
                        "reason": u.reason.to_string(),
                        "images": u.unit.members.iter().map(|(d, _)| d).collect::<Vec<_>>(),
                        "bytes": u.unit.bytes,
                    })).collect::<Vec<_>>()).unwrap_or_default(),
                    "error": r.error,
                })
            }).collect::<Vec<_>>(),
        })
    }

    pub fn write_text(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut total_expired = 0usize;
        for r in &self.repositories {
            let Some(plan) = &r.plan else {
                writeln!(
                    out,
                    "repository {}: ERROR {}",
                    r.name,
                    r.error.as_deref().unwrap_or("")
                )?;
                continue;
            };
            let expiring = plan.images_before - plan.images_after;
            total_expired += expiring;
            writeln!(
                out,
                "repository {}: {} -> {} images ({} to delete, {})",
                r.name,
                plan.images_before,
                r.images_after(self.apply),
                expiring,
                crate::config::value::format_size(plan.bytes_expired()),
            )?;
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
            if let Some(o) = &r.outcome {
                writeln!(out, "  deleted {} images", o.deleted)?;
                for f in &o.failures {
                    writeln!(
                        out,
                        "  failed {} {}: {}",
                        short(&f.digest),
                        f.code,
                        f.reason
                    )?;
                }
            }
            if let Some(e) = &r.error {
                writeln!(out, "  ERROR {e}")?;
            }
        }
        let failed = self
            .repositories
            .iter()
            .filter(|r| r.error.is_some())
            .count();
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

fn short(digest: &str) -> &str {
    let end = digest.len().min("sha256:".len() + 12);
    &digest[..end]
}
