//! Flags over file over defaults, the same way for every section. A section's options
//! struct is filled twice — by clap (the flags) and by serde (the file) — and its
//! `resolve` picks each value from the flags, else the file, else the default written
//! once beside it. One `Invalid` error names the key both ways (`gc.min_age` /
//! `--min-age`) and, when the value came from the file, its line.

use std::fmt;
use std::path::{Path, PathBuf};

/// A settings key, as the file and the command line spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub section: &'static str,
    pub name: &'static str,
    /// Whether the key also exists as a flag (`--name-with-dashes`).
    pub flag: bool,
}

impl Key {
    /// A key that is both `section.name` in the file and `--name` on the command line.
    pub const fn new(section: &'static str, name: &'static str) -> Self {
        Self {
            section,
            name,
            flag: true,
        }
    }

    /// A key of the file only.
    pub const fn file_only(section: &'static str, name: &'static str) -> Self {
        Self {
            section,
            name,
            flag: false,
        }
    }

    /// `gc.min_age`.
    pub fn file_form(&self) -> String {
        format!("{}.{}", self.section, self.name)
    }

    /// `--min-age`, when the key has a flag.
    pub fn flag_form(&self) -> Option<String> {
        self.flag
            .then(|| format!("--{}", self.name.replace('_', "-")))
    }
}

/// Where a value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    /// The config file, with the line of the key when it could be found.
    File {
        line: Option<usize>,
    },
    Default,
}

/// A value that parsed but is not acceptable (or a combination that is not). Exit 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Invalid {
    pub key: Key,
    pub origin: Origin,
    pub message: String,
}

impl fmt::Display for Invalid {
    /// The form the user wrote comes first: `invalid --min-age (gc.min_age): …` for a
    /// flag, `invalid gc.min_age (--min-age) at line 3: …` for the file.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.key.file_form();
        match (self.origin, self.key.flag_form()) {
            (Origin::Flag, Some(flag)) => write!(f, "invalid {flag} ({file})")?,
            (_, Some(flag)) => write!(f, "invalid {file} ({flag})")?,
            (_, None) => write!(f, "invalid {file}")?,
        }
        if let Origin::File { line: Some(line) } = self.origin {
            write!(f, " at line {line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The config file's text, kept to point errors at lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileText {
    pub path: Option<PathBuf>,
    pub text: String,
}

impl FileText {
    pub fn new(path: &Path, text: &str) -> Self {
        Self {
            path: Some(path.to_path_buf()),
            text: text.to_owned(),
        }
    }

    /// The 1-based line where `key` is set: `name = …` inside `[section]` (or a
    /// `[section.sub]` table), or a dotted `section.name = …` at the top level.
    pub fn line_of(&self, key: &Key) -> Option<usize> {
        let mut current = String::new();
        for (index, raw) in self.text.lines().enumerate() {
            let line = raw.trim();
            if let Some(header) = line.strip_prefix('[') {
                current = header
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .trim()
                    .to_owned();
                continue;
            }
            let Some((lhs, _)) = line.split_once('=') else {
                continue;
            };
            let lhs = lhs.trim().trim_matches('"');
            let full = if current.is_empty() {
                lhs.to_owned()
            } else {
                format!("{current}.{lhs}")
            };
            if full == key.file_form() {
                return Some(index + 1);
            }
        }
        None
    }
}

/// One section's flags and file options side by side, with the file text for lines.
#[derive(Debug, Clone, Copy)]
pub struct Layered<'a, T> {
    pub flags: &'a T,
    pub file: &'a T,
    pub text: &'a FileText,
}

impl<'a, T> Layered<'a, T> {
    pub fn new(flags: &'a T, file: &'a T, text: &'a FileText) -> Self {
        Self { flags, file, text }
    }

    /// Where the value of `key` came from, given whether the flag was set and whether
    /// the file set it.
    pub fn origin(&self, key: &Key, from_flag: bool, from_file: bool) -> Origin {
        if from_flag {
            Origin::Flag
        } else if from_file {
            Origin::File {
                line: self.text.line_of(key),
            }
        } else {
            Origin::Default
        }
    }

    /// An error for `key`, pointing where its value came from.
    pub fn invalid(
        &self,
        key: Key,
        from_flag: bool,
        from_file: bool,
        message: impl Into<String>,
    ) -> Invalid {
        Invalid {
            origin: self.origin(&key, from_flag, from_file),
            key,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN_AGE: Key = Key::new("gc", "min_age");

    #[test]
    fn errors_name_the_key_both_ways_with_the_form_given_first() {
        let e = Invalid {
            key: MIN_AGE,
            origin: Origin::Flag,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "invalid --min-age (gc.min_age): bad");
        let e = Invalid {
            origin: Origin::File { line: Some(3) },
            ..e
        };
        assert_eq!(
            e.to_string(),
            "invalid gc.min_age (--min-age) at line 3: bad"
        );
        let e = Invalid {
            key: Key::file_only("gc", "concurrency"),
            origin: Origin::Default,
            message: "bad".into(),
        };
        assert_eq!(e.to_string(), "invalid gc.concurrency: bad");
    }

    #[test]
    fn lines_are_found_in_sections_subtables_and_dotted_keys() {
        let text = FileText::new(
            Path::new("x.toml"),
            "[bootstrap]\nmin_age = 1\n[gc]\n# c\nmin_age = \"2h\"\n[daemon.jobs.gc]\nschedule = \"x\"\n",
        );
        assert_eq!(text.line_of(&MIN_AGE), Some(5));
        assert_eq!(
            text.line_of(&Key::file_only("daemon.jobs.gc", "schedule")),
            Some(7)
        );
        let dotted = FileText::new(Path::new("x"), "gc.min_age = \"1h\"\n");
        assert_eq!(dotted.line_of(&MIN_AGE), Some(1));
        assert_eq!(text.line_of(&Key::new("gc", "low_water")), None);
    }

    #[test]
    fn origin_prefers_the_flag_then_the_file() {
        let text = FileText::new(Path::new("x"), "[gc]\nmin_age = \"1h\"\n");
        let l = Layered::new(&(), &(), &text);
        assert_eq!(l.origin(&MIN_AGE, true, true), Origin::Flag);
        assert_eq!(
            l.origin(&MIN_AGE, false, true),
            Origin::File { line: Some(2) }
        );
        assert_eq!(l.origin(&MIN_AGE, false, false), Origin::Default);
    }
}
