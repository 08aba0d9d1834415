//! Renders a workflow's state machine for people: mermaid `stateDiagram-v2` or Graphviz dot.

use std::fmt::Write;

use crate::workflow::definition::WorkflowFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

impl GraphFormat {
    pub const ALL: [GraphFormat; 2] = [GraphFormat::Mermaid, GraphFormat::Dot];

    pub fn as_str(self) -> &'static str {
        match self {
            GraphFormat::Mermaid => "mermaid",
            GraphFormat::Dot => "dot",
        }
    }
}

fn label(t: &crate::workflow::definition::TransitionDef) -> String {
    let roles: Vec<&str> = t.roles.iter().map(|r| r.as_str()).collect();
    match &t.outcome {
        Some(o) => format!("{} [{}] ({o})", t.name, roles.join("|")),
        None => format!("{} [{}]", t.name, roles.join("|")),
    }
}

pub fn render(def: &WorkflowFile, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Mermaid => {
            out.push_str("stateDiagram-v2\n");
            for t in &def.transitions {
                if t.from.is_empty() {
                    let _ = writeln!(out, "    [*] --> {}: {}", t.to, label(t));
                }
                for f in &t.from {
                    let _ = writeln!(out, "    {f} --> {}: {}", t.to, label(t));
                    for (why, route) in t.risk_routes() {
                        let _ = writeln!(out, "    {f} --> {}: {} ({why})", route.to, label(t));
                    }
                }
            }
            for s in def.states.iter().filter(|s| s.terminal) {
                let _ = writeln!(out, "    {} --> [*]", s.name);
            }
            for timer in &def.timers {
                let fires = timer.fires.transition.as_deref().or(timer.fires.event.as_deref()).unwrap_or("?");
                for s in &timer.states {
                    let _ = writeln!(out, "    note right of {s}: timer {} fires {fires}", timer.name);
                }
            }
        }
        GraphFormat::Dot => {
            let _ = writeln!(out, "digraph {:?} {{", def.workflow.name);
            out.push_str("    rankdir=LR;\n    __start [shape=point];\n");
            for s in &def.states {
                let shape = if s.terminal { "doublecircle" } else { "box" };
                let _ = writeln!(out, "    {:?} [shape={shape}];", s.name);
            }
            for t in &def.transitions {
                if t.from.is_empty() {
                    let _ = writeln!(out, "    __start -> {:?} [label={:?}];", t.to, label(t));
                }
                for f in &t.from {
                    let _ = writeln!(out, "    {f:?} -> {:?} [label={:?}];", t.to, label(t));
                    for (why, route) in t.risk_routes() {
                        let routed = format!("{} ({why})", label(t));
                        let _ = writeln!(out, "    {f:?} -> {:?} [label={routed:?}, style=dashed];", route.to);
                    }
                }
            }
            out.push_str("}\n");
        }
    }
    out
}
