//! The last-use state file: when each image was last used, and its tags.
//!
//! Format, version 1 (JSON, written atomically, mode 0644):
//! `{"version":1,"updated_at":"RFC3339","images":{"sha256:…":{"last_used":"RFC3339","tags":["repo:tag"]}}}`
//! A file with another version is ignored with a warning (never misread).

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Current format version.
pub const STATE_VERSION: u32 = 1;
/// Default location.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/shipshape/state.json";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUseState {
    pub version: u32,
    pub updated_at: DateTime<Utc>,
    /// Image ID (`sha256:…`) → its entry.
    pub images: BTreeMap<String, ImageUse>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUse {
    pub last_used: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid JSON of version {STATE_VERSION}: {message}")]
    Malformed { path: String, message: String },
    #[error("state file {path} has version {found}, this shipshape reads version {STATE_VERSION}")]
    Version { path: String, found: u64 },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl LastUseState {
    pub fn empty(now: DateTime<Utc>) -> Self {
        Self {
            version: STATE_VERSION,
            updated_at: now,
            images: BTreeMap::new(),
        }
    }

    /// Record a use of `image_id` at `at` (never moves last use backwards).
    pub fn touch(&mut self, image_id: &str, at: DateTime<Utc>) {
        let entry = self.images.entry(image_id.to_owned()).or_insert(ImageUse {
            last_used: at,
            tags: Vec::new(),
        });
        if at > entry.last_used {
            entry.last_used = at;
        }
    }

    pub fn last_used(&self, image_id: &str) -> Option<DateTime<Utc>> {
        self.images.get(image_id).map(|u| u.last_used)
    }

    /// Load; a missing file is `Ok(None)`.
    pub fn load(path: &Path) -> Result<Option<Self>, StateError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        // Not UTF-8 (a binary or torn file) is malformed, not an I/O failure.
        let text = String::from_utf8(bytes).map_err(|e| StateError::Malformed {
            path: path.display().to_string(),
            message: format!("not UTF-8 text ({e})"),
        })?;
        Self::parse(&text, path).map(Some)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Self, StateError> {
        let p = || path.display().to_string();
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| StateError::Malformed {
                path: p(),
                message: e.to_string(),
            })?;
        let found = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
        if found != u64::from(STATE_VERSION) {
            return Err(StateError::Version { path: p(), found });
        }
        serde_json::from_value(value).map_err(|e| StateError::Malformed {
            path: p(),
            message: e.to_string(),
        })
    }

    /// Save atomically (mode 0644: it holds no secret).
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Write {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StateError::Write {
                path: path.display().to_string(),
                source,
            })?;
        }
        crate::shared::atomic_file::atomic_write(path, &bytes, 0o644).map_err(|source| {
            StateError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_touch_is_monotonic() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t1 = t0 + chrono::Duration::hours(1);
        let mut s = LastUseState::empty(t0);
        s.touch("sha256:aa", t1);
        s.touch("sha256:aa", t0);
        assert_eq!(s.last_used("sha256:aa"), Some(t1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        s.save(&path).unwrap();
        assert_eq!(LastUseState::load(&path).unwrap(), Some(s));
    }

    #[test]
    fn version_1_file_is_pinned_byte_for_byte() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut s = LastUseState::empty(at("2026-01-01T00:00:00Z"));
        s.touch("sha256:bb", at("2026-01-02T03:04:05Z"));
        s.touch("sha256:aa", at("2026-01-02T03:04:05.5Z"));
        s.images.get_mut("sha256:aa").unwrap().tags = vec!["app:1".into(), "app:latest".into()];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        s.save(&path).unwrap();
        let expected = r#"{
  "version": 1,
  "updated_at": "2026-01-01T00:00:00Z",
  "images": {
    "sha256:aa": {
      "last_used": "2026-01-02T03:04:05.500Z",
      "tags": [
        "app:1",
        "app:latest"
      ]
    },
    "sha256:bb": {
      "last_used": "2026-01-02T03:04:05Z"
    }
  }
}
"#;
        assert_eq!(std::fs::read_to_string(&path).unwrap(), expected);
        assert_eq!(LastUseState::parse(expected, &path).unwrap(), s);
    }

    #[test]
    fn other_version_is_refused() {
        let err =
            LastUseState::parse(r#"{"version":2,"images":{}}"#, Path::new("s.json")).unwrap_err();
        assert!(err.to_string().contains("version 2"));
    }

    #[test]
    fn missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            LastUseState::load(&dir.path().join("x.json")).unwrap(),
            None
        );
    }
}
