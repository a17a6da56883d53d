//! Typed values shared by the config sections, parsed once at the edge (a flag or a
//! file value): durations (`90s`, `30m`, `1h`, `7d`), sizes and watermarks (`512MiB`,
//! `10GB`, `85%`), shards (`0/4`), S3 locations, `KEY=VALUE` pairs, `N|auto` quotas.
//! Each parses with `FromStr` (clap) and `Deserialize` (serde) from the same text and
//! shows itself the way users write it; errors carry the offending text.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Parse a duration such as `90s`, `30m`, `1h`, `7d` or `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration; use e.g. 90s, 30m, 1h, 7d".to_owned());
    }
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("invalid duration {trimmed:?} ({e}); use e.g. 90s, 30m, 1h, 7d"))
}

/// Render a duration the way users write it (`1h`, `7d`, `90s`).
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Parse a byte size such as `512MiB`, `10GB` or a bare number of bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    trimmed
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| format!("invalid size {trimmed:?}; use e.g. 512MiB, 10GB"))
}

/// Render bytes for people (`1.2 GiB`).
pub fn format_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().iec().to_string()
}

/// A disk watermark: a share of the filesystem, or an absolute number of used bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    /// Percent of capacity in use (0..=100); applies to bytes and to inodes.
    Percent(f64),
    /// Bytes in use on Docker's filesystem.
    Bytes(u64),
}

impl Watermark {
    /// Parse `85%` or `40GiB`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.trim();
        if let Some(number) = trimmed.strip_suffix('%') {
            let pct: f64 = number
                .trim()
                .parse()
                .map_err(|_| format!("invalid percentage {trimmed:?}; use e.g. 85%"))?;
            if !(0.0..=100.0).contains(&pct) {
                return Err(format!("percentage {trimmed:?} is outside 0%..100%"));
            }
            return Ok(Self::Percent(pct));
        }
        parse_size(trimmed).map(Self::Bytes).map_err(|_| {
            format!("invalid watermark {trimmed:?}; use a percentage (85%) or a size (40GiB)")
        })
    }

    /// Is `used` of `total` above this mark? For `Bytes`, only bytes are compared.
    pub fn exceeded_by(&self, used: u64, total: u64) -> bool {
        match *self {
            Self::Percent(p) => total > 0 && (used as f64) * 100.0 > p * (total as f64),
            Self::Bytes(b) => used > b,
        }
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Percent(p) => write!(f, "{p}%"),
            Self::Bytes(b) => f.write_str(&format_size(*b)),
        }
    }
}

/// Values that are written as text in flags and in the file: one `FromStr` serves clap,
/// serde and `check` (which shows them back with `Display`).
macro_rules! text_value {
    ($ty:ty) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

impl FromStr for Watermark {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Self::parse(text)
    }
}
text_value!(Watermark);

/// `--ensure-free SIZE[,INODES]`: free space (and optionally free inodes) Docker's
/// filesystem must have after a pass; `10GB` or `10GB,100000`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FreeSpace {
    pub bytes: u64,
    pub inodes: Option<u64>,
}

impl FreeSpace {
    /// For messages: `10 GiB` or `10 GiB and 100000 inodes`.
    pub fn describe(&self) -> String {
        match self.inodes {
            Some(i) => format!("{} and {i} inodes", format_size(self.bytes)),
            None => format_size(self.bytes),
        }
    }

    /// Does a filesystem with `free_bytes`/`free_inodes` free meet this?
    pub fn met_by(&self, free_bytes: u64, free_inodes: u64) -> bool {
        free_bytes >= self.bytes && self.inodes.is_none_or(|i| free_inodes >= i)
    }
}

impl FromStr for FreeSpace {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        let (size, inodes) = match text.split_once(',') {
            Some((size, inodes)) => (size, Some(inodes.trim())),
            None => (text, None),
        };
        let bytes = parse_size(size)?;
        let inodes = inodes
            .map(|i| {
                i.parse::<u64>().map_err(|_| {
                    format!("invalid inode count {i:?}; use SIZE[,INODES], e.g. 10GB,100000")
                })
            })
            .transpose()?;
        Ok(Self { bytes, inodes })
    }
}

impl fmt::Display for FreeSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_size(self.bytes))?;
        match self.inodes {
            Some(i) => write!(f, ",{i}"),
            None => Ok(()),
        }
    }
}
text_value!(FreeSpace);

/// A duration as users write it (`90s`, `1h30m`, `7d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        parse_duration(text).map(Self)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}
text_value!(HumanDuration);

/// Serialize a `Duration` field of resolved settings the way users write it.
pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&HumanDuration(*d))
}

/// `--shard I/N`: this run owns the repositories whose stable hash is I modulo N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// Stable across processes and releases: FNV-1a (64 bit) of the repository name.
    pub fn owns(&self, repository: &str) -> bool {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in repository.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        hash % u64::from(self.count) == u64::from(self.index)
    }
}

