//! Last-use tracking from Docker events, built to survive a silent or broken stream.
//!
//! Container create/start/die/destroy and image pull/tag/load move an image's last
//! use; untag refreshes its tags; delete forgets it. Event streams can stop without
//! an error (bollard#113), so the tracker does not trust one: every
//! `reconcile_interval` it reconciles against a full listing and reopens the stream
//! with `since` = the last event seen (the engine replays what a dead stream missed);
//! a ping every `LIVENESS_INTERVAL` notices a dead engine; any failure reconnects with
//! capped exponential backoff (backon), reconciling again after every reconnect.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use super::notify::{DockerState, StatusBoard};
use crate::last_use::{ListedImage, StateStore};
use crate::ports::docker::{
    ContainerState, DockerEngine, DockerError, DockerEvent, EventAction, EventScope,
};
use crate::ports::Clock;

/// How often the engine is pinged while the stream is quiet.
pub const LIVENESS_INTERVAL: Duration = Duration::from_secs(15);
/// Bound on each request to the engine; the event stream itself is not bounded by it.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

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
                Err(e) => Lost::Error(e.to_string()),
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
    async fn connect(&self) -> Result<(), DockerError> {
        self.docker.connect().await?;
        self.docker.ping().await
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
        let mut stream = conn.events(Some(last_event.unwrap_or(DateTime::UNIX_EPOCH)));
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
                item = stream.next() => match item {
                    Some(Ok(event)) => {
                        let at = event.time.unwrap_or_else(|| self.clock.now());
                        *last_event = Some(last_event.map_or(at, |t| t.max(at)));
                        self.handle(conn, &event, at, containers).await;
                    }
                    Some(Err(e)) => return Lost::Error(e.to_string()),
                    None => return Lost::Error("event stream ended".to_owned()),
                },
                _ = reconcile_tick.tick() => {
                    // Replace the stream even when it looks healthy: a silently stalled
                    // one is indistinguishable from a quiet engine.
                    let since = Some(last_event.map_or(opened_at, |t| t.max(opened_at)));
                    opened_at = self.clock.now();
                    stream = conn.events(since);
                    if let Err(e) = self.reconcile(conn, containers).await {
                        return Lost::Error(e.to_string());
                    }
                }
                _ = live_tick.tick() => {
                    if let Err(e) = conn.ping().await {
                        return Lost::Error(e.to_string());
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

    async fn handle(
        &self,
        conn: &dyn DockerEngine,
        event: &DockerEvent,
        at: DateTime<Utc>,
        containers: &mut HashMap<String, String>,
    ) {
        self.metrics.docker_events.inc();
        if let Err(e) = self.apply(conn, event, at, containers).await {
            // The next reconciliation repairs whatever this event would have done.
            tracing::debug!(action = %event.action, actor = %event.actor_id, error = %e, "event not applied");
        }
        self.metrics.tracked_images.set(gauge(self.store.len()));
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
