//! The workflow loader refuses broken definitions, naming the file and the entry at
//! fault and reporting every problem at once; the graph export covers the whole
//! definition; and the pure `decide` respects the shipped definition for any input.
//!
//! Each refusal test copies `workflows/account-appeal/` into a temporary directory,
//! breaks one thing in its `workflow.toml`, and loads it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use appealflow::domain::{Actor, Role};
use appealflow::workflow::definition::{DefinitionProblem, RiskRoute, template_names, validate};
use appealflow::workflow::graph::{GraphFormat, render};
use appealflow::workflow::{
    DefinitionError, Facts, Fire, FirstApproval, Refusal, Snapshot, Workflow, decide, decide_timer,
};
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use tempfile::TempDir;
use toml::{Table, Value};

// ------------------------------------------------------------ fixtures

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shipped_dir() -> PathBuf {
    manifest_dir().join("workflows/account-appeal")
}

fn calendars_dir() -> PathBuf {
    manifest_dir().join("workflows/calendars")
}

fn shipped_text() -> String {
    std::fs::read_to_string(shipped_dir().join("workflow.toml")).expect("shipped workflow.toml")
}

/// A copy of the shipped workflow directory with `workflow.toml` replaced by `text`.
fn workflow_dir(text: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let templates = dir.path().join("templates");
    std::fs::create_dir(&templates).unwrap();
    for entry in std::fs::read_dir(shipped_dir().join("templates")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), templates.join(entry.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("workflow.toml"), text).unwrap();
    dir
}

fn load(dir: &Path) -> Result<Workflow, DefinitionError> {
    Workflow::load(dir, &calendars_dir())
}

/// The shipped definition parsed as a TOML table, edited by `edit`, re-serialised.
pub(crate) fn edited(edit: impl FnOnce(&mut Table)) -> String {
    let mut table: Table = shipped_text().parse().expect("shipped workflow.toml parses");
    edit(&mut table);
    toml::to_string(&table).expect("re-serialise")
}

/// Loads `text` (in a copy of the shipped directory) and returns the problems, after
/// checking every problem names that copy's `workflow.toml`.
#[track_caller]
pub(crate) fn refused(text: &str) -> Vec<DefinitionProblem> {
    let dir = workflow_dir(text);
    refused_in(&dir)
}

#[track_caller]
fn refused_in(dir: &TempDir) -> Vec<DefinitionProblem> {
    match load(dir.path()) {
        Ok(_) => panic!("the broken definition loaded"),
        Err(DefinitionError(problems)) => {
            assert!(!problems.is_empty(), "a refusal without problems");
            let file = dir.path().join("workflow.toml");
            for p in &problems {
                assert_eq!(p.file, file, "problem names the wrong file: {p}");
            }
            problems
        }
    }
}

#[track_caller]
pub(crate) fn refused_edit(edit: impl FnOnce(&mut Table)) -> Vec<DefinitionProblem> {
    refused(&edited(edit))
}

/// Asserts some problem is about `entry` and its text contains every fragment.
#[track_caller]
pub(crate) fn assert_problem(problems: &[DefinitionProblem], entry: &str, fragments: &[&str]) {
    let found = problems.iter().any(|p| p.entry == entry && fragments.iter().all(|f| p.problem.contains(f)));
    assert!(
        found,
        "no problem for {entry:?} containing {fragments:?}; problems:\n{}",
        problems.iter().map(|p| format!("  {}: {}", p.entry, p.problem)).collect::<Vec<_>>().join("\n")
    );
}

/// Asserts `problems` is exactly one problem, about `entry`, containing the fragments.
#[track_caller]
pub(crate) fn assert_only_problem(problems: &[DefinitionProblem], entry: &str, fragments: &[&str]) {
    assert_eq!(problems.len(), 1, "expected one problem, got {problems:#?}");
    assert_problem(problems, entry, fragments);
}

fn list<'a>(table: &'a mut Table, kind: &str) -> &'a mut Vec<Value> {
    table.get_mut(kind).and_then(Value::as_array_mut).unwrap_or_else(|| panic!("no [[{kind}]] array"))
}

/// The `[[kind]]` entry named `name`.
pub(crate) fn named<'a>(table: &'a mut Table, kind: &str, name: &str) -> &'a mut Table {
    list(table, kind)
        .iter_mut()
        .filter_map(Value::as_table_mut)
        .find(|e| e.get("name").and_then(Value::as_str) == Some(name))
        .unwrap_or_else(|| panic!("no {kind}.{name}"))
}

fn push(table: &mut Table, kind: &str, entry: &str) {
    let entry: Table = entry.parse().expect("entry parses");
    list(table, kind).push(Value::Table(entry));
}

pub(crate) fn strings(items: &[&str]) -> Value {
    Value::Array(items.iter().map(|s| Value::from(*s)).collect())
}

fn effect(text: &str) -> Value {
    Value::Table(text.parse().expect("effect parses"))
}

pub(crate) fn shipped() -> &'static Workflow {
    static WF: OnceLock<Workflow> = OnceLock::new();
    WF.get_or_init(|| load(&shipped_dir()).expect("the shipped workflow loads"))
}

// ------------------------------------------------------------ the shipped definition

#[test]
fn shipped_definition_loads() {
    let wf = shipped();
    assert_eq!(wf.name(), "account-appeal");
    assert_eq!(wf.calendar.name, "cn-mainland");
    assert_eq!(wf.dir, shipped_dir());
    let states: Vec<&str> = wf.def.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        states,
        [
            "submitted",
            "under_review",
            "awaiting_second_approval",
            "cooling_off",
            "approved",
            "rejected",
            "resubmission_window",
            "closed"
        ]
    );
    assert_eq!(wf.def.transitions.len(), 21);
    assert_eq!(wf.def.timers.len(), 6);
    assert_eq!(wf.creation().name, "submit");
    for t in [
        "appeal_received",
        "appeal_approved",
        "appeal_rejected",
        "sla_breach",
        "sla_warning",
        "window_expired",
        "window_reminder",
        "notice_undeliverable",
        "action_failed",
        "completion_overdue",
        "second_approval_needed",
        "approval_sent_back",
        "change_pending",
        "change_disputed",
    ] {
        assert!(wf.templates.contains(t), "template {t} not found");
    }
    assert_eq!(wf.templates.len(), 16, "{:?}", wf.templates);
}

#[test]
fn shipped_definition_validates_without_problems() {
    let wf = shipped();
    assert_eq!(validate(&wf.def, &wf.templates), vec![]);
    assert_eq!(template_names(&shipped_dir().join("templates")), wf.templates);
}

