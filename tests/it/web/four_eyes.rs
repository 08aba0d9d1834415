//! Four-eyes approval in the console, in a real browser: the first approver sees that
//! someone else must confirm (and no button to do it), a lead sends the approval back with
//! a reason, and confirms the next one, which then waits out its cooling-off.

use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::workflow::Fire;

use super::{Site, wait_text};
use crate::browser::Browser;
use crate::common::TestDb;

on_both_backends!(a_lead_sends_back_and_then_confirms_a_high_risk_approval_in_the_console);

/// An enterprise appeal whose secure phone rotation rita claimed and approved: it waits
/// for a second approver.
async fn approved_once_by_rita(site: &Site, ticket: Option<&TicketNumber>) -> TicketNumber {
    let engine = site.state.engine();
    let ticket = match ticket {
        Some(t) => t.clone(),
        None => {
            let mut appeal = crate::common::request("acme-ops");
            appeal.data["verification"] = serde_json::json!("enterprise");
            engine.create(&appeal, &crate::common::applicant(), None).await.expect("created").ticket
        }
    };
    let rita = Actor::new("rita", Role::Reviewer);
    engine.fire(&ticket, &Fire::new("claim"), &rita, None).await.expect("claim");
    let out = engine.fire(&ticket, &Fire::new("approve"), &rita, None).await.expect("approve");
    assert_eq!(out.state, "awaiting_second_approval");
    ticket
}

async fn state_of(site: &Site, ticket: &TicketNumber) -> String {
    appealflow::app::review::load(site.state.engine(), ticket).await.expect("loads").state
}

async fn a_lead_sends_back_and_then_confirms_a_high_risk_approval_in_the_console(db: TestDb) {
    let site = Site::start(db).await;
    let ticket = approved_once_by_rita(&site, None).await;
    let page = site.url(&format!("/console/appeals/{}", ticket.as_str()));
    let Some(first) = Browser::start().await else { return };
    first
        .run("four-eyes-first", async |b| {
            site.sign_in(b, &site.reviewer).await;
            b.goto(&page).await;
            wait_text(b, "#first-approval", "rita").await;
            wait_text(b, "#four-eyes", "a second staff member must confirm it").await;
            assert!(!b.exists("#confirm_approval").await, "the first approver has no confirm button");
            assert!(!b.exists("#send_back").await);
            b.assert_accessible().await;
        })
        .await;
    let Some(lead) = Browser::start().await else { return };
    lead.run("four-eyes-lead", async |b| {
        site.sign_in(b, &site.lead).await;
        b.goto(&page).await;
        wait_text(b, "#first-approval", "rotates the secure phone of an enterprise account").await;
        b.wait_for("#confirm_approval").await;
        b.assert_accessible().await;
        b.fill("#send-back-reason", "the letter's stamp is unreadable").await;
        b.click("#send_back").await;
        wait_text(b, "#state", "Received").await;
        assert_eq!(state_of(&site, &ticket).await, "submitted");
        wait_text(b, "#history", "send_back").await;

        // rita approves again; the lead confirms it.
        approved_once_by_rita(&site, Some(&ticket)).await;
        b.goto(&page).await;
        b.click("#confirm_approval").await;
        // The secure phone rotates: the change waits out its cooling-off, shown as such.
        wait_text(b, "#state", "the change waits for the account holder to object").await;
        assert_eq!(state_of(&site, &ticket).await, "cooling_off");
        wait_text(b, "#pending-change", "leo").await;
        let history = wait_text(b, "#history", "confirm_approval").await;
        assert!(history.contains("leo"), "the history names the second approver: {history}");
    })
    .await;
}
