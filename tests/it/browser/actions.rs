//! What a test does on a page: navigate, find, fill, click, choose, upload, read, and
//! move through the page with the keyboard alone. Each helper records itself as the last
//! action (the failure screenshot names it), waits for its element, and panics with the
//! selector and the page's URL when it cannot act.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::{Locator, key::Key};
use serde_json::Value;

use super::Browser;

impl Browser {
    /// Opens `url` and waits for it to load.
    pub async fn goto(&self, url: &str) {
        self.action(format!("goto {url}"));
        let result = self.client.goto(url).await;
        self.ok(format_args!("goto {url}"), result).await;
    }

    /// The page's URL, or `(unknown: <error>)` when the browser cannot say.
    pub async fn current_url(&self) -> String {
        match self.client.current_url().await {
            Ok(url) => url.to_string(),
            Err(e) => format!("(unknown: {e})"),
        }
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        let result = self.client.title().await;
        self.ok("the page's title", result).await
    }

    /// The first element matching `css`, once there is one (within the wait, see
    /// [`Browser::set_wait`]).
    pub async fn wait_for(&self, css: &str) -> Element {
        self.action(format!("wait for {css:?}"));
        self.element(css).await
    }

    /// [`Browser::wait_for`] without recording an action: the helpers' own lookup.
    async fn element(&self, css: &str) -> Element {
        let wait = self.state().wait;
        let found =
            self.client.wait().at_most(wait).every(Duration::from_millis(50)).for_element(Locator::Css(css)).await;
        match found {
            Ok(element) => element,
            Err(CmdError::WaitTimeout) => {
                panic!("wait_for {css:?}: no element matched within {wait:?}\n  page: {}", self.current_url().await)
            }
            Err(e) => panic!("wait_for {css:?}: {e}\n  page: {}", self.current_url().await),
        }
    }

    /// Whether an element matches `css` now (no waiting).
    pub async fn exists(&self, css: &str) -> bool {
        let found = self.client.find_all(Locator::Css(css)).await;
        !self.ok(format_args!("find {css:?}"), found).await.is_empty()
    }

    /// Replaces the value of the text field matching `css` with `text`, typed.
    pub async fn fill(&self, css: &str, text: &str) {
        self.action(format!("fill {css:?}"));
        let field = self.element(css).await;
        let cleared = field.clear().await;
        self.ok(format_args!("clear {css:?}"), cleared).await;
        let typed = field.send_keys(text).await;
        self.ok(format_args!("type into {css:?}"), typed).await;
    }