#[test]
fn shipped_definition_survives_a_toml_round_trip() {
    // The fixture machinery itself: an unedited re-serialisation loads.
    let dir = workflow_dir(&edited(|_| {}));
    let wf = load(dir.path()).expect("re-serialised definition loads");
    assert_eq!(wf.def.transitions.len(), shipped().def.transitions.len());
}

// ------------------------------------------------------------ unknown names

#[test]
fn refuses_unknown_state_in_transition_target() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "approve").insert("to".into(), "limbo".into());
    });
    assert_problem(&problems, "transitions.approve", &["unknown state \"limbo\" in `to`", "under_review"]);
}

#[test]
fn refuses_unknown_state_in_transition_source() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "withdraw")
            .insert("from".into(), strings(&["submitted", "limbo", "resubmission_window"]));
    });
    assert_only_problem(&problems, "transitions.withdraw", &["unknown state \"limbo\" in `from`"]);
}

#[test]
fn refuses_unknown_state_in_timer_states() {
    let problems = refused_edit(|t| {
        named(t, "timers", "review_sla")
            .insert("states".into(), strings(&["submitted", "limbo", "awaiting_second_approval"]));
    });
    assert_only_problem(&problems, "timers.review_sla", &["unknown state \"limbo\""]);
}

#[test]
fn refuses_unknown_guard() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "approve").insert("guards".into(), strings(&["holds_claim", "is_a_friday"]));
    });
    assert_only_problem(&problems, "transitions.approve", &["unknown guard \"is_a_friday\"", "holds_claim"]);
}

