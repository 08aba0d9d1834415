//! The `appealflow` binary as a user runs it: real processes, a real database file (and
//! a real PostgreSQL database when configured), exit codes and one-line errors.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_appealflow");

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn run_with(url: &str, args: &[&str], stdin: Option<&str>, envs: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("APPEALFLOW_DATABASE_URL", url)
        .env("APPEALFLOW_WORKFLOWS", common::workflows_dir())
        .env_remove("APPEALFLOW_ALLOW_CLOCK_OVERRIDE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("binary runs");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    Run {
        code: status.code().expect("exited normally"),
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

fn run(url: &str, args: &[&str]) -> Run {
    run_with(url, args, None, &[])
}

/// An error is one line on stderr and a distinct exit code.
fn assert_error(r: &Run, code: i32, needle: &str) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert_eq!(r.stderr.trim_end().lines().count(), 1, "one line: {:?}", r.stderr);
    assert!(r.stderr.contains(needle), "{needle:?} not in {:?}", r.stderr);
}

const APPEAL: &str = r#"{"account": "acme", "items": ["reset_password"], "contact_phone": "13812345678"}"#;

fn lifecycle_through_the_cli(url: &str) {
    let created = run_with(url, &["appeal", "create", "--json", "-"], Some(APPEAL), &[]);
    assert_eq!(created.code, 0, "{}", created.stderr);
    let ticket = created.stdout.trim().to_string();
    assert_eq!(ticket.len(), 24, "grouped 20-digit ticket: {ticket}");

    let fire = |args: &[&str]| {
        let mut all = vec!["appeal", "fire", ticket.as_str()];
        all.extend_from_slice(args);
        run(url, &all)
    };
    let claimed = fire(&["claim", "--actor", "ann", "--role", "reviewer"]);
    assert_eq!(claimed.code, 0, "{}", claimed.stderr);
    assert!(claimed.stdout.contains("submitted -> under_review (version 2)"), "{}", claimed.stdout);

    assert_error(&fire(&["approve", "--actor", "bob", "--role", "reviewer"]), 3, "holds_claim");
    assert_error(&fire(&["reject", "--actor", "ann", "--role", "reviewer"]), 3, "at least one reason");
    assert_error(&fire(&["release", "--actor", "ann", "--role", "reviewer", "--expect-version", "1"]), 3, "version 2");
    assert_error(
        &fire(&["claim", "--actor", "ann", "--role", "reviewer"]),
        3,
        "cannot fire from state \"under_review\"",
    );
    assert_error(&fire(&["claim", "--actor", "ann", "--role", "wizard"]), 2, "wizard");
    assert_error(&fire(&["teleport", "--actor", "ann", "--role", "reviewer"]), 2, "unknown transition");

    let rejected = fire(&[
        "reject",
        "--actor",
        "ann",
        "--role",
        "reviewer",
        "--reason",
        "missing_documents",
        "--idempotency-key",
        "r1",
    ]);
    assert_eq!(rejected.code, 0, "{}", rejected.stderr);
    let replay = fire(&[
        "reject",
        "--actor",
        "ann",
        "--role",
        "reviewer",
        "--reason",
        "missing_documents",
        "--idempotency-key",
        "r1",
    ]);
    assert_eq!(replay.code, 0, "{}", replay.stderr);
    assert!(replay.stdout.contains("[replayed]"), "{}", replay.stdout);
    assert_error(&fire(&["withdraw", "--actor", "x", "--role", "applicant", "--idempotency-key", "r1"]), 3, "r1");

    let shown = run(url, &["appeal", "show", &ticket, "--json"]);
    assert_eq!(shown.code, 0, "{}", shown.stderr);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(v["ticket"], ticket.as_str());
    assert_eq!(v["state"], "rejected");
    assert_eq!(v["version"], 3);
    let history = v["history"].as_array().unwrap();
    let steps: Vec<(&str, Option<&str>, &str, &str)> = history
        .iter()
        .map(|h| {
            (
                h["transition"].as_str().unwrap(),
                h["from"].as_str(),
                h["to"].as_str().unwrap(),
                h["actor"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("submit", None, "submitted", "applicant"),
            ("claim", Some("submitted"), "under_review", "ann"),
            ("reject", Some("under_review"), "rejected", "ann"),
        ]
    );
    assert!(history.iter().all(|h| h["at"].as_str().is_some()));
    assert_eq!(history[2]["reasons"][0], "missing_documents");

    let listed = run(url, &["appeal", "list", "--state", "rejected", "--json"]);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    let rows: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["ticket"], ticket.as_str());
    let none = run(url, &["appeal", "list", "--state", "approved", "--json"]);
    assert_eq!(none.stdout.trim(), "[]");
    assert_error(&run(url, &["appeal", "list", "--state", "limbo"]), 2, "unknown state \"limbo\"");
}

#[test]
fn lifecycle_through_the_cli_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    lifecycle_through_the_cli(&format!("sqlite://{}", dir.path().join("cli.db").display()));
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_through_the_cli_on_postgres() {
    if let Some(db) = common::postgres("lifecycle_through_the_cli_on_postgres").await {
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || lifecycle_through_the_cli(&url)).await.unwrap();
    }
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("cli.db").display())
}

