//! `/etc/ecs/ecs.config`, pure: parse it the way ecs-init does, merge our managed
//! keys into it, render it. ecs-init trims each line, splits it at the first `=`,
//! ignores lines without one, and lets the LAST occurrence of a key win; there is no
//! quoting and no comment syntax. Works on bytes so unmanaged lines survive exactly.

/// First line of a file we create. It has no `=`, so ecs-init ignores it, and it
/// starts with `#`, so systemd's `EnvironmentFile=` (ecs.service) ignores it too.
pub const HEADER: &str = "# Managed by shipshape bootstrap: the keys it sets are rewritten on each run, other lines are kept";

/// One managed key and the value to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
}

/// The result of a merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merged {
    pub bytes: Vec<u8>,
    /// Managed keys that were new to the file (appended).
    pub appended: Vec<String>,
    /// 1-based line numbers of later duplicates of managed keys that were dropped.
    pub dropped_duplicates: Vec<(String, usize)>,
}

/// Set `entry.key` to `entry.value` in `entries`: in place if the key is there
/// (later wins, first position kept), appended otherwise.
pub fn upsert(entries: &mut Vec<Entry>, entry: Entry) {
    match entries.iter_mut().find(|e| e.key == entry.key) {
        Some(existing) => existing.value = entry.value,
        None => entries.push(entry),
    }
}

/// Why a key or value cannot go into ecs.config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("key {0:?} is not a valid ecs.config key (must match ^[A-Z][A-Z0-9_]*$)")]
    BadKey(String),
    #[error("the value of {0} contains a line break; ecs.config values are one line")]
    Newline(String),
    #[error("the value of {0} ends with whitespace, which ecs-init strips")]
    TrailingSpace(String),
    #[error("the value of {0} contains a NUL byte")]
    Nul(String),
}

/// `^[A-Z][A-Z0-9_]*$`.
pub fn valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some('A'..='Z'))
        && chars.all(|c| matches!(c, 'A'..='Z' | '0'..='9' | '_'))
}

/// Check an entry can be written so that ecs-init reads back exactly `value`.
/// Messages name the key, never the value.
pub fn validate(key: &str, value: &str) -> Result<(), EntryError> {
    if !valid_key(key) {
        return Err(EntryError::BadKey(key.to_owned()));
    }
    if value.contains(['\n', '\r']) {
        return Err(EntryError::Newline(key.to_owned()));
    }
    if value.contains('\0') {
        return Err(EntryError::Nul(key.to_owned()));
    }
    // ecs-init trims the whole line, so trailing whitespace of the value is lost.
    if value.ends_with(|c: char| c.is_whitespace()) {
        return Err(EntryError::TrailingSpace(key.to_owned()));
    }
    Ok(())
}

/// `line` without the leading and trailing whitespace Go's `strings.TrimSpace`
/// removes: Unicode White_Space (which is what Rust's `char::is_whitespace` tests,
/// so VT, NBSP, U+0085 and U+3000 included), decoded as UTF-8. An invalid byte is
/// not whitespace for Go (it decodes as U+FFFD), so trimming stops at one.
pub fn go_trim_space(line: &[u8]) -> &[u8] {
    let start = line.len() - trim_start_len(line);
    let rest = &line[start..];
    &rest[..trim_end_len(rest)]
}

/// The length of `b` once its leading White_Space is removed.
fn trim_start_len(b: &[u8]) -> usize {
    let mut removed = 0;
    for chunk in b.utf8_chunks() {
        let valid = chunk.valid();
        let kept = valid.trim_start();
        removed += valid.len() - kept.len();
        if !kept.is_empty() || !chunk.invalid().is_empty() {
            break;
        }
    }
    b.len() - removed
}

/// The length of `b` once its trailing White_Space is removed.
fn trim_end_len(b: &[u8]) -> usize {
    // Only the last chunk can end in whitespace: any earlier one ends in an invalid
    // byte, which stops the trim.
    let mut last_valid = "";
    let mut ends_invalid = false;
    for chunk in b.utf8_chunks() {
        last_valid = chunk.valid();
        ends_invalid = !chunk.invalid().is_empty();
    }
    if ends_invalid {
        return b.len();
    }
    b.len() - (last_valid.len() - last_valid.trim_end().len())
}

/// The key ecs-init sees on a line: Go-trimmed ([`go_trim_space`]), text before the
/// first `=`; None when the line has no `=` (ecs-init skips such lines).
pub fn line_key(line: &[u8]) -> Option<&[u8]> {
    let trimmed = go_trim_space(line);
    let eq = trimmed.iter().position(|&b| b == b'=')?;
    Some(&trimmed[..eq])
}