#[test]
fn refuses_unknown_effect() {
    let problems = refused_edit(|t| {
        named(t, "states", "approved")
            .get_mut("on_enter")
            .and_then(Value::as_array_mut)
            .unwrap()
            .push(effect(r#"effect = "launch_rockets""#));
    });
    assert_only_problem(&problems, "states.approved", &["unknown effect \"launch_rockets\"", "notify"]);
}

#[test]
fn refuses_unknown_effect_in_a_timer_warning() {
    let text = shipped_text().replace(
        r#"event = "sla_warning", effects = [{ effect = "notify""#,
        r#"event = "sla_warning", effects = [{ effect = "page""#,
    );
    assert_ne!(text, shipped_text());
    let problems = refused(&text);
    assert_problem(&problems, "timers.review_sla", &["unknown effect \"page\""]);
}

#[test]
fn refuses_notify_naming_a_template_without_a_file() {
    let problems = refused_edit(|t| {
        named(t, "states", "rejected").insert(
            "on_enter".into(),
            Value::Array(vec![effect(
                r#"effect = "notify"
                   template = "appeal_lost"
                   to = "applicant""#,
            )]),
        );
    });
    assert_only_problem(
        &problems,
        "states.rejected",
        &["unknown template \"appeal_lost\"", "templates/appeal_lost.*.hbs"],
    );
}

#[test]
fn refuses_notify_whose_template_files_were_removed() {
    let dir = workflow_dir(&shipped_text());
    for f in [
        "window_expired.sms.en.hbs",
        "window_expired.sms.zh-CN.hbs",
        "window_expired.email.en.hbs",
        "window_expired.email.zh-CN.hbs",
    ] {
        std::fs::remove_file(dir.path().join("templates").join(f)).unwrap();
    }
    let problems = refused_in(&dir);
    assert_only_problem(&problems, "timers.resubmission_window", &["unknown template \"window_expired\""]);
}

#[test]
fn refuses_notify_without_template_or_recipient() {
    let problems = refused_edit(|t| {
        named(t, "states", "submitted").insert("on_enter".into(), Value::Array(vec![effect(r#"effect = "notify""#)]));
    });
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert_problem(&problems, "states.submitted", &["needs a template"]);
    assert_problem(&problems, "states.submitted", &["needs a recipient"]);
}

#[test]
fn refuses_unknown_recipient() {
    let text = shipped_text()
        .replace(r#"template = "sla_breach", to = "leads""#, r#"template = "sla_breach", to = "everyone""#);
    assert_ne!(text, shipped_text());
    let problems = refused(&text);
    assert_only_problem(
        &problems,
        "timers.review_sla",
        &["unknown recipient \"everyone\"", "applicant, leads, security_contacts"],
    );
}

#[test]
fn refuses_unknown_calendar() {
    let problems = refused_edit(|t| {
        t.get_mut("workflow").and_then(Value::as_table_mut).unwrap().insert("calendar".into(), "atlantis".into());
    });
    assert_only_problem(&problems, "workflow.calendar", &["no calendar named \"atlantis\"", "cn-mainland, weekdays"]);
}

#[test]
fn refuses_timer_firing_unknown_transition() {
    let problems = refused_edit(|t| {
        let fires = named(t, "timers", "claim_expiry").get_mut("fires").and_then(Value::as_table_mut).unwrap();
        fires.insert("transition".into(), "evaporate".into());
    });
    assert_only_problem(&problems, "timers.claim_expiry", &["unknown transition \"evaporate\""]);
}

// ------------------------------------------------------------ graph shape

#[test]
fn refuses_unreachable_state() {
    let problems = refused_edit(|t| {
        push(t, "states", r#"name = "limbo""#);
        push(
            t,
            "transitions",
            r#"name = "escape"
               from = ["limbo"]
               to = "submitted"
               roles = ["admin"]"#,
        );
    });
    assert_problem(&problems, "states.limbo", &["cannot be reached from the state appeals are created in"]);
    // Were it reached, nothing would alert anyone to an appeal waiting there.
    assert_problem(&problems, "states.limbo", &["could be stranded"]);
    assert_eq!(problems.len(), 2, "{problems:#?}");
}

#[test]
fn refuses_non_terminal_state_with_no_way_out() {
    let problems = refused_edit(|t| {
        push(t, "states", r#"name = "limbo""#);
        push(
            t,
            "transitions",
            r#"name = "banish"
               from = ["under_review"]
               to = "limbo"
               roles = ["admin"]"#,
        );
    });
    assert_only_problem(&problems, "states.limbo", &["not terminal, yet no transition leaves it"]);
}

#[test]
fn refuses_transition_leaving_a_terminal_state() {
    let problems = refused_edit(|t| {
        push(
            t,
            "transitions",
            r#"name = "reopen"
               from = ["closed"]
               to = "submitted"
               roles = ["admin"]"#,
        );
    });
    assert_only_problem(&problems, "transitions.reopen", &["leaves terminal state \"closed\""]);
}

#[test]
fn refuses_definition_without_creation_transition() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "submit").insert("from".into(), strings(&["resubmission_window"]));
    });
    assert_only_problem(&problems, "transitions", &["exactly one transition must create the appeal", "found 0"]);
}

#[test]
fn refuses_definition_with_two_creation_transitions() {
    let problems = refused_edit(|t| {
        push(
            t,
            "transitions",
            r#"name = "import"
               to = "submitted"
               roles = ["admin"]"#,
        );
    });
    assert_only_problem(&problems, "transitions", &["exactly one transition must create the appeal", "found 2"]);
}

#[test]
fn refuses_transition_no_role_may_fire() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "claim").insert("roles".into(), Value::Array(vec![]));
    });
    assert_only_problem(&problems, "transitions.claim", &["no role may fire it"]);
}

// ------------------------------------------------------------ duplicates

#[test]
fn refuses_duplicate_state_name() {
    let problems = refused_edit(|t| {
        push(
            t,
            "states",
            r#"name = "approved"
               description = "again""#,
        );
    });
    assert_only_problem(&problems, "states.approved", &["duplicate state name"]);
}

#[test]
fn refuses_duplicate_transition_name() {
    let problems = refused_edit(|t| {
        let copy = named(t, "transitions", "approve").clone();
        list(t, "transitions").push(Value::Table(copy));
    });
    assert_only_problem(&problems, "transitions.approve", &["duplicate transition name"]);
}

#[test]
fn refuses_duplicate_timer_name() {
    let problems = refused_edit(|t| {
        let copy = named(t, "timers", "claim_expiry").clone();
        list(t, "timers").push(Value::Table(copy));
    });
    assert_only_problem(&problems, "timers.claim_expiry", &["duplicate timer name"]);
}

// ------------------------------------------------------------ timers

#[test]
fn refuses_timer_whose_transition_does_not_leave_its_state() {
    // `complete` leaves `approved`, not `under_review` where the claim timer runs.
    let problems = refused_edit(|t| {
        named(t, "timers", "claim_expiry")
            .get_mut("fires")
            .and_then(Value::as_table_mut)
            .unwrap()
            .insert("transition".into(), "complete".into());
    });
    assert_only_problem(&problems, "timers.claim_expiry", &["fires \"complete\"", "does not leave \"under_review\""]);
}

#[test]
fn refuses_timer_whose_transition_stays_among_its_states() {
    // `release` goes under_review → submitted; a timer running in both never leaves.
    let problems = refused_edit(|t| {
        named(t, "timers", "claim_expiry").insert("states".into(), strings(&["submitted", "under_review"]));
    });
    assert_problem(&problems, "timers.claim_expiry", &["does not leave \"submitted\""]);
    assert_problem(&problems, "timers.claim_expiry", &["stays among the timer's own states"]);
}

#[test]
fn refuses_timer_firing_transition_system_may_not_fire() {
    // `withdraw` leaves under_review, but only applicants and admins may fire it.
    let problems = refused_edit(|t| {
        named(t, "timers", "claim_expiry")
            .get_mut("fires")
            .and_then(Value::as_table_mut)
            .unwrap()
            .insert("transition".into(), "withdraw".into());
    });
    assert_only_problem(&problems, "timers.claim_expiry", &["fires \"withdraw\"", "`system` role may not fire"]);
}

#[test]
fn refuses_timer_with_both_transition_and_event() {
    let problems = refused_edit(|t| {
        named(t, "timers", "claim_expiry")
            .get_mut("fires")
            .and_then(Value::as_table_mut)
            .unwrap()
            .insert("event".into(), "claim_lapsed".into());
    });
    assert_only_problem(&problems, "timers.claim_expiry", &["exactly one of `transition` or `event`"]);
}

#[test]
fn refuses_timer_with_neither_transition_nor_event() {
    let problems = refused_edit(|t| {
        named(t, "timers", "claim_expiry").get_mut("fires").and_then(Value::as_table_mut).unwrap().remove("transition");
    });
    assert_only_problem(&problems, "timers.claim_expiry", &["exactly one of `transition` or `event`"]);
}

#[test]
fn refuses_timer_running_in_no_state() {
    let problems = refused_edit(|t| {
        named(t, "timers", "review_sla").insert("states".into(), Value::Array(vec![]));
    });
    assert_problem(&problems, "timers.review_sla", &["must run in at least one state"]);
    // Without it nothing alerts the leads to an appeal waiting for a reviewer.
    assert_problem(&problems, "states.submitted", &["could be stranded"]);
    assert_problem(&problems, "states.awaiting_second_approval", &["could be stranded"]);
    assert_eq!(problems.len(), 3, "{problems:#?}");
}

#[test]
fn refuses_a_state_an_appeal_could_be_stranded_in_waiting_for_an_external_system() {
    // Without its deadline, a rejected appeal waits for the notice's delivery alone: if
    // the SMS gateway and the mail server never answer, nothing moves it on.
    let problems = refused_edit(|t| {
        list(t, "timers").retain(|v| v.get("name").and_then(Value::as_str) != Some("notice_deadline"));
    });
    assert_only_problem(&problems, "states.rejected", &["could be stranded", "no timer moves it on"]);
    // An approved appeal waits for account actions; staff may complete it, but only a
    // timer that alerts the leads makes sure someone knows to.
    let problems = refused_edit(|t| {
        named(t, "timers", "completion_overdue").insert("fires".into(), effect(r#"event = "completion_overdue""#));
    });
    assert_only_problem(&problems, "states.approved", &["could be stranded", "alerts the leads"]);
}

#[test]
fn refuses_bindings_that_name_no_transition_or_one_that_cannot_do_the_job() {
    let problems = refused_edit(|t| {
        let b = t.get_mut("bindings").and_then(Value::as_table_mut).unwrap();
        b.insert("supersede".into(), "replace".into());
        b.insert("action_succeeded".into(), "complete".into());
        b.insert("completion".into(), "claim".into());
    });
    assert_problem(&problems, "bindings.supersede", &["unknown transition \"replace\""]);
    assert_problem(&problems, "bindings.action_succeeded", &["must leave the appeal in its state"]);
    assert_problem(&problems, "bindings.completion", &["may not be fired by the `system` role"]);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    // A workflow without them at all does not load.
    let problems = refused_edit(|t| {
        t.remove("bindings");
    });
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].problem.contains("missing field `bindings`"), "{problems:#?}");
}

#[test]
fn refuses_notices_whose_delivery_fires_what_cannot_fire_there() {
    let problems = refused_edit(|t| {
        let rejected = named(t, "states", "rejected");
        let effects = rejected.get_mut("on_enter").and_then(Value::as_array_mut).unwrap();
        let notice = effects[0].as_table_mut().unwrap();
        notice.insert("delivered".into(), "approve".into());
        notice.insert("undeliverable".into(), "vanish".into());
        notice.insert("deadline".into(), "sundial".into());
    });
    assert_problem(&problems, "states.rejected", &["`delivered`", "\"approve\"", "`system` role"]);
    assert_problem(&problems, "states.rejected", &["`delivered`", "does not fire from \"rejected\""]);
    assert_problem(&problems, "states.rejected", &["`undeliverable`: unknown transition \"vanish\""]);
    assert_problem(&problems, "states.rejected", &["`deadline`: unknown timer \"sundial\""]);
    assert_eq!(problems.len(), 4, "{problems:#?}");
}

#[test]
fn refuses_timer_running_in_a_terminal_state() {
    let problems = refused_edit(|t| {
        named(t, "timers", "review_sla")
            .insert("states".into(), strings(&["submitted", "closed", "awaiting_second_approval"]));
    });
    assert_only_problem(&problems, "timers.review_sla", &["cannot run in terminal state \"closed\""]);
}

#[test]
fn refuses_last_business_day_warning_on_a_calendar_day_timer() {
    let text = shipped_text()
        .replace("warning = { at = { hours_before = 24 }", "warning = { at = \"start_of_last_business_day\"");
    assert_ne!(text, shipped_text());
    let problems = refused(&text);
    assert_only_problem(
        &problems,
        "timers.resubmission_window",
        &["start_of_last_business_day needs a business_days timer"],
    );
}

// ------------------------------------------------------------ outcomes

#[test]
fn refuses_terminal_transition_without_outcome() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "complete").remove("outcome");
    });
    assert_only_problem(
        &problems,
        "transitions.complete",
        &["enters terminal state \"closed\"", "must name an `outcome`"],
    );
}

