//! `shipshape ecr-prune` against a real moto server: multi-arch indexes, cosign
//! signatures, images used by ECS tasks and services, the safety cap, batching of
//! BatchDeleteImage, quota mode, and bad input. API calls are counted from the binary's
//! `shipshape::aws_call` debug lines (one per HTTP attempt).

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::moto::Moto;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

struct Aws {
    ecr: aws_sdk_ecr::Client,
    ecs: aws_sdk_ecs::Client,
}

async fn aws(moto: &Moto) -> Aws {
    let sdk = moto.sdk_config().await;
    Aws {
        ecr: aws_sdk_ecr::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk),
    }
}

impl Aws {
    /// Creates the repository; returns its URI.
    async fn repo(&self, name: &str) -> String {
        let out = self
            .ecr
            .create_repository()
            .repository_name(name)
            .send()
            .await
            .expect("CreateRepository");
        out.repository()
            .and_then(|r| r.repository_uri())
            .expect("repository uri")
            .to_owned()
    }

    /// Pushes `manifest` with `imageDigest` = its sha256 (moto otherwise derives one).
    async fn put(&self, repo: &str, tag: Option<&str>, manifest: &str, media_type: &str) -> String {
        let digest = sha256(manifest.as_bytes());
        self.ecr
            .put_image()
            .repository_name(repo)
            .image_manifest(manifest)
            .image_manifest_media_type(media_type)
            .image_digest(&digest)
            .set_image_tag(tag.map(str::to_owned))
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutImage {repo}:{tag:?}: {e:?}"));
        digest
    }

    /// A unique single-platform image.
    async fn image(&self, repo: &str, tag: Option<&str>, seed: &str) -> String {
        self.put(repo, tag, &image_manifest(seed), OCI_MANIFEST)
            .await
    }

    async fn index(&self, repo: &str, tag: Option<&str>, children: &[String]) -> String {
        let entries: Vec<serde_json::Value> = children
            .iter()
            .map(|d| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 500, "platform": {"architecture": "amd64", "os": "linux"}}))
            .collect();
        let manifest =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
                .to_string();
        self.put(repo, tag, &manifest, OCI_INDEX).await
    }

    async fn digests(&self, repo: &str) -> Vec<String> {
        let out = self
            .ecr
            .describe_images()
            .repository_name(repo)
            .send()
            .await
            .expect("DescribeImages");
        let mut v: Vec<String> = out
            .image_details()
            .iter()
            .filter_map(|d| d.image_digest().map(str::to_owned))
            .collect();
        v.sort();
        v
    }
}

fn image_manifest(seed: &str) -> String {
    let config = sha256(format!("config-{seed}").as_bytes());
    let layer = sha256(format!("layer-{seed}").as_bytes());
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 1234},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": 4096}],
    })
    .to_string()
}

/// A proxy in front of moto. moto 5 echoes a task's container `cpu` as a JSON number,
/// which the Rust SDK rejects (ECS sends a string), so no DescribeTasks/RunTask answer
/// from moto parses: the proxy turns those numbers into strings. It can also answer the
/// first N requests of an operation with ThrottlingException, as ECR does under load.
struct TaskShapeProxy {
    port: u16,
}

impl TaskShapeProxy {
    fn start(moto: &Moto) -> Self {
        Self::start_throttling(moto, "", 0)
    }

