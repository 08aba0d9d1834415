//! The real worker loop (`jobs::run`, system clock, default settings: 500 ms poll):
//!
//! - lateness: claims whose expiry falls due one by one, each armed only 150 ms before it
//!   is due — on SQLite by an engine sharing the worker's store (this process), on
//!   PostgreSQL by an engine on another pool (as another process would) — so a loop that
//!   only polled would miss most of them by up to a poll; how late each fired (its row's
//!   settled_at − due_at), p50/p99/max, against the 100 ms target. The arming engine runs
//!   the shipped workflow with the claim expiry shortened to one minute (the shortest
//!   span a workflow can give) and a clock one minute behind the wall clock, so each
//!   timer is, to the commit that arms it, due a minute later, as the shortest real
//!   timer would be; the worker, on the wall clock, sees it due 150 ms later.
//! - idle: the CPU the process uses over `secs` with the worker running and nothing to
//!   do, against the same process over `secs` before the worker started; then the CPU of
//!   the shipped binary, `appealflow worker` on the same database, over `secs` once it has
//!   run 5 s (what a deployment's idle worker costs, without the bench's own stores).

use std::sync::Arc;
use std::time::Duration;

use appealflow::engine::{ManualClock, SystemClock};
use appealflow::jobs::WorkerSettings;
use appealflow::startup::WorkConfig;
use appealflow::workflow::Fire;
use chrono::Utc;

use super::{Row, common};

const TIMERS: usize = 20;
const LEAD: Duration = Duration::from_millis(150);

/// A copy of the shipped workflows whose newest account-appeal version lets a claim
/// lapse after one minute instead of four hours.
fn one_minute_claims() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&common::workflows_dir(), dir.path());
    let path = dir.path().join("account-appeal/workflow.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let claim = text.find("name = \"claim_expiry\"").expect("the shipped workflow has a claim expiry");
    let after = claim + text[claim..].find("after = { hours = 4 }").expect("of four hours");
    let text = format!("{}after = {{ minutes = 1 }}{}", &text[..after], &text[after + "after = { hours = 4 }".len()..]);
    std::fs::write(&path, text).unwrap();
    dir
}

