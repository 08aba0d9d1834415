//! A small site on loopback for the harness's own tests: a form with every kind of field
//! the helpers drive, which records what it receives; a page under a strict
//! Content-Security-Policy; an accessible page and an inaccessible one.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

/// The content security policy the appealflow pages send: no inline script.
pub const STRICT_CSP: &str = "default-src 'self'; script-src 'self'";

/// One submitted form.
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub fields: Vec<(String, String)>,
    pub files: Vec<Upload>,
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub field: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

impl Submission {
    /// The value of the field `name`, if it was sent.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

type Received = Arc<Mutex<Vec<Submission>>>;

pub struct Site {
    pub url: String,
    received: Received,
}

impl Site {
    pub async fn start() -> Site {
        let received = Received::default();
        let app = Router::new()
            .route("/form", get(form).post(receive))
            .route("/keyboard", get(keyboard).post(receive))
            .route("/csp", get(csp))
            .route("/clean", get(clean))
            .route("/inaccessible", get(inaccessible))
            .with_state(received.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let url = format!("http://{}", listener.local_addr().expect("bound address"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("the test site serves") });
        Site { url, received }
    }

    /// Every form submitted so far, in order.
    pub fn received(&self) -> Vec<Submission> {
        self.received.lock().unwrap().clone()
    }
}

/// A complete, accessible document around `main`.
fn page(title: &str, main: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><main><h1>{title}</h1>{main}</main></body></html>"
    )
}

async fn form() -> Html<String> {
    Html(page(
        "Appeal evidence",
        r#"<form method="post" action="/form" enctype="multipart/form-data">
             <p><label for="name">Full name</label> <input id="name" name="name" type="text" value="placeholder"></p>
             <p><label for="item">Item</label>
                <select id="item" name="item">
                  <option value="reset_password">Reset password</option>
                  <option value="unfreeze">Unfreeze the account</option>
                </select></p>
             <p><input id="consent" name="consent" type="checkbox" value="yes"> <label for="consent">I consent</label></p>
             <p><label for="evidence">Evidence</label> <input id="evidence" name="evidence" type="file"></p>
             <p><button id="send" type="submit">Send</button></p>
           </form>"#,
    ))
}

async fn keyboard() -> Html<String> {
    Html(page(
        "Keyboard form",
        r#"<p><a href="/clean">An earlier link</a></p>
           <form method="post" action="/keyboard" enctype="multipart/form-data">
             <p><label for="phone">Phone</label> <input id="phone" name="phone" type="tel"></p>
             <p><input id="urgent" name="urgent" type="checkbox" value="yes"> <label for="urgent">Urgent</label></p>
             <p><button id="send" type="submit">Send</button></p>
           </form>"#,
    ))
}

/// Records a multipart form (fields and files) and answers with a confirmation page.
async fn receive(State(received): State<Received>, headers: HeaderMap, body: Body) -> Html<String> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let boundary = multer::parse_boundary(content_type).expect("a multipart form");
    let mut multipart = multer::Multipart::new(body.into_data_stream(), boundary);
    let mut submission = Submission::default();
    while let Some(field) = multipart.next_field().await.expect("a well-formed multipart body") {
        let name = field.name().unwrap_or_default().to_string();
        match field.file_name().map(str::to_string) {
            Some(file_name) => {
                let bytes = field.bytes().await.expect("the file's bytes").to_vec();
                submission.files.push(Upload { field: name, file_name, bytes });
            }
            None => submission.fields.push((name, field.text().await.expect("a text field"))),
        }
    }
    let summary = format!("{} fields, {} files", submission.fields.len(), submission.files.len());
    received.lock().unwrap().push(submission);
    Html(page("Received", &format!("<p id=\"received\">Received: {summary}</p>")))
}

/// An inline script (which the policy blocks) and an image without a text alternative
/// (which axe must still find).
async fn csp() -> impl IntoResponse {
    let html = page(
        "Strict policy",
        r#"<script>document.title = "inline script ran";</script>
           <p><img src="/nothing.png" width="10" height="10"></p>"#,
    );
    ([(header::CONTENT_SECURITY_POLICY, STRICT_CSP)], Html(html))
}

async fn clean() -> Html<String> {
    Html(page(
        "Clean page",
        r#"<p>Appeals are reviewed within five business days.</p>
           <form><p><label for="q">Appeal number</label> <input id="q" name="q" type="text"></p>
           <p><button type="submit">Look up</button></p></form>"#,
    ))
}

/// Two critical violations: an image without alt text and an unlabelled field.
async fn inaccessible() -> Html<String> {
    Html(page(
        "Inaccessible page",
        r#"<p><img id="logo" src="/logo.png" width="10" height="10"></p>
           <form><p><input id="unlabelled" name="q" type="text"></p></form>"#,
    ))
}
