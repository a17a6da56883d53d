//! An image's last use: the latest of what every source knows, so an image built in
//! 2020 and pulled a second ago is a second old (the ECS agent counts from pull time
//! too; docker-gc#43 is the bug this avoids). Pure; the snapshot gathers the facts.
//!
//! The sources, and where each falls short:
//! - `Created` (the listing, free): when the image was *built*, not when this host got
//!   it; a time in the future (a builder's skewed clock) says nothing and is ignored.
//! - The engine's event log (`GET /events?since&until`, one call): moby keeps its last
//!   256 events of every kind in memory (`daemon/events/events.go`, `eventsLimit`) and
//!   replays them; `pull` (actor: the reference pulled), `load` and `import` (actor: the
//!   image ID), `tag` (actor: the image ID) and container `create`/`start` (attribute
//!   `image`: what the container was created from) count as uses. It is lost when the
//!   engine restarts and turns over in minutes on a busy host: it covers only back to
//!   its oldest event ([`EngineLog::covers_since`]).
//! - `Metadata.LastTagTime` (image inspect, one call per image): survives restarts,
//!   but on 20.10 only the tag API (`docker tag`, a build's `-t`) sets it, never a pull
//!   or a load. Read only where it can change a decision ([`needs_tag_time`]).
//! - The daemon's recorded last use (its state file, or its memory): every use while the
//!   daemon ran; nothing from before it started. Its first sighting of an image follows
//!   `last_use::first_sighting` (this rule on `Created`), not "now".
//!
//! An image no source dates (only a future `Created`, no event, no record) has an
//! unknown age: it is not young (so it is collected, never "kept forever") and sorts
//! as the least recently used.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::docker::{DockerEvent, EventAction, EventScope, ImageInfo};

/// What the engine's event log says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EngineLog {
    /// Image ID → the latest time the engine saw it pulled, loaded, imported, tagged
    /// or used by a new or started container.
    pub seen: HashMap<String, DateTime<Utc>>,
    /// The log is complete from here on (its oldest event); `None`: it holds no event,
    /// so it vouches for nothing.
    pub covers_since: Option<DateTime<Utc>>,
}

/// Fold the replayed `events` into per-image times, naming images by ID through the
/// listing (a pull names a reference; a container its image as given).
pub fn engine_log(events: &[DockerEvent], images: &[ImageInfo]) -> EngineLog {
    let mut by_ref: HashMap<&str, &str> = HashMap::new();
    for image in images {
        by_ref.insert(image.id.as_str(), image.id.as_str());
        for r in image.repo_tags.iter().chain(&image.repo_digests) {
            by_ref.insert(r.as_str(), image.id.as_str());
        }
    }
    let resolve = |reference: &str| -> Option<String> {
        by_ref
            .get(reference)
            .or_else(|| by_ref.get(format!("{reference}:latest").as_str()))
            .map(|id| (*id).to_owned())
    };
    let mut log = EngineLog {
        covers_since: events.iter().filter_map(|e| e.time).min(),
        ..EngineLog::default()
    };
    for event in events {
        let Some(at) = event.time else { continue };
        let reference = match event.scope {
            EventScope::Image if is_use(&event.action) => Some(event.actor_id.as_str()),
            EventScope::Container
                if matches!(event.action, EventAction::Create | EventAction::Start) =>
            {
                event.image.as_deref()
            }
            _ => None,
        };
        if let Some(id) = reference.and_then(resolve) {
            let entry = log.seen.entry(id).or_insert(at);
            *entry = (*entry).max(at);
        }
    }
    log
}

/// Image actions that bring an image onto this host or name it anew.
fn is_use(action: &EventAction) -> bool {
    match action {
        EventAction::Pull | EventAction::Load | EventAction::Tag => true,
        EventAction::Other(a) => a == "import",
        _ => false,
    }
}

/// The latest of the sources that date the image; `None` when none does.
pub fn last_use(
    created: DateTime<Utc>,
    engine_seen: Option<DateTime<Utc>>,
    recorded: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let created = (created <= now).then_some(created);
    [created, engine_seen, recorded].into_iter().flatten().max()
}

