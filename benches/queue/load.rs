//! The processes at the seeded database's size: `appealflow serve` under sustained
//! queue load (its RSS sampled through the run: start, peak, end), `appealflow worker`
//! burning down the seeded timers (all due by the wall clock: its RSS peak and firings
//! per second), and how long `appealflow migrate` takes there — with nothing pending,
//! and replaying the queue migrations (0009: five columns filled from every appeal and
//! its timers, two indexes; 0010: the counts indexes; 0012: on SQLite, an index per appeal
//! item), the largest so far.
//!
//! `APPEALFLOW_BENCH_LOAD_SECS` (default 30) sets how long each process is loaded.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::pct;

const BIN: &str = env!("CARGO_BIN_EXE_appealflow");

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A field of /proc/PID/status, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    kib as f64 / 1024.0
}

fn load_secs() -> u64 {
    std::env::var("APPEALFLOW_BENCH_LOAD_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(30)
}

fn command(url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env("APPEALFLOW_DATABASE_URL", url)
        .env("APPEALFLOW_ID_HASH_KEY", super::ID_HASH_KEY)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// A reviewer's token, made by `appealflow tokens create`.
fn token(url: &str) -> String {
    let out = command(url)
        .args(["tokens", "create", "--role", "reviewer", "--name", "load-bench"])
        .stdout(Stdio::piped())
        .output()
        .expect("tokens create runs");
    assert!(out.status.success(), "tokens create failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The queries the reviewers' clients send: the first pages, each filter, deeper pages.
fn queries() -> Vec<String> {
    let mut all = vec![
        "per_page=20".to_string(),
        "per_page=100".into(),
        "state=under_review".into(),
        "item=detach_mfa".into(),
        "scenario=deregistered".into(),
        "assignee=rev7".into(),
        "unclaimed=true".into(),
        "item=other&scenario=name_changed&unclaimed=true".into(),
    ];
    all.extend((2..=20).map(|p| format!("page={p}&per_page=50")));
    all
}

/// RSS samples of `pid` every 200 ms until `stop`; (first, peak, last) in MiB.
async fn sample_rss(pid: u32, stop: tokio::sync::watch::Receiver<bool>) -> (f64, f64, f64) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    let first = status_mib(pid, "VmRSS:");
    let (mut peak, mut last) = (first, first);
    while !*stop.borrow() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        last = status_mib(pid, "VmRSS:");
        peak = peak.max(last);
    }
    (first, peak.max(status_mib(pid, "VmHWM:")), last)
}

/// `serve` under `clients` concurrent reviewers asking for queue pages for the load
/// period: requests/s, p95, and its RSS before, at peak and at the end.
pub async fn serve(name: &str, url: &str, clients: usize) {
    let token = token(url);
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let blobs = tempfile::tempdir().unwrap();
    let child = command(url)
        .args(["serve", "--no-worker", "--listen", &format!("127.0.0.1:{port}")])
        .env("APPEALFLOW_BLOB_DIR", blobs.path())
        .spawn()
        .expect("serve starts");
    let mut proc = Proc(child);
    let pid = proc.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let start = Instant::now();
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(proc.0.try_wait().unwrap().is_none(), "serve exited (its error is above)");
        assert!(start.elapsed() < Duration::from_secs(60), "serve did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queries = queries();
    for q in &queries {
        let r = http.get(format!("{base}/v1/queue?{q}")).bearer_auth(&token).send().await.unwrap();
        assert!(r.status().is_success(), "GET /v1/queue?{q}: {}", r.status());
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_rss(pid, stop_rx));
    let until = Instant::now() + Duration::from_secs(load_secs());
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (http, base, token, queries) = (http.clone(), base.clone(), token.clone(), queries.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut i = c;
            while Instant::now() < until {
                let at = Instant::now();
                let r = http.get(format!("{base}/v1/queue?{}", queries[i % queries.len()])).bearer_auth(&token);
                let r = r.send().await.unwrap();
                assert!(r.status().is_success(), "queue answered {}", r.status());
                r.bytes().await.unwrap();
                times.push(at.elapsed());
                i += clients;
            }
            times
        }));
    }
    let mut times = Vec::new();
    for t in tasks {
        times.extend(t.await.unwrap());
    }
    stop_tx.send(true).unwrap();
    let (first, peak, last) = sampler.await.unwrap();
    times.sort();
    println!(
        "{name}: serve under queue load ({clients} clients, {} s): {:.0} req/s, p50 {:.2} ms, p95 {:.2} ms; \
         RSS {first:.0} MiB 200 ms in, peak {peak:.0} MiB, {last:.0} MiB at end (target ≤ 150 MiB)",
        load_secs(),
        times.len() as f64 / load_secs() as f64,
        pct(&times, 0.5),
        pct(&times, 0.95),
    );
    drop(proc);
}

/// `worker` firing the seeded timers (all due by the wall clock) for the load period:
/// firings/s and its RSS peak. `fired` counts the fired timers in the database.
pub async fn worker<F, Fut>(name: &str, url: &str, fired: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = i64>,
{
    let before = fired().await;
    // With a lead to tell, as a desk would have: breaches and warnings are delivered.
    let child = command(url)
        .args(["worker", "--concurrency", "4"])
        .env("APPEALFLOW_LEAD_EMAILS", "lead@appealflow.test")
        .spawn()
        .expect("worker starts");
    let proc = Proc(child);
    let pid = proc.0.id();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sampler = tokio::spawn(sample_rss(pid, stop_rx));
    tokio::time::sleep(Duration::from_secs(load_secs())).await;
    stop_tx.send(true).unwrap();
    let (first, peak, last) = sampler.await.unwrap();
    drop(proc);
    let after = fired().await;
    println!(
        "{name}: worker burning down the seeded timers ({} s): {} fired, {:.0}/s; RSS {first:.0} MiB 200 ms in, \
         peak {peak:.0} MiB, {last:.0} MiB at end (target ≤ 100 MiB)",
        load_secs(),
        after - before,
        (after - before) as f64 / load_secs() as f64,
    );
}

/// `appealflow migrate` timed on the seeded database: once with nothing pending, then
/// replaying migrations 0009, 0010 and 0012 after `unapply` has taken them back out.
pub async fn migrate<F, Fut>(name: &str, url: &str, unapply: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let run = || {
        let start = Instant::now();
        let status = command(url).arg("migrate").status().expect("migrate runs");
        assert!(status.success(), "migrate failed");
        start.elapsed().as_secs_f64()
    };
    let nothing = run();
    unapply().await;
    let replay = run();
    println!(
        "{name}: migrate with nothing pending {nothing:.2} s; replaying 0009, 0010 and 0012 (the queue columns and indexes) {replay:.2} s"
    );
}
