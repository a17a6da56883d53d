//! Benchmark of `shipshape ecr-prune` through the strict proxy in front of moto (real page
//! sizes, index-first deletion): 20 repositories × 1,000 images plus one repository ×
//! 10,000 images, every release an image index with two children and a cosign signature
//! (4 manifests), and ECS with 200 running tasks and 30 services using some of them, in
//! two accounts: half the tasks and half the services in the registry's account, the
//! others in a workload account (moto switches accounts on AssumeRole) that the binary
//! reads through `--usage-role`. Seeding (straight to moto) is timed apart and not counted. Then,
//! timed: a plan run and an apply run of the binary (calls per operation from its
//! `shipshape::aws_call` lines, beside the minimum real paging allows), and the
//! reference: a minimal boto3 DescribeImages paginator (PageSize 1000) over the same
//! repositories, through the same proxy, in the same run. The ratio printed is plan wall
//! time / boto3 wall time.
//!
//! The profile: per operation, the requests the proxy passed to moto during each run
//! and the wall time of those round trips (summed; overlapping ones each count whole).
//! moto is one Python process: requests that overlap share its one interpreter, so
//! concurrency hides our round trips' latency but not moto's own work, and its
//! BatchGetImage scans the whole repository for every id asked (quadratic in this
//! emulator, not in ECR).
//!
//! A second reference times boto3 making, one call after another, the image reads any
//! planner needs (those paginators, then BatchGetImage of every index for its children):
//! the plan against it says how much of the plan is the emulator answering those reads.
//!
//! `BENCH_ECR_BASELINE=PATH` (another `shipshape` binary, e.g. main's) adds a plan run of
//! that binary just before ours, timed the same way: before/after on the same data.
//!
//! Sizes: `BENCH_ECR_REPOS`, `BENCH_ECR_IMAGES`, `BENCH_ECR_BIG_IMAGES`, `BENCH_ECR_TASKS`,
//! `BENCH_ECR_SERVICES` (defaults: the sizes above). boto3 comes from the test venv
//! (next to `moto_server`), or `BENCH_ECR_PYTHON`.
//!
//! Run: `cargo build --release -p shipshape && cargo run --release -p shipshape-tests --bin bench-ecr`
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use shipshape_tests::aws::Aws;
use shipshape_tests::bin::{run as run_command, run_shipshape, Output};
use shipshape_tests::moto::{moto_server_path, Moto};
use shipshape_tests::proxy::AwsProxy;

/// `--keep-last`: units kept per repository.
const KEEP_LAST: &str = "100";
/// Manifests per release: index, two children, a signature.
const PER_RELEASE: usize = 4;
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// The workload account (moto switches to it on AssumeRole of a role in it).
const WORKLOAD: &str = "210987654321";

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Sizes {
    repos: usize,
    images: usize,
    big_images: usize,
    tasks: usize,
    services: usize,
}

impl Sizes {
    fn from_env() -> Self {
        Self {
            repos: size("BENCH_ECR_REPOS", 20),
            images: size("BENCH_ECR_IMAGES", 1_000),
            big_images: size("BENCH_ECR_BIG_IMAGES", 10_000),
            tasks: size("BENCH_ECR_TASKS", 200),
            services: size("BENCH_ECR_SERVICES", 30),
        }
    }

    /// (repository, images) of every repository.
    fn repositories(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = (0..self.repos)
            .map(|i| (format!("service-{i:02}"), self.images))
            .collect();
        out.push(("monorepo".to_owned(), self.big_images));
        out
    }
}

fn sha(text: &str) -> String {
    format!("sha256:{:x}", Sha256::digest(text.as_bytes()))
}

fn manifest(seed: &str) -> String {
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&format!("c-{seed}")), "size": 1000},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&format!("l-{seed}")), "size": 10_000}],
    })
    .to_string()
}

/// One release's pushes, in push order: two children, the index (tagged), its signature.
fn release(repo: &str, i: usize) -> Vec<(String, Option<String>, &'static str)> {
    let children: Vec<String> = ["amd64", "arm64"]
        .iter()
        .map(|arch| manifest(&format!("{repo}/{i}/{arch}")))
        .collect();
    let entries: Vec<serde_json::Value> = children
        .iter()
        .map(|m| serde_json::json!({"mediaType": OCI_MANIFEST, "digest": sha(m), "size": m.len()}))
        .collect();
    let index =
        serde_json::json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries})
            .to_string();
    let sig_tag = format!("{}.sig", sha(&index).replace(':', "-"));
    let sig = manifest(&format!("{repo}/{i}/sig"));
    let mut out: Vec<(String, Option<String>, &'static str)> = children
        .into_iter()
        .map(|m| (m, None, OCI_MANIFEST))
        .collect();
    out.push((index, Some(format!("r{i:05}")), OCI_INDEX));
    out.push((sig, Some(sig_tag), OCI_MANIFEST));
    out
}

