//! Prepare: the items (the help page's eight, several allowed), the enterprise's
//! situation, the operator and the contacts. The checklist beside the form follows each
//! choice (htmx posts the form to the preview as it changes; without scripts, saving
//! shows it), computed by the same rules the API uses.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Map, Value, json};

use super::checklist::panel;
use super::start::errs;
use super::{draft_or_start, failed, nav, see_other};
use crate::app::drafts::{DraftError, to_input};
use crate::app::intake::IntakeError;
use crate::domain::draft::Scenario;
use crate::domain::{AppealItem, FieldError};
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::layout::{Page, field_errors, shell};

fn title(lang: Lang) -> &'static str {
    lang.t("Step 1: prepare the appeal", "第一步：准备申诉")
}

pub async fn page(State(state): State<Shared>, headers: HeaderMap, lang: Lang) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let checklist = state.drafts.checklist(&draft).await.map_err(|e| failed(lang, &e))?;
    let body = html! {
        div.columns {
            (form(lang, &draft.data, &[]))
            div #preview { (panel(lang, &checklist)) }
        }
    };
    Ok(shell(lang, title(lang), &nav(lang), body).into_response())
}

/// The draft's fields from the form, the entry point kept from the stored draft.
fn fields(stored: &Value, f: &Form, lang: Lang) -> Value {
    let mut m = Map::new();
    m.insert("entry_point".into(), stored.get("entry_point").cloned().unwrap_or(Value::Null));
    m.insert("items".into(), json!(f.all("items")));
    m.insert("also_change_secure_phone".into(), json!(f.checked("also_change_secure_phone")));
    if let Some(s) = f.get("scenario") {
        m.insert("scenario".into(), json!(s));
    }
    let mut op = Map::new();
    if let Some(k) = f.get("operator_kind") {
        op.insert("kind".into(), json!(k));
    }
    op.insert("claims_legal_representative".into(), json!(f.checked("claims_legal_representative")));
    for (field, name) in [("operator_name", "name"), ("operator_id_number", "id_number")] {
        if let Some(v) = f.get(field) {
            op.insert(name.into(), json!(v));
        }
    }
    m.insert("operator".into(), Value::Object(op));
    for (field, name) in [
        ("contact_phone", "contact_phone"),
        ("contact_email", "contact_email"),
        ("supplementary_content", "supplementary_content"),
    ] {
        if let Some(v) = f.get(field) {
            m.insert(name.into(), json!(v));
        }
    }
    if f.get("new_company_name").is_some() || f.get("new_company_credit_code").is_some() {
        m.insert(
            "new_company".into(),
            json!({ "name": f.get("new_company_name"), "credit_code": f.get("new_company_credit_code") }),
        );
    }
    m.insert("locale".into(), json!(lang.code()));
    Value::Object(m)
}

/// `POST /appeal/prepare/preview`: the checklist for the form as it stands (not saved).
pub async fn preview(State(state): State<Shared>, headers: HeaderMap, lang: Lang, f: Form) -> Response {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return r,
    };
    let mut data = fields(&draft.data, &f, lang);
    data["documents"] = draft.data.get("documents").cloned().unwrap_or(json!([]));
    let checked = match to_input(&data) {
        Ok(input) => state.intake.checklist(input).await.map_err(DraftError::from),
        Err(e) => Err(e),
    };
    match checked {
        Ok(c) => panel(lang, &c).into_response(),
        Err(DraftError::Intake(IntakeError::Invalid(errors))) => html! {
            section #checklist aria-live="polite" {
                div.notice.error role="alert" {
                    p { (lang.t("Check these fields:", "请检查以下内容：")) }
                    ul { @for e in &errors { li { (e.to_string()) } } }
                }
            }
        }
        .into_response(),
        Err(e) => failed(lang, &e).into_response(),
    }
}

/// `POST /appeal/prepare`: saves the fields (refused as a whole, each field named).
pub async fn save(State(state): State<Shared>, headers: HeaderMap, lang: Lang, f: Form) -> Result<Response, Page> {
    let draft = match draft_or_start(&state, &headers).await {
        Ok(d) => d,
        Err(r) => return Ok(r),
    };
    let data = fields(&draft.data, &f, lang);
    match state.drafts.replace(&draft, data.clone()).await {
        Ok(_) => Ok(see_other("/appeal/documents")),
        Err(DraftError::Intake(IntakeError::Invalid(errors))) => {
            let body = html! {
                div.notice.error role="alert" {
                    p { (lang.t("Nothing was saved. Check these fields:", "未保存。请检查以下内容：")) }
                    ul { @for e in &errors { li { (e.to_string()) } } }
                }
                div.columns { (form(lang, &data, &errors)) div #preview {} }
            };
            Ok((axum::http::StatusCode::UNPROCESSABLE_ENTITY, shell(lang, title(lang), &nav(lang), body))
                .into_response())
        }
        Err(e) => Err(failed(lang, &e)),
    }
}

fn text<'a>(data: &'a Value, pointer: &str) -> Option<&'a str> {
    data.pointer(pointer).and_then(Value::as_str)
}

