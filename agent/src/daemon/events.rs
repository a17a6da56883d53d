//! Last-use tracking from Docker events, built to survive a silent or broken stream.
//!
//! Container create/start/die/destroy and image pull/tag/load move an image's last
//! use; untag refreshes its tags; delete forgets it. Event streams can stop without
//! an error (bollard#113), so the tracker does not trust one: every
//! `reconcile_interval` it reconciles against a full listing and reopens the stream
//! with `since` = the last event seen (the engine replays what a dead stream missed);
//! a ping every `LIVENESS_INTERVAL` notices a dead engine; any failure reconnects with
//! capped exponential backoff (backon), reconciling again after every reconnect.
//!
//! No event is lost silently: the stream is drained at once into a bounded queue (the
//! engine itself would skip a slow reader), and an event that overflows it or cannot be
//! applied is counted (`shipshape_docker_events_dropped_total`), warned once per burst,
//! and repaired by a full reconciliation as soon as the queue is empty again.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use super::metrics::Metrics;
use super::notify::{DockerState, StatusBoard};
use crate::last_use::{ListedImage, StateStore};
use crate::ports::docker::{
    ContainerState, DockerEngine, DockerError, DockerEvent, EventAction, EventScope,
};
use crate::ports::Clock;

/// How often the engine is pinged. A frozen engine (SIGSTOP, a hung dockerd) keeps
/// its socket open and answers nothing, so each ping has `PING_TIMEOUT`: `STATUS=` and
/// `shipshape_docker_up` turn within `LIVENESS_INTERVAL + PING_TIMEOUT` (15 s).
pub const LIVENESS_INTERVAL: Duration = Duration::from_secs(10);
/// An engine that does not answer a ping within this is unavailable.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound on (re)connecting, version negotiation included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound on each request to the engine; the event stream itself is not bounded by it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Events read from the engine and not handled yet. moby gives each subscriber a
/// 1,024-event buffer and skips one that does not take an event within 100 ms
/// (daemon/events/events.go), without a word; our reader never makes it wait.
pub const EVENT_QUEUE: usize = 1024;

type EventItem = Result<DockerEvent, DockerError>;

/// One event stream, read at once into a bounded queue by its own task.
struct Feed {
    queue: mpsc::Receiver<EventItem>,
    /// Events that found the queue full since the last `take_overflowed`.
    overflowed: Arc<AtomicU64>,
    reader: AbortOnDropHandle<()>,
}

impl Feed {
    fn open(stream: BoxStream<'static, EventItem>) -> Feed {
        let (tx, queue) = mpsc::channel(EVENT_QUEUE);
        let overflowed = Arc::new(AtomicU64::new(0));
        let count = Arc::clone(&overflowed);
        let reader = tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                match item {
                    Ok(event) => match tx.try_send(Ok(event)) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TrySendError::Closed(_)) => return,
                    },
                    // The end of a session is never dropped: wait for room.
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Feed {
            queue,
            overflowed,
            reader: AbortOnDropHandle::new(reader),
        }
    }

    /// Stop reading; the events already queued.
    fn close(self) -> Vec<DockerEvent> {
        drop(self.reader);
        let mut queue = self.queue;
        let mut events = Vec::new();
        while let Ok(Ok(event)) = queue.try_recv() {
            events.push(event);
        }
        events
    }

    fn take_overflowed(&self) -> u64 {
        self.overflowed.swap(0, Ordering::Relaxed)
    }
}

/// Events dropped since the last reconciliation (a burst ends with one).
#[derive(Default)]
struct Dropped {
    overflowed: u64,
    not_applied: u64,
}

impl Dropped {
    fn any(&self) -> bool {
        self.overflowed + self.not_applied > 0
    }
}

