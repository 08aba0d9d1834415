//! The `appealflow` binary as a user runs it: real processes, a real database file (and
//! a real PostgreSQL database when configured), exit codes and one-line errors.

use crate::common;

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
        .env("APPEALFLOW_ID_HASH_KEY", "cli-test-key-0123456789")
        .env("APPEALFLOW_BLOB_DIR", blob_dir_for(url))
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

/// Documents go beside a SQLite test database (or in one temp dir per PostgreSQL URL).
fn blob_dir_for(url: &str) -> std::path::PathBuf {
    match url.strip_prefix("sqlite://") {
        Some(path) if path != ":memory:" => Path::new(path).with_extension("blobs"),
        _ => std::env::temp_dir().join(format!("appealflow-cli-blobs-{}", url.len())),
    }
}

const ACCOUNTS: &str = r#"[
  {"name": "acme", "verification": "individual",
   "verified_individual": {"name": "Wang Wu", "id_number": "31010419781203005X"},
   "associations": {"phone": "13900002222"}}
]"#;

/// An individual appealing for their own account: no documents needed.
const APPEAL: &str = r#"{
  "entry_point": {"kind": "forgot_password", "account": "acme"},
  "items": ["reset_password"],
  "operator": {"kind": "verified_individual", "name": "Wang Wu", "id_number": "31010419781203005X",
               "facial_recognition": {"result": "passed", "provider": "face-test", "reference": "r-1"}},
  "contact_phone": "13812345678"
}"#;

