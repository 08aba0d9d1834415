//! Notifications: handlebars templates (SMS and email, `en` and `zh-CN`) rendered in
//! strict mode, and the channels that deliver them. Every template is rendered with
//! sample data when it loads, so a missing variable or template is an error at start,
//! not at 3 a.m. Every notification is recorded in the `notifications` table (the
//! record-only channel); a webhook channel additionally posts it to a configured URL.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use handlebars::Handlebars;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::store::NotificationRecord;

pub const CHANNELS: [&str; 2] = ["sms", "email"];
pub const LOCALES: [&str; 2] = ["en", "zh-CN"];

/// The variables templates may use, with sample values: rendering every template with
/// these at load time proves none needs anything else.
pub fn sample_context() -> serde_json::Value {
    serde_json::json!({
        "ticket": "4821-0937-5521-6604-3319",
        "account": "acme-ops",
        "reasons": "missing_documents: proof_of_payment",
        "reasons_in_words": "Documents are missing: Proof of payment",
        "deadline": "2026-03-13 00:00 +08:00",
        "action": "rotate_secure_phone",
        "action_title": "secure phone change",
        "new_phone": "+86 138****5678",
        "at": "2026-03-12 10:00 +08:00",
        "first_approver": "li.wei",
        "risk": "rotates the secure phone of an enterprise account",
        "stop_code": "20481736",
        "change": "rotates the secure phone",
        "approver": "li.wei",
    })
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "{file}: a template file is named NAME.CHANNEL.LOCALE.hbs with CHANNEL one of sms, email and LOCALE one of en, zh-CN"
    )]
    BadName { file: PathBuf },
    #[error("{file}: {message}")]
    Invalid { file: PathBuf, message: String },
    #[error("template {name:?} has no {channel} variant in {locale} (add templates/{name}.{channel}.{locale}.hbs)")]
    Missing { name: String, channel: String, locale: String },
    #[error("rendering {name}.{channel}.{locale}: {message}")]
    Render { name: String, channel: String, locale: String, message: String },
    #[error("cannot read templates in {dir}: {message}")]
    Io { dir: PathBuf, message: String },
}

/// The loaded, checked templates.
pub struct Templates {
    hb: Handlebars<'static>,
    variants: BTreeSet<(String, String, String)>,
    /// Each template's variants' texts, together: what a template can show.
    texts: std::collections::BTreeMap<String, String>,
}

impl Templates {
    pub fn load(dir: &Path) -> Result<Templates, TemplateError> {
        let mut hb = Handlebars::new();
        hb.set_strict_mode(true);
        // Plain-text SMS and email: nothing to escape for HTML.
        hb.register_escape_fn(handlebars::no_escape);
        let mut variants = BTreeSet::new();
        let mut texts = std::collections::BTreeMap::<String, String>::new();
        let entries =
            std::fs::read_dir(dir).map_err(|e| TemplateError::Io { dir: dir.into(), message: e.to_string() })?;
        for entry in entries {
            let path = entry.map_err(|e| TemplateError::Io { dir: dir.into(), message: e.to_string() })?.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else { continue };
            let Some(stem) = file.strip_suffix(".hbs") else { continue };
            let parts: Vec<&str> = stem.splitn(3, '.').collect();
            let [name, channel, locale] = parts[..] else {
                return Err(TemplateError::BadName { file: path.clone() });
            };
            if !CHANNELS.contains(&channel) || !LOCALES.contains(&locale) || name.is_empty() {
                return Err(TemplateError::BadName { file: path.clone() });
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| TemplateError::Io { dir: dir.into(), message: e.to_string() })?;
            texts.entry(name.to_string()).or_default().push_str(&text);
            hb.register_template_string(stem, text)
                .map_err(|e| TemplateError::Invalid { file: path.clone(), message: e.to_string() })?;
            hb.render(stem, &sample_context())
                .map_err(|e| TemplateError::Invalid { file: path.clone(), message: e.to_string() })?;
            variants.insert((name.to_string(), channel.to_string(), locale.to_string()));
        }
        Ok(Templates { hb, variants, texts })
    }

    /// Whether any variant of template `name` names `word` (a context variable): a
    /// template that does not cannot show it, so it need not be read. No partials are
    /// registered, so a template's text is all it can render.
    pub fn mentions(&self, name: &str, word: &str) -> bool {
        self.texts.get(name).is_some_and(|t| t.contains(word))
    }

    /// Refuses unless `name` exists for `channel` in every locale.
    pub fn require(&self, name: &str, channel: &str) -> Result<(), TemplateError> {
        for locale in LOCALES {
            if !self.variants.contains(&(name.to_string(), channel.to_string(), locale.to_string())) {
                return Err(TemplateError::Missing {
                    name: name.into(),
                    channel: channel.into(),
                    locale: locale.into(),
                });
            }
        }
        Ok(())
    }

