//! Documents: one upload form per document the checklist lists, each with the facts the
//! rules check (stamped, the new company named, the signatories' share, when an asset
//! disposal certificate was issued); each upload accepted or refused with the reason in
//! words, with a progress bar where scripts run.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::Value;

use super::checklist::panel;
use super::upload::{Refused, receive};
use super::{draft_or_start, failed, nav, see_other};
use crate::domain::document::DocumentKind;
use crate::domain::rules::Checklist;
use crate::http::Shared;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::{Page, shell};
use crate::store::DraftRecord;

fn title(lang: Lang) -> &'static str {
    lang.t("Step 2: upload the documents", "第二步：上传申诉材料")
}

/// What the last upload did, shown above the forms.
enum Outcome {
    Accepted(DocumentKind, String),
    Refused(String),
}

pub async fn page(State(state): State<Shared>, headers: HeaderMap, lang: Lang) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let checklist = state.drafts.checklist(&draft).await.map_err(|e| failed(lang, &e))?;
    Ok(shell(lang, title(lang), &nav(lang), section(lang, &draft, &checklist, None)).into_response())
}

/// The documents part of the page (what htmx swaps after an upload).
fn section(lang: Lang, draft: &DraftRecord, checklist: &Checklist, outcome: Option<&Outcome>) -> Markup {
    let held = draft.data.get("documents").and_then(Value::as_array).cloned().unwrap_or_default();
    let mut kinds: Vec<DocumentKind> = Vec::new();
    for e in checklist.documents.iter().filter(|e| e.applies) {
        for k in &e.documents {
            if !kinds.contains(k) {
                kinds.push(*k);
            }
        }
    }
    html! {
        div #documents {
            @match outcome {
                Some(Outcome::Accepted(kind, name)) => div.notice.ok role="status" {
                    (lang.t("Accepted:", "已接收：")) " " (lang.document(*kind)) " (" (name) ")"
                },
                Some(Outcome::Refused(why)) => div.notice.error role="alert" {
                    (lang.t("Not accepted:", "未接收：")) " " (why)
                },
                None => {},
            }
            @if !held.is_empty() {
                h2 { (lang.t("Uploaded", "已上传")) }
                ul.held {
                    @for (i, d) in held.iter().enumerate() {
                        @let kind = d.get("kind").and_then(Value::as_str).and_then(|k| k.parse::<DocumentKind>().ok());
                        li {
                            (kind.map_or("?", |k| lang.document(k))) " — "
                            (d.get("file_name").and_then(Value::as_str).unwrap_or("")) " "
                            form.inline method="post" action={ "/appeal/documents/" (i) "/remove" } {
                                button.link type="submit" aria-label={ (lang.t("Remove", "删除")) " " (i + 1) } { (lang.t("Remove", "删除")) }
                            }
                        }
                    }
                }
            }
            h2 { (lang.t("Add a document", "上传材料")) }
            p.hint { (lang.t("JPEG, PNG or PDF; one file per upload.", "支持 JPEG、PNG、PDF，每次上传一个文件。")) }
            @for kind in &kinds { (upload_form(lang, *kind)) }
            (panel(lang, checklist))
            p.next {
                a.button href="/appeal/prepare" { (lang.t("Back", "上一步")) }
                " "
                a.button #to-face href="/appeal/face" { (lang.t("Continue to facial recognition", "下一步：人脸识别")) }
            }
        }
    }
}

