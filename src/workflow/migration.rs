//! Moving an appeal in flight from one version of its workflow to another, explicitly:
//! a migration file (`migrations/FROM-to-TO.toml` beside the workflow) maps the states
//! of the old version onto the new one and says what becomes of each armed timer. It is
//! validated against both versions when the workflow loads; `plan` (pure) says what one
//! appeal's migration changes, and the engine commits it as one unit of work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::decide::{TimerArm, timer_due};
use super::definition::{DefinitionProblem, Workflow};

/// What becomes of a timer armed on a migrating appeal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimerRule {
    /// It stays armed with the deadline it has (the old rule's).
    Keep,
    /// Its deadline is computed again by the new version's rule, from when it was armed.
    Rearm,
    /// It starts again now, by the new version's rule.
    Restart,
    /// It is cancelled.
    Cancel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MigrationFile {
    migration: Head,
    /// Old state = new state, for states whose name is not kept.
    #[serde(default)]
    states: BTreeMap<String, String>,
    /// Old timer = rule; unnamed timers are kept where the new version runs them in the
    /// appeal's (new) state, else cancelled.
    #[serde(default)]
    timers: BTreeMap<String, TimerRule>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Head {
    from: u32,
    to: u32,
    #[serde(default)]
    description: String,
}

/// A loaded migration between two versions of one workflow.
#[derive(Debug, Clone)]
pub struct Migration {
    pub from: u32,
    pub to: u32,
    pub description: String,
    pub states: BTreeMap<String, String>,
    pub timers: BTreeMap<String, TimerRule>,
    pub file: PathBuf,
}

/// What one appeal's migration changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationPlan {
    pub state: String,
    pub arm: Vec<TimerArm>,
    pub cancel: Vec<String>,
}

