//! Accessibility checks with axe-core (vendored in `tests/assets/axe-core/`, see its
//! README). The script is injected through WebDriver, which Chromium runs outside the
//! page's Content-Security-Policy, so pages need no script allowance for the tests.

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::Browser;

/// axe-core's browser build.
const AXE_SOURCE: &str = include_str!("../../assets/axe-core/axe.min.js");

/// Runs axe on the document and answers `{violations}` or `{error}` (the last argument of
/// an asynchronous WebDriver script is its callback).
const AXE_RUN: &str = r#"
    const done = arguments[arguments.length - 1];
    axe.run(document, { resultTypes: ["violations"] }).then(
        (results) => done({
            violations: results.violations.map((v) => ({
                id: v.id,
                impact: v.impact || null,
                help: v.help,
                helpUrl: v.helpUrl,
                nodes: v.nodes.map((n) => ({
                    selectors: n.target.map((t) => (Array.isArray(t) ? t.join(" >>> ") : String(t))),
                    html: n.html,
                    summary: n.failureSummary || "",
                })),
            })),
        }),
        (error) => done({ error: String((error && error.stack) || error) }),
    );
"#;

/// A rule the page breaks, with the elements that break it.
#[derive(Debug, Clone, Deserialize)]
pub struct Violation {
    /// axe's rule id, e.g. `image-alt`, `label`, `color-contrast`.
    pub id: String,
    /// `minor`, `moderate`, `serious` or `critical`.
    pub impact: Option<String>,
    pub help: String,
    #[serde(rename = "helpUrl")]
    pub help_url: String,
    pub nodes: Vec<ViolationNode>,
}

/// One failing element.
#[derive(Debug, Clone, Deserialize)]
pub struct ViolationNode {
    /// CSS selectors of the element (one per frame or shadow root on the way to it).
    pub selectors: Vec<String>,
    pub html: String,
    /// axe's account of what to fix.
    pub summary: String,
}

impl Violation {
    /// Serious or critical: what [`Browser::assert_accessible`] refuses.
    pub fn is_serious(&self) -> bool {
        matches!(self.impact.as_deref(), Some("serious" | "critical"))
    }

    /// Every failing element's selector.
    pub fn selectors(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.selectors.join(" ")).collect()
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let impact = self.impact.as_deref().unwrap_or("unknown");
        writeln!(f, "{} ({impact}): {} <{}>", self.id, self.help, self.help_url)?;
        for node in &self.nodes {
            writeln!(f, "    {}  {}", node.selectors.join(" "), node.html)?;
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct Outcome {
    violations: Option<Vec<Violation>>,
    error: Option<String>,
}

impl Browser {
    /// axe-core's violations on the current page, every impact.
    pub async fn axe(&self) -> Vec<Violation> {
        self.action("axe".into());
        let present = self
            .execute("return typeof window.axe === 'object' && typeof window.axe.run === 'function';", vec![])
            .await;
        if present != Value::Bool(true) {
            self.execute(AXE_SOURCE, vec![]).await;
        }
        let answer = self.client.execute_async(AXE_RUN, vec![]).await;
        let answer = self.ok("axe.run", answer).await;
        let outcome: Outcome =
            serde_json::from_value(answer.clone()).unwrap_or_else(|e| panic!("axe's answer {answer}: {e}"));
        match outcome {
            Outcome { violations: Some(violations), .. } => violations,
            Outcome { error, .. } => {
                panic!("axe.run failed: {}\n  page: {}", error.unwrap_or_default(), self.current_url().await)
            }
        }
    }

    /// Fails listing every serious or critical axe violation on the current page.
    pub async fn assert_accessible(&self) {
        let serious: Vec<Violation> = self.axe().await.into_iter().filter(Violation::is_serious).collect();
        if !serious.is_empty() {
            let list: String = serious.iter().map(|v| format!("  {v}")).collect();
            panic!(
                "{} serious or critical accessibility violation(s) on {}:\n{list}",
                serious.len(),
                self.current_url().await
            );
        }
    }
}
