//! The development facial-recognition provider: a page that stands where the real
//! provider's would, lets the operator pass or fail, and then does what a real provider
//! does — posts the signed result (HMAC-SHA256 over `timestamp.body`) to appealflow's
//! callback over HTTP. It exists only when `serve` enables it (a loopback listener with no
//! provider secret configured), so the applicant's journey is whole on a fresh machine.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use serde::Deserialize;

use super::form::Form;
use super::i18n::Lang;
use super::layout::shell;
use crate::adapters::notify::sign;
use crate::http::Shared;

pub fn routes() -> Router<Shared> {
    Router::new().route("/dev/face", get(page).post(decide))
}

#[derive(Deserialize)]
struct Which {
    draft: String,
}

async fn page(State(state): State<Shared>, lang: Lang, Query(which): Query<Which>) -> Response {
    if state.config.web.dev_face.is_none() {
        return (StatusCode::NOT_FOUND, "no development provider here").into_response();
    }
    let body = html! {
        div.notice.warning { p { (lang.t(
            "Development facial-recognition provider: no camera, no check. A real provider verifies the operator's face against the ID number.",
            "开发用人脸识别服务：不调用摄像头，不做真实核验。真实服务会将操作人面部与身份证号比对。")) } }
        form method="post" action="/dev/face" {
            input type="hidden" name="draft" value=(which.draft);
            button #face-pass type="submit" name="result" value="passed" { (lang.t("Pass the check", "核验通过")) } " "
            button #face-fail type="submit" name="result" value="failed" { (lang.t("Fail the check", "核验不通过")) }
        }
    };
    shell(lang, lang.t("Facial recognition (development provider)", "人脸识别（开发用服务）"), &[], body)
        .into_response()
}

async fn decide(State(state): State<Shared>, lang: Lang, f: Form) -> Response {
    let Some(dev) = &state.config.web.dev_face else {
        return (StatusCode::NOT_FOUND, "no development provider here").into_response();
    };
    let result = if f.get("result") == Some("passed") { "passed" } else { "failed" };
    let body = serde_json::json!({
        "draft_id": f.get("draft").unwrap_or(""),
        "result": result,
        "provider": "appealflow-dev",
        "reference": crate::app::access::new_secret("dev_"),
    })
    .to_string();
    let timestamp = state.engine().now().timestamp();
    let signature = sign(&dev.secret, timestamp, body.as_bytes());
    let sent = reqwest::Client::new()
        .post(&dev.callback)
        .header("content-type", "application/json")
        .header("x-appealflow-timestamp", timestamp.to_string())
        .header("x-appealflow-signature", format!("sha256={signature}"))
        .body(body)
        .timeout(std::time::Duration::from_secs(10))
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => super::see_other("/appeal/face"),
        Ok(r) => {
            tracing::warn!(status = %r.status(), "the development provider's callback was refused");
            (StatusCode::BAD_GATEWAY, lang.t("The callback was refused.", "回调被拒绝。")).into_response()
        }
        Err(e) => {
            tracing::warn!(error = %e, "the development provider could not call back");
            (StatusCode::BAD_GATEWAY, lang.t("The callback failed.", "回调失败。")).into_response()
        }
    }
}
