//! Image last use, as the daemon tracks it from Docker events and `gc` reads it
//! (one-shot without it: last use = creation).
//!
//! `format` is the version 1 state file (parse, serialize, atomic save); `store` is
//! the daemon's shared copy of it with debounced persistence.

pub mod format;
pub mod store;

pub use format::{ImageUse, LastUseState, StateError, DEFAULT_STATE_PATH, STATE_VERSION};
pub use store::{ListedImage, ReconcileOutcome, StateStore};
