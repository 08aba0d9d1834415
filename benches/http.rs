//! Requests per second and p99 latency of the HTTP API on loopback, per backend: the
//! progress query and a reviewer decision (claim, then release, on many appeals), each
//! against the same run's baseline — `GET /healthz` through the same server and client
//! (ratio = endpoint rps / healthz rps).
//!
//! `cargo bench --bench http` (PostgreSQL too when APPEALFLOW_TEST_POSTGRES_URL is set).
//! `APPEALFLOW_BENCH_SECS` (default 5) and `APPEALFLOW_BENCH_CLIENTS` (default 16).

#[path = "../tests/it/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::app::intake::LocalFiles;
use appealflow::domain::{AccountInput, IdHasher, Role};
use appealflow::engine::{Clock, SystemClock};
use appealflow::http::{AppState, HttpConfig};
use appealflow::startup::WorkConfig;

const KEY: &str = "bench-key-0123456789abcdef";

struct Measured {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// `clients` loops for `secs`, each calling `call(client, i)`; latencies of successes.
async fn load<F, Fut>(clients: usize, secs: u64, call: F) -> Measured
where
    F: Fn(reqwest::Client, usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = bool> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let t = Instant::now();
                if call(client.clone(), i).await {
                    lat.push(t.elapsed());
                }
                i += clients;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Measured { rps: all.len() as f64 / elapsed, p50_ms: pct(0.5), p99_ms: pct(0.99) }
}

async fn run(name: &str, db: common::TestDb, secs: u64, clients: usize) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let blobs = tempfile::tempdir().unwrap();
    let app = common::app(&db, clock.clone(), &WorkConfig::default(), Some(common::intake_config(blobs.path(), KEY)));
    let work = app.work.clone();
    let intake = app.intake().expect("built with intake").clone();

    // One individual account per appeal (one open appeal per account).
    let hasher = IdHasher::new(KEY.as_bytes()).unwrap();
    // A multiple of the client count: client c uses appeals c, c + clients, ... only.
    let appeals = clients * 12;
    let mut accounts = Vec::new();
    for i in 0..appeals {
        let a: AccountInput = serde_json::from_value(serde_json::json!({
            "name": format!("bench{i}"), "verification": "individual",
            "verified_individual": {"name": "Wang Wu", "id_number": "31010419781203005X"}
        }))
        .unwrap();
        accounts.push(a.into_account("bench", &hasher).unwrap());
    }
    db.store.put_accounts(&accounts, clock.now()).await.unwrap();
    let mut tickets = Vec::new();
    let examples = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples");
    for i in 0..appeals {
        let mut draft: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(examples.join("draft-individual.json")).unwrap()).unwrap();
        draft["entry_point"]["account"] = serde_json::json!(format!("bench{i}"));
        let out = intake
            .submit(serde_json::from_value(draft).unwrap(), &LocalFiles { base: examples.clone() }, None)
            .await
            .unwrap();
        tickets.push(out.ticket.to_string());
    }
    let (token, _) =
        appealflow::app::access::create_token(db.store.as_ref(), Role::Reviewer, "bench", None, clock.now())
            .await
            .unwrap();

    let http = HttpConfig { progress_per_minute: u32::MAX, ..HttpConfig::default() };
    let state = Arc::new(AppState::new(intake, work, http));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(appealflow::http::serve(listener, state, std::future::pending()));
    let base = format!("http://{addr}");

    let b = base.clone();
    let health = load(clients, secs, move |c, _| {
        let b = b.clone();
        async move { c.get(format!("{b}/healthz")).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let (b, t) = (base.clone(), Arc::new(tickets.clone()));
    let progress = load(clients, secs, move |c, i| {
        let (b, t) = (b.clone(), t.clone());
        async move {
            let body = serde_json::json!({ "ticket": t[i % t.len()], "phone": "13812345678" });
            c.post(format!("{b}/v1/progress")).json(&body).send().await.is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    // Each client works on its own appeals, so decisions do not collide.
    let (b, t, tok) = (base.clone(), Arc::new(tickets), Arc::new(token));
    let decisions = load(clients, secs, move |c, i| {
        let (b, t, tok) = (b.clone(), t.clone(), tok.clone());
        async move {
            let ticket = &t[i % t.len()];
            let claim = c.post(format!("{b}/v1/appeals/{ticket}/claim")).bearer_auth(tok.as_str()).send().await;
            if !claim.is_ok_and(|r| r.status().is_success()) {
                return false;
            }
            c.post(format!("{b}/v1/appeals/{ticket}/release"))
                .bearer_auth(tok.as_str())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!(
        "{name:<9} healthz {:>7.0} rps p99 {:>6.1} ms | progress {:>6.0} rps p50 {:>5.1} ms p99 {:>6.1} ms (ratio {:.3}) | decision pairs (claim, release) {:>5.0}/s p50 {:>5.1} ms p99 {:>6.1} ms (ratio {:.3})",
        health.rps,
        health.p99_ms,
        progress.rps,
        progress.p50_ms,
        progress.p99_ms,
        progress.rps / health.rps,
        decisions.rps,
        decisions.p50_ms,
        decisions.p99_ms,
        decisions.rps / health.rps
    );
}

#[tokio::main]
async fn main() {
    let secs: u64 = std::env::var("APPEALFLOW_BENCH_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let clients: usize = std::env::var("APPEALFLOW_BENCH_CLIENTS").ok().and_then(|v| v.parse().ok()).unwrap_or(16);
    println!("http bench: {clients} clients, {secs} s per endpoint, loopback");
    run("sqlite", common::sqlite().await, secs, clients).await;
    match common::postgres("http bench").await {
        Some(db) => run("postgres", db, secs, clients).await,
        None => println!("postgres  skipped (set APPEALFLOW_TEST_POSTGRES_URL)"),
    }
}
