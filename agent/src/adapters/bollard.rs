//! The Docker Engine adapter: `BollardEngine` implements the `DockerEngine` port
//! with bollard, negotiating the API version (engines from 20.10/API 1.41 to
//! 29/min 1.44), mapping 404/409 to the port's error kinds and translating the
//! event stream. Every Engine API call is counted and logged at debug (target
//! `shipshape::docker_call`) so tests can check that a plan costs a constant number
//! of calls. Translation only: defaults and what a missing field means are the
//! cores' decision.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerSummaryStateEnum, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{
    EventsOptions, InspectContainerOptions, ListContainersOptions, ListImagesOptions,
    ListVolumesOptions, PruneBuildOptions, RemoveContainerOptions, RemoveImageOptions,
    RemoveVolumeOptions, TagImageOptions,
};
use bollard::Docker;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::stream::{self, BoxStream, StreamExt, TryStreamExt};

use crate::ports::docker::{
    BuildCachePruned, BuildCacheRecord, ContainerDetails, ContainerInfo, ContainerState, DataUsage,
    DockerEngine, DockerError, DockerEvent, EngineInfo, EventAction, EventScope, ImageDetails,
    ImageInfo, Removed, VolumeInfo,
};

/// The default engine address when neither `--docker-host` nor `DOCKER_HOST` is set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The address to use: the flag, else `DOCKER_HOST`, else the default socket.
pub fn resolve_host(host: Option<&str>) -> String {
    host.map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned())
}

/// Refuse an engine address this client cannot use — a usage error, not an
/// unreachable engine: `source` names where it came from (`--docker-host`,
/// `DOCKER_HOST`).
pub fn check_host(host: &str, source: &str) -> Result<(), String> {
    let usable = match host.split_once("://") {
        Some(("unix", path)) => path.starts_with('/'),
        Some(("tcp" | "http" | "https", address)) => {
            !address.is_empty() && !address.starts_with('/')
        }
        _ => false,
    };
    if usable {
        return Ok(());
    }
    let hint = if host.starts_with('/') {
        format!("use unix://{host}")
    } else {
        "use unix:///path/to/docker.sock or tcp://HOST:PORT".to_owned()
    };
    Err(format!("invalid {source} {host:?}: {hint}"))
}

/// A version-negotiated Engine API client. `connect` (re)opens it, so one value
/// outlives engine restarts. Cheap to share behind an `Arc`.
pub struct BollardEngine {
    host: String,
    /// Bounds each request until the engine answers (bollard's default when `None`).
    request_timeout: Option<Duration>,
    /// `None` until the first successful `connect`.
    client: RwLock<Option<Docker>>,
    calls: AtomicU64,
}

impl std::fmt::Debug for BollardEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BollardEngine")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

impl BollardEngine {
    /// A client for `host` (`unix://`, `tcp://`, `http://`…), not connected yet:
    /// every call fails with `Unreachable` until `DockerEngine::connect` succeeds.
    pub fn new(host: String) -> Self {
        Self {
            host,
            request_timeout: None,
            client: RwLock::new(None),
            calls: AtomicU64::new(0),
        }
    }

    /// Bound each request by `timeout`. bollard does not apply it to a streamed
    /// body, so the event stream is not cut by it.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = Some(timeout);
        self
    }

    /// `new(host)` connected at once.
    pub async fn connect_to(host: String) -> Result<Self, DockerError> {
        let engine = Self::new(host);
        engine.connect().await?;
        Ok(engine)
    }

    fn count(&self, endpoint: &'static str) {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(target: "shipshape::docker_call", endpoint, n, "docker call");
    }

    /// The current client (a cheap clone), counting the call to `endpoint`.
    fn docker(&self, endpoint: &'static str) -> Result<Docker, DockerError> {
        self.count(endpoint);
        let client = self
            .client
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        client.clone().ok_or_else(|| DockerError::Unreachable {
            host: self.host.clone(),
            message: "not connected".to_owned(),
        })
    }

    fn map_err(&self, e: BollardError) -> DockerError {
        classify(&self.host, e)
    }

    /// A 404 is a fact ("no such object"), not a failure.
    fn absent_on_404<T>(&self, result: Result<T, BollardError>) -> Result<Option<T>, DockerError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(e) => match self.map_err(e) {
                DockerError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }
}

