//! The bollard implementation of the daemon's `DockerWatch` port: event stream,
//! listings, ping and `DockerRootDir`, with a new client per (re)connect.

use crate::adapters::docker::{connect_negotiated, real_tags};
use crate::ports::docker_watch::{
    ContainerRecord, DockerConnector, DockerEvent, DockerWatch, EventScope, ImageRecord,
    WatchError, TRACKED_ACTIONS,
};
use async_trait::async_trait;
use bollard::errors::Error as BollardError;
use bollard::models::{ContainerSummaryStateEnum, EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::{EventsOptions, ListContainersOptions, ListImagesOptions};
use bollard::Docker;
use chrono::{DateTime, TimeZone, Utc};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Per-request timeout; the event stream itself is not bounded by it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// `DockerConnector` over bollard.
#[derive(Debug, Clone)]
pub struct BollardConnector {
    host: String,
}

impl BollardConnector {
    pub fn new(host: String) -> Self {
        Self { host }
    }
}

#[async_trait]
impl DockerConnector for BollardConnector {
    fn host(&self) -> &str {
        &self.host
    }

    async fn connect(&self) -> Result<Arc<dyn DockerWatch>, WatchError> {
        let err = |e: BollardError| WatchError::Connect {
            host: self.host.clone(),
            message: e.to_string(),
        };
        // The timeout bounds each request until the engine answers; bollard does
        // not apply it to a streamed body, so the event stream is not cut by it.
        let docker = connect_negotiated(&self.host)
            .await
            .map_err(err)?
            .with_timeout(REQUEST_TIMEOUT);
        docker.ping().await.map_err(err)?;
        Ok(Arc::new(BollardWatch { docker }))
    }
}

struct BollardWatch {
    docker: Docker,
}

fn request(what: &'static str) -> impl Fn(BollardError) -> WatchError {
    move |e| WatchError::Request {
        what,
        message: e.to_string(),
    }
}

fn is_not_found(e: &BollardError) -> bool {
    matches!(
        e,
        BollardError::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[async_trait]
impl DockerWatch for BollardWatch {
    async fn ping(&self) -> Result<(), WatchError> {
        self.docker
            .ping()
            .await
            .map(|_| ())
            .map_err(request("ping"))
    }

    async fn root_dir(&self) -> Result<PathBuf, WatchError> {
        let info = self.docker.info().await.map_err(request("/info"))?;
        info.docker_root_dir
            .map(PathBuf::from)
            .ok_or(WatchError::Request {
                what: "/info",
                message: "no DockerRootDir in the answer".to_owned(),
            })
    }

    async fn images(&self) -> Result<Vec<ImageRecord>, WatchError> {
        let list = self
            .docker
            .list_images(Some(ListImagesOptions {
                all: false,
                ..Default::default()
            }))
            .await
            .map_err(request("image listing"))?;
        Ok(list
            .into_iter()
            .map(|i| ImageRecord {
                id: i.id,
                tags: real_tags(i.repo_tags),
            })
            .collect())
    }

    async fn containers(&self) -> Result<Vec<ContainerRecord>, WatchError> {
        let list = self
            .docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(request("container listing"))?;
        Ok(list
            .into_iter()
            .filter_map(|c| {
                Some(ContainerRecord {
                    id: c.id?,
                    image_id: c.image_id?,
                    running: matches!(c.state, Some(ContainerSummaryStateEnum::RUNNING)),
                })
            })
            .collect())
    }

    async fn container_image(&self, id: &str) -> Result<Option<String>, WatchError> {
        match self.docker.inspect_container(id, None).await {
            Ok(c) => Ok(c.image),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(request("container inspect")(e)),
        }
    }

    async fn image(&self, reference: &str) -> Result<Option<ImageRecord>, WatchError> {
        match self.docker.inspect_image(reference).await {
            Ok(i) => Ok(i.id.map(|id| ImageRecord {
                id,
                tags: real_tags(i.repo_tags.unwrap_or_default()),
            })),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(request("image inspect")(e)),
        }
    }

    fn events(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> BoxStream<'static, Result<DockerEvent, WatchError>> {
        let filters = HashMap::from([
            (
                "type".to_owned(),
                vec!["container".to_owned(), "image".to_owned()],
            ),
            (
                "event".to_owned(),
                TRACKED_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
            ),
        ]);
        let options = EventsOptions {
            since: since.map(|t| format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos())),
            until: None,
            filters: Some(filters),
        };
        self.docker
            .events(Some(options))
            .map(|item| item.map(convert).map_err(request("event stream")))
            .boxed()
    }
}

fn convert(m: EventMessage) -> DockerEvent {
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
        .or_else(|| m.time.and_then(|s| Utc.timestamp_opt(s, 0).single()))
        .unwrap_or_else(Utc::now);
    DockerEvent {
        scope,
        action: m.action.unwrap_or_default(),
        actor_id,
        image: attributes.get("image").cloned(),
        time,
    }
}