/// CPU seconds a process has used (user + system), from /proc/`pid`/stat (`self`: this
/// one).
fn cpu_seconds_of(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // Fields after the command name's closing parenthesis; utime and stime are the
    // 14th and 15th fields of the whole line, in clock ticks (USER_HZ, 100 on Linux).
    let rest = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// The share of one core the process `pid` uses over the next `secs`, in percent.
async fn cpu_over_of(pid: &str, secs: u64) -> f64 {
    let before = cpu_seconds_of(pid);
    tokio::time::sleep(Duration::from_secs(secs)).await;
    (cpu_seconds_of(pid) - before) / secs as f64 * 100.0
}

async fn cpu_over(secs: u64) -> f64 {
    cpu_over_of("self", secs).await
}

/// `appealflow worker` (the binary this bench was built with) on the database `url`,
/// nothing to do: the share of a core it uses over `secs`, once it has run 5 s.
async fn binary_idle(url: &str, secs: u64) -> f64 {
    let cwd = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_appealflow"))
        .arg("worker")
        .env("APPEALFLOW_DATABASE_URL", url)
        .env("APPEALFLOW_WORKFLOWS", common::workflows_dir())
        .env("APPEALFLOW_ID_HASH_KEY", "ceiling-bench-id-hash-key-0123456789")
        // A desk has a lead to tell of breaches (else the worker warns at start).
        .env("APPEALFLOW_LEAD_EMAILS", common::LEADS)
        .env("RUST_LOG", "warn")
        .current_dir(cwd.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("appealflow worker starts");
    // Killed on every way out, a failed assertion too.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(child);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(child.0.try_wait().unwrap().is_none(), "appealflow worker exited during its first 5 s");
    let pid = child.0.id().to_string();
    let share = cpu_over_of(&pid, secs).await;
    assert!(child.0.try_wait().unwrap().is_none(), "appealflow worker exited while idle");
    share
}

pub async fn measure(backend: &'static str, db: common::TestDb, secs: u64) -> Vec<Row> {
    let baseline = cpu_over(secs).await;

    let start = Utc::now();
    let clock = Arc::new(ManualClock::new(start - chrono::Duration::hours(5)));
    let arming_db = if backend == "sqlite" { None } else { Some(db.reopen().await) };
    let workflows = one_minute_claims();
    let config = WorkConfig { lead_emails: vec![common::LEADS.into()], ..Default::default() };
    let arming =
        common::app_in(arming_db.as_ref().unwrap_or(&db), workflows.path(), clock.clone(), &config, None).engine;
    let mut tickets = Vec::new();
    for i in 0..TIMERS {
        let t = arming.create(&common::request(&format!("late{i}")), &common::applicant(), None).await.unwrap();
        tickets.push(t.ticket);
    }
    let app = common::app(&db, Arc::new(SystemClock), &WorkConfig::default(), None);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(appealflow::jobs::run(app.runtime(WorkerSettings::default()), async move {
        let _ = stop_rx.changed().await;
    }));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Timer i falls due at t0 + 1 s + i × 300 ms and is armed LEAD before.
    let t0 = Utc::now();
    for (i, t) in tickets.iter().enumerate() {
        let due = t0 + chrono::Duration::milliseconds(1000 + 300 * i as i64);
        let arm_at = due - chrono::Duration::from_std(LEAD).unwrap();
        if let Ok(wait) = (arm_at - Utc::now()).to_std() {
            tokio::time::sleep(wait).await;
        }
        clock.set(due - chrono::Duration::minutes(1));
        arming.fire(t, &Fire::new("claim"), &common::reviewer("bench"), None).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut late = Vec::new();
    for t in &tickets {
        let record = db.store.appeal_by_ticket(t).await.unwrap().unwrap();
        for timer in db.store.timers(Some(&record.id)).await.unwrap() {
            if timer.name == "claim_expiry" && timer.status == appealflow::store::TimerStatus::Fired {
                late.push((timer.settled_at.unwrap() - timer.due_at).num_microseconds().unwrap() as f64 / 1000.0);
            }
        }
    }
    late.sort_by(f64::total_cmp);

    let idle = cpu_over(secs).await;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let binary = binary_idle(&db.url, secs).await;

    let pct = |p: f64| late.get(((late.len() as f64 * p) as usize).min(late.len().saturating_sub(1))).copied();
    let lateness = match (pct(0.5), pct(0.99), late.last()) {
        (Some(p50), Some(p99), Some(max)) => format!("p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms"),
        _ => "no timer fired".into(),
    };
    vec![
        Row {
            backend,
            figure: format!(
                "timer lateness, {} of {TIMERS} fired, each armed {} ms before due",
                late.len(),
                LEAD.as_millis()
            ),
            engine: lateness,
            baseline: format!("poll {} ms", WorkerSettings::default().poll.as_millis()),
            ratio: pct(0.99).map_or("—".into(), |p99| format!("p99/target {:.2}", p99 / 100.0)),
            target: "p99 ≤ 100 ms",
        },
        Row {
            backend,
            figure: format!("idle worker CPU over {secs} s"),
            engine: format!("{idle:.2} % of a core"),
            baseline: format!("{baseline:.2} % (no worker)"),
            ratio: format!("{:.2} points over", idle - baseline),
            target: "< 1 %",
        },
        Row {
            backend,
            figure: format!("idle `appealflow worker` process, CPU over {secs} s"),
            engine: format!("{binary:.2} % of a core"),
            baseline: "—".into(),
            ratio: format!("{:.2} of target", binary),
            target: "< 1 %",
        },
    ]
}
