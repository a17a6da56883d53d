//! The usage file: what a workload account can start next, written there by
//! `shipshape ecr-usage --output FILE` and read in the registry account by
//! `ecr-prune --usage-file FILE`. JSON, version 1:
//!
//! ```json
//! {"format": "shipshape-ecr-usage", "version": 1, "account": "210987654321",
//!  "generated_at": "2026-12-01T14:00:00Z",
//!  "images": [{"digest": "sha256:…", "chain": "service web, deployment …, pinned sha256:…"},
//!             {"reference": "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v3", "chain": "…"}]}
//! ```
//!
//! Each entry has a `digest` (protects that manifest in any repository) or a
//! `reference` (`repo-uri:tag` or `repo-uri@digest`, protects in the repository it
//! names), and the chain that uses it. A reader refuses another format or version.

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::snapshot::EcsUsage;

pub const FORMAT: &str = "shipshape-ecr-usage";
pub const VERSION: u32 = 1;
/// A file older than this is still used, with a warning: it may miss what its account
/// started since.
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The file as written and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageFile {
    pub format: String,
    pub version: u32,
    /// The workload account, when GetCallerIdentity told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    pub generated_at: DateTime<Utc>,
    pub images: Vec<UsedImage>,
}

/// One digest or reference in use, and who uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsedImage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    pub chain: String,
}

impl UsageFile {
    /// The file for `usage`, read in `account` at `generated_at`.
    pub fn new(usage: &EcsUsage, account: Option<String>, generated_at: DateTime<Utc>) -> Self {
        let chain = |key: &String| usage.origins.get(key).cloned().unwrap_or_default();
        let digests = usage.digests.iter().map(|d| UsedImage {
            digest: Some(d.clone()),
            reference: None,
            chain: chain(d),
        });
        let references = usage.references.iter().map(|r| UsedImage {
            digest: None,
            reference: Some(r.clone()),
            chain: chain(r),
        });
        Self {
            format: FORMAT.to_owned(),
            version: VERSION,
            account,
            generated_at,
            images: digests.chain(references).collect(),
        }
    }

    /// What this file protects; chains start with where it came from
    /// (`usage file F (account A)`).
    pub fn usage(&self, path: &Path) -> EcsUsage {
        let label = match &self.account {
            Some(a) => format!("usage file {} (account {a})", path.display()),
            None => format!("usage file {}", path.display()),
        };
        let mut usage = EcsUsage::default();
        for image in &self.images {
            let chain = format!("{label}: {}", image.chain);
            if let Some(d) = &image.digest {
                usage.add_digest_from(d.clone(), chain.clone());
            }
            if let Some(r) = &image.reference {
                usage
                    .origins
                    .entry(r.clone())
                    .or_insert_with(|| chain.clone());
                usage.references.insert(r.clone());
                if let Some((_, d)) = r.split_once('@') {
                    usage.add_digest_from(d.to_owned(), chain);
                }
            }
        }
        usage
    }
}

/// Read and check a usage file: one line naming what is wrong.
pub fn read(path: &Path) -> Result<UsageFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    let file: UsageFile =
        serde_json::from_str(&text).map_err(|e| format!("not a usage file: {e}"))?;
    if file.format != FORMAT || file.version != VERSION {
        return Err(format!(
            "format {:?} version {} is not {FORMAT:?} version {VERSION}; write it again with this shipshape's `ecr-usage`",
            file.format, file.version
        ));
    }
    if let Some(bad) = file
        .images
        .iter()
        .find(|i| i.digest.is_none() && i.reference.is_none())
    {
        return Err(format!(
            "an entry has neither digest nor reference (chain {:?})",
            bad.chain
        ));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> EcsUsage {
        let mut u = EcsUsage::default();
        u.add_digest_from("sha256:a".into(), "service web, pinned sha256:a".into());
        u.add_image_from(
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v3".into(),
            "task of web:3",
        );
        u
    }

    #[test]
    fn a_written_file_reads_back_as_the_same_usage_with_its_origin() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.json");
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let file = UsageFile::new(&usage(), Some("210987654321".into()), at);
        std::fs::write(&path, serde_json::to_string(&file).unwrap()).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back, file);
        let u = back.usage(&path);
        assert!(u.digests.contains("sha256:a"));
        assert!(u
            .references
            .contains("123456789012.dkr.ecr.us-east-1.amazonaws.com/web:v3"));
        assert_eq!(
            u.origins["sha256:a"],
            format!(
                "usage file {} (account 210987654321): service web, pinned sha256:a",
                path.display()
            )
        );
    }

    #[test]
    fn other_versions_and_bad_files_are_refused_with_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("u.json");
        assert!(read(&path).unwrap_err().starts_with("cannot read it"));
        std::fs::write(&path, "{").unwrap();
        assert!(read(&path).unwrap_err().starts_with("not a usage file"));
        std::fs::write(
            &path,
            r#"{"format":"shipshape-ecr-usage","version":2,"generated_at":"2026-12-01T00:00:00Z","images":[]}"#,
        )
        .unwrap();
        let e = read(&path).unwrap_err();
        assert!(e.contains("version 2") && !e.contains('\n'), "{e}");
        std::fs::write(
            &path,
            r#"{"format":"shipshape-ecr-usage","version":1,"generated_at":"2026-12-01T00:00:00Z","images":[{"chain":"x"}]}"#,
        )
        .unwrap();
        assert!(read(&path)
            .unwrap_err()
            .contains("neither digest nor reference"));
    }
}
