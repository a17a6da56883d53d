//! The memory port: give back to the system what only start-up needed. The daemon
//! calls it once, after READY; the adapter is `crate::adapters::memory`.

/// What a release handed back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings advised.
    pub mappings: usize,
    /// Their resident size just before (KiB).
    pub resident_kib: u64,
}

/// Releases memory that start-up touched and idle does not need.
pub trait Memory: Send + Sync {
    /// Unmap the pages of the executable that start-up made resident and that can be
    /// mapped back from the file on demand.
    fn release_startup_pages(&self) -> std::io::Result<Released>;
}

/// Keeps everything (tests, and hosts where releasing is not wanted).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeepAll;

impl Memory for KeepAll {
    fn release_startup_pages(&self) -> std::io::Result<Released> {
        Ok(Released::default())
    }
}
