//! Secrets that grant access — reviewers' API tokens and applicants' draft secrets —
//! are random, shown once, and stored only as SHA-256 hashes.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::Role;
use crate::store::{AccessStore, StoreError, TokenRecord};

/// A new random secret: `prefix` then 64 hex characters (256 bits).
pub fn new_secret(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", hex::encode(bytes))
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares two hashes without an early exit.
pub fn same_hash(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token's role is reviewer, lead or admin")]
    Role,
    #[error("a token needs a name (1 to 100 characters, no control characters)")]
    Name,
    #[error("email: {0:?} is not an email address (one @, a dotted domain, at most 254 characters)")]
    Email(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates an API token; returns the token (shown once) and what is stored of it. A
/// lead's `email` receives SLA warnings and breaches while the token is not revoked.
pub async fn create_token(
    store: &dyn AccessStore,
    role: Role,
    name: &str,
    email: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(String, TokenRecord), TokenError> {
    if !matches!(role, Role::Reviewer | Role::Lead | Role::Admin) {
        return Err(TokenError::Role);
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || crate::domain::check_text("name", name, false).is_err() {
        return Err(TokenError::Name);
    }
    let email = email.map(str::trim).filter(|e| !e.is_empty());
    if let Some(e) = email
        && !crate::domain::draft::valid_email(e)
    {
        return Err(TokenError::Email(e.to_string()));
    }
    let token = new_secret("aft_");
    let record = TokenRecord {
        id: uuid::Uuid::new_v4().simple().to_string()[..12].to_string(),
        name: name.to_string(),
        role,
        token_hash: hash_secret(&token),
        email: email.map(str::to_string),
        created_at: now,
        revoked_at: None,
    };
    store.insert_token(&record).await?;
    Ok((token, record))
}

/// The staff member an API token belongs to, unless it is unknown or revoked.
pub async fn staff_by_token(
    engine: &crate::engine::Engine,
    token: &str,
) -> Result<Option<crate::domain::Actor>, crate::store::StoreError> {
    let record = engine.store().token_by_hash(&hash_secret(token)).await?;
    Ok(record.map(|r| crate::domain::Actor::new(r.name, r.role)))
}

/// Every API token, revoked ones included (only hashes are stored).
pub async fn tokens(engine: &crate::engine::Engine) -> Result<Vec<TokenRecord>, StoreError> {
    engine.store().tokens().await
}

/// Revokes a token at the engine's time; its console sessions end in the same
/// transaction. False when there was no unrevoked token `id`.
pub async fn revoke_token(engine: &crate::engine::Engine, id: &str) -> Result<bool, StoreError> {
    engine.store().revoke_token(id, engine.now()).await
}