fn import_accounts(url: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("accounts.json");
    std::fs::write(&file, ACCOUNTS).unwrap();
    let r = run(url, &["accounts", "import", file.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 account(s) imported"), "{}", r.stdout);
}

fn lifecycle_through_the_cli(url: &str) {
    import_accounts(url);
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

    // The applicant's view: the reason in words in the draft's language (zh-CN, none
    // given), times in the workflow's zone.
    let progress = run(url, &["appeal", "progress", &ticket, "--phone", "13812345678"]);
    assert_eq!(progress.code, 0, "{}", progress.stderr);
    for needle in ["stage     rejected", "reason    缺少材料\n", "+08:00\n", "time zone Asia/Shanghai"] {
        assert!(progress.stdout.contains(needle), "{needle:?} not in:\n{}", progress.stdout);
    }
    assert!(
        !progress.stdout.contains("missing_documents") && !progress.stdout.contains("+00:00"),
        "{}",
        progress.stdout
    );
    let json = run(url, &["appeal", "progress", &ticket, "--phone", "13812345678", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        (&v["reasons"], &v["reasons_in_words"]),
        (&serde_json::json!(["missing_documents"]), &serde_json::json!(["缺少材料"]))
    );

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
#[cfg_attr(appealflow_no_postgres, ignore = "no PostgreSQL: set APPEALFLOW_TEST_POSTGRES_URL=postgres://... to run it")]
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
    import_accounts(&url);
    let r = run_with(
        &url,
        &["appeal", "create", "--json", "-"],
        Some(
            r#"{"entry_point": {"kind": "teleport"}, "items": ["fly"], "contact_phone": "12",
                 "operator": {"id_number": "123"}}"#,
        ),
        &[],
    );
    assert_error(&r, 2, "entry_point.kind");
    for needle in ["items[0]: unknown appeal item \"fly\"", "contact_phone:", "operator.id_number:"] {
        assert!(r.stderr.contains(needle), "{needle}: {}", r.stderr);
    }
    assert_error(&run_with(&url, &["appeal", "create", "--json", "-"], Some("{not json"), &[]), 2, "line 1");
    assert_error(
        &run_with(&url, &["appeal", "create", "--json", "-"], Some(r#"{"acount": "x"}"#), &[]),
        2,
        "unknown field `acount`",
    );
    // A phone number in the wrong JSON type is reported without being repeated.
    let leaky = run_with(&url, &["appeal", "create", "--json", "-"], Some(r#"{"contact_phone": 13812345678}"#), &[]);
    assert_error(&leaky, 2, "invalid type");
    assert!(!leaky.stderr.contains("13812345678"), "{}", leaky.stderr);
    assert_error(&run(&url, &["appeal", "create", "--json", "/nonexistent/appeal.json"]), 2, "cannot read");
    // Complete in shape but not in substance: every problem in one answer.
    let incomplete = APPEAL
        .replace(r#""result": "passed""#, r#""result": "failed""#)
        .replace(r#""contact_phone": "13812345678""#, r#""contact_email": "x@y.example""#);
    let r = run_with(&url, &["appeal", "create", "--json", "-"], Some(&incomplete), &[]);
    assert_error(&r, 2, "cannot be submitted yet (2 problems)");
    assert!(
        r.stderr.contains("contact_phone: required") && r.stderr.contains("facial recognition did not pass"),
        "{}",
        r.stderr
    );
    let listed = run(&url, &["appeal", "list", "--json"]);
    assert_eq!(listed.stdout.trim(), "[]", "nothing stored");
}

#[test]
fn checklist_shows_each_document_and_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    import_accounts(&url);
    let other_person = APPEAL.replace(
        r#""kind": "verified_individual", "name": "Wang Wu", "id_number": "31010419781203005X""#,
        r#""kind": "other_person", "name": "Zhao Liu", "id_number": "440304198506152416""#,
    );
    let r = run_with(&url, &["appeal", "checklist", "--json", "-"], Some(&other_person), &[]);
    // Not ready: exit 2, as `create` would refuse it, with one line on stderr.
    assert_error(&r, 2, "not ready to submit");
    for needle in [
        "case: individual_other",
        "[MISSING   ] id_card_front",
        "[MISSING   ] individual_appeal_letter",
        "proof_of_payment",
        "conditional (changes_secure_phone)",
        "ready to submit: no",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} not in:\n{}", r.stdout);
    }
    let json = run_with(&url, &["appeal", "checklist", "--json", "-", "--format", "json"], Some(&other_person), &[]);
    assert_eq!(json.code, 2, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let missing: Vec<&str> = v["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    assert_eq!(missing, ["id_card_front", "id_card_back", "individual_appeal_letter", "proof_of_payment"]);
    let ready = run_with(&url, &["appeal", "checklist", "--json", "-"], Some(APPEAL), &[]);
    assert!(ready.stdout.contains("ready to submit: yes"), "{}", ready.stdout);
    assert_eq!(ready.code, 0, "{}", ready.stderr);
}

/// APPEAL with these documents, each a local `file` beside the draft in `dir`.
fn appeal_with_files(dir: &Path, files: &[(&str, &str, &[u8])]) -> std::path::PathBuf {
    let mut v: serde_json::Value = serde_json::from_str(APPEAL).unwrap();
    let mut documents = Vec::new();
    for (kind, name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
        documents.push(serde_json::json!({ "kind": kind, "file": name }));
    }
    v["documents"] = documents.into();
    let draft = dir.join("draft.json");
    std::fs::write(&draft, v.to_string()).unwrap();
    draft
}

#[test]
fn checklist_flags_each_local_file_create_would_refuse_and_is_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    import_accounts(&url);
    let receipt = std::fs::read(common::examples().join("documents/receipt.png")).unwrap();
    let too_large = vec![0x25u8; 12 * 1024 * 1024];
    let draft = appeal_with_files(
        dir.path(),
        &[
            ("supplementary", "fine.png", &receipt),
            ("supplementary", "empty.pdf", b""),
            ("supplementary", "notes.txt", b"just some words"),
            ("supplementary", "huge.pdf", &too_large),
        ],
    );
    let draft = draft.to_str().unwrap();
    let r = run(&url, &["appeal", "checklist", "--json", draft]);
    assert_error(&r, 2, "not ready to submit: 3 problem(s)");
    for needle in [
        "documents[1]: supplementary: the file is empty",
        "documents[2]: supplementary: the file is not a JPEG, PNG or PDF",
        "documents[3]: supplementary: the file is 12 MiB; the limit is 10 MiB",
        "ready to submit: no",
    ] {
        assert!(r.stdout.contains(needle), "{needle:?} not in:\n{}", r.stdout);
    }
    assert!(!r.stdout.contains("documents[0]"), "the good file passes:\n{}", r.stdout);
    // `create` refuses the same draft for the same reasons, and stores nothing.
    let created = run(&url, &["appeal", "create", "--json", draft]);
    assert_error(&created, 2, "supplementary: the file is empty");
    assert_eq!(run(&url, &["appeal", "list", "--json"]).stdout.trim(), "[]");

    let json = run(&url, &["appeal", "checklist", "--json", draft, "--format", "json"]);
    assert_eq!(json.code, 2, "{}", json.stderr);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let fields: Vec<&str> = v["problems"].as_array().unwrap().iter().map(|p| p["field"].as_str().unwrap()).collect();
    assert_eq!(fields, ["documents[1]", "documents[2]", "documents[3]"]);

    // With only the good file the draft is ready, and `create` takes it.
    let good = appeal_with_files(dir.path(), &[("supplementary", "fine.png", &receipt)]);
    let ready = run(&url, &["appeal", "checklist", "--json", good.to_str().unwrap()]);
    assert_eq!(ready.code, 0, "{}\n{}", ready.stdout, ready.stderr);
    assert!(ready.stdout.contains("ready to submit: yes"), "{}", ready.stdout);
    assert_eq!(run(&url, &["appeal", "create", "--json", good.to_str().unwrap()]).code, 0);
}

#[test]
fn progress_gives_the_same_answer_for_unknown_ticket_and_wrong_phone() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    import_accounts(&url);
    let ticket = run_with(&url, &["appeal", "create", "--json", "-"], Some(APPEAL), &[]).stdout.trim().to_string();
    let ok = run(&url, &["appeal", "progress", &ticket, "--phone", "138 1234 5678", "--json"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let v: serde_json::Value = serde_json::from_str(&ok.stdout).unwrap();
    assert_eq!(v["stage"], "received");
    let wrong_phone = run(&url, &["appeal", "progress", &ticket, "--phone", "13812345679"]);
    let unknown = run(&url, &["appeal", "progress", "0000-0000-0000-0000-0000", "--phone", "13812345678"]);
    assert_error(&wrong_phone, 2, "no appeal matches this ticket number and phone number");
    assert_eq!((wrong_phone.code, &wrong_phone.stderr), (unknown.code, &unknown.stderr));
}

#[test]
fn accounts_import_refuses_bad_records_and_shows_identity_numbers_masked() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let file = dir.path().join("bad.json");
    std::fs::write(
        &file,
        r#"[{"name": "x", "verification": "individual",
        "verified_individual": {"name": "A", "id_number": "310104197812030051"}}]"#,
    )
    .unwrap();
    let r = run(&url, &["accounts", "import", file.to_str().unwrap()]);
    assert_error(&r, 2, "[0].verified_individual.id_number: the ID card number's check character does not match");
    assert!(!r.stderr.contains("310104197812030051"));
    import_accounts(&url);
    let shown = run(&url, &["accounts", "show", "acme"]);
    assert!(shown.stdout.contains("310104********005X"), "{}", shown.stdout);
    assert!(!shown.stdout.contains("31010419781203005X"));
    let json = run(&url, &["accounts", "show", "acme", "--json"]);
    assert!(!json.stdout.contains("19781203"), "{}", json.stdout);
    assert_error(&run(&url, &["accounts", "show", "nobody"]), 2, "no account named \"nobody\"");
    // Without a configured key, an embedded database gets its own key file, created once...
    let accounts = dir.path().join("accounts.json");
    std::fs::write(&accounts, ACCOUNTS).unwrap();
    let own_db = format!("sqlite://{}", dir.path().join("own.db").display());
    let run_without_key = |url: &str| {
        Command::new(BIN)
            .args(["accounts", "import", accounts.to_str().unwrap()])
            .env("APPEALFLOW_DATABASE_URL", url)
            .env("APPEALFLOW_WORKFLOWS", common::workflows_dir())
            .env_remove("APPEALFLOW_ID_HASH_KEY")
            .output()
            .unwrap()
    };
    let first = run_without_key(&own_db);
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let key_file = dir.path().join("own.db.idkey");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(run_without_key(&own_db).status.code(), Some(0));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key, "...and reused");
    // ...while a database elsewhere (here an in-memory one) needs the key configured.
    let no_key = run_without_key("sqlite::memory:");
    assert_eq!(no_key.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("APPEALFLOW_ID_HASH_KEY is not set"));
}

#[test]
fn unknown_and_mistyped_tickets_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    import_accounts(&url);
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
    import_accounts(&url);
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
    import_accounts(&url);
    let allow = [("APPEALFLOW_ALLOW_CLOCK_OVERRIDE", "1")];
    let ticket = create_at(&url, "2026-03-09T10:00:00+08:00").stdout.trim().to_string();
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

    // The README's diagram is the one `workflow graph` prints, edge for edge.
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("```mermaid\n").expect("README has a mermaid diagram") + "```mermaid\n".len();
    let block = &readme[start..start + readme[start..].find("```").expect("the diagram ends")];
    assert_eq!(block, graph.stdout, "README's mermaid block differs from `appealflow workflow graph`");

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
    assert_error(&refused, 2, "workflow.toml: transitions.approve: unknown guard \"is_full_moon\"");
    assert!(refused.stdout.contains("transitions.approve: unknown guard"), "reasons listed: {}", refused.stdout);
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
    for needle in [
        "timer review_sla.warning",
        "resubmission_window",
        "awaiting_second_approval",
        "confirm_approval by li.wei refused",
        "gave the first approval",
        "confirm_approval",
        "by chen.jing (lead)",
        "closed (completed)",
        "history of",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from demo output:\n{stdout}");
    }
}

/// The README's walk-through, run as written (with the built binary for `cargo run -q --`):
/// every line succeeds, except those whose comment says which exit code to expect.
#[test]
fn readme_walkthrough_works_as_written() {
    let stdout = readme_block("### A walk-through\n");
    // Four-eyes: ann's approval of a new verified entity waits; lee gives the second.
    assert!(stdout.contains("under_review -> awaiting_second_approval"), "{stdout}");
    assert!(stdout.contains("awaiting_second_approval -> cooling_off"), "{stdout}");
    assert!(stdout.contains("approve            under_review -> awaiting_second_approval  by ann"), "{stdout}");
    assert!(stdout.contains("confirm_approval   awaiting_second_approval -> cooling_off  by lee (lead)"), "{stdout}");
    // Cooling-off: the simulated worker passes 24 hours, the changes apply, it closes.
    assert!(stdout.contains("cooling_off_elapsed cooling_off -> approved"), "{stdout}");
    assert!(stdout.contains("complete           approved -> closed  by appealflow (system)"), "{stdout}");
    assert!(stdout.contains("continue  until"), "{stdout}");
    assert!(stdout.contains("workflow   account-appeal v1"), "{stdout}");
}

/// The README's workflow-versions walk-through, run as written.
#[test]
fn readme_versions_walkthrough_works_as_written() {
    let stdout = readme_block("### Workflow versions, a walk-through\n");
    assert!(stdout.contains("workflow \"account-appeal\" v1 is valid"), "{stdout}");
    assert!(stdout.contains("workflow \"account-appeal\" v2 is valid"), "{stdout}");
    assert!(stdout.contains("1-to-2.toml: migration v1 -> v2 is valid"), "{stdout}");
    assert_eq!(stdout.matches("workflow   account-appeal v1").count(), 1, "{stdout}");
    assert_eq!(stdout.matches("workflow   account-appeal v2").count(), 2, "{stdout}");
    assert!(stdout.contains(": migrated to v2: submitted -> submitted"), "{stdout}");
    assert!(stdout.contains("migrate            submitted -> submitted  by ada (admin)"), "{stdout}");
    assert!(stdout.contains(": already on v2"), "{stdout}");
    // The old appeal's review deadline moved earlier by the new rule (printed before and after).
    let dues: Vec<&str> = stdout.lines().filter(|l| l.starts_with("review due ")).collect();
    assert_eq!(dues.len(), 3, "{stdout}");
    // Old (v1, 3 days), new (v2, 2 days), old migrated (re-armed by the 2-day rule).
    assert!(dues[1] < dues[0] && dues[2] < dues[0], "{dues:?}");
}

/// A README block under `heading`, run line by line (with the built binary for `cargo run
/// -q --`) on a fresh embedded database: every line succeeds, except those whose comment
/// says which exit code to expect. Answers its standard output.
fn readme_block(heading: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find(heading).expect("README has the walk-through");
    let block = &readme[start..];
    let open = block.find("```sh\n").unwrap() + "```sh\n".len();
    let close = block[open..].find("```").unwrap();
    let script = &block[open..open + close];
    let dir = tempfile::tempdir().unwrap();
    let mut lines = vec!["set -u".to_string()];
    for (i, line) in script.lines().enumerate() {
        let line = line.replace("cargo run -q --release --", BIN);
        let expected = line.split("exit ").nth(1).and_then(|r| r.trim().parse::<i32>().ok()).unwrap_or(0);
        lines.push(format!(
            "{line}\ncode=$?; if [ $code -ne {expected} ]; then echo \"walk-through line {}: exit $code, expected {expected}\" >&2; exit 1; fi",
            i + 1
        ));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(lines.join("\n"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("APPEALFLOW_DATABASE_URL", sqlite_url(dir.path()))
        .env("APPEALFLOW_BLOB_DIR", dir.path().join("blobs"))
        .env_remove("APPEALFLOW_ALLOW_CLOCK_OVERRIDE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The README's curl walk-through, run as written against `appealflow serve` (a real
/// process on a loopback port, worker in-process), with the built binary for
/// `cargo run -q --`: a whole appeal from draft to closed through the API.
fn readme_curl_walkthrough(url: &str, id_key: Option<&str>) {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find("### A walk-through with curl").expect("README has the curl walk-through");
    let block = &readme[start..];
    // The second sh block: the first starts the service.
    let first = block.find("```sh\n").unwrap() + 6;
    let after_first = first + block[first..].find("```").unwrap() + 3;
    let open = after_first + block[after_first..].find("```sh\n").unwrap() + 6;
    let close = open + block[open..].find("```").unwrap();
    let script = block[open..close].replace("cargo run -q --release --", BIN);

    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let env = |c: &mut Command| {
        c.env("APPEALFLOW_DATABASE_URL", url)
            .env("APPEALFLOW_BLOB_DIR", dir.path().join("blobs"))
            .env("APPEALFLOW_WORKFLOWS", common::workflows_dir());
        match id_key {
            Some(k) => c.env("APPEALFLOW_ID_HASH_KEY", k),
            None => c.env_remove("APPEALFLOW_ID_HASH_KEY"),
        };
    };
    let mut serve = Command::new(BIN);
    serve
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("APPEALFLOW_FACE_SECRET", "demo-face-secret")
        .env("APPEALFLOW_LOG", "debug");
    env(&mut serve);
    let log_path = dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut server = serve.stdout(Stdio::null()).stderr(log).spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "serve did not start listening");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let mut walk = Command::new("bash");
    walk.arg("-c")
        .arg(format!("set -eu\n{script}"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("AF", format!("http://127.0.0.1:{port}"));
    env(&mut walk);
    let out = walk.output().unwrap();
    // SIGTERM, as an operator would stop it.
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let stopped = server.wait().unwrap();
    assert!(stopped.success(), "serve stops cleanly on SIGTERM: {stopped}");
    // On the embedded database a graceful stop leaves the write-ahead log folded into the
    // database file: the file alone is a whole copy.
    if let Some(path) = url.strip_prefix("sqlite://") {
        let wal = std::fs::metadata(format!("{path}-wal")).map(|m| m.len()).unwrap_or(0);
        assert_eq!(wal, 0, "{path}-wal holds {wal} bytes after a graceful stop");
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(r#""stage":"received""#), "{stdout}");
    // The phone rotation waits out its cooling-off: approved, nothing applied yet.
    assert!(
        stdout.contains(r#""pending_change":{"change":"rotates the secure phone","approved_by":"lee""#),
        "{stdout}"
    );
    assert!(stdout.contains("no pending change matches this ticket number and stop code"), "{stdout}");
    assert!(stdout.trim_end().ends_with('}') && stdout.contains(r#""stage":"approved""#), "{stdout}");
    // Even at debug level, the service's log never holds a phone number, an ID number,
    // a token or a draft secret (the walk-through used all four).
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("request"), "the log was written: {log}");
    for secret in ["13712345678", "440304198506152416", "19850615", "aft_", "afd_", "demo-face-secret"] {
        assert!(!log.contains(secret), "{secret:?} appears in the service's log");
    }
}

#[test]
fn readme_curl_walkthrough_works_against_serve_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    readme_curl_walkthrough(&sqlite_url(dir.path()), None);
}

#[tokio::test(flavor = "multi_thread")]
#[cfg_attr(appealflow_no_postgres, ignore = "no PostgreSQL: set APPEALFLOW_TEST_POSTGRES_URL=postgres://... to run it")]
async fn readme_curl_walkthrough_works_against_serve_on_postgres() {
    if let Some(db) = common::postgres("readme_curl_walkthrough_works_against_serve_on_postgres").await {
        let url = db.url.clone();
        tokio::task::spawn_blocking(move || readme_curl_walkthrough(&url, Some("curl-walkthrough-key-0123456789")))
            .await
            .unwrap();
    }
}

#[test]
fn calendar_due_marks_a_deadline_past_the_published_years_provisional() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("cal.db").display());
    let args = ["calendar", "due", "--calendar", "cn-mainland", "--from", "2026-12-29T10:00:00+08:00"];
    let r = run(&url, &[&args[..], &["--business-days", "3"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("due 2027-01-05T00:00:00+08:00"), "{}", r.stdout);
    assert!(r.stdout.contains("PROVISIONAL: cn-mainland is published only until 2026"), "{}", r.stdout);
    assert!(r.stdout.contains("skipped: holiday: New Year's Day 2027 (statutory"), "{}", r.stdout);
    let r = run(&url, &[&args[..], &["--business-days", "3", "--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (v["provisional"].clone(), v["last_business_day"].clone()),
        (serde_json::json!(true), "2027-01-04".into())
    );
    // Inside the published years: no mark.
    let inside = ["calendar", "due", "--calendar", "cn-mainland", "--from", "2026-03-02T10:00:00+08:00"];
    let r = run(&url, &[&inside[..], &["--business-days", "3"]].concat());
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!r.stdout.contains("PROVISIONAL"), "{}", r.stdout);
}

#[test]
fn tokens_carry_a_leads_email_and_a_bad_address_is_refused_storing_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("tokens.db").display());
    let bad = run(&url, &["tokens", "create", "--role", "lead", "--name", "lee", "--email", "lee at example"]);
    assert_error(&bad, 2, "email: \"lee at example\" is not an email address");
    let list = run(&url, &["tokens", "list", "--json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&list.stdout).unwrap(), serde_json::json!([]));
    let ok = run(&url, &["tokens", "create", "--role", "lead", "--name", "lee", "--email", "lee@example.com"]);
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    assert!(ok.stdout.trim().starts_with("aft_"), "{}", ok.stdout);
    let list: serde_json::Value = serde_json::from_str(&run(&url, &["tokens", "list", "--json"]).stdout).unwrap();
    assert_eq!((list[0]["name"].clone(), list[0]["email"].clone()), ("lee".into(), "lee@example.com".into()));
    assert!(list[0].get("token_hash").is_none(), "the hash is not shown: {list}");
    let text = run(&url, &["tokens", "list"]).stdout;
    assert!(text.contains("lead") && text.contains("lee@example.com"), "{text}");
}

/// Settings are declared flags: `--help` names their environment variables (never a
/// secret's value) and the values an argument allows; `workflow check` takes the
/// `--workflows` folder as well as a workflow's own; and a command that opens no
/// database leaves no key file beside it.
#[test]
fn settings_are_flags_with_help_and_commands_without_a_database_touch_nothing() {
    let help = run("sqlite::memory:", &["--help"]);
    assert_eq!(help.code, 0, "{}", help.stderr);
    for var in [
        "APPEALFLOW_ID_HASH_KEY",
        "APPEALFLOW_LEAD_EMAILS",
        "APPEALFLOW_ACTIONS_URL",
        "APPEALFLOW_ALLOW_CLOCK_OVERRIDE",
    ] {
        assert!(help.stdout.contains(var), "{var} not in --help:\n{}", help.stdout);
    }
    assert!(!help.stdout.contains("cli-test-key-0123456789"), "a secret's value is shown:\n{}", help.stdout);
    let tokens = run("sqlite::memory:", &["tokens", "create", "--help"]);
    assert!(tokens.stdout.contains("reviewer, lead, admin"), "{}", tokens.stdout);
    let bad = run("sqlite::memory:", &["tokens", "create", "--role", "applicant", "--name", "x"]);
    assert_error(&bad, 2, "applicant");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("quiet.db");
    let url = format!("sqlite://{}", db.display());
    let parent = common::workflows_dir();
    let parent = parent.to_str().unwrap();
    for args in [vec!["workflow", "check", parent], vec!["workflow", "graph", parent], vec!["workflow", "check"]] {
        let r = run_with(&url, &args, None, &[("APPEALFLOW_ID_HASH_KEY", "")]);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
    }
    // A worker setting out of its range is refused by name before anything is opened.
    for batch in ["0", "5001", "many"] {
        let bad = run_with(&url, &["worker", "--timer-batch", batch], None, &[]);
        assert_error(&bad, 2, "--timer-batch");
    }
    for lanes in ["0", "9", "two"] {
        let bad = run_with(&url, &["worker", "--timer-lanes", lanes], None, &[]);
        assert_error(&bad, 2, "--timer-lanes");
    }
    assert!(!db.exists(), "no database was needed");
    assert!(!dir.path().join("quiet.db.idkey").exists(), "no key file was needed");
}

/// `appeal create` of the example appeal at `now` (a simulated clock); what it printed.
fn create_at(url: &str, now: &str) -> Run {
    let allow = [("APPEALFLOW_ALLOW_CLOCK_OVERRIDE", "1")];
    let created = run_with(url, &["--now", now, "appeal", "create", "--json", "-"], Some(APPEAL), &allow);
    assert_eq!(created.code, 0, "{}", created.stderr);
    created
}

#[test]
fn whatif_reports_what_a_published_arrangement_would_move_as_the_readme_runs_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    import_accounts(&url);
    // Received Thu 2027-02-04, the day before the Spring Festival's eve: provisionally due
    // at the end of Thu 02-11, its warning at the start of that day.
    let created = create_at(&url, "2027-02-04T10:00:00+08:00");
    let ticket = created.stdout.trim().to_string();
    let timers = run(&url, &["timers", "list", "--json"]).stdout;
    // The 2027 arrangement written into a copy of the calendar, as the README says.
    let shipped = std::fs::read_to_string(common::workflows_dir().join("calendars/cn-mainland.toml")).unwrap();
    let proposed = dir.path().join("cn-mainland-2027.toml");
    std::fs::write(
        &proposed,
        shipped.replace("last_year = 2026", "last_year = 2027")
            + "\n[[holidays]]\nname = \"New Year's Day 2027\"\nfrom = \"2027-01-01\"\n\n\
               [[holidays]]\nname = \"Spring Festival 2027\"\nfrom = \"2027-02-05\"\nto = \"2027-02-11\"\n",
    )
    .unwrap();
    let calendar = proposed.to_str().unwrap();
    let r = run(&url, &["whatif", "--calendar", calendar, "--from", "2026-12-01T00:00:00+08:00"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("2 timers read, 2 would differ on 1 appeals"), "{}", r.stdout);
    let sla = r.stdout.lines().find(|l| l.starts_with(&format!("{ticket} review_sla #1"))).expect(&r.stdout);
    assert!(
        sla.contains("2027-02-12 00:00 → 2027-02-17 00:00 (+5d 0h): moves [recorded deadline provisional]"),
        "{sla}"
    );
    let json = run(&url, &["whatif", "--calendar", calendar, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["changes"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["summary"][0]["most_later_seconds"], 5 * 86_400);
    // Timers armed after --to are not read.
    let r = run(&url, &["whatif", "--calendar", calendar, "--to", "2027-01-01T00:00:00+08:00"]);
    assert!(r.stdout.contains("0 timers read"), "{}", r.stdout);
    assert_error(&run(&url, &["whatif"]), 2, "nothing proposed");
    assert_error(&run(&url, &["whatif", "--calendar", calendar, "--from", "tomorrow"]), 2, "--from");
    assert_eq!(run(&url, &["timers", "list", "--json"]).stdout, timers, "whatif wrote nothing");
}

#[test]
fn whatif_replays_a_proposed_workflow_with_a_shorter_review_sla() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    import_accounts(&url);
    // Received Mon 2026-03-09 10:00: due at the end of Thu 03-12 (3 business days).
    create_at(&url, "2026-03-09T10:00:00+08:00");
    // A copy of the workflows with the review SLA at 2 business days.
    let proposed = dir.path().join("workflows");
    for sub in ["account-appeal", "account-appeal/templates", "calendars"] {
        std::fs::create_dir_all(proposed.join(sub)).unwrap();
        for entry in std::fs::read_dir(common::workflows_dir().join(sub)).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                std::fs::copy(&path, proposed.join(sub).join(path.file_name().unwrap())).unwrap();
            }
        }
    }
    let wf = proposed.join("account-appeal/workflow.toml");
    let text = std::fs::read_to_string(&wf).unwrap();
    std::fs::write(&wf, text.replace("after = { business_days = 3 }", "after = { business_days = 2 }")).unwrap();
    let r = run(&url, &["whatif", "--workflow", proposed.join("account-appeal").to_str().unwrap(), "--json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let sla = v["changes"].as_array().unwrap().iter().find(|c| c["timer"] == "review_sla").expect(&r.stdout);
    assert_eq!(sla["shift_seconds"], -86_400, "one business day earlier: {sla}");
    assert_eq!(sla["proposed_due"], "2026-03-11T16:00:00Z");
    let broken = run(&url, &["whatif", "--workflow", dir.path().to_str().unwrap()]);
    assert_error(&broken, 2, "--workflow");
}
