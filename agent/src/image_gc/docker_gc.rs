//! docker-gc's exclude file, with its exact semantics (spotify/docker-gc,
//! `compute_exclude_ids`): every non-blank line, wrapped in one space each side, is a
//! grep *basic* regular expression (`grep -f`), matched anywhere in the rows
//! ` repo:tag shortid ` that `docker images` prints — one row per tag, `repo:<none>`
//! for a repository the image has only digests in, `<none>:<none>` for a dangling
//! image; `shortid` is the 12-digit ID. An image with a matching row is excluded.
//! Comments are not special to docker-gc either (a `#` line matches no real row).
//! docker-gc then greps its full-ID list for `^shortid`, which on engines that print
//! `sha256:` never matches; this keeps what the rule intends, the matched image.

use regex::Regex;

use crate::shared::reference::{familiar, repo_of, short_id};

/// One compiled line of the file.
#[derive(Debug, Clone)]
pub struct GrepLine {
    /// The line as written.
    pub line: String,
    regex: Regex,
}

/// A line that is not a valid basic regular expression.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {number} ({line:?}) is not a valid grep basic regular expression: {message}")]
pub struct LineError {
    pub number: usize,
    pub line: String,
    pub message: String,
}

/// Compile the file's lines (blank ones skipped, as docker-gc's `sed '/^ *$/d'` does).
pub fn parse(text: &str) -> Result<Vec<GrepLine>, LineError> {
    let mut lines = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let err = |message: String| LineError {
            number: n + 1,
            line: line.to_owned(),
            message,
        };
        let translated = translate(&format!(" {line} ")).map_err(err)?;
        let regex = Regex::new(&translated).map_err(|e| err(first_line(&e.to_string())))?;
        lines.push(GrepLine {
            line: line.to_owned(),
            regex,
        });
    }
    Ok(lines)
}

fn first_line(message: &str) -> String {
    message
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| message.lines().next().unwrap_or(message))
        .trim_start_matches("error: ")
        .to_owned()
}

/// The rows `docker images` prints for an image, as docker-gc rewrites them.
pub fn rows(id: &str, tags: &[String], digests: &[String]) -> Vec<String> {
    let short = short_id(id);
    let mut rows: Vec<String> = tags
        .iter()
        .map(|t| format!(" {} {short} ", familiar(t)))
        .collect();
    for d in digests {
        let repo = familiar(repo_of(d)).to_owned();
        let tagged = tags.iter().any(|t| familiar(repo_of(t)) == repo);
        let row = format!(" {repo}:<none> {short} ");
        if !tagged && !rows.contains(&row) {
            rows.push(row);
        }
    }
    if rows.is_empty() {
        rows.push(format!(" <none>:<none> {short} "));
    }
    rows
}

impl GrepLine {
    pub fn matches(&self, rows: &[String]) -> bool {
        rows.iter().any(|r| self.regex.is_match(r))
    }
}

/// A POSIX basic regular expression (with GNU grep's `\+ \? \| \< \> \w \s`) as a
/// `regex` crate expression.
fn translate(bre: &str) -> Result<String, String> {
    let chars: Vec<char> = bre.chars().collect();
    let mut out = String::with_capacity(bre.len() * 2);
    let mut depth = 0usize;
    // Where a `*` is literal: at the start, after `\(`, after an anchoring `^`.
    let mut at_start = true;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut next_at_start = false;
        match c {
            '\\' => {
                let Some(&e) = chars.get(i + 1) else {
                    return Err("trailing backslash".to_owned());
                };
                i += 1;
                match e {
                    '(' => {
                        depth += 1;
                        out.push('(');
                        next_at_start = true;
                    }
                    ')' => {
                        if depth == 0 {
                            return Err("unmatched \\)".to_owned());
                        }
                        depth -= 1;
                        out.push(')');
                    }
                    '{' => out.push('{'),
                    '}' => out.push('}'),
                    '|' => {
                        out.push('|');
                        next_at_start = true;
                    }
                    '+' | '?' => out.push(e),
                    '<' | '>' => out.push_str("\\b"),
                    'w' | 'W' | 's' | 'S' | 'b' | 'B' => {
                        out.push('\\');
                        out.push(e);
                    }
                    '1'..='9' => return Err("back-references are not supported".to_owned()),
                    other => out.push_str(&regex::escape(&other.to_string())),
                }
            }
            '*' if at_start => out.push_str("\\*"),
            '^' if at_start => {
                out.push('^');
                next_at_start = true;
            }
            '$' if i + 1 == chars.len() || chars[i + 1..].starts_with(&['\\', ')']) => {
                out.push('$');
            }
            '[' => {
                let (class, end) = bracket(&chars, i)?;
                out.push_str(&class);
                i = end;
            }
            '.' | '*' => out.push(c),
            other => out.push_str(&regex::escape(&other.to_string())),
        }
        at_start = next_at_start;
        i += 1;
    }
    if depth > 0 {
        return Err("unmatched \\(".to_owned());
    }
    Ok(out)
}