fn upload_form(lang: Lang, kind: DocumentKind) -> Markup {
    let id = kind.as_str();
    html! {
        form.upload method="post" action="/appeal/documents" enctype="multipart/form-data"
            hx-post="/appeal/documents" hx-encoding="multipart/form-data" hx-target="#documents" hx-swap="outerHTML" {
            fieldset {
                legend { (lang.document(kind)) }
                input type="hidden" name="kind" value=(id);
                @match kind {
                    DocumentKind::IndividualAppealLetter | DocumentKind::NewLegalRepresentativeIdCard => {
                        (stamped(lang, id))
                    }
                    DocumentKind::EnterpriseAppealLetter => {
                        (stamped(lang, id))
                        label for={ (id) "-company" } { (lang.t("Company named in the letter (deregistered enterprises: the new company)", "函件中的公司名称（已注销企业填写新公司）")) }
                        input id={ (id) "-company" } type="text" name="company_name";
                    }
                    DocumentKind::MemberAccountHolderChangeForm => { (share(lang, id)) }
                    DocumentKind::AssetDisposalCertificate => {
                        label for={ (id) "-issued" } { (lang.t("Issued", "出具时间")) }
                        select id={ (id) "-issued" } name="issued" {
                            option value="before_deregistration" { (lang.t("Before deregistration", "注销前")) }
                            option value="after_deregistration" { (lang.t("After deregistration", "注销后")) }
                        }
                        label for={ (id) "-attestation" } { (lang.t("Attested by", "证明方式")) }
                        select id={ (id) "-attestation" } name="attestation" {
                            option value="company_seal" { (lang.t("The company seal", "加盖公司公章")) }
                            option value="shareholder_signatures" { (lang.t("Shareholders' signatures and fingerprints", "股东签字并按手印")) }
                        }
                        (share(lang, id))
                    }
                    _ => {}
                }
                label for={ (id) "-file" } { (lang.t("File", "文件")) }
                input id={ (id) "-file" } type="file" name="file" accept=".jpg,.jpeg,.png,.pdf,image/jpeg,image/png,application/pdf" required;
                progress.upload-progress value="0" max="100" hidden aria-label={ (lang.t("Upload progress", "上传进度")) " " (lang.document(kind)) } {}
                button id={ (id) "-upload" } type="submit" { (lang.t("Upload", "上传")) }
            }
        }
    }
}

fn stamped(lang: Lang, id: &str) -> Markup {
    html! {
        div.choice {
            input type="checkbox" id={ (id) "-stamped" } name="stamped" value="1";
            label for={ (id) "-stamped" } { (lang.t("It carries the official seal", "已加盖公章")) }
        }
    }
}

fn share(lang: Lang, id: &str) -> Markup {
    html! {
        label for={ (id) "-share" } { (lang.t("Shares held by the signatories (%)", "签字股东合计持股比例（%）")) }
        input id={ (id) "-share" } type="number" name="signatory_share_percent" min="0" max="100" step="0.01";
    }
}

/// `POST /appeal/documents`: one upload; answers the documents part (htmx) or the page.
pub async fn add(State(state): State<Shared>, headers: HeaderMap, lang: Lang, body: Body) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let (status, outcome) = match receive(&state, &headers, body).await {
        Ok(received) => {
            let kind = received.entry.get("kind").and_then(Value::as_str).and_then(|k| k.parse().ok());
            let name = received.entry.get("file_name").and_then(Value::as_str).unwrap_or("").to_string();
            let refused_kind = kind.and_then(|k| state.drafts.room_for(&draft, k).err());
            if let Some(full) = refused_kind {
                received.staged.discard().await;
                (StatusCode::UNPROCESSABLE_ENTITY, Outcome::Refused(full.to_string()))
            } else {
                match state.drafts.add_document(&draft, received).await {
                    Ok(_) => (StatusCode::OK, Outcome::Accepted(kind.unwrap_or(DocumentKind::Supplementary), name)),
                    Err(e) => (StatusCode::UNPROCESSABLE_ENTITY, Outcome::Refused(e.to_string())),
                }
            }
        }
        Err(Refused::Form(why) | Refused::File(why)) => (StatusCode::UNPROCESSABLE_ENTITY, Outcome::Refused(why)),
        Err(Refused::Internal(why)) => {
            tracing::error!(%why, "an upload failed");
            (StatusCode::INTERNAL_SERVER_ERROR, Outcome::Refused(lang.t("please try again", "请重试").into()))
        }
    };
    // Read the draft again: the checklist shows the new document.
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let checklist = state.drafts.checklist(&draft).await.map_err(|e| failed(lang, &e))?;
    let part = section(lang, &draft, &checklist, Some(&outcome));
    if headers.contains_key("hx-request") {
        // htmx swaps only a successful answer; the refusal is part of the section.
        return Ok(part.into_response());
    }
    Ok((status, shell(lang, title(lang), &nav(lang), part)).into_response())
}

/// `POST /appeal/documents/{index}/remove`.
pub async fn remove(
    State(state): State<Shared>,
    headers: HeaderMap,
    lang: Lang,
    Path(index): Path<String>,
) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    state.drafts.remove_document(&draft, &index).await.map_err(|e| failed(lang, &e))?;
    Ok(see_other("/appeal/documents"))
}