/// The port's error kind for a bollard error: 404 and 409 by name, other answers
/// as API errors, and anything that got no answer as unreachable.
fn classify(host: &str, e: BollardError) -> DockerError {
    match e {
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => DockerError::NotFound(message),
            409 => DockerError::Conflict(message),
            status => DockerError::Api {
                status,
                message: message.trim().to_owned(),
            },
        },
        BollardError::JsonDataError { .. } | BollardError::JsonSerdeError { .. } => {
            DockerError::Api {
                status: 0,
                message: format!("unexpected response from the engine: {e}"),
            }
        }
        other => DockerError::Unreachable {
            host: host.to_owned(),
            message: other.to_string(),
        },
    }
}

/// `request` with `/v<version>` in front of its path (unless it has one).
fn versioned(mut request: bollard::BollardRequest, version: &str) -> bollard::BollardRequest {
    if let Some(uri) = versioned_uri(request.uri(), version) {
        *request.uri_mut() = uri;
    }
    request
}

fn versioned_uri(uri: &hyper::Uri, version: &str) -> Option<hyper::Uri> {
    use hyper::http::uri::PathAndQuery;
    let path = uri.path_and_query().map_or("/", PathAndQuery::as_str);
    if path.starts_with("/v") && path[2..].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(format!("/v{version}{path}")).ok()?);
    hyper::Uri::from_parts(parts).ok()
}

/// Engines before API 1.44 list a dangling image's tags as `<none>:<none>`;
/// those are no tags.
fn real_tags(tags: impl IntoIterator<Item = String>) -> Vec<String> {
    tags.into_iter().filter(|t| t != "<none>:<none>").collect()
}

fn from_unix(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn state_of(state: Option<ContainerSummaryStateEnum>) -> ContainerState {
    use ContainerSummaryStateEnum as S;
    match state {
        Some(S::CREATED) => ContainerState::Created,
        Some(S::RUNNING) => ContainerState::Running,
        Some(S::PAUSED) => ContainerState::Paused,
        Some(S::RESTARTING) => ContainerState::Restarting,
        Some(S::REMOVING) => ContainerState::Removing,
        Some(S::EXITED) => ContainerState::Exited,
        Some(S::DEAD) => ContainerState::Dead,
        _ => ContainerState::Unknown,
    }
}

fn to_btree(map: Option<HashMap<String, String>>) -> BTreeMap<String, String> {
    map.unwrap_or_default().into_iter().collect()
}

/// An RFC 3339 time from the engine; Go's zero time (`0001-01-01T00:00:00Z`, "never")
/// and anything before 1970 are `None`.
fn engine_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| t.timestamp() > 0)
}

fn convert_event(m: EventMessage) -> DockerEvent {
    let scope = match m.typ {
        Some(EventMessageTypeEnum::CONTAINER) => EventScope::Container,
        Some(EventMessageTypeEnum::IMAGE) => EventScope::Image,
        _ => EventScope::Other,
    };
    let (actor_id, attributes) = match m.actor {
        Some(a) => (a.id.unwrap_or_default(), a.attributes.unwrap_or_default()),
        None => (String::new(), HashMap::new()),
    };
    let time = m
        .time_nano
        .map(|n| Utc.timestamp_nanos(n))
        .or_else(|| m.time.and_then(|s| Utc.timestamp_opt(s, 0).single()));
    DockerEvent {
        scope,
        action: EventAction::parse(m.action.as_deref().unwrap_or_default()),
        actor_id,
        image: attributes.get("image").cloned(),
        name: attributes.get("name").cloned(),
        time,
    }
}

/// The 1.41 `/system/df` document: `Images[].{Id,Size,SharedSize}` (`SharedSize`
/// -1 when not computed) and `BuildCache[]`.
fn data_usage_of(doc: &serde_json::Value) -> DataUsage {
    let u = |v: &serde_json::Value| v.as_i64().map_or(0, |n| u64::try_from(n).unwrap_or(0));
    let time = |v: &serde_json::Value| v.as_str().and_then(|t| t.parse::<DateTime<Utc>>().ok());
    let unique_sizes = doc["Images"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| {
            let id = i["Id"].as_str()?.to_owned();
            Some((id, u(&i["Size"]).saturating_sub(u(&i["SharedSize"]))))
        })
        .collect();
    let build_cache = doc["BuildCache"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| BuildCacheRecord {
            size: u(&r["Size"]),
            in_use: r["InUse"].as_bool().unwrap_or(true),
            shared: r["Shared"].as_bool().unwrap_or(false),
            last_used: time(&r["LastUsedAt"]).or_else(|| time(&r["CreatedAt"])),
        })
        .collect();
    DataUsage {
        unique_sizes,
        build_cache,
    }
}

