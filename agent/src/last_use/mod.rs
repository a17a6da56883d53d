//! Image last use, as the daemon tracks it from Docker events and `gc` reads it
//! (one-shot without it: last use = creation).
//!
//! `format` is the version 1 state file (parse, serialize, atomic save); `store` is
//! the daemon's shared copy of it with debounced persistence.

pub mod format;
pub mod store;

pub use format::{ImageUse, LastUseState, StateError, DEFAULT_STATE_PATH, STATE_VERSION};
pub use store::{ListedImage, ReconcileOutcome, StateStore, ENGINE_LOG_EVENTS};

use std::collections::HashMap;

use chrono::{DateTime, Utc};

/// The daemon's in-memory record, as its scheduled gc plans with it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record {
    /// Image ID → last use.
    pub last_use: HashMap<String, DateTime<Utc>>,
    /// Every event the engine's log still holds from before this time has been
    /// applied to `last_use` (`StateStore::log_applied_until`); gc then replays only
    /// the log after it. `None`: no such promise, gc replays the whole log.
    pub log_applied_until: Option<DateTime<Utc>>,
}

/// The daemon's first sighting of an image it has no use recorded for: gc's age rule
/// (`image_gc::age::last_use`) with what the listing says — `Created`, unless that is
/// in the future (unknown), then "just seen". Not "now" for every image: a daemon
/// started on a host full of old images would otherwise protect them all for
/// min-age. Events replayed or seen later move it forward.
pub fn first_sighting(created: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
    if created <= now {
        created
    } else {
        now
    }
}
