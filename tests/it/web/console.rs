//! The console beyond the reviewer's journey: a stale decision, CSRF refusal, sign-out
//! and a revoked token ending its sessions, the lead's view with reassignment, the
//! admin's view.

use appealflow::domain::{Actor, Role, TicketNumber};
use appealflow::workflow::Fire;

use super::{Site, wait_text};
use crate::browser::Browser;
use crate::common::TestDb;

on_both_backends!(
    a_stale_page_gets_changed_meanwhile_and_changes_nothing,
    a_form_without_the_sessions_csrf_token_changes_nothing,
    revoking_a_token_ends_its_console_sessions_and_sign_out_ends_one,
    the_lead_sees_the_sla_and_the_load_and_reassigns,
    the_admin_sees_jobs_actions_calendars_and_tokens,
);

/// An appeal submitted through the app (the applicant's pages have their own tests).
async fn submitted(site: &Site) -> TicketNumber {
    let created = site
        .state
        .drafts
        .create(serde_json::json!({
            "entry_point": {"kind": "forgot_password", "account": "wangwu"},
            "items": ["detach_mfa"],
            "operator": {"kind": "verified_individual", "name": "Wang Wu", "id_number": "31010419781203005X"},
            "contact_phone": "13900002222",
            "locale": "en"
        }))
        .await
        .expect("a draft");
    site.state
        .drafts
        .record_face_result(&created.draft_id, appealflow::domain::draft::FaceResult::Passed, "test", "ref-1")
        .await
        .expect("face result");
    let secret = created.secret.clone();
    let draft = site.state.drafts.open(&created.draft_id, &secret).await.expect("opens");
    site.state.drafts.submit(&draft, None).await.expect("submits").ticket
}

async fn state_of(site: &Site, ticket: &TicketNumber) -> (String, i64) {
    let r = appealflow::app::review::load(site.state.engine(), ticket).await.expect("loads");
    (r.state, r.version)
}

async fn a_stale_page_gets_changed_meanwhile_and_changes_nothing(db: TestDb) {
    let site = Site::start(db).await;
    let ticket = submitted(&site).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("stale", async |b| {
            site.sign_in(b, &site.reviewer).await;
            b.goto(&site.url(&format!("/console/appeals/{}", ticket.as_str()))).await;
            b.wait_for("#claim").await;
            // Meanwhile another reviewer claims it.
            let engine = site.state.engine();
            engine.fire(&ticket, &Fire::new("claim"), &Actor::new("ravi", Role::Reviewer), None).await.expect("claim");
            let before = state_of(&site, &ticket).await;
            b.click("#claim").await;
            wait_text(b, "main .notice.error", "changed meanwhile").await;
            assert_eq!(state_of(&site, &ticket).await, before, "nothing changed");
            let holder = appealflow::app::review::load(engine, &ticket).await.unwrap().assignee;
            assert_eq!(holder.as_deref(), Some("ravi"));
            b.assert_accessible().await;
        })
        .await;
}

async fn a_form_without_the_sessions_csrf_token_changes_nothing(db: TestDb) {
    let site = Site::start(db).await;
    let ticket = submitted(&site).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("csrf", async |b| {
            site.sign_in(b, &site.reviewer).await;
            b.goto(&site.url(&format!("/console/appeals/{}", ticket.as_str()))).await;
            b.wait_for("#claim").await;
            let before = state_of(&site, &ticket).await;
            b.execute("document.querySelectorAll('input[name=_csrf]').forEach(i => i.value = 'forged');", vec![]).await;
            b.click("#claim").await;
            wait_text(b, "main .notice.error", "nothing was changed").await;
            assert_eq!(state_of(&site, &ticket).await, before);
            // The same form with the session's token works.
            b.goto(&site.url(&format!("/console/appeals/{}", ticket.as_str()))).await;
            b.click("#claim").await;
            wait_text(b, "#assignee", "rita").await;
        })
        .await;
}