async fn seed_images(aws: &Aws, sizes: &Sizes) -> usize {
    for (name, _) in sizes.repositories() {
        aws.repo(&name).await;
    }
    // Releases in order per repository (children before their index); repositories and
    // release groups concurrently.
    let work: Vec<(String, usize)> = sizes
        .repositories()
        .into_iter()
        .flat_map(|(name, n)| (0..n / PER_RELEASE).map(move |i| (name.clone(), i)))
        .collect();
    stream::iter(work)
        .map(|(repo, i)| async move {
            for (m, tag, media) in release(&repo, i) {
                aws.put(&repo, tag.as_deref(), &m, media).await;
            }
            PER_RELEASE
        })
        .buffer_unordered(16)
        .fold(0, |acc, n| async move { acc + n })
        .await
}

/// What one account runs: `tasks` running tasks of families job-K (10 tasks each),
/// each on an old release of a repository (which keep-last alone would expire), and
/// `services` services (desired count 0) on other old releases. `first` numbers the
/// families and services across accounts, so each account's use other releases.
#[derive(Debug, Clone, Copy)]
struct Workload {
    tasks: usize,
    services: usize,
    first_family: usize,
    first_service: usize,
}

impl Workload {
    /// The two accounts' shares: the first half of the tasks and of the services in the
    /// registry's account, the other halves in the workload account (its container
    /// instances run with the assumed role's key, so moto files them under that account).
    fn split(sizes: &Sizes) -> [Workload; 2] {
        let own_tasks = sizes.tasks / 2;
        let own_services = sizes.services / 2;
        [
            Workload {
                tasks: own_tasks,
                services: own_services,
                first_family: 0,
                first_service: 0,
            },
            Workload {
                tasks: sizes.tasks - own_tasks,
                services: sizes.services - own_services,
                first_family: own_tasks.div_ceil(10),
                first_service: own_services,
            },
        ]
    }

    /// Task definition families this account uses (each with one revision).
    fn families(&self) -> usize {
        self.tasks.div_ceil(10) + self.services
    }
}

/// 2 container instances in cluster `prod` of the account `aws` talks to, and what
/// `work` runs there.
async fn seed_ecs(moto: &Moto, aws: &Aws, sizes: &Sizes, work: Workload, uri: &str) {
    if work.tasks > 0 {
        aws.cluster_with_instances(moto, "prod", 2).await;
    } else {
        aws.ecs
            .create_cluster()
            .cluster_name("prod")
            .send()
            .await
            .expect("CreateCluster");
    }
    let repos = sizes.repos.max(1);
    let mut started = 0;
    let mut k = work.first_family;
    while started < work.tasks {
        let count = (work.tasks - started).min(10);
        let image = format!("{uri}/service-{:02}:r{:05}", k % repos, 10 + k / repos);
        let td = aws.task_definition(&format!("job-{k}"), &image).await;
        aws.run_tasks("prod", &td, count).await;
        started += count;
        k += 1;
    }
    for j in work.first_service..work.first_service + work.services {
        let image = format!("{uri}/service-{:02}:r{:05}", j % repos, 20 + j / repos);
        let td = aws.task_definition(&format!("svc-{j}"), &image).await;
        aws.ecs
            .create_service()
            .cluster("prod")
            .service_name(format!("svc-{j}"))
            .task_definition(td)
            .desired_count(0)
            .send()
            .await
            .expect("CreateService");
    }
}

/// The workload account's role, and clients with its credentials (moto's AssumeRole
/// answers keys that moto maps to the role's account).
fn workload_account(moto: &Moto, direct: &Aws) -> (String, Aws) {
    let role = format!("arn:aws:iam::{WORKLOAD}:role/shipshape-usage");
    let creds = moto.assume_role(&role);
    (role, direct.with_credentials(&creds))
}

/// Requests moto served per operation between two `AwsProxy::upstream` readings.
fn upstream_delta(
    before: &BTreeMap<String, (usize, Duration)>,
    after: &BTreeMap<String, (usize, Duration)>,
) -> BTreeMap<String, (usize, Duration)> {
    after
        .iter()
        .map(|(op, (n, t))| {
            let (n0, t0) = before.get(op).copied().unwrap_or_default();
            (op.clone(), (n - n0, t.saturating_sub(t0)))
        })
        .filter(|(_, (n, _))| *n > 0)
        .collect()
}

