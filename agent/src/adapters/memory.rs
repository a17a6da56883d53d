//! The memory adapter: `CodePages` implements the `Memory` port by handing back the
//! resident pages of this executable's own code and read-only data.
//!
//! Why: an idle daemon's RSS is mostly file-backed pages of its binary (clap, config
//! parsing, tracing set-up, the first Docker listing — and, on every fault, the kernel's
//! fault-around maps the 64 KiB of neighbours too), resident for the life of the process
//! though idle never runs them again. `madvise(MADV_DONTNEED)` on those mappings drops
//! them from the process's page tables; the pages stay in the page cache, and any the
//! daemon runs again are mapped back on their first touch (a minor fault, no disk read
//! while the cache holds them). Where it falls short: the pages are not freed from the
//! page cache (the kernel reclaims them like any clean file page), and code the daemon
//! uses after a release (a reconciliation, a job, a scrape) is resident again until the
//! next one (the daemon releases every 5 min).
//!
//! Only mappings that are an exact copy of the file are advised: read-only, private and
//! with no anonymous (copied-on-write) page in them. The relocated data (`.data.rel.ro`,
//! read-only after relocation but written by the loader), `.data` and `.bss` are never
//! touched, since dropping them would lose their contents.

use std::path::Path;

use crate::ports::memory::{Memory, Released};

/// The executable's clean text and read-only data mappings, released when asked.
#[derive(Debug, Clone, Copy, Default)]
pub struct CodePages;

impl Memory for CodePages {
    fn release_code_pages(&self) -> std::io::Result<Released> {
        let exe = std::fs::read_link("/proc/self/exe")?;
        let smaps = std::fs::read_to_string("/proc/self/smaps")?;
        let mut released = Released::default();
        for mapping in clean_file_mappings(&smaps, &exe) {
            advise_dont_need(mapping.start, mapping.end - mapping.start)?;
            released.mappings += 1;
            released.resident_kib += mapping.rss_kib;
        }
        Ok(released)
    }
}

/// One mapping of `/proc/self/smaps` that holds only pages identical to the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CleanMapping {
    start: usize,
    end: usize,
    rss_kib: u64,
}

/// The mappings of `exe` in `smaps` that are not writable, private, and hold no
/// anonymous page (so their every page is an unmodified copy of the file).
fn clean_file_mappings(smaps: &str, exe: &Path) -> Vec<CleanMapping> {
    struct Current {
        mapping: CleanMapping,
        candidate: bool,
        anonymous_kib: Option<u64>,
    }
    fn finish(c: Option<Current>, out: &mut Vec<CleanMapping>) {
        if let Some(c) = c {
            if c.candidate && c.anonymous_kib == Some(0) {
                out.push(c.mapping);
            }
        }
    }
    let mut out = Vec::new();
    let mut current: Option<Current> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((start, end)) = header_range(first) {
            finish(current.take(), &mut out);
            let perms = fields.next().unwrap_or_default();
            // offset, device, inode, then the path (which may contain spaces).
            let path = fields.skip(3).collect::<Vec<_>>().join(" ");
            let candidate = Path::new(&path) == exe
                && perms.len() == 4
                && !perms.contains('w')
                && perms.ends_with('p');
            current = Some(Current {
                mapping: CleanMapping {
                    start,
                    end,
                    rss_kib: 0,
                },
                candidate,
                anonymous_kib: None,
            });
        } else if let Some(c) = current.as_mut() {
            let kib = fields.next().and_then(|v| v.parse::<u64>().ok());
            match first {
                "Rss:" => c.mapping.rss_kib = kib.unwrap_or(0),
                "Anonymous:" => c.anonymous_kib = kib,
                _ => {}
            }
        }
    }
    finish(current.take(), &mut out);
    out
}

/// `start-end` of a mapping header line, both hexadecimal.
fn header_range(first: &str) -> Option<(usize, usize)> {
    let (start, end) = first.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end))
}

/// `madvise(start, len, MADV_DONTNEED)`.
#[allow(unsafe_code)]
fn advise_dont_need(start: usize, len: usize) -> std::io::Result<()> {
    use nix::sys::mman::{madvise, MmapAdvise};
    let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
        return Ok(());
    };
    // SAFETY: `start..start + len` is a whole mapping of this process's executable,
    // read from /proc/self/smaps just now: private, not writable, and with no anonymous
    // page, so each of its pages equals the file's. MADV_DONTNEED on such a mapping only
    // unmaps the pages; the next access maps the same bytes back from the file (the page
    // cache). No Rust object changes value, none is freed, and the mapping stays in
    // place. Nothing in this process makes these mappings writable (no mprotect, no
    // JIT), so no page can turn anonymous between the read of smaps and this call.
    unsafe { madvise(addr, len, MmapAdvise::MADV_DONTNEED) }.map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5555a000-5555b000 r--p 00000000 fd:01 42 /usr/bin/ship shape
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
5555b000-5555f000 r-xp 00001000 fd:01 42 /usr/bin/ship shape
Size:                 16 kB
Rss:                  12 kB
Anonymous:             0 kB
5555f000-55560000 r--p 00005000 fd:01 42 /usr/bin/ship shape
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
55560000-55561000 rw-p 00006000 fd:01 42 /usr/bin/ship shape
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
7f000000-7f001000 r-xp 00000000 fd:01 7 /usr/lib/libc.so.6
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
7ffd0000-7ffd1000 rw-p 00000000 00:00 0 [stack]
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
";

    /// Text and rodata of the binary only: not the relocated data (anonymous pages),
    /// not `.data`, not another file, not the stack.
    #[test]
    fn only_the_binarys_unmodified_read_only_mappings_are_chosen() {
        let chosen = clean_file_mappings(SMAPS, Path::new("/usr/bin/ship shape"));
        assert_eq!(
            chosen,
            vec![
                CleanMapping {
                    start: 0x5555_a000,
                    end: 0x5555_b000,
                    rss_kib: 4
                },
                CleanMapping {
                    start: 0x5555_b000,
                    end: 0x5555_f000,
                    rss_kib: 12
                },
            ]
        );
    }

    /// The real thing on this test binary: its file-backed RSS falls, and the code
    /// that runs afterwards (this test, the harness) is mapped back and works.
    #[test]
    fn releasing_drops_the_binarys_resident_pages_and_code_still_runs() {
        let rss_file = || {
            let status = std::fs::read_to_string("/proc/self/status").unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("RssFile:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap()
        };
        let before = rss_file();
        let released = CodePages.release_code_pages().unwrap();
        let after = rss_file();
        assert!(released.mappings >= 2, "{released:?}");
        assert!(released.resident_kib > 0, "{released:?}");
        assert!(after < before, "RssFile {before} KiB before, {after} after");
        // Code runs again from the pages mapped back on demand.
        let text = format!("{:?}", clean_file_mappings(SMAPS, Path::new("/x")));
        assert_eq!(text, "[]");
    }
}
