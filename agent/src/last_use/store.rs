//! The daemon's shared copy of the last-use state (`super::format`, version 1) and
//! its debounced, atomic persistence: a burst of Docker events becomes one write a
//! `debounce` later, and shutdown flushes whatever is pending.
//!
//! Writes go through `spawn_blocking` (fsync) so the event loop never stalls on disk.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::format::{ImageUse, LastUseState, StateError};

/// How long after the first unsaved change the state is written.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_secs(2);

/// An image as a full listing shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedImage {
    pub id: String,
    pub tags: Vec<String>,
    /// `Created`: dates the first sighting (`super::first_sighting`).
    pub created: DateTime<Utc>,
}

/// What one reconciliation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconcileOutcome {
    pub added: usize,
    pub removed: usize,
}

/// How many events the engine's log replays: moby keeps its last 256 of every kind
/// (`daemon/events/events.go`, `eventsLimit`).
pub const ENGINE_LOG_EVENTS: usize = 256;

#[derive(Debug)]
struct Inner {
    state: LastUseState,
    dirty: bool,
    saves: u64,
    /// The time of the latest event applied while none was lost before it.
    applied_until: Option<DateTime<Utc>>,
    /// Events applied since one was lost (`None`: none lost, or that one has left the
    /// engine's log by now).
    since_loss: Option<usize>,
}

/// Shared handle on the state; cheap to clone.
#[derive(Debug, Clone)]
pub struct StateStore {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    path: Arc<PathBuf>,
}

/// Where an unreadable state file is moved: `state.json` → `state.json.corrupt`.
pub fn corrupt_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".corrupt");
    path.with_file_name(name)
}

impl StateStore {
    /// Load the file at `path`; missing → empty. A file of another version or a
    /// corrupt one (binary, truncated, not JSON) is moved aside to `<name>.corrupt` with
    /// one log line and the store starts empty: never misread, never a crash loop.
    pub fn open(path: &Path, now: DateTime<Utc>) -> Result<Self, StateError> {
        let state = match LastUseState::load(path) {
            Ok(Some(s)) => s,
            Ok(None) => LastUseState::empty(now),
            Err(e @ (StateError::Malformed { .. } | StateError::Version { .. })) => {
                let aside = corrupt_path(path);
                match std::fs::rename(path, &aside) {
                    Ok(()) => {
                        tracing::warn!(error = %e, moved_to = %aside.display(), "unreadable last-use state moved aside; starting fresh")
                    }
                    Err(mv) => {
                        tracing::warn!(error = %e, move_error = %mv, "unreadable last-use state could not be moved aside; starting fresh, the next save replaces it")
                    }
                }
                LastUseState::empty(now)
            }
            Err(e) => return Err(e),
        };
        Ok(Self::with_state(path, state))
    }

