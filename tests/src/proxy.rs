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
//! Real page sizes on moto's answers: moto 5 answers every list below in one page,
//! whatever `maxResults` says and never with a `nextToken`. The proxy cuts moto's answer
//! into the pages the real API gives — `maxResults` when the request sets it, else the
//! API's default — and serves the later pages itself from its own `nextToken` (an
//! unknown token is InvalidParameterException). Defaults and maxima, from the API
//! references (`maxResults` of each request):
//! - ECR DescribeImages, ListImages, DescribeRepositories: default 100, 1..1000 ("If
//!   this parameter isn't used, then DescribeImages returns up to 100 results and a
//!   nextToken value"); not with `imageIds` / `repositoryNames`, which are not paged.
//! - ECS ListClusters, ListTasks, ListTaskDefinitions, ListTaskDefinitionFamilies:
//!   default 100, 1..100; ListServices: default 10, 1..100 ("ListServices returns up
//!   to 10 results").
//!
//! - The usage calls (Rust SDK and AWS CLI send them to moto, whose answers are one
//!   page): EventBridge ListEventBuses, ListRules, ListTargetsByRule (`Limit` 1..100,
//!   "The maximum number of results per page for requests is 100"; no default is
//!   documented, the proxy uses 100; `NextToken` both ways); EventBridge Scheduler
//!   ListSchedules (`MaxResults` 1..100 in the query, default undocumented: 100;
//!   `NextToken`); Lambda ListFunctions, ListVersionsByFunction (`MaxItems` 1..10000
//!   in the query, yet at most 50 per response "even if you set the number higher";
//!   `Marker` in, `NextMarker` out) and ListAliases (`MaxItems` 1..10000, no cap or
//!   default documented: 50 unless the request asks). Outside the valid range the
//!   request is refused with ValidationException (400) and AWS's constraint message
//!   ("1 validation error detected: Value '101' at 'limit' failed to satisfy
//!   constraint: Member must have value less than or equal to 100").
//! - Short pages on demand, `short_pages(operation, n)`: at most `n` items a page
//!   whatever the request asks, as any AWS list may answer (a page shorter than the
//!   limit, with a token): a client that stops at a short page fails the test, and a
//!   test reaches page 2 with three items instead of a hundred (ListTargetsByRule
//!   cannot hold more than 5 targets a rule in AWS anyway).
//!
//! A region denied on demand (`deny_region`): every request signed for it is answered
//! UnrecognizedClientException (403), as a region the account has not enabled is.
//!
//! Index-first deletion as ECR enforces it: BatchDeleteImage of a manifest that an
//! image index still in the repository lists fails for that manifest with an
//! ImageFailure `{"imageId":{"imageDigest"},"failureCode":"ImageReferencedByManifestList",
//! "failureReason"}` (the other ids of the call go ahead); moto deletes it. The proxy
//! learns the indexes from the PutImage requests and BatchGetImage answers that pass
//! through it, so an index pushed straight to moto and never read through the proxy is
//! unknown to it. ECR does not document the order within one call; the proxy takes the
//! strict reading: an index deleted in the same call still protects its children.
//!
//! Throttling on demand: `throttle(operation, after, times)` answers ThrottlingException
//! (400, `x-amzn-ErrorType`) to `times` requests of the operation after `after` passed,
//! e.g. the second page of a listing.
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

/// Operations the proxy pages (lower-cased name): (operation, list field of the answer,
/// default page, largest page, a request field that turns paging off).
const PAGED: [(&str, &str, usize, i64, &str); 8] = [
    ("describeimages", "imageDetails", 100, 1000, "imageIds"),
    ("listimages", "imageIds", 100, 1000, ""),
    (
        "describerepositories",
        "repositories",
        100,
        1000,
        "repositoryNames",
    ),
    ("listclusters", "clusterArns", 100, 100, ""),
    ("listtasks", "taskArns", 100, 100, ""),
    ("listservices", "serviceArns", 10, 100, ""),
    ("listtaskdefinitions", "taskDefinitionArns", 100, 100, ""),
    ("listtaskdefinitionfamilies", "families", 100, 100, ""),
];

