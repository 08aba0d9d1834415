//! The documents page's form read under the document limit as a whole: a declared fact
//! (a text field, known or not) as large as a file is refused like an oversized file, in
//! words, and the draft keeps nothing of it. Plain HTTP on loopback, as a browser posts it.

use serde_json::Value;

use super::Site;
use crate::common::TestDb;

on_both_backends!(an_oversized_text_field_in_the_documents_form_is_refused_and_changes_nothing);

const BOUNDARY: &str = "appealflow-upload-test-boundary";

fn part(name: &str, value: &[u8]) -> Vec<u8> {
    let mut p = format!("--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n").into_bytes();
    p.extend_from_slice(value);
    p.extend_from_slice(b"\r\n");
    p
}

fn form(parts: &[Vec<u8>], file: &[u8]) -> Vec<u8> {
    let mut body: Vec<u8> = parts.concat();
    body.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"front.png\"\r\ncontent-type: image/png\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn an_oversized_text_field_in_the_documents_form_is_refused_and_changes_nothing(db: TestDb) {
    let site = Site::start(db).await;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let started = client
        .post(site.url("/appeal/start"))
        .header("sec-fetch-site", "same-origin")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("entry=forgot_password&account=wangwu")
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 303, "the start page opens a draft");
    let cookie = started
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("af_draft="))
        .and_then(|v| v.split(';').next())
        .expect("the draft's cookie")
        .to_string();
    let (id, secret) = cookie.trim_start_matches("af_draft=").split_once('~').expect("id~secret");

    // The documents form as the page posts it, with the draft's cookie.
    let post = async |body: Vec<u8>| {
        client
            .post(site.url("/appeal/documents"))
            .header("sec-fetch-site", "same-origin")
            .header("cookie", &cookie)
            .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(body)
            .send()
            .await
            .unwrap()
    };
    let documents = async || {
        let draft = site.state.drafts.open(id, secret).await.expect("the draft is still there");
        draft.data.get("documents").and_then(Value::as_array).map_or(0, Vec::len)
    };

    let max = site.state.intake.limits().max_bytes;
    let huge = vec![b'a'; usize::try_from(max).unwrap() + 128 * 1024];
    let png = std::fs::read(super::example("receipt.png")).unwrap();
    for (what, body) in [
        ("a text field past the limit", form(&[part("kind", b"id_card_front"), part("company_name", &huge)], &png)),
        ("an unknown field past the limit", form(&[part("kind", b"id_card_front"), part("notes", &huge)], &png)),
    ] {
        let r = post(body).await;
        let status = r.status();
        let page = r.text().await.unwrap();
        assert_eq!(status, 422, "{what}: refused");
        assert!(
            page.contains("larger than the limit"),
            "{what}: the refusal says why: {}",
            &page[..page.len().min(2000)]
        );
        assert_eq!(documents().await, 0, "{what}: the draft keeps nothing of the refused form");
    }

    // The same form within the limit is taken: the refusals above were the limit's.
    let r = post(form(&[part("kind", b"id_card_front")], &png)).await;
    assert_eq!(r.status(), 200, "a form within the limit is taken");
    assert_eq!(documents().await, 1, "the draft holds the taken document");
}
