//! One appeal as the desk sees it: the applicant's data masked, the documents as
//! submitted shown inline (each view logged), the facial-recognition result, the history
//! as a timeline with the review deadline explained, and the decisions — claim, release,
//! approve, reject with reasons naming the documents. Every decision carries the version
//! the page showed: a page gone stale gets "changed meanwhile", never an overwrite.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};

use super::Console;
use crate::app::desk::{self, ApplicantView};
use crate::app::problem::{Classify, Kind};
use crate::app::review::{self, AppealDetail};
use crate::domain::document::DocumentKind;
use crate::domain::rejection;
use crate::domain::{Role, TicketNumber};
use crate::http::Shared;
use crate::http::web::form::Form;
use crate::http::web::i18n::Lang;
use crate::http::web::see_other;
use crate::workflow::Fire;

fn ticket(console: &Console, raw: &str) -> Result<TicketNumber, Response> {
    crate::app::parse_ticket(raw)
        .map_err(|_| console.refusal(StatusCode::NOT_FOUND, console.lang.t("No such ticket.", "没有这个工单号。")))
}

pub async fn page(State(state): State<Shared>, console: Console, Path(raw): Path<String>) -> Response {
    let lang = console.lang;
    let ticket = match ticket(&console, &raw) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let (detail, person) =
        match (review::detail(state.engine(), &ticket).await, desk::applicant(state.engine(), &ticket).await) {
            (Ok(d), Ok(a)) => (d, a),
            (Err(e), _) | (_, Err(e)) => return console.refusal(StatusCode::NOT_FOUND, &e.problem().detail),
        };
    let body = html! {
        (summary(&state, lang, &detail))
        (decisions(&state, &console, &detail))
        (applicant(lang, &person))
        (documents(&console, &detail))
        (timeline(&state, lang, &detail))
    };
    console.page(&format!("{} {}", lang.t("Appeal", "申诉"), detail.appeal.ticket), body).into_response()
}

fn holds_claim(console: &Console, d: &AppealDetail) -> bool {
    d.appeal.assignee.as_deref() == Some(console.actor().name.as_str())
}

/// The appeal waits for a second approval the signed-in staff member may give.
fn may_give_second_approval(console: &Console, d: &AppealDetail) -> bool {
    d.first_approval.is_some()
        && crate::workflow::decide::second_approver(d.first_approval.as_ref(), console.actor()).is_ok()
}

fn summary(state: &Shared, lang: Lang, d: &AppealDetail) -> Markup {
    let tz = state.engine().workflow().calendar.time_zone;
    html! {
        dl.progress #summary {
            dt { (lang.t("State", "状态")) } dd #state data-state=(d.appeal.state) { (lang.state(&d.appeal.state)) }
            @if let Some(o) = &d.appeal.outcome { dt { (lang.t("Outcome", "结果")) } dd { (lang.outcome(o)) } }
            dt { (lang.t("Version", "版本")) } dd { (d.appeal.version) }
            dt { (lang.t("Claimed by", "认领人")) } dd #assignee { (d.appeal.assignee.as_deref().unwrap_or("—")) }
            dt { (lang.t("Account", "账号")) } dd { (d.appeal.account) }
            dt { (lang.t("Items", "申诉事项")) } dd { (d.items.iter().map(|i| lang.item(*i)).collect::<Vec<_>>().join(", ")) }
            @if let Some(case) = &d.case { dt { (lang.t("Case", "情形")) } dd { code { (case) } } }
            @if let Some(due) = &d.appeal.review_due_at {
                dt { (lang.t("Review due", "审核截止")) } dd { (lang.when_text(tz, due)) }
            }
            @if let Some(first) = &d.first_approval {
                dt { (lang.t("First approval", "第一审批")) }
                dd #first-approval { (first.by) " — " (lang.t("needs a second approver:", "需第二人审批：")) " " (first.rule) }
            }
            @if let Some(p) = &d.pending_change {
                dt { (lang.t("Cooling-off", "冷静期")) }
                dd #pending-change { (p.approved_by) " — " (p.change) ": " (lang.t(
                    "waits for the account holder to object before anything is applied",
                    "在应用任何变更前等待账号持有人提出异议")) }
            }
            @if let Some(dispute) = &d.disputed {
                dt { (lang.t("Disputed", "有争议")) }
                dd #disputed .notice.warning { (lang.t(
                    "the account holder stopped an approved change", "账号持有人阻止了已批准的变更"))
                    " (" (dispute.change) ", " (dispute.approved_by) ", " (lang.when_text(tz, &dispute.at.to_rfc3339())) ")" }
            }
            @if d.entity_change.required {
                dt { (lang.t("Entity change", "主体变更")) }
                dd { @match &d.entity_change.ticket {
                    Some(t) => { (lang.t("linked:", "已关联：")) " " (t) },
                    None => (lang.t("required, not linked yet", "需要，尚未关联")),
                } }
            }
        }
    }
}