async fn revoking_a_token_ends_its_console_sessions_and_sign_out_ends_one(db: TestDb) {
    let site = Site::start(db).await;
    let Some(reviewer) = Browser::start().await else { return };
    let Some(admin) = Browser::start().await else { return };
    reviewer
        .run("revoke", async |r| {
            site.sign_in(r, &site.reviewer).await;
            r.wait_for("#counts").await;
            // A wrong token is refused on the sign-in page.
            admin
                .run("revoke-admin", async |a| {
                    a.goto(&site.url("/console/sign-in")).await;
                    a.fill("#token", "aft_not-a-token").await;
                    a.click("#sign-in").await;
                    wait_text(a, "main .notice.error", "Unknown or revoked token").await;
                    site.sign_in(a, &site.admin).await;
                    a.goto(&site.url("/console/admin")).await;
                    let tokens = a.text("#tokens").await;
                    assert!(tokens.contains("rita"), "{tokens}");
                    let id = a
                        .execute(
                            "return [...document.querySelectorAll('#tokens tr')].find(r => r.textContent.includes('rita')).querySelector('code').textContent;",
                            vec![],
                        )
                        .await;
                    let id = id.as_str().expect("the token's id").to_string();
                    let revoke = format!("form[action='/console/admin/tokens/{id}/revoke']");
                    a.click(&format!("{revoke} button")).await;
                    // Done when the admin page comes back without the token's revoke form
                    // (the old page's #tokens is there before the post is even answered).
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
                    while a.exists(&revoke).await {
                        assert!(std::time::Instant::now() < deadline, "the revoke was not answered");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    a.wait_for("#tokens").await;
                })
                .await;
            r.goto(&site.url("/console")).await;
            wait_text(r, "main", "session ended").await;
            assert!(r.current_url().await.contains("/console/sign-in"));
        })
        .await;
    let Some(again) = Browser::start().await else { return };
    again
        .run("sign-out", async |b| {
            site.sign_in(b, &site.lead).await;
            b.click("#sign-out").await;
            b.wait_for("#token").await;
            b.goto(&site.url("/console")).await;
            b.wait_for("#token").await;
        })
        .await;
}

async fn the_lead_sees_the_sla_and_the_load_and_reassigns(db: TestDb) {
    let site = Site::start(db).await;
    let ticket = submitted(&site).await;
    // A business week later the review SLA has been breached.
    site.clock.advance(chrono::Duration::days(7));
    site.settle().await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("lead", async |b| {
            site.sign_in(b, &site.lead).await;
            b.goto(&site.url("/console/lead")).await;
            let sla = b.text("#at-risk").await;
            assert!(sla.contains(&ticket.to_string()), "{sla}");
            b.assert_accessible().await;
            b.fill("#ra-ticket", ticket.as_str()).await;
            b.fill("#ra-to", "ravi").await;
            b.click("#reassign").await;
            wait_text(b, "#assignee", "ravi").await;
            b.goto(&site.url("/console/lead")).await;
            wait_text(b, "#load", "ravi").await;
        })
        .await;
    let Some(reviewer) = Browser::start().await else { return };
    reviewer
        .run("lead-refused", async |b| {
            site.sign_in(b, &site.reviewer).await;
            b.goto(&site.url("/console/lead")).await;
            wait_text(b, "main .notice.error", "role").await;
        })
        .await;
}

async fn the_admin_sees_jobs_actions_calendars_and_tokens(db: TestDb) {
    let site = Site::start(db).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("admin", async |b| {
            site.sign_in(b, &site.admin).await;
            b.goto(&site.url("/console/admin")).await;
            let calendars = b.text("#calendars").await;
            assert!(calendars.contains("cn-mainland") && calendars.contains("Asia/Shanghai"), "{calendars}");
            let tokens = b.text("#tokens").await;
            for name in ["rita", "ravi", "leo", "ada"] {
                assert!(tokens.contains(name), "{tokens}");
            }
            b.wait_for("#no-dead-jobs").await;
            b.assert_accessible().await;
        })
        .await;
}