/// Read a file exactly as ecs-init does; later keys win. Follows ecs-init's
/// `getEnvVars` (aws/amazon-ecs-agent, ecs-init/docker/docker.go): the whole file
/// `strings.TrimSpace`d, split at `\n`, each line `TrimSpace`d and `SplitN(line,
/// "=", 2)`, lines without `=` skipped, the last occurrence of a key wins.
#[cfg(test)]
pub fn read_like_ecs_init(text: &str) -> std::collections::HashMap<String, String> {
    let mut out = std::collections::HashMap::new();
    for line in text.trim().split('\n') {
        if let Some((k, v)) = line.trim().split_once('=') {
            out.insert(k.to_owned(), v.to_owned());
        }
    }
    out
}

/// Merge `entries` into `existing` (None: no file). Each managed key replaces its
/// FIRST occurrence in place. Later occurrences of a managed key are dropped: ecs-init
/// lets the last one win, so keeping them would silently override what we wrote.
/// Every other line is kept byte-for-byte in order; keys not present are appended.
/// A new (absent or blank) file gets [`HEADER`] as its first line.
pub fn merge(existing: Option<&[u8]>, entries: &[Entry]) -> Merged {
    let existing = existing.unwrap_or_default();
    let fresh = existing.iter().all(u8::is_ascii_whitespace);
    let mut out: Vec<u8> = Vec::with_capacity(existing.len() + 256);
    let mut seen = vec![false; entries.len()];
    let mut dropped_duplicates = Vec::new();

    if fresh {
        out.extend_from_slice(HEADER.as_bytes());
        out.push(b'\n');
    } else {
        let ends_with_newline = existing.last() == Some(&b'\n');
        let body = if ends_with_newline {
            &existing[..existing.len() - 1]
        } else {
            existing
        };
        for (index, line) in body.split(|&b| b == b'\n').enumerate() {
            let managed =
                line_key(line).and_then(|k| entries.iter().position(|e| e.key.as_bytes() == k));
            match managed {
                Some(i) if seen[i] => {
                    dropped_duplicates.push((entries[i].key.clone(), index + 1));
                    continue;
                }
                Some(i) => {
                    seen[i] = true;
                    push_entry(&mut out, &entries[i]);
                }
                None => out.extend_from_slice(line),
            }
            out.push(b'\n');
        }
        // A file without a final newline keeps that, unless we append after it.
        if !ends_with_newline && out.last() == Some(&b'\n') && seen.iter().all(|s| *s) {
            out.pop();
        }
    }

    let mut appended = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        if !seen[i] {
            push_entry(&mut out, entry);
            out.push(b'\n');
            appended.push(entry.key.clone());
        }
    }
    Merged {
        bytes: out,
        appended,
        dropped_duplicates,
    }
}

fn push_entry(out: &mut Vec<u8>, entry: &Entry) {
    out.extend_from_slice(entry.key.as_bytes());
    out.push(b'=');
    out.extend_from_slice(entry.value.as_bytes());
}