fn form(lang: Lang, data: &Value, errors: &[FieldError]) -> Markup {
    let items: Vec<&str> =
        data.get("items").and_then(Value::as_array).map_or(vec![], |a| a.iter().filter_map(Value::as_str).collect());
    let scenario = text(data, "/scenario");
    let op_kind = text(data, "/operator/kind");
    let stored_id = text(data, "/operator/id/masked");
    let input = |id: &str, name: &str, label: &str, value: Option<&str>, kind: &str, field: &str| {
        let err_id = format!("{id}-err");
        html! {
            div.field {
                label for=(id) { (label) }
                input id=(id) type=(kind) name=(name) value=[value] aria-describedby=(err_id);
                (errs(&err_id, &field_errors(errors, field)))
            }
        }
    };
    html! {
        form #prepare method="post" action="/appeal/prepare"
            hx-post="/appeal/prepare/preview" hx-trigger="change, input changed delay:600ms" hx-target="#checklist" hx-swap="outerHTML" {
            fieldset {
                legend { (lang.t("What do you need? (several allowed)", "申诉事项（可多选）")) }
                @for item in AppealItem::ALL {
                    div.choice {
                        input type="checkbox" name="items" id={ "item-" (item.as_str()) } value=(item.as_str())
                            checked[items.contains(&item.as_str())];
                        label for={ "item-" (item.as_str()) } { (lang.item(item)) }
                    }
                }
                div.choice {
                    input type="checkbox" name="also_change_secure_phone" id="also-phone" value="1"
                        checked[data.get("also_change_secure_phone").and_then(Value::as_bool).unwrap_or(false)];
                    label for="also-phone" { (lang.t("Also change my secure phone number", "同时修改安全手机")) }
                }
                (errs("items-err", &field_errors(errors, "items")))
            }
            fieldset {
                legend { (lang.t("Enterprise accounts: the enterprise", "企业账号：企业经营状态")) }
                @for s in [Scenario::Active, Scenario::NameChanged, Scenario::Deregistered] {
                    @let code = serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
                    div.choice {
                        input type="radio" name="scenario" id={ "scenario-" (code) } value=(code) checked[scenario == Some(code.as_str())];
                        label for={ "scenario-" (code) } { (lang.scenario(s)) }
                    }
                }
                (errs("scenario-err", &field_errors(errors, "scenario")))
            }
            fieldset {
                legend { (lang.t("Who is appealing (the operator)", "申诉操作人")) }
                @for (value, en, zh) in [
                    ("verified_individual", "I am the verified individual (individual accounts)", "我是账号的实名认证本人（个人账号）"),
                    ("other_person", "Someone else, for the account", "他人代为申诉"),
                ] {
                    div.choice {
                        input type="radio" name="operator_kind" id={ "op-" (value) } value=(value) checked[op_kind == Some(value)];
                        label for={ "op-" (value) } { (lang.t(en, zh)) }
                    }
                }
                div.choice {
                    input type="checkbox" name="claims_legal_representative" id="op-legal" value="1"
                        checked[data.pointer("/operator/claims_legal_representative").and_then(Value::as_bool).unwrap_or(false)];
                    label for="op-legal" { (lang.t("I am the enterprise's legal representative (enterprise accounts)", "我是企业法定代表人（企业账号）")) }
                }
                (input("op-name", "operator_name", lang.t("Operator's name", "操作人姓名"), text(data, "/operator/name"), "text", "operator.name"))
                (input("op-id", "operator_id_number", lang.t("Operator's ID number (18 characters)", "操作人身份证号（18 位）"), None, "text", "operator.id_number"))
                @if let Some(masked) = stored_id {
                    p.hint { (lang.t("Saved as", "已保存为")) " " code { (masked) } " — " (lang.t("enter it again when you save changes.", "保存修改时请重新填写。")) }
                }
            }
            fieldset {
                legend { (lang.t("How we contact you", "联系方式")) }
                (input("contact-phone", "contact_phone", lang.t("Contact phone (mainland China mobile)", "联系手机（中国大陆）"), text(data, "/contact_phone"), "tel", "contact_phone"))
                (input("contact-email", "contact_email", lang.t("Contact email (optional)", "联系邮箱（可选）"), text(data, "/contact_email"), "email", "contact_email"))
            }
            fieldset {
                legend { (lang.t("Deregistered enterprises: the new company", "已注销企业：新公司")) }
                (input("nc-name", "new_company_name", lang.t("New company's name", "新公司名称"), text(data, "/new_company/name"), "text", "new_company.name"))
                (input("nc-code", "new_company_credit_code", lang.t("Unified Social Credit Code", "统一社会信用代码"), text(data, "/new_company/credit_code"), "text", "new_company.credit_code"))
            }
            div.field {
                label for="supplementary" { (lang.t("Anything else we should know (optional)", "补充说明（可选）")) }
                textarea #supplementary name="supplementary_content" rows="3" { (text(data, "/supplementary_content").unwrap_or("")) }
            }
            button #save type="submit" { (lang.t("Save and continue to the documents", "保存并上传材料")) }
        }
    }
}