#[test]
fn refuses_outcome_not_in_the_terminal_states_list() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "expire").insert("outcome".into(), "evaporated".into());
    });
    assert_only_problem(
        &problems,
        "transitions.expire",
        &["outcome \"evaporated\" is not one of \"closed\"'s outcomes", "completed, expired, withdrawn, superseded"],
    );
}

#[test]
fn refuses_outcome_on_a_transition_to_a_non_terminal_state() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "claim").insert("outcome".into(), "completed".into());
    });
    assert_only_problem(&problems, "transitions.claim", &["has an outcome but \"under_review\" is not terminal"]);
}

#[test]
fn refuses_terminal_state_without_outcomes_and_outcomes_on_non_terminal_state() {
    let problems = refused_edit(|t| {
        named(t, "states", "closed").remove("outcomes");
        named(t, "states", "approved").insert("outcomes".into(), strings(&["completed"]));
    });
    assert_problem(&problems, "states.closed", &["a terminal state must list its outcomes"]);
    assert_problem(&problems, "states.approved", &["only a terminal state has outcomes"]);
}

// ------------------------------------------------------------ TOML-level errors

/// The 1-based line of the first line of `text` equal to `line` (trimmed).
fn line_of(text: &str, line: &str) -> usize {
    text.lines().position(|l| l.trim() == line).unwrap_or_else(|| panic!("no line {line:?}")) + 1
}

#[test]
fn refuses_toml_syntax_error_naming_the_line() {
    let text = shipped_text();
    let line = line_of(&text, r#"name = "approve""#);
    // The error is in the middle of the line: a value is missing after `=`.
    let broken = text.replacen(r#"name = "approve""#, r#"name = = "approve""#, 1);
    let problems = refused(&broken);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].entry, format!("line {line}"));
    assert!(!problems[0].problem.is_empty());
}

#[test]
fn refuses_unterminated_string_naming_the_line() {
    let text = shipped_text();
    let line = line_of(&text, r#"to = "rejected""#);
    let broken = text.replacen(r#"to = "rejected""#, r#"to = "rejected"#, 1);
    let problems = refused(&broken);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].entry, format!("line {line}"));
}

#[test]
fn refuses_syntax_error_on_the_first_line() {
    let problems = refused(&format!("this is not toml\n{}", shipped_text()));
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].entry, "line 1");
}

#[test]
fn refuses_unknown_field_naming_the_line() {
    let text = shipped_text();
    let line = line_of(&text, r#"name = "under_review""#) + 1;
    let broken = text.replacen("name = \"under_review\"\n", "name = \"under_review\"\ncolour = \"red\"\n", 1);
    let problems = refused(&broken);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].problem.contains("unknown field `colour`"), "{problems:#?}");
    assert_eq!(problems[0].entry, format!("line {line}"));
}