    pub fn render(
        &self,
        name: &str,
        channel: &str,
        locale: &str,
        ctx: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let locale = if LOCALES.contains(&locale) { locale } else { "zh-CN" };
        let key = format!("{name}.{channel}.{locale}");
        if !self.variants.contains(&(name.to_string(), channel.to_string(), locale.to_string())) {
            return Err(TemplateError::Missing { name: name.into(), channel: channel.into(), locale: locale.into() });
        }
        self.hb.render(&key, ctx).map_err(|e| TemplateError::Render {
            name: name.into(),
            channel: channel.into(),
            locale: locale.into(),
            message: e.to_string(),
        })
    }
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Worth another attempt (a 5xx or a timeout), or not (a 4xx).
    pub retryable: bool,
    pub message: String,
}

#[async_trait]
pub trait Channel: Send + Sync + 'static {
    async fn deliver(&self, n: &NotificationRecord) -> Result<(), DeliveryError>;
}

/// Records only: the `notifications` row is the delivery (the embedded default).
pub struct RecordOnly;

#[async_trait]
impl Channel for RecordOnly {
    async fn deliver(&self, _: &NotificationRecord) -> Result<(), DeliveryError> {
        Ok(())
    }
}

/// Signs a body for a receiver to check: hex HMAC-SHA256 of `timestamp.body`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Posts a JSON request with an idempotency key and an HMAC signature; classifies the
/// answer: 2xx done, 4xx permanent, 5xx or no answer retryable.
pub async fn post_signed(
    client: &reqwest::Client,
    url: &str,
    secret: &[u8],
    idempotency_key: &str,
    body: &serde_json::Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<serde_json::Value, DeliveryError> {
    let bytes = serde_json::to_vec(body).expect("JSON serialises");
    let ts = now.timestamp();
    let response = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("Idempotency-Key", idempotency_key)
        .header("X-Appealflow-Timestamp", ts.to_string())
        .header("X-Appealflow-Signature", format!("sha256={}", sign(secret, ts, &bytes)))
        .body(bytes)
        .send()
        .await
        .map_err(|e| DeliveryError { retryable: true, message: format!("POST {url}: {e}") })?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    } else {
        let snippet: String = text.chars().take(200).collect();
        Err(DeliveryError {
            retryable: status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408,
            message: format!("POST {url}: {status} {snippet}"),
        })
    }
}

/// Posts every notification, as JSON, to a configured URL. Delivery is at least once: a
/// crash between the POST and the commit of its result posts it again, with the same
/// `Idempotency-Key` (the notification's key), which the receiver uses to send it once.
pub struct Webhook {
    pub url: String,
    pub secret: Vec<u8>,
    pub client: reqwest::Client,
}

impl Webhook {
    pub fn new(url: String, secret: Vec<u8>, timeout: Duration) -> Self {
        let client = reqwest::Client::builder().timeout(timeout).build().expect("an HTTP client builds");
        Webhook { url, secret, client }
    }
}

#[async_trait]
impl Channel for Webhook {
    async fn deliver(&self, n: &NotificationRecord) -> Result<(), DeliveryError> {
        let body = serde_json::json!({
            "id": n.id,
            "idempotency_key": n.idempotency_key,
            "template": n.template,
            "channel": n.channel,
            "locale": n.locale,
            "recipient": n.recipient,
            "body": n.body,
        });
        post_signed(&self.client, &self.url, &self.secret, &n.idempotency_key, &body, chrono::Utc::now())
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/account-appeal/templates")
    }

    #[test]
    fn shipped_templates_render_in_strict_mode() {
        let t = Templates::load(&shipped()).unwrap();
        let body = t.render("appeal_received", "sms", "en", &sample_context()).unwrap();
        assert!(body.contains("4821-0937-5521-6604-3319"));
        for name in [
            "appeal_received",
            "appeal_rejected",
            "window_reminder",
            "window_expired",
            "appeal_approved",
            "action_completed",
            "security_notice",
        ] {
            t.require(name, "sms").unwrap();
            t.require(name, "email").unwrap();
        }
        for name in ["sla_warning", "sla_breach"] {
            t.require(name, "email").unwrap();
        }
    }

    #[test]
    fn a_template_with_an_unknown_variable_is_refused_at_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.sms.en.hbs"), "hello {{no_such_variable}}").unwrap();
        let err = Templates::load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("x.sms.en.hbs"), "{err}");
        assert!(err.contains("no_such_variable"), "{err}");
    }

    #[test]
    fn a_badly_named_template_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("x.fax.en.hbs"), "hello").unwrap();
        assert!(matches!(Templates::load(dir.path()), Err(TemplateError::BadName { .. })));
    }

    #[test]
    fn signatures_are_keyed_over_timestamp_and_body() {
        let a = sign(b"secret", 1, b"{}");
        assert_eq!(a, sign(b"secret", 1, b"{}"));
        assert_ne!(a, sign(b"secret", 2, b"{}"));
        assert_ne!(a, sign(b"other", 1, b"{}"));
    }
}
