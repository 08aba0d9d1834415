//! The harness against a small site on loopback: every helper drives a real form, the
//! keyboard alone can submit one, axe runs under a strict Content-Security-Policy and
//! finds what it must (and nothing on a clean page), and a failing step leaves a
//! screenshot.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;

use super::site::Site;
use super::{Browser, Key, Violation, ViolationNode, required, screenshot_dir, slug};

const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_is_filled_chosen_ticked_uploaded_and_sent() {
    let Some(browser) = Browser::start().await else { return };
    let site = Site::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Every byte value, so a text-mode or truncated upload shows.
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let file = dir.path().join("statement.bin");
    std::fs::write(&file, &bytes).expect("the upload's file");
    let form = format!("{}/form", site.url);
    browser
        .run("a_form_is_filled_chosen_ticked_uploaded_and_sent", async |b| {
            b.goto(&form).await;
            b.fill("#name", "Li Wei").await;
            b.select("#item", "unfreeze").await;
            b.check("#consent").await;
            b.check("#consent").await; // already ticked: stays ticked
            b.upload("#evidence", &file).await;
            assert!(b.is_checked("#consent").await);
            b.click("#send").await;
            assert_eq!(b.text("#received").await, "Received: 3 fields, 1 files");
            assert_eq!(b.current_url().await, form);
            assert_eq!(b.title().await, "Received");
        })
        .await;
    let received = site.received();
    assert_eq!(received.len(), 1, "one submission: {received:?}");
    let sent = &received[0];
    assert_eq!(sent.field("name"), Some("Li Wei"), "fill replaces the field's value");
    assert_eq!(sent.field("item"), Some("unfreeze"));
    assert_eq!(sent.field("consent"), Some("yes"));
    assert_eq!(sent.files.len(), 1);
    assert_eq!(sent.files[0].field, "evidence");
    assert_eq!(sent.files[0].file_name, "statement.bin");
    assert!(sent.files[0].bytes == bytes, "the uploaded bytes arrived unchanged ({} bytes)", sent.files[0].bytes.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_alone_fills_ticks_and_submits_a_form() {
    let Some(browser) = Browser::start().await else { return };
    let site = Site::start().await;
    let page = format!("{}/keyboard", site.url);
    browser
        .run("the_keyboard_alone_fills_ticks_and_submits_a_form", async |b| {
            b.goto(&page).await;
            // The link before the form takes the first press.
            assert_eq!(b.tab_to("#phone", 5).await, 2);
            b.press_keys("+8613812345678").await;
            b.press(Key::Tab).await;
            assert!(b.focus_matches("#urgent").await, "Tab moves on to the checkbox, not {}", b.focused().await);
            b.press(Key::Space).await;
            assert!(b.is_checked("#urgent").await, "Space ticks the checkbox");
            b.press_chord(Key::Shift, Key::Tab).await;
            assert!(b.focus_matches("#phone").await, "Shift+Tab goes back, not to {}", b.focused().await);
            assert_eq!(b.tab_to("#send", 5).await, 2);
            assert_eq!(b.focused().await, r#"<button id="send" type="submit"> Send"#);
            b.press(Key::Enter).await;
            assert_eq!(b.text("#received").await, "Received: 2 fields, 0 files");
        })
        .await;
    let received = site.received();
    assert_eq!(received.len(), 1, "one submission: {received:?}");
    assert_eq!(received[0].field("phone"), Some("+8613812345678"));
    assert_eq!(received[0].field("urgent"), Some("yes"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_runs_on_a_page_whose_policy_forbids_inline_script() {
    let Some(browser) = Browser::start().await else { return };
    let site = Site::start().await;
    let page = format!("{}/csp", site.url);
    browser
        .run("axe_runs_on_a_page_whose_policy_forbids_inline_script", async |b| {
            b.goto(&page).await;
            // The page's own inline script was blocked: the policy is in force.
            assert_eq!(b.title().await, "Strict policy");
            let violations: Vec<Violation> = b.axe().await;
            let alt = violations.iter().find(|v| v.id == "image-alt").unwrap_or_else(|| {
                panic!("axe ran under the policy and found the image without alt text: {violations:?}")
            });
            assert!(alt.is_serious(), "{alt}");
            assert_eq!(alt.selectors(), ["img"]);
            let node: &ViolationNode = &alt.nodes[0];
            assert!(node.html.starts_with("<img") && !node.summary.is_empty(), "{node:?}");
            // A second run reuses the injected script.
            assert_eq!(b.axe().await.len(), violations.len());
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axe_reports_serious_violations_and_assert_accessible_fails_on_them() {
    let Some(browser) = Browser::start().await else { return };
    let site = Site::start().await;
    let page = format!("{}/inaccessible", site.url);
    browser
        .run("axe_reports_serious_violations_and_assert_accessible_fails_on_them", async |b| {
            b.goto(&page).await;
            let violations = b.axe().await;
            let found = |id: &str| violations.iter().find(|v| v.id == id).cloned();
            let alt = found("image-alt").unwrap_or_else(|| panic!("image-alt reported: {violations:?}"));
            let label = found("label").unwrap_or_else(|| panic!("label reported: {violations:?}"));
            assert_eq!(alt.selectors(), ["#logo"]);
            assert_eq!(label.selectors(), ["#unlabelled"]);
            assert!(alt.is_serious() && label.is_serious());
            assert!(!alt.help.is_empty() && alt.help_url.starts_with("https://"), "{alt:?}");
            let failure = AssertUnwindSafe(b.assert_accessible()).catch_unwind().await.expect_err("the check fails");
            let message = panic_message(failure.as_ref());
            for expected in ["image-alt", "#logo", "label", "#unlabelled", page.as_str()] {
                assert!(message.contains(expected), "{expected:?} in the failure: {message}");
            }
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_page_has_no_violations_and_an_explicit_screenshot_is_a_png() {
    let Some(browser) = Browser::start().await else { return };
    let site = Site::start().await;
    let page = format!("{}/clean", site.url);
    let dir = tempfile::tempdir().expect("temp dir");
    let shot = dir.path().join("shots").join("clean.png");
    browser
        .run("a_clean_page_has_no_violations_and_an_explicit_screenshot_is_a_png", async |b| {
            b.goto(&page).await;
            let violations = b.axe().await;
            assert!(violations.is_empty(), "no violations of any impact: {violations:#?}");
            b.assert_accessible().await;
            b.save_screenshot(&shot).await;
        })
        .await;
    let png = std::fs::read(&shot).expect("the screenshot was written");
    assert!(png.starts_with(PNG_SIGNATURE));
    let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("a whole PNG");
    assert_eq!(image.width(), 1280, "the window's width");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_leaves_a_screenshot_and_names_its_selector_and_page() {
    let Some(browser) = Browser::start().await else { return };
    let site = Site::start().await;
    let page = format!("{}/clean", site.url);
    let test = "harness_failing_step";
    let shot = screenshot_dir().join(format!("{test}-look-for-the-confirmation.png"));
    let _ = std::fs::remove_file(&shot);
    browser.set_wait(Duration::from_millis(300));
    let failure = AssertUnwindSafe(browser.run(test, async |b| {
        b.goto(&page).await;
        b.step("look for the confirmation");
        b.wait_for("#confirmation").await;
    }))
    .catch_unwind()
    .await
    .expect_err("the step fails");
    let message = panic_message(failure.as_ref());
    assert!(message.contains("\"#confirmation\"") && message.contains(&page), "selector and page named: {message}");
    let png = std::fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert!(png.starts_with(PNG_SIGNATURE), "{} is a PNG", shot.display());
    std::fs::remove_file(&shot).expect("the screenshot is removed");
}

#[test]
fn only_a_set_ci_variable_makes_a_missing_browser_fatal() {
    for set in ["true", "1", "yes", "TRUE"] {
        assert!(required(Some(set)), "CI={set}");
    }
    for unset in [None, Some(""), Some("0"), Some("false"), Some("False")] {
        assert!(!required(unset), "CI={unset:?}");
    }
}

#[test]
fn screenshot_names_are_file_name_safe() {
    assert_eq!(slug("look for the confirmation"), "look-for-the-confirmation");
    assert_eq!(slug("click \"#send\""), "click-send");
    assert_eq!(slug("goto http://127.0.0.1:80/a?b"), "goto-http-127-0-0-1-80-a-b");
    assert_eq!(slug("///"), "step");
    assert!(slug(&"x".repeat(500)).len() <= 80);
}
