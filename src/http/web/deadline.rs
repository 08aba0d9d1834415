//! A review deadline explained day by day, as the workflow's calendar counts it: the day
//! of receipt (never counted), each business day counted, each weekend day and holiday
//! skipped (with its name), make-up working days counted. Shown to applicants after
//! they submit and to reviewers on the appeal's page.

use chrono::{DateTime, Utc};
use maud::{Markup, html};

use crate::calendar::{BusinessDays, DayKind, DayRole};
use crate::http::web::i18n::Lang;
use crate::workflow::Workflow;
use crate::workflow::definition::Span;

/// The review SLA's length in business days, when the workflow counts it so.
fn review_days(wf: &Workflow) -> Option<u32> {
    match wf.review_sla().after {
        Span::BusinessDays(n) => Some(n),
        _ => None,
    }
}

/// `wf`: the version of the workflow the appeal runs on.
pub fn explained(lang: Lang, wf: &Workflow, received: DateTime<Utc>) -> Markup {
    let cal = &wf.calendar;
    let Some(n) = review_days(wf) else { return html! {} };
    let Ok(ex) = cal.explain_business_deadline(received, BusinessDays(n)) else {
        return html! {};
    };
    let tz = cal.time_zone;
    html! {
        div.deadline {
            p {
                (lang.t("Review deadline:", "审核截止时间：")) " " strong { (lang.when(tz, ex.due)) } ". "
                (lang.t("That is the end of the", "即受理日之后第")) " " (n) " "
                (lang.t("business days after the day of receipt (that day does not count).", "个工作日结束时（受理当日不计）。"))
            }
            @if ex.provisional {
                p.notice.warning { (lang.t(
                    "This deadline reaches past the holidays published so far: it is provisional and may move when the official arrangement is published.",
                    "该截止时间超出了已公布的节假日安排，为暂定时间，正式安排公布后可能调整。")) }
            }
            details {
                summary { (lang.t("How the days were counted", "工作日的计算方式")) }
                ol.days {
                    @for d in &ex.days {
                        li class=(role_class(&d.role)) {
                            (d.date.format("%Y-%m-%d")) " (" (lang.weekday(d.date)) "): "
                            @match (&d.role, &d.kind) {
                                (DayRole::DayOfReceipt, _) => (lang.t("day of receipt, not counted", "受理当日，不计")),
                                (DayRole::Counted(i), DayKind::MakeupWorkingDay { for_holiday }) => {
                                    (lang.t("make-up working day for", "调休上班日，")) " " (for_holiday) ", "
                                    (lang.t("counted as business day", "计为第")) " " (i) (lang.t("", " 个工作日"))
                                }
                                (DayRole::Counted(i), _) => {
                                    (lang.t("business day", "第")) " " (i) (lang.t("", " 个工作日"))
                                }
                                (DayRole::Skipped, DayKind::Holiday { name }) => { (lang.t("holiday, skipped:", "节假日，跳过：")) " " (name) }
                                (DayRole::Skipped, _) => (lang.t("weekend, skipped", "周末，跳过")),
                            }
                        }
                    }
                }
            }
        }
    }
}

fn role_class(role: &DayRole) -> &'static str {
    match role {
        DayRole::DayOfReceipt => "receipt",
        DayRole::Counted(_) => "counted",
        DayRole::Skipped => "skipped",
    }
}