/// `GET path` as one HTTP/1.0 request (the answer ends with the connection, never
/// chunked) to a `unix://` or `tcp://`/`http://` engine; the body of a 200.
async fn raw_get(host: &str, path: &str) -> Result<Vec<u8>, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n");
    let mut answer = Vec::new();
    let io = |e: std::io::Error| e.to_string();
    match host.split_once("://") {
        Some(("unix", socket)) => {
            let mut s = tokio::net::UnixStream::connect(socket).await.map_err(io)?;
            s.write_all(request.as_bytes()).await.map_err(io)?;
            s.read_to_end(&mut answer).await.map_err(io)?;
        }
        Some(("tcp" | "http", address)) => {
            let mut s = tokio::net::TcpStream::connect(address.trim_end_matches('/'))
                .await
                .map_err(io)?;
            s.write_all(request.as_bytes()).await.map_err(io)?;
            s.read_to_end(&mut answer).await.map_err(io)?;
        }
        _ => return Err(format!("GET {path} is not supported over {host}")),
    }
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer to GET {path}"))?;
    let status = String::from_utf8_lossy(&answer[..split]);
    let status = status.lines().next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(format!("GET {path}: {status}"));
    }
    Ok(answer[split + 4..].to_vec())
}

#[async_trait]
impl DockerEngine for BollardEngine {
    fn host(&self) -> &str {
        &self.host
    }

    async fn connect(&self) -> Result<(), DockerError> {
        self.count("GET /version");
        let unreachable = |e: BollardError| DockerError::Unreachable {
            host: self.host.clone(),
            message: e.to_string(),
        };
        let mut docker = Docker::connect_with_host(&self.host)
            .map_err(unreachable)?
            .negotiate_version()
            .await
            .map_err(unreachable)?;
        if let Some(timeout) = self.request_timeout {
            docker = docker.with_timeout(timeout);
        }
        // bollard 0.21 builds `…/v1.41` + path with `Url::join`, which drops the
        // version segment for an absolute path: requests would go out unversioned and
        // the engine would answer in its own newest version. Put it back.
        let version = docker.client_version().to_string();
        docker = docker.with_request_modifier(move |request| versioned(request, &version));
        tracing::debug!(host = %self.host, api_version = %docker.client_version(), "connected to Docker");
        *self
            .client
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(docker);
        Ok(())
    }

    async fn ping(&self) -> Result<(), DockerError> {
        self.docker("GET /_ping")?
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }

    async fn engine_info(&self) -> Result<EngineInfo, DockerError> {
        let info = self
            .docker("GET /info")?
            .info()
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(EngineInfo {
            root_dir: info.docker_root_dir.map(PathBuf::from),
            storage_driver: info.driver.filter(|d| !d.is_empty()),
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError> {
        // `all`: the legacy builder's untagged intermediates too, so a parent
        // chain can be walked to its end.
        let options = ListImagesOptions {
            all: true,
            ..Default::default()
        };
        let images = self
            .docker("GET /images/json")?
            .list_images(Some(options))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(images
            .into_iter()
            .map(|i| ImageInfo {
                id: i.id,
                parent_id: Some(i.parent_id).filter(|p| !p.is_empty()),
                repo_tags: real_tags(i.repo_tags),
                repo_digests: i
                    .repo_digests
                    .into_iter()
                    .filter(|d| d != "<none>@<none>")
                    .collect(),
                created: from_unix(i.created),
                size: u64::try_from(i.size).unwrap_or(0),
            })
            .collect())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerInfo>, DockerError> {
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let containers = self
            .docker("GET /containers/json")?
            .list_containers(Some(options))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(containers
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .map(|n| n.trim_start_matches('/').to_owned())
                    .unwrap_or_default(),
                image: c.image.unwrap_or_default(),
                image_id: c.image_id.unwrap_or_default(),
                state: state_of(c.state),
                created: from_unix(c.created.unwrap_or(0)),
                labels: to_btree(c.labels),
                finished_at: None,
            })
            .collect())
    }

    async fn inspect_container(&self, id: &str) -> Result<Option<ContainerDetails>, DockerError> {
        let inspect = self
            .docker("GET /containers/{id}/json")?
            .inspect_container(id, None::<InspectContainerOptions>)
            .await;
        Ok(self.absent_on_404(inspect)?.map(|c| ContainerDetails {
            image_id: c.image,
            finished_at: c
                .state
                .and_then(|s| s.finished_at)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc))
                // The engine reports "0001-01-01T00:00:00Z" for never.
                .filter(|t| t.timestamp() > 0),
        }))
    }

