//! The `/metrics` endpoint on `[metrics] listen`, served by hyper (HTTP/1.1).
//!
//! One request per connection (a scraper on loopback needs no keep-alive), GET and
//! HEAD only, with the request head bounded in size and in read time, at most
//! [`MAX_CONNECTIONS`] at once (more are closed at accept: a flood of idle connections
//! cannot exhaust the daemon's descriptors), each closed after [`CONNECTION_DEADLINE`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONNECTION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
/// Largest request head read (hyper's smallest buffer).
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; a scraper needs one.
pub const MAX_CONNECTIONS: usize = 64;
/// A connection, however slow, is closed after this (the slow are dropped first).
const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);

/// Bind `addr` (before READY, so a taken port is a start-up error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serve `/metrics` until `stop`.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, stop: CancellationToken) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => match Arc::clone(&permits).try_acquire_owned() {
                Ok(permit) => {
                    let metrics = Arc::clone(&metrics);
                    tokio::spawn(async move {
                        let _permit = permit;
                        let served = serve_connection(stream, metrics);
                        if tokio::time::timeout(CONNECTION_DEADLINE, served)
                            .await
                            .is_err()
                        {
                            tracing::debug!(%peer, "metrics connection closed at its deadline");
                        }
                    });
                }
                Err(_) => {
                    metrics.metrics_connection_refused();
                    tracing::debug!(%peer, limit = MAX_CONNECTIONS, "metrics connection refused: too many open");
                    drop(stream);
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "metrics listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_connection(stream: TcpStream, metrics: Arc<Metrics>) {
    let service = service_fn(move |request: Request<Incoming>| {
        let response = respond(request.method(), request.uri().path(), &metrics);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = http1::Builder::new()
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST)
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!(error = %e, "metrics request failed");
    }
}

/// The answer to `method` on `path` (the query already stripped).
fn respond(method: &Method, path: &str, metrics: &Metrics) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (method, path) {
        (&Method::GET | &Method::HEAD, "/metrics") => {
            (StatusCode::OK, OPENMETRICS, metrics.render())
        }
        (&Method::GET | &Method::HEAD, "/") => (
            StatusCode::OK,
            TEXT,
            "shipshape daemon: see /metrics\n".to_owned(),
        ),
        (&Method::GET | &Method::HEAD, _) => {
            (StatusCode::NOT_FOUND, TEXT, "not found\n".to_owned())
        }
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            TEXT,
            "only GET\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn status(method: Method, target: &str) -> StatusCode {
        let uri: hyper::Uri = target.parse().unwrap();
        respond(&method, uri.path(), &Metrics::new()).status()
    }

    /// Send `request` raw and read the whole answer (the server closes after it).
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut resp = String::new();
        tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut resp))
            .await
            .expect("the server closes the connection after one answer")
            .unwrap();
        resp
    }

    async fn start(
        metrics: Arc<Metrics>,
    ) -> (SocketAddr, CancellationToken, tokio::task::JoinHandle<()>) {
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, stop.clone()));
        (addr, stop, server)
    }

    #[test]
    fn only_get_metrics_is_served() {
        assert_eq!(status(Method::GET, "/metrics"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/metrics?x=1"), StatusCode::OK);
        assert_eq!(status(Method::HEAD, "/metrics"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/other"), StatusCode::NOT_FOUND);
        assert_eq!(
            status(Method::POST, "/metrics"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(status(Method::DELETE, "/"), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn http_endpoint_answers() {
        let m = Arc::new(Metrics::new());
        m.images_deleted.inc_by(5);
        let (addr, stop, server) = start(Arc::clone(&m)).await;
        let resp = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(head.contains("application/openmetrics-text"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("connection: close"),
            "{head}"
        );
        let scrape =
            prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).unwrap();
        let deleted = scrape
            .samples
            .iter()
            .find(|s| s.metric == "shipshape_gc_images_deleted_total")
            .expect("sample");
        assert!(
            matches!(
                deleted.value,
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Untyped(v) if v == 5.0
            ),
            "{:?}",
            deleted.value
        );
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn connections_beyond_the_cap_are_closed_and_a_scrape_works_once_idle_ones_go() {
        let m = Arc::new(Metrics::new());
        let (addr, stop, server) = start(Arc::clone(&m)).await;
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        // Let the server accept them all and hold their permits.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut extra = TcpStream::connect(addr).await.unwrap();
        let mut buf = [0u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
            .await
            .expect("a connection beyond the cap is closed at once");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        assert!(m
            .render()
            .contains("shipshape_metrics_connections_refused_total 1"));
        drop(idle);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let resp = exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200 OK"), "{resp}");
        stop.cancel();
        server.await.unwrap();
    }

    #[tokio::test]
    async fn head_has_no_body_and_other_methods_are_refused_on_the_wire() {
        let (addr, stop, server) = start(Arc::new(Metrics::new())).await;
        let resp = exchange(addr, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let (head, body) = resp.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
        assert!(
            head.to_ascii_lowercase().contains("content-length: "),
            "{head}"
        );
        assert_eq!(body, "");
        let resp = exchange(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        )
        .await;
        assert!(
            resp.starts_with("HTTP/1.1 405 Method Not Allowed"),
            "{resp}"
        );
        assert!(resp.ends_with("only GET\n"), "{resp}");
        let resp = exchange(addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 404 Not Found"), "{resp}");
        // Not HTTP at all: refused, and no metrics leak.
        let resp = exchange(addr, b"\x16\x03\x01 hello\r\n\r\n").await;
        assert!(!resp.contains("shipshape_"), "{resp}");
        stop.cancel();
        server.await.unwrap();
    }
}