#[test]
fn bad_appeal_input_names_each_field_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let r = run_with(
        &url,
        &["appeal", "create", "--json", "-"],
        Some(r#"{"account": "", "items": ["fly"], "contact_phone": "12"}"#),
        &[],
    );
    assert_error(&r, 2, "account: required");
    assert!(r.stderr.contains("items[0]: unknown appeal item \"fly\""), "{}", r.stderr);
    assert!(r.stderr.contains("contact_phone:"), "{}", r.stderr);
    assert_error(&run_with(&url, &["appeal", "create", "--json", "-"], Some("{not json"), &[]), 2, "line 1");
    assert_error(
        &run_with(&url, &["appeal", "create", "--json", "-"], Some(r#"{"acount": "x"}"#), &[]),
        2,
        "unknown field `acount`",
    );
    assert_error(&run(&url, &["appeal", "create", "--json", "/nonexistent/appeal.json"]), 2, "cannot read");
    let listed = run(&url, &["appeal", "list", "--json"]);
    assert_eq!(listed.stdout.trim(), "[]", "nothing stored");
}

#[test]
fn unknown_and_mistyped_tickets_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let created = run_with(&url, &["appeal", "create", "--json", "-"], Some(APPEAL), &[]);
    let ticket = created.stdout.trim().to_string();
    // Change one digit: the check digit catches it.
    let mut typo: Vec<char> = ticket.chars().collect();
    typo[0] = if typo[0] == '9' { '8' } else { char::from(typo[0] as u8 + 1) };
    let typo: String = typo.into_iter().collect();
    assert_error(&run(&url, &["appeal", "show", &typo]), 2, "check digit");
    assert_error(&run(&url, &["appeal", "show", "12"]), 2, "20 digits");
    assert_error(&run(&url, &["appeal", "show", "0000-0000-0000-0000-0000"]), 2, "no appeal with ticket");
}

#[test]
fn now_override_needs_explicit_permission() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let refused =
        run_with(&url, &["--now", "2026-03-09T10:00:00+08:00", "appeal", "create", "--json", "-"], Some(APPEAL), &[]);
    assert_error(&refused, 2, "APPEALFLOW_ALLOW_CLOCK_OVERRIDE=1");
    let allowed = run_with(
        &url,
        &["--now", "2026-03-09T10:00:00+08:00", "appeal", "create", "--json", "-"],
        Some(APPEAL),
        &[("APPEALFLOW_ALLOW_CLOCK_OVERRIDE", "1")],
    );
    assert_eq!(allowed.code, 0, "{}", allowed.stderr);
    let shown = run(&url, &["appeal", "show", allowed.stdout.trim(), "--json"]);
    let v: serde_json::Value = serde_json::from_str(&shown.stdout).unwrap();
    assert_eq!(v["history"][0]["at"], "2026-03-09T02:00:00+00:00");
    assert_eq!(v["review_due_at"], "2026-03-12T16:00:00+00:00");
    assert_error(
        &run_with(&url, &["--now", "yesterday", "appeal", "list"], None, &[("APPEALFLOW_ALLOW_CLOCK_OVERRIDE", "1")]),
        2,
        "RFC 3339",
    );
}

