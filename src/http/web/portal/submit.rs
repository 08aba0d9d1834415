//! Facial recognition (a hand-off to the provider, whose signed callback records the
//! result), the last look before submitting, the submission, and the ticket with its
//! review deadline explained.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde_json::Value;

use super::checklist::panel;
use super::{draft_or_start, failed, nav, see_other};
use crate::app::drafts::DraftError;
use crate::app::intake::IntakeError;
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::{Page, shell};

fn face_result(data: &Value) -> Option<&str> {
    data.pointer("/operator/facial_recognition/result").and_then(Value::as_str)
}

/// `GET /appeal/face`: the operator's facial recognition, by the provider.
pub async fn face(State(state): State<Shared>, headers: HeaderMap, lang: Lang) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let body = html! {
        p { (lang.t(
            "The operator's identity is verified by facial recognition against the ID number given in step 1. Have the operator's face in front of the camera.",
            "系统将通过人脸识别核验操作人身份，与第一步填写的身份证号比对。请操作人本人面对摄像头。")) }
        @match face_result(&draft.data) {
            Some("passed") => p.notice.ok #face-status role="status" { (lang.t("Facial recognition passed.", "人脸识别已通过。")) },
            Some(_) => p.notice.error role="alert" { (lang.t("Facial recognition did not pass. You may try again.", "人脸识别未通过，您可以重试。")) },
            None => {},
        }
        @if state.config.web.dev_face.is_some() {
            form method="get" action="/dev/face" {
                input type="hidden" name="draft" value=(draft.id);
                button #start-face type="submit" { (lang.t("Start facial recognition", "开始人脸识别")) }
            }
        } @else {
            p.notice.warning { (lang.t(
                "Facial recognition is not available on this server. Contact support.",
                "本服务器未接入人脸识别服务，请联系客服。")) }
        }
        p.next {
            a.button href="/appeal/documents" { (lang.t("Back", "上一步")) } " "
            a.button #to-review href="/appeal/review" { (lang.t("Continue", "下一步")) }
        }
    };
    Ok(shell(lang, lang.t("Step 3: facial recognition", "第三步：人脸识别"), &nav(lang), body).into_response())
}

/// `GET /appeal/review`: everything at once before submitting.
pub async fn review(State(state): State<Shared>, headers: HeaderMap, lang: Lang) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    if draft.ticket.is_some() {
        return Ok(see_other("/appeal/submitted"));
    }
    let checklist = state.drafts.checklist(&draft).await.map_err(|e| failed(lang, &e))?;
    let key = crate::app::access::new_secret("web_");
    let body = html! {
        (panel(lang, &checklist))
        p { (lang.t("Facial recognition:", "人脸识别：")) " "
            @match face_result(&draft.data) {
                Some("passed") => strong { (lang.t("passed", "已通过")) },
                Some(_) => strong { (lang.t("did not pass", "未通过")) },
                None => strong { (lang.t("not done yet", "尚未完成")) },
            }
        }
        form method="post" action="/appeal/submit" {
            // One key per rendering: a double click or a resent form submits once.
            input type="hidden" name="key" value=(key);
            button #submit-appeal type="submit" { (lang.t("Submit the appeal", "提交申诉")) }
        }
        p.next { a.button href="/appeal/face" { (lang.t("Back", "上一步")) } }
    };
    Ok(shell(lang, lang.t("Step 4: check and submit", "第四步：确认并提交"), &nav(lang), body).into_response())
}

/// `POST /appeal/submit`.
pub async fn submit(State(state): State<Shared>, headers: HeaderMap, lang: Lang, f: Form) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    match state.drafts.submit(&draft, f.get("key")).await {
        Ok(_) => Ok(see_other("/appeal/submitted")),
        Err(DraftError::Intake(IntakeError::Incomplete(checklist))) => {
            let body = html! {
                div.notice.error role="alert" { p { (lang.t("The appeal cannot be submitted yet.", "申诉暂不能提交。")) } }
                (panel(lang, &checklist))
                p.next { a.button href="/appeal/documents" { (lang.t("Add documents", "补充材料")) } " "
                         a.button href="/appeal/prepare" { (lang.t("Change the answers", "修改填写内容")) } }
            };
            Ok((
                axum::http::StatusCode::UNPROCESSABLE_ENTITY,
                shell(lang, lang.t("Not submitted", "未提交"), &nav(lang), body),
            )
                .into_response())
        }
        Err(e) => Err(failed(lang, &e)),
    }
}

/// `GET /appeal/submitted`: the ticket and the review deadline explained.
pub async fn submitted(State(state): State<Shared>, headers: HeaderMap, lang: Lang) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let Some(ticket) = &draft.ticket else { return Ok(see_other("/appeal/review")) };
    let ticket = crate::app::parse_ticket(ticket).map_err(|e| failed(lang, &e))?;
    let view = crate::app::show(state.engine(), &ticket).await.map_err(|e| failed(lang, &e))?;
    let received = chrono::DateTime::parse_from_rfc3339(&view.created_at)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| state.engine().now());
    let body = html! {
        div.notice.ok role="status" {
            p { (lang.t("Your appeal was received. Your ticket number:", "申诉已受理。您的工单号：")) }
            p.ticket { strong #ticket { (ticket.to_string()) } }
            p { (lang.t("Keep it with the contact phone you gave: together they let you check the result.", "请保存工单号，凭工单号和联系手机可查询申诉结果。")) }
        }
        (crate::http::web::deadline::explained(lang, state.engine().workflow(), received))
        p { a.button href="/progress" { (lang.t("Check the result", "查询申诉结果")) } }
    };
    Ok(shell(lang, lang.t("Appeal submitted", "申诉已提交"), &nav(lang), body).into_response())
}
