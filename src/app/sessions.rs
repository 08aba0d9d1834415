//! Sessions of the reviewers' web console: staff sign in with their API token and get a
//! session secret for a cookie, plus a CSRF value for forms. Sessions live in the
//! database, so every serve process sees the same ones; only the secret's SHA-256 is
//! stored. A session ends at its absolute expiry, when idle too long, at sign-out, or
//! when its token is revoked (the revocation deletes it, and a lookup never answers for
//! a revoked token anyway).
//!
//! The CSRF value is random per session and stored in clear: it is only good beside
//! the session's cookie, which the stored hash does not give back.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::access::{hash_secret, new_secret, same_hash};
use crate::domain::Actor;
use crate::engine::Engine;
use crate::store::{SessionRecord, StoreError};

/// Session secrets begin so, to be told apart from API tokens (`aft_`) in a leak report.
const SECRET_PREFIX: &str = "afs_";

/// `last_seen_at` is written at most this often per session: each request of an active
/// console need not be a write. Idle expiry may so come up to this much early.
const TOUCH_EVERY: chrono::Duration = chrono::Duration::minutes(1);

/// How long a session may last: `idle` since it was last used, `absolute` since sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub idle: Duration,
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(8 * 3600) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Unknown and revoked tokens get this one answer, so a guess learns nothing.
    #[error("unknown or revoked token")]
    BadToken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A session just opened. `secret` goes into the cookie and is shown only this once.
pub struct NewSession {
    pub secret: String,
    pub csrf: String,
    pub actor: Actor,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for NewSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSession")
            .field("actor", &self.actor)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A live session: who is signed in, and what forms must carry.
#[derive(Clone, PartialEq, Eq)]
pub struct StaffSession {
    pub actor: Actor,
    pub token_id: String,
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

impl fmt::Debug for StaffSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffSession")
            .field("actor", &self.actor)
            .field("token_id", &self.token_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

/// Opens a session for the staff member whose API token this is.
pub async fn sign_in(
    engine: &Engine,
    token: &str,
    now: DateTime<Utc>,
    policy: SessionPolicy,
) -> Result<NewSession, SessionError> {
    let store = engine.store();
    let token = store.token_by_hash(&hash_secret(token.trim())).await?.ok_or(SessionError::BadToken)?;
    let secret = new_secret(SECRET_PREFIX);
    let expires_at = now.checked_add_signed(span(policy.absolute)).unwrap_or(DateTime::<Utc>::MAX_UTC);
    let record = SessionRecord {
        id: hash_secret(&secret),
        token_id: token.id,
        csrf: new_secret(""),
        created_at: now,
        last_seen_at: now,
        expires_at,
    };
    // Refused when the token was revoked since it was read.
    if !store.insert_session(&record).await? {
        return Err(SessionError::BadToken);
    }
    Ok(NewSession { secret, csrf: record.csrf, actor: Actor::new(token.name, token.role), expires_at })
}

/// The live session a cookie's secret names, if any; records its use.
pub async fn session(
    engine: &Engine,
    secret: &str,
    now: DateTime<Utc>,
    policy: SessionPolicy,
) -> Result<Option<StaffSession>, StoreError> {
    let store = engine.store();
    let hash = hash_secret(secret);
    let Some(found) = store.session_by_hash(&hash, now).await? else {
        return Ok(None);
    };
    let s = found.session;
    if now - s.last_seen_at > span(policy.idle) {
        // Idle expiry is final: the row goes now rather than at the absolute expiry.
        store.delete_session(&hash).await?;
        return Ok(None);
    }
    if now - s.last_seen_at >= TOUCH_EVERY {
        store.touch_session(&hash, now).await?;
    }
    Ok(Some(StaffSession {
        actor: Actor::new(found.name, found.role),
        token_id: s.token_id,
        csrf: s.csrf,
        expires_at: s.expires_at,
    }))
}

/// Ends the session a cookie's secret names (nothing to do when there is none).
pub async fn sign_out(engine: &Engine, secret: &str) -> Result<(), StoreError> {
    engine.store().delete_session(&hash_secret(secret)).await?;
    Ok(())
}

/// Whether a form's CSRF value is the session's, compared in constant time.
pub fn csrf_matches(session: &StaffSession, presented: &str) -> bool {
    same_hash(&session.csrf, presented)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn staff_session(csrf: &str) -> StaffSession {
        StaffSession {
            actor: Actor::new("ann", Role::Reviewer),
            token_id: "tok".into(),
            csrf: csrf.into(),
            expires_at: DateTime::<Utc>::MIN_UTC,
        }
    }

    #[test]
    fn csrf_matches_only_the_sessions_own_value() {
        let s = staff_session("ab12");
        assert!(csrf_matches(&s, "ab12"));
        assert!(!csrf_matches(&s, "ab13"));
        assert!(!csrf_matches(&s, "ab1"));
        assert!(!csrf_matches(&s, ""));
    }

    #[test]
    fn debug_output_never_shows_a_secret_or_a_csrf_value() {
        let s = staff_session("csrf-value");
        assert!(!format!("{s:?}").contains("csrf-value"));
        let n = NewSession {
            secret: "afs_secret".into(),
            csrf: "csrf-value".into(),
            actor: Actor::new("ann", Role::Reviewer),
            expires_at: DateTime::<Utc>::MIN_UTC,
        };
        let shown = format!("{n:?}");
        assert!(!shown.contains("afs_secret") && !shown.contains("csrf-value"), "{shown}");
    }

    #[test]
    fn the_default_policy_is_half_an_hour_idle_and_eight_hours_in_all() {
        let p = SessionPolicy::default();
        assert_eq!((p.idle.as_secs(), p.absolute.as_secs()), (1800, 28800));
    }
}
