//! Test harness: real databases for every test. SQLite gets a fresh file in a temporary
//! directory; PostgreSQL gets a fresh database created on the server named by
//! APPEALFLOW_TEST_POSTGRES_URL. Without that variable the PostgreSQL half is skipped
//! and says so (and fails instead when APPEALFLOW_REQUIRE_POSTGRES=1, as in CI).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;

use appealflow::domain::{Actor, Role};
use appealflow::engine::{Clock, Engine, ManualClock, NewAppeal};
use appealflow::store::Store;
use appealflow::workflow::Workflow;
use chrono::{DateTime, Utc};
use sqlx::Connection;

pub const PG_ENV: &str = "APPEALFLOW_TEST_POSTGRES_URL";
pub const REQUIRE_PG_ENV: &str = "APPEALFLOW_REQUIRE_POSTGRES";

pub fn workflows_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workflows")
}

pub fn workflow() -> Arc<Workflow> {
    let dir = workflows_dir();
    Arc::new(Workflow::load(&dir.join("account-appeal"), &dir.join("calendars")).expect("shipped workflow loads"))
}

/// A database for one test; the temporary directory lives as long as the handle.
pub struct TestDb {
    pub store: Arc<dyn Store>,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("appealflow.db").display());
    let store = appealflow::startup::open_store(&url).await.expect("sqlite store opens");
    TestDb { store, url, _dir: Some(dir) }
}

/// The server URL with its database path replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    format!("{host_part}/{db}{query}")
}

/// A fresh PostgreSQL database, or `None` (with a notice) when none is configured.
pub async fn postgres(test: &str) -> Option<TestDb> {
    let Ok(admin_url) = std::env::var(PG_ENV) else {
        if std::env::var(REQUIRE_PG_ENV).as_deref() == Ok("1") {
            panic!("{REQUIRE_PG_ENV}=1 but {PG_ENV} is not set: the PostgreSQL suite must run");
        }
        // Written to the stderr handle directly: the test harness captures `eprintln!`
        // output of passing tests, and a skip must be seen.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED (postgres) {test}: set {PG_ENV}=postgres://... to run the PostgreSQL half"
        );
        return None;
    };
    // CI sets a per-run prefix so it can drop exactly its own databases afterwards.
    let prefix = std::env::var("APPEALFLOW_TEST_DB_PREFIX").unwrap_or_else(|_| "appealflow_t".into());
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unreachable: {e}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create test database");
    admin.close().await.ok();
    let url = with_database(&admin_url, &name);
    let store = appealflow::startup::open_store(&url).await.expect("postgres store opens");
    Some(TestDb { store, url, _dir: None })
}

pub fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("valid instant").with_timezone(&Utc)
}

/// A Monday morning in Shanghai, well inside the calendar's published range.
pub fn monday_morning() -> DateTime<Utc> {
    at("2026-03-09T10:00:00+08:00")
}

pub fn engine(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Engine {
    Engine::new(store, workflow(), clock as Arc<dyn Clock>)
}

/// A minimal appeal record for engine-level tests (the intake rules are tested elsewhere).
pub fn request(account: &str) -> NewAppeal {
    NewAppeal {
        account: account.to_string(),
        data: serde_json::json!({ "draft": { "contact_phone": "+8613812345678", "items": ["reset_password"] } }),
    }
}

pub fn applicant() -> Actor {
    Actor::new("applicant", Role::Applicant)
}

pub fn reviewer(name: &str) -> Actor {
    Actor::new(name, Role::Reviewer)
}

/// Generates one `#[tokio::test]` per backend for each listed async fn taking a `TestDb`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name($crate::common::sqlite().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(db) = $crate::common::postgres(stringify!($name)).await {
                        super::$name(db).await;
                    }
                }
            )*
        }
    };
}