/// Should the snapshot read this image's `LastTagTime`? Only when it could change a
/// decision: the image has a tag, the daemon has no record of it (the daemon sees
/// every tag as it happens), what is known makes it older than `threshold` (the
/// longest age a decision depends on: min age, or max age when set), and the event
/// log does not reach back that far.
pub fn needs_tag_time(
    image: &ImageInfo,
    known: Option<DateTime<Utc>>,
    recorded: bool,
    log_covers_since: Option<DateTime<Utc>>,
    threshold: Duration,
    now: DateTime<Utc>,
) -> bool {
    let window_start = chrono::Duration::from_std(threshold)
        .ok()
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    !threshold.is_zero()
        && !image.repo_tags.is_empty()
        && !recorded
        && known.is_none_or(|t| t < window_start)
        && log_covers_since.is_none_or(|c| c > window_start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::docker::{event, full_id, hours_ago, image, now};

    #[test]
    fn pulls_loads_tags_and_containers_date_images_by_id() {
        let mut pinned = image("d1", &[], 1000, 1);
        pinned.repo_digests = vec!["reg/pinned@sha256:aa".to_owned()];
        let images = vec![
            image("a1", &["app:1"], 1000, 1),
            image("b1", &["busybox:latest"], 1000, 1),
            image("c1", &["web:2"], 1000, 1),
            pinned,
            image("e1", &["old:1"], 1000, 1),
        ];
        let events = vec![
            event(EventScope::Image, "pull", "app:1", None, 5),
            event(EventScope::Image, "pull", "app:1", None, 3),
            event(EventScope::Container, "start", "c0ffee", Some("busybox"), 4),
            event(EventScope::Image, "tag", &full_id("c1"), None, 2),
            event(EventScope::Image, "pull", "reg/pinned@sha256:aa", None, 6),
            event(EventScope::Image, "untag", &full_id("e1"), None, 1),
            event(EventScope::Container, "die", "c0ffee", Some("old:1"), 1),
        ];
        let log = engine_log(&events, &images);
        assert_eq!(log.seen[&full_id("a1")], hours_ago(3));
        assert_eq!(log.seen[&full_id("b1")], hours_ago(4));
        assert_eq!(log.seen[&full_id("c1")], hours_ago(2));
        assert_eq!(log.seen[&full_id("d1")], hours_ago(6));
        assert!(
            !log.seen.contains_key(&full_id("e1")),
            "untag and die are no use"
        );
        assert_eq!(log.covers_since, Some(hours_ago(6)));
        assert_eq!(engine_log(&[], &images).covers_since, None);
    }

    #[test]
    fn last_use_is_the_latest_source_and_a_future_created_is_unknown() {
        let n = now();
        assert_eq!(
            last_use(hours_ago(100), Some(hours_ago(1)), Some(hours_ago(5)), n),
            Some(hours_ago(1))
        );
        assert_eq!(
            last_use(hours_ago(100), None, None, n),
            Some(hours_ago(100))
        );
        assert_eq!(last_use(hours_ago(-48), None, None, n), None);
        assert_eq!(
            last_use(hours_ago(-48), Some(hours_ago(2)), None, n),
            Some(hours_ago(2))
        );
    }

    #[test]
    fn tag_time_is_read_only_where_it_can_change_a_decision() {
        let hour = Duration::from_secs(3600);
        let tagged = image("a1", &["app:1"], 100, 1);
        let old = Some(hours_ago(100));
        let n = now();
        // The log reaches back 10 minutes only: an old, unrecorded, tagged image.
        let short_log = Some(n - chrono::Duration::minutes(10));
        assert!(needs_tag_time(&tagged, old, false, short_log, hour, n));
        assert!(needs_tag_time(&tagged, None, false, None, hour, n));
        // Not when the log covers the whole hour, the daemon recorded it, it is young
        // already, it has no tag, or no age matters (min age 0).
        assert!(!needs_tag_time(
            &tagged,
            old,
            false,
            Some(hours_ago(2)),
            hour,
            n
        ));
        assert!(!needs_tag_time(&tagged, old, true, short_log, hour, n));
        assert!(!needs_tag_time(&tagged, Some(n), false, short_log, hour, n));
        let dangling = image("b1", &[], 100, 1);
        assert!(!needs_tag_time(&dangling, old, false, short_log, hour, n));
        assert!(!needs_tag_time(
            &tagged,
            old,
            false,
            short_log,
            Duration::ZERO,
            n
        ));
    }
}