fn decisions(state: &Shared, console: &Console, d: &AppealDetail) -> Markup {
    let lang = console.lang;
    let b = state.engine().workflow().bindings();
    let wf = state.engine().workflow();
    let role = console.actor().role;
    let can = |transition: &str| {
        wf.transition(transition).is_some_and(|t| t.from.contains(&d.appeal.state) && t.roles.contains(&role))
    };
    let form = |action: &str, label: &str, class: &str| {
        html! {
            form method="post" action={ "/console/appeals/" (d.appeal.ticket) "/decide" } {
                (console.csrf_field())
                input type="hidden" name="version" value=(d.appeal.version);
                button id=(action) type="submit" name="action" value=(action) class=(class) { (label) }
            }
        }
    };
    let mine = holds_claim(console, d);
    html! {
        section.actions #decisions aria-labelledby="decisions-title" {
            h2 #decisions-title { (lang.t("Decide", "处理")) }
            @if can(&b.claim) && d.appeal.assignee.is_none() { (form("claim", lang.t("Claim", "认领"), "")) }
            @if can(&b.release) && mine { (form("release", lang.t("Release", "释放"), "secondary")) }
            @if can(&b.approve) && (mine || console.actor().role != Role::Reviewer) {
                (form("approve", lang.t("Approve", "通过"), ""))
            }
            @if can(&b.reject) && (mine || console.actor().role != Role::Reviewer) {
                form method="post" action={ "/console/appeals/" (d.appeal.ticket) "/decide" } {
                    (console.csrf_field())
                    input type="hidden" name="version" value=(d.appeal.version);
                    fieldset {
                        legend { (lang.t("Reject: the reasons", "驳回原因")) }
                        div.choice {
                            input type="checkbox" id="r-missing" name="reason" value="missing_documents";
                            label for="r-missing" { (lang.t("Documents are missing", "缺少材料")) }
                        }
                        div.choice {
                            input type="checkbox" id="r-bad" name="reason" value="documents_not_meeting_requirements";
                            label for="r-bad" { (lang.t("Documents do not meet the requirements", "材料不符合要求")) }
                        }
                        label for="r-docs" { (lang.t("The documents concerned", "涉及的材料")) }
                        select #r-docs name="documents" multiple size="6" {
                            @for k in DocumentKind::ALL { option value=(k.as_str()) { (lang.document(k)) } }
                        }
                        div.choice {
                            input type="checkbox" id="r-scenario" name="reason" value="inapplicable_scenario";
                            label for="r-scenario" { (lang.t("The scenario does not apply", "申诉情形不适用")) }
                        }
                        label for="r-other" { (lang.t("Another reason, in words", "其他原因（请填写）")) }
                        input #r-other type="text" name="other";
                        button.danger #reject type="submit" name="action" value="reject" { (lang.t("Reject", "驳回")) }
                    }
                }
            }
            @if let (Some(confirm), Some(back), Some(_)) = (&b.confirm_approval, &b.send_back, &d.first_approval) {
                @if !may_give_second_approval(console, d) {
                    p.hint #four-eyes { (lang.t("You gave or held this approval: a second staff member must confirm it.", "您给出或认领了此审批：需由另一位工作人员确认。")) }
                } @else {
                    @if can(confirm) { (form("confirm_approval", lang.t("Confirm the approval", "确认通过"), "")) }
                    @if can(back) {
                        form method="post" action={ "/console/appeals/" (d.appeal.ticket) "/decide" } {
                            (console.csrf_field())
                            input type="hidden" name="version" value=(d.appeal.version);
                            label for="send-back-reason" { (lang.t("Send back: why", "退回原因")) }
                            input #send-back-reason type="text" name="send_back_reason" required;
                            button.secondary #send_back type="submit" name="action" value="send_back" { (lang.t("Send back", "退回")) }
                        }
                    }
                }
            }
            @if d.appeal.assignee.is_some() && !mine && can(&b.claim) {
                p.hint { (lang.t("Claimed by someone else.", "已被他人认领。")) }
            }
        }
    }
}