    /// Throttle the first `times` requests whose `x-amz-target` ends with `.{operation}`.
    fn start_throttling(moto: &Moto, operation: &str, times: usize) -> Self {
        let throttle = std::sync::Arc::new(std::sync::Mutex::new((
            format!(".{}", operation.to_lowercase()),
            times,
        )));
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let upstream = moto.port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let throttle = throttle.clone();
                std::thread::spawn(move || {
                    let _ = Self::serve(conn, upstream, &throttle);
                });
            }
        });
        Self { port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `moto.env()` with the endpoint pointed at the proxy.
    fn env(&self, moto: &Moto) -> Vec<(String, String)> {
        moto.env()
            .into_iter()
            .map(|(k, v)| {
                if k == "AWS_ENDPOINT_URL" {
                    (k, self.endpoint())
                } else {
                    (k, v)
                }
            })
            .collect()
    }

    fn serve(
        mut client: std::net::TcpStream,
        upstream: u16,
        throttle: &std::sync::Mutex<(String, usize)>,
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

/// One EC2 instance in moto (ECS RegisterContainerInstance wants a real instance id).
/// A raw query-protocol request: the tests crate does not carry the large EC2 SDK.
fn ec2_run_instance(moto: &Moto) -> String {
    use std::io::{Read, Write};
    let body = "Action=RunInstances&Version=2016-11-15&ImageId=ami-12c6146b&MinCount=1&MaxCount=1&InstanceType=t3.micro";
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", moto.port())).expect("connect to moto");
    let request = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .expect("send RunInstances");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read RunInstances");
    let start = response
        .find("<instanceId>")
        .map(|i| i + "<instanceId>".len());
    let end = response.find("</instanceId>");
    match (start, end) {
        (Some(s), Some(e)) if s < e => response[s..e].to_owned(),
        _ => panic!("RunInstances in moto failed: {response:.400}"),
    }
}

/// moto's `imagePushedAt` has one-second resolution: space pushes that must be ordered.
fn tick() {
    std::thread::sleep(std::time::Duration::from_millis(1100));
}

fn prune(moto: &Moto, args: &[&str]) -> Output {
    prune_env(&moto.env(), args)
}

fn prune_env(env: &[(String, String)], args: &[&str]) -> Output {
    let mut all = vec!["--log-level", "debug", "--log-format", "json", "ecr-prune"];
    all.extend_from_slice(args);
    run_shipshape(all, env)
}

/// operation → number of HTTP attempts the binary logged.
fn calls(out: &Output) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for line in out.stderr.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        // The JSON log omits targets; the CallLogger's events are the "aws call" ones.
        if v["message"] == "aws call" && v["operation"].is_string() {
            let op = v["operation"].as_str().unwrap_or("?").to_owned();
            *map.entry(op).or_default() += 1;
        }
    }
    map
}

fn count(map: &BTreeMap<String, usize>, op: &str) -> usize {
    map.get(op).copied().unwrap_or(0)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            out.stdout, out.stderr
        )
    })
}

fn repo_json<'a>(doc: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    doc["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == name))
        .unwrap_or_else(|| panic!("no repository {name} in {doc}"))
}

fn reason_of<'a>(repo: &'a serde_json::Value, digest: &str) -> &'a str {
    repo["units"]
        .as_array()
        .and_then(|u| u.iter().find(|u| u["digest"] == digest))
        .and_then(|u| u["reason"].as_str())
        .unwrap_or_else(|| panic!("no unit {digest} in {repo}"))
}