#[test]
fn refuses_syntax_error_at_the_start_of_a_line_naming_that_line() {
    let text = shipped_text();
    let line = line_of(&text, r#"name = "claim""#);
    let broken = text.replacen(r#"name = "claim""#, r#"= "claim""#, 1);
    let problems = refused(&broken);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_eq!(problems[0].entry, format!("line {line}"));
}

#[test]
fn refuses_unknown_field_in_the_header_and_in_an_effect() {
    let problems = refused(&shipped_text().replacen("version = 1\n", "version = 1\nowner = \"support\"\n", 1));
    assert!(problems[0].problem.contains("unknown field `owner`"), "{problems:#?}");
    assert!(problems[0].entry.starts_with("line "), "{problems:#?}");

    let problems = refused(&shipped_text().replacen(
        r#"{ effect = "post_approval_actions" }"#,
        r#"{ effect = "post_approval_actions", retries = 3 }"#,
        1,
    ));
    assert!(problems[0].problem.contains("unknown field `retries`"), "{problems:#?}");
}

#[test]
fn refuses_unknown_role() {
    let text = shipped_text();
    let line = line_of(&text, r#"roles = ["reviewer", "lead", "admin"]"#);
    let broken =
        text.replacen(r#"roles = ["reviewer", "lead", "admin"]"#, r#"roles = ["reviewer", "intern", "admin"]"#, 1);
    let problems = refused(&broken);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].problem.contains("intern"), "{problems:#?}");
    assert_eq!(problems[0].entry, format!("line {line}"));
}

#[test]
fn refuses_missing_workflow_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = load(dir.path()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert_eq!(err.0[0].entry, "file");
    assert_eq!(err.0[0].file, dir.path().join("workflow.toml"));
    assert!(err.0[0].problem.contains("cannot read"), "{err}");
}

// ------------------------------------------------------------ reporting

fn several_problems() -> String {
    edited(|t| {
        t.get_mut("workflow").and_then(Value::as_table_mut).unwrap().insert("calendar".into(), "atlantis".into());
        named(t, "transitions", "approve").insert("guards".into(), strings(&["holds_claim", "is_a_friday"]));
        named(t, "transitions", "expire").insert("outcome".into(), "evaporated".into());
        named(t, "timers", "review_sla")
            .insert("states".into(), strings(&["submitted", "limbo", "awaiting_second_approval"]));
        push(t, "states", r#"name = "limbo_two""#);
    })
}

#[test]
fn reports_several_problems_at_once() {
    let problems = refused(&several_problems());
    assert_problem(&problems, "workflow.calendar", &["atlantis"]);
    assert_problem(&problems, "transitions.approve", &["unknown guard"]);
    assert_problem(&problems, "transitions.expire", &["evaporated"]);
    assert_problem(&problems, "timers.review_sla", &["unknown state \"limbo\""]);
    assert_problem(&problems, "states.limbo_two", &["cannot be reached"]);
    assert_problem(&problems, "states.limbo_two", &["no transition leaves it"]);
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn display_lists_every_problem_with_file_and_entry() {
    let dir = workflow_dir(&several_problems());
    let err = load(dir.path()).unwrap_err();
    let shown = err.to_string();
    let file = dir.path().join("workflow.toml");
    assert!(shown.starts_with(&format!("workflow definition refused ({} problems):\n", err.0.len())), "{shown}");
    assert_eq!(shown.lines().count(), 1 + err.0.len(), "{shown}");
    for p in &err.0 {
        let line = format!("  - {}: {}: {}", file.display(), p.entry, p.problem);
        assert!(shown.lines().any(|l| l == line), "missing {line:?} in\n{shown}");
    }
}

#[test]
fn display_of_a_single_problem_is_singular() {
    let dir = workflow_dir(&edited(|t| {
        named(t, "transitions", "claim").insert("roles".into(), Value::Array(vec![]));
    }));
    let shown = load(dir.path()).unwrap_err().to_string();
    assert!(shown.starts_with("workflow definition refused (1 problem):\n  - "), "{shown}");
    assert!(shown.contains("transitions.claim: no role may fire it"), "{shown}");
}

// ------------------------------------------------------------ graph export

#[test]
fn mermaid_graph_has_an_edge_for_every_source_of_every_transition() {
    let def = &shipped().def;
    let out = render(def, GraphFormat::Mermaid);
    assert!(out.starts_with("stateDiagram-v2\n"), "{out}");
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    let mut edges = 0;
    for t in &def.transitions {
        let sources: Vec<&str> =
            if t.from.is_empty() { vec!["[*]"] } else { t.from.iter().map(String::as_str).collect() };
        for f in sources {
            let prefix = format!("{f} --> {}: {} [", t.to, t.name);
            assert!(lines.iter().any(|l| l.starts_with(&prefix)), "no edge {prefix:?} in\n{out}");
            edges += 1;
        }
    }
    // 18 transitions with one source, `reassign` with two, `withdraw` with five, `submit` from [*].
    assert_eq!(edges, 26);
    // The four-eyes and cooling-off branches have their own edges.
    assert!(
        lines.contains(&"under_review --> awaiting_second_approval: approve [reviewer|lead|admin] (four-eyes)"),
        "{out}"
    );
    assert!(lines.contains(&"under_review --> cooling_off: approve [reviewer|lead|admin] (cooling-off)"), "{out}");
    assert!(
        lines.contains(
            &"awaiting_second_approval --> cooling_off: confirm_approval [reviewer|lead|admin] (cooling-off)"
        ),
        "{out}"
    );
    assert!(lines.contains(&"closed --> [*]"), "{out}");
    assert!(lines.contains(&"under_review --> approved: approve [reviewer|lead|admin]"), "{out}");
    assert!(lines.contains(&"resubmission_window --> closed: expire [system] (expired)"), "{out}");
}

#[test]
fn dot_graph_is_a_digraph_with_every_state() {
    let def = &shipped().def;
    let out = render(def, GraphFormat::Dot);
    assert!(out.starts_with("digraph \"account-appeal\" {"), "{out}");
    assert!(out.trim_end().ends_with('}'), "{out}");
    for s in &def.states {
        let shape = if s.terminal { "doublecircle" } else { "box" };
        let node = format!("\"{}\" [shape={shape}];", s.name);
        assert!(out.contains(&node), "no node {node:?} in\n{out}");
    }
    for t in &def.transitions {
        for f in &t.from {
            let edge = format!("\"{f}\" -> \"{}\" [label=\"{} [", t.to, t.name);
            assert!(out.contains(&edge), "no edge {edge:?} in\n{out}");
        }
    }
    assert!(out.contains("__start -> \"submitted\""), "{out}");
}

// ------------------------------------------------------------ decide, by property

fn now() -> DateTime<Utc> {
    "2026-03-10T02:00:00Z".parse().unwrap()
}

fn state_names() -> Vec<String> {
    shipped().def.states.iter().map(|s| s.name.clone()).collect()
}

fn transition_names() -> Vec<String> {
    shipped().def.transitions.iter().map(|t| t.name.clone()).collect()
}

fn timer_row_names() -> Vec<String> {
    shipped()
        .def
        .timers
        .iter()
        .flat_map(|t| {
            let warning = t.warning.as_ref().map(|_| t.warning_name());
            std::iter::once(t.name.clone()).chain(warning)
        })
        .collect()
}

fn any_role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn any_transition_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(transition_names()),
        1 => "[a-z_]{1,12}",
    ]
}

#[derive(Debug, Clone)]
struct Case {
    snapshot: Snapshot,
    fire: Fire,
    actor: Actor,
}

prop_compose! {
    fn any_case()(
        state in prop::sample::select(state_names()),
        version in 0i64..4,
        holder in 0u8..3,
        actor_name in "[a-z]{1,8}",
        role in any_role(),
        transition in any_transition_name(),
        reasons in prop::collection::vec(prop_oneof!["[a-z ]{0,6}", Just("  ".to_string())], 0..3),
        expect_version in prop::option::of(0i64..4),
        entity_change_required in any::<bool>(),
        entity_change_linked in any::<bool>(),
        changes_secure_phone in any::<bool>(),
        enterprise_account in any::<bool>(),
        // Four-eyes: none, or a first approval by the actor, by someone else, or by
        // someone else while the actor held the claim.
        first in 0u8..4,
        // Cooling-off: a dispute on record; a pending change, and whether the command
        // quotes its code (0: no code, 1: a wrong one, 2: the right one).
        disputed in any::<bool>(),
        pending in any::<bool>(),
        quote in 0u8..3,
    ) -> Case {
        let (pending_change, code) = appealflow::workflow::PendingChange::issue("a change".into(), "first".into(), now());
        let payload = match quote {
            0 => serde_json::Value::Null,
            1 => serde_json::json!({ "code": "12345678" }),
            _ => serde_json::json!({ "code": code }),
        };
        let assignee = match holder {
            0 => None,
            1 => Some(actor_name.clone()),
            _ => Some(format!("{actor_name}-other")),
        };
        let terminal = shipped().state(&state).is_some_and(|s| s.terminal);
        Case {
            snapshot: Snapshot {
                outcome: terminal.then(|| "withdrawn".to_string()),
                state,
                version,
                assignee,
                facts: Facts {
                    entity_change_required,
                    entity_change_linked,
                    changes_secure_phone,
                    enterprise_account,
                    first_approval: (first > 0).then(|| FirstApproval {
                        by: if first == 1 { actor_name.to_uppercase() } else { "first".into() },
                        claimer: (first == 3).then(|| format!(" {actor_name} ")),
                        rule: "a rule".into(),
                        at: now(),
                    }),
                    pending_change: pending.then_some(pending_change),
                    disputed,
                    stopped_approver: None,
                },
            },
            fire: Fire {
                transition,
                reasons,
                payload,
                expect_version,
            },
            actor: Actor::new(actor_name, role),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decide_moves_along_the_named_transition_or_refuses(case in any_case()) {
        let wf = shipped();
        let Case { snapshot, fire, actor } = &case;
        let result = decide(wf, Some(snapshot), fire, actor, now());
        let from_state = wf.state(&snapshot.state).unwrap();
        match (&result, wf.transition(&fire.transition)) {
            (Ok(d), Some(t)) => {
                prop_assert_eq!(&d.transition, &t.name);
                // Four-eyes: a high-risk approval enters the state it waits in instead;
                // else a change with a cooling-off enters its cooling-off state.
                fn holds<'r>(r: &'r Option<RiskRoute>, s: &Snapshot) -> Option<&'r String> {
                    r.as_ref().filter(|r| r.rule_for(|f| s.facts.holds(f)).is_some()).map(|r| &r.to)
                }
                let waits = holds(&t.second_approval, snapshot);
                let cools = waits.is_none().then(|| holds(&t.cooling_off, snapshot)).flatten();
                let to = waits.or(cools).unwrap_or(&t.to);
                prop_assert_eq!(&d.to, to);
                prop_assert_eq!(d.first_approval.is_some(), waits.is_some());
                prop_assert_eq!(d.cooling_off.is_some(), cools.is_some());
                prop_assert_eq!(d.disputes, t.disputes);
                // Only the right code stops a pending change, and it is not kept.
                if t.guards.contains(&appealflow::workflow::Guard::StopCode) {
                    let pending = snapshot.facts.pending_change.as_ref();
                    let code = fire.payload.get("code").and_then(|c| c.as_str());
                    prop_assert!(pending.zip(code).is_some_and(|(p, c)| p.matches(c)));
                    prop_assert!(d.payload.get("code").is_none(), "{:?}", d.payload);
                }
                // Whoever gives a second approval is neither the first approver nor the
                // claimer, however the name is cased or spaced.
                if t.guards.contains(&appealflow::workflow::Guard::FourEyes) {
                    let first = snapshot.facts.first_approval.as_ref();
                    prop_assert!(first.is_some_and(|f| f.by == "first" && f.claimer.is_none()), "{first:?}");
                }
                let own_effects: &[_] = if d.first_approval.is_some() { &[] } else { &t.effects };
                prop_assert_eq!(d.from.as_deref(), Some(snapshot.state.as_str()));
                prop_assert_eq!(&d.outcome, &t.outcome);
                prop_assert!(t.from.contains(&snapshot.state));
                prop_assert!(t.roles.contains(&actor.role));
                prop_assert!(!from_state.terminal, "succeeded from terminal {}", snapshot.state);
                prop_assert!(fire.expect_version.is_none_or(|v| v == snapshot.version));
                let target = wf.state(to).unwrap();
                if *to == snapshot.state {
                    // A self-loop (e.g. link_entity_change) enters nothing and keeps the claim;
                    // only its own effects (action_failed alerts the leads) run.
                    prop_assert_eq!(&d.effects, own_effects);
                    prop_assert_eq!(&d.assignee, &snapshot.assignee);
                } else {
                    let expected: Vec<_> = target.on_enter.iter().chain(own_effects).cloned().collect();
                    prop_assert_eq!(&d.effects, &expected);
                    let expected_assignee = target.held.then(|| actor.name.clone());
                    prop_assert_eq!(&d.assignee, &expected_assignee);
                }
                prop_assert!(d.reasons.iter().all(|r| !r.is_empty() && r.trim() == r));
            }
            (Ok(d), None) => prop_assert!(false, "unknown transition decided: {d:?}"),
            (Err(r), None) => {
                let is_unknown = matches!(r, Refusal::UnknownTransition { .. });
                prop_assert!(is_unknown, "{r:?}");
            }
            (Err(_), Some(_)) => {}
        }
    }

    #[test]
    fn decide_never_succeeds_from_a_terminal_state(case in any_case()) {
        let wf = shipped();
        let Case { mut snapshot, fire, actor } = case;
        snapshot.state = "closed".into();
        snapshot.outcome = Some("completed".into());
        let result = decide(wf, Some(&snapshot), &fire, &actor, now());
        prop_assert!(result.is_err(), "{result:?}");
    }

    #[test]
    fn decide_arms_timers_only_for_states_they_run_in(case in any_case()) {
        let wf = shipped();
        let Case { snapshot, fire, actor } = &case;
        if let Ok(d) = decide(wf, Some(snapshot), fire, actor, now()) {
            for a in &d.arm {
                prop_assert!(!d.cancel.contains(&a.name), "{} both armed and cancelled", a.name);
                let base = a.name.strip_suffix(".warning").unwrap_or(&a.name);
                let timer = wf.timer(base).unwrap();
                prop_assert!(timer.states.contains(&d.to), "{} armed on entering {}", a.name, d.to);
                prop_assert!(
                    !timer.states.contains(&snapshot.state),
                    "{} re-armed moving within its states ({} -> {})", a.name, snapshot.state, d.to
                );
                prop_assert!(a.due_at > now(), "{} due at {} <= now", a.name, a.due_at);
            }
            for c in &d.cancel {
                let base = c.strip_suffix(".warning").unwrap_or(c);
                let timer = wf.timer(base).unwrap();
                prop_assert!(timer.states.contains(&snapshot.state));
                prop_assert!(!timer.states.contains(&d.to));
            }
            // Every timer whose state set is entered is armed, every one left cancelled.
            for timer in &wf.def.timers {
                let before = timer.states.contains(&snapshot.state);
                let after = timer.states.contains(&d.to);
                let armed = d.arm.iter().any(|a| a.name == timer.name);
                let cancelled = d.cancel.contains(&timer.name);
                prop_assert_eq!(armed, after && !before, "timer {}", &timer.name);
                prop_assert_eq!(cancelled, before && !after, "timer {}", &timer.name);
            }
        }
    }

    #[test]
    fn decide_refuses_a_stale_version(case in any_case(), offset in 1i64..1000) {
        let wf = shipped();
        let Case { snapshot, mut fire, actor } = case;
        prop_assume!(wf.transition(&fire.transition).is_some());
        let expected = snapshot.version + offset;
        fire.expect_version = Some(expected);
        let result = decide(wf, Some(&snapshot), &fire, &actor, now());
        prop_assert_eq!(
            result,
            Err(Refusal::StaleVersion {
                expected,
                current: snapshot.version,
                state: snapshot.state.clone(),
            })
        );
    }

    #[test]
    fn decide_creates_only_through_the_creation_transition(
        transition in any_transition_name(),
        role in any_role(),
        actor_name in "[a-z]{1,8}",
    ) {
        let wf = shipped();
        let actor = Actor::new(actor_name, role);
        let result = decide(wf, None, &Fire::new(transition.clone()), &actor, now());
        let creation = wf.creation();
        if transition == creation.name && creation.roles.contains(&role) {
            let d = result.unwrap();
            prop_assert_eq!(d.from, None);
            prop_assert_eq!(&d.to, &creation.to);
            prop_assert!(d.cancel.is_empty());
            let armed: Vec<&str> = d.arm.iter().map(|a| a.name.as_str()).collect();
            prop_assert_eq!(armed, vec!["review_sla", "review_sla.warning"]);
        } else {
            prop_assert!(result.is_err(), "{result:?}");
        }
    }

    #[test]
    fn decide_timer_acts_only_in_the_states_the_timer_runs_in(
        state in prop::sample::select(state_names()),
        timer in prop::sample::select(timer_row_names()),
        version in 0i64..4,
    ) {
        let wf = shipped();
        let snapshot = Snapshot {
            state: state.clone(),
            outcome: None,
            version,
            assignee: Some("rev".into()),
            facts: Facts::default(),
        };
        let base = timer.strip_suffix(".warning").unwrap_or(&timer);
        let def = wf.timer(base).unwrap();
        match decide_timer(wf, &snapshot, &timer, now()) {
            Ok(d) => {
                prop_assert!(def.states.contains(&state));
                prop_assert!(!d.cancel.contains(&timer), "{} cancels itself", timer);
                prop_assert!(d.arm.iter().all(|a| !d.cancel.contains(&a.name)));
                if d.changes_state() {
                    prop_assert!(!def.states.contains(&d.to));
                }
            }
            Err(e) => prop_assert!(!def.states.contains(&state), "{} in {}: {}", timer, state, e),
        }
    }
}

#[test]
fn refuses_timer_firing_a_transition_that_needs_reasons() {
    let problems = refused_edit(|t| {
        push(
            t,
            "timers",
            r#"
name = "auto_reject"
states = ["submitted"]
after = { hours = 1 }
fires = { transition = "screen_reject" }
"#,
        );
    });
    assert_problem(&problems, "timers.auto_reject", &["reasons guard", "can never pass"]);
}

#[test]
fn refuses_a_cycle_of_states_that_never_reaches_an_end() {
    let problems = refused_edit(|t| {
        push(t, "states", r#"name = "limbo""#);
        push(t, "states", r#"name = "purgatory""#);
        push(
            t,
            "transitions",
            r#"name = "fall"
from = ["submitted"]
to = "limbo"
roles = ["admin"]"#,
        );
        push(
            t,
            "transitions",
            r#"name = "drift"
from = ["limbo"]
to = "purgatory"
roles = ["admin"]"#,
        );
        push(
            t,
            "transitions",
            r#"name = "drift_back"
from = ["purgatory"]
to = "limbo"
roles = ["admin"]"#,
        );
    });
    assert_problem(&problems, "states.limbo", &["reaches a terminal state"]);
    assert_problem(&problems, "states.purgatory", &["reaches a terminal state"]);
}

#[test]
fn refuses_reassigning_into_a_state_nobody_holds() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "reassign").insert("to".into(), "submitted".into());
        named(t, "transitions", "reassign").insert("restart_timers".into(), strings(&[]));
    });
    assert_only_problem(&problems, "transitions.reassign", &["`reassigns` needs a held target state", "\"submitted\""]);
}