impl FromStr for Shard {
    type Err = String;
    /// `I/N` with 0 ≤ I < N.
    fn from_str(text: &str) -> Result<Self, String> {
        let (i, n) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not I/N (e.g. 0/4)"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: shard index {i:?} is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{text:?}: shard count {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!("{text:?}: need 0 <= I < N"));
        }
        Ok(Self { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}
text_value!(Shard);

/// An `s3://bucket/key` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub key: String,
}

impl FromStr for S3Location {
    type Err = String;
    fn from_str(url: &str) -> Result<Self, String> {
        let bad = || format!("expected s3://BUCKET/KEY, got {url:?}");
        let rest = url.trim().strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
        if bucket.is_empty() || key.is_empty() || key.ends_with('/') {
            return Err(bad());
        }
        Ok(Self {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}
text_value!(S3Location);

/// The ECR quota watermark: a number of images, or `auto` (a share of the quota).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxImages {
    Count(u64),
    Auto,
}

impl FromStr for MaxImages {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        match text.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Self::Count(n)),
            _ => Err(format!("{text:?} is not a positive number or \"auto\"")),
        }
    }
}

impl fmt::Display for MaxImages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Auto => f.write_str("auto"),
        }
    }
}

impl<'de> Deserialize<'de> for MaxImages {
    /// `max_images = 5000` or `max_images = "auto"`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Count(i64),
            Text(String),
        }
        match Form::deserialize(d)? {
            Form::Count(n) if n > 0 => Ok(Self::Count(n.unsigned_abs())),
            Form::Count(n) => Err(serde::de::Error::custom(format!(
                "{n} is not a positive number or \"auto\""
            ))),
            Form::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for MaxImages {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n),
            Self::Auto => s.serialize_str("auto"),
        }
    }
}

/// A `KEY=VALUE` flag argument (`--set`, `--registry-secret`). The value is never
/// shown in an error: it may be a secret typed in the wrong place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
}

impl FromStr for KeyValue {
    type Err = String;
    fn from_str(item: &str) -> Result<Self, String> {
        match item.split_once('=') {
            Some((key, value)) => Ok(Self {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
            None => Err("no `=` found".to_owned()),
        }
    }
}

/// A TOML table of strings read as `KEY=VALUE` entries in file order (the sources of
/// `[bootstrap]` apply "in the order given").
pub fn key_value_table<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyValue>, D::Error> {
    let table = indexmap::IndexMap::<String, String>::deserialize(d)?;
    Ok(table
        .into_iter()
        .map(|(key, value)| KeyValue { key, value })
        .collect())
}

/// Keys in `set`-style maps whose values are redacted when shown.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_uppercase();
    ["AUTH", "PASSWORD", "SECRET", "TOKEN", "CREDENTIAL"]
        .iter()
        .any(|s| k.contains(s))
}

/// `[default: …]` help text built from the default value itself, so the default is
/// written once and `--help` cannot drift from it.
pub fn with_default(help: &str, default: impl fmt::Display) -> String {
    format!("{help} [default: {default}]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_spec_forms() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert!(parse_duration("soon").unwrap_err().contains("\"soon\""));
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn sizes_and_percentages() {
        assert_eq!(parse_size("512MiB"), Ok(512 * 1024 * 1024));
        assert_eq!(parse_size("10GB"), Ok(10_000_000_000));
        assert_eq!(Watermark::parse("85%"), Ok(Watermark::Percent(85.0)));
        assert_eq!(Watermark::parse("1KiB"), Ok(Watermark::Bytes(1024)));
        assert!(Watermark::parse("120%").is_err());
        assert!(Watermark::parse("lots").unwrap_err().contains("\"lots\""));
    }

    #[test]
    fn typed_values_parse_from_flags_and_files_alike() {
        assert_eq!("0/4".parse::<Shard>(), Ok(Shard { index: 0, count: 4 }));
        assert!("4/4".parse::<Shard>().is_err());
        assert_eq!("auto".parse::<MaxImages>(), Ok(MaxImages::Auto));
        assert_eq!("12".parse::<MaxImages>(), Ok(MaxImages::Count(12)));
        assert!("0".parse::<MaxImages>().is_err());
        let loc: S3Location = "s3://b/k/x".parse().unwrap();
        assert_eq!(loc.to_string(), "s3://b/k/x");
        assert!("s3://b/".parse::<S3Location>().is_err());
        let d: HumanDuration = serde_json::from_str("\"90m\"").unwrap();
        assert_eq!(d.0, Duration::from_secs(5400));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h 30m\"");
        let kv: KeyValue = "A=b=c".parse().unwrap();
        assert_eq!((kv.key.as_str(), kv.value.as_str()), ("A", "b=c"));
        assert!(!"hunter2"
            .parse::<KeyValue>()
            .unwrap_err()
            .contains("hunter2"));
    }

    #[test]
    fn free_space_parses_size_and_optional_inodes() {
        let f: FreeSpace = "10MiB".parse().unwrap();
        assert_eq!(
            f,
            FreeSpace {
                bytes: 10 << 20,
                inodes: None
            }
        );
        let f: FreeSpace = "1KiB,500".parse().unwrap();
        assert_eq!(
            f,
            FreeSpace {
                bytes: 1024,
                inodes: Some(500)
            }
        );
        assert_eq!(f.to_string().parse::<FreeSpace>(), Ok(f));
        assert!(f.met_by(1024, 500) && !f.met_by(1023, 500) && !f.met_by(1024, 499));
        assert!("lots"
            .parse::<FreeSpace>()
            .unwrap_err()
            .contains("\"lots\""));
        assert!("1GB,many"
            .parse::<FreeSpace>()
            .unwrap_err()
            .contains("\"many\""));
    }

    #[test]
    fn watermark_comparison() {
        assert!(Watermark::Percent(80.0).exceeded_by(81, 100));
        assert!(!Watermark::Percent(80.0).exceeded_by(80, 100));
        assert!(Watermark::Bytes(10).exceeded_by(11, 0));
    }
}