#[tokio::test]
async fn multi_arch_index_keeps_untagged_children_and_goes_index_first() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("multi").await;
    let loose = aws.image("multi", None, "loose").await;
    let old_children = vec![
        aws.image("multi", None, "old-amd64").await,
        aws.image("multi", None, "old-arm64").await,
    ];
    let old_index = aws.index("multi", Some("v1"), &old_children).await;
    tick();
    let children = vec![
        aws.image("multi", None, "amd64").await,
        aws.image("multi", None, "arm64").await,
        aws.image("multi", None, "attestation").await,
    ];
    let new_index = aws.index("multi", Some("v2"), &children).await;
    tick();

    let out = prune(
        &moto,
        &[
            "--keep-last",
            "1",
            "--expire-untagged-after",
            "1s",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected: Vec<String> = children.clone();
    expected.push(new_index.clone());
    expected.sort();
    assert_eq!(
        aws.digests("multi").await,
        expected,
        "kept index and its untagged children survive"
    );
    let doc = json(&out);
    let repo = repo_json(&doc, "multi");
    assert_eq!(repo["images_before"], 8);
    assert_eq!(repo["images_after"], 4);
    assert_eq!(reason_of(repo, &old_index), "rule 2");
    assert_eq!(reason_of(repo, &loose), "rule 1");
    let c = calls(&out);
    assert_eq!(count(&c, "DescribeRepositories"), 1);
    assert_eq!(count(&c, "DescribeImages"), 1);
    assert_eq!(
        count(&c, "BatchGetImage"),
        1,
        "both indexes in one call, nothing else read"
    );
    // Stage 0 (old index + loose image) then stage 1 (old children): two calls.
    assert_eq!(count(&c, "BatchDeleteImage"), 2);
}

#[tokio::test]
async fn signature_of_a_kept_image_survives() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("signed").await;
    let old = aws.image("signed", Some("v1"), "v1").await;
    let old_sig = aws
        .image(
            "signed",
            Some(&format!("{}.sig", old.replace(':', "-"))),
            "sig-v1",
        )
        .await;
    tick();
    let kept = aws.image("signed", Some("v2"), "v2").await;
    let kept_sig = aws
        .image(
            "signed",
            Some(&format!("{}.sig", kept.replace(':', "-"))),
            "sig-v2",
        )
        .await;
    let kept_att = aws
        .image(
            "signed",
            Some(&format!("{}.att", kept.replace(':', "-"))),
            "att-v2",
        )
        .await;
    tick();
    let out = prune(
        &moto,
        &[
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let mut expected = vec![kept.clone(), kept_sig, kept_att];
    expected.sort();
    assert_eq!(aws.digests("signed").await, expected);
    let doc = json(&out);
    let repo = repo_json(&doc, "signed");
    assert_eq!(
        repo["units"].as_array().map(Vec::len),
        Some(2),
        "signatures are part of their image's unit"
    );
    assert_eq!(reason_of(repo, &old), "rule 1");
    assert!(!aws.digests("signed").await.contains(&old_sig));
}

#[tokio::test]
async fn images_used_by_ecs_tasks_and_services_survive_keep_last_1() {
    let moto = Moto::start();
    moto.set_ecs_manual_transitions();
    let proxy = TaskShapeProxy::start(&moto);
    let sdk = moto
        .sdk_config()
        .await
        .into_builder()
        .endpoint_url(proxy.endpoint())
        .build();
    let aws = Aws {
        ecr: aws_sdk_ecr::Client::new(&sdk),
        ecs: aws_sdk_ecs::Client::new(&sdk),
    };
    let uri = aws.repo("web").await;
    let mut digests = Vec::new();
    for i in 0..5 {
        digests.push(
            aws.image("web", Some(&format!("v{i}")), &format!("web-{i}"))
                .await,
        );
        tick();
    }
    aws.ecs
        .create_cluster()
        .cluster_name("prod")
        .send()
        .await
        .expect("CreateCluster");
    let instance = ec2_run_instance(&moto);
    let doc = serde_json::json!({"instanceId": instance, "region": "us-east-1"}).to_string();
    aws.ecs
        .register_container_instance()
        .cluster("prod")
        .instance_identity_document(doc)
        .send()
        .await
        .expect("RegisterContainerInstance");
    let register = |family: &'static str, image: String| {
        let ecs = aws.ecs.clone();
        async move {
            ecs.register_task_definition()
                .family(family)
                // memoryReservation, not cpu/memory: moto echoes those as numbers in
                // the task's containers, which the SDK (rightly) refuses as strings.
                .container_definitions(
                    aws_sdk_ecs::types::ContainerDefinition::builder()
                        .name("app")
                        .image(image)
                        .memory_reservation(128)
                        .build(),
                )
                .send()
                .await
                .expect("RegisterTaskDefinition")
                .task_definition()
                .and_then(|t| t.task_definition_arn())
                .expect("arn")
                .to_owned()
        }
    };
    let by_tag = register("by-tag", format!("{uri}:v1")).await;
    let by_digest = register("by-digest", format!("{uri}@{}", digests[2])).await;
    let service_td = register("svc", format!("{uri}:v3")).await;
    for td in [&by_tag, &by_digest] {
        let out = aws
            .ecs
            .run_task()
            .cluster("prod")
            .task_definition(td)
            .launch_type(aws_sdk_ecs::types::LaunchType::Ec2)
            .send()
            .await
            .expect("RunTask");
        assert_eq!(out.tasks().len(), 1, "RunTask placed no task: {out:?}");
    }
    aws.ecs
        .create_service()
        .cluster("prod")
        .service_name("web")
        .task_definition(&service_td)
        .desired_count(0)
        .send()
        .await
        .expect("CreateService");

    let out = prune_env(
        &proxy.env(&moto),
        &[
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let left = aws.digests("web").await;
    for (i, d) in digests.iter().enumerate() {
        assert_eq!(
            left.contains(d),
            i != 0,
            "v{i} ({d}) survival; left: {left:?}"
        );
    }
    let doc = json(&out);
    let repo = repo_json(&doc, "web");
    assert!(
        reason_of(repo, &digests[1]).starts_with("in use by ECS"),
        "{repo}"
    );
    assert!(
        reason_of(repo, &digests[2]).starts_with("in use by ECS"),
        "{repo}"
    );
    assert!(
        reason_of(repo, &digests[3]).starts_with("in use by ECS"),
        "{repo}"
    );
    let c = calls(&out);
    assert_eq!(count(&c, "ListClusters"), 1);
    assert_eq!(count(&c, "ListTasks"), 1);
    assert_eq!(count(&c, "DescribeTasks"), 1);
    assert_eq!(count(&c, "ListServices"), 1);
    assert_eq!(count(&c, "DescribeServices"), 1);
    assert_eq!(
        count(&c, "DescribeTaskDefinition"),
        1,
        "only the service's task definition"
    );
    assert_eq!(count(&c, "BatchDeleteImage"), 1);
}

#[tokio::test]
async fn safety_cap_refuses_one_repository_and_the_others_go_ahead() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("big").await;
    aws.repo("small").await;
    for i in 0..10 {
        aws.image("big", Some(&format!("b{i}")), &format!("big-{i}"))
            .await;
    }
    for i in 0..3 {
        aws.image("small", Some(&format!("s{i}")), &format!("small-{i}"))
            .await;
    }
    let out = prune(&moto, &["--keep-last", "2", "--min-age", "0s", "--apply"]);
    assert_eq!(
        out.code, 1,
        "refusal is a failure; stdout: {}\nstderr: {}",
        out.stdout, out.stderr
    );
    assert!(
        out.stdout
            .contains("refused: the plan deletes 8 of 10 images"),
        "{}",
        out.stdout
    );
    assert_eq!(
        aws.digests("big").await.len(),
        10,
        "nothing deleted in the refused repository"
    );
    assert_eq!(
        aws.digests("small").await.len(),
        2,
        "the other repository was pruned"
    );
    assert_eq!(count(&calls(&out), "BatchDeleteImage"), 1);
}

#[tokio::test]
async fn two_hundred_fifty_deletions_take_three_calls() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("ci").await;
    let seeds: Vec<String> = (0..251).map(|i| format!("ci-{i}")).collect();
    futures_util::future::join_all(seeds.iter().map(|s| aws.image("ci", Some(s), s))).await;
    let out = prune(
        &moto,
        &["--keep-last", "1", "--min-age", "0s", "--force", "--apply"],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(aws.digests("ci").await.len(), 1);
    let c = calls(&out);
    assert_eq!(count(&c, "BatchDeleteImage"), 3);
    assert_eq!(count(&c, "DescribeImages"), 1);
    assert_eq!(count(&c, "BatchGetImage"), 0, "no index, no manifest read");
}

#[tokio::test]
async fn plan_mode_deletes_nothing_and_prints_spec_json() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("plan").await;
    for i in 0..4 {
        aws.image("plan", Some(&format!("p{i}")), &format!("plan-{i}"))
            .await;
    }
    let out = prune(
        &moto,
        &[
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(aws.digests("plan").await.len(), 4);
    let doc = json(&out);
    assert_eq!(doc["apply"], false);
    let repo = repo_json(&doc, "plan");
    assert_eq!(
        (
            repo["images_before"].as_u64(),
            repo["images_after"].as_u64()
        ),
        (Some(4), Some(1))
    );
    assert!(repo["error"].is_null());
    for unit in repo["units"].as_array().expect("units") {
        for key in ["digest", "tags", "pushed_at", "action", "reason"] {
            assert!(!unit[key].is_null(), "{key} missing in {unit}");
        }
    }
    assert_eq!(count(&calls(&out), "BatchDeleteImage"), 0);
}

#[tokio::test]
async fn quota_mode_auto_reads_service_quotas_and_count_mode_trims() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("quota").await;
    for i in 0..5 {
        aws.image("quota", Some(&format!("q{i}")), &format!("quota-{i}"))
            .await;
        if i < 4 {
            tick();
        }
    }
    let out = prune(
        &moto,
        &["--max-images", "auto", "--min-age", "0s", "--apply"],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(count(&calls(&out), "GetServiceQuota"), 1);
    assert_eq!(
        aws.digests("quota").await.len(),
        5,
        "far under 90% of 10,000"
    );
    let out = prune(
        &moto,
        &[
            "--max-images",
            "3",
            "--min-age",
            "0s",
            "--apply",
            "--output",
            "json",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(aws.digests("quota").await.len(), 3);
    let doc = json(&out);
    let reasons: Vec<&str> = repo_json(&doc, "quota")["units"]
        .as_array()
        .expect("units")
        .iter()
        .filter(|u| u["action"] == "expire")
        .filter_map(|u| u["reason"].as_str())
        .collect();
    assert_eq!(reasons, vec!["quota watermark 3 images"; 2]);
}

#[tokio::test]
async fn invalid_policy_is_rejected_naming_rule_and_field() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("safe").await;
    aws.image("safe", Some("a"), "a").await;
    aws.image("safe", Some("b"), "b").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("policy.json");
    std::fs::write(
        &path,
        r#"{"rules":[
          {"rulePriority":1,"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}},
          {"rulePriority":2,"selection":{"tagStatus":"tagged","tagPrefixList":["v"],"countType":"imageCountMoreThan","countNumber":1},"action":{"type":"expire"}}]}"#,
    )
    .expect("write policy");
    let out = prune(
        &moto,
        &[
            "--policy",
            path.to_str().expect("utf8"),
            "--apply",
            "--force",
        ],
    );
    assert_eq!(out.code, 2, "stderr: {}", out.stderr);
    assert!(
        out.stderr.contains("rulePriority 1") && out.stderr.contains("highest rulePriority"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"));
    assert_eq!(aws.digests("safe").await.len(), 2);
    assert!(calls(&out).is_empty(), "no AWS call before validation");

    std::fs::write(&path, r#"{"rules":[{"rulePriority":1,"selection":{"tagStatus":"untagged","countType":"sinceImagePushed","countNumber":1},"action":{"type":"expire"}}]}"#)
        .expect("write policy");
    let out = prune(&moto, &["--policy", path.to_str().expect("utf8")]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("selection.countUnit is required"),
        "{}",
        out.stderr
    );

    let out = prune(&moto, &["--shard", "2/2"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("shard"), "{}", out.stderr);
}

#[tokio::test]
async fn shards_split_repositories_between_runs() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    for i in 0..8 {
        aws.repo(&format!("svc-{i}")).await;
    }
    let mut seen = Vec::new();
    for shard in ["0/3", "1/3", "2/3"] {
        let out = prune(&moto, &["--shard", shard, "--output", "json"]);
        assert_eq!(out.code, 0, "stderr: {}", out.stderr);
        for r in json(&out)["repositories"].as_array().expect("repositories") {
            seen.push(r["name"].as_str().expect("name").to_owned());
        }
    }
    seen.sort();
    let expected: Vec<String> = (0..8).map(|i| format!("svc-{i}")).collect();
    assert_eq!(seen, expected, "every repository in exactly one shard");
}

#[tokio::test]
async fn throttled_deletes_are_retried_with_backoff() {
    let moto = Moto::start();
    let aws = aws(&moto).await;
    aws.repo("busy").await;
    let seeds: Vec<String> = (0..151).map(|i| format!("busy-{i}")).collect();
    futures_util::future::join_all(seeds.iter().map(|s| aws.image("busy", Some(s), s))).await;
    let proxy = TaskShapeProxy::start_throttling(&moto, "BatchDeleteImage", 2);
    let out = prune_env(
        &proxy.env(&moto),
        &[
            "--keep-last",
            "1",
            "--min-age",
            "0s",
            "--force",
            "--apply",
            "--concurrency",
            "1",
        ],
    );
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    assert_eq!(
        aws.digests("busy").await.len(),
        1,
        "every deletion went through"
    );
    // Two batches (100 + 50), the first throttled twice: four attempts.
    assert_eq!(count(&calls(&out), "BatchDeleteImage"), 4);
}