#[test]
fn refuses_restarting_an_unknown_timer_or_one_that_does_not_run_there() {
    let problems = refused_edit(|t| {
        named(t, "transitions", "reassign").insert("restart_timers".into(), strings(&["claim_expiryy"]));
    });
    assert_only_problem(&problems, "transitions.reassign", &["unknown timer \"claim_expiryy\" in `restart_timers`"]);
    let problems = refused_edit(|t| {
        named(t, "transitions", "reassign").insert("restart_timers".into(), strings(&["resubmission_window"]));
    });
    assert_only_problem(
        &problems,
        "transitions.reassign",
        &["timer \"resubmission_window\" must run in \"under_review\"", "it runs in: resubmission_window"],
    );
}

// ------------------------------------------------------------ bindings and typed names

/// The keys of the shipped `[bindings]` table.
fn binding_keys() -> Vec<String> {
    let table: Table = shipped_text().parse().unwrap();
    table.get("bindings").and_then(Value::as_table).expect("[bindings]").keys().cloned().collect()
}

#[test]
fn shipped_workflow_binds_every_name_the_code_relies_on() {
    let wf = shipped();
    let b = wf.bindings();
    for (binding, name) in [
        (&b.submit, "submit"),
        (&b.resubmit, "resubmit"),
        (&b.claim, "claim"),
        (&b.release, "release"),
        (&b.reassign, "reassign"),
        (&b.approve, "approve"),
        (&b.reject, "reject"),
        (&b.withdraw, "withdraw"),
        (&b.link_entity_change, "link_entity_change"),
        (&b.supersede, "supersede"),
        (&b.screening, "screen_reject"),
        (&b.completion, "complete"),
        (&b.action_succeeded, "action_succeeded"),
        (&b.action_failed, "action_failed"),
        (&b.notice_delivered, "notice_delivered"),
        (&b.notice_undeliverable, "notice_undeliverable"),
    ] {
        assert_eq!(binding, name);
        assert!(wf.transition(binding).is_some(), "{name}");
    }
    assert_eq!(b.submit, wf.creation().name);
    assert_eq!(b.window_state, "resubmission_window");
    assert_eq!(b.closed_state, "closed");
    assert_eq!(b.rejection_notice, "appeal_rejected");
    assert_eq!(wf.review_sla().name, "review_sla");
    assert_eq!(wf.review_states(), ["submitted", "under_review", "awaiting_second_approval"]);
    assert_eq!(b.confirm_approval.as_deref(), Some("confirm_approval"));
    assert_eq!(b.send_back.as_deref(), Some("send_back"));
    assert_eq!(b.stop_change.as_deref(), Some("stop_change"));
    assert_eq!(wf.window_timer().name, "resubmission_window");
    assert_eq!(wf.window_expiry_outcome(), Some("expired"));
    assert_eq!(wf.target(&b.claim), Some("under_review"));
    assert_eq!(binding_keys().len(), 24);
}

