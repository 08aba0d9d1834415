//! The account directory: what appealflow may know about an account (verification,
//! enterprise status, associations, security settings). The embedded default keeps
//! accounts in appealflow's own database (`appealflow accounts import`); another
//! implementation may ask an identity service. The write side (post-approval account
//! changes) is a separate seam so a read-only directory stays read-only.

use std::sync::Arc;

use async_trait::async_trait;

use crate::adapters::notify::{DeliveryError, post_signed};
use crate::domain::account::AccountChange;
use crate::domain::{Account, LookupKind};
use crate::engine::Clock;
use crate::store::{DirectoryStore, LedgerEntry, StoreError};

#[async_trait]
pub trait AccountDirectory: Send + Sync + 'static {
    async fn by_name(&self, name: &str) -> Result<Option<Account>, StoreError>;
    async fn by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError>;
}

/// The embedded directory: the `accounts` table in appealflow's database.
pub struct StoreDirectory {
    store: Arc<dyn DirectoryStore>,
}

impl StoreDirectory {
    pub fn new(store: Arc<dyn DirectoryStore>) -> Self {
        StoreDirectory { store }
    }
}

#[async_trait]
impl AccountDirectory for StoreDirectory {
    async fn by_name(&self, name: &str) -> Result<Option<Account>, StoreError> {
        self.store.account(name).await
    }

    async fn by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError> {
        self.store.account_by_key(kind, value).await
    }
}

/// One post-approval change, with the key that makes it happen at most once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ActionRequest {
    /// Derived from (appeal, action).
    pub idempotency_key: String,
    pub ticket: String,
    pub account: String,
    pub action: String,
    #[serde(flatten)]
    pub change: AccountChange,
}

/// What an applied change replaced (the previous secure phone, for the security notice).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDone {
    pub before: serde_json::Value,
    /// The key had been applied already; nothing changed this time.
    pub replayed: bool,
    /// The embedded directory's change, committed with the step's result (so the change
    /// and its record are one unit of work); `None` for an external directory, which
    /// applied it already.
    pub ledger: Option<LedgerEntry>,
}

/// The write side of the account seam: post-approval account changes. Each request
/// carries its idempotency key; applying it again must change nothing.
#[async_trait]
pub trait AccountActions: Send + Sync + 'static {
    async fn apply(&self, request: &ActionRequest) -> Result<ActionDone, DeliveryError>;
}

/// Changes the embedded directory's accounts. It computes the change from the account
/// as stored and hands it back, with its ledger row (`applied_account_changes`), for the
/// step to commit with its result; the commit writes it only while the account is
/// still as read, and a key applies once.
pub struct DirectoryActions {
    store: Arc<dyn DirectoryStore>,
}

impl DirectoryActions {
    pub fn new(store: Arc<dyn DirectoryStore>) -> Self {
        DirectoryActions { store }
    }
}

fn retryable(e: StoreError) -> DeliveryError {
    DeliveryError { retryable: true, message: e.to_string() }
}

#[async_trait]
impl AccountActions for DirectoryActions {
    async fn apply(&self, r: &ActionRequest) -> Result<ActionDone, DeliveryError> {
        if let Some(applied) = self.store.applied_change(&r.idempotency_key).await.map_err(retryable)? {
            return Ok(ActionDone { before: applied.before, replayed: true, ledger: None });
        }
        let Some((mut account, stored)) = self.store.account_record(&r.account).await.map_err(retryable)? else {
            return Err(DeliveryError {
                retryable: false,
                message: StoreError::UnknownAccount(r.account.clone()).to_string(),
            });
        };
        let before = r.change.apply(&mut account);
        let after = serde_json::to_value(&account.security).expect("settings serialise");
        let ledger = LedgerEntry {
            key: r.idempotency_key.clone(),
            account: r.account.clone(),
            action: r.action.clone(),
            expected: stored,
            record: account,
            before: before.clone(),
            after,
        };
        Ok(ActionDone { before, replayed: false, ledger: Some(ledger) })
    }
}

/// Posts each change as JSON to `{base_url}/{action}` with an `Idempotency-Key` header
/// and an HMAC signature: 2xx done, 4xx a permanent failure, 5xx or a timeout retried.
/// A 2xx answer may carry `{"before": {...}}` (e.g. the previous secure phone).
pub struct HttpActions {
    base_url: String,
    secret: Vec<u8>,
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl HttpActions {
    pub fn new(base_url: String, secret: Vec<u8>, timeout: std::time::Duration, clock: Arc<dyn Clock>) -> Self {
        let client = reqwest::Client::builder().timeout(timeout).build().expect("an HTTP client builds");
        HttpActions { base_url: base_url.trim_end_matches('/').to_string(), secret, client, clock }
    }
}

#[async_trait]
impl AccountActions for HttpActions {
    async fn apply(&self, r: &ActionRequest) -> Result<ActionDone, DeliveryError> {
        let url = format!("{}/{}", self.base_url, r.action);
        let body = serde_json::to_value(r).expect("requests serialise");
        let answer = post_signed(&self.client, &url, &self.secret, &r.idempotency_key, &body, self.clock.now()).await?;
        Ok(ActionDone {
            before: answer.get("before").cloned().unwrap_or(serde_json::Value::Null),
            replayed: false,
            ledger: None,
        })
    }
}
