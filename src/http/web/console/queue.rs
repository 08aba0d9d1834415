//! The queue: open appeals by review deadline, breached first, with warning and breach
//! badges, counts by state, filters (state, item, scenario, mine or unclaimed) and
//! paging — one indexed query in the store, whatever the number of open appeals.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::Console;
use crate::app::review::{self, AssigneeFilter, QueuePage, QueueQuery};
use crate::domain::AppealItem;
use crate::domain::draft::Scenario;
use crate::http::Shared;
use crate::http::web::i18n::Lang;

const PER_PAGE: i64 = 25;

#[derive(Debug, Default, Deserialize)]
pub struct Filters {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    item: Option<String>,
    #[serde(default)]
    scenario: Option<String>,
    /// all, mine or unclaimed
    #[serde(default)]
    who: Option<String>,
    #[serde(default)]
    page: Option<i64>,
    /// A page's `next` cursor: the page after it (`page` then only numbers it).
    #[serde(default)]
    after: Option<String>,
}

fn parse<T: serde::de::DeserializeOwned>(raw: Option<&str>) -> Option<T> {
    raw.filter(|s| !s.is_empty()).and_then(|s| serde_json::from_value(serde_json::Value::String(s.into())).ok())
}

pub async fn page(State(state): State<Shared>, console: Console, Query(f): Query<Filters>) -> Response {
    let lang = console.lang;
    let query = QueueQuery {
        states: f.state.iter().filter(|s| !s.is_empty()).cloned().collect(),
        page: f.page.unwrap_or(1).max(1),
        per_page: PER_PAGE,
        after: f.after.clone().filter(|a| !a.is_empty()),
        item: parse::<AppealItem>(f.item.as_deref()),
        scenario: parse::<Scenario>(f.scenario.as_deref()),
        assignee: match f.who.as_deref() {
            Some("mine") => AssigneeFilter::Named(console.actor().name.clone()),
            Some("unclaimed") => AssigneeFilter::Unclaimed,
            _ => AssigneeFilter::Any,
        },
    };
    let body = match review::queue(state.engine(), query).await {
        Ok(page) => html! { (filters(&state, lang, &f)) (table(&state, lang, &page, &f)) },
        Err(e) => html! { div.notice.error role="alert" { p { (e.to_string()) } } (filters(&state, lang, &f)) },
    };
    console.page(lang.t("Review queue", "待审队列"), body).into_response()
}

fn filters(state: &Shared, lang: Lang, f: &Filters) -> Markup {
    let open = state.engine().workflow().open_states();
    let sel = |v: &Option<String>, x: &str| v.as_deref() == Some(x);
    html! {
        form.filters method="get" action="/console" role="search" aria-label=(lang.t("Filter the queue", "筛选队列")) {
            div {
                label for="f-state" { (lang.t("State", "状态")) }
                select #f-state name="state" {
                    option value="" { (lang.t("Awaiting review (default)", "待审核（默认）")) }
                    @for s in &open { option value=(s) selected[sel(&f.state, s)] { (lang.state(s)) } }
                }
            }
            div {
                label for="f-item" { (lang.t("Item", "申诉事项")) }
                select #f-item name="item" {
                    option value="" { (lang.t("Any", "全部")) }
                    @for i in AppealItem::ALL { option value=(i.as_str()) selected[sel(&f.item, i.as_str())] { (lang.item(i)) } }
                }
            }
            div {
                label for="f-scenario" { (lang.t("Scenario", "企业状态")) }
                select #f-scenario name="scenario" {
                    option value="" { (lang.t("Any", "全部")) }
                    @for (code, s) in [("active", Scenario::Active), ("name_changed", Scenario::NameChanged), ("deregistered", Scenario::Deregistered)] {
                        option value=(code) selected[sel(&f.scenario, code)] { (lang.scenario(s)) }
                    }
                }
            }
            div {
                label for="f-who" { (lang.t("Claimed by", "认领人")) }
                select #f-who name="who" {
                    option value="all" { (lang.t("Anyone", "全部")) }
                    option value="mine" selected[sel(&f.who, "mine")] { (lang.t("Me", "我")) }
                    option value="unclaimed" selected[sel(&f.who, "unclaimed")] { (lang.t("Nobody (unclaimed)", "未认领")) }
                }
            }
            button type="submit" { (lang.t("Filter", "筛选")) }
        }
    }
}

