//! The whole journey in two browsers: an applicant prepares, uploads, passes the
//! development face check and submits; a reviewer signs in, claims and rejects with
//! reasons; the applicant sees the reasons and the deadline, adds a document and
//! continues; the reviewer approves and, the approval rotating an enterprise's secure
//! phone, a lead gives the second approval; the applicant sees the appeal closed with the
//! account change done. Every page visited passes axe-core with no serious violation.

use super::{PHONE, Site, example, hostile, readme_screenshot, wait_text};
use crate::browser::{Browser, Key};
use crate::common::TestDb;

on_both_backends!(
    applicant_and_reviewer_take_an_appeal_from_start_to_closed,
    the_applicant_pages_speak_chinese_and_keep_the_visitors_choice,
    the_progress_query_works_from_the_keyboard_alone_and_answers_alike_for_unknown_and_wrong,
    who_cannot_appeal_gets_a_page_that_says_why,
);

/// The applicant's part up to the ticket; the ticket.
async fn prepare_and_submit(site: &Site, b: &Browser) -> String {
    b.step("start");
    b.goto(&site.url("/?lang=en")).await;
    b.assert_accessible().await;
    b.check("#entry-forgot_username").await;
    b.select("#lookup", "domain").await;
    b.fill("#lookup-value", "acme.example").await;
    b.click("#start").await;

    b.step("prepare");
    b.wait_for("#prepare").await;
    b.check("#item-change_secure_phone").await;
    b.check("#item-clear_ip_logon_mask").await;
    b.check("#scenario-active").await;
    b.fill("#op-name", "Li Si").await;
    b.fill("#op-id", "440304198506152416").await;
    b.fill("#contact-phone", PHONE).await;
    // The checklist follows the choices: changing the secure phone needs proof of payment.
    wait_text(b, "#checklist", "Proof of payment").await;
    let required = b.text("#checklist").await;
    assert!(required.contains("Required when the secure phone is changed"), "{required}");
    b.assert_accessible().await;
    readme_screenshot(b, "portal-checklist").await;
    b.click("#save").await;

    b.step("documents");
    b.wait_for("#documents").await;
    b.upload("#business_license-file", &example("licence.jpg")).await;
    b.click("#business_license-upload").await;
    wait_text(b, "#documents .notice", "Latest business license").await;
    b.check("#enterprise_appeal_letter-stamped").await;
    b.upload("#enterprise_appeal_letter-file", &example("letter.pdf")).await;
    b.click("#enterprise_appeal_letter-upload").await;
    wait_text(b, "#documents .notice", "enterprise, stamped").await;
    // A file with active content is refused, with the reason in words.
    b.upload("#proof_of_payment-file", &hostile("page.html.png")).await;
    b.click("#proof_of_payment-upload").await;
    let refused = wait_text(b, "#documents .notice.error", "Not accepted").await;
    assert!(refused.len() > "Not accepted: ".len() + 10, "the reason is given: {refused}");
    b.upload("#proof_of_payment-file", &example("receipt.png")).await;
    b.click("#proof_of_payment-upload").await;
    wait_text(b, "#documents .notice.ok", "Proof of payment").await;
    let held = b.text("ul.held").await;
    assert_eq!(held.matches("Remove").count(), 3, "three documents held: {held}");
    b.assert_accessible().await;

    b.step("face");
    b.click("#to-face").await;
    b.click("#start-face").await;
    b.wait_for("#face-pass").await;
    b.click("#face-pass").await;
    wait_text(b, "#face-status", "passed").await;
    b.click("#to-review").await;

    b.step("submit");
    b.wait_for("#submit-appeal").await;
    let ready = b.text("#checklist").await;
    assert!(ready.contains("you may submit"), "{ready}");
    b.click("#submit-appeal").await;
    let ticket = b.text("#ticket").await;
    let deadline = b.text(".deadline").await;
    assert!(deadline.contains("Review deadline") && deadline.contains("Asia/Shanghai"), "{deadline}");
    b.assert_accessible().await;
    ticket.trim().to_string()
}

async fn check_progress(site: &Site, b: &Browser, ticket: &str) {
    b.goto(&site.url("/progress")).await;
    b.fill("#ticket", ticket).await;
    b.fill("#phone", PHONE).await;
    b.click("#check").await;
    b.wait_for("#stage").await;
}