/// A bracket expression starting at `chars[start] == '['`: its translation and the
/// index of its closing `]`.
fn bracket(chars: &[char], start: usize) -> Result<(String, usize), String> {
    let mut out = String::from("[");
    let mut i = start + 1;
    if chars.get(i) == Some(&'^') {
        out.push('^');
        i += 1;
    }
    let mut first = true;
    while i < chars.len() {
        let c = chars[i];
        if c == ']' && !first {
            out.push(']');
            return Ok((out, i));
        }
        if c == '[' && matches!(chars.get(i + 1), Some(':' | '.' | '=')) {
            let kind = chars[i + 1];
            let close = (i + 2..chars.len().saturating_sub(1))
                .find(|&j| chars[j] == kind && chars[j + 1] == ']')
                .ok_or_else(|| "unterminated character class".to_owned())?;
            let name: String = chars[i + 2..close].iter().collect();
            if kind != ':' {
                return Err(format!("[{kind}{name}{kind}] is not supported"));
            }
            out.push_str(&format!("[:{name}:]"));
            i = close + 2;
            first = false;
            continue;
        }
        match c {
            '\\' | '[' | '&' | '~' => {
                out.push('\\');
                out.push(c);
            }
            ']' => out.push_str("\\]"),
            _ => out.push(c),
        }
        first = false;
        i += 1;
    }
    Err("unmatched [".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excluded(file: &str, id: &str, tags: &[&str], digests: &[&str]) -> bool {
        let lines = parse(file).unwrap();
        let tags: Vec<String> = tags.iter().map(|t| t.to_string()).collect();
        let digests: Vec<String> = digests.iter().map(|t| t.to_string()).collect();
        let rows = rows(id, &tags, &digests);
        lines.iter().any(|l| l.matches(&rows))
    }

    const ID: &str = "sha256:0123456789abcdef0000000000000000000000000000000000000000000000ff";

    #[test]
    fn lines_are_regexes_on_repo_tag_and_short_id() {
        assert!(excluded("redis:.*", ID, &["redis:7"], &[]));
        assert!(excluded(".*:latest", ID, &["app:latest"], &[]));
        assert!(excluded("spotify/.*", ID, &["spotify/cassandra:2"], &[]));
        assert!(!excluded("spotify/.*", ID, &["other/spotify:1"], &[]));
        // Wrapped in spaces: a bare repository name matches no row.
        assert!(!excluded("redis", ID, &["redis:7"], &[]));
        // The short ID, whole.
        assert!(excluded("0123456789ab", ID, &["app:1"], &[]));
        assert!(!excluded("0123456789a", ID, &["app:1"], &[]));
        // A glob is a regex too: `redis:*` is "redis" then any number of ':'.
        assert!(!excluded("redis:*", ID, &["redis:7"], &[]));
    }

    #[test]
    fn basic_regex_syntax_as_grep_reads_it() {
        assert!(excluded("app:v\\(1\\|2\\)", ID, &["app:v2"], &[]));
        assert!(excluded("app:[0-9]\\{2\\}", ID, &["app:42"], &[]));
        assert!(excluded("app:1+", ID, &["app:1+"], &[]));
        assert!(!excluded("app:1+", ID, &["app:11"], &[]));
        assert!(excluded("app:[[:digit:]]*", ID, &["app:123"], &[]));
    }

    #[test]
    fn digest_only_and_dangling_rows() {
        assert!(excluded(
            "reg/pinned:.*",
            ID,
            &[],
            &["reg/pinned@sha256:aa"]
        ));
        assert!(excluded("<none>:<none>", ID, &[], &[]));
        assert!(!excluded(
            "reg/pinned:.*",
            ID,
            &[],
            &["reg/other@sha256:aa"]
        ));
    }

    #[test]
    fn references_are_familiar_before_matching() {
        assert!(excluded("redis:7", ID, &["docker.io/library/redis:7"], &[]));
    }

    #[test]
    fn an_invalid_line_is_an_error_naming_it() {
        let e = parse("redis:.*\n\napp:\\(\n").unwrap_err();
        assert_eq!(e.number, 3);
        assert_eq!(e.line, "app:\\(");
        let e = parse("a[b").unwrap_err();
        assert_eq!(e.number, 1);
        assert!(e.to_string().contains("line 1 (\"a[b\")"), "{e}");
    }
}