/// The queue at page number `page`, or, with `after`, the page after that cursor
/// (numbered `page`), under the same filters.
fn link(f: &Filters, page: i64, after: Option<&str>) -> String {
    let mut q = vec![format!("page={page}")];
    if let Some(after) = after {
        q.push(format!("after={}", form_urlencoded::byte_serialize(after.as_bytes()).collect::<String>()));
    }
    for (k, v) in [("state", &f.state), ("item", &f.item), ("scenario", &f.scenario), ("who", &f.who)] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            q.push(format!("{k}={}", form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()));
        }
    }
    format!("/console?{}", q.join("&"))
}

fn table(state: &Shared, lang: Lang, page: &QueuePage, f: &Filters) -> Markup {
    let tz = state.engine().workflow().calendar.time_zone;
    let pages = ((page.total as i64) + page.per_page - 1) / page.per_page;
    html! {
        p.counts #counts {
            @for c in &page.counts {
                span data-state=(c.state) { (lang.state(&c.state)) ": " strong { (c.count) @if c.capped { "+" } } }
            }
        }
        @if page.items.is_empty() {
            p.notice role="status" { (lang.t("No appeal matches these filters.", "没有符合筛选条件的申诉。")) }
        } @else {
            table #queue {
                caption.visually-hidden { (lang.t("Open appeals, earliest review deadline first", "待审申诉，按审核截止时间排序")) }
                thead { tr {
                    th scope="col" { (lang.t("Ticket", "工单号")) }
                    th scope="col" { (lang.t("Review due", "审核截止")) }
                    th scope="col" { (lang.t("State", "状态")) }
                    th scope="col" { (lang.t("Items", "申诉事项")) }
                    th scope="col" { (lang.t("Account", "账号")) }
                    th scope="col" { (lang.t("Claimed by", "认领人")) }
                } }
                tbody {
                    @for i in &page.items {
                        tr {
                            td { a href={ "/console/appeals/" (i.ticket) } { (i.ticket) } }
                            td {
                                @if let Some(due) = &i.review_due_at { (lang.when_text(tz, due)) " " }
                                @if i.breached { span.badge.breached { (lang.t("SLA breached", "已超时")) } }
                                @else if i.warning { span.badge.warning { (lang.t("Due today", "即将超时")) } }
                            }
                            td { (lang.state(&i.state)) }
                            td { (i.items.iter().map(|x| lang.item(*x)).collect::<Vec<_>>().join(", ")) }
                            td { (i.account) }
                            td { (i.assignee.as_deref().unwrap_or("—")) }
                        }
                    }
                }
            }
        }
        nav.pager aria-label=(lang.t("Pages", "分页")) {
            // Next pages are read from where this one ended (any depth, one index read);
            // the previous one by its number while numbers reach it, else the first.
            @if page.page > 1 && page.page - 1 <= review::MAX_PAGE {
                a href=(link(f, page.page - 1, None)) rel="prev" { (lang.t("Previous", "上一页")) }
            } @else if page.page > 1 {
                a href=(link(f, 1, None)) rel="first" { (lang.t("First page", "首页")) }
            }
            @if page.total_capped {
                span { (lang.t("Page", "第")) " " (page.page) " · " (page.total) "+ " (lang.t("appeals", "条申诉")) }
            } @else {
                span { (lang.t("Page", "第")) " " (page.page) " / " (pages.max(1)) " · " (page.total) " " (lang.t("appeals", "条申诉")) }
            }
            @if let Some(next) = &page.next { a href=(link(f, page.page.saturating_add(1), Some(next))) rel="next" { (lang.t("Next", "下一页")) } }
        }
    }
}