fn applicant(lang: Lang, a: &ApplicantView) -> Markup {
    html! {
        section aria-labelledby="applicant-title" {
            h2 #applicant-title { (lang.t("Applicant (masked)", "申诉人信息（已脱敏）")) }
            dl.progress {
                dt { (lang.t("Operator", "操作人")) } dd { (a.operator_name.as_deref().unwrap_or("—")) }
                dt { (lang.t("Operator's ID number", "操作人身份证号")) } dd { (a.operator_id_masked.as_deref().unwrap_or("—")) }
                dt { (lang.t("Contact phone", "联系手机")) } dd { (a.contact_phone_masked.as_deref().unwrap_or("—")) }
                dt { (lang.t("Facial recognition", "人脸识别")) }
                dd #face { @match &a.facial_recognition {
                    Some(f) => { (format!("{:?}", f.result).to_lowercase()) " — " (f.provider) ", " (lang.t("reference", "流水号")) " " code { (f.reference) } },
                    None => (lang.t("none recorded", "无记录")),
                } }
            }
        }
    }
}

fn documents(console: &Console, d: &AppealDetail) -> Markup {
    let lang = console.lang;
    // A reviewer reads the documents of an appeal they hold, or whose waiting first
    // approval they may confirm (as `review::document` serves them).
    let may_view =
        holds_claim(console, d) || console.actor().role != Role::Reviewer || may_give_second_approval(console, d);
    html! {
        section aria-labelledby="documents-title" {
            h2 #documents-title { (lang.t("Documents as submitted", "提交的材料")) }
            @if !may_view { p.notice { (lang.t("Claim the appeal to view its documents.", "认领后可查看材料。")) } }
            @for doc in &d.documents {
                figure.doc {
                    figcaption { (lang.document(doc.kind)) " — " (doc.file_name.as_deref().unwrap_or("")) }
                    @if let (true, Some(sha)) = (may_view, &doc.sha256) {
                        @let src = format!("/console/appeals/{}/documents/{sha}", d.appeal.ticket);
                        @if doc.content_type == Some("application/pdf") {
                            iframe src=(src) title=(lang.document(doc.kind)) {}
                        } @else {
                            img src=(src) alt=(lang.document(doc.kind));
                        }
                    }
                }
            }
        }
    }
}

fn timeline(state: &Shared, lang: Lang, d: &AppealDetail) -> Markup {
    let tz = state.engine().workflow().calendar.time_zone;
    let received = d
        .appeal
        .history
        .iter()
        .rev()
        .find(|h| h.from.is_none() || h.to == "submitted")
        .and_then(|h| chrono::DateTime::parse_from_rfc3339(&h.at).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    html! {
        section aria-labelledby="history-title" {
            h2 #history-title { (lang.t("History", "处理记录")) }
            ol.timeline #history {
                @for h in &d.appeal.history {
                    li {
                        strong { (h.transition) } " — " (lang.state(&h.to)) " · " (h.actor) " (" (h.role) ") · " (lang.when_text(tz, &h.at))
                        @if !h.reasons.is_empty() {
                            ul { @for r in &h.reasons { li { (rejection::in_words(r, lang.locale())) } } }
                        }
                    }
                }
            }
            @if let Some(at) = received { (crate::http::web::deadline::explained(lang, state.engine().workflow_at(d.appeal.workflow_version), at)) }
        }
    }
}

