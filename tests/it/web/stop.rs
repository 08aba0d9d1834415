//! Stopping a change from the applicant site, in a real browser: the account holder who
//! got the "not you?" notice enters the ticket and the code; a wrong code is answered
//! like an unknown ticket; the right one stops the change, which returns to review
//! flagged disputed.

use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::store::WorkFilter;
use appealflow::workflow::Fire;

use super::{Site, wait_text};
use crate::browser::Browser;
use crate::common::TestDb;

on_both_backends!(the_account_holder_stops_a_pending_change_on_the_stop_page);

/// An individual's password reset (it rotates the secure phone) rita approved: it waits
/// out its cooling-off, its notice sent. Answers the ticket and the notice's code.
async fn cooling_off(site: &Site) -> (TicketNumber, String) {
    let engine = site.state.engine();
    let appeal = crate::common::request("wangwu");
    let ticket = engine.create(&appeal, &crate::common::applicant(), None).await.expect("created").ticket;
    let rita = Actor::new("rita", Role::Reviewer);
    engine.fire(&ticket, &Fire::new("claim"), &rita, None).await.expect("claim");
    let out = engine.fire(&ticket, &Fire::new("approve"), &rita, None).await.expect("approve");
    assert_eq!(out.state, "cooling_off");
    site.settle().await;
    let id = appealflow::app::review::load(engine, &ticket).await.expect("loads").id;
    let filter = WorkFilter { appeal_id: Some(id), ..Default::default() };
    let notices = site.db.store.notifications(&filter).await.expect("notifications");
    let sms = notices.iter().find(|n| n.template == "change_pending" && n.channel == "sms").expect("the notice");
    let code = sms.body.split(|c: char| !c.is_ascii_digit()).find(|run| run.len() == 8).expect("a code");
    (ticket, code.to_string())
}

async fn the_account_holder_stops_a_pending_change_on_the_stop_page(db: TestDb) {
    let site = Site::start(db).await;
    let (ticket, code) = cooling_off(&site).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("stop-change", async |b| {
            b.goto(&site.url("/stop?lang=en")).await;
            wait_text(b, "h1", "Stop a change to your account").await;
            b.assert_accessible().await;
            let wrong = if code == "12345678" { "87654321" } else { "12345678" };
            b.fill("#ticket", ticket.as_str()).await;
            b.fill("#code", wrong).await;
            b.click("#stop").await;
            wait_text(b, "[role=alert]", "No pending change matches this ticket number and code").await;
            b.assert_accessible().await;
            let state = appealflow::app::review::load(site.state.engine(), &ticket).await.expect("loads").state;
            assert_eq!(state, "cooling_off", "a wrong code stops nothing");
            b.fill("#code", &code).await;
            b.click("#stop").await;
            wait_text(b, "#stopped", "The change is stopped").await;
            wait_text(b, "#stopped-ticket", &ticket.to_string()).await;
            b.assert_accessible().await;
        })
        .await;
    let record = appealflow::app::review::load(site.state.engine(), &ticket).await.expect("loads");
    assert_eq!(record.state, "submitted");
    assert!(record.data["disputed"].is_object(), "{}", record.data);
}
