//! The executor: carries a plan out through the Docker port and records what
//! happened to each item it deletes, beside the plan (which it never changes).
//! Never forces: 404 means already gone (fine), 409 means the item became in use
//! (kept, the run goes on). Deletes in chunks with bounded concurrency; between
//! chunks it honours cancellation. In disk-pressure mode the stale (`--max-age`)
//! deletions go first in chunks, then the evictions one at a time, the filesystem
//! re-measured after each and the pass stopped by the planner's rule
//! (`planner::disk::eviction_stop`: low water, `--ensure-free`, or no longer above
//! high water after the stale phase).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::stream::{self, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::planner::disk as eviction;
use super::planner::{Action, ContainerEntry, DiskPlan, ImageEntry, Plan, VolumeEntry};
use super::reason::{Failure, Outcome};
use super::report::Estimates;
use crate::ports::disk::{Disk, FsUsage};
use crate::ports::docker::{DockerEngine, DockerError, EventAction, EventScope};
use crate::shared::reference::{repo_of, short_id};

/// How to execute.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    pub concurrency: usize,
    /// Docker's root directory, re-measured in disk-pressure mode and at the end.
    pub root_dir: Option<PathBuf>,
    /// Prune build cache older than this (`--build-cache`).
    pub build_cache: Option<Duration>,
    /// Wall time at one instant (the run's `now`), so the executor can address the
    /// engine's event log without reading the wall clock; `None`: tags removed by
    /// name are not checked against the log (see [`verify_untags`]).
    pub origin: Option<WallOrigin>,
}

/// `at` was the wall time at `instant`: later wall times are `at` plus the
/// monotonic time elapsed since.
#[derive(Debug, Clone, Copy)]
pub struct WallOrigin {
    pub at: DateTime<Utc>,
    pub instant: Instant,
}

impl WallOrigin {
    /// The origin `now` at this instant.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            at: now,
            instant: Instant::now(),
        }
    }

    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.instant.elapsed()).unwrap_or_default();
        self.at + elapsed
    }
}

/// Totals of one execution.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExecStats {
    pub images_deleted: u64,
    pub containers_deleted: u64,
    pub volumes_deleted: u64,
    /// Sum of the sizes of deleted images plus build cache reclaimed.
    pub reclaimed_bytes: u64,
    pub build_cache_bytes: Option<u64>,
    /// Build-cache records the prune deleted.
    pub build_cache_records: Option<u64>,
    pub conflicts: u64,
    pub failures: u64,
    /// Tags this run removed from an image they had moved to in the same round
    /// trip, found in the engine's tag log and put back on it.
    pub tags_restored: u64,
    pub disk_after: Option<FsUsage>,
}

/// Per item of the plan, what happened: each vector is parallel to the plan's
/// (`images[i]` is about `plan.images[i]`), `Some` exactly for the entries the
/// plan deletes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcomes {
    pub images: Vec<Option<Outcome>>,
    pub containers: Vec<Option<Outcome>>,
    pub volumes: Vec<Option<Outcome>>,
}

/// What one execution did: per-item outcomes and the totals.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Execution {
    pub outcomes: Outcomes,
    pub stats: ExecStats,
}

/// In default mode a chunk is large (cancellation is still checked between
/// chunks); in disk-pressure mode it is one deletion, re-measured after.
const DEFAULT_CHUNK_ROUNDS: usize = 16;

/// The engine replays only its last 256 events (moby `daemon/events`, `eventsLimit`);
/// a chunk whose own deletions log at most this many leaves room for what else the
/// host does meanwhile, so the tag log read after it still covers the whole chunk.
const CHUNK_EVENT_BUDGET: usize = 160;

/// How far past the last answer the tag log is read, so that an engine clock a
/// little ahead still includes it (the read waits until then).
const LOG_MARGIN: chrono::Duration = chrono::Duration::milliseconds(5);

