//! The document checklist as the applicant sees it: computed by the same rules.toml the
//! API uses, each document with its reason and whether it is required, optional or
//! conditional, and whether it is there yet.

use maud::{Markup, html};

use crate::domain::rules::{Checklist, Condition, EntryStatus, Need};
use crate::http::web::i18n::Lang;

pub fn panel(lang: Lang, c: &Checklist) -> Markup {
    html! {
        section #checklist aria-live="polite" aria-labelledby="checklist-title" {
            h2 #checklist-title { (lang.t("Documents for your case", "您需要准备的材料")) }
            @if let Some(title) = &c.case_title { p.case { (title) } }
            @if let Some(screening) = &c.screening {
                div.notice.warning role="alert" {
                    p { strong { (lang.t("This appeal will be rejected as it stands:", "按当前情况，申诉将被驳回：")) } " " (screening) }
                }
            }
            @if c.changes_secure_phone {
                p { (lang.t("If approved, your secure phone number is changed.", "审核通过后，您的安全手机将被修改。")) }
            }
            table.checklist {
                caption.visually-hidden { (lang.t("Documents, need and status", "材料、要求与状态")) }
                thead { tr {
                    th scope="col" { (lang.t("Document", "材料")) }
                    th scope="col" { (lang.t("Needed", "要求")) }
                    th scope="col" { (lang.t("Status", "状态")) }
                } }
                tbody {
                    @for e in &c.documents {
                        tr data-status=(status_code(e.status)) {
                            td {
                                (e.documents.iter().map(|k| lang.document(*k)).collect::<Vec<_>>().join(lang.t(" or ", " 或 ")))
                                p.reason { (e.reason) }
                            }
                            td { (need(lang, e.need, e.when)) }
                            td { span class={ "badge " (status_code(e.status)) } { (status(lang, e.status)) } }
                        }
                    }
                }
            }
            @if c.requires_entity_change_ticket {
                p.notice { (lang.t(
                    "After this appeal, file an entity-change request from the new company's account; the reviewer links it to this appeal.",
                    "本申诉之外，还需从新公司的账号提交实名认证主体变更申请，审核人员会将其与本申诉关联。")) }
            }
            @if c.ready() {
                p.ready role="status" { (lang.t("Everything needed is here: you may submit.", "所需材料已齐全，可以提交。")) }
            } @else {
                div.problems {
                    h3 { (lang.t("Still to do", "尚需完成")) }
                    ul { @for p in &c.problems { li { (p.rule) } } }
                }
            }
        }
    }
}

fn need(lang: Lang, need: Need, when: Option<Condition>) -> String {
    match (need, when) {
        (Need::Required, _) => lang.t("Required", "必需").into(),
        (Need::Optional, _) => lang.t("Optional", "可选").into(),
        (Need::Conditional, Some(Condition::ChangesSecurePhone)) => {
            lang.t("Required when the secure phone is changed", "修改安全手机时必需").into()
        }
        (Need::Conditional, Some(Condition::EnterpriseNameChanged)) => {
            lang.t("Required when the enterprise's name changed", "企业名称变更时必需").into()
        }
        (Need::Conditional, None) => lang.t("Conditional", "视情况而定").into(),
    }
}

fn status_code(s: EntryStatus) -> &'static str {
    match s {
        EntryStatus::Provided => "provided",
        EntryStatus::Missing => "missing",
        EntryStatus::Optional => "optional",
        EntryStatus::NotNeeded => "not-needed",
    }
}

fn status(lang: Lang, s: EntryStatus) -> &'static str {
    match s {
        EntryStatus::Provided => lang.t("Provided", "已上传"),
        EntryStatus::Missing => lang.t("Missing", "缺少"),
        EntryStatus::Optional => lang.t("Optional", "可选"),
        EntryStatus::NotNeeded => lang.t("Not needed", "无需提供"),
    }
}