    async fn inspect_image(&self, reference: &str) -> Result<Option<ImageDetails>, DockerError> {
        let inspect = self
            .docker("GET /images/{name}/json")?
            .inspect_image(reference)
            .await;
        Ok(self.absent_on_404(inspect)?.and_then(|i| {
            Some(ImageDetails {
                id: i.id?,
                repo_tags: real_tags(i.repo_tags.unwrap_or_default()),
                last_tag_time: i
                    .metadata
                    .and_then(|m| m.last_tag_time)
                    .and_then(|t| engine_time(&t)),
            })
        }))
    }

    async fn remove_image(&self, reference: &str) -> Result<Removed, DockerError> {
        // Never force; never prune: an untagged parent goes only when the plan
        // says so (its own delete, after its children's).
        let options = RemoveImageOptions {
            force: false,
            noprune: true,
            ..Default::default()
        };
        let records = self
            .docker("DELETE /images/{name}")?
            .remove_image(reference, Some(options), None)
            .await
            .map_err(|e| self.map_err(e))?;
        let mut removed = Removed::default();
        for record in records {
            removed.untagged.extend(record.untagged);
            removed.deleted.extend(record.deleted);
        }
        Ok(removed)
    }

    async fn tag_image(&self, id: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let options = TagImageOptions {
            repo: Some(repo.to_owned()),
            tag: Some(tag.to_owned()),
        };
        self.docker("POST /images/{name}/tag")?
            .tag_image(id, Some(options))
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        let options = RemoveContainerOptions {
            force: false,
            v: false,
            link: false,
        };
        self.docker("DELETE /containers/{id}")?
            .remove_container(id, Some(options))
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn list_dangling_volumes(&self) -> Result<Vec<VolumeInfo>, DockerError> {
        let filters = HashMap::from([("dangling".to_owned(), vec!["true".to_owned()])]);
        let options = ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .docker("GET /volumes")?
            .list_volumes(Some(options))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(list
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| VolumeInfo {
                name: v.name,
                labels: v.labels.into_iter().collect(),
            })
            .collect())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), DockerError> {
        self.docker("DELETE /volumes/{name}")?
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn prune_build_cache(
        &self,
        older_than: Duration,
    ) -> Result<BuildCachePruned, DockerError> {
        let filters = HashMap::from([(
            "until".to_owned(),
            vec![format!("{}s", older_than.as_secs())],
        )]);
        let options = PruneBuildOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let response = self
            .docker("POST /build/prune")?
            .prune_build(Some(options))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(BuildCachePruned {
            bytes: u64::try_from(response.space_reclaimed.unwrap_or(0)).unwrap_or(0),
            records: response.caches_deleted.map_or(0, |c| c.len() as u64),
        })
    }

    fn events(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'static, Result<DockerEvent, DockerError>> {
        let docker = match self.docker("GET /events") {
            Ok(docker) => docker,
            Err(e) => return stream::once(async move { Err(e) }).boxed(),
        };
        let filters = HashMap::from([
            (
                "type".to_owned(),
                vec!["container".to_owned(), "image".to_owned()],
            ),
            (
                "event".to_owned(),
                EventAction::TRACKED
                    .iter()
                    .map(|a| a.as_str().to_owned())
                    .collect(),
            ),
        ]);
        let options = EventsOptions {
            since: since.map(|t| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())),
            until: None,
            filters: Some(filters),
        };
        let host = self.host.clone();
        docker
            .events(Some(options))
            .map(move |item| item.map(convert_event).map_err(|e| classify(&host, e)))
            .boxed()
    }