/// The profile of one run: moto's round trips per operation, slowest first.
fn print_profile(label: &str, wall: Duration, moto: &BTreeMap<String, (usize, Duration)>) {
    let mut rows: Vec<(&String, &(usize, Duration))> = moto.iter().collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.1 .1));
    let total: Duration = rows.iter().map(|(_, (_, t))| *t).sum();
    println!(
        "profile {label}: {:.2}s wall; round trips to moto {:.2}s summed",
        wall.as_secs_f64(),
        total.as_secs_f64()
    );
    for (op, (n, t)) in rows {
        let op = if op.is_empty() { "(REST: Lambda)" } else { op };
        println!(
            "  {op:<34} {n:>5} to moto {:>8.3}s  {:>7.1} ms each",
            t.as_secs_f64(),
            t.as_secs_f64() * 1000.0 / *n as f64
        );
    }
}

fn calls(out: &Output) -> BTreeMap<String, usize> {
    let mut map = BTreeMap::new();
    for line in out.stderr.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["message"] == "aws call" {
            if let Some(op) = v["operation"].as_str() {
                *map.entry(op.to_owned()).or_default() += 1;
            }
        }
    }
    map
}

fn run(env: &[(String, String)], role: &str, apply: bool) -> (Duration, Output) {
    run_binary(None, env, role, apply)
}

/// [`run`] with `binary` (None: the one built beside this benchmark).
fn run_binary(
    binary: Option<&std::path::Path>,
    env: &[(String, String)],
    role: &str,
    apply: bool,
) -> (Duration, Output) {
    let mut args = vec![
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "ecr-prune",
        "--usage-role",
        role,
        "--keep-last",
        KEEP_LAST,
        "--min-age",
        "0s",
        "--force",
        "--concurrency",
        "8",
        "--output",
        "json",
    ];
    if apply {
        args.push("--apply");
    }
    let started = Instant::now();
    let out = match binary {
        None => run_shipshape(args, env),
        Some(path) => {
            let mut cmd = std::process::Command::new(path);
            cmd.env_clear().args(args).envs(env.iter().cloned());
            run_command(&mut cmd)
        }
    };
    let elapsed = started.elapsed();
    if out.code != 0 {
        panic!(
            "ecr-prune exited {}: {}",
            out.code,
            out.stderr
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    (elapsed, out)
}

/// The reference: boto3's DescribeRepositories and DescribeImages paginators at 1000 per
/// page, images counted. Wall time of the whole process, as for the binary.
fn boto3(env: &[(String, String)]) -> (Duration, usize) {
    let script = r#"
import boto3
ecr = boto3.client("ecr")
n = 0
for page in ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 1000}):
    for repo in page["repositories"]:
        for images in ecr.get_paginator("describe_images").paginate(
                repositoryName=repo["repositoryName"], PaginationConfig={"PageSize": 1000}):
            n += len(images["imageDetails"])
print(n)
"#;
    let (elapsed, out) = python(env, script);
    (elapsed, out.parse().expect("image count"))
}

/// A second reference: boto3 making the image reads the plan cannot do without, one
/// after another: the same paginators, then BatchGetImage of every index, 100 digests a
/// call (the API's limit), for its child manifests. No ECS, no usage sources. It shows how
/// much of the plan's time is the emulator answering reads any tool needs; in moto,
/// BatchGetImage scans the whole repository for each digest asked.
fn boto3_image_reads(env: &[(String, String)]) -> (Duration, usize) {
    let script = r#"
import boto3
ecr = boto3.client("ecr")
INDEX = ["application/vnd.oci.image.index.v1+json",
         "application/vnd.docker.distribution.manifest.list.v2+json"]
got = 0
for page in ecr.get_paginator("describe_repositories").paginate(PaginationConfig={"PageSize": 1000}):
    for repo in page["repositories"]:
        name = repo["repositoryName"]
        indexes = []
        for images in ecr.get_paginator("describe_images").paginate(
                repositoryName=name, PaginationConfig={"PageSize": 1000}):
            indexes += [d["imageDigest"] for d in images["imageDetails"]
                        if d.get("imageManifestMediaType") in INDEX]
        for i in range(0, len(indexes), 100):
            answer = ecr.batch_get_image(
                repositoryName=name, acceptedMediaTypes=INDEX,
                imageIds=[{"imageDigest": d} for d in indexes[i:i + 100]])
            got += len(answer["images"])
print(got)
"#;
    let (elapsed, out) = python(env, script);
    (elapsed, out.parse().expect("index count"))
}

