//! The review queue on SQLite and on PostgreSQL, through `app::review::queue` and the
//! store's `review_queue`: its order (breached first, then by deadline, then appeals
//! without one), each filter, paging, totals and counts per open state, and the appeal
//! row's queue columns following every transition that moves them (claim, release,
//! reject, resubmission, the SLA firing, close) in the commit that causes it.

use crate::common;

use std::sync::Arc;

use crate::common::{TestDb, at};
use appealflow::app::review::{self, AssigneeFilter, QueuePage, QueueQuery};
use appealflow::domain::draft::Scenario;
use appealflow::domain::{Actor, AppealItem, TicketNumber};
use appealflow::engine::{Engine, EngineError, ManualClock, NewAppeal};
use appealflow::store::{AssigneeMatch, QueueFilter, QueueRow};
use appealflow::workflow::Fire;
use serde_json::json;

on_both_backends!(
    queue_lists_breached_first_then_by_deadline_then_appeals_without_one,
    queue_filters_by_item_scenario_and_assignee_and_counts_each_open_state,
    queue_pages_keep_the_order_and_the_total,
    queue_reads_on_after_a_cursor_through_ties_and_appeals_without_a_deadline,
    queue_counts_stop_at_their_cap_and_say_so,
    queue_counts_each_item_under_every_filter_as_its_appeals_are,
    the_consoles_next_link_reads_on_by_cursor_and_the_last_page_has_none,
    queue_columns_follow_claim_release_reject_resubmit_the_sla_firing_and_close,
    queue_refuses_a_bad_assignee_and_an_unknown_state,
);

struct Harness {
    db: TestDb,
    clock: Arc<ManualClock>,
    engine: Arc<Engine>,
}

fn harness(db: TestDb) -> Harness {
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let engine = common::engine(&db, clock.clone());
    Harness { db, clock, engine }
}

fn appeal(account: &str, items: &[&str], scenario: Option<&str>) -> NewAppeal {
    let mut a = common::request(account);
    a.data["draft"]["items"] = json!(items);
    a.data["draft"]["scenario"] = json!(scenario);
    a
}

impl Harness {
    async fn create(&self, account: &str, items: &[&str], scenario: Option<&str>) -> TicketNumber {
        self.engine.create(&appeal(account, items, scenario), &common::applicant(), None).await.unwrap().ticket
    }

    async fn fire(&self, t: &TicketNumber, transition: &str, actor: &Actor, reasons: &[&str]) {
        let mut cmd = Fire::new(transition);
        cmd.reasons = reasons.iter().map(|r| r.to_string()).collect();
        self.engine.fire(t, &cmd, actor, None).await.unwrap_or_else(|e| panic!("{transition}: {e}"));
    }

    async fn queue(&self, query: QueueQuery) -> QueuePage {
        review::queue(&self.engine, query).await.unwrap()
    }

    /// The appeal's queue row as the store keeps it, read from every open state.
    async fn row(&self, t: &TicketNumber) -> Option<QueueRow> {
        let states = self.engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
        let filter = QueueFilter { states, limit: 1000, ..Default::default() };
        let slice = self.db.store.review_queue(&filter).await.unwrap();
        slice.rows.into_iter().find(|r| &r.ticket == t)
    }
}

fn tickets(page: &QueuePage) -> Vec<String> {
    page.items.iter().map(|i| i.ticket.clone()).collect()
}

