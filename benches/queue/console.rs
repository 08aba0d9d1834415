//! The console's queue page (`GET /console`) as a reviewer's browser asks for it: a real
//! server on loopback, a signed-in staff session, the page rendered in full. Each request's
//! time from send to the last byte of the page (so the server's time plus loopback) against
//! the same run's raw-sqlx run of the page's two statements.

use std::sync::Arc;

use appealflow::app::access::create_token;
use appealflow::app::sessions::{self, SessionPolicy};
use appealflow::domain::Role;
use appealflow::engine::Clock;
use appealflow::http::{AppState, HttpConfig};
use appealflow::startup::Application;

/// The console's page size (src/http/web/console/queue.rs).
pub const PER_PAGE: i64 = 25;

/// A reviewer's browser: the server's base URL, a client and the session cookie.
pub struct Browser {
    base: String,
    client: reqwest::Client,
    cookie: String,
}

/// Serves `app` on loopback and signs reviewer `rev7` in.
pub async fn open(app: Application, clock: Arc<dyn Clock>) -> Browser {
    let store = app.engine.store();
    let (token, _) = create_token(store.as_ref(), Role::Reviewer, "rev7", None, clock.now()).await.unwrap();
    let session = sessions::sign_in(&app.engine, &token, clock.now(), SessionPolicy::default()).await.unwrap();
    let state =
        Arc::new(AppState::new(app.intake().expect("built with intake").clone(), app.work, HttpConfig::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(appealflow::http::serve(listener, state, std::future::pending()));
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Browser { base, client, cookie: format!("af_session={}", session.secret) }
}

impl Browser {
    /// One page, its body's length (a sign-in redirect or an error fails).
    pub async fn get(&self, query: &str) -> usize {
        let r = self
            .client
            .get(format!("{}/console{query}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.text().await.unwrap();
        assert!(status.is_success(), "GET /console{query}: {status}");
        assert!(body.contains("<table"), "GET /console{query} renders a queue table");
        body.len()
    }
}

/// The console's cases: its query string, and the queue query it makes. The deep page
/// is the one its "Next" link reaches 90 % into the queue (`after`, the cursor there).
pub fn cases(after: &str, open: usize) -> Vec<(&'static str, String, appealflow::app::review::QueueQuery)> {
    use appealflow::app::review::{AssigneeFilter, QueueQuery};
    use appealflow::domain::AppealItem;
    use appealflow::domain::draft::Scenario;
    let deep = i64::try_from(open * 9 / 10 / 25).unwrap_or(1).max(1);
    let q = || QueueQuery { per_page: PER_PAGE, ..QueueQuery::default() };
    vec![
        ("console page 1", String::new(), q()),
        (
            "console deep page (after)",
            format!("?page={deep}&after={after}"),
            QueueQuery { page: deep, after: Some(after.to_string()), ..q() },
        ),
        (
            "console state=under_review",
            "?state=under_review".into(),
            QueueQuery { states: vec!["under_review".into()], ..q() },
        ),
        ("console item=detach_mfa", "?item=detach_mfa".into(), QueueQuery { item: Some(AppealItem::DetachMfa), ..q() }),
        (
            "console scenario=deregistered",
            "?scenario=deregistered".into(),
            QueueQuery { scenario: Some(Scenario::Deregistered), ..q() },
        ),
        ("console mine", "?who=mine".into(), QueueQuery { assignee: AssigneeFilter::Named("rev7".into()), ..q() }),
        ("console unclaimed", "?who=unclaimed".into(), QueueQuery { assignee: AssigneeFilter::Unclaimed, ..q() }),
    ]
}