/// Parse an ecs.config fragment (from S3): `KEY=VALUE` lines, blank lines and lines
/// without `=` (e.g. `#` comments) skipped, each line trimmed as ecs-init would.
/// Later duplicates win, as in ecs-init. Errors name the line, never the value.
pub fn parse_fragment(text: &str) -> Result<Vec<Entry>, (usize, EntryError)> {
    let mut out: Vec<Entry> = Vec::new();
    for (index, raw) in text.split('\n').enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        validate(key, value).map_err(|e| (index + 1, e))?;
        match out.iter_mut().find(|e| e.key == key) {
            Some(e) => e.value = value.to_owned(),
            None => out.push(Entry {
                key: key.to_owned(),
                value: value.to_owned(),
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(k: &str, v: &str) -> Entry {
        Entry {
            key: k.into(),
            value: v.into(),
        }
    }

    fn merge_str(existing: Option<&str>, entries: &[Entry]) -> String {
        String::from_utf8(merge(existing.map(str::as_bytes), entries).bytes).unwrap()
    }

    #[test]
    fn new_file_gets_header_and_keys() {
        let out = merge_str(None, &[e("ECS_CLUSTER", "prod"), e("A", "1")]);
        assert_eq!(out, format!("{HEADER}\nECS_CLUSTER=prod\nA=1\n"));
        assert!(!HEADER.contains('='));
    }

    #[test]
    fn blank_file_counts_as_new() {
        let out = merge_str(Some("\n\n"), &[e("ECS_CLUSTER", "prod")]);
        assert_eq!(out, format!("{HEADER}\nECS_CLUSTER=prod\n"));
    }

    #[test]
    fn header_is_ignored_by_ecs_init() {
        let out = merge_str(None, &[e("ECS_CLUSTER", "prod")]);
        let read = read_like_ecs_init(&out);
        assert_eq!(read.len(), 1);
        assert_eq!(read["ECS_CLUSTER"], "prod");
    }

    #[test]
    fn managed_key_replaced_in_place_others_kept() {
        let existing = "# comment\n\nECS_LOGLEVEL=debug\nECS_CLUSTER=old\n  spaced = kept  \nZ=1\n";
        let out = merge_str(Some(existing), &[e("ECS_CLUSTER", "prod")]);
        assert_eq!(
            out,
            "# comment\n\nECS_LOGLEVEL=debug\nECS_CLUSTER=prod\n  spaced = kept  \nZ=1\n"
        );
    }

    #[test]
    fn new_keys_are_appended_in_order() {
        let out = merge_str(Some("A=1\n"), &[e("C", "3"), e("B", "2")]);
        assert_eq!(out, "A=1\nC=3\nB=2\n");
        let m = merge(Some(b"A=1\n"), &[e("C", "3"), e("A", "9")]);
        assert_eq!(m.appended, vec!["C".to_owned()]);
    }

    #[test]
    fn later_duplicates_of_managed_key_are_dropped() {
        let existing = "ECS_CLUSTER=a\nX=1\nECS_CLUSTER=b\nX=2\n";
        let m = merge(Some(existing.as_bytes()), &[e("ECS_CLUSTER", "prod")]);
        assert_eq!(
            String::from_utf8(m.bytes.clone()).unwrap(),
            "ECS_CLUSTER=prod\nX=1\nX=2\n"
        );
        assert_eq!(m.dropped_duplicates, vec![("ECS_CLUSTER".to_owned(), 3)]);
        // ecs-init (last wins) now sees our value.
        let read = read_like_ecs_init(std::str::from_utf8(&m.bytes).unwrap());
        assert_eq!(read["ECS_CLUSTER"], "prod");
        assert_eq!(read["X"], "2", "unmanaged duplicates keep their meaning");
    }

    #[test]
    fn unmanaged_duplicates_kept() {
        let existing = "X=1\nX=2\n";
        assert_eq!(merge_str(Some(existing), &[e("A", "1")]), "X=1\nX=2\nA=1\n");
    }

    #[test]
    fn key_found_the_way_ecs_init_finds_it() {
        // Leading spaces and CR are trimmed by ecs-init, so these ARE the key.
        let existing = "  ECS_CLUSTER=old\r\nOTHER=x\r\n";
        assert_eq!(
            merge_str(Some(existing), &[e("ECS_CLUSTER", "prod")]),
            "ECS_CLUSTER=prod\nOTHER=x\r\n"
        );
        // "ECS_CLUSTER =x" has key "ECS_CLUSTER " for ecs-init: not ours, kept.
        let existing = "ECS_CLUSTER =x\n";
        assert_eq!(
            merge_str(Some(existing), &[e("ECS_CLUSTER", "prod")]),
            "ECS_CLUSTER =x\nECS_CLUSTER=prod\n"
        );
    }

    #[test]
    fn keys_are_found_behind_unicode_whitespace_as_go_trims() {
        for space in ["\u{b}", "\u{c}", "\u{a0}", "\u{85}", "\u{3000}", "\u{2028}"] {
            let line = format!("{space}ECS_CLUSTER=old{space}");
            assert_eq!(
                line_key(line.as_bytes()),
                Some(&b"ECS_CLUSTER"[..]),
                "{space:?}"
            );
        }
        // U+FEFF (BOM) and U+200B are not White_Space for Go either: the key keeps them.
        for not_space in ["\u{feff}", "\u{200b}"] {
            let line = format!("{not_space}ECS_CLUSTER=old");
            assert_ne!(line_key(line.as_bytes()), Some(&b"ECS_CLUSTER"[..]));
        }
        let existing = "ECS_CLUSTER=a\n\u{3000}ECS_CLUSTER=b\n\u{a0}\u{85}\u{b}ECS_CLUSTER=c\n";
        let m = merge(Some(existing.as_bytes()), &[e("ECS_CLUSTER", "prod")]);
        assert_eq!(m.bytes, b"ECS_CLUSTER=prod\n");
        assert_eq!(
            m.dropped_duplicates,
            vec![("ECS_CLUSTER".to_owned(), 2), ("ECS_CLUSTER".to_owned(), 3)]
        );
    }

    #[test]
    fn go_trim_stops_at_invalid_utf8() {
        assert_eq!(go_trim_space(b" \xff A=1 \xfe "), b"\xff A=1 \xfe");
        assert_eq!(go_trim_space(b"\xc2\xa0A=1\xc2\xa0"), b"A=1");
        assert_eq!(go_trim_space(b" \t\xe3\x80\x80 "), b"");
        assert_eq!(go_trim_space(b"A=\xff"), b"A=\xff");
        assert_eq!(go_trim_space(b"\xffA=1\x0b"), b"\xffA=1");
    }

    #[test]
    fn commented_key_is_not_the_key() {
        let existing = "#ECS_CLUSTER=old\n";
        assert_eq!(
            merge_str(Some(existing), &[e("ECS_CLUSTER", "prod")]),
            "#ECS_CLUSTER=old\nECS_CLUSTER=prod\n"
        );
    }

    #[test]
    fn missing_final_newline_kept_when_nothing_appended() {
        assert_eq!(
            merge_str(Some("A=1\nECS_CLUSTER=old"), &[e("ECS_CLUSTER", "new")]),
            "A=1\nECS_CLUSTER=new"
        );
        assert_eq!(merge_str(Some("A=1\nB=2"), &[e("B", "2")]), "A=1\nB=2");
    }

    #[test]
    fn missing_final_newline_fixed_before_appending() {
        assert_eq!(merge_str(Some("A=1"), &[e("B", "2")]), "A=1\nB=2\n");
        assert_eq!(merge_str(Some("# c"), &[e("B", "2")]), "# c\nB=2\n");
    }

    #[test]
    fn non_utf8_lines_survive() {
        let existing: &[u8] = b"X=\xff\xfe\nECS_CLUSTER=a\n";
        let m = merge(Some(existing), &[e("ECS_CLUSTER", "b")]);
        assert_eq!(m.bytes, b"X=\xff\xfe\nECS_CLUSTER=b\n");
    }

    #[test]
    fn merge_is_idempotent() {
        let entries = [
            e("ECS_CLUSTER", "prod"),
            e("ECS_ENGINE_AUTH_DATA", "{\"a\":1}"),
        ];
        let first = merge(Some(b"# x\nA=1\n\n"), &entries).bytes;
        let second = merge(Some(&first), &entries).bytes;
        assert_eq!(first, second);
        let fresh = merge(None, &entries).bytes;
        assert_eq!(merge(Some(&fresh), &entries).bytes, fresh);
    }

    #[test]
    fn values_with_equals_and_quotes_read_back() {
        let v = r#"{"r":{"username":"u","password":"a=b\"c\\d$e'f g ü"}}"#;
        let out = merge_str(None, &[e("ECS_ENGINE_AUTH_DATA", v)]);
        assert_eq!(read_like_ecs_init(&out)["ECS_ENGINE_AUTH_DATA"], v);
    }

    #[test]
    fn ecs_init_reading_rules() {
        let read = read_like_ecs_init("A=1\n  B=x=y  \nnoequals\nA=2\n=empty\nC=\n");
        assert_eq!(read["A"], "2");
        assert_eq!(read["B"], "x=y");
        assert_eq!(read[""], "empty");
        assert_eq!(read["C"], "");
        assert!(!read.contains_key("noequals"));
    }

    #[test]
    fn keys_are_validated() {
        assert!(valid_key("ECS_CLUSTER"));
        assert!(valid_key("A1_"));
        for bad in ["", "ecs_cluster", "1A", "A-B", "A B", "_A", "ÄB"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }

    #[test]
    fn values_are_validated() {
        assert!(validate("A", "").is_ok());
        assert!(validate("A", " leading ok").is_ok());
        assert_eq!(validate("A", "x\ny"), Err(EntryError::Newline("A".into())));
        assert_eq!(validate("A", "x\r"), Err(EntryError::Newline("A".into())));
        assert_eq!(
            validate("A", "x "),
            Err(EntryError::TrailingSpace("A".into()))
        );
        assert_eq!(validate("a", "x"), Err(EntryError::BadKey("a".into())));
        assert!(!EntryError::Newline("A".into()).to_string().contains("x\ny"));
    }

    #[test]
    fn fragment_parsing() {
        let frag = "# base\n\nECS_ENABLE_TASK_IAM_ROLE=true\r\n  ECS_LOGLEVEL=info\nECS_LOGLEVEL=debug\njunk\n";
        let got = parse_fragment(frag).unwrap();
        assert_eq!(
            got,
            vec![
                e("ECS_ENABLE_TASK_IAM_ROLE", "true"),
                e("ECS_LOGLEVEL", "debug")
            ]
        );
    }

    #[test]
    fn fragment_bad_key_names_line() {
        let err = parse_fragment("A=1\nbad-key=secretvalue\n").unwrap_err();
        assert_eq!(err.0, 2);
        assert!(!err.1.to_string().contains("secretvalue"));
    }
}