fn states(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn count(page: &QueuePage, state: &str) -> i64 {
    page.counts.iter().find(|c| c.state == state).map_or(-1, |c| c.count)
}

async fn queue_lists_breached_first_then_by_deadline_then_appeals_without_one(db: TestDb) {
    let h = harness(db);
    let reviewer = common::reviewer("ann");
    // w: received Monday, approved: no review deadline any more.
    let w = h.create("w", &["reset_password"], None).await;
    h.fire(&w, "claim", &reviewer, &[]).await;
    h.fire(&w, "approve", &reviewer, &[]).await;
    // c arrives Wednesday, b Tuesday, a Monday (later than w): a's deadline passes first.
    h.clock.set(at("2026-03-09T11:00:00+08:00"));
    let a = h.create("a", &["reset_password"], None).await;
    h.clock.set(at("2026-03-11T10:00:00+08:00"));
    let c = h.create("c", &["reset_password"], None).await;
    h.clock.set(at("2026-03-10T10:00:00+08:00"));
    let b = h.create("b", &["reset_password"], None).await;
    // d and e arrive at one instant: one deadline, then oldest first, then by id.
    let d = h.create("d", &["reset_password"], None).await;
    let e = h.create("e", &["reset_password"], None).await;

    // Thursday midday: the start of a's last business day has passed (its warning is
    // due), not its deadline.
    h.clock.set(at("2026-03-12T12:00:00+08:00"));
    let page = h.queue(QueueQuery::default()).await;
    assert_eq!(tickets(&page)[0], a.to_string());
    assert!(!page.items[0].breached && page.items[0].warning, "{:?}", page.items[0]);
    assert!(!page.items[1].warning, "b's last business day has not begun: {:?}", page.items[1]);

    // Saturday: a and the Tuesday ones are past their deadlines; a's SLA timer fires.
    h.clock.set(at("2026-03-14T10:00:00+08:00"));
    h.engine.run_due_timers(100).await.unwrap();
    let everything = QueueQuery { states: states(&["submitted", "under_review", "approved"]), ..Default::default() };
    let page = h.queue(everything).await;
    let mut tied = Vec::new();
    for t in [&b, &d, &e] {
        tied.push((h.db.store.appeal_by_ticket(t).await.unwrap().unwrap().id, t.to_string()));
    }
    tied.sort();
    let tied = tied.into_iter().map(|(_, t)| t);
    let mut expected = vec![a.to_string()];
    expected.extend(tied);
    expected.extend([c.to_string(), w.to_string()]);
    assert_eq!(tickets(&page), expected, "breached, by deadline, then by id at one instant, none last");
    assert!(page.items[0].breached && page.items[0].warning);
    assert!(page.items[1].breached, "past its deadline, its timer not fired yet or fired: {:?}", page.items[1]);
    assert!(!page.items[4].breached, "c is due next Monday: {:?}", page.items[4]);
    assert_eq!(page.items[5].review_due_at, None);
    assert!(!page.items[5].breached && !page.items[5].warning);
    assert_eq!(page.items[5].state, "approved");
    assert_eq!(page.items[0].items, [AppealItem::ResetPassword]);
    assert_eq!(page.items[0].created_at, at("2026-03-09T11:00:00+08:00").to_rfc3339());
    assert_eq!(page.items[0].review_due_at.as_deref(), Some(at("2026-03-13T00:00:00+08:00").to_rfc3339().as_str()));
    let fired = h.row(&a).await.unwrap();
    assert!(fired.review_fired, "the SLA timer fired and the row says so");
}

async fn queue_filters_by_item_scenario_and_assignee_and_counts_each_open_state(db: TestDb) {
    let h = harness(db);
    let ann = common::reviewer("ann");
    let bob = common::reviewer("bob");
    // One deadline for all (the end of Thursday): the queue lists them oldest first.
    let mut made = Vec::new();
    let asked: [(&str, &[&str], Option<&str>); 5] = [
        ("p", &["reset_password", "detach_mfa"], Some("active")),
        ("q", &["detach_mfa"], Some("deregistered")),
        ("r", &["other"], Some("deregistered")),
        ("s", &["clear_ip_logon_mask"], None),
        ("t", &["detach_mfa"], Some("deregistered")),
    ];
    for (i, (account, items, scenario)) in asked.into_iter().enumerate() {
        h.clock.set(common::monday_morning() + chrono::Duration::minutes(i as i64));
        made.push(h.create(account, items, scenario).await);
    }
    let [p, q, r, s, t] = <[TicketNumber; 5]>::try_from(made).unwrap();
    h.fire(&q, "claim", &ann, &[]).await;
    h.fire(&r, "claim", &bob, &[]).await;
    h.fire(&t, "claim", &ann, &[]).await;
    h.fire(&t, "approve", &ann, &[]).await;
    // A deregistered enterprise's new entity: four-eyes, bob confirms.
    h.fire(&t, "confirm_approval", &bob, &[]).await;
    common::pass_cooling_off(&h.engine, &t).await;

    let ask = |item, scenario, assignee| QueueQuery { item, scenario, assignee, ..Default::default() };
    let page = h.queue(ask(Some(AppealItem::DetachMfa), None, AssigneeFilter::Any)).await;
    assert_eq!(tickets(&page), [p.to_string(), q.to_string()]);
    assert_eq!(page.total, 2);
    assert_eq!((count(&page, "submitted"), count(&page, "under_review"), count(&page, "approved")), (1, 1, 1));
    assert_eq!(count(&page, "rejected"), 0, "every open state is counted");
    assert_eq!(page.items[0].items, [AppealItem::ResetPassword, AppealItem::DetachMfa]);
    assert_eq!(page.items[0].scenario, Some(Scenario::Active));

    let page = h.queue(ask(None, Some(Scenario::Deregistered), AssigneeFilter::Any)).await;
    assert_eq!(tickets(&page), [q.to_string(), r.to_string()]);
    assert_eq!(count(&page, "approved"), 1);
    let page = h.queue(ask(None, None, AssigneeFilter::Unclaimed)).await;
    assert_eq!(tickets(&page), [p.to_string(), s.to_string()]);
    assert_eq!(page.items[1].scenario, None);
    assert_eq!(count(&page, "under_review"), 0);
    let page = h.queue(ask(None, None, AssigneeFilter::Named("ann".into()))).await;
    assert_eq!(tickets(&page), [q.to_string()]);
    assert_eq!(count(&page, "approved"), 0, "the approval released ann's claim on t");
    let page = h
        .queue(ask(Some(AppealItem::DetachMfa), Some(Scenario::Deregistered), AssigneeFilter::Named("bob".into())))
        .await;
    assert!(page.items.is_empty() && page.total == 0, "{page:?}");
    let page =
        h.queue(ask(Some(AppealItem::Other), Some(Scenario::Deregistered), AssigneeFilter::Named("bob".into()))).await;
    assert_eq!(tickets(&page), [r.to_string()]);
    // An item name holds `_`, a LIKE wildcard: it matches itself only.
    let page = h.queue(ask(Some(AppealItem::ClearIpLogonMask), None, AssigneeFilter::Any)).await;
    assert_eq!(tickets(&page), [s.to_string()]);
    let page = h.queue(ask(Some(AppealItem::ChangeSecurePhone), None, AssigneeFilter::Any)).await;
    assert!(page.items.is_empty());

    // The state filter narrows the page and the total, never the counts.
    let held = QueueQuery { states: states(&["under_review"]), ..Default::default() };
    let page = h.queue(held).await;
    assert_eq!(tickets(&page), [q.to_string(), r.to_string()]);
    assert_eq!(page.total, 2);
    assert_eq!((count(&page, "submitted"), count(&page, "under_review"), count(&page, "approved")), (2, 2, 1));
    let names: Vec<&str> = page.counts.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(names, h.engine.workflow().open_states());
}

async fn queue_pages_keep_the_order_and_the_total(db: TestDb) {
    let h = harness(db);
    let mut made = Vec::new();
    for i in 0..7 {
        h.clock.set(common::monday_morning() + chrono::Duration::hours(i));
        made.push(h.create(&format!("acct{i}"), &["reset_password"], None).await.to_string());
    }
    let mut seen = Vec::new();
    for page in 1..=4 {
        let got = h.queue(QueueQuery { page, per_page: 3, ..Default::default() }).await;
        assert_eq!(got.total, 7);
        assert_eq!((got.page, got.per_page), (page, 3));
        assert_eq!(count(&got, "submitted"), 7);
        seen.extend(tickets(&got));
    }
    assert_eq!(seen, made, "pages follow one another, each appeal once, the last one short, then none");
    let got = h.queue(QueueQuery { page: review::MAX_PAGE, per_page: 100, ..Default::default() }).await;
    assert!(got.items.is_empty() && got.total == 7 && got.next.is_none());
}

async fn queue_reads_on_after_a_cursor_through_ties_and_appeals_without_a_deadline(db: TestDb) {
    let h = harness(db);
    let reviewer = common::reviewer("ann");
    // Two approved (no deadline any more), arriving apart; five waiting, two of them at
    // one instant (one deadline, one creation instant: only the id orders them).
    for (i, hour) in [0, 3].into_iter().enumerate() {
        h.clock.set(common::monday_morning() + chrono::Duration::hours(hour));
        let t = h.create(&format!("done{i}"), &["reset_password"], None).await;
        h.fire(&t, "claim", &reviewer, &[]).await;
        h.fire(&t, "approve", &reviewer, &[]).await;
        common::pass_cooling_off(&h.engine, &t).await;
    }
    for (i, hour) in [1, 2, 2, 26, 50].into_iter().enumerate() {
        h.clock.set(common::monday_morning() + chrono::Duration::hours(hour));
        h.create(&format!("wait{i}"), &["reset_password"], None).await;
    }
    let all = states(&["submitted", "under_review", "approved"]);
    let whole = h.queue(QueueQuery { states: all.clone(), per_page: 100, ..Default::default() }).await;
    assert_eq!(whole.items.len(), 7);
    assert!(whole.items[5].review_due_at.is_none() && whole.items[6].review_due_at.is_none(), "{whole:?}");
    assert!(whole.next.is_none(), "one page holds them all");

    for per_page in [1, 2, 3, 6] {
        let mut seen = Vec::new();
        let mut after = None;
        let mut pages = 0;
        loop {
            let ask = QueueQuery { states: all.clone(), per_page, after: after.clone(), ..Default::default() };
            let got = h.queue(ask).await;
            assert_eq!(got.total, 7, "the counts do not depend on where the page starts");
            seen.extend(tickets(&got));
            pages += 1;
            match got.next {
                Some(next) => {
                    assert_eq!(got.items.len() as i64, per_page, "only a full page has a next");
                    after = Some(next);
                }
                None => break,
            }
        }
        assert_eq!(seen, tickets(&whole), "per_page {per_page}: the cursor pages are the queue, in order, once");
        assert_eq!(pages, 7_usize.div_ceil(per_page as usize), "per_page {per_page}: no empty last page");
    }

    // A cursor reads past page 100; without one, page numbers stop there.
    let first = h.queue(QueueQuery { states: all.clone(), per_page: 5, ..Default::default() }).await;
    let deep = QueueQuery { states: all.clone(), page: 500, per_page: 5, after: first.next, ..Default::default() };
    let got = h.queue(deep).await;
    assert_eq!((got.page, tickets(&got)), (500, tickets(&whole)[5..].to_vec()));
    for (query, field) in [
        (QueueQuery { page: review::MAX_PAGE + 1, ..Default::default() }, "page"),
        (QueueQuery { after: Some("not-a-cursor".into()), ..Default::default() }, "after"),
        (QueueQuery { after: Some("1.2.a b".into()), ..Default::default() }, "after"),
        (QueueQuery { after: Some("99999999999999999999.1.x".into()), ..Default::default() }, "after"),
        (QueueQuery { after: Some("1000000000000000000.1.x".into()), ..Default::default() }, "after"),
        (QueueQuery { after: Some("+1.1.x".into()), ..Default::default() }, "after"),
        (QueueQuery { after: Some("-5.1.x".into()), ..Default::default() }, "after"),
        (QueueQuery { after: Some("1.+1.x".into()), ..Default::default() }, "after"),
    ] {
        match review::queue(&h.engine, query).await {
            Err(EngineError::Invalid(problems)) => assert_eq!(problems[0].field, field),
            other => panic!("expected a refusal naming {field}: {other:?}"),
        }
    }
}

async fn queue_counts_stop_at_their_cap_and_say_so(db: TestDb) {
    let h = harness(db);
    let ann = common::reviewer("ann");
    let mut made = Vec::new();
    for i in 0..5 {
        h.clock.set(common::monday_morning() + chrono::Duration::minutes(i));
        let items: &[&str] = if i < 3 { &["detach_mfa"] } else { &["reset_password"] };
        made.push(h.create(&format!("acct{i}"), items, None).await);
    }
    for t in &made[..3] {
        h.fire(t, "claim", &ann, &[]).await;
    }
    let open: Vec<String> = h.engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
    let filter = |cap, assignee, item| QueueFilter {
        states: states(&["submitted", "under_review"]),
        assignee,
        item,
        limit: 10,
        count_states: open.clone(),
        count_cap: cap,
        ..Default::default()
    };
    let counts = |slice: appealflow::store::QueueSlice| -> Vec<(String, i64, bool)> {
        slice.counts.into_iter().filter(|(s, _, _)| s == "submitted" || s == "under_review").collect()
    };
    let store = h.db.store.clone();
    let read = |f: QueueFilter| {
        let store = store.clone();
        async move { store.review_queue(&f).await.unwrap() }
    };
    let exact = read(filter(5, AssigneeMatch::Any, None)).await;
    assert_eq!(exact.rows.len(), 5, "the cap limits the counts, never the page");
    assert_eq!(counts(exact), [("submitted".into(), 2, false), ("under_review".into(), 3, false)]);
    let capped = read(filter(2, AssigneeMatch::Any, None)).await;
    assert_eq!(counts(capped), [("submitted".into(), 2, false), ("under_review".into(), 2, true)]);
    let held = read(filter(2, AssigneeMatch::Named("ann".into()), Some(AppealItem::DetachMfa))).await;
    assert_eq!(counts(held), [("submitted".into(), 0, false), ("under_review".into(), 2, true)]);
    let free = read(filter(1, AssigneeMatch::Unclaimed, None)).await;
    assert_eq!(counts(free), [("submitted".into(), 1, true), ("under_review".into(), 0, false)]);
    let nobody = read(filter(0, AssigneeMatch::Named("bob".into()), None)).await;
    assert!(nobody.counts.iter().all(|(_, n, more)| *n == 0 && !more), "{:?}", nobody.counts);

    // The queue's own cap is far above five: exact, and said to be.
    let page = h.queue(QueueQuery::default()).await;
    assert_eq!((page.total, page.total_capped), (5, false));
    assert!(page.counts.iter().all(|c| !c.capped));
}

/// Every item's counts and page under every other filter (a scenario or none; any
/// claim, unclaimed, a reviewer's), capped and not, agree with what the appeals are. On
/// SQLite a count filtered by an item reads that item's own index (0012), so an item
/// without one, or a condition not written as the index's is, fails here.
async fn queue_counts_each_item_under_every_filter_as_its_appeals_are(db: TestDb) {
    let h = harness(db);
    let scenarios = [None, Some("active"), Some("name_changed"), Some("deregistered")];
    // Appeals i, i + 8 and i + 16 ask for the same two items in the same scenario; one
    // stays unclaimed, ann claims one, bob the other.
    let mut made = Vec::new();
    for i in 0..24_usize {
        let mut items = vec![AppealItem::ALL[i % 8], AppealItem::ALL[(i * 3 + 1) % 8]];
        items.sort();
        items.dedup();
        let names: Vec<&str> = items.iter().map(|x| x.as_str()).collect();
        let scenario = scenarios[i % 4];
        h.clock.set(common::monday_morning() + chrono::Duration::minutes(i as i64));
        let ticket = h.create(&format!("acct{i}"), &names, scenario).await;
        let who = [None, Some("ann"), Some("bob")][i % 3];
        if let Some(name) = who {
            h.fire(&ticket, "claim", &common::reviewer(name), &[]).await;
        }
        let state = if who.is_some() { "under_review" } else { "submitted" };
        made.push(Made { ticket, items, scenario, who, state });
    }
    let capped_apart = counts_agree(&h, &made, &scenarios).await;
    assert!(capped_apart > 0, "some case counts a scenario with any claim past its cap");

    // Only `under_review` holds a claim in the shipped workflow, so no state above holds
    // both claimed and unclaimed appeals, and a scenario with any claim (counted as two
    // parts on SQLite) always had one part empty. The store counts whatever rows it
    // holds: bob's claims are taken off in place, by hand, and every count again agrees.
    let bobs: Vec<String> =
        made.iter().filter(|m| m.who == Some("bob")).map(|m| m.ticket.as_str().to_string()).collect();
    let unclaim = |url: &str| {
        let sql = bobs.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(", ");
        (url.to_string(), format!("UPDATE appeals SET assignee = NULL WHERE ticket IN ({sql})"))
    };
    let (url, sql) = unclaim(&h.db.url);
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        assert_eq!(done.rows_affected() as usize, bobs.len());
    } else {
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let done = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await.unwrap();
        assert_eq!(done.rows_affected() as usize, bobs.len());
    }
    for m in made.iter_mut().filter(|m| m.who == Some("bob")) {
        m.who = None;
    }
    let capped_apart = counts_agree(&h, &made, &scenarios).await;
    assert!(capped_apart > 0, "some case counts a scenario with any claim past its cap");
}

