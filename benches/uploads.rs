//! Memory under concurrent uploads: `appealflow serve` (a separate process, the release
//! build) receives N concurrent uploads of a 10 MiB PDF, each to its own draft; its peak
//! resident memory (VmHWM) is reported against its resident memory once started and
//! warmed up, measured in the same run (ratio = peak / baseline).
//!
//! `cargo bench --bench uploads` (PostgreSQL too when APPEALFLOW_TEST_POSTGRES_URL is set).
//! `APPEALFLOW_BENCH_UPLOADS` (default 40), `APPEALFLOW_BENCH_UPLOAD_MIB` (default 10).

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appealflow::domain::document::sample;
use appealflow::domain::{AccountInput, IdHasher};

const KEY: &str = "bench-key-0123456789abcdef";
const BOUNDARY: &str = "----appealflow-bench-upload";

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of /proc/PID/status, in KiB.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"))
}

async fn run(name: &str, db: common::TestDb, uploads: usize, mib: usize) {
    let hasher = IdHasher::new(KEY.as_bytes()).unwrap();
    let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    let inputs: Vec<AccountInput> =
        serde_json::from_str(&std::fs::read_to_string(examples.join("accounts.json")).unwrap()).unwrap();
    let accounts: Vec<_> = inputs.into_iter().map(|a| a.into_account("bench", &hasher).unwrap()).collect();
    db.store.put_accounts(&accounts, chrono::Utc::now()).await.unwrap();

    let blobs = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .args(["serve", "--no-worker", "--listen", &format!("127.0.0.1:{port}")])
        .env("APPEALFLOW_DATABASE_URL", &db.url)
        .env("APPEALFLOW_BLOB_DIR", blobs.path())
        .env("APPEALFLOW_ID_HASH_KEY", KEY)
        .env("APPEALFLOW_DRAFTS_PER_HOUR", "100000")
        .env("APPEALFLOW_MAX_DOCUMENT_BYTES", ((mib + 1) * 1024 * 1024).to_string())
        .env("APPEALFLOW_MAX_CONNECTIONS", "4096")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts");
    let serve = Serve(child);
    let pid = serve.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "serve did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut fields: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(examples.join("draft-enterprise.json")).unwrap()).unwrap();
    fields.as_object_mut().unwrap().remove("documents");
    fields["operator"].as_object_mut().unwrap().remove("facial_recognition");
    let mut drafts = Vec::new();
    for _ in 0..uploads {
        let r: serde_json::Value =
            http.post(format!("{base}/v1/drafts")).json(&fields).send().await.unwrap().json().await.unwrap();
        drafts.push((r["draft_id"].as_str().unwrap().to_string(), r["secret"].as_str().unwrap().to_string()));
    }
    // Warm: one small upload through every path, then the baseline.
    let small = multipart(&sample::pdf("warm up"));
    let (id, secret) = &drafts[0];
    let warm = upload(&http, &base, id, secret, small).await;
    assert!(warm.is_success(), "{warm}");
    let baseline = status_kib(pid, "VmRSS:");

    // Distinct content per upload (no upload is a repeat of another).
    let bodies: Vec<Vec<u8>> = (0..uploads)
        .map(|i| {
            let mut stream = vec![0u8; mib * 1024 * 1024 - 1024];
            for (j, b) in stream.iter_mut().enumerate() {
                *b = (j.wrapping_mul(31).wrapping_add(i * 7919) % 251) as u8;
            }
            multipart(&sample::pdf_with_stream(&stream))
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for ((id, secret), body) in drafts.into_iter().zip(bodies) {
        let (http, base) = (http.clone(), base.clone());
        tasks.push(tokio::spawn(async move { upload(&http, &base, &id, &secret, body).await }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap().is_success() {
            ok += 1;
        }
    }
    let took = started.elapsed().as_secs_f64();
    let peak = status_kib(pid, "VmHWM:");
    let mib_of = |kib: u64| kib as f64 / 1024.0;
    println!(
        "{name:<9} {uploads} concurrent {mib} MiB uploads: {ok} stored in {took:.1} s; serve RSS baseline {:.1} MiB, \
         peak {:.1} MiB (ratio {:.2}); peak above baseline {:.1} MiB = {:.2} MiB per upload",
        mib_of(baseline),
        mib_of(peak),
        peak as f64 / baseline as f64,
        mib_of(peak.saturating_sub(baseline)),
        mib_of(peak.saturating_sub(baseline)) / uploads as f64,
    );
    drop(serve);
}

fn multipart(file: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.pdf\"\r\n\
         Content-Type: application/pdf\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn upload(http: &reqwest::Client, base: &str, id: &str, secret: &str, body: Vec<u8>) -> reqwest::StatusCode {
    http.post(format!("{base}/v1/drafts/{id}/documents?kind=supplementary"))
        .header("x-draft-secret", secret)
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .send()
        .await
        .map_or(reqwest::StatusCode::BAD_GATEWAY, |r| r.status())
}

#[tokio::main]
async fn main() {
    let env = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    let (uploads, mib) = (env("APPEALFLOW_BENCH_UPLOADS", 40), env("APPEALFLOW_BENCH_UPLOAD_MIB", 10));
    run("sqlite", common::sqlite().await, uploads, mib).await;
    if let Some(db) = common::postgres("bench_uploads").await {
        run("postgres", db, uploads, mib).await;
    }
}