/// The usage calls the proxy pages (lower-cased name): (operation, list field of the
/// answer, page size field of the request, request token field, answer token field,
/// default page, largest page served, largest page size accepted). Lambda and
/// Scheduler carry the request fields in the query string (see `rest_operation`).
type UsagePaging = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    usize,
    usize,
    i64,
);
const PAGED_USAGE: [UsagePaging; 7] = [
    (
        "listeventbuses",
        "EventBuses",
        "Limit",
        "NextToken",
        "NextToken",
        100,
        100,
        100,
    ),
    (
        "listrules",
        "Rules",
        "Limit",
        "NextToken",
        "NextToken",
        100,
        100,
        100,
    ),
    (
        "listtargetsbyrule",
        "Targets",
        "Limit",
        "NextToken",
        "NextToken",
        100,
        100,
        100,
    ),
    (
        "listschedules",
        "Schedules",
        "MaxResults",
        "NextToken",
        "NextToken",
        100,
        100,
        100,
    ),
    (
        "listfunctions",
        "Functions",
        "MaxItems",
        "Marker",
        "NextMarker",
        50,
        50,
        10_000,
    ),
    (
        "listversionsbyfunction",
        "Versions",
        "MaxItems",
        "Marker",
        "NextMarker",
        50,
        50,
        10_000,
    ),
    (
        "listaliases",
        "Aliases",
        "MaxItems",
        "Marker",
        "NextMarker",
        50,
        10_000,
        10_000,
    ),
];

/// The REST-JSON list a request line asks for (Scheduler's and Lambda's paths), by the
/// lower-cased operation name the tables use.
fn rest_operation(method: &str, path: &str) -> Option<&'static str> {
    if !method.eq_ignore_ascii_case("GET") {
        return None;
    }
    let path = path.trim_end_matches('/');
    if path == "/schedules" {
        return Some("listschedules");
    }
    let rest = path.strip_prefix("/2015-03-31/functions")?;
    match rest.rsplit_once('/') {
        None if rest.is_empty() => Some("listfunctions"),
        Some((name, "versions")) if name.matches('/').count() == 1 => {
            Some("listversionsbyfunction")
        }
        Some((name, "aliases")) if name.matches('/').count() == 1 => Some("listaliases"),
        _ => None,
    }
}

/// A request line's query as a JSON object (numbers as numbers), so REST requests are
/// checked and paged by the same code as JSON bodies.
fn query_object(request_line: &str) -> serde_json::Value {
    let target = request_line.split_whitespace().nth(1).unwrap_or_default();
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut object = serde_json::Map::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        let v = percent_decode(v);
        let value = v
            .parse::<i64>()
            .map_or(serde_json::Value::String(v), serde_json::Value::from);
        object.insert(percent_decode(k), value);
    }
    serde_json::Value::Object(object)
}

const TOKEN_PREFIX: &str = "shipshape-proxy-page-";