/// What a dry run reports, since it cannot delete and re-measure: every planned
/// deletion done, except that in disk-pressure mode the evictions stop where the
/// executor's stop rule, applied to what each deletion is expected to free
/// ([`expected_freed`]), stops.
pub fn dry_run(plan: &Plan, estimates: Option<&Estimates>) -> Outcomes {
    let freed: Vec<eviction::Freed> = plan
        .deletions()
        .map(|e| expected_freed(e, estimates))
        .collect();
    let (evicted, stop) = eviction::simulate(&plan.disk, &freed);
    let unconditional = match plan.disk {
        DiskPlan::Pressure { unconditional, .. } => unconditional,
        DiskPlan::Off => 0,
    };
    let mut images = vec![None; plan.images.len()];
    let deletions = plan
        .images
        .iter()
        .enumerate()
        .filter(|(_, e)| e.action == Action::Delete);
    for (n, (i, _)) in deletions.enumerate() {
        images[i] = Some(match &stop {
            Some(stop) if n >= unconditional + evicted => stop.clone(),
            _ => Outcome::Deleted,
        });
    }
    Outcomes {
        images,
        containers: all_deleted(plan.containers.iter().map(|c| c.action)),
        volumes: all_deleted(plan.volumes.iter().map(|v| v.action)),
    }
}

/// What deleting `entry` is expected to free: its unique size (`/system/df`: what
/// no other image shares) and the inodes the layer store shows it alone holds, when
/// known; else its listed size, which counts shared layers in full (so fewer
/// evictions are predicted than the disk needs), and no inodes (an inode goal is
/// then never predicted reached). Unique sizes fall short the other way when
/// candidates share layers only among themselves: the shared bytes go with the
/// last of them, and count for none.
pub fn expected_freed(entry: &ImageEntry, estimates: Option<&Estimates>) -> eviction::Freed {
    eviction::Freed {
        bytes: estimates
            .and_then(|e| e.unique_sizes.get(&entry.id).copied())
            .unwrap_or(entry.size),
        inodes: estimates.and_then(|e| e.inodes.get(&entry.id).copied()),
    }
}

fn all_deleted(actions: impl Iterator<Item = Action>) -> Vec<Option<Outcome>> {
    actions
        .map(|a| (a == Action::Delete).then_some(Outcome::Deleted))
        .collect()
}

/// Execute `plan`: containers, then images, then volumes, then build cache.
pub async fn execute(
    docker: &dyn DockerEngine,
    disk: &dyn Disk,
    plan: &Plan,
    options: &ExecOptions,
    cancel: &CancellationToken,
) -> Execution {
    let mut stats = ExecStats::default();
    let concurrency = options.concurrency.max(1);

    let (containers, containers_deleted) =
        remove_all(docker, &plan.containers, concurrency, cancel, &mut stats).await;
    stats.containers_deleted = containers_deleted;
    let images = remove_images(docker, disk, plan, options, concurrency, cancel, &mut stats).await;
    let (volumes, volumes_deleted) =
        remove_all(docker, &plan.volumes, concurrency, cancel, &mut stats).await;
    stats.volumes_deleted = volumes_deleted;

    if let Some(older_than) = options.build_cache {
        if !cancel.is_cancelled() {
            match docker.prune_build_cache(older_than).await {
                Ok(pruned) => {
                    stats.build_cache_bytes = Some(pruned.bytes);
                    stats.build_cache_records = Some(pruned.records);
                    stats.reclaimed_bytes += pruned.bytes;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "build cache prune failed");
                    stats.failures += 1;
                }
            }
        }
    }
    stats.disk_after = options
        .root_dir
        .as_deref()
        .and_then(|dir| disk.usage(dir).ok());
    Execution {
        outcomes: Outcomes {
            images,
            containers,
            volumes,
        },
        stats,
    }
}

