//! The Docker Engine adapter: `DockerClient` implements the `DockerApi` port with
//! bollard, negotiating the API version (engines from 20.10/API 1.41 to 29/min 1.44)
//! and mapping 404/409 to the port's error kinds. Every Engine API call is counted
//! and logged at debug (target `shipshape::docker_call`) so tests can check that a
//! plan costs a constant number of calls.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::query_parameters::{
    InspectContainerOptions, ListContainersOptions, ListImagesOptions, ListVolumesOptions,
    PruneBuildOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
};
use bollard::Docker;
use chrono::{DateTime, TimeZone, Utc};

use crate::ports::docker::{
    ContainerInfo, ContainerState, DockerApi, DockerError, FsUsage, ImageInfo, VolumeInfo,
};

/// The default engine address when neither `--docker-host` nor `DOCKER_HOST` is set.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// A connected, version-negotiated Engine API client. Cheap to share behind an `Arc`.
pub struct DockerClient {
    docker: Docker,
    host: String,
    calls: AtomicU64,
}

impl std::fmt::Debug for DockerClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerClient")
            .field("host", &self.host)
            .finish_non_exhaustive()
    }
}

/// statvfs of `path`: bytes and inodes in use. Shared by `DockerClient::fs_usage`
/// and the daemon's disk-pressure check, which needs no engine connection for it.
pub fn statvfs_usage(path: &Path) -> std::io::Result<FsUsage> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    let frag = st.fragment_size() as u64;
    let total_bytes = (st.blocks() as u64).saturating_mul(frag);
    let free_bytes = (st.blocks_free() as u64).saturating_mul(frag);
    let total_inodes = st.files() as u64;
    Ok(FsUsage {
        total_bytes,
        used_bytes: total_bytes.saturating_sub(free_bytes),
        total_inodes,
        used_inodes: total_inodes.saturating_sub(st.files_free() as u64),
    })
}

/// The address to use: the flag, else `DOCKER_HOST`, else the default socket.
pub fn resolve_host(host: Option<&str>) -> String {
    host.map(str::to_owned)
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_owned())
}

/// Open a bollard client to `host` (`unix://`, `tcp://`, `http://`…) and negotiate
/// the API version (`GET /version`), so engines from API 1.41 on are spoken to in
/// a version they accept. Shared by `DockerClient` and the daemon's Docker watch.
pub(crate) async fn connect_negotiated(host: &str) -> Result<Docker, BollardError> {
    Docker::connect_with_host(host)?.negotiate_version().await
}

impl DockerClient {
    /// Connect to `host` (or `DOCKER_HOST`, or the default socket) and negotiate the
    /// API version with the engine. Fails with `Unreachable` when nobody answers.
    pub async fn connect(host: Option<&str>) -> Result<Self, DockerError> {
        let host = resolve_host(host);
        let docker = connect_negotiated(&host)
            .await
            .map_err(|e| DockerError::Unreachable {
                host: host.clone(),
                message: e.to_string(),
            })?;
        tracing::debug!(host = %host, api_version = %docker.client_version(), "connected to Docker");
        let client = Self {
            docker,
            host,
            calls: AtomicU64::new(0),
        };
        client.count("GET /version");
        Ok(client)
    }

    /// The engine address this client talks to.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `GET /_ping`.
    pub async fn ping(&self) -> Result<(), DockerError> {
        self.count("GET /_ping");
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }

    fn count(&self, endpoint: &'static str) {
        let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(target: "shipshape::docker_call", endpoint, n, "docker call");
    }

    fn map_err(&self, e: BollardError) -> DockerError {
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
                host: self.host.clone(),
                message: other.to_string(),
            },
        }
    }
}

/// Engines before API 1.44 list a dangling image's tags as `<none>:<none>`;
/// those are no tags.
pub(crate) fn real_tags(tags: impl IntoIterator<Item = String>) -> Vec<String> {
    tags.into_iter().filter(|t| t != "<none>:<none>").collect()
}

fn from_unix(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn state_of(state: Option<bollard::models::ContainerSummaryStateEnum>) -> ContainerState {
    use bollard::models::ContainerSummaryStateEnum as S;
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

#[async_trait]
impl DockerApi for DockerClient {
    async fn list_images(&self) -> Result<Vec<ImageInfo>, DockerError> {
        self.count("GET /images/json");
        let options = ListImagesOptions {
            all: false,
            ..Default::default()
        };
        let images = self
            .docker
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
        self.count("GET /containers/json");
        let options = ListContainersOptions {
            all: true,
            ..Default::default()
        };
        let containers = self
            .docker
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

    async fn container_finished_at(&self, id: &str) -> Result<Option<DateTime<Utc>>, DockerError> {
        self.count("GET /containers/{id}/json");
        let inspect = self
            .docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
            .map_err(|e| self.map_err(e))?;
        let finished = inspect
            .state
            .and_then(|s| s.finished_at)
            .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
            .map(|t| t.with_timezone(&Utc))
            // The engine reports "0001-01-01T00:00:00Z" for never.
            .filter(|t| t.timestamp() > 0);
        Ok(finished)
    }

    async fn docker_root_dir(&self) -> Result<PathBuf, DockerError> {
        self.count("GET /info");
        let info = self.docker.info().await.map_err(|e| self.map_err(e))?;
        Ok(PathBuf::from(
            info.docker_root_dir
                .unwrap_or_else(|| "/var/lib/docker".to_owned()),
        ))
    }

    fn fs_usage(&self, path: &Path) -> Result<FsUsage, DockerError> {
        statvfs_usage(path).map_err(|e| {
            DockerError::Local(format!(
                "cannot measure Docker's filesystem at {} (statvfs: {e}); \
                 disk-pressure mode needs to run on the Docker host",
                path.display()
            ))
        })
    }

    async fn image_id_of(&self, reference: &str) -> Result<Option<String>, DockerError> {
        self.count("GET /images/{name}/json");
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id),
            Err(e) => match self.map_err(e) {
                DockerError::NotFound(_) => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn remove_image(&self, reference: &str) -> Result<(), DockerError> {
        self.count("DELETE /images/{name}");
        // Never force; let the engine prune untagged parents as `docker rmi` does.
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        self.docker
            .remove_image(reference, Some(options), None)
            .await
            .map(|_| ())
            .map_err(|e| self.map_err(e))
    }

    async fn remove_container(&self, id: &str) -> Result<(), DockerError> {
        self.count("DELETE /containers/{id}");
        let options = RemoveContainerOptions {
            force: false,
            v: false,
            link: false,
        };
        self.docker
            .remove_container(id, Some(options))
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn list_dangling_volumes(&self) -> Result<Vec<VolumeInfo>, DockerError> {
        self.count("GET /volumes");
        let mut filters = HashMap::new();
        filters.insert("dangling".to_owned(), vec!["true".to_owned()]);
        let options = ListVolumesOptions {
            filters: Some(filters),
        };
        let list = self
            .docker
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
        self.count("DELETE /volumes/{name}");
        self.docker
            .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
            .await
            .map_err(|e| self.map_err(e))
    }

    async fn prune_build_cache(&self, older_than: Duration) -> Result<u64, DockerError> {
        self.count("POST /build/prune");
        let mut filters = HashMap::new();
        filters.insert(
            "until".to_owned(),
            vec![format!("{}s", older_than.as_secs())],
        );
        let options = PruneBuildOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let response = self
            .docker
            .prune_build(Some(options))
            .await
            .map_err(|e| self.map_err(e))?;
        Ok(u64::try_from(response.space_reclaimed.unwrap_or(0)).unwrap_or(0))
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
