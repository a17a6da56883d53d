//! Image last use, as the daemon tracks it from Docker events and `gc` reads it
//! (one-shot without it: last use = creation).
//!
//! `format` is the version 1 state file (parse, serialize, atomic save); `store` is
//! the daemon's shared copy of it with debounced persistence.

pub mod format;
pub mod store;

pub use format::{ImageUse, LastUseState, StateError, DEFAULT_STATE_PATH, STATE_VERSION};
pub use store::{ListedImage, ReconcileOutcome, StateStore};

use chrono::{DateTime, Utc};

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