async fn applicant_and_reviewer_take_an_appeal_from_start_to_closed(db: TestDb) {
    let site = Site::start(db).await;
    let Some(applicant) = Browser::start().await else { return };
    let Some(staff) = Browser::start().await else { return };
    let Some(approver) = Browser::start().await else { return };
    applicant
        .run("journey-applicant", async |b| {
            let ticket = prepare_and_submit(&site, b).await;

            staff
                .run("journey-reviewer", async |s| {
                    s.step("sign in");
                    site.sign_in(s, &site.reviewer).await;
                    s.wait_for(&format!("a[href='/console/appeals/{ticket}']")).await;
                    s.assert_accessible().await;
                    readme_screenshot(s, "console-queue").await;
                    s.click(&format!("a[href='/console/appeals/{ticket}']")).await;
                    s.step("claim");
                    s.click("#claim").await;
                    wait_text(s, "#assignee", "rita").await;
                    s.wait_for("figure.doc img").await;
                    s.assert_accessible().await;
                    readme_screenshot(s, "console-appeal").await;
                    s.step("reject");
                    s.check("#r-missing").await;
                    s.select("#r-docs", "supplementary").await;
                    s.click("#reject").await;
                    wait_text(s, "#state", "Rejected").await;
                })
                .await;
            site.settle().await;

            b.step("rejected");
            check_progress(&site, b, &ticket).await;
            let reasons = b.text("#reasons").await;
            assert!(reasons.contains("Supplementary"), "the reasons name the documents: {reasons}");
            assert!(!reasons.contains("missing_documents"), "in words, not codes: {reasons}");
            let until = b.text("#continue-until").await;
            assert!(until.contains("Asia/Shanghai"), "{until}");
            b.assert_accessible().await;
            b.click("#add-documents").await;
            b.upload("#supplementary-file", &example("letter.pdf")).await;
            b.click("#supplementary-upload").await;
            wait_text(b, "#documents .notice.ok", "Supplementary").await;
            check_progress(&site, b, &ticket).await;
            b.click("#continue-appeal").await;
            wait_text(b, "main", &ticket).await;

            approver
                .run("journey-approval", async |s| {
                    site.sign_in(s, &site.reviewer).await;
                    s.goto(&site.url(&format!("/console/appeals/{ticket}"))).await;
                    s.click("#claim").await;
                    wait_text(s, "#assignee", "rita").await;
                    s.click("#approve").await;
                    wait_text(s, "#state", "waiting for a second approver").await;
                })
                .await;
            // Four-eyes: an enterprise's secure phone needs a second, different approver.
            let Some(second) = Browser::start().await else { return };
            second
                .run("journey-second-approval", async |s| {
                    site.sign_in(s, &site.lead).await;
                    s.goto(&site.url(&format!("/console/appeals/{ticket}"))).await;
                    s.click("#confirm_approval").await;
                    // By the state itself: the label before the click ("Approved once,
                    // waiting for a second approver") already contains "Approved".
                    s.wait_for("#state[data-state='cooling_off']").await;
                })
                .await;
            // The secure phone rotates after a 24-hour cooling-off nobody stops: the
            // worker sends the "not you?" notice, then ends the cooling-off when it is due.
            site.settle().await;
            b.step("cooling-off");
            check_progress(&site, b, &ticket).await;
            let stage = b.text("#stage").await;
            assert!(stage.contains("Approved"), "{stage}");
            site.clock.advance(chrono::Duration::hours(25));
            site.settle().await;

            b.step("closed");
            check_progress(&site, b, &ticket).await;
            let stage = b.text("#stage").await;
            assert!(stage.contains("Closed"), "{stage}");
            b.wait_for("#done").await;
            b.assert_accessible().await;
        })
        .await;
}

async fn the_applicant_pages_speak_chinese_and_keep_the_visitors_choice(db: TestDb) {
    let site = Site::start(db).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("chinese", async |b| {
            b.goto(&site.url("/?lang=zh-CN")).await;
            assert_eq!(b.attr("html", "lang").await.as_deref(), Some("zh-CN"));
            wait_text(b, "h1", "账号申诉").await;
            b.assert_accessible().await;
            // The choice is kept: the next page, asked without ?lang, is still in Chinese.
            b.goto(&site.url("/progress")).await;
            wait_text(b, "h1", "查询申诉结果").await;
            b.goto(&site.url("/progress?lang=en")).await;
            wait_text(b, "h1", "Check the result").await;
        })
        .await;
}

async fn the_progress_query_works_from_the_keyboard_alone_and_answers_alike_for_unknown_and_wrong(db: TestDb) {
    let site = Site::start(db).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("keyboard", async |b| {
            let ticket = prepare_and_submit(&site, b).await;
            b.goto(&site.url("/progress?lang=en")).await;
            b.tab_to("#ticket", 20).await;
            b.press_keys(&ticket).await;
            b.press(Key::Tab).await;
            b.press_keys("13700000000").await;
            b.press(Key::Enter).await;
            let wrong_phone = b.text("main .notice.error").await;
            b.goto(&site.url("/progress?lang=en")).await;
            b.fill("#ticket", &appealflow::domain::TicketNumber::generate().to_string()).await;
            b.fill("#phone", PHONE).await;
            b.click("#check").await;
            let unknown = b.text("main .notice.error").await;
            assert_eq!(wrong_phone, unknown, "one answer for a wrong phone and an unknown ticket");
            b.goto(&site.url("/progress?lang=en")).await;
            b.tab_to("#ticket", 20).await;
            b.press_keys(&ticket).await;
            b.press(Key::Tab).await;
            b.press_keys(PHONE).await;
            b.press(Key::Enter).await;
            wait_text(b, "#stage", "Received").await;
        })
        .await;
}

async fn who_cannot_appeal_gets_a_page_that_says_why(db: TestDb) {
    let site = Site::start(db).await;
    let Some(browser) = Browser::start().await else { return };
    browser
        .run("cannot-appeal", async |b| {
            b.goto(&site.url("/?lang=en")).await;
            b.check("#entry-forgot_username").await;
            b.fill("#lookup-value", "nowhere.example").await;
            b.click("#start").await;
            wait_text(b, "h1", "No account found").await;
            b.assert_accessible().await;
            b.goto(&site.url("/help/cannot-appeal?lang=en")).await;
            wait_text(b, "main", "has not completed identity verification").await;
            b.assert_accessible().await;
        })
        .await;
}