/// Largest `maxResults` per operation (lower-cased name).
const PAGE_MAX: [(&str, i64); 10] = [
    ("listclusters", 100),
    ("listtasks", 100),
    ("listservices", 100),
    ("listtaskdefinitions", 100),
    ("listtaskdefinitionfamilies", 100),
    ("listservicedeployments", 100),
    ("describeimages", 1000),
    ("listimages", 1000),
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
    /// Later pages of answers the proxy cut: token id → (answer minus its list, list
    /// field, the items).
    pages: std::collections::HashMap<u64, (serde_json::Value, String, Vec<serde_json::Value>)>,
    next_page_id: u64,
    /// repository → index digest → the digests it lists.
    indexes: std::collections::HashMap<String, std::collections::HashMap<String, Vec<String>>>,
    /// (operation suffix `.name`, requests to let pass first, requests to throttle).
    throttles: Vec<(String, usize, usize)>,
    /// Operations (lower-cased) answered AccessDeniedException, as for a role whose
    /// policy lacks them.
    denied: Vec<String>,
    /// Regions whose every request is answered UnrecognizedClientException.
    denied_regions: Vec<String>,
    /// Operation (lower-cased) → the most items a page of it carries.
    short_pages: std::collections::HashMap<String, usize>,
    /// Requests per operation (lower-cased), as the proxy saw them.
    seen: std::collections::BTreeMap<String, usize>,
    /// Per operation (lower-cased): requests passed to moto and the wall time of their
    /// round trips to it (for the benchmarks' profile).
    upstream: std::collections::BTreeMap<String, (usize, std::time::Duration)>,
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

/// How one request is paged (see `AwsProxy::paged`).
struct Paging {
    field: &'static str,
    size: usize,
    token_in: &'static str,
    token_out: &'static str,
    invalid: &'static str,
}

const DENIED: &str = "AccessDeniedException";

/// `%XX` escapes of a URL path or query part decoded (`%24LATEST` → `$LATEST`).
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// A running proxy on a free 127.0.0.1 port; it serves until the test process exits.
pub struct AwsProxy {
    port: u16,
    fixtures: Arc<Mutex<Fixtures>>,
}

impl AwsProxy {
    /// A proxy with every strict behaviour and no throttling.
    pub fn start(moto: &Moto) -> Self {
        Self::start_throttling(moto, "", 0)
    }

    /// Throttle the first `times` requests whose `x-amz-target` ends with `.{operation}`.
    pub fn start_throttling(moto: &Moto, operation: &str, times: usize) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream = moto.port();
        let fixtures: Arc<Mutex<Fixtures>> = Arc::default();
        let shared = fixtures.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let fixtures = shared.clone();
                std::thread::spawn(move || {
                    let _ = Self::serve(conn, upstream, &fixtures);
                });
            }
        });
        let proxy = Self { port, fixtures };
        if times > 0 {
            proxy.throttle(operation, 0, times);
        }
        proxy
    }

    /// Answer ThrottlingException to `times` requests of `operation` (e.g.
    /// `DescribeImages`), after letting `after` more of them pass.
    pub fn throttle(&self, operation: &str, after: usize, times: usize) {
        self.fixtures.lock().expect("fixtures").throttles.push((
            format!(".{}", operation.to_lowercase()),
            after,
            times,
        ));
    }

    /// Answer every request of `operation` (e.g. `ListRules`) with AccessDeniedException
    /// (HTTP 400 in the JSON protocols, as AWS does), as when the role's policy lacks it.
    pub fn deny(&self, operation: &str) {
        self.fixtures
            .lock()
            .expect("fixtures")
            .denied
            .push(operation.to_lowercase());
    }

    /// Answer every request signed for `region` (its `Authorization` credential scope)
    /// with UnrecognizedClientException (403, "The security token included in the
    /// request is invalid"), as AWS answers in a region the account has not enabled.
    pub fn deny_region(&self, region: &str) {
        self.fixtures
            .lock()
            .expect("fixtures")
            .denied_regions
            .push(region.to_owned());
    }

    /// Serve `operation` (e.g. `ListRules`) in pages of at most `items`, whatever the
    /// request's page size (real APIs may answer a short page with a token).
    pub fn short_pages(&self, operation: &str, items: usize) {
        self.fixtures
            .lock()
            .expect("fixtures")
            .short_pages
            .insert(operation.to_lowercase(), items.max(1));
    }

    /// Answer every `method path` REST request with AccessDeniedException (HTTP 403, as
    /// Lambda does), e.g. `GET /2015-03-31/functions/fn` for GetFunction.
    pub fn deny_rest(&self, method: &str, path: &str) {
        self.fixtures.lock().expect("fixtures").rest.push((
            method.to_owned(),
            path.to_owned(),
            Vec::new(),
            Some(DENIED.to_owned()),
            serde_json::json!({"Type": "User", "message": format!("not authorized to perform {method} {path}")}),
        ));
    }

    /// Requests of `operation` the proxy received (throttled ones and later pages it
    /// served itself included).
    pub fn requests(&self, operation: &str) -> usize {
        self.fixtures
            .lock()
            .expect("fixtures")
            .seen
            .get(&operation.to_lowercase())
            .copied()
            .unwrap_or(0)
    }

    /// Per operation (lower-cased name): requests the proxy passed to moto and the wall
    /// time of those round trips, summed (overlapping ones each count whole).
    pub fn upstream(&self) -> std::collections::BTreeMap<String, (usize, std::time::Duration)> {
        self.fixtures.lock().expect("fixtures").upstream.clone()
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
            .map(str::trim)
            .unwrap_or_default()
            .to_owned();
        if let Some(region) = Self::denied_region(&head, fixtures) {
            let kind = "UnrecognizedClientException";
            let body = serde_json::json!({"__type": kind, "message": format!("The security token included in the request is invalid ({region} is not enabled)")});
            return Self::reply(&mut client, "403 Forbidden", Some(kind), &body.to_string());
        }
        let request_line = String::from_utf8_lossy(&request[..header_end])
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        // REST-JSON (Lambda) carries no X-Amz-Target: answered from fixtures.
        if target.is_empty() {
            let head = String::from_utf8_lossy(&request[..header_end]);
            if let Some((error, body)) =
                Self::rest_answer(head.lines().next().unwrap_or(""), fixtures)
            {
                let (status, error) = match error {
                    Some(kind) if kind == DENIED => {
                        ("403 Forbidden", format!("x-amzn-ErrorType: {kind}\r\n"))
                    }
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
        // REST-JSON lists (Scheduler, Lambda) are named by their path and carry their
        // fields in the query.
        let rest = target
            .is_empty()
            .then(|| {
                let mut words = request_line.split_whitespace();
                let (method, path) = (words.next()?, words.next()?);
                rest_operation(method, &percent_decode(path.split('?').next()?))
            })
            .flatten();
        let operation = match rest {
            Some(op) => op.to_owned(),
            None => target.rsplit('.').next().unwrap_or_default().to_owned(),
        };
        if Self::throttled(fixtures, &target, &operation) {
            let body = r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#;
            return Self::reply(
                &mut client,
                "400 Bad Request",
                Some("ThrottlingException"),
                body,
            );
        }
        if fixtures
            .lock()
            .expect("fixtures")
            .denied
            .contains(&operation.to_lowercase())
        {
            let body = format!(
                r#"{{"__type":"{DENIED}","message":"not authorized to perform {operation}"}}"#
            );
            return Self::reply(&mut client, "400 Bad Request", Some(DENIED), &body);
        }
        let body: serde_json::Value = if rest.is_some() {
            query_object(&request_line)
        } else {
            serde_json::from_slice(&request[header_end..]).unwrap_or(serde_json::Value::Null)
        };
        if let Some((status, kind, answer)) = Self::usage_range(&operation, &body)
            .or_else(|| Self::later_page(&operation, &body, fixtures))
            .or_else(|| Self::local_answer(&operation, &request[header_end..], fixtures))
        {
            return Self::reply(&mut client, status, kind, &answer);
        }
        // Index-first: drop the ids an index still lists, answer them as ECR does.
        let mut refused = Vec::new();
        if operation == "batchdeleteimage" {
            refused = Self::referenced_children(&body, fixtures);
            if !refused.is_empty() {
                let mut rest = body.clone();
                let refused_digests: Vec<&serde_json::Value> = refused
                    .iter()
                    .map(|f| &f["imageId"]["imageDigest"])
                    .collect();
                if let Some(ids) = rest["imageIds"].as_array_mut() {
                    ids.retain(|id| !refused_digests.contains(&&id["imageDigest"]));
                }
                if rest["imageIds"].as_array().is_none_or(Vec::is_empty) {
                    let answer = serde_json::json!({"imageIds": [], "failures": refused});
                    return Self::reply(&mut client, "200 OK", None, &answer.to_string());
                }
                let new_body = serde_json::to_vec(&rest).expect("json");
                request = Self::with_body(&request[..header_end], &new_body);
            }
        }
        let sent = std::time::Instant::now();
        let mut moto = std::net::TcpStream::connect(("127.0.0.1", upstream))?;
        moto.write_all(&request)?;
        let mut response = Vec::new();
        moto.read_to_end(&mut response)?;
        {
            let mut f = fixtures.lock().expect("fixtures");
            let entry = f.upstream.entry(operation.to_lowercase()).or_default();
            entry.0 += 1;
            entry.1 += sent.elapsed();
        }
        let Some(split) = response
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4)
        else {
            return client.write_all(&response);
        };
        let ok = response.starts_with(b"HTTP/1.1 200") || response.starts_with(b"HTTP/1.0 200");
        let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&response[split..]) else {
            return client.write_all(&response);
        };
        Self::fix_task_numbers(&mut answer);
        if ok {
            Self::learn_indexes(&operation, &body, &answer, fixtures);
            if operation == "batchdeleteimage" {
                Self::forget_deleted(&body, &answer, fixtures);
                if let Some(failures) = answer["failures"].as_array_mut() {
                    failures.extend(refused);
                } else if !refused.is_empty() {
                    answer["failures"] = serde_json::Value::Array(refused);
                }
            }
            Self::first_page(&operation, &body, &mut answer, fixtures);
        }
        let new_body = serde_json::to_vec(&answer).expect("json");
        client.write_all(&Self::with_body(&response[..split], &new_body))
    }

    /// The region a request is signed for (lower-cased `head`'s SigV4 credential scope,
    /// `Credential=<key>/<date>/<region>/<service>/aws4_request`), if `deny_region`
    /// denies it.
    fn denied_region(head: &str, fixtures: &Mutex<Fixtures>) -> Option<String> {
        let scope = head
            .lines()
            .find_map(|l| l.strip_prefix("authorization:"))?
            .split("credential=")
            .nth(1)?;
        let region = scope.split('/').nth(2)?;
        let f = fixtures.lock().expect("fixtures");
        f.denied_regions
            .iter()
            .any(|r| r.eq_ignore_ascii_case(region))
            .then(|| region.to_owned())
    }

    /// `head` (through the blank line) with its Content-Length set for `body`, and `body`.
    fn with_body(head: &[u8], body: &[u8]) -> Vec<u8> {
        let head = String::from_utf8_lossy(head);
        let mut out = String::new();
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            if line.to_lowercase().starts_with("content-length:") {
                out.push_str(&format!("Content-Length: {}\r\n", body.len()));
            } else {
                out.push_str(line);
                out.push_str("\r\n");
            }
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        bytes
    }

    /// Count the request; should it be throttled?
    fn throttled(fixtures: &Mutex<Fixtures>, target: &str, operation: &str) -> bool {
        let mut f = fixtures.lock().expect("fixtures");
        *f.seen.entry(operation.to_owned()).or_default() += 1;
        let target = target.to_lowercase();
        for (suffix, after, times) in &mut f.throttles {
            if *times == 0 || !target.ends_with(suffix.as_str()) {
                continue;
            }
            if *after > 0 {
                *after -= 1;
                return false;
            }
            *times -= 1;
            return true;
        }
        false
    }

    /// moto echoes a task's container `cpu`/`memory` as JSON numbers; ECS sends strings.
    fn fix_task_numbers(answer: &mut serde_json::Value) {
        let Some(tasks) = answer.get_mut("tasks").and_then(|t| t.as_array_mut()) else {
            return;
        };
        for task in tasks {
            for c in task
                .get_mut("containers")
                .and_then(|c| c.as_array_mut())
                .into_iter()
                .flatten()
            {
                for key in ["cpu", "memory", "memoryReservation"] {
                    if let Some(n) = c.get(key).filter(|x| x.is_number()).map(|x| x.to_string()) {
                        c[key] = serde_json::Value::String(n);
                    }
                }
            }
        }
    }

    /// The digests an index manifest lists, if it is one.
    fn listed(manifest: &str) -> Option<Vec<String>> {
        let m: serde_json::Value = serde_json::from_str(manifest).ok()?;
        let entries = m["manifests"].as_array()?;
        Some(
            entries
                .iter()
                .filter_map(|e| e["digest"].as_str().map(str::to_owned))
                .collect(),
        )
    }

    /// Remember the indexes a PutImage pushed or a BatchGetImage returned.
    fn learn_indexes(
        operation: &str,
        request: &serde_json::Value,
        answer: &serde_json::Value,
        fixtures: &Mutex<Fixtures>,
    ) {
        let images: Vec<&serde_json::Value> = match operation {
            "putimage" => answer.get("image").into_iter().collect(),
            "batchgetimage" => answer["images"].as_array().into_iter().flatten().collect(),
            _ => return,
        };
        let mut f = fixtures.lock().expect("fixtures");
        for image in images {
            let repository = image["repositoryName"]
                .as_str()
                .or_else(|| request["repositoryName"].as_str())
                .unwrap_or_default()
                .to_owned();
            let (Some(digest), Some(children)) = (
                image["imageId"]["imageDigest"].as_str(),
                image["imageManifest"].as_str().and_then(Self::listed),
            ) else {
                continue;
            };
            f.indexes
                .entry(repository)
                .or_default()
                .insert(digest.to_owned(), children);
        }
    }

    /// The ImageReferencedByManifestList failures of a BatchDeleteImage request: ids an
    /// index still in the repository lists.
    fn referenced_children(
        request: &serde_json::Value,
        fixtures: &Mutex<Fixtures>,
    ) -> Vec<serde_json::Value> {
        let f = fixtures.lock().expect("fixtures");
        let repository = request["repositoryName"].as_str().unwrap_or_default();
        let Some(indexes) = f.indexes.get(repository) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for id in request["imageIds"].as_array().into_iter().flatten() {
            let Some(digest) = id["imageDigest"].as_str() else {
                continue;
            };
            let holders: Vec<&str> = indexes
                .iter()
                .filter(|(_, children)| children.iter().any(|c| c == digest))
                .map(|(index, _)| index.as_str())
                .collect();
            if let Some(index) = holders.iter().min() {
                out.push(serde_json::json!({
                    "imageId": {"imageDigest": digest},
                    "failureCode": "ImageReferencedByManifestList",
                    "failureReason": format!("Requested image referenced by manifest list: [{index}]"),
                }));
            }
        }
        out
    }

    /// Deleted indexes no longer protect their children.
    fn forget_deleted(
        request: &serde_json::Value,
        answer: &serde_json::Value,
        fixtures: &Mutex<Fixtures>,
    ) {
        let mut f = fixtures.lock().expect("fixtures");
        let repository = request["repositoryName"].as_str().unwrap_or_default();
        if let Some(indexes) = f.indexes.get_mut(repository) {
            for id in answer["imageIds"].as_array().into_iter().flatten() {
                if let Some(d) = id["imageDigest"].as_str() {
                    indexes.remove(d);
                }
            }
        }
    }

    /// How a request the proxy pages is paged, if it is: the answer's list field, this
    /// page's size (`short`, from `short_pages`, caps it), the token fields (request,
    /// answer) and the error kind of a bad token.
    fn paged(operation: &str, request: &serde_json::Value, short: Option<usize>) -> Option<Paging> {
        let ecr_ecs = PAGED.iter().find_map(|(op, field, default, _, unpaged)| {
            let off = !unpaged.is_empty() && !request[*unpaged].is_null();
            (*op == operation && !off).then(|| Paging {
                field,
                size: request["maxResults"]
                    .as_u64()
                    .map_or(*default, |n| n as usize),
                token_in: "nextToken",
                token_out: "nextToken",
                invalid: "InvalidParameterException",
            })
        });
        let usage = || {
            PAGED_USAGE.iter().find_map(
                |(op, field, size_field, token_in, token_out, default, served, _)| {
                    (*op == operation).then(|| Paging {
                        field,
                        size: request[*size_field]
                            .as_u64()
                            .map_or(*default, |n| (n as usize).min(*served)),
                        token_in,
                        token_out,
                        invalid: "ValidationException",
                    })
                },
            )
        };
        ecr_ecs.or_else(usage).map(|mut p| {
            p.size = p.size.min(short.unwrap_or(usize::MAX));
            p
        })
    }

    /// A usage list call asking a page size outside its valid range: the refusal AWS
    /// answers (ValidationException, its constraint message naming the field as the
    /// service model does, first letter lower-cased).
    fn usage_range(
        operation: &str,
        request: &serde_json::Value,
    ) -> Option<(&'static str, Option<&'static str>, String)> {
        let (_, _, field, _, _, _, _, max) = PAGED_USAGE.iter().find(|row| row.0 == operation)?;
        let n = request[*field].as_i64()?;
        let member = format!("{}{}", field[..1].to_lowercase(), &field[1..]);
        let bound = if n < 1 {
            "greater than or equal to 1".to_owned()
        } else if n > *max {
            format!("less than or equal to {max}")
        } else {
            return None;
        };
        let kind = "ValidationException";
        let message = format!(
            "1 validation error detected: Value '{n}' at '{member}' failed to satisfy constraint: Member must have value {bound}"
        );
        let body = serde_json::json!({"__type": kind, "message": message}).to_string();
        Some(("400 Bad Request", Some(kind), body))
    }

    /// Cut moto's one-page answer to the first page, keeping the rest for its token.
    fn first_page(
        operation: &str,
        request: &serde_json::Value,
        answer: &mut serde_json::Value,
        fixtures: &Mutex<Fixtures>,
    ) {
        let short = Self::short_page(operation, fixtures);
        let Some(Paging {
            field,
            size,
            token_out,
            ..
        }) = Self::paged(operation, request, short)
        else {
            return;
        };
        if !answer[token_out].is_null() {
            return; // moto paged itself: leave its paging alone
        }
        let Some(items) = answer[field].as_array_mut() else {
            return;
        };
        if items.len() <= size {
            return;
        }
        let rest = items.split_off(size);
        let mut f = fixtures.lock().expect("fixtures");
        let id = f.next_page_id;
        f.next_page_id += 1;
        let mut template = answer.clone();
        template[field] = serde_json::Value::Array(Vec::new());
        f.pages.insert(id, (template, field.to_owned(), rest));
        answer[token_out] = serde_json::Value::String(format!("{TOKEN_PREFIX}{id}-0"));
    }

    /// The `short_pages` size of `operation`, if a test set one.
    fn short_page(operation: &str, fixtures: &Mutex<Fixtures>) -> Option<usize> {
        fixtures
            .lock()
            .expect("fixtures")
            .short_pages
            .get(operation)
            .copied()
    }

    /// A request carrying a `nextToken`: the next page the proxy kept, or the error an
    /// unknown token gets.
    fn later_page(
        operation: &str,
        request: &serde_json::Value,
        fixtures: &Mutex<Fixtures>,
    ) -> Option<(&'static str, Option<&'static str>, String)> {
        let short = Self::short_page(operation, fixtures);
        let Paging {
            size,
            token_in,
            token_out,
            invalid: kind,
            ..
        } = Self::paged(operation, request, short)?;
        let token = request[token_in].as_str()?;
        let invalid = || {
            let body = serde_json::json!({"__type": kind, "message": format!("Invalid {token_in}: {token}")});
            Some(("400 Bad Request", Some(kind), body.to_string()))
        };
        let Some((id, offset)) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| t.split_once('-'))
            .and_then(|(i, o)| Some((i.parse::<u64>().ok()?, o.parse::<usize>().ok()?)))
        else {
            return invalid();
        };
        let f = fixtures.lock().expect("fixtures");
        let Some((template, field, items)) = f.pages.get(&id) else {
            return invalid();
        };
        if offset > items.len() {
            return invalid();
        }
        let end = (offset + size).min(items.len());
        let mut answer = template.clone();
        answer[field.as_str()] = serde_json::Value::Array(items[offset..end].to_vec());
        if end < items.len() {
            answer[token_out] = serde_json::Value::String(format!("{TOKEN_PREFIX}{id}-{end}"));
        }
        Some(("200 OK", None, answer.to_string()))
    }
}