/// An appeal as the test made it: its ticket, items, scenario, claimer and state.
struct Made {
    ticket: TicketNumber,
    items: Vec<AppealItem>,
    scenario: Option<&'static str>,
    who: Option<&'static str>,
    state: &'static str,
}

/// Asks the store for every item under every other filter, capped at 1000 and at 1,
/// and checks the counts and the page against `made`. Answers how many cases counted a
/// scenario with any claim past the cap.
async fn counts_agree(h: &Harness, made: &[Made], scenarios: &[Option<&'static str>]) -> usize {
    let open: Vec<String> = h.engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
    let mut capped_apart = 0;
    for item in AppealItem::ALL {
        for &scenario in scenarios {
            for assignee in [AssigneeMatch::Any, AssigneeMatch::Unclaimed, AssigneeMatch::Named("ann".into())] {
                let held = |who: Option<&str>| match &assignee {
                    AssigneeMatch::Any => true,
                    AssigneeMatch::Unclaimed => who.is_none(),
                    AssigneeMatch::Named(n) => who == Some(n.as_str()),
                };
                let matching = |state: &str| {
                    made.iter()
                        .filter(|m| {
                            m.items.contains(&item)
                                && (scenario.is_none() || m.scenario == scenario)
                                && held(m.who)
                                && m.state == state
                        })
                        .count() as i64
                };
                for cap in [1000, 1] {
                    let filter = QueueFilter {
                        states: states(&["submitted", "under_review"]),
                        item: Some(item),
                        scenario: scenario.map(String::from),
                        assignee: assignee.clone(),
                        limit: 50,
                        count_states: open.clone(),
                        count_cap: cap,
                        ..Default::default()
                    };
                    let slice = h.db.store.review_queue(&filter).await.unwrap();
                    let want: Vec<(String, i64, bool)> =
                        open.iter().map(|s| (s.clone(), matching(s).min(cap), matching(s) > cap)).collect();
                    let case = format!("{item:?}, {scenario:?}, {assignee:?}, cap {cap}");
                    assert_eq!(slice.counts, want, "{case}");
                    let listed = matching("submitted") + matching("under_review");
                    assert_eq!(slice.rows.len() as i64, listed, "{case}");
                    assert!(slice.rows.iter().all(|r| r.items.0.contains(&item)), "{case}");
                    if scenario.is_some() && assignee == AssigneeMatch::Any && want.iter().any(|c| c.2) {
                        capped_apart += 1;
                    }
                }
            }
        }
    }
    capped_apart
}

async fn the_consoles_next_link_reads_on_by_cursor_and_the_last_page_has_none(db: TestDb) {
    use appealflow::app::{access, sessions};
    use appealflow::engine::Clock;
    use appealflow::http::{AppState, HttpConfig};
    let clock = Arc::new(ManualClock::new(common::monday_morning()));
    let blobs = tempfile::tempdir().unwrap();
    let intake = common::intake_config(blobs.path(), "console-pager-key-0123456789");
    let app = common::app(&db, clock.clone(), &Default::default(), Some(intake));
    let mut made = Vec::new();
    // 26 appeals: one more than the console's page of 25.
    for i in 0..26 {
        clock.set(common::monday_morning() + chrono::Duration::minutes(i));
        let asked = appeal(&format!("acct{i}"), &["reset_password"], None);
        let created = app.engine.create(&asked, &common::applicant(), None).await.unwrap();
        made.push(created.ticket.to_string());
    }
    let store = app.engine.store();
    let (token, _) = access::create_token(store.as_ref(), appealflow::domain::Role::Reviewer, "ann", None, clock.now())
        .await
        .unwrap();
    let session = sessions::sign_in(&app.engine, &token, clock.now(), Default::default()).await.unwrap();
    let state = Arc::new(AppState::new(app.intake().unwrap().clone(), app.work, HttpConfig::default()));
    let base = common::spawn_server(state).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let get = |path: String| {
        let request = client.get(format!("{base}{path}")).header("cookie", format!("af_session={}", session.secret));
        async move {
            let r = request.send().await.unwrap();
            assert!(r.status().is_success(), "{}", r.status());
            r.text().await.unwrap()
        }
    };
    let first = get("/console".into()).await;
    assert!(first.contains(&made[24]) && !first.contains(&made[25]), "page 1 holds the first 25");
    let next = first.split("rel=\"next\"").next().and_then(|head| head.rsplit("href=\"").next()).unwrap();
    let next = next.split('"').next().unwrap().replace("&amp;", "&");
    assert!(next.starts_with("/console?page=2&after="), "{next}");
    let second = get(next).await;
    assert!(second.contains(&made[25]) && !second.contains(&made[24]), "page 2 starts after page 1's last");
    assert!(!second.contains("rel=\"next\""), "the last page has no Next link");
    assert!(second.contains("rel=\"prev\""), "page 2 leads back by number");
}

async fn queue_columns_follow_claim_release_reject_resubmit_the_sla_firing_and_close(db: TestDb) {
    let h = harness(db);
    let ann = common::reviewer("ann");
    let t = h.create("x", &["reset_password"], Some("active")).await;
    let row = h.row(&t).await.unwrap();
    // Received Monday 10:00: due at the end of Thursday, warned from its start.
    assert_eq!(row.review_due_at, Some(at("2026-03-13T00:00:00+08:00")));
    assert_eq!(row.review_warn_at, Some(at("2026-03-12T00:00:00+08:00")));
    assert!(!row.review_fired);
    assert_eq!(
        (row.items.0.as_slice(), row.scenario.as_deref()),
        ([AppealItem::ResetPassword].as_slice(), Some("active"))
    );

    h.fire(&t, "claim", &ann, &[]).await;
    let row = h.row(&t).await.unwrap();
    assert_eq!((row.state.as_str(), row.assignee.as_deref()), ("under_review", Some("ann")));
    assert_eq!(row.review_due_at, Some(at("2026-03-13T00:00:00+08:00")), "the SLA runs on under review");
    h.fire(&t, "release", &ann, &[]).await;
    let row = h.row(&t).await.unwrap();
    assert_eq!((row.state.as_str(), row.assignee.as_deref()), ("submitted", None));
    assert_eq!(row.review_due_at, Some(at("2026-03-13T00:00:00+08:00")));

    h.fire(&t, "claim", &ann, &[]).await;
    h.fire(&t, "reject", &ann, &["missing_documents: supplementary"]).await;
    let row = h.row(&t).await.unwrap();
    assert_eq!(row.state, "rejected");
    assert_eq!((row.review_due_at, row.review_warn_at, row.review_fired), (None, None, false), "cancelled");
    h.fire(&t, "notice_delivered", &Actor::system(), &[]).await;

    // Resubmitted Tuesday with other items and scenario: a fresh SLA, the new record.
    h.clock.set(at("2026-03-10T10:00:00+08:00"));
    let mut cmd = Fire::new("resubmit");
    cmd.payload = json!({ "resubmission": 1 });
    let update = |r: &appealflow::store::AppealRecord| -> Result<serde_json::Value, EngineError> {
        let mut data = r.data.clone();
        data["draft"]["items"] = json!(["detach_mfa", "other"]);
        data["draft"]["scenario"] = json!("name_changed");
        Ok(data)
    };
    h.engine.fire_updating(&t, &cmd, &common::applicant(), None, Some(&update)).await.unwrap();
    let row = h.row(&t).await.unwrap();
    assert_eq!(row.state, "submitted");
    assert_eq!(row.review_due_at, Some(at("2026-03-14T00:00:00+08:00")));
    assert_eq!(row.review_warn_at, Some(at("2026-03-13T00:00:00+08:00")));
    assert_eq!(row.items.0, [AppealItem::DetachMfa, AppealItem::Other]);
    assert_eq!(row.scenario.as_deref(), Some("name_changed"));

    // The SLA fires Saturday: the row says so, and keeps the deadline.
    h.clock.set(at("2026-03-14T10:00:00+08:00"));
    h.engine.run_due_timers(100).await.unwrap();
    let row = h.row(&t).await.unwrap();
    assert!(row.review_fired);
    assert_eq!(row.review_due_at, Some(at("2026-03-14T00:00:00+08:00")));

    // Closed: out of every queue.
    h.fire(&t, "withdraw", &common::applicant(), &[]).await;
    assert_eq!(h.row(&t).await, None);
    let all = h.engine.workflow().open_states().iter().map(|s| s.to_string()).collect();
    let page = h.queue(QueueQuery { states: all, ..Default::default() }).await;
    assert!(page.items.is_empty() && page.counts.iter().all(|c| c.count == 0), "{page:?}");
}

async fn queue_refuses_a_bad_assignee_and_an_unknown_state(db: TestDb) {
    let h = harness(db);
    for (query, field) in [
        (QueueQuery { assignee: AssigneeFilter::Named("  ".into()), ..Default::default() }, "assignee"),
        (QueueQuery { assignee: AssigneeFilter::Named("a\u{0}b".into()), ..Default::default() }, "assignee"),
        (QueueQuery { states: states(&["closed"]), ..Default::default() }, "state"),
        (QueueQuery { per_page: 101, ..Default::default() }, "per_page"),
    ] {
        match review::queue(&h.engine, query).await {
            Err(EngineError::Invalid(problems)) => assert_eq!(problems[0].field, field),
            other => panic!("expected a refusal naming {field}: {other:?}"),
        }
    }
}