#[test]
fn refuses_a_workflow_lacking_any_binding_naming_the_binding() {
    // The four-eyes and cooling-off bindings are optional: a workflow without
    // `second_approval` or `cooling_off` has none (refusing their absence is theirs).
    let optional = ["confirm_approval", "send_back", "stop_change"];
    for key in binding_keys().into_iter().filter(|k| !optional.contains(&k.as_str())) {
        let problems = refused_edit(|t| {
            t.get_mut("bindings").and_then(Value::as_table_mut).unwrap().remove(&key);
        });
        assert_eq!(problems.len(), 1, "{key}: {problems:#?}");
        assert!(problems[0].problem.contains(&format!("missing field `{key}`")), "{key}: {problems:#?}");
    }
}

#[test]
fn refuses_bindings_naming_a_transition_state_timer_or_template_it_does_not_have() {
    let problems = refused_edit(|t| {
        let b = t.get_mut("bindings").and_then(Value::as_table_mut).unwrap();
        b.insert("claim".into(), "grab".into());
        b.insert("notice_delivered".into(), "notice_arrived".into());
        b.insert("window_state".into(), "limbo".into());
        b.insert("closed_state".into(), "purgatory".into());
        b.insert("review_sla".into(), "egg_timer".into());
        b.insert("window_timer".into(), "hourglass".into());
        b.insert("rejection_notice".into(), "appeal_lost".into());
    });
    assert_problem(&problems, "bindings.claim", &["unknown transition \"grab\""]);
    assert_problem(&problems, "bindings.notice_delivered", &["unknown transition \"notice_arrived\""]);
    assert_problem(&problems, "bindings.window_state", &["unknown state \"limbo\""]);
    assert_problem(&problems, "bindings.closed_state", &["unknown state \"purgatory\""]);
    assert_problem(&problems, "bindings.review_sla", &["unknown timer \"egg_timer\""]);
    assert_problem(&problems, "bindings.window_timer", &["unknown timer \"hourglass\""]);
    assert_problem(&problems, "bindings.rejection_notice", &["unknown template \"appeal_lost\""]);
    assert_eq!(problems.len(), 7, "{problems:#?}");
}

