//! How the process ends: exit codes (0 ok, 1 runtime failure, 2 usage or configuration,
//! 3 a goal that was not reached) and the `Status` of a command that did not fail
//! outright. The bottom layer: every area may use it, it uses nothing.

/// Exit code for runtime failures (AWS, Docker, I/O).
pub const EXIT_RUNTIME: u8 = 1;
/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a goal the command could not reach: `gc --ensure-free` with less
/// free than asked after the pass (a CI hook can fail the job or drain the host).
pub const EXIT_GOAL: u8 = 3;

/// How a command that did not fail outright ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit 0: done, or nothing to do.
    Ok,
    /// Exit 1: the command ran to the end but some part failed and was reported.
    PartialFailure,
    /// Exit 3: the run's goal (`gc --ensure-free`) was not reached.
    GoalNotReached,
}

impl Status {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::PartialFailure => EXIT_RUNTIME,
            Self::GoalNotReached => EXIT_GOAL,
        }
    }
}
