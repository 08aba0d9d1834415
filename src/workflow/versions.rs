//! Several versions of a workflow loaded at once. A workflow's folder holds its
//! `workflow.toml` (the newest version) and, for versions appeals in flight still run
//! on, `vN/workflow.toml` (sharing the folder's templates); migrations between
//! versions are `migrations/*.toml`. New appeals start on the newest version; an appeal
//! stays on the version it started on unless a migration moves it. Every version and
//! every migration is validated when the folder loads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::definition::{DefinitionError, DefinitionProblem, Workflow};
use super::migration::Migration;

/// The versions of one workflow, with the migrations between them.
#[derive(Debug, Clone)]
pub struct Versions {
    by_version: BTreeMap<u32, Arc<Workflow>>,
    migrations: Vec<Migration>,
}

/// A version folder's number: `v2` is 2.
fn version_folder(dir: &Path) -> Option<u32> {
    dir.file_name()?.to_str()?.strip_prefix('v')?.parse().ok()
}

/// Where a workflow folder's templates are: its own `templates/`; a version folder
/// (`vN/`) uses its workflow's (the one set every version renders with).
pub fn templates_dir(dir: &Path) -> PathBuf {
    match dir.parent() {
        Some(parent) if version_folder(dir).is_some() && parent.join("workflow.toml").is_file() => {
            parent.join("templates")
        }
        _ => dir.join("templates"),
    }
}

impl Versions {
    /// One version, no migrations.
    pub fn single(workflow: Arc<Workflow>) -> Versions {
        Versions { by_version: BTreeMap::from([(workflow.def.workflow.version, workflow)]), migrations: Vec::new() }
    }

    /// Loads `dir/workflow.toml`, every `dir/vN/workflow.toml` and every
    /// `dir/migrations/*.toml`, reporting every problem of every file.
    pub fn load(dir: &Path, calendars_dir: &Path) -> Result<Versions, DefinitionError> {
        let mut problems = Vec::new();
        let mut folders: Vec<PathBuf> = Vec::new();
        if dir.join("workflow.toml").is_file() {
            folders.push(dir.to_path_buf());
        }
        let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        versioned.retain(|p| version_folder(p).is_some() && p.join("workflow.toml").is_file());
        versioned.sort();
        folders.extend(versioned);
        if folders.is_empty() {
            // The error names the file that is missing.
            return Workflow::load(dir, calendars_dir).map(|wf| Versions::single(Arc::new(wf)));
        }
        let mut by_version: BTreeMap<u32, Arc<Workflow>> = BTreeMap::new();
        for folder in &folders {
            let file = folder.join("workflow.toml");
            let mut problem = |entry: &str, problem: String| {
                problems.push(DefinitionProblem { file: file.clone(), entry: entry.into(), problem })
            };
            match Workflow::load(folder, calendars_dir) {
                Err(e) => problems.extend(e.0),
                Ok(wf) => {
                    let v = wf.def.workflow.version;
                    if version_folder(folder).is_some_and(|n| n != v) {
                        problem(
                            "workflow.version",
                            format!("is {v}, but the folder says v{}", version_folder(folder).unwrap_or(v)),
                        );
                    }
                    if let Some(first) = by_version.values().next()
                        && first.name() != wf.name()
                    {
                        problem("workflow.name", format!("{:?}: every version must be {:?}", wf.name(), first.name()));
                    }
                    if by_version.insert(v, Arc::new(wf)).is_some() {
                        problem("workflow.version", format!("version {v} is defined twice"));
                    }
                }
            }
        }
        // The folder's own file is the newest version: its templates are the ones rendered.
        if let (Some(top), Some((&newest, _))) =
            (by_version.values().find(|w| w.dir == dir), by_version.last_key_value())
            && top.def.workflow.version != newest
        {
            problems.push(DefinitionProblem {
                file: dir.join("workflow.toml"),
                entry: "workflow.version".into(),
                problem: format!(
                    "is {}, but v{newest} is loaded too: the folder's workflow.toml is the newest version",
                    top.def.workflow.version
                ),
            });
        }
        let mut migrations: Vec<Migration> = Vec::new();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("migrations"))
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
        files.sort();
        for file in files {
            let m = match Migration::load(&file) {
                Ok(m) => m,
                Err(p) => {
                    problems.push(p);
                    continue;
                }
            };
            let mut problem = |problem: String| {
                problems.push(DefinitionProblem { file: file.clone(), entry: "migration".into(), problem })
            };
            match (by_version.get(&m.from), by_version.get(&m.to)) {
                _ if m.from == m.to => problem(format!("migrates version {} to itself", m.from)),
                (None, _) => problem(format!("from: no version {} is loaded", m.from)),
                (_, None) => problem(format!("to: no version {} is loaded", m.to)),
                (Some(from), Some(to)) => {
                    if migrations.iter().any(|o| (o.from, o.to) == (m.from, m.to)) {
                        problem(format!("a migration from {} to {} is defined twice", m.from, m.to));
                    }
                    problems.extend(m.validate(from, to));
                }
            }
            migrations.push(m);
        }
        if !problems.is_empty() {
            return Err(DefinitionError(problems));
        }
        Ok(Versions { by_version, migrations })
    }

    /// The version new appeals start on.
    pub fn newest(&self) -> &Arc<Workflow> {
        self.by_version.values().next_back().expect("at least one version is loaded")
    }

    /// The version an appeal runs on, if it is loaded.
    pub fn get(&self, version: i64) -> Option<&Arc<Workflow>> {
        u32::try_from(version).ok().and_then(|v| self.by_version.get(&v))
    }

    /// Every version, oldest first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<Workflow>> {
        self.by_version.values()
    }

    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration from version `from` to `to`, if one is defined.
    pub fn migration(&self, from: i64, to: i64) -> Option<&Migration> {
        self.migrations.iter().find(|m| i64::from(m.from) == from && i64::from(m.to) == to)
    }
}