#[test]
fn refuses_bindings_whose_names_exist_but_cannot_do_the_job() {
    let problems = refused_edit(|t| {
        let b = t.get_mut("bindings").and_then(Value::as_table_mut).unwrap();
        b.insert("submit".into(), "claim".into());
        b.insert("claim".into(), "submit".into());
        b.insert("notice_delivered".into(), "approve".into());
        b.insert("closed_state".into(), "approved".into());
        b.insert("window_timer".into(), "claim_expiry".into());
        b.insert("resubmit".into(), "release".into());
    });
    assert_problem(&problems, "bindings.submit", &["\"claim\" must create the appeal"]);
    assert_problem(&problems, "bindings.claim", &["\"submit\" creates an appeal"]);
    assert_problem(&problems, "bindings.notice_delivered", &["`system` role"]);
    assert_problem(&problems, "bindings.closed_state", &["\"approved\" is not terminal"]);
    assert_problem(&problems, "bindings.window_timer", &["\"claim_expiry\" does not run in \"resubmission_window\""]);
    assert_problem(&problems, "bindings.resubmit", &["\"release\" does not fire from \"resubmission_window\""]);
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn refuses_unknown_action_naming_it() {
    let problems = refused_edit(|t| {
        named(t, "actions", "detach_mfa").insert("name".into(), "detach_everything".into());
    });
    assert_only_problem(
        &problems,
        "actions.detach_everything",
        &["unknown action \"detach_everything\"", "rotate_secure_phone", "manual_task"],
    );
}

#[test]
fn reports_unknown_guards_effects_recipients_and_actions_with_every_other_problem() {
    let problems = refused_edit(|t| {
        t.get_mut("workflow").and_then(Value::as_table_mut).unwrap().insert("calendar".into(), "atlantis".into());
        named(t, "transitions", "approve").insert("guards".into(), strings(&["holds_claim", "is_a_friday"]));
        named(t, "states", "approved").insert(
            "on_enter".into(),
            Value::Array(vec![
                effect(r#"effect = "launch_rockets""#),
                effect(
                    r#"effect = "notify"
                          template = "appeal_approved"
                          to = "the_press""#,
                ),
                effect(r#"effect = "post_approval_actions""#),
            ]),
        );
        named(t, "actions", "manual_task").insert("name".into(), "pray".into());
        named(t, "transitions", "expire").insert("outcome".into(), "evaporated".into());
    });
    assert_problem(&problems, "workflow.calendar", &["atlantis"]);
    assert_problem(&problems, "transitions.approve", &["unknown guard \"is_a_friday\"", "holds_claim"]);
    assert_problem(&problems, "states.approved", &["unknown effect \"launch_rockets\"", "post_approval_actions"]);
    assert_problem(&problems, "states.approved", &["unknown recipient \"the_press\"", "security_contacts"]);
    assert_problem(&problems, "actions.pray", &["unknown action \"pray\""]);
    assert_problem(&problems, "transitions.expire", &["evaporated"]);
    assert_eq!(problems.len(), 6, "{problems:#?}");
}

#[test]
fn every_implemented_name_parses_back_from_its_text() {
    use appealflow::workflow::{ActionKind, EffectKind, Guard, Recipient};
    for g in Guard::ALL {
        assert_eq!(g.as_str().parse::<Guard>().unwrap(), *g);
        assert_eq!(g.to_string(), g.as_str());
    }
    for e in EffectKind::ALL {
        assert_eq!(e.as_str().parse::<EffectKind>().unwrap(), *e);
    }
    for a in ActionKind::ALL {
        assert_eq!(a.as_str().parse::<ActionKind>().unwrap(), *a);
        assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
    }
    for r in Recipient::ALL {
        assert_eq!(r.as_str().parse::<Recipient>().unwrap(), *r);
    }
    let err = "is_a_friday".parse::<Guard>().unwrap_err().to_string();
    assert_eq!(
        err,
        "unknown guard \"is_a_friday\" (known: holds_claim, has_reasons, rejection_reasons, entity_change_linked, \
         four_eyes, stop_code)"
    );
    // Every guard, effect, recipient and action the shipped definition names is one.
    let wf = shipped();
    assert!(wf.def.transitions.iter().flat_map(|t| &t.guards).any(|g| *g == Guard::HoldsClaim));
    assert_eq!(wf.def.actions.iter().map(|a| a.name).collect::<Vec<_>>(), ActionKind::ALL);
}