    /// Clicks the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.action(format!("click {css:?}"));
        let element = self.element(css).await;
        let clicked = element.click().await;
        self.ok(format_args!("click {css:?}"), clicked).await;
    }

    /// Chooses the option with value `value` in the `<select>` matching `css`.
    pub async fn select(&self, css: &str, value: &str) {
        self.action(format!("select {value:?} in {css:?}"));
        let element = self.element(css).await;
        let chosen = element.select_by_value(value).await;
        self.ok(format_args!("select {value:?} in {css:?}"), chosen).await;
    }

    /// Ticks the checkbox or radio button matching `css` (left ticked if it is).
    pub async fn check(&self, css: &str) {
        self.action(format!("check {css:?}"));
        let element = self.element(css).await;
        let selected = element.is_selected().await;
        if !self.ok(format_args!("read {css:?}"), selected).await {
            let clicked = element.click().await;
            self.ok(format_args!("check {css:?}"), clicked).await;
        }
        let selected = element.is_selected().await;
        if !self.ok(format_args!("read {css:?}"), selected).await {
            panic!("check {css:?}: still not ticked after a click\n  page: {}", self.current_url().await);
        }
    }

    /// Whether the checkbox, radio button or option matching `css` is selected.
    pub async fn is_checked(&self, css: &str) -> bool {
        self.action(format!("read {css:?}"));
        let element = self.element(css).await;
        let selected = element.is_selected().await;
        self.ok(format_args!("read {css:?}"), selected).await
    }

    /// Puts the file at `path` into the `<input type=file>` matching `css`.
    pub async fn upload(&self, css: &str, path: &Path) {
        self.action(format!("upload {} to {css:?}", path.display()));
        let absolute = std::fs::canonicalize(path).unwrap_or_else(|e| panic!("upload {}: {e}", path.display()));
        let input = self.element(css).await;
        let sent = input.send_keys(&absolute.to_string_lossy()).await;
        self.ok(format_args!("upload {} to {css:?}", path.display()), sent).await;
    }

    /// The rendered text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.action(format!("text of {css:?}"));
        let element = self.element(css).await;
        let text = element.text().await;
        self.ok(format_args!("text of {css:?}"), text).await
    }

    /// The attribute `name` of the element matching `css`.
    pub async fn attr(&self, css: &str, name: &str) -> Option<String> {
        self.action(format!("attribute {name:?} of {css:?}"));
        let element = self.element(css).await;
        let value = element.attr(name).await;
        self.ok(format_args!("attribute {name:?} of {css:?}"), value).await
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its result.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        let result = self.client.execute(script, args).await;
        self.ok("a script in the page", result).await
    }

    /// Presses and releases each key of `keys` in turn, sent to whatever has the focus,
    /// as a keyboard would: text, or [`Key`]s (`Key::Tab + "text"`, `&Key::Enter`).
    pub async fn press_keys(&self, keys: &str) {
        self.action(format!("press {}", describe_keys(keys)));
        let mut sequence = KeyActions::new("keyboard".into());
        for key in keys.chars() {
            sequence = sequence.then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
        }
        let pressed = self.client.perform_actions(sequence).await;
        self.ok(format_args!("press {}", describe_keys(keys)), pressed).await;
    }

    /// Presses one key.
    pub async fn press(&self, key: Key) {
        self.press_keys(&char::from(key).to_string()).await;
    }

    /// Presses `key` while holding `modifier` (`Key::Shift, Key::Tab` moves the focus back).
    pub async fn press_chord(&self, modifier: Key, key: Key) {
        self.action(format!("press {}", describe_keys(&format!("{}{}", char::from(modifier), char::from(key)))));
        let (m, k) = (char::from(modifier), char::from(key));
        let sequence = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: m })
            .then(KeyAction::Down { value: k })
            .then(KeyAction::Up { value: k })
            .then(KeyAction::Up { value: m });
        let pressed = self.client.perform_actions(sequence).await;
        self.ok("press a chord", pressed).await;
    }

    /// Presses Tab until the element matching `css` has the focus; how many presses that
    /// took. Panics after `max` presses, naming where the focus went.
    pub async fn tab_to(&self, css: &str, max: usize) -> usize {
        self.action(format!("tab to {css:?}"));
        let mut trail = Vec::new();
        for presses in 0..=max {
            if self.focus_matches(css).await {
                return presses;
            }
            trail.push(self.focused().await);
            if presses < max {
                self.press(Key::Tab).await;
            }
        }
        panic!(
            "tab_to {css:?}: not focused after {max} presses of Tab; the focus went through:\n  {}\n  page: {}",
            trail.join("\n  "),
            self.current_url().await
        );
    }

    /// Whether the element with the focus matches `css`.
    pub async fn focus_matches(&self, css: &str) -> bool {
        let script = "const e = document.activeElement; return !!e && e !== document.body && e.matches(arguments[0]);";
        self.execute(script, vec![Value::from(css)]).await.as_bool().unwrap_or(false)
    }

    /// A short description of the element with the focus (its tag, id, name and text).
    pub async fn focused(&self) -> String {
        let script = r#"
            const e = document.activeElement;
            if (!e || e === document.body) return "(nothing: the page body)";
            let d = "<" + e.tagName.toLowerCase();
            for (const a of ["id", "name", "type", "href"]) if (e.getAttribute(a)) d += ` ${a}="${e.getAttribute(a)}"`;
            const text = (e.innerText || e.value || "").trim().slice(0, 40);
            return d + ">" + (text ? ` ${text}` : "");
        "#;
        self.execute(script, vec![]).await.as_str().unwrap_or_default().to_string()
    }

    /// Records the helper being called: named by the failure screenshot when no step is.
    pub(super) fn action(&self, what: String) {
        self.state().action = what;
    }

    /// `result`'s value, or a panic naming `what` and the page.
    pub(super) async fn ok<T>(&self, what: impl Display, result: Result<T, CmdError>) -> T {
        match result {
            Ok(value) => value,
            Err(e) => panic!("{what}: {e}\n  page: {}", self.current_url().await),
        }
    }
}

/// Keys for messages: printable characters as they are, WebDriver's special keys by name.
fn describe_keys(keys: &str) -> String {
    const NAMES: &[(Key, &str)] = &[
        (Key::Tab, "<Tab>"),
        (Key::Enter, "<Enter>"),
        (Key::Return, "<Return>"),
        (Key::Space, "<Space>"),
        (Key::Escape, "<Escape>"),
        (Key::Backspace, "<Backspace>"),
        (Key::Shift, "<Shift>"),
        (Key::Up, "<Up>"),
        (Key::Down, "<Down>"),
        (Key::Left, "<Left>"),
        (Key::Right, "<Right>"),
    ];
    keys.chars()
        .map(|c| match NAMES.iter().find(|(k, _)| char::from(*k) == c) {
            Some((_, name)) => name.to_string(),
            None if ('\u{e000}'..='\u{f8ff}').contains(&c) => format!("<U+{:04X}>", c as u32),
            None => c.to_string(),
        })
        .collect()
}