    async fn replay_events(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Vec<DockerEvent>, DockerError> {
        let stamp =
            |t: DateTime<Utc>| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
        let options = EventsOptions {
            since: Some(stamp(since)),
            until: Some(stamp(until)),
            filters: None,
        };
        let host = self.host.clone();
        self.docker("GET /events")?
            .events(Some(options))
            .map(move |item| item.map(convert_event).map_err(|e| classify(&host, e)))
            .try_collect()
            .await
    }

    async fn data_usage(&self) -> Result<DataUsage, DockerError> {
        // bollard 0.21 reads `/system/df` in the API 1.52 shape only (`ImageUsage`…),
        // which an engine of API 1.41 (20.10) does not send: ask directly, in the
        // negotiated version, and read the 1.41 fields.
        let version = self.docker("GET /system/df")?.client_version().to_string();
        let body = raw_get(&self.host, &format!("/v{version}/system/df"))
            .await
            .map_err(|message| DockerError::Unreachable {
                host: self.host.clone(),
                message,
            })?;
        let doc: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| DockerError::Api {
                status: 0,
                message: format!("unexpected /system/df answer from the engine: {e}"),
            })?;
        Ok(data_usage_of(&doc))
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dangling_placeholder_tags_are_no_tags() {
        assert_eq!(
            real_tags(["<none>:<none>".to_owned(), "app:1".to_owned()]),
            vec!["app:1".to_owned()]
        );
    }

    #[test]
    fn events_keep_the_engine_time_or_none() {
        let message = EventMessage {
            typ: Some(EventMessageTypeEnum::IMAGE),
            action: Some("untag".to_owned()),
            time_nano: Some(1_700_000_000_123_000_000),
            ..Default::default()
        };
        let event = convert_event(message);
        assert_eq!(event.scope, EventScope::Image);
        assert_eq!(event.action, EventAction::Untag);
        assert_eq!(
            event.time,
            Some(Utc.timestamp_nanos(1_700_000_000_123_000_000))
        );
        let event = convert_event(EventMessage {
            action: Some("exec_start".to_owned()),
            ..Default::default()
        });
        assert_eq!(event.time, None);
        assert_eq!(event.action, EventAction::Other("exec_start".to_owned()));
    }

    #[test]
    fn the_engines_zero_time_is_never() {
        assert_eq!(engine_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(
            engine_time("2026-01-02T03:04:05.123456789Z").map(|t| t.timestamp()),
            Some(1_767_323_045)
        );
        assert_eq!(engine_time("soon"), None);
    }

    #[test]
    fn engine_addresses_are_checked_before_connecting() {
        assert!(check_host("unix:///var/run/docker.sock", "DOCKER_HOST").is_ok());
        assert!(check_host("tcp://127.0.0.1:2375", "DOCKER_HOST").is_ok());
        let e = check_host("/var/run/docker.sock", "DOCKER_HOST").unwrap_err();
        assert_eq!(
            e,
            "invalid DOCKER_HOST \"/var/run/docker.sock\": use unix:///var/run/docker.sock"
        );
        assert!(check_host("ftp://x", "--docker-host")
            .unwrap_err()
            .starts_with("invalid --docker-host"));
        assert!(check_host("unix://", "DOCKER_HOST").is_err());
    }

    #[test]
    fn requests_carry_the_negotiated_version_once() {
        let uri = |u: &str| u.parse::<hyper::Uri>().unwrap();
        let out = versioned_uri(&uri("http://localhost/images/json?all=1"), "1.41");
        assert_eq!(
            out.map(|u| u.to_string()).as_deref(),
            Some("http://localhost/v1.41/images/json?all=1")
        );
        assert_eq!(
            versioned_uri(&uri("http://localhost/v1.44/_ping"), "1.41"),
            None
        );
    }

    #[tokio::test]
    async fn calls_before_connect_are_unreachable() {
        let engine = BollardEngine::new("unix:///nonexistent.sock".to_owned());
        let err = engine.list_images().await.unwrap_err();
        assert!(
            matches!(err, DockerError::Unreachable { ref host, .. } if host == "unix:///nonexistent.sock"),
            "{err}"
        );
    }
}
