//! The memory adapter: `CodePages` implements the `Memory` port by handing back the
//! resident pages of this executable's own code and read-only data, and the free pages
//! of the heap.
//!
//! Why: an idle daemon's RSS is mostly file-backed pages of its binary (clap, config
//! parsing, tracing set-up, the first Docker listing), resident for the life of the
//! process though idle never runs them again. A release does five things, each
//! measured by `bench-daemon` (README, Benchmarks):
//!
//! 1. `madvise(MADV_RANDOM)` on those mappings: a later page fault there reads only the
//!    page it needs, no readahead around it.
//! 2. `madvise(MADV_PAGEOUT)`: the pages leave the process's page tables and, where no
//!    other process maps them, the page cache, in one step (the kernel allows it on a
//!    file its caller owns or may write: the packaged binary is root's, like the daemon).
//! 3. `madvise(MADV_DONTNEED)`: unmaps what pageout left (pages another process of the
//!    same binary maps too).
//! 4. `posix_fadvise(POSIX_FADV_DONTNEED)` on the executable: drops from the page cache
//!    what is unmapped by now. Without 2 and 4 the kernel's fault-around maps the 64 KiB
//!    of cached neighbours of every page the idle loop touches (a ping to Docker touches
//!    code spread over the whole binary), and RSS climbed back by about 1.5 MiB within
//!    seconds of a release. With them, a fault maps the page it read, from disk: a 4 KiB
//!    read per page first touched after a release (a job that runs after one reads its
//!    code page by page).
//! 5. `malloc_trim(0)`: glibc hands the free pages of every malloc arena back (start-up
//!    and the first listing leave part of the heap free).
//!
//! Where it falls short: code the daemon uses after a release (a reconciliation, a job,
//! a scrape) is resident again until the next one (the daemon releases every 5 min).
//! Some text stays resident (measured idle: 3.7 of the 20.7 MiB). Likely, not proven:
//! the page cache holds the binary in large folios (ext4 on Linux 6.x), a folio one of
//! whose pages is mapped cannot be dropped, so the folios of the code that runs while the
//! release does stay cached, and faults there still map neighbours.
//!
//! Only mappings that are an exact copy of the file are advised: read-only, private and
//! with no anonymous (copied-on-write) page in them. The relocated data (`.data.rel.ro`,
//! read-only after relocation but written by the loader), `.data` and `.bss` are never
//! touched, since dropping them would lose their contents.

use std::path::Path;

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use nix::sys::mman::{madvise, MmapAdvise};

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
            let len = mapping.end - mapping.start;
            advise(mapping.start, len, MmapAdvise::MADV_RANDOM)?;
            advise(mapping.start, len, MmapAdvise::MADV_PAGEOUT)?;
            advise(mapping.start, len, MmapAdvise::MADV_DONTNEED)?;
            released.mappings += 1;
            released.resident_kib += mapping.rss_kib;
        }
        // Pages still mapped (by this process's code running now, or by another process
        // of the same binary) stay; the kernel drops only unmapped clean pages.
        let file = std::fs::File::open("/proc/self/exe")?;
        posix_fadvise(&file, 0, 0, PosixFadviseAdvice::POSIX_FADV_DONTNEED)
            .map_err(std::io::Error::from)?;
        trim_heap();
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

/// `madvise(start, len, advice)` with `MADV_RANDOM` or `MADV_DONTNEED`.
#[allow(unsafe_code)]
fn advise(start: usize, len: usize, advice: MmapAdvise) -> std::io::Result<()> {
    debug_assert!(matches!(
        advice,
        MmapAdvise::MADV_RANDOM | MmapAdvise::MADV_PAGEOUT | MmapAdvise::MADV_DONTNEED
    ));
    let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
        return Ok(());
    };
    // SAFETY: `start..start + len` is a whole mapping of this process's executable,
    // read from /proc/self/smaps just now: private, not writable, and with no anonymous
    // page, so each of its pages equals the file's. MADV_RANDOM only changes how the
    // kernel reads ahead on a fault there. MADV_DONTNEED on such a mapping only unmaps
    // the pages; the next access maps the same bytes back from the file. No Rust object
    // changes value, none is freed, and the mapping stays in place. Nothing in this
    // process makes these mappings writable (no mprotect, no JIT), so no page can turn
    // anonymous between the read of smaps and this call.
    unsafe { madvise(addr, len, advice) }.map_err(std::io::Error::from)
}

/// `malloc_trim(0)`: glibc returns the free pages of its arenas to the system. Not
/// glibc (musl): nothing to do.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks each arena);
    // it only releases pages no allocation holds. Its return value (whether anything
    // was released) needs no handling.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

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
        // Bytes of this test binary in the page cache, as util-linux's fincore counts them.
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let cached = || {
            let out = std::process::Command::new("fincore")
                .args(["--bytes", "--noheadings", "--output", "RES"])
                .arg(&exe)
                .output()
                .expect("fincore (util-linux) runs");
            assert!(out.status.success(), "{out:?}");
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse::<u64>()
                .unwrap()
        };
        // The linker's pages may not be written back yet; dirty pages stay cached.
        std::fs::File::open(&exe).unwrap().sync_all().unwrap();
        let cached_before = cached();
        let before = rss_file();
        let released = CodePages.release_code_pages().unwrap();
        let after = rss_file();
        let cached_after = cached();
        assert!(released.mappings >= 2, "{released:?}");
        assert!(released.resident_kib > 0, "{released:?}");
        assert!(after < before, "RssFile {before} KiB before, {after} after");
        // Out of the page cache too, so a later fault cannot map cached neighbours.
        // Not all of it: the other tests of this binary run meanwhile, and the large
        // folios of the code they run stay mapped (CI saw 33 MB fall to 20 MB).
        assert!(
            cached_after < cached_before,
            "{cached_before} bytes cached before, {cached_after} after"
        );
        // Each released mapping reads back only the page a fault needs (`rr`:
        // MADV_RANDOM), so the pages idle touches do not bring their neighbours.
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let code_flags: Vec<&str> = smaps
            .split_inclusive('\n')
            .scan(false, |in_code, line| {
                if header_range(line.split_whitespace().next().unwrap_or("")).is_some() {
                    let perms = line.split_whitespace().nth(1).unwrap_or("");
                    *in_code = line.trim_end().ends_with(exe.to_str().unwrap())
                        && perms.starts_with("r-xp");
                }
                Some((*in_code, line))
            })
            .filter(|(in_code, line)| *in_code && line.starts_with("VmFlags:"))
            .map(|(_, line)| line)
            .collect();
        assert!(
            !code_flags.is_empty(),
            "no text mapping of {}",
            exe.display()
        );
        for flags in code_flags {
            assert!(flags.split_whitespace().any(|f| f == "rr"), "{flags}");
        }
        // Code runs again from the pages mapped back on demand.
        let text = format!("{:?}", clean_file_mappings(SMAPS, Path::new("/x")));
        assert_eq!(text, "[]");
    }
}