    pub fn with_state(path: &Path, state: LastUseState) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Inner {
                state,
                dirty: false,
                saves: 0,
                applied_until: None,
                since_loss: None,
            })),
            changed: Arc::new(Notify::new()),
            path: Arc::new(path.to_path_buf()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data; keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn mark_dirty(&self, mut inner: MutexGuard<'_, Inner>) {
        inner.dirty = true;
        drop(inner);
        self.changed.notify_one();
    }

    /// Record a use of `image_id` at `at`; `tags`, when known, replace the stored ones.
    pub fn touch(&self, image_id: &str, tags: Option<Vec<String>>, at: DateTime<Utc>) {
        let mut inner = self.lock();
        inner.state.touch(image_id, at);
        if let (Some(tags), Some(entry)) = (tags, inner.state.images.get_mut(image_id)) {
            entry.tags = tags;
        }
        self.mark_dirty(inner);
    }

    /// Replace an image's tags without counting it as a use (untag).
    pub fn set_tags(&self, image_id: &str, tags: Vec<String>) {
        let mut inner = self.lock();
        match inner.state.images.get_mut(image_id) {
            Some(entry) if entry.tags != tags => entry.tags = tags,
            _ => return,
        }
        self.mark_dirty(inner);
    }

    /// Forget a deleted image.
    pub fn remove(&self, image_id: &str) {
        let mut inner = self.lock();
        if inner.state.images.remove(image_id).is_some() {
            self.mark_dirty(inner);
        }
    }

    /// Bring the state in line with a full listing: forget images that are gone,
    /// refresh tags, and date images never seen before by `super::first_sighting`
    /// (their creation, or `now` for a creation time in the future); the engine's
    /// replayed events and later uses move them forward.
    pub fn reconcile(&self, listing: &[ListedImage], now: DateTime<Utc>) -> ReconcileOutcome {
        let mut inner = self.lock();
        let before = inner.state.images.len();
        let present: std::collections::HashSet<&str> =
            listing.iter().map(|i| i.id.as_str()).collect();
        inner
            .state
            .images
            .retain(|id, _| present.contains(id.as_str()));
        let removed = before - inner.state.images.len();
        let mut added = 0;
        let mut changed = removed > 0;
        for image in listing {
            match inner.state.images.get_mut(&image.id) {
                Some(entry) => {
                    if entry.tags != image.tags {
                        entry.tags.clone_from(&image.tags);
                        changed = true;
                    }
                }
                None => {
                    inner.state.images.insert(
                        image.id.clone(),
                        ImageUse {
                            last_used: super::first_sighting(image.created, now),
                            tags: image.tags.clone(),
                        },
                    );
                    added += 1;
                    changed = true;
                }
            }
        }
        if changed {
            self.mark_dirty(inner);
        }
        ReconcileOutcome { added, removed }
    }

    /// The tracker applied an event of the engine's log that happened at `at`.
    pub fn event_applied(&self, at: DateTime<Utc>) {
        let mut inner = self.lock();
        if let Some(n) = inner.since_loss.as_mut() {
            *n += 1;
            // Every tracked event is one of the log's too: this many after the lost
            // one, the log no longer holds it, so a replay could not recover it either.
            if *n < ENGINE_LOG_EVENTS {
                return;
            }
            inner.since_loss = None;
        }
        inner.applied_until = Some(inner.applied_until.map_or(at, |t| t.max(at)));
    }

    /// The tracker lost an event (queue overflow, or it could not be applied): the
    /// record holds the log only up to before it, until it has left the log.
    pub fn event_lost(&self) {
        self.lock().since_loss = Some(0);
    }

    /// Up to when the record holds every event the engine's log still has: the latest
    /// event applied with none lost before it that the log could still replay. Events
    /// after it (on their way to the tracker, or lost) are only in the log.
    pub fn log_applied_until(&self) -> Option<DateTime<Utc>> {
        self.lock().applied_until
    }

    /// The record gc plans with: last use per image, and how far it holds the log.
    pub fn record(&self) -> super::Record {
        super::Record {
            last_use: self.last_use_map(),
            log_applied_until: self.log_applied_until(),
        }
    }

    pub fn last_used(&self, image_id: &str) -> Option<DateTime<Utc>> {
        self.lock().state.last_used(image_id)
    }

    /// Last use per image as the daemon knows it now (gc plans with this, never with a
    /// file that may be older when a save failed).
    pub fn last_use_map(&self) -> std::collections::HashMap<String, DateTime<Utc>> {
        self.lock()
            .state
            .images
            .iter()
            .map(|(id, u)| (id.clone(), u.last_used))
            .collect()
    }

    pub fn len(&self) -> usize {
        self.lock().state.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of completed writes (for tests and debug logs).
    pub fn saves(&self) -> u64 {
        self.lock().saves
    }

    /// Write now if anything changed since the last write.
    pub async fn flush(&self, now: DateTime<Utc>) -> Result<bool, StateError> {
        let snapshot = {
            let mut inner = self.lock();
            if !inner.dirty {
                return Ok(false);
            }
            inner.dirty = false;
            inner.state.updated_at = now;
            inner.state.clone()
        };
        let path = Arc::clone(&self.path);
        let result = tokio::task::spawn_blocking(move || snapshot.save(&path))
            .await
            .unwrap_or_else(|e| {
                Err(StateError::Write {
                    path: self.path.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            });
        let mut inner = self.lock();
        match result {
            Ok(()) => {
                inner.saves += 1;
                Ok(true)
            }
            Err(e) => {
                // Keep the changes pending so the next attempt writes them.
                inner.dirty = true;
                Err(e)
            }
        }
    }

    /// Persist changes `debounce` after they happen, until `stop`; then flush once more.
    /// A failed save is retried `debounce` later; each save written or failed is
    /// reported through `on_save`.
    pub async fn persist_loop(
        self,
        debounce: Duration,
        clock: Arc<dyn crate::ports::Clock>,
        stop: CancellationToken,
        on_save: impl Fn(Result<(), &StateError>) + Send,
    ) {
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = self.changed.notified() => {}
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(debounce) => {}
            }
            match self.flush(clock.now()).await {
                Ok(true) => {
                    on_save(Ok(()));
                    tracing::debug!(path = %self.path.display(), images = self.len(), "state saved");
                }
                Ok(false) => {}
                Err(e) => {
                    on_save(Err(&e));
                    tracing::warn!(error = %e, "cannot save last-use state; will retry");
                    self.changed.notify_one();
                }
            }
        }
        match self.flush(clock.now()).await {
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot save last-use state at shutdown"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::fakes::TokioClock;
    use chrono::TimeZone;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap()
    }

    fn listed(id: &str, tags: &[&str]) -> ListedImage {
        ListedImage {
            id: id.into(),
            tags: tags.iter().map(|s| (*s).to_owned()).collect(),
            created: t(20),
        }
    }

    #[test]
    fn the_record_holds_the_log_up_to_the_last_event_applied_before_a_loss_has_left_it() {
        let store = StateStore::with_state(Path::new("/nonexistent"), LastUseState::empty(t(0)));
        assert_eq!(store.record().log_applied_until, None);
        store.event_applied(t(2));
        store.event_applied(t(1));
        assert_eq!(store.log_applied_until(), Some(t(2)));
        // A lost event freezes it: a replay after t(2) still finds the lost one…
        store.event_lost();
        for _ in 1..ENGINE_LOG_EVENTS {
            store.event_applied(t(3));
        }
        assert_eq!(store.log_applied_until(), Some(t(2)));
        // …until the log has turned over past it.
        store.event_applied(t(4));
        assert_eq!(store.log_applied_until(), Some(t(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_of_changes_is_written_once_after_the_debounce() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let store = StateStore::open(&path, t(0)).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(store.clone().persist_loop(
            Duration::from_secs(2),
            TokioClock::new(t(0)),
            stop.clone(),
            |_| {},
        ));
        for i in 0..100 {
            store.touch(&format!("sha256:{i:02}"), None, t(1));
        }
        tokio::time::sleep(Duration::from_millis(1900)).await;
        assert_eq!(store.saves(), 0, "written before the debounce elapsed");
        assert!(!path.exists());
        tokio::time::sleep(Duration::from_millis(200)).await;
        // let the blocking write finish
        for _ in 0..50 {
            if store.saves() == 1 {
                break;
            }
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(store.saves(), 1);
        let saved = LastUseState::load(&path).unwrap().unwrap();
        assert_eq!(saved.images.len(), 100);
        // Nothing new: no further write.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(store.saves(), 1);
        // A change then shutdown before the debounce: flushed on the way out.
        store.remove("sha256:00");
        stop.cancel();
        task.await.unwrap();
        assert_eq!(store.saves(), 2);
        assert_eq!(LastUseState::load(&path).unwrap().unwrap().images.len(), 99);
    }

    #[test]
    fn reconcile_adds_new_forgets_gone_and_refreshes_tags() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.json"), t(0)).unwrap();
        store.touch("sha256:old", Some(vec!["a:1".into()]), t(5));
        store.touch("sha256:gone", None, t(5));
        let out = store.reconcile(
            &[
                listed("sha256:old", &["a:2"]),
                listed("sha256:new", &["b:1"]),
            ],
            t(30),
        );
        assert_eq!(
            out,
            ReconcileOutcome {
                added: 1,
                removed: 1
            }
        );
        assert_eq!(
            store.last_used("sha256:old"),
            Some(t(5)),
            "reconcile is not a use"
        );
        assert_eq!(
            store.last_used("sha256:new"),
            Some(t(20)),
            "first sighting dates from creation, not now"
        );
        assert_eq!(store.last_used("sha256:gone"), None);
        let out = store.reconcile(
            &[
                listed("sha256:old", &["a:2"]),
                listed("sha256:new", &["b:1"]),
            ],
            t(40),
        );
        assert_eq!(out, ReconcileOutcome::default());
    }

    #[test]
    fn a_first_sighting_with_a_future_creation_time_is_just_seen() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.json"), t(0)).unwrap();
        let mut future = listed("sha256:skewed", &["a:1"]);
        future.created = t(50);
        store.reconcile(&[future], t(30));
        assert_eq!(store.last_used("sha256:skewed"), Some(t(30)));
    }

    #[test]
    fn untag_changes_tags_but_not_last_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.json"), t(0)).unwrap();
        store.touch("sha256:x", Some(vec!["a:1".into(), "a:2".into()]), t(5));
        store.set_tags("sha256:x", vec!["a:2".into()]);
        assert_eq!(store.last_used("sha256:x"), Some(t(5)));
    }

    /// One case per corrupt shape: each is moved aside byte for byte, the store is empty.
    mod a_corrupt_state_file_is_moved_aside {
        use super::*;

        fn case(bytes: &[u8]) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("s.json");
            std::fs::write(&path, bytes).unwrap();
            let store = StateStore::open(&path, t(0)).expect("a corrupt file is not an error");
            assert!(store.is_empty());
            assert!(!path.exists(), "the corrupt file is still in place");
            assert_eq!(std::fs::read(corrupt_path(&path)).unwrap(), bytes);
        }

        #[test]
        fn binary() {
            case(&[0xff, 0xfe, 0x00, 0x9c, 0x80, 0x01]);
        }

        #[test]
        fn truncated() {
            case(br#"{"version":1,"saved_at":"2026-01-01T00:00:00Z","images":{"sha256:ab"#);
        }

        #[test]
        fn not_json() {
            case(b"{not json");
        }

        #[test]
        fn wrong_version() {
            case(br#"{"version":9,"images":{}}"#);
        }

        #[test]
        fn right_version_wrong_shape() {
            case(br#"{"version":1,"images":[1,2]}"#);
        }
    }

    #[tokio::test]
    async fn failed_write_keeps_changes_pending() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: rename over it fails.
        let path = dir.path().join("s.json");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        let store = StateStore::open(&dir.path().join("other.json"), t(0)).unwrap();
        let store = StateStore::with_state(&path, {
            store.touch("sha256:a", None, t(1));
            let _ = store.flush(t(1)).await;
            LastUseState::load(&dir.path().join("other.json"))
                .unwrap()
                .unwrap()
        });
        store.touch("sha256:b", None, t(2));
        assert!(store.flush(t(2)).await.is_err());
        assert!(store.lock().dirty);
    }
}