async fn remove_images(
    docker: &dyn DockerEngine,
    disk: &dyn Disk,
    plan: &Plan,
    options: &ExecOptions,
    concurrency: usize,
    cancel: &CancellationToken,
    stats: &mut ExecStats,
) -> Vec<Option<Outcome>> {
    let mut outcomes = vec![None; plan.images.len()];
    let images = &plan.images;
    let todo: Vec<usize> = (0..images.len())
        .filter(|&i| images[i].action == Action::Delete)
        .collect();
    // The stale deletions (all of them in default mode) go in large chunks; in
    // disk-pressure mode the evictions go one at a time, re-measured after each,
    // so the pass stops exactly where the goal is reached, not a chunk past it.
    let (unconditional, pressure) = match plan.disk {
        DiskPlan::Pressure { unconditional, .. } => (unconditional.min(todo.len()), true),
        DiskPlan::Off => (todo.len(), false),
    };
    let (stale, evictions) = todo.split_at(unconditional);
    let mut chunks = chunk(images, stale, concurrency * DEFAULT_CHUNK_ROUNDS);
    let first_eviction = chunks.len();
    chunks.extend(evictions.iter().map(|&i| vec![i]));
    let mut stop: Option<Outcome> = None;
    let mut pending = PendingUntags::default();
    for (n, chunk) in chunks.into_iter().enumerate() {
        // Before the first eviction after a stale phase: the stale deletions may
        // have been enough.
        if pressure && n == first_eviction && n > 0 && stop.is_none() {
            stop = measure_stop(disk, plan, options, 0, stats);
        }
        if stop.is_none() && cancel.is_cancelled() {
            stop = Some(Outcome::Cancelled);
        }
        if let Some(outcome) = &stop {
            for &i in &chunk {
                outcomes[i] = Some(outcome.clone());
            }
            continue;
        }
        // Evictions (one image each) share one tag-log read until they would log
        // more than a chunk may; a stale chunk is read on its own, as it fills the
        // budget by itself.
        let cost: usize = chunk.iter().map(|&i| event_cost(&images[i])).sum();
        if pending.events + cost > CHUNK_EVENT_BUDGET
            || pending.chunks >= concurrency * DEFAULT_CHUNK_ROUNDS
        {
            pending.verify(docker, options, stats).await;
        }
        pending.start(options);
        let results: Vec<(usize, Deletion)> = stream::iter(chunk)
            .map(|i| async move { (i, delete_image(docker, &images[i]).await) })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        pending.events += cost;
        pending.chunks += 1;
        for (i, d) in &results {
            let id = &images[*i].id;
            pending
                .untagged
                .extend(d.untagged.iter().map(|t| (t.clone(), id.clone())));
        }
        if !pressure || n < first_eviction {
            pending.verify(docker, options, stats).await;
        }
        for (i, Deletion { outcome, .. }) in results {
            let entry = &images[i];
            match &outcome {
                Outcome::Deleted => {
                    tracing::info!(
                        job = "gc",
                        image_id = %entry.id,
                        repository = %repositories(entry),
                        reason = %entry.reason,
                        size = entry.size,
                        "image deleted"
                    );
                    stats.images_deleted += 1;
                    stats.reclaimed_bytes += entry.size;
                }
                Outcome::AlreadyGone => {
                    tracing::debug!(image = %short_id(&entry.id), "already gone");
                }
                Outcome::Conflict => {
                    tracing::info!(image = %short_id(&entry.id), "kept: conflict, in use");
                    stats.conflicts += 1;
                }
                Outcome::Failed(failure) => {
                    tracing::warn!(image = %short_id(&entry.id), error = %failure, "delete failed");
                    stats.failures += 1;
                }
                // Decided between chunks, never by one deletion.
                Outcome::Cancelled
                | Outcome::LowWaterReached { .. }
                | Outcome::EnoughFree { .. }
                | Outcome::NotAboveHighWater { .. } => {}
            }
            outcomes[i] = Some(outcome);
        }
        if pressure && n >= first_eviction {
            stop = measure_stop(disk, plan, options, n + 1 - first_eviction, stats);
        }
    }
    pending.verify(docker, options, stats).await;
    outcomes
}

