//! The account directory: what appealflow may know about an account (verification,
//! enterprise status, associations, security settings). The embedded default keeps
//! accounts in appealflow's own database (`appealflow accounts import`); another
//! implementation may ask an identity service. The write side (post-approval account
//! changes) is a separate seam so a read-only directory stays read-only.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{Account, LookupKind};
use crate::store::{Store, StoreError};

#[async_trait]
pub trait AccountDirectory: Send + Sync + 'static {
    async fn by_name(&self, name: &str) -> Result<Option<Account>, StoreError>;
    async fn by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError>;
}

/// The embedded directory: the `accounts` table in appealflow's database.
pub struct StoreDirectory {
    store: Arc<dyn Store>,
}

impl StoreDirectory {
    pub fn new(store: Arc<dyn Store>) -> Self {
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
