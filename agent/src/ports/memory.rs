//! The memory port: give back to the system the resident pages of the binary's code
//! that idle does not run, and the heap's free pages. The daemon calls it 30 s after READY and then every 5 min;
//! the adapter is `crate::adapters::memory`.

/// What a release handed back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings advised.
    pub mappings: usize,
    /// Their resident size just before (KiB).
    pub resident_kib: u64,
}

/// Releases resident pages that can be had back from their file on demand.
pub trait Memory: Send + Sync {
    /// Unmap the executable's resident code and read-only data pages (start-up's,
    /// a job's) and drop them from the page cache, so the next use reads back only the
    /// pages it touches; hand the heap's free pages back.
    fn release_code_pages(&self) -> std::io::Result<Released>;
}