impl Migration {
    /// Reads a migration file (its problems name the file and the entry).
    pub fn load(file: &Path) -> Result<Migration, DefinitionProblem> {
        let problem = |entry: &str, problem: String| DefinitionProblem {
            file: file.to_path_buf(),
            entry: entry.to_string(),
            problem,
        };
        let text = std::fs::read_to_string(file).map_err(|e| problem("file", format!("cannot read: {e}")))?;
        let parsed: MigrationFile = toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map_or("file".to_string(), |span| format!("line {}", text[..span.start].matches('\n').count() + 1));
            problem(&at, e.message().to_string())
        })?;
        let named = format!("{}-to-{}.toml", parsed.migration.from, parsed.migration.to);
        if file.file_name().and_then(|n| n.to_str()) != Some(named.as_str()) {
            return Err(problem(
                "migration",
                format!("from {} to {}: name the file {named}", parsed.migration.from, parsed.migration.to),
            ));
        }
        Ok(Migration {
            from: parsed.migration.from,
            to: parsed.migration.to,
            description: parsed.migration.description,
            states: parsed.states,
            timers: parsed.timers,
            file: file.to_path_buf(),
        })
    }

    /// The new version's state for an appeal in `state`.
    pub fn state_for<'a>(&'a self, state: &'a str) -> &'a str {
        self.states.get(state).map_or(state, String::as_str)
    }

    /// The rule for timer `name` (a definition's name) on an appeal that lands in `state`
    /// of the new version.
    fn rule_for(&self, name: &str, to: &Workflow, state: &str) -> TimerRule {
        match self.timers.get(name) {
            Some(rule) => *rule,
            None if to.timer(name).is_some_and(|t| t.states.iter().any(|s| s == state)) => TimerRule::Keep,
            None => TimerRule::Cancel,
        }
    }

    /// Checks the migration against the versions it joins: every state it maps exists on
    /// its side, every open state of the old version has a place in the new one (an open
    /// appeal is never closed by a migration), and every timer kept or armed again runs,
    /// in the new version, in each state the old one ran it in.
    pub fn validate(&self, from: &Workflow, to: &Workflow) -> Vec<DefinitionProblem> {
        let mut out = Vec::new();
        let mut push = |entry: String, problem: String| {
            out.push(DefinitionProblem { file: self.file.clone(), entry, problem });
        };
        let (v_from, v_to) = (format!("v{}", self.from), format!("v{}", self.to));
        for (old, new) in &self.states {
            if from.state(old).is_none() {
                push(format!("states.{old}"), format!("{v_from} has no state {old:?}"));
            }
            if to.state(new).is_none() {
                push(format!("states.{old}"), format!("{v_to} has no state {new:?}"));
            }
        }
        // States whose appeals carry what a route recorded (a first approval, a pending
        // change): only the same kind of state may hold them.
        let routed = |wf: &Workflow, state: &str| (wf.awaits_second_approval(state), wf.cools_off(state));
        for s in from.def.states.iter().filter(|s| !s.terminal) {
            let target = self.state_for(&s.name);
            let entry = format!("states.{}", s.name);
            match to.state(target) {
                None if !self.states.contains_key(&s.name) => {
                    push(entry, format!("{v_to} has no state {:?}: map it (`{} = \"...\"`)", s.name, s.name))
                }
                None => {}
                Some(t) if t.terminal => push(
                    entry,
                    format!("maps an open appeal into terminal {target:?}: a migration never closes an appeal"),
                ),
                Some(t) if t.held != s.held => push(
                    entry,
                    format!("maps {:?} onto {target:?}: a migration may not take or give a reviewer's claim", s.name),
                ),
                Some(_) if routed(from, &s.name) != routed(to, target) => push(
                    entry,
                    format!(
                        "maps {:?} onto {target:?}: a state waiting for a second approval or a cooling-off maps only \
                         onto one of the same kind",
                        s.name
                    ),
                ),
                Some(_) => {}
            }
        }
        for (name, rule) in &self.timers {
            let Some(old) = from.timer(name) else {
                push(format!("timers.{name}"), format!("{v_from} has no timer {name:?}"));
                continue;
            };
            if *rule == TimerRule::Cancel {
                // Cancelled where the new version runs it, an appeal would lack it for good.
                for st in &old.states {
                    let target = self.state_for(st);
                    if to.timer(name).is_some_and(|t| t.states.iter().any(|n| n == target)) {
                        push(
                            format!("timers.{name}"),
                            format!(
                                "`cancel`: {v_to} runs {name:?} in {target:?}, where appeals in {st:?} land: keep, \
                                 rearm or restart it"
                            ),
                        );
                    }
                }
                continue;
            }
            let Some(new) = to.timer(name) else {
                push(format!("timers.{name}"), format!("{v_to} has no timer {name:?} to keep or arm again"));
                continue;
            };
            for s in &old.states {
                let target = self.state_for(s);
                if to.state(target).is_some() && !new.states.iter().any(|n| n == target) {
                    push(
                        format!("timers.{name}"),
                        format!("{v_to} does not run {name:?} in {target:?}, where appeals in {s:?} land"),
                    );
                }
            }
        }
        out
    }

    /// What migrating an appeal in `state`, with these armed timers (name, when armed),
    /// changes at `now`: its new state, the timers armed (again) and cancelled. Every
    /// timer the new version runs in the new state ends up armed (validation refuses
    /// cancelling one): kept, armed again, or — one the appeal did not have — started now.
    pub fn plan(
        &self,
        to: &Workflow,
        state: &str,
        armed: &[(String, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> Result<MigrationPlan, String> {
        let new_state = self.state_for(state).to_string();
        let mut arm = Vec::new();
        let mut cancel = Vec::new();
        let mut handled = std::collections::BTreeSet::new();
        for (name, armed_at) in armed {
            let base = name.strip_suffix(".warning").unwrap_or(name);
            if !handled.insert(base.to_string()) {
                continue;
            }
            // When the timer itself was armed (its warning's, when only that is left).
            let since = armed.iter().find(|(n, _)| n == base).map_or(*armed_at, |(_, at)| *at);
            let start = match self.rule_for(base, to, &new_state) {
                TimerRule::Keep => continue,
                TimerRule::Cancel => None,
                TimerRule::Rearm => Some(since),
                TimerRule::Restart => Some(now),
            };
            cancel.push(base.to_string());
            cancel.push(format!("{base}.warning"));
            if let Some(start) = start {
                arm.extend(arming(to, base, start, now)?);
            }
        }
        for timer in to.def.timers.iter().filter(|t| t.states.contains(&new_state)) {
            if !handled.contains(&timer.name) {
                arm.extend(arming(to, &timer.name, now, now)?);
            }
        }
        Ok(MigrationPlan { state: new_state, arm, cancel })
    }
}

/// Timer `name` of `wf` (and its warning, while still ahead of `now`) started at `start`.
fn arming(wf: &Workflow, name: &str, start: DateTime<Utc>, now: DateTime<Utc>) -> Result<Vec<TimerArm>, String> {
    let def = wf.timer(name).ok_or_else(|| format!("v{} has no timer {name:?}", wf.def.workflow.version))?;
    let (due, warning) = timer_due(wf, def, start).map_err(|e| e.to_string())?;
    let mut out = vec![TimerArm { name: def.name.clone(), due_at: due }];
    if let Some(w) = warning.filter(|w| *w > now) {
        out.push(TimerArm { name: def.warning_name(), due_at: w });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> Workflow {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
        Workflow::load(&root.join("account-appeal"), &root.join("calendars")).expect("the shipped workflow loads")
    }

    fn migration(timers: &[(&str, TimerRule)], states: &[(&str, &str)]) -> Migration {
        Migration {
            from: 1,
            to: 2,
            description: String::new(),
            states: states.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            timers: timers.iter().map(|(n, r)| (n.to_string(), *r)).collect(),
            file: PathBuf::from("migrations/1-to-2.toml"),
        }
    }

    #[test]
    fn each_timer_rule_does_what_it_says() {
        let wf = shipped();
        let armed_at: DateTime<Utc> = "2026-03-09T02:00:00Z".parse().unwrap();
        let now: DateTime<Utc> = "2026-03-10T02:00:00Z".parse().unwrap();
        let armed = vec![("review_sla".to_string(), armed_at), ("review_sla.warning".to_string(), armed_at)];
        let names = |p: &MigrationPlan| p.arm.iter().map(|a| a.name.clone()).collect::<Vec<_>>();

        // Unnamed, the new version runs it in the state: kept as it is.
        let keep = migration(&[], &[]).plan(&wf, "submitted", &armed, now).unwrap();
        assert_eq!((keep.state.as_str(), keep.arm.len(), keep.cancel.len()), ("submitted", 0, 0));

        // Re-armed from when it was armed; restarted from now; cancelled.
        let rearm = migration(&[("review_sla", TimerRule::Rearm)], &[]).plan(&wf, "submitted", &armed, now).unwrap();
        let (due, _) = timer_due(&wf, wf.timer("review_sla").unwrap(), armed_at).unwrap();
        assert_eq!(rearm.arm[0].due_at, due);
        assert_eq!(rearm.cancel, ["review_sla", "review_sla.warning"]);
        let restart =
            migration(&[("review_sla", TimerRule::Restart)], &[]).plan(&wf, "submitted", &armed, now).unwrap();
        assert!(restart.arm[0].due_at > due, "{restart:?}");
        assert_eq!(names(&restart), ["review_sla", "review_sla.warning"]);
        let cancel = migration(&[("review_sla", TimerRule::Cancel)], &[]).plan(&wf, "submitted", &armed, now).unwrap();
        assert!(cancel.arm.is_empty() && cancel.cancel == ["review_sla", "review_sla.warning"]);

        // Mapped to a state where the timer does not run: cancelled, and the new state's
        // own timers (that the appeal lacked) start now.
        let window = migration(&[], &[("submitted", "resubmission_window")]);
        let to_window = window.plan(&wf, "submitted", &armed, now).unwrap();
        assert_eq!(to_window.cancel, ["review_sla", "review_sla.warning"]);
        assert_eq!(names(&to_window), ["resubmission_window", "resubmission_window.warning"]);
    }

    #[test]
    fn validation_names_each_misfit() {
        let wf = shipped();
        let bad = migration(
            &[("egg_timer", TimerRule::Keep), ("claim_expiry", TimerRule::Keep)],
            &[("limbo", "submitted"), ("under_review", "closed")],
        );
        let problems: Vec<String> =
            bad.validate(&wf, &wf).iter().map(|p| format!("{}: {}", p.entry, p.problem)).collect();
        assert!(problems.iter().any(|p| p == "states.limbo: v1 has no state \"limbo\""), "{problems:#?}");
        assert!(problems.iter().any(|p| p.starts_with("states.under_review: maps an open appeal into terminal")));
        assert!(problems.iter().any(|p| p == "timers.egg_timer: v1 has no timer \"egg_timer\""), "{problems:#?}");
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("timers.claim_expiry: v2 does not run \"claim_expiry\" in \"closed\"")),
            "{problems:#?}"
        );
        assert!(migration(&[], &[]).validate(&wf, &wf).is_empty());
        // A claim is neither taken nor given; routed states map only onto their kind;
        // a timer the new version runs where the appeal lands is never cancelled.
        let held = migration(&[], &[("submitted", "under_review")]).validate(&wf, &wf);
        assert!(held.iter().any(|p| p.problem.contains("may not take or give a reviewer's claim")), "{held:#?}");
        let routed = migration(&[], &[("cooling_off", "submitted")]).validate(&wf, &wf);
        assert!(routed.iter().any(|p| p.problem.contains("onto one of the same kind")), "{routed:#?}");
        let cancel = migration(&[("review_sla", TimerRule::Cancel)], &[]).validate(&wf, &wf);
        assert!(
            cancel.iter().any(|p| p.entry == "timers.review_sla" && p.problem.starts_with("`cancel`")),
            "{cancel:#?}"
        );
    }
}