/// Tags removed by name whose tag-log check is still to come: in disk-pressure mode
/// the evictions go one at a time, and a log read per eviction (with its wait of
/// [`LOG_MARGIN`]) would cost as much as the eviction itself. They are read
/// together instead, under the same bounds as one default-mode chunk (at most
/// [`CHUNK_EVENT_BUDGET`] events of this run's own, at most a chunk's deletions),
/// so the log still reaches back over all of them and a tag put back waits no longer
/// than in a chunk of the default mode. Read only when some tag was removed by name.
#[derive(Default)]
struct PendingUntags {
    /// Wall time before the first deletion of the batch (`None`: no batch open).
    since: Option<DateTime<Utc>>,
    /// (tag, the image it was checked to name).
    untagged: Vec<(String, String)>,
    /// Engine events the batch's deletions log (at most).
    events: usize,
    chunks: usize,
}

impl PendingUntags {
    fn start(&mut self, options: &ExecOptions) {
        if self.since.is_none() {
            self.since = options.origin.map(|o| o.now());
        }
    }

    async fn verify(
        &mut self,
        docker: &dyn DockerEngine,
        options: &ExecOptions,
        stats: &mut ExecStats,
    ) {
        let batch = std::mem::take(self);
        if let (Some(since), Some(origin)) = (batch.since, options.origin) {
            if !batch.untagged.is_empty() {
                let untagged: Vec<(&str, &str)> = batch
                    .untagged
                    .iter()
                    .map(|(t, id)| (t.as_str(), id.as_str()))
                    .collect();
                verify_untags(docker, &untagged, since, origin.now() + LOG_MARGIN, stats).await;
            }
        }
    }
}

/// The engine events deleting `entry` logs at most: one per reference, one for the image.
fn event_cost(entry: &ImageEntry) -> usize {
    entry.tags.len() + entry.digests.len() + 1
}

/// Re-measure Docker's filesystem and apply the planner's stop rule; a failed
/// measure stops the pass rather than delete blind.
fn measure_stop(
    disk: &dyn Disk,
    plan: &Plan,
    options: &ExecOptions,
    evicted: usize,
    stats: &mut ExecStats,
) -> Option<Outcome> {
    let dir = options.root_dir.as_deref()?;
    match disk.usage(dir) {
        Ok(usage) => {
            let stop = eviction::eviction_stop(&plan.disk, &usage, evicted);
            if let Some(stop) = &stop {
                tracing::info!(used_bytes = usage.used_bytes, free_bytes = usage.free_bytes(), stop = %stop, "eviction done");
            }
            stop
        }
        Err(e) => {
            tracing::warn!(error = %e, "disk re-measure failed; stopping");
            stats.failures += 1;
            Some(Outcome::Failed(Failure::disk(&e)))
        }
    }
}