/// Delays before reconnect attempts 1, 2, 3…: 1s, 2s, 4s … capped at 30s, each plus
/// up to as much again at random so a fleet does not reconnect in lockstep. Endless.
pub fn reconnect_delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(BACKOFF_MIN)
        .with_max_delay(BACKOFF_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The tracker's wiring.
pub struct Tracker {
    /// Reconnected (`DockerEngine::connect`) after every loss.
    pub docker: Arc<dyn DockerEngine>,
    pub store: StateStore,
    pub clock: Arc<dyn Clock>,
    pub board: StatusBoard,
    pub metrics: Arc<Metrics>,
    pub reconcile_interval: Duration,
    /// Docker's root dir as last reported (for the disk-pressure check).
    pub root_dir: watch::Sender<Option<PathBuf>>,
    /// Set once the first connection attempt has concluded (READY waits for it).
    pub first_attempt: watch::Sender<bool>,
}

enum Lost {
    Stopped,
    Error(String),
}

impl Tracker {
    /// Track until `stop`. Never returns early because Docker is unavailable.
    pub async fn run(self, stop: CancellationToken) {
        let mut attempt: u32 = 0;
        let mut delays = reconnect_delays();
        let mut ever_connected = false;
        let mut last_event: Option<DateTime<Utc>> = None;
        let mut containers: HashMap<String, String> = HashMap::new();
        loop {
            let connected = tokio::select! {
                () = stop.cancelled() => return,
                c = self.connect() => c,
            };
            let lost = match connected {
                Ok(()) => {
                    if ever_connected {
                        self.metrics.docker_reconnects.inc();
                    }
                    tracing::info!(host = self.docker.host(), "connected to Docker");
                    ever_connected = true;
                    attempt = 0;
                    delays = reconnect_delays();
                    self.board.docker(DockerState::Connected);
                    self.metrics.docker_up.set(1);
                    self.session(&*self.docker, &stop, &mut last_event, &mut containers)
                        .await
                }
                Err(e) => Lost::Error(e),
            };
            self.first_attempt.send_replace(true);
            let Lost::Error(reason) = lost else { return };
            attempt = attempt.saturating_add(1);
            let delay = delays.next().unwrap_or(BACKOFF_MAX);
            self.metrics.docker_up.set(0);
            self.metrics.last_error.set(unix_seconds(self.clock.now()));
            self.board.docker(DockerState::Unavailable {
                error: reason.clone(),
                retry_in: delay,
            });
            tracing::warn!(
                error = %reason,
                attempt,
                retry_in = %crate::config::value::format_duration(Duration::from_secs(delay.as_secs())),
                "Docker unavailable; reconnecting"
            );
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// A fresh, version-negotiated connection that answers a ping.
    async fn connect(&self) -> Result<(), String> {
        let attempt = async {
            self.docker.connect().await?;
            self.docker.ping().await
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(_) => Err(format!(
                "Docker did not answer within {}s",
                CONNECT_TIMEOUT.as_secs()
            )),
        }
    }

    /// One connection's life: subscribe, reconcile, then follow events.
    async fn session(
        &self,
        conn: &dyn DockerEngine,
        stop: &CancellationToken,
        last_event: &mut Option<DateTime<Utc>>,
        containers: &mut HashMap<String, String>,
    ) -> Lost {
        match conn.docker_root_dir().await {
            Ok(Some(dir)) => {
                self.root_dir.send_replace(Some(dir));
            }
            Ok(None) => {
                return Lost::Error(
                    "Docker /info failed: no DockerRootDir in the answer".to_owned(),
                )
            }
            Err(e) => return Lost::Error(e.to_string()),
        }
        // Subscribe before listing, so nothing between the two is lost. The first
        // session replays the engine's whole buffered log (its last 256 events): pulls,
        // loads and container starts from before the daemon started date the images
        // the reconciliation first sees (`last_use::first_sighting`), as gc's age does.
        let mut opened_at = self.clock.now();
        let mut feed = Feed::open(conn.events(Some(last_event.unwrap_or(DateTime::UNIX_EPOCH))));
        let mut dropped = Dropped::default();
        if let Err(e) = self.reconcile(conn, containers).await {
            return Lost::Error(e.to_string());
        }
        self.first_attempt.send_replace(true);
        let start = tokio::time::Instant::now();
        let mut reconcile_tick =
            tokio::time::interval_at(start + self.reconcile_interval, self.reconcile_interval);
        let mut live_tick = tokio::time::interval_at(start + LIVENESS_INTERVAL, LIVENESS_INTERVAL);
        reconcile_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return Lost::Stopped,
                item = feed.queue.recv() => match item {
                    Some(Ok(event)) => {
                        if !self.handle(conn, &event, last_event, containers).await {
                            self.dropped(&mut dropped, 0, 1);
                        }
                        self.dropped(&mut dropped, feed.take_overflowed(), 0);
                        if dropped.any() && feed.queue.is_empty() {
                            // The burst is over: repair what the dropped events would have done.
                            if let Err(e) = self.reconcile(conn, containers).await {
                                return Lost::Error(e.to_string());
                            }
                            tracing::info!(
                                overflowed = dropped.overflowed,
                                not_applied = dropped.not_applied,
                                "reconciled with Docker after dropped events"
                            );
                            dropped = Dropped::default();
                        }
                    }
                    Some(Err(e)) => return Lost::Error(e.to_string()),
                    None => return Lost::Error("event stream ended".to_owned()),
                },
                _ = reconcile_tick.tick() => {
                    // Replace the stream even when it looks healthy: a silently stalled
                    // one is indistinguishable from a quiet engine. What the old one
                    // queued is handled first; `since` replays the rest.
                    for event in feed.close() {
                        self.handle(conn, &event, last_event, containers).await;
                    }
                    let since = Some(last_event.map_or(opened_at, |t| t.max(opened_at)));
                    opened_at = self.clock.now();
                    feed = Feed::open(conn.events(since));
                    if let Err(e) = self.reconcile(conn, containers).await {
                        return Lost::Error(e.to_string());
                    }
                    dropped = Dropped::default();
                }
                _ = live_tick.tick() => {
                    match tokio::time::timeout(PING_TIMEOUT, conn.ping()).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Lost::Error(e.to_string()),
                        Err(_) => return Lost::Error(format!(
                            "Docker did not answer a ping within {}s",
                            PING_TIMEOUT.as_secs()
                        )),
                    }
                }
            }
        }
    }

    /// Full listing → state; images of running containers count as used now.
    async fn reconcile(
        &self,
        conn: &dyn DockerEngine,
        containers: &mut HashMap<String, String>,
    ) -> Result<(), DockerError> {
        let images = conn.list_images().await?;
        let listed = conn.list_containers().await?;
        let now = self.clock.now();
        let listing: Vec<ListedImage> = images
            .into_iter()
            .map(|i| ListedImage {
                id: i.id,
                tags: i.repo_tags,
                created: i.created,
            })
            .collect();
        let outcome = self.store.reconcile(&listing, now);
        containers.clear();
        // An entry without an ID or image ID says nothing about use.
        for c in listed
            .iter()
            .filter(|c| !c.id.is_empty() && !c.image_id.is_empty())
        {
            containers.insert(c.id.clone(), c.image_id.clone());
            if c.state == ContainerState::Running {
                self.store.touch(&c.image_id, None, now);
            }
        }
        self.metrics.tracked_images.set(gauge(self.store.len()));
        tracing::debug!(
            images = listing.len(),
            containers = listed.len(),
            added = outcome.added,
            removed = outcome.removed,
            "reconciled last-use state with Docker"
        );
        Ok(())
    }

    /// Apply one event; false when it could not be (a reconciliation repairs it).
    async fn handle(
        &self,
        conn: &dyn DockerEngine,
        event: &DockerEvent,
        last_event: &mut Option<DateTime<Utc>>,
        containers: &mut HashMap<String, String>,
    ) -> bool {
        let at = event.time.unwrap_or_else(|| self.clock.now());
        *last_event = Some(last_event.map_or(at, |t| t.max(at)));
        self.metrics.docker_events.inc();
        // The store also learns how far its record holds the engine's log, so gc can
        // replay only the part after it (`StateStore::log_applied_until`).
        let applied = match self.apply(conn, event, at, containers).await {
            Ok(()) => {
                self.store.event_applied(at);
                true
            }
            Err(e) => {
                tracing::debug!(action = %event.action, actor = %event.actor_id, error = %e, "event not applied");
                self.store.event_lost();
                false
            }
        };
        self.metrics.tracked_images.set(gauge(self.store.len()));
        applied
    }

    /// Count `overflowed` + `not_applied` dropped events; the first of a burst warns.
    fn dropped(&self, burst: &mut Dropped, overflowed: u64, not_applied: u64) {
        if overflowed + not_applied == 0 {
            return;
        }
        if overflowed > 0 {
            self.store.event_lost();
        }
        if !burst.any() {
            tracing::warn!(
                queue = EVENT_QUEUE,
                "Docker events dropped (queue full or not applied); reconciling with a full listing once the burst is over"
            );
        }
        burst.overflowed += overflowed;
        burst.not_applied += not_applied;
        self.metrics
            .docker_events_dropped
            .inc_by(overflowed + not_applied);
    }

    /// `at`: when it happened (the engine's time, else the time it arrived).
    async fn apply(
        &self,
        conn: &dyn DockerEngine,
        event: &DockerEvent,
        at: DateTime<Utc>,
        containers: &mut HashMap<String, String>,
    ) -> Result<(), DockerError> {
        use EventAction as A;
        match (event.scope, &event.action) {
            (EventScope::Container, A::Create | A::Start | A::Die | A::Destroy) => {
                let destroyed = event.action == A::Destroy;
                let known = if destroyed {
                    containers.remove(&event.actor_id)
                } else {
                    containers.get(&event.actor_id).cloned()
                };
                let image_id = match known {
                    Some(id) => Some(id),
                    None => match conn
                        .inspect_container(&event.actor_id)
                        .await?
                        .and_then(|c| c.image_id)
                    {
                        Some(id) => Some(id),
                        // Gone already: fall back to the image it was created from.
                        None => match &event.image {
                            Some(reference) => conn.inspect_image(reference).await?.map(|i| i.id),
                            None => None,
                        },
                    },
                };
                if let Some(image_id) = image_id {
                    if !destroyed {
                        containers.insert(event.actor_id.clone(), image_id.clone());
                    }
                    tracing::debug!(action = %event.action, container = %short(&event.actor_id), image_id = %image_id, "image used");
                    self.store.touch(&image_id, None, at);
                }
            }
            (EventScope::Image, A::Pull | A::Tag | A::Load) => {
                if let Some(image) = conn.inspect_image(&event.actor_id).await? {
                    tracing::debug!(action = %event.action, image_id = %image.id, "image used");
                    self.store.touch(&image.id, Some(image.repo_tags), at);
                }
            }
            (EventScope::Image, A::Untag) => {
                // Not a use: an untagged image should age, not look fresh.
                if let Some(image) = conn.inspect_image(&event.actor_id).await? {
                    self.store.set_tags(&image.id, image.repo_tags);
                }
            }
            (EventScope::Image, A::Delete) => {
                tracing::debug!(image_id = %event.actor_id, "image deleted");
                self.store.remove(&event.actor_id);
            }
            _ => {}
        }
        Ok(())
    }
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

fn gauge(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub fn unix_seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::fakes::TokioClock;
    use crate::ports::docker::{ContainerInfo, ImageInfo};
    use crate::testing::docker::{container, FakeDocker};
    use chrono::TimeZone;

    fn base() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap()
    }

    fn img(id: &str, tag: &str) -> ImageInfo {
        ImageInfo {
            id: id.into(),
            parent_id: None,
            repo_tags: vec![tag.into()],
            repo_digests: Vec::new(),
            created: base(),
            size: 1,
        }
    }

    fn stopped(id: &str, image_id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.into(),
            image_id: image_id.into(),
            ..container(id, "", "", ContainerState::Exited)
        }
    }

    struct Running {
        fake: Arc<FakeDocker>,
        store: StateStore,
        board: StatusBoard,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn start(fake: Arc<FakeDocker>) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(&dir.path().join("s.json"), base()).unwrap();
        let board = StatusBoard::new();
        let metrics = Arc::new(Metrics::new());
        let stop = CancellationToken::new();
        let tracker = Tracker {
            docker: Arc::clone(&fake) as Arc<dyn DockerEngine>,
            store: store.clone(),
            clock: TokioClock::new(base()),
            board: board.clone(),
            metrics: Arc::clone(&metrics),
            reconcile_interval: Duration::from_secs(600),
            root_dir: watch::channel(None).0,
            first_attempt: watch::channel(false).0,
        };
        let task = tokio::spawn(tracker.run(stop.clone()));
        Running {
            fake,
            store,
            board,
            metrics,
            stop,
            task,
            _dir: dir,
        }
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn ev(
        scope: EventScope,
        action: &str,
        actor: &str,
        image: Option<&str>,
        secs: i64,
    ) -> DockerEvent {
        DockerEvent {
            scope,
            action: EventAction::parse(action),
            actor_id: actor.into(),
            image: image.map(str::to_owned),
            name: None,
            time: Some(base() + chrono::Duration::seconds(secs)),
        }
    }

    fn up_engine(images: Vec<ImageInfo>) -> Arc<FakeDocker> {
        Arc::new(FakeDocker::new(images, Vec::new()))
    }

    fn down_engine() -> Arc<FakeDocker> {
        let fake = FakeDocker::default();
        fake.set_up(false);
        Arc::new(fake)
    }

    #[tokio::test(start_paused = true)]
    async fn events_move_last_use_and_delete_forgets() {
        let r = start(up_engine(vec![
            img("sha256:a", "app:1"),
            img("sha256:b", "web:1"),
        ]));
        settle().await;
        assert_eq!(
            r.store.last_used("sha256:a"),
            Some(base()),
            "first seen at reconcile"
        );
        assert_eq!(r.store.log_applied_until(), None, "no event applied yet");
        r.fake
            .emit(ev(EventScope::Image, "pull", "app:1", None, 50));
        settle().await;
        assert_eq!(
            r.store.last_used("sha256:a"),
            Some(base() + chrono::Duration::seconds(50))
        );
        // A container created and destroyed: destroy resolves via the remembered map.
        r.fake
            .with(|e| e.containers.push(stopped("c1", "sha256:b")));
        r.fake
            .emit(ev(EventScope::Container, "create", "c1", Some("web:1"), 60));
        settle().await;
        r.fake.with(|e| e.containers.clear());
        r.fake.emit(ev(
            EventScope::Container,
            "destroy",
            "c1",
            Some("sha256:b"),
            70,
        ));
        settle().await;
        assert_eq!(
            r.store.last_used("sha256:b"),
            Some(base() + chrono::Duration::seconds(70))
        );
        r.fake
            .emit(ev(EventScope::Image, "delete", "sha256:a", None, 80));
        settle().await;
        assert_eq!(r.store.last_used("sha256:a"), None);
        assert_eq!(r.metrics.docker_events.get(), 4);
        // gc may replay only the engine's log after the last event applied.
        assert_eq!(
            r.store.log_applied_until(),
            Some(base() + chrono::Duration::seconds(80))
        );
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_silently_stalled_stream_is_replaced_and_reconciled() {
        let fake = up_engine(vec![img("sha256:a", "app:1")]);
        fake.with(|e| e.stall = true);
        let r = start(fake);
        settle().await;
        // The engine gets a new image; the stalled stream never says so.
        r.fake.with(|e| {
            e.images.push(img("sha256:n", "new:1"));
            e.stall = false;
        });
        tokio::time::sleep(Duration::from_secs(599)).await;
        assert_eq!(r.store.last_used("sha256:n"), None);
        tokio::time::sleep(Duration::from_secs(2)).await;
        settle().await;
        assert!(
            r.store.last_used("sha256:n").is_some(),
            "reconciliation found it"
        );
        // The replacement stream works, and was opened with `since` for replay.
        let opened = r.fake.state.lock().unwrap().opened.clone();
        assert_eq!(opened.len(), 2);
        assert_eq!(
            opened[0],
            Some(DateTime::UNIX_EPOCH),
            "the first stream replays the engine's buffered log"
        );
        assert_eq!(opened[1], Some(base()));
        r.fake
            .emit(ev(EventScope::Container, "start", "c9", Some("new:1"), 700));
        settle().await;
        assert_eq!(
            r.store.last_used("sha256:n"),
            Some(base() + chrono::Duration::seconds(700))
        );
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn docker_down_at_start_then_up_then_restarting() {
        let r = start(down_engine());
        settle().await;
        assert!(
            r.board.text().starts_with(
                "Docker unavailable (cannot reach the Docker engine at unix:///fake.sock: connection refused)"
            ),
            "{}",
            r.board.text()
        );
        assert_eq!(r.metrics.docker_up.get(), 0);
        tokio::time::sleep(Duration::from_secs(20)).await;
        let tries = r.fake.state.lock().unwrap().connects;
        assert!((3..=6).contains(&tries), "{tries} connects in 20s: backoff");
        r.fake.with(|e| e.images = vec![img("sha256:a", "app:1")]);
        r.fake.set_up(true);
        tokio::time::sleep(Duration::from_secs(40)).await;
        settle().await;
        assert_eq!(r.board.text(), "Docker: connected; idle");
        assert!(r.store.last_used("sha256:a").is_some());
        // The engine restarts: the stream ends, the tracker reconnects and resumes.
        r.fake.set_up(false);
        settle().await;
        assert!(
            r.board.text().starts_with("Docker unavailable"),
            "{}",
            r.board.text()
        );
        r.fake.with(|e| e.images.push(img("sha256:b", "web:1")));
        r.fake.set_up(true);
        tokio::time::sleep(Duration::from_secs(5)).await;
        settle().await;
        assert_eq!(r.board.text(), "Docker: connected; idle");
        assert!(
            r.store.last_used("sha256:b").is_some(),
            "reconciled after reconnect"
        );
        assert_eq!(r.metrics.docker_reconnects.get(), 1);
        r.fake
            .emit(ev(EventScope::Image, "tag", "sha256:b", None, 900));
        settle().await;
        assert_eq!(
            r.store.last_used("sha256:b"),
            Some(base() + chrono::Duration::seconds(900))
        );
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_storm_that_overflows_the_queue_is_counted_and_reconciled_after() {
        let fake = up_engine(vec![img("sha256:a", "app:1")]);
        // A busy engine: each inspection takes 10 ms, so 1,500 events outrun the handler.
        fake.with(|e| e.inspect_delay = Some(Duration::from_millis(10)));
        let r = start(fake);
        settle().await;
        r.fake.with(|e| e.images.push(img("sha256:n", "new:1")));
        let storm = EVENT_QUEUE + 500;
        for _ in 0..storm {
            r.fake
                .emit(ev(EventScope::Image, "pull", "app:1", None, 10));
        }
        // The one event saying the new image arrived is lost in the overflow.
        r.fake
            .emit(ev(EventScope::Image, "pull", "new:1", None, 11));
        // The reader takes all at once; the handler counts the overflow after its next event.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dropped = r.metrics.docker_events_dropped.get();
        assert!(
            (400..=501).contains(&dropped),
            "{dropped} of {storm} events counted as dropped"
        );
        assert_eq!(r.store.last_used("sha256:n"), None);
        // The queue drains (1,024 × 10 ms), then one full listing repairs the loss.
        tokio::time::sleep(Duration::from_secs(30)).await;
        settle().await;
        assert!(
            r.store.last_used("sha256:n").is_some(),
            "no reconciliation after the dropped events"
        );
        assert_eq!(r.metrics.docker_events_dropped.get(), dropped);
        assert_eq!(
            r.metrics.docker_events.get() + dropped,
            u64::try_from(storm + 1).unwrap(),
            "every event either handled or counted"
        );
        r.stop.cancel();
        r.task.await.unwrap();
    }

    #[test]
    fn reconnect_delays_double_and_cap() {
        let d: Vec<Duration> = reconnect_delays().take(8).collect();
        assert!(
            d[0] >= Duration::from_secs(1) && d[0] <= Duration::from_secs(2),
            "{d:?}"
        );
        assert!(
            d[2] >= Duration::from_secs(4) && d[2] <= Duration::from_secs(8),
            "{d:?}"
        );
        assert!(d[7] >= BACKOFF_MAX && d[7] <= BACKOFF_MAX * 2, "{d:?}");
        assert_eq!(
            reconnect_delays().take(1000).count(),
            1000,
            "never gives up"
        );
    }
}
