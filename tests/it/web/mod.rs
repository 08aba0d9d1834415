//! The web pages in headless chromium, on both backends: the applicant's journey from
//! the start page to a closed appeal, the console's decisions, the lead's and the admin's
//! views, CSRF refusal, a stale decision, keyboard-only use, both languages — with an
//! axe-core check of every page visited.

mod console;
mod four_eyes;
mod journey;
mod stop;
mod uploads;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use appealflow::app::access::create_token;
use appealflow::engine::{Clock, ManualClock};
use appealflow::http::web::{DevFace, WebConfig};
use appealflow::http::{AppState, HttpConfig, Shared};
use appealflow::startup::{IntakeConfig, WorkConfig};

use crate::browser::Browser;
use crate::common::{self, TestDb};

pub const KEY: &str = "web-test-id-hash-key-0123456789abcdef";
pub const PHONE: &str = "13712345678";

/// A served appealflow with the development face provider, example accounts and staff.
pub struct Site {
    pub db: TestDb,
    pub clock: Arc<ManualClock>,
    pub state: Shared,
    pub base: String,
    pub reviewer: String,
    pub lead: String,
    pub admin: String,
    _blobs: tempfile::TempDir,
}

impl Site {
    pub async fn start(db: TestDb) -> Site {
        let clock = Arc::new(ManualClock::new(common::monday_morning()));
        let blobs = tempfile::tempdir().expect("blob dir");
        let intake = IntakeConfig {
            blob_dir: blobs.path().into(),
            id_hash_key: Some(KEY.into()),
            limits: Default::default(),
            pdf_inspector: Some(env!("CARGO_BIN_EXE_appealflow").into()),
        };
        let app = common::app(&db, clock.clone(), &WorkConfig::default(), Some(intake));
        common::import_example_accounts(&db, KEY, clock.now()).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let secret = b"web-test-face-secret".to_vec();
        let config = HttpConfig {
            face_secret: Some(secret.clone()),
            progress_floor: Duration::from_millis(1),
            web: WebConfig {
                dev_face: Some(DevFace { secret, callback: format!("http://{addr}/v1/facial-recognition") }),
                ..WebConfig::default()
            },
            ..HttpConfig::default()
        };
        let state: Shared = Arc::new(AppState::new(app.intake().expect("built with intake").clone(), app.work, config));
        tokio::spawn(appealflow::http::serve(listener, state.clone(), std::future::pending()));
        let store = db.store.as_ref();
        let now = clock.now();
        let token = |role, name: &'static str| async move {
            create_token(store, role, name, None, now).await.expect("a token").0
        };
        use appealflow::domain::Role;
        let reviewer = token(Role::Reviewer, "rita").await;
        // A second reviewer with an active token, to reassign to.
        token(Role::Reviewer, "ravi").await;
        let lead = token(Role::Lead, "leo").await;
        let admin = token(Role::Admin, "ada").await;
        Site { db, clock, state, base: format!("http://{addr}"), reviewer, lead, admin, _blobs: blobs }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Runs the worker until nothing is due (notices delivered, actions done).
    pub async fn settle(&self) {
        let worker = common::start_worker(&self.db, self.state.work.clone());
        common::settle(&worker).await;
        worker.stop().await.expect("the worker stops");
    }

    /// Signs `b` in to the console with `token`.
    pub async fn sign_in(&self, b: &Browser, token: &str) {
        b.goto(&self.url("/console")).await;
        b.wait_for("#token").await;
        b.fill("#token", token).await;
        b.click("#sign-in").await;
        b.wait_for("p.who").await;
    }
}

pub fn example(name: &str) -> PathBuf {
    common::examples().join("documents").join(name)
}

pub fn hostile(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/hostile").join(name)
}

/// Waits until the text of `css` contains `needle`; the text. Read by a script in the
/// page, so an element htmx swaps out meanwhile is simply read again.
pub async fn wait_text(b: &Browser, css: &str, needle: &str) -> String {
    let script = "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;";
    let mut last = String::new();
    for _ in 0..100 {
        if let Some(text) = b.execute(script, vec![serde_json::Value::from(css)]).await.as_str() {
            last = text.to_string();
            if last.contains(needle) {
                return last;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{css:?} never contained {needle:?}; last text: {last:?}; page {}", b.current_url().await);
}

/// Saves a screenshot for the README when `APPEALFLOW_README_SCREENSHOTS` names a folder.
pub async fn readme_screenshot(b: &Browser, name: &str) {
    if let Some(dir) = std::env::var_os("APPEALFLOW_README_SCREENSHOTS") {
        b.save_screenshot(&Path::new(&dir).join(format!("{name}.png"))).await;
    }
}
