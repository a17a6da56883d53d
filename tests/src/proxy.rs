//! A proxy between the binary and moto, for what moto gets wrong or cannot do. moto 5
//! echoes a task's container `cpu` as a JSON number, which the Rust SDK rejects (ECS sends
//! a string), so no DescribeTasks/RunTask answer from moto parses: the proxy turns those
//! numbers into strings. It can also answer the first N requests of an operation with
//! ThrottlingException, as ECR does under load.
//!
//! Strict where moto is lenient: a request over an API's documented id limit
//! (BatchGetImage/BatchDeleteImage 100 imageIds, DescribeTasks 100, DescribeServices 10,
//! DescribeServiceDeployments/DescribeServiceRevisions 20 ARNs) or asking a page larger
//! than its maximum (`maxResults`: ListClusters/ListTasks/ListServices/ListTaskDefinitions
//! /ListServiceDeployments 100, DescribeImages/DescribeRepositories 1000) is answered
//! with InvalidParameterException, as ECR and ECS do, so a bug
//! moto would let through fails the test.
//!
//! What moto does not serve (ListServiceDeployments, DescribeServiceDeployments,
//! DescribeServiceRevisions) the proxy answers from fixtures a test gives
//! (`answer_list`, `answer_items`), shaped like the ECS API reference; without a
//! fixture it answers UnknownOperationException, as an endpoint that lacks the API does.
//! What moto answers wrongly over REST (Lambda GetFunction's resolved digest) a test
//! answers with `answer_rest`, shaped like the Lambda API reference.

use std::sync::{Arc, Mutex};

use crate::moto::Moto;

/// Operations answered by the proxy, never by moto.
const PROXY_ONLY: [&str; 5] = [
    "listservicedeployments",
    "describeservicedeployments",
    "describeservicerevisions",
    "listpulltimeupdateexclusions",
    "registerpulltimeupdateexclusion",
];

/// (request field, limit) per operation (lower-cased name): id lists.
const ID_LIMITS: [(&str, &str, usize); 6] = [
    ("batchgetimage", "imageIds", 100),
    ("batchdeleteimage", "imageIds", 100),
    ("describetasks", "tasks", 100),
    ("describeservices", "services", 10),
    ("describeservicedeployments", "serviceDeploymentArns", 20),
    ("describeservicerevisions", "serviceRevisionArns", 20),
];

/// Largest `maxResults` per operation (lower-cased name).
const PAGE_MAX: [(&str, i64); 8] = [
    ("listclusters", 100),
    ("listtasks", 100),
    ("listservices", 100),
    ("listtaskdefinitions", 100),
    ("listservicedeployments", 100),
    ("describeimages", 1000),
    ("describerepositories", 1000),
    ("listpulltimeupdateexclusions", 1000),
];

#[derive(Default)]
struct Fixtures {
    /// (operation, fields the request must carry, response body)
    lists: Vec<(String, serde_json::Value, serde_json::Value)>,
    /// operation → (request list field, response list field, item id field, items)
    items: Vec<(String, String, String, String, Vec<serde_json::Value>)>,
    /// The registry's pull-time update exclusion list, once `serve_pull_time_exclusions`.
    exclusions: Option<Vec<String>>,
    /// REST-JSON answers (Lambda): (method, decoded path, decoded query pairs the
    /// request must carry, response body).
    rest: Vec<RestFixture>,
}

/// One REST-JSON answer: method, path, query pairs, then the error type it answers
/// with (None: 200 with the body) and the body.
type RestFixture = (
    String,
    String,
    Vec<(String, String)>,
    Option<String>,
    serde_json::Value,
);

/// `%XX` escapes of a URL path or query part decoded (`%24LATEST` → `$LATEST`).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A running proxy on a free 127.0.0.1 port; it serves until the test process exits.
pub struct AwsProxy {
    port: u16,
    fixtures: Arc<Mutex<Fixtures>>,
}

