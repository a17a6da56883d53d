//! Seeds moto through the AWS SDK, for every area that needs AWS state before it runs the
//! binary: secrets and S3 objects (bootstrap, user data, the daemon's auth refresh), ECR
//! repositories and images and an ECS client (ecr-prune). Also the one EC2 call ECS needs,
//! made as a raw query request so this crate does not carry the large EC2 SDK.

use sha2::{Digest, Sha256};

use crate::moto::Moto;

/// Media type of a single-platform OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Media type of a multi-platform OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// `sha256:<hex>` of `bytes`, the digest ECR gives a manifest.
pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A unique single-platform OCI manifest: config and layer digests derived from `seed`.
pub fn image_manifest(seed: &str) -> String {
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

/// A registry-credentials secret value: `{"username": …, "password": …}`.
pub fn creds(user: &str, pass: &str) -> String {
    serde_json::json!({"username": user, "password": pass}).to_string()
}

/// SDK clients pointed at one moto (or at a proxy in front of it).
pub struct Aws {
    sdk: aws_config::SdkConfig,
    /// ECR in us-east-1.
    pub ecr: aws_sdk_ecr::Client,
    /// ECS in us-east-1.
    pub ecs: aws_sdk_ecs::Client,
    /// The credentials of [`Aws::with_credentials`] as AWS CLI environment variables
    /// (empty: moto's test credentials).
    cli_credentials: Vec<(String, String)>,
}

impl Aws {
    /// Clients talking to `moto` directly.
    pub async fn new(moto: &Moto) -> Aws {
        Aws::from_sdk(moto.sdk_config().await)
    }

    /// Clients with moto's credentials and region but another endpoint, e.g. a proxy.
    pub async fn with_endpoint(moto: &Moto, endpoint: &str) -> Aws {
        let sdk = moto
            .sdk_config()
            .await
            .into_builder()
            .endpoint_url(endpoint)
            .build();
        Aws::from_sdk(sdk)
    }

    /// These clients with other credentials (e.g. an assumed role's from
    /// [`Moto::assume_role`], which moto maps to the role's account), given as AWS CLI
    /// environment variables.
    pub fn with_credentials(&self, creds: &[(String, String)]) -> Aws {
        let var = |key: &str| {
            creds
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("{key} missing from the credentials"))
        };
        let sdk_creds = aws_sdk_ecr::config::Credentials::new(
            var("AWS_ACCESS_KEY_ID"),
            var("AWS_SECRET_ACCESS_KEY"),
            Some(var("AWS_SESSION_TOKEN")),
            None,
            "shipshape-tests-assumed",
        );
        let mut aws = Aws::from_sdk(
            self.sdk
                .to_builder()
                .credentials_provider(aws_sdk_ecr::config::SharedCredentialsProvider::new(
                    sdk_creds,
                ))
                .build(),
        );
        aws.cli_credentials = creds.to_vec();
        aws
    }

    fn from_sdk(sdk: aws_config::SdkConfig) -> Aws {
        Aws {
            ecr: aws_sdk_ecr::Client::new(&sdk),
            ecs: aws_sdk_ecs::Client::new(&sdk),
            sdk,
            cli_credentials: Vec::new(),
        }
    }

    /// The SDK configuration these clients use (for the product's own adapters).
    pub fn sdk(&self) -> &aws_config::SdkConfig {
        &self.sdk
    }

    /// Secrets Manager in `region`.
    pub fn secrets(&self, region: &str) -> aws_sdk_secretsmanager::Client {
        let conf = aws_sdk_secretsmanager::config::Builder::from(&self.sdk)
            .region(aws_config::Region::new(region.to_owned()))
            .build();
        aws_sdk_secretsmanager::Client::from_conf(conf)
    }

    /// Creates a secret; returns its ARN.
    pub async fn secret(&self, region: &str, name: &str, value: &str) -> String {
        let out = self
            .secrets(region)
            .create_secret()
            .name(name)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateSecret {name} against moto: {e}"));
        out.arn().expect("arn").to_owned()
    }

    /// Gives an existing secret a new value (a rotation).
    pub async fn rotate_secret(&self, region: &str, id: &str, value: &str) {
        self.secrets(region)
            .put_secret_value()
            .secret_id(id)
            .secret_string(value)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PutSecretValue {id} against moto: {e}"));
    }

    /// S3 with path-style addressing (moto serves one host).
    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk)
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    /// Puts `body` at `s3://bucket/key`, creating the bucket when needed.
    pub async fn object(&self, bucket: &str, key: &str, body: &str) {
        let s3 = self.s3();
        let _ = s3.create_bucket().bucket(bucket).send().await;
        s3.put_object()
            .bucket(bucket)
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .expect("PutObject");
    }

    /// Creates the ECR repository; returns its URI.
    pub async fn repo(&self, name: &str) -> String {
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
    pub async fn put(
        &self,
        repo: &str,
        tag: Option<&str>,
        manifest: &str,
        media_type: &str,
    ) -> String {
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

    /// Pushes a unique single-platform image; returns its digest.
    pub async fn image(&self, repo: &str, tag: Option<&str>, seed: &str) -> String {
        self.put(repo, tag, &image_manifest(seed), OCI_MANIFEST)
            .await
    }

    /// Pushes an OCI index over `children`; returns its digest.
    pub async fn index(&self, repo: &str, tag: Option<&str>, children: &[String]) -> String {
        let entries: Vec<serde_json::Value> = children
            .iter()
            .map(|d| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": d, "size": 500, "platform": {"architecture": "amd64", "os": "linux"}}))
            .collect();
        let manifest =
            serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
                .to_string();
        self.put(repo, tag, &manifest, OCI_INDEX).await
    }

    /// ECS cluster `name` with `instances` container instances (EC2 instances in moto),
    /// where RunTask can place tasks.
    pub async fn cluster_with_instances(&self, moto: &Moto, name: &str, instances: usize) {
        self.ecs
            .create_cluster()
            .cluster_name(name)
            .send()
            .await
            .expect("CreateCluster");
        for _ in 0..instances {
            // moto files an instance under the account of the key that runs it, and
            // RegisterContainerInstance looks it up in the caller's account.
            let instance = if self.cli_credentials.is_empty() {
                ec2_run_instance(moto)
            } else {
                moto.aws_cli_as(
                    &self.cli_credentials,
                    &[
                        "ec2",
                        "run-instances",
                        "--image-id",
                        "ami-12c6146b",
                        "--count",
                        "1",
                        "--instance-type",
                        "t3.micro",
                        "--query",
                        "Instances[0].InstanceId",
                    ],
                )
            };
            let doc =
                serde_json::json!({"instanceId": instance, "region": "us-east-1"}).to_string();
            self.ecs
                .register_container_instance()
                .cluster(name)
                .instance_identity_document(doc)
                .send()
                .await
                .expect("RegisterContainerInstance");
        }
    }

    /// Registers a task definition of one container running `image`; returns its ARN.
    /// `memoryReservation` (4 MiB, so many fit an instance), not cpu/memory: moto echoes
    /// those as numbers in the task's containers.
    pub async fn task_definition(&self, family: &str, image: &str) -> String {
        self.ecs
            .register_task_definition()
            .family(family)
            .container_definitions(
                aws_sdk_ecs::types::ContainerDefinition::builder()
                    .name("app")
                    .image(image)
                    .memory_reservation(4)
                    .build(),
            )
            .send()
            .await
            .expect("RegisterTaskDefinition")
            .task_definition()
            .and_then(|t| t.task_definition_arn())
            .expect("task definition ARN")
            .to_owned()
    }

    /// Runs `count` (at most 10, RunTask's limit) tasks of `task_definition` on EC2.
    pub async fn run_tasks(&self, cluster: &str, task_definition: &str, count: usize) {
        let out = self
            .ecs
            .run_task()
            .cluster(cluster)
            .task_definition(task_definition)
            .count(count as i32)
            .launch_type(aws_sdk_ecs::types::LaunchType::Ec2)
            .send()
            .await
            .expect("RunTask");
        assert_eq!(out.tasks().len(), count, "RunTask placed too few: {out:?}");
    }

    /// The digests in `repo`, sorted (every page: the strict proxy pages at 100).
    pub async fn digests(&self, repo: &str) -> Vec<String> {
        let mut v = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .ecr
                .describe_images()
                .repository_name(repo)
                .set_next_token(token.take())
                .send()
                .await
                .expect("DescribeImages");
            v.extend(
                out.image_details()
                    .iter()
                    .filter_map(|d| d.image_digest().map(str::to_owned)),
            );
            match out.next_token() {
                Some(t) => token = Some(t.to_owned()),
                None => break,
            }
        }
        v.sort();
        v
    }
}

/// One EC2 instance in moto (ECS RegisterContainerInstance wants a real instance id).
/// A raw query-protocol request: the tests crate does not carry the large EC2 SDK.
pub fn ec2_run_instance(moto: &Moto) -> String {
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
