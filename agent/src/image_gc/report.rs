//! What a `gc` run reports: a table a person can scan (image, tags, size, action,
//! reason, then containers, volumes and the total reclaimed) or the JSON document
//! of SPEC.md. Rendering only; a dry run and a real run differ only in the verbs.

use std::io::{self, Write};

use serde_json::{json, Value};

use super::executor::ExecStats;
use super::planner::{Action, Plan};
use super::policy::short_id;
use crate::ports::docker::FsUsage;
use crate::config::value::format_size;

/// The result of one pass, ready to print or summarise.
#[derive(Debug, Clone)]
pub struct Report {
    pub dry_run: bool,
    pub plan: Plan,
    /// `None` for a dry run.
    pub stats: Option<ExecStats>,
    pub disk_before: Option<FsUsage>,
    /// Engine API calls the snapshot (the plan) made.
    pub plan_api_calls: u64,
}

impl Report {
    pub fn action(&self, action: Action) -> &'static str {
        match (action, self.dry_run) {
            (Action::Delete, true) => "would delete",
            (Action::Delete, false) => "deleted",
            (Action::Keep, _) => "kept",
        }
    }

    /// Bytes reclaimed (or, in a dry run, that would be: the sum of image sizes).
    pub fn reclaimed_bytes(&self) -> u64 {
        match &self.stats {
            Some(s) => s.reclaimed_bytes,
            None => self.plan.deletions().map(|e| e.size).sum(),
        }
    }

    pub fn disk_after(&self) -> Option<FsUsage> {
        self.stats.as_ref().and_then(|s| s.disk_after)
    }

    /// Anything failed (other than 404/409, which are expected)?
    pub fn failed(&self) -> bool {
        self.stats.as_ref().is_some_and(|s| s.failures > 0)
    }

    pub fn to_json(&self) -> Value {
        let images: Vec<Value> = self
            .plan
            .images
            .iter()
            .map(|e| {
                json!({
                    "id": e.id,
                    "tags": e.tags,
                    "size": e.size,
                    "action": self.action(e.action),
                    "reason": e.reason.to_string(),
                })
            })
            .collect();
        let containers: Vec<Value> = self
            .plan
            .containers
            .iter()
            .map(|c| {
                json!({
                    "id": c.id,
                    "name": c.name,
                    "image": c.image,
                    "action": self.action(c.action),
                    "reason": c.reason.to_string(),
                })
            })
            .collect();
        let volumes: Vec<Value> = self
            .plan
            .volumes
            .iter()
            .map(|v| {
                json!({
                    "name": v.name,
                    "action": self.action(v.action),
                    "reason": v.reason.to_string(),
                })
            })
            .collect();
        let mut doc = json!({
            "dry_run": self.dry_run,
            "images": images,
            "containers": containers,
            "volumes": volumes,
            "reclaimed_bytes": self.reclaimed_bytes(),
            "disk": {"before": self.disk_before, "after": self.disk_after()},
        });
        if let Some(bytes) = self.stats.as_ref().and_then(|s| s.build_cache_bytes) {
            doc["build_cache_reclaimed_bytes"] = json!(bytes);
        }
        doc
    }

    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &self.to_json())?;
        writeln!(out)
    }

    pub fn write_text(&self, out: &mut impl Write) -> io::Result<()> {
        let rows: Vec<[String; 5]> = self
            .plan
            .images
            .iter()
            .map(|e| {
                [
                    short_id(&e.id).to_owned(),
                    if e.tags.is_empty() {
                        "<none>".to_owned()
                    } else {
                        e.tags.join(",")
                    },
                    format_size(e.size),
                    self.action(e.action).to_owned(),
                    e.reason.to_string(),
                ]
            })
            .collect();
        table(out, ["IMAGE", "TAGS", "SIZE", "ACTION", "REASON"], &rows)?;
        if !self.plan.containers.is_empty() {
            writeln!(out)?;
            let rows: Vec<[String; 5]> = self
                .plan
                .containers
                .iter()
                .map(|c| {
                    [
                        short_id(&c.id).to_owned(),
                        c.name.clone(),
                        c.image.clone(),
                        self.action(c.action).to_owned(),
                        c.reason.to_string(),
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
                .plan
                .volumes
                .iter()
                .map(|v| {
                    [
                        v.name.clone(),
                        self.action(v.action).to_owned(),
                        v.reason.to_string(),
                    ]
                })
                .collect();
            table(out, ["VOLUME", "ACTION", "REASON"], &rows)?;
        }
        writeln!(out)?;
        let deleted = self.plan.deletions().count();
        let kept = self.plan.images.len() - deleted;
        let (done, verb) = if self.dry_run {
            ("to delete", "would reclaim")
        } else {
            ("deleted", "reclaimed")
        };
        writeln!(
            out,
            "Total: {deleted} images {done}, {kept} kept; {verb} {}",
            format_size(self.reclaimed_bytes())
        )?;
        if let Some(bytes) = self.stats.as_ref().and_then(|s| s.build_cache_bytes) {
            writeln!(out, "Build cache: {} reclaimed", format_size(bytes))?;
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

fn table<const N: usize>(
    out: &mut impl Write,
    header: [&str; N],
    rows: &[[String; N]],
) -> io::Result<()> {
    let mut widths = header.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |out: &mut dyn Write, cells: &[&str]| -> io::Result<()> {
        let mut text = String::new();
        for (n, cell) in cells.iter().enumerate() {
            if n + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[n]));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &header)?;
    for row in rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(out, &cells)?;
    }
    Ok(())
}
