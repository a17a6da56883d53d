//! What a bootstrap run did (or, with `--dry-run`, would do): the JSON of
//! `--output json` is this `Serialize` type as it stands, the text output is
//! rendered from it. Holds no secret value.

use std::io::{self, Write};
use std::path::PathBuf;

use serde::Serialize;

use super::ecs_config::line_key;
use super::plan::Plan;
use crate::config::value::is_secret_key;

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub path: PathBuf,
    pub changed: bool,
    pub dry_run: bool,
    /// Managed keys, in the order they are written.
    pub keys: Vec<String>,
    /// Registry keys (normalised) whose credentials were written.
    pub registries: Vec<String>,
    /// Managed keys that were new to the file.
    pub appended: Vec<String>,
    /// Later duplicates of managed keys that were removed (key, 1-based line).
    pub dropped_duplicates: Vec<DroppedLine>,
    pub docker_config: Option<DockerConfigReport>,
    /// This run succeeded after a failed one (whose marker it removed).
    pub recovered: bool,
    /// `--dry-run` only: the resulting file with credentials redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DroppedLine {
    pub key: String,
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DockerConfigReport {
    pub path: PathBuf,
    pub changed: bool,
}

impl Report {
    /// The report of a plan that was carried out (or, `dry_run`, only shown).
    pub fn new(plan: Plan, dry_run: bool) -> Self {
        let ecs = plan.ecs_config;
        Self {
            changed: ecs.file.changed(),
            dry_run,
            keys: ecs.entries.into_iter().map(|e| e.key).collect(),
            content: dry_run.then(|| redacted(&ecs.file.new, plan.registries.len())),
            path: ecs.file.path,
            registries: plan.registries,
            appended: ecs.appended,
            dropped_duplicates: ecs
                .dropped_duplicates
                .into_iter()
                .map(|(key, line)| DroppedLine { key, line })
                .collect(),
            docker_config: plan.docker_config.map(|d| DockerConfigReport {
                changed: d.file.changed(),
                path: d.file.path,
            }),
            recovered: false,
        }
    }

    /// Whether a file changed on disk (or would), or this run recovered from a
    /// failed one: the daemon's `on_change` trigger (after a failed boot-time run,
    /// `ecs` has to be started even when the files end up unchanged).
    pub fn any_changed(&self) -> bool {
        self.changed || self.recovered || self.docker_config.as_ref().is_some_and(|d| d.changed)
    }
}

/// The file as `--dry-run` shows it: the auth data replaced by a count, and any
/// other secret-looking key (kept from the existing file) redacted too.
pub fn redacted(bytes: &[u8], registries: usize) -> String {
    let mut out = String::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let key = line_key(line).map(|k| String::from_utf8_lossy(k).into_owned());
        let ending = if line.ends_with(b"\n") { "\n" } else { "" };
        match key.as_deref() {
            Some("ECS_ENGINE_AUTH_DATA") => {
                out.push_str(&format!(
                    "ECS_ENGINE_AUTH_DATA=<redacted: {registries} registries>{ending}"
                ));
            }
            Some(k) if k != "ECS_ENGINE_AUTH_TYPE" && is_secret_key(k) => {
                out.push_str(&format!("{k}=<redacted>{ending}"));
            }
            _ => out.push_str(&String::from_utf8_lossy(line)),
        }
    }
    out
}

impl Report {
    /// `--output json`: the report, pretty-printed.
    pub fn write_json(&self, out: &mut dyn Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, self).map_err(io::Error::from)?;
        writeln!(out)
    }

    /// `--output text`: a dry run prints the redacted file (and logs a summary
    /// line); a real run one line per file written.
    pub fn write_text(&self, out: &mut dyn Write) -> io::Result<()> {
        write_text(self, out)
    }
}