/// Split the ordered deletions into chunks; a parent never shares a chunk with
/// its child (children come first in the plan, so the child's chunk finishes before),
/// and a chunk's deletions log at most [`CHUNK_EVENT_BUDGET`] engine events (one per
/// reference and one for the image).
fn chunk(images: &[ImageEntry], todo: &[usize], size: usize) -> Vec<Vec<usize>> {
    let mut chunks = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut parents: HashSet<&str> = HashSet::new();
    let mut events = 0;
    for &i in todo {
        let cost = event_cost(&images[i]);
        let full = current.len() >= size || events + cost > CHUNK_EVENT_BUDGET;
        if !current.is_empty() && (full || parents.contains(images[i].id.as_str())) {
            chunks.push(std::mem::take(&mut current));
            parents.clear();
            events = 0;
        }
        events += cost;
        if let Some(p) = images[i].parent_id.as_deref() {
            parents.insert(p);
        }
        current.push(i);
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

// How the engine deletes an image without force (moby `daemon/images/image_delete.go`,
// `ImageDelete`; the engine here is 20.10, which behaves the same). Every rule has a
// case in the contract suite, run against the fake and a private dockerd:
//
// - `DELETE /images/<ID>` is accepted only when the image's references form a
//   "single reference" (`isSingleReference`): at most one tag, and every reference,
//   tags and `repo@digest`s alike, in one repository. Then the references and the
//   image go together, in one call, provided no child image (legacy builder) and no
//   container of any state (running, stopped, created) uses it. Otherwise 409
//   ("image is referenced in multiple repositories", "…dependent child images",
//   "…being used by … container") and nothing changes. So `app:$SHA` + `app:latest`
//   (two tags, one repository) is refused by ID.
// - `DELETE /images/<repo:tag|repo@digest>` removes that one reference. When the
//   references are a single reference and a container uses the image, 409 and nothing
//   changes; with several references the untag goes through even when a container
//   uses the image. A tag that was its repository's last takes that repository's
//   digests with it. If references remain, that is all; if none do, the image is
//   deleted unless it has a child or a container, then it stays, untagged, quietly.
//   The reference is resolved when the call arrives: a tag acts on whatever image it
//   names at that moment. A digest reference cannot move (it names content).
// - Without `noprune`, untagged parents of a deleted image are deleted with it, each
//   only when unreferenced, childless and unused. The adapter sets `noprune`: the
//   listing includes intermediates, the plan names each one (children before
//   parents, never in the same concurrent chunk), so every deletion is planned and
//   reported, and the dry run names the same set.
// - 404 when the reference names nothing.
//
// The engine has no conditional untag ("remove this tag only if it still names this
// ID"), and no call that removes several references of one image at once without
// force (`force` by ID would, but it also deletes an image a created or stopped
// container uses, which is exactly the other race). Looked for and not found, on 20.10
// and in current moby: `DELETE /images/<name>` resolves the name (`GetImage`) and
// removes it (`removeImageRef`) with no ID to compare; a `repo:tag@digest` name is
// looked up and removed by its digest alone (the reference store favours the digest,
// which names a manifest, not an image ID); the tag API only adds or moves a tag. So
// each path below says how it keeps the three promises: nothing unplanned is deleted
// or untagged; an image in use never ends up with fewer tags than it had; a tag moved
// to a new build during the run stays on the new build — and where the third falls
// short (the round trip of an untag by name, [`delete_image`]).

/// What deleting one planned image did: its outcome and the tags it removed by name
/// (checked against the engine's tag log after the chunk, [`verify_untags`]).
struct Deletion {
    outcome: Outcome,
    untagged: Vec<String>,
}

impl From<Outcome> for Deletion {
    fn from(outcome: Outcome) -> Self {
        Self {
            outcome,
            untagged: Vec::new(),
        }
    }
}

/// Delete one planned image without force.
///
/// - Single reference (or none): one `DELETE` by ID. The engine removes only the
///   references that name this ID at that moment and refuses if a container or a
///   child appeared, so no race can cost anything: a tag that moved away is not this
///   image's any more, a container makes it a 409 with every tag still in place.
/// - Several references: reduce to a single reference by removing the others by
///   name, then `DELETE` by ID as above. The tag kept for that last, atomic step is
///   the one most likely to move (`latest`, then any tag that does not look like a
///   commit or a version), so the tag CI moves is never removed by name. Each tag
///   removed by name is first checked (`inspect`) to still name this image; one that
///   moved is left on its new build. Tags go before digests (a digest cannot be put
///   back through the API, and cannot move: it names content).
/// - The one window left is the round trip between that check and the untag: a tag
///   moved to image B inside it is removed from B. The engine cannot refuse that, so
///   it is repaired: after the chunk, the engine's tag log shows the move
///   ([`verify_untags`]) and the tag is put back on B. Only when the tag was B's last
///   reference, and B has no child and no container, does the untag delete B (its
///   `Deleted` record names B): that cannot be undone and no engine call prevents it
///   without force (see the rules above). It is reported as a failure naming the tag
///   and B (`Failure::TagMoved`, exit 1), never silently, and this image is left with
///   the references not yet removed. It takes a tag other than the kept one moving,
///   within milliseconds, onto a build that no other tag names; the integration test
///   `a_new_build_deleted_by_an_untag_that_raced_its_only_tag_is_a_failure_naming_it`
///   shows the report.
/// - If any step meets a 409 (a container or a new reference appeared), every tag
///   removed so far is put back on this image by ID (`POST /images/<ID>/tag`) unless
///   the tag names another image by then (it moved: it stays there), so an image that
///   gained a container keeps every tag it had.
async fn delete_image(docker: &dyn DockerEngine, entry: &ImageEntry) -> Deletion {
    let refs: Vec<String> = entry
        .tags
        .iter()
        .chain(entry.digests.iter())
        .cloned()
        .collect();
    if refs.is_empty() || is_single_reference(&refs) {
        return delete_by_id(docker, entry, false).await.into();
    }
    let keep = kept_reference(entry);
    let keep_repo = repo_of(keep);
    let extra: Vec<&String> = entry
        .tags
        .iter()
        .filter(|t| t.as_str() != keep)
        .chain(
            entry
                .digests
                .iter()
                .filter(|d| d.as_str() != keep && repo_of(d) != keep_repo),
        )
        .collect();
    let mut removed: Vec<&str> = Vec::new();
    let done = |outcome: Outcome, removed: &[&str]| Deletion {
        outcome,
        untagged: removed.iter().map(|t| (*t).to_owned()).collect(),
    };
    for reference in extra {
        let is_tag = !reference.contains('@');
        if is_tag {
            match docker.inspect_image(reference).await {
                Ok(Some(image)) if image.id == entry.id => {}
                Ok(now) => {
                    tracing::debug!(
                        image = %short_id(&entry.id),
                        tag = %reference,
                        now = now.as_ref().map_or("nothing", |i| short_id(&i.id)),
                        "tag moved since the plan; left alone"
                    );
                    continue;
                }
                Err(e) => {
                    let outcome = abandon(docker, entry, &removed, Some(Failure::Engine(e))).await;
                    return done(outcome, &removed);
                }
            }
        }
        match docker.remove_image(reference).await {
            Ok(answer) => {
                if is_tag {
                    removed.push(reference);
                }
                // This image keeps `keep` unless `keep` moved away meanwhile; then
                // this untag took its last reference and deleted it: planned. An
                // untag that deleted another image (its first `Deleted` record) hit a
                // tag that moved in the one round trip since the check.
                if answer.deleted.first() == Some(&entry.id) {
                    return done(Outcome::Deleted, &removed);
                }
                if let Some(other) = answer.deleted.first() {
                    tracing::warn!(image = %short_id(&entry.id), tag = %reference, deleted = %other, "tag moved between check and untag");
                    let outcome = Outcome::Failed(Failure::TagMoved {
                        tag: reference.clone(),
                        deleted: other.clone(),
                    });
                    return done(outcome, &[]);
                }
            }
            Err(DockerError::NotFound(_)) => {}
            Err(DockerError::Conflict(message)) => {
                tracing::debug!(image = %short_id(&entry.id), reference = %reference, message = %message, "conflict");
                let outcome = abandon(docker, entry, &removed, None).await;
                return done(outcome, &removed);
            }
            Err(e) => {
                let outcome = abandon(docker, entry, &removed, Some(Failure::Engine(e))).await;
                return done(outcome, &removed);
            }
        }
    }
    let mut outcome = delete_by_id(docker, entry, !removed.is_empty()).await;
    if outcome == Outcome::Conflict {
        outcome = abandon(docker, entry, &removed, None).await;
    }
    done(outcome, &removed)
}

/// Close the check-then-untag window after the fact. `untagged` holds the tags this
/// chunk removed by name, each with the image it was checked to name. The engine's
/// tag log between `since` (before the chunk's first check) and `until` (after its
/// last answer) says where each tag went: when its last move there names another
/// image B, the tag moved after the check. If the tag names nothing now, the untag
/// arrived after the move and took it off B: it is put back on B. If it names an
/// image, the move came after the untag (or someone tagged again): it stays. A log
/// the engine cannot give is a warning, not a failure: the untags were checked
/// beforehand, this only narrows a window of one round trip.
///
/// Where it falls short: the log is the engine's ring of its last 256 events
/// (chunks are sized to leave room, but a busy host can push a move out of it);
/// the window is addressed in wall time (`WallOrigin`), so an engine whose clock
/// is off from this host's (a remote `tcp://` engine) may fall outside it; and a
/// tag that reached the checked image by a pull or a load (no `tag` event) after
/// an earlier move elsewhere would be put back on that elsewhere.
async fn verify_untags(
    docker: &dyn DockerEngine,
    untagged: &[(&str, &str)],
    since: DateTime<Utc>,
    until: DateTime<Utc>,
    stats: &mut ExecStats,
) {
    let log: Vec<(String, String)> = match docker.replay_events(since, until).await {
        Ok(events) => events
            .into_iter()
            .filter(|e| e.scope == EventScope::Image && e.action == EventAction::Tag)
            .filter_map(|e| Some((e.name?, e.actor_id)))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the engine's tag log; removed tags not re-checked");
            return;
        }
    };
    for (tag, checked) in untagged {
        let Some((_, moved_to)) = log.iter().rev().find(|(reference, _)| reference == tag) else {
            continue;
        };
        if moved_to == checked {
            continue;
        }
        let (repo, name) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let restored = match docker.inspect_image(tag).await {
            Ok(None) => docker.tag_image(moved_to, repo, name).await.map(|()| true),
            Ok(Some(_)) => Ok(false),
            Err(e) => Err(e),
        };
        match restored {
            Ok(true) => {
                tracing::warn!(tag = %tag, image = %short_id(moved_to), "tag moved between check and untag; put back on its new build");
                stats.tags_restored += 1;
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(tag = %tag, image = %short_id(moved_to), error = %e, "tag moved between check and untag and could not be put back; run `docker tag` to restore it");
                stats.failures += 1;
            }
        }
    }
}

/// The reference left for the atomic delete by ID: the tag most likely to move.
fn kept_reference(entry: &ImageEntry) -> &str {
    let looks_fixed = |t: &str| {
        let tag = t.rsplit_once(':').map_or("", |(_, tag)| tag);
        let hex = tag.len() >= 7 && tag.chars().all(|c| c.is_ascii_hexdigit());
        let version = tag
            .trim_start_matches('v')
            .starts_with(|c: char| c.is_ascii_digit());
        hex || version
    };
    entry
        .tags
        .iter()
        .find(|t| t.ends_with(":latest"))
        .or_else(|| entry.tags.iter().find(|t| !looks_fixed(t)))
        .or_else(|| entry.tags.first())
        .or_else(|| entry.digests.first())
        .map_or("", String::as_str)
}

/// moby's `isSingleReference`: at most one tag, and every reference in one
/// repository. False for none.
fn is_single_reference(refs: &[String]) -> bool {
    let mut tags = refs.iter().filter(|r| !r.contains('@'));
    let first_tag = tags.next();
    if tags.next().is_some() {
        return false;
    }
    let Some(first) = first_tag.or(refs.first()) else {
        return false;
    };
    refs.iter().all(|r| repo_of(r) == repo_of(first))
}

async fn delete_by_id(docker: &dyn DockerEngine, entry: &ImageEntry, removed_any: bool) -> Outcome {
    match docker.remove_image(&entry.id).await {
        Ok(_) => Outcome::Deleted,
        // Someone else deleted it; if this run had untagged it, the tags it lost were
        // planned ones.
        Err(DockerError::NotFound(_)) if removed_any => Outcome::Deleted,
        Err(DockerError::NotFound(_)) => Outcome::AlreadyGone,
        Err(DockerError::Conflict(message)) => {
            tracing::debug!(image = %short_id(&entry.id), message = %message, "conflict");
            Outcome::Conflict
        }
        Err(e) => Outcome::Failed(Failure::Engine(e)),
    }
}

/// Give up on `entry` and put back the tags this run removed from it, each unless
/// it names another image by now (it moved there: it stays). Returns `Conflict`
/// without a failure, else the failure.
async fn abandon(
    docker: &dyn DockerEngine,
    entry: &ImageEntry,
    removed: &[&str],
    failure: Option<Failure>,
) -> Outcome {
    let mut outcome = failure.map_or(Outcome::Conflict, Outcome::Failed);
    for tag in removed {
        let (repo, name) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
        let restored = match docker.inspect_image(tag).await {
            Ok(None) => docker.tag_image(&entry.id, repo, name).await,
            Ok(Some(_)) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = restored {
            tracing::warn!(image = %short_id(&entry.id), tag = %tag, error = %e, "could not put the tag back");
            outcome = Outcome::Failed(Failure::Restore {
                tag: (*tag).to_owned(),
                error: e.to_string(),
            });
        }
    }
    outcome
}

/// A container or volume entry of the plan: removed by one call each, in any order.
trait Removable {
    /// The name the engine knows it by.
    fn key(&self) -> &str;
    fn action(&self) -> Action;
    async fn remove(docker: &dyn DockerEngine, key: &str) -> Result<(), DockerError>;
    fn log_outcome(&self, outcome: &Outcome);
}

impl Removable for ContainerEntry {
    fn key(&self) -> &str {
        &self.id
    }
    fn action(&self) -> Action {
        self.action
    }
    async fn remove(docker: &dyn DockerEngine, key: &str) -> Result<(), DockerError> {
        docker.remove_container(key).await
    }
    fn log_outcome(&self, outcome: &Outcome) {
        tracing::debug!(container = %short_id(&self.id), reason = %self.reason, outcome = %outcome, "container");
    }
}

impl Removable for VolumeEntry {
    fn key(&self) -> &str {
        &self.name
    }
    fn action(&self) -> Action {
        self.action
    }
    async fn remove(docker: &dyn DockerEngine, key: &str) -> Result<(), DockerError> {
        docker.remove_volume(key).await
    }
    fn log_outcome(&self, outcome: &Outcome) {
        tracing::debug!(volume = %self.name, reason = %self.reason, outcome = %outcome, "volume");
    }
}

/// Remove the entries planned for deletion; returns their outcomes and how many
/// are gone (a 404 counts).
async fn remove_all<T: Removable>(
    docker: &dyn DockerEngine,
    entries: &[T],
    concurrency: usize,
    cancel: &CancellationToken,
    stats: &mut ExecStats,
) -> (Vec<Option<Outcome>>, u64) {
    let planned = |e: &T| e.action() == Action::Delete;
    if cancel.is_cancelled() {
        let outcomes = entries
            .iter()
            .map(|e| planned(e).then_some(Outcome::Cancelled))
            .collect();
        return (outcomes, 0);
    }
    let mut outcomes = vec![None; entries.len()];
    let todo: Vec<usize> = (0..entries.len())
        .filter(|&i| planned(&entries[i]))
        .collect();
    let results: Vec<(usize, Result<(), DockerError>)> = stream::iter(todo)
        .map(|i| async move { (i, T::remove(docker, entries[i].key()).await) })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut deleted = 0;
    for (i, result) in results {
        let outcome = settle(result, stats);
        if outcome.is_gone() {
            deleted += 1;
        }
        entries[i].log_outcome(&outcome);
        outcomes[i] = Some(outcome);
    }
    (outcomes, deleted)
}

/// A container/volume removal result as an outcome, counted.
fn settle(result: Result<(), DockerError>, stats: &mut ExecStats) -> Outcome {
    match result {
        Ok(()) => Outcome::Deleted,
        Err(DockerError::NotFound(_)) => Outcome::AlreadyGone,
        Err(DockerError::Conflict(_)) => {
            stats.conflicts += 1;
            Outcome::Conflict
        }
        Err(e) => {
            stats.failures += 1;
            Outcome::Failed(Failure::Engine(e))
        }
    }
}

/// The repositories an image was known by (tags first, else digests), for its deletion
/// line's `REPOSITORY=`; `<none>` for an image with neither.
fn repositories(entry: &ImageEntry) -> String {
    let mut repos: Vec<&str> = Vec::new();
    for reference in entry.tags.iter().chain(&entry.digests) {
        let repo = repo_of(reference);
        if !repos.contains(&repo) {
            repos.push(repo);
        }
    }
    if repos.is_empty() {
        "<none>".to_owned()
    } else {
        repos.join(",")
    }
}

#[cfg(test)]
#[path = "executor_tests.rs"]
mod tests;