/// `POST /console/appeals/{ticket}/decide`: claim, release, approve, reject, confirm or
/// send back a first approval, at the version the page showed.
pub async fn decide(State(state): State<Shared>, console: Console, Path(raw): Path<String>, f: Form) -> Response {
    if let Err(refused) = console.check_csrf(&f) {
        return refused;
    }
    let lang = console.lang;
    let ticket = match ticket(&console, &raw) {
        Ok(t) => t,
        Err(r) => return r,
    };
    let b = state.engine().workflow().bindings();
    let transition = match f.get("action") {
        Some("claim") => &b.claim,
        Some("release") => &b.release,
        Some("approve") => &b.approve,
        Some("reject") => &b.reject,
        Some("confirm_approval") if b.confirm_approval.is_some() => b.confirm_approval.as_ref().expect("checked"),
        Some("send_back") if b.send_back.is_some() => b.send_back.as_ref().expect("checked"),
        _ => return console.refusal(StatusCode::UNPROCESSABLE_ENTITY, lang.t("Unknown decision.", "未知的操作。")),
    };
    let mut cmd = Fire::new(transition.as_str());
    cmd.expect_version = f.get("version").and_then(|v| v.parse().ok());
    if f.get("action") == Some("reject") {
        cmd.reasons = reasons(&f);
        if let Err(why) = rejection::check_reasons(&cmd.reasons) {
            return console.refusal(StatusCode::UNPROCESSABLE_ENTITY, &why);
        }
    }
    if f.get("action") == Some("send_back") {
        cmd.reasons = f.get("send_back_reason").map(str::to_string).into_iter().collect();
    }
    match state.engine().fire(&ticket, &cmd, console.actor(), None).await {
        Ok(_) => see_other(&format!("/console/appeals/{}", ticket.as_str())),
        Err(e) => {
            let p = e.problem();
            let message = if p.kind == Kind::Conflict {
                lang.t(
                    "This appeal changed meanwhile (someone else acted on it): nothing was changed. Reload it to see where it stands, then decide again.",
                    "该申诉已被他人更改：本次操作未生效。请刷新页面查看最新状态后再处理。",
                )
                .to_string()
            } else {
                p.detail
            };
            let mut r = console.refusal(StatusCode::CONFLICT, &message);
            if p.kind != Kind::Conflict {
                *r.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            }
            r
        }
    }
}

/// The reasons as stored: `code` or `code: documents`, and `other: words`.
fn reasons(f: &Form) -> Vec<String> {
    let docs = f.all("documents").join(", ");
    let mut out: Vec<String> = f
        .all("reason")
        .into_iter()
        .map(|code| match code {
            "missing_documents" | "documents_not_meeting_requirements" if !docs.is_empty() => format!("{code}: {docs}"),
            other => other.to_string(),
        })
        .collect();
    if let Some(words) = f.get("other") {
        out.push(format!("other: {words}"));
    }
    out
}

/// `GET /console/appeals/{ticket}/documents/{sha256}`: one document, inline, each view
/// logged by the app (who, which appeal, which document). PDFs are served into a
/// sandbox: no script of theirs runs, nothing of the console is reachable from them.
pub async fn document(
    State(state): State<Shared>,
    console: Console,
    Path((raw, sha)): Path<(String, String)>,
) -> Response {
    let ticket = match ticket(&console, &raw) {
        Ok(t) => t,
        Err(r) => return r,
    };
    match review::document(state.engine(), state.intake.blobs().as_ref(), &ticket, &sha, console.actor()).await {
        Ok(d) => {
            let mut r = d.bytes.into_response();
            let h = r.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(d.content_type));
            // Images: sandboxed outright. PDFs: shown by the browser's own viewer, which a
            // sandbox would refuse; their scripts and actions were refused at upload.
            let csp = if d.content_type == "application/pdf" {
                "default-src 'none'; frame-ancestors 'self'"
            } else {
                "sandbox; default-src 'none'; frame-ancestors 'self'"
            };
            h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp));
            if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", d.file_name)) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
            // The console frames its own PDFs; nothing else may.
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("SAMEORIGIN"));
            r
        }
        Err(e) => {
            let p = e.problem();
            let status = if p.kind == Kind::NotAllowed { StatusCode::FORBIDDEN } else { StatusCode::NOT_FOUND };
            console.refusal(status, &p.detail)
        }
    }
}