fn write_text(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    match report.dry_run {
        true => {
            write!(out, "{}", report.content.as_deref().unwrap_or_default())?;
            let verb = if report.changed {
                "would be updated"
            } else {
                "unchanged"
            };
            tracing::info!(path = %report.path.display(), "dry run: ecs.config {verb}, nothing written");
        }
        false => {
            let verb = if report.changed {
                "updated"
            } else {
                "unchanged"
            };
            writeln!(
                out,
                "ecs.config {} {verb} ({} keys, {} registries)",
                report.path.display(),
                report.keys.len(),
                report.registries.len()
            )?;
            if let Some(d) = &report.docker_config {
                let verb = if d.changed { "updated" } else { "unchanged" };
                writeln!(
                    out,
                    "docker config {} {verb} ({} registries)",
                    d.path.display(),
                    report.registries.len()
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dry_run: bool) -> Report {
        Report {
            path: "/etc/ecs/ecs.config".into(),
            changed: true,
            dry_run,
            keys: vec![
                "ECS_CLUSTER".into(),
                "ECS_ENGINE_AUTH_TYPE".into(),
                "ECS_ENGINE_AUTH_DATA".into(),
            ],
            registries: vec!["ghcr.io".into()],
            appended: vec!["ECS_ENGINE_AUTH_DATA".into()],
            dropped_duplicates: vec![DroppedLine {
                key: "ECS_CLUSTER".into(),
                line: 7,
            }],
            docker_config: Some(DockerConfigReport {
                path: "/root/.docker/config.json".into(),
                changed: false,
            }),
            recovered: false,
            content: dry_run.then(|| {
                "ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA=<redacted: 1 registries>\n".to_owned()
            }),
        }
    }

    #[derive(Clone, Copy)]
    enum Format {
        Json,
        Text,
    }

    fn rendered(report: &Report, format: Format) -> String {
        let mut out = Vec::new();
        match format {
            Format::Json => report.write_json(&mut out).unwrap(),
            Format::Text => report.write_text(&mut out).unwrap(),
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn json_is_pinned() {
        let want = r#"{
  "path": "/etc/ecs/ecs.config",
  "changed": true,
  "dry_run": false,
  "keys": [
    "ECS_CLUSTER",
    "ECS_ENGINE_AUTH_TYPE",
    "ECS_ENGINE_AUTH_DATA"
  ],
  "registries": [
    "ghcr.io"
  ],
  "appended": [
    "ECS_ENGINE_AUTH_DATA"
  ],
  "dropped_duplicates": [
    {
      "key": "ECS_CLUSTER",
      "line": 7
    }
  ],
  "docker_config": {
    "path": "/root/.docker/config.json",
    "changed": false
  },
  "recovered": false
}
"#;
        assert_eq!(rendered(&sample(false), Format::Json), want);
    }

    #[test]
    fn dry_run_json_adds_the_redacted_content_and_null_docker_config() {
        let mut r = sample(true);
        r.docker_config = None;
        let v: serde_json::Value = serde_json::from_str(&rendered(&r, Format::Json)).unwrap();
        assert_eq!(v["dry_run"], true);
        assert_eq!(v["docker_config"], serde_json::Value::Null);
        assert_eq!(
            v["content"],
            "ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA=<redacted: 1 registries>\n"
        );
    }

    #[test]
    fn text_is_one_line_per_file() {
        assert_eq!(
            rendered(&sample(false), Format::Text),
            "ecs.config /etc/ecs/ecs.config updated (3 keys, 1 registries)\n\
             docker config /root/.docker/config.json unchanged (1 registries)\n"
        );
        let mut r = sample(false);
        r.changed = false;
        r.docker_config = None;
        assert_eq!(
            rendered(&r, Format::Text),
            "ecs.config /etc/ecs/ecs.config unchanged (3 keys, 1 registries)\n"
        );
    }

    #[test]
    fn dry_run_text_is_the_redacted_file() {
        assert_eq!(
            rendered(&sample(true), Format::Text),
            "ECS_CLUSTER=prod\nECS_ENGINE_AUTH_DATA=<redacted: 1 registries>\n"
        );
    }

    #[test]
    fn any_changed_counts_the_docker_config() {
        let mut r = sample(false);
        assert!(r.any_changed());
        r.changed = false;
        assert!(!r.any_changed());
        r.docker_config = Some(DockerConfigReport {
            path: "c".into(),
            changed: true,
        });
        assert!(r.any_changed());
    }

    #[test]
    fn redaction_hides_auth_data_and_secret_keys() {
        let text = b"A=1\nECS_ENGINE_AUTH_TYPE=docker\nECS_ENGINE_AUTH_DATA={\"x\":\"CANARY\"}\nPROXY_PASSWORD=CANARY\n# c";
        let out = redacted(text, 2);
        assert!(!out.contains("CANARY"), "{out}");
        assert!(out.contains("ECS_ENGINE_AUTH_DATA=<redacted: 2 registries>\n"));
        assert!(out.contains("ECS_ENGINE_AUTH_TYPE=docker\n"));
        assert!(out.contains("PROXY_PASSWORD=<redacted>\n"));
        assert!(out.ends_with("# c"));
    }
}