impl AwsProxy {
    /// A proxy that only fixes moto's task shapes.
    pub fn start(moto: &Moto) -> Self {
        Self::start_throttling(moto, "", 0)
    }

    /// Throttle the first `times` requests whose `x-amz-target` ends with `.{operation}`.
    pub fn start_throttling(moto: &Moto, operation: &str, times: usize) -> Self {
        let throttle = std::sync::Arc::new(std::sync::Mutex::new((
            format!(".{}", operation.to_lowercase()),
            times,
        )));
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream = moto.port();
        let fixtures: Arc<Mutex<Fixtures>> = Arc::default();
        let shared = fixtures.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let throttle = throttle.clone();
                let fixtures = shared.clone();
                std::thread::spawn(move || {
                    let _ = Self::serve(conn, upstream, &throttle, &fixtures);
                });
            }
        });
        Self { port, fixtures }
    }

    /// Answer `operation` (e.g. `ListServiceDeployments`) with `response` when the
    /// request carries every field of `matching` with the same value.
    pub fn answer_list(
        &self,
        operation: &str,
        matching: serde_json::Value,
        response: serde_json::Value,
    ) {
        self.fixtures.lock().expect("fixtures").lists.push((
            operation.to_lowercase(),
            matching,
            response,
        ));
    }

    /// Serve ListPullTimeUpdateExclusions / RegisterPullTimeUpdateExclusion (ECR API
    /// shapes: `{"pullTimeUpdateExclusions":[…]}`, `{"principalArn","createdAt"}`) over
    /// a list that starts empty.
    pub fn serve_pull_time_exclusions(&self) {
        self.fixtures.lock().expect("fixtures").exclusions = Some(Vec::new());
    }

    /// The exclusion list as registered so far.
    pub fn pull_time_exclusions(&self) -> Vec<String> {
        self.fixtures
            .lock()
            .expect("fixtures")
            .exclusions
            .clone()
            .unwrap_or_default()
    }

    /// Answer `operation` (a Describe* by ARNs) with the `items` whose `id_field` the
    /// request's `request_field` lists, under `response_field`; the others come back in
    /// `failures[]` with reason MISSING, as ECS does.
    pub fn answer_items(
        &self,
        operation: &str,
        request_field: &str,
        response_field: &str,
        id_field: &str,
        items: Vec<serde_json::Value>,
    ) {
        self.fixtures.lock().expect("fixtures").items.push((
            operation.to_lowercase(),
            request_field.to_owned(),
            response_field.to_owned(),
            id_field.to_owned(),
            items,
        ));
    }

    /// Answer a REST-JSON request (Lambda's `GET /2015-03-31/functions/{name}` for
    /// GetFunction) with `response` when its method and path are these and its query
    /// carries every pair of `query` — for what moto answers wrongly: its GetFunction
    /// makes `Code.ResolvedImageUri` up from a hash of the URI string, not the image's
    /// manifest digest Lambda resolves.
    pub fn answer_rest(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        response: serde_json::Value,
    ) {
        self.fixtures.lock().expect("fixtures").rest.push((
            method.to_owned(),
            path.to_owned(),
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            None,
            response,
        ));
    }

    /// Answer every `method path` request with UnknownOperationException, as an endpoint
    /// that does not serve the API (e.g. `GET /schedules`: no EventBridge Scheduler).
    pub fn refuse_rest(&self, method: &str, path: &str) {
        let kind = "UnknownOperationException";
        self.fixtures.lock().expect("fixtures").rest.push((
            method.to_owned(),
            path.to_owned(),
            Vec::new(),
            Some(kind.to_owned()),
            serde_json::json!({"message": format!("{method} {path} is not served by this endpoint")}),
        ));
    }

    /// The fixture answering this request line (`GET /path?query HTTP/1.1`), if any.
    fn rest_answer(
        request_line: &str,
        fixtures: &Mutex<Fixtures>,
    ) -> Option<(Option<String>, String)> {
        let mut words = request_line.split_whitespace();
        let (method, target) = (words.next()?, words.next()?);
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let path = percent_decode(path);
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (percent_decode(k), percent_decode(v)))
            .collect();
        let fixtures = fixtures.lock().expect("fixtures");
        fixtures
            .rest
            .iter()
            .find(|(m, p, q, _, _)| {
                m.eq_ignore_ascii_case(method)
                    && *p == path
                    && q.iter().all(|pair| pairs.contains(pair))
            })
            .map(|(_, _, _, error, body)| (error.clone(), body.to_string()))
    }

    /// `http://127.0.0.1:<port>` of the proxy.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `moto.env()` with the endpoint pointed at the proxy.
    pub fn env(&self, moto: &Moto) -> Vec<(String, String)> {
        moto.env_with_endpoint(&self.endpoint())
    }

    fn reply(
        client: &mut std::net::TcpStream,
        status: &str,
        error_type: Option<&str>,
        body: &str,
    ) -> std::io::Result<()> {
        use std::io::Write;
        let error = error_type.map_or(String::new(), |t| format!("x-amzn-ErrorType: {t}\r\n"));
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\n{error}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        client.write_all(reply.as_bytes())
    }

    /// The strict checks and the fixtures: Some(answer) when the proxy answers itself.
    fn local_answer(
        operation: &str,
        body: &[u8],
        fixtures: &Mutex<Fixtures>,
    ) -> Option<(&'static str, Option<&'static str>, String)> {
        let request: serde_json::Value =
            serde_json::from_slice(body).unwrap_or(serde_json::Value::Null);
        let error = |kind: &'static str, message: String| {
            let body = serde_json::json!({"__type": kind, "message": message}).to_string();
            Some(("400 Bad Request", Some(kind), body))
        };
        let invalid = "InvalidParameterException";
        for (op, field, limit) in ID_LIMITS {
            let n = request[field].as_array().map_or(0, Vec::len);
            if op == operation && n > limit {
                return error(
                    invalid,
                    format!("{field} can have at most {limit} items, {n} given"),
                );
            }
        }
        for (op, max) in PAGE_MAX {
            if let Some(n) = request["maxResults"].as_i64() {
                if op == operation && !(1..=max).contains(&n) {
                    return error(
                        invalid,
                        format!("maxResults must be between 1 and {max}, {n} given"),
                    );
                }
            }
        }
        if !PROXY_ONLY.contains(&operation) {
            return None;
        }
        let mut fixtures = fixtures.lock().expect("fixtures");
        if let Some(list) = fixtures.exclusions.as_mut() {
            if operation == "listpulltimeupdateexclusions" {
                let body = serde_json::json!({"pullTimeUpdateExclusions": list});
                return Some(("200 OK", None, body.to_string()));
            }
            if operation == "registerpulltimeupdateexclusion" {
                let principal = request["principalArn"].as_str().unwrap_or_default();
                if !principal.starts_with("arn:") {
                    return error(
                        "InvalidParameterException",
                        "principalArn must be an ARN".into(),
                    );
                }
                list.push(principal.to_owned());
                let body = serde_json::json!({"principalArn": principal, "createdAt": 1.7e9});
                return Some(("200 OK", None, body.to_string()));
            }
        }
        for (op, matching, response) in &fixtures.lists {
            let matches = matching
                .as_object()
                .is_some_and(|m| m.iter().all(|(k, v)| request[k] == *v));
            if op == operation && matches {
                return Some(("200 OK", None, response.to_string()));
            }
        }
        for (op, request_field, response_field, id_field, items) in &fixtures.items {
            if op != operation {
                continue;
            }
            let wanted: Vec<&serde_json::Value> = request[request_field.as_str()]
                .as_array()
                .into_iter()
                .flatten()
                .collect();
            let found: Vec<&serde_json::Value> = items
                .iter()
                .filter(|i| wanted.contains(&&i[id_field.as_str()]))
                .collect();
            let failures: Vec<serde_json::Value> = wanted
                .iter()
                .filter(|w| !found.iter().any(|i| i[id_field.as_str()] == ***w))
                .map(|w| serde_json::json!({"arn": w, "reason": "MISSING"}))
                .collect();
            let body = serde_json::json!({response_field.as_str(): found, "failures": failures});
            return Some(("200 OK", None, body.to_string()));
        }
        error(
            "UnknownOperationException",
            format!("{operation} is not served by this endpoint (no fixture)"),
        )
    }

    fn serve(
        mut client: std::net::TcpStream,
        upstream: u16,
        throttle: &std::sync::Mutex<(String, usize)>,
        fixtures: &Mutex<Fixtures>,
    ) -> std::io::Result<()> {
        use std::io::{Read, Write};
        let mut request = Vec::new();
        let mut buf = [0u8; 65536];
        let header_end = loop {
            let n = client.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            request.extend_from_slice(&buf[..n]);
            if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&request[..header_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while request.len() < header_end + length {
            let n = client.read(&mut buf)?;
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        let target = head
            .lines()
            .find_map(|l| l.strip_prefix("x-amz-target:"))
            .map(str::trim);
        {
            let mut t = throttle.lock().expect("throttle lock");
            if t.1 > 0 && target.is_some_and(|x| x.ends_with(t.0.as_str())) {
                t.1 -= 1;
                let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nx-amzn-ErrorType: ThrottlingException\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                return client.write_all(reply.as_bytes());
            }
        }
        if target.is_none() {
            let head = String::from_utf8_lossy(&request[..header_end]);
            if let Some((error, body)) =
                Self::rest_answer(head.lines().next().unwrap_or(""), fixtures)
            {
                let (status, error) = match error {
                    Some(kind) => ("400 Bad Request", format!("x-amzn-ErrorType: {kind}\r\n")),
                    None => ("200 OK", String::new()),
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\n{error}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                return client.write_all(reply.as_bytes());
            }
        }
        let operation = target
            .and_then(|t| t.rsplit('.').next())
            .unwrap_or_default()
            .to_owned();
        if let Some((status, kind, body)) =
            Self::local_answer(&operation, &request[header_end..], fixtures)
        {
            return Self::reply(&mut client, status, kind, &body);
        }
        let mut moto = std::net::TcpStream::connect(("127.0.0.1", upstream))?;
        moto.write_all(&request)?;
        let mut response = Vec::new();
        moto.read_to_end(&mut response)?;
        let Some(split) = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
        else {
            return client.write_all(&response);
        };
        let body = &response[split..];
        let fixed = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|mut v| {
                let tasks = v.get_mut("tasks")?.as_array_mut()?;
                for task in tasks {
                    for c in task
                        .get_mut("containers")
                        .and_then(|c| c.as_array_mut())
                        .into_iter()
                        .flatten()
                    {
                        for key in ["cpu", "memory", "memoryReservation"] {
                            if let Some(n) =
                                c.get(key).filter(|x| x.is_number()).map(|x| x.to_string())
                            {
                                c[key] = serde_json::Value::String(n);
                            }
                        }
                    }
                }
                serde_json::to_vec(&v).ok()
            });
        match fixed {
            None => client.write_all(&response),
            Some(new_body) => {
                let head = String::from_utf8_lossy(&response[..split]);
                let mut out = String::new();
                for line in head.split("\r\n").filter(|l| !l.is_empty()) {
                    if line.to_lowercase().starts_with("content-length:") {
                        out.push_str(&format!("Content-Length: {}\r\n", new_body.len()));
                    } else {
                        out.push_str(line);
                        out.push_str("\r\n");
                    }
                }
                out.push_str("\r\n");
                client.write_all(out.as_bytes())?;
                client.write_all(&new_body)
            }
        }
    }
}
