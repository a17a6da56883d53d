//! Parsing of the human units SPEC.md promises everywhere: durations (`90s`, `30m`,
//! `1h`, `7d`) and sizes or percentages (`512MiB`, `10GB`, `85%`).
//!
//! Errors carry the offending text so callers can name the key or flag.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

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
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
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
    fn watermark_comparison() {
        assert!(Watermark::Percent(80.0).exceeded_by(81, 100));
        assert!(!Watermark::Percent(80.0).exceeded_by(80, 100));
        assert!(Watermark::Bytes(10).exceeded_by(11, 0));
    }
}
