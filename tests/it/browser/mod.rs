//! The browser-test harness: Debian's headless chromium driven through chromedriver
//! (WebDriver, the `fantoccini` client) against servers on loopback, with axe-core for
//! accessibility checks and a screenshot of the page whenever a test fails.
//!
//! A test:
//!
//! ```ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn applicant_submits_an_appeal() {
//!     let Some(browser) = Browser::start().await else { return };
//!     browser
//!         .run("applicant_submits_an_appeal", async |b| {
//!             b.goto(&format!("{base}/appeal")).await;
//!             b.step("contact details");
//!             b.fill("#phone", "+8613812345678").await;
//!             b.click("button[type=submit]").await;
//!             b.wait_for("#confirmation").await;
//!             b.assert_accessible().await;
//!         })
//!         .await;
//! }
//! ```
//!
//! Every helper waits for its element (up to [`Browser::set_wait`], 10 s by default) and
//! panics with the selector and the page's URL when it cannot act. A panic inside
//! [`Browser::run`] saves a PNG of the page to
//! `$CARGO_TARGET_DIR/browser-screenshots/<test>-<step>.png` (`target/` by default) and
//! prints its path. Without chromium and chromedriver, [`Browser::start`] says so and
//! returns `None`; with `CI` set it panics instead: CI never skips the browser tests.
//!
//! Sessions are separate (own chromium, own profile directory), one chromedriver serves
//! the sessions alive at a time and ends with the last one.
#![allow(dead_code)]

mod actions;
mod axe;
mod driver;
mod harness_tests;
mod site;

use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fantoccini::Client;
use futures_util::FutureExt;

pub use axe::{Violation, ViolationNode};
pub use driver::Tools;
pub use fantoccini::key::Key;

/// How long a helper waits for its element unless [`Browser::set_wait`] says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// One chromium session.
pub struct Browser {
    client: Client,
    session: String,
    state: Mutex<State>,
    /// The session's chromium profile, removed after the session ends.
    _profile: tempfile::TempDir,
    driver: Arc<driver::Driver>,
}

struct State {
    wait: Duration,
    /// The step the test named last ([`Browser::step`]).
    step: Option<String>,
    /// The helper called last, e.g. `click "#submit"`.
    action: String,
}

impl Browser {
    /// A new session in headless chromium; `None` (with a note on stderr) when chromium
    /// or chromedriver is not installed, except in CI (`CI` set), where that panics.
    pub async fn start() -> Option<Browser> {
        let tools = match Tools::find() {
            Ok(tools) => tools,
            Err(missing) => {
                if required(std::env::var("CI").ok().as_deref()) {
                    panic!("CI is set and the browser tests cannot run: missing {missing}");
                }
                // Straight to the stderr handle: libtest hides `eprintln!` of passing tests.
                use std::io::Write;
                let _ = writeln!(std::io::stderr(), "SKIPPED (browser): missing {missing}");
                return None;
            }
        };
        Some(Browser::start_with(&tools).await)
    }

    /// A new session with the given programs.
    pub async fn start_with(tools: &Tools) -> Browser {
        let driver = blocking(|| driver::Driver::shared(&tools.chromedriver));
        let profile =
            tempfile::Builder::new().prefix("appealflow-chromium-").tempdir().expect("a temporary profile directory");
        let caps = driver::capabilities(&tools.chromium, profile.path());
        let client = fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url())
            .await
            .unwrap_or_else(|e| {
                panic!("a chromium session through chromedriver: {e}\n--- chromedriver output ---\n{}", driver.output())
            });
        let session = client.session_id().await.ok().flatten().expect("the new session's id");
        // The session is deleted by `Drop` (synchronously), not by the client's own drop,
        // which only schedules the deletion on a runtime that may be gone by then.
        client.persist().await.expect("the client keeps the session");
        Browser {
            client,
            session,
            state: Mutex::new(State { wait: DEFAULT_WAIT, step: None, action: "start".into() }),
            _profile: profile,
            driver,
        }
    }

    /// Runs a test's body; when it panics, saves a screenshot of the page as
    /// `<test>-<step>.png`, prints its path, and goes on panicking. The session ends
    /// afterwards either way.
    pub async fn run(self, test: &str, body: impl AsyncFnOnce(&Browser)) {
        let outcome = AssertUnwindSafe(body(&self)).catch_unwind().await;
        if let Err(panic) = outcome {
            self.screenshot_failure(test).await;
            std::panic::resume_unwind(panic);
        }
    }

    /// Names the test's current step: the failure screenshot's name, and printed with it.
    pub fn step(&self, name: &str) {
        self.state().step = Some(name.to_string());
    }

    /// How long helpers wait for their element from now on.
    pub fn set_wait(&self, wait: Duration) {
        self.state().wait = wait;
    }

    /// The WebDriver client, for what the helpers do not cover.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Saves a PNG of the page (the viewport) to `path`, creating its directory.
    pub async fn save_screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.unwrap_or_else(|e| panic!("a screenshot: {e}"));
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        }
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Saves a PNG of the page as `<screenshot dir>/<name>.png`; its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let path = screenshot_dir().join(format!("{}.png", slug(name)));
        self.save_screenshot(&path).await;
        path
    }

    async fn screenshot_failure(&self, test: &str) {
        let (step, action) = {
            let state = self.state();
            (state.step.clone(), state.action.clone())
        };
        let name = format!("{}-{}", slug(test), slug(step.as_deref().unwrap_or(&action)));
        let path = screenshot_dir().join(format!("{name}.png"));
        let url = self.current_url().await;
        match self.client.screenshot().await {
            Ok(png) => {
                let written = std::fs::create_dir_all(screenshot_dir()).and_then(|()| std::fs::write(&path, png));
                match written {
                    Ok(()) => eprintln!(
                        "browser test {test} failed at step {:?} (last action: {action}, page {url}); screenshot: {}",
                        step.unwrap_or_default(),
                        path.display()
                    ),
                    Err(e) => eprintln!("browser test {test} failed; its screenshot could not be written: {e}"),
                }
            }
            Err(e) => eprintln!("browser test {test} failed (page {url}); no screenshot: {e}"),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ends chromium and its session; chromedriver itself goes with the last session.
        let path = format!("/session/{}", self.session);
        let port = self.driver.port;
        let _ = blocking(|| driver::http(port, "DELETE", &path));
    }
}

/// Whether a missing browser fails the run: `CI` set to anything but empty, `0` or
/// `false`.
fn required(ci: Option<&str>) -> bool {
    ci.is_some_and(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
}

/// `$CARGO_TARGET_DIR/browser-screenshots`, or `target/browser-screenshots` in the
/// repository.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    target.join("browser-screenshots")
}

/// A file-name-safe form of a test or step name.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
        if out.len() >= 80 {
            break;
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() { "step".into() } else { out.to_string() }
}

/// Runs brief blocking work (chromedriver's start, a session's deletion) without stalling
/// a multi-threaded runtime's worker; directly on a current-thread runtime or none.
fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => tokio::task::block_in_place(work),
        _ => work(),
    }
}
