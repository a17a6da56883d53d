//! Benchmark of `shipshape ecr-prune` against a real moto server: 20 repositories ×
//! 1,000 images plus one repository × 10,000 images, `--keep-last 100`. Seeds through the
//! SDK (timed apart, not counted), then times a plan run and an apply run of the release
//! binary and counts its API calls per operation (the `shipshape::aws_call` debug lines)
//! beside the minimum each operation allows.
//!
//! Run: `cargo build --release -p shipshape && cargo run --release -p shipshape-tests --bin bench-ecr`
// Fixtures, tests and benchmarks drive real engines and AWS in real time: the wall
// clock rule of clippy.toml is for the agent, not for them.
#![allow(clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use sha2::{Digest, Sha256};
use shipshape_tests::bin::{run_shipshape, Output};
use shipshape_tests::moto::Moto;

const SMALL_REPOS: usize = 20;
const SMALL_IMAGES: usize = 1_000;
const BIG_IMAGES: usize = 10_000;
const KEEP: usize = 100;

fn manifest(seed: &str) -> String {
    let digest = |s: String| format!("sha256:{:x}", Sha256::digest(s.as_bytes()));
    serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(format!("c-{seed}")), "size": 1000},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest(format!("l-{seed}")), "size": 10_000}],
    })
    .to_string()
}

async fn seed(moto: &Moto) -> (Duration, usize) {
    let started = Instant::now();
    let sdk = moto.sdk_config().await;
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let mut work: Vec<(String, String)> = Vec::new();
    let mut repos: Vec<(String, usize)> = (0..SMALL_REPOS)
        .map(|i| (format!("service-{i:02}"), SMALL_IMAGES))
        .collect();
    repos.push(("monorepo".to_owned(), BIG_IMAGES));
    for (name, n) in &repos {
        ecr.create_repository()
            .repository_name(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("CreateRepository {name}: {e:?}"));
        for i in 0..*n {
            work.push((name.clone(), format!("build-{i:05}")));
        }
    }
    let total = work.len();
    let done: usize = stream::iter(work)
        .map(|(repo, tag)| {
            let ecr = ecr.clone();
            async move {
                let m = manifest(&format!("{repo}/{tag}"));
                let digest = format!("sha256:{:x}", Sha256::digest(m.as_bytes()));
                ecr.put_image()
                    .repository_name(&repo)
                    .image_manifest(m)
                    .image_digest(digest)
                    .image_tag(&tag)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("PutImage {repo}:{tag}: {e:?}"));
                1usize
            }
        })
        .buffer_unordered(16)
        .fold(0, |acc, n| async move { acc + n })
        .await;
    assert_eq!(done, total);
    (started.elapsed(), total)
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

fn run(moto: &Moto, apply: bool) -> (Duration, Output) {
    let mut args = vec![
        "--log-level",
        "debug",
        "--log-format",
        "json",
        "ecr-prune",
        "--keep-last",
        "100",
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
    let out = run_shipshape(args, &moto.env());
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

fn ceil(a: usize, b: usize) -> usize {
    a.div_ceil(b)
}

#[tokio::main]
async fn main() {
    let moto = Moto::start();
    let (seed_time, images) = seed(&moto).await;
    println!(
        "seeded {images} images in {} repositories in {:.1}s (not counted)",
        SMALL_REPOS + 1,
        seed_time.as_secs_f64()
    );
    let (plan_time, plan_out) = run(&moto, false);
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
    let (apply_time, apply_out) = run(&moto, true);

    let deletions_per_repo: Vec<usize> = (0..SMALL_REPOS)
        .map(|_| SMALL_IMAGES - KEEP)
        .chain([BIG_IMAGES - KEEP])
        .collect();
    let sizes: Vec<usize> = (0..SMALL_REPOS)
        .map(|_| SMALL_IMAGES)
        .chain([BIG_IMAGES])
        .collect();
    let repos = sizes.len();
    // Real ECR pages DescribeImages at 1000; moto answers in one page whatever maxResults.
    let min_real: BTreeMap<&str, usize> = [
        ("DescribeRepositories", 1),
        ("DescribeImages", sizes.iter().map(|n| ceil(*n, 1000)).sum()),
        ("BatchGetImage", 0),
        (
            "BatchDeleteImage",
            deletions_per_repo.iter().map(|n| ceil(*n, 100)).sum(),
        ),
        ("ListClusters", 1),
    ]
    .into_iter()
    .collect();
    let min_moto: BTreeMap<&str, usize> = [
        ("DescribeRepositories", 1),
        ("DescribeImages", repos),
        ("BatchGetImage", 0),
        ("BatchDeleteImage", min_real["BatchDeleteImage"]),
        ("ListClusters", 1),
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
        "apply: {:.2}s wall (re-reads, re-plans, deletes)",
        apply_time.as_secs_f64()
    );
    println!(
        "{:<22} {:>10} {:>11} {:>16} {:>17}",
        "operation", "plan calls", "apply calls", "minimum (moto)", "minimum (ECR)"
    );
    let mut ops: Vec<&str> = min_real.keys().copied().collect();
    for op in plan_calls.keys().chain(apply_calls.keys()) {
        if !ops.contains(&op.as_str()) {
            ops.push(op.as_str());
        }
    }
    let mut at_minimum = true;
    for op in ops {
        let p = plan_calls.get(op).copied().unwrap_or(0);
        let a = apply_calls.get(op).copied().unwrap_or(0);
        let mm = min_moto.get(op).copied();
        let mr = min_real.get(op).copied();
        let plan_min = if op == "BatchDeleteImage" {
            Some(0)
        } else {
            mm
        };
        if plan_min.is_some_and(|m| p != m) || mm.is_some_and(|m| a != m) {
            at_minimum = false;
        }
        println!(
            "{op:<22} {p:>10} {a:>11} {:>16} {:>17}",
            mm.map_or("-".to_owned(), |m| m.to_string()),
            mr.map_or("-".to_owned(), |m| m.to_string())
        );
    }
    let left: usize = {
        let sdk = moto.sdk_config().await;
        let ecr = aws_sdk_ecr::Client::new(&sdk);
        let mut n = 0;
        for i in 0..SMALL_REPOS {
            n += ecr
                .describe_images()
                .repository_name(format!("service-{i:02}"))
                .send()
                .await
                .expect("DescribeImages")
                .image_details()
                .len();
        }
        n + ecr
            .describe_images()
            .repository_name("monorepo")
            .send()
            .await
            .expect("DescribeImages")
            .image_details()
            .len()
    };
    println!(
        "images left after apply: {left} (expected {})",
        repos * KEEP
    );
    println!(
        "ratio to the minimum (moto): {}",
        if at_minimum {
            "1.00 (every operation at its minimum)"
        } else {
            "above the minimum, see table"
        }
    );
}