/// Run `script` with the test venv's python (or `BENCH_ECR_PYTHON`): wall time of the
/// whole process, as for the binary, and its trimmed stdout.
fn python(env: &[(String, String)], script: &str) -> (Duration, String) {
    let python = std::env::var("BENCH_ECR_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| moto_server_path().with_file_name("python"));
    let started = Instant::now();
    let out = std::process::Command::new(&python)
        .arg("-c")
        .arg(script)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let elapsed = started.elapsed();
    assert!(
        out.status.success(),
        "boto3 reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        elapsed,
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
    )
}

fn expired_units(doc: &serde_json::Value, repo: &str) -> usize {
    doc["repositories"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == repo))
        .and_then(|r| r["units"].as_array())
        .map_or(0, |u| u.iter().filter(|u| u["action"] == "expire").count())
}

#[tokio::main]
async fn main() {
    let sizes = Sizes::from_env();
    let moto = Moto::start();
    let proxy = AwsProxy::start(&moto);
    let env = proxy.env(&moto);
    let direct = Aws::new(&moto).await;
    let started = Instant::now();
    let uri = direct.repo("probe").await;
    let registry = uri
        .rsplit_once('/')
        .map_or(uri.clone(), |(r, _)| r.to_owned());
    direct
        .ecr
        .delete_repository()
        .repository_name("probe")
        .send()
        .await
        .expect("DeleteRepository");
    let images = seed_images(&direct, &sizes).await;
    let accounts = Workload::split(&sizes);
    let (role, workload) = workload_account(&moto, &direct);
    seed_ecs(&moto, &direct, &sizes, accounts[0], &registry).await;
    seed_ecs(&moto, &workload, &sizes, accounts[1], &registry).await;
    let repositories = sizes.repositories();
    println!(
        "seeded {images} images ({} per release: index, 2 children, signature) in {} repositories; tasks/services {}/{} in the registry's account, {}/{} in account {WORKLOAD} (read through --usage-role); in {:.1}s (straight to moto, not counted)",
        PER_RELEASE,
        repositories.len(),
        accounts[0].tasks,
        accounts[0].services,
        accounts[1].tasks,
        accounts[1].services,
        started.elapsed().as_secs_f64()
    );

    let at_start = proxy.upstream();
    let (boto_time, boto_images) = boto3(&env);
    let after_boto = proxy.upstream();
    let (reads_time, reads_indexes) = boto3_image_reads(&env);
    let after_reads = proxy.upstream();
    // Plans read only: a baseline binary's plan sees the same repositories as ours.
    let baseline = std::env::var("BENCH_ECR_BASELINE").ok().map(|path| {
        let (time, _) = run_binary(Some(std::path::Path::new(&path)), &env, &role, false);
        (path, time, upstream_delta(&after_reads, &proxy.upstream()))
    });
    let after_baseline = proxy.upstream();
    let (plan_time, plan_out) = run(&env, &role, false);
    let after_plan = proxy.upstream();
    let doc: serde_json::Value = serde_json::from_str(&plan_out.stdout).expect("plan JSON");
    let planned: usize = doc["repositories"]
        .as_array()
        .expect("repositories")
        .iter()
        .map(|r| {
            r["images_before"].as_u64().unwrap_or(0) as usize
                - r["images_after"].as_u64().unwrap_or(0) as usize
        })
        .sum();
    let (apply_time, apply_out) = run(&env, &role, true);
    let after_apply = proxy.upstream();
    assert_eq!(boto_images, images, "boto3 saw every image");

    // The minimum each operation allows with real paging (DescribeImages at 1000 per page,
    // BatchGetImage/BatchDeleteImage 100 ids, ListTasks 100, DescribeTasks 100 ids,
    // ListServices 100, DescribeServices 10 ids). BatchDeleteImage: per repository, the
    // expired indexes and signatures (stage 0), then their children (stage 1).
    // ECS per account, summed over both (and the one AssumeRole of the workload's role).
    let per_account = |f: &dyn Fn(&Workload) -> usize| accounts.iter().map(f).sum::<usize>();
    let families = per_account(&|w| w.families());
    let list_tasks = per_account(&|w| w.tasks.div_ceil(100).max(1) + 1);
    let describe_tasks = per_account(&|w| w.tasks.div_ceil(100));
    let list_services = per_account(&|w| w.services.div_ceil(100).max(1));
    let describe_services = per_account(&|w| w.services.div_ceil(10));
    let deletes: usize = repositories
        .iter()
        .map(|(name, _)| 2 * expired_units(&doc, name))
        .map(|stage| 2 * stage.div_ceil(100))
        .sum();
    let after_images: Vec<usize> = repositories
        .iter()
        .map(|(name, n)| n - PER_RELEASE * expired_units(&doc, name))
        .collect();
    let describe_images: usize = repositories.iter().map(|(_, n)| n.div_ceil(1000)).sum();
    let validation_reads: usize = after_images.iter().map(|n| n.div_ceil(1000)).sum();
    let index_reads: usize = repositories
        .iter()
        .map(|(_, n)| (n / PER_RELEASE).div_ceil(100))
        .sum();
    let minimum: BTreeMap<&str, (usize, usize)> = [
        ("DescribeRepositories", (1, 1)),
        (
            "DescribeImages",
            (describe_images, describe_images + validation_reads),
        ),
        ("BatchGetImage", (index_reads, index_reads)),
        ("BatchDeleteImage", (0, deletes)),
        ("AssumeRole", (1, 1)),
        ("ListClusters", (2, 2)),
        ("ListTasks", (list_tasks, list_tasks)),
        ("DescribeTasks", (describe_tasks, describe_tasks)),
        ("ListServices", (list_services, list_services)),
        ("DescribeServices", (describe_services, describe_services)),
        ("ListServiceDeployments", (sizes.services, sizes.services)),
        ("ListTaskDefinitions", (families, families)),
        ("DescribeTaskDefinition", (families, families)),
    ]
    .into_iter()
    .collect();
    let plan_calls = calls(&plan_out);
    let apply_calls = calls(&apply_out);
    println!(
        "plan:  {:.2}s wall, {planned} deletions planned",
        plan_time.as_secs_f64()
    );
    println!(
        "apply: {:.2}s wall (reads, plans, deletes index-first, validates)",
        apply_time.as_secs_f64()
    );
    println!(
        "boto3 DescribeImages paginator (PageSize 1000), same repositories, same proxy: {:.2}s wall, {boto_images} images",
        boto_time.as_secs_f64()
    );
    println!(
        "{:<26} {:>6} {:>9} {:>6} {:>9}",
        "operation", "plan", "min plan", "apply", "min apply"
    );
    let mut ops: Vec<&str> = minimum.keys().copied().collect();
    for op in plan_calls.keys().chain(apply_calls.keys()) {
        if !ops.contains(&op.as_str()) {
            ops.push(op.as_str());
        }
    }
    let mut above = Vec::new();
    for op in ops {
        let p = plan_calls.get(op).copied().unwrap_or(0);
        let a = apply_calls.get(op).copied().unwrap_or(0);
        let m = minimum.get(op).copied();
        if m.is_some_and(|(mp, ma)| p != mp || a != ma) {
            above.push(op);
        }
        let show = |n: Option<usize>| n.map_or("-".to_owned(), |n| n.to_string());
        println!(
            "{op:<26} {p:>6} {:>9} {a:>6} {:>9}",
            show(m.map(|m| m.0)),
            show(m.map(|m| m.1))
        );
    }
    let mut left = 0;
    for (name, _) in &repositories {
        left += direct.digests(name).await.len();
    }
    println!(
        "images left after apply: {left} (expected {})",
        after_images.iter().sum::<usize>()
    );
    println!(
        "calls: {}",
        if above.is_empty() {
            "every operation at its minimum".to_owned()
        } else {
            format!("off the minimum: {above:?}")
        }
    );
    println!(
        "ratio plan / boto3 paginator: {:.2}x (goal <= 1.3x)",
        plan_time.as_secs_f64() / boto_time.as_secs_f64()
    );
    println!(
        "boto3 image reads (the paginators, then BatchGetImage of all {reads_indexes} indexes, one call after another): {:.2}s wall; ratio plan / those reads: {:.2}x",
        reads_time.as_secs_f64(),
        plan_time.as_secs_f64() / reads_time.as_secs_f64()
    );
    if let Some((path, time, moto)) = &baseline {
        println!(
            "baseline {path}: plan {:.2}s wall; this build's plan / baseline's: {:.2}x",
            time.as_secs_f64(),
            plan_time.as_secs_f64() / time.as_secs_f64()
        );
        print_profile("baseline plan", *time, moto);
    }
    print_profile(
        "boto3 paginator",
        boto_time,
        &upstream_delta(&at_start, &after_boto),
    );
    print_profile(
        "boto3 image reads",
        reads_time,
        &upstream_delta(&after_boto, &after_reads),
    );
    print_profile(
        "plan",
        plan_time,
        &upstream_delta(&after_baseline, &after_plan),
    );
    print_profile(
        "apply",
        apply_time,
        &upstream_delta(&after_plan, &after_apply),
    );
}