#[test]
fn timers_fire_on_a_simulated_clock() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let allow = [("APPEALFLOW_ALLOW_CLOCK_OVERRIDE", "1")];
    let created = run_with(
        &url,
        &["--now", "2026-03-09T10:00:00+08:00", "appeal", "create", "--json", "-"],
        Some(APPEAL),
        &allow,
    );
    let ticket = created.stdout.trim().to_string();
    let listed = run(&url, &["timers", "list", "--appeal", &ticket]);
    assert_eq!(listed.stdout.lines().count(), 2, "{}", listed.stdout);
    let fired = run_with(&url, &["--now", "2026-03-13T00:00:00+08:00", "timers", "run"], None, &allow);
    assert_eq!(fired.code, 0, "{}", fired.stderr);
    assert!(fired.stdout.contains("2 timer(s) due"), "{}", fired.stdout);
    let v: serde_json::Value = serde_json::from_str(&run(&url, &["appeal", "show", &ticket, "--json"]).stdout).unwrap();
    let names: Vec<&str> = v["history"].as_array().unwrap().iter().map(|h| h["transition"].as_str().unwrap()).collect();
    assert_eq!(names, ["submit", "sla_warning", "sla_breached"]);
}

#[test]
fn workflow_check_and_graph() {
    let ok = run("sqlite::memory:", &["workflow", "check"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.contains("is valid"));
    let graph = run("sqlite::memory:", &["workflow", "graph", "--format", "mermaid"]);
    assert!(graph.stdout.starts_with("stateDiagram-v2\n"));
    assert!(graph.stdout.contains("under_review --> approved: approve"));
    let dot = run("sqlite::memory:", &["workflow", "graph", "--format", "dot"]);
    assert!(dot.stdout.starts_with("digraph"));

    // A broken copy is refused, naming the file and the entry.
    let tmp = tempfile::tempdir().unwrap();
    let wf_dir = tmp.path().join("account-appeal");
    std::fs::create_dir_all(wf_dir.join("templates")).unwrap();
    let src = common::workflows_dir().join("account-appeal");
    for entry in std::fs::read_dir(src.join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), wf_dir.join("templates").join(entry.file_name())).unwrap();
    }
    let text = std::fs::read_to_string(src.join("workflow.toml")).unwrap();
    std::fs::write(
        wf_dir.join("workflow.toml"),
        text.replace(
            "guards = [\"holds_claim\", \"entity_change_linked\"]",
            "guards = [\"holds_claim\", \"is_full_moon\"]",
        ),
    )
    .unwrap();
    let refused = run("sqlite::memory:", &["workflow", "check", wf_dir.to_str().unwrap()]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("workflow.toml: transitions.approve: unknown guard \"is_full_moon\""),
        "{}",
        refused.stderr
    );
}

#[test]
fn demo_walks_an_appeal_to_closed() {
    let r = Command::new(BIN)
        .arg("demo")
        .env_remove("APPEALFLOW_DATABASE_URL")
        .env("APPEALFLOW_WORKFLOWS", common::workflows_dir())
        .output()
        .unwrap();
    let stdout = String::from_utf8(r.stdout).unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    for needle in ["timer review_sla.warning", "resubmission_window", "closed (completed)", "history of"] {
        assert!(stdout.contains(needle), "{needle:?} missing from demo output:\n{stdout}");
    }
}
