//! Staff sessions on both backends: found by hash with their staff member while neither
//! expired nor of a revoked token, touched forward only, deleted one at a time, by
//! token (a revocation deletes them in its own transaction) and by expiry.

use appealflow::domain::Role;
use appealflow::store::{SessionRecord, TokenRecord};
use chrono::{DateTime, Duration, Utc};

use crate::common::{TestDb, monday_morning};

on_both_backends!(
    a_session_is_found_with_its_staff_member_until_its_absolute_expiry,
    a_session_is_stored_only_for_a_known_unrevoked_token,
    revoking_a_token_deletes_its_sessions_and_no_other_tokens,
    touching_a_session_moves_last_seen_forward_only,
    sessions_are_deleted_one_at_a_time_or_all_of_a_token,
    pruning_deletes_expired_sessions_only,
);

async fn token(db: &TestDb, id: &str, name: &str, role: Role) -> TokenRecord {
    let t = TokenRecord {
        id: id.into(),
        name: name.into(),
        role,
        token_hash: format!("hash-of-{id}"),
        email: None,
        created_at: monday_morning(),
        revoked_at: None,
    };
    db.store.insert_token(&t).await.unwrap();
    t
}

fn session(id: &str, token_id: &str, at: DateTime<Utc>, expires_at: DateTime<Utc>) -> SessionRecord {
    SessionRecord {
        id: id.into(),
        token_id: token_id.into(),
        csrf: format!("csrf-of-{id}"),
        created_at: at,
        last_seen_at: at,
        expires_at,
    }
}

async fn a_session_is_found_with_its_staff_member_until_its_absolute_expiry(db: TestDb) {
    token(&db, "tok-1", "lee", Role::Lead).await;
    let t = monday_morning();
    let s = session("h1", "tok-1", t, t + Duration::hours(8));
    assert!(db.store.insert_session(&s).await.unwrap());
    let found = db.store.session_by_hash("h1", t).await.unwrap().expect("a live session");
    assert_eq!(found.session, s, "read back as written");
    assert_eq!((found.name.as_str(), found.role), ("lee", Role::Lead));
    let last = s.expires_at - Duration::microseconds(1);
    assert!(db.store.session_by_hash("h1", last).await.unwrap().is_some(), "alive until its last instant");
    assert!(db.store.session_by_hash("h1", s.expires_at).await.unwrap().is_none(), "gone at its expiry");
    assert!(db.store.session_by_hash("h2", t).await.unwrap().is_none(), "an unknown hash finds nothing");
}

async fn a_session_is_stored_only_for_a_known_unrevoked_token(db: TestDb) {
    let t = monday_morning();
    token(&db, "tok-1", "ann", Role::Reviewer).await;
    assert!(db.store.revoke_token("tok-1", t).await.unwrap());
    assert!(!db.store.insert_session(&session("h1", "tok-1", t, t + Duration::hours(1))).await.unwrap());
    assert!(!db.store.insert_session(&session("h2", "no-such-token", t, t + Duration::hours(1))).await.unwrap());
    assert_eq!(db.store.prune_sessions(t + Duration::days(365)).await.unwrap(), 0, "no row was stored");
}

async fn revoking_a_token_deletes_its_sessions_and_no_other_tokens(db: TestDb) {
    let t = monday_morning();
    let end = t + Duration::hours(8);
    token(&db, "tok-1", "ann", Role::Reviewer).await;
    token(&db, "tok-2", "bob", Role::Reviewer).await;
    for (hash, tok) in [("a1", "tok-1"), ("a2", "tok-1"), ("b1", "tok-2")] {
        assert!(db.store.insert_session(&session(hash, tok, t, end)).await.unwrap());
    }
    assert!(db.store.revoke_token("tok-1", t + Duration::minutes(5)).await.unwrap());
    assert_eq!(db.store.delete_token_sessions("tok-1").await.unwrap(), 0, "the revocation deleted both rows");
    assert!(db.store.session_by_hash("a1", t).await.unwrap().is_none());
    assert!(db.store.session_by_hash("b1", t).await.unwrap().is_some(), "another token's session stays");
    assert!(!db.store.revoke_token("tok-1", t).await.unwrap(), "revoked once");
}

async fn touching_a_session_moves_last_seen_forward_only(db: TestDb) {
    let t = monday_morning();
    token(&db, "tok-1", "ann", Role::Reviewer).await;
    db.store.insert_session(&session("h1", "tok-1", t, t + Duration::hours(8))).await.unwrap();
    assert!(db.store.touch_session("h1", t + Duration::minutes(5)).await.unwrap());
    assert!(!db.store.touch_session("h1", t + Duration::minutes(2)).await.unwrap(), "never back");
    assert!(!db.store.touch_session("h2", t + Duration::minutes(9)).await.unwrap(), "no such session");
    let found = db.store.session_by_hash("h1", t).await.unwrap().unwrap();
    assert_eq!(found.session.last_seen_at, t + Duration::minutes(5));
    assert_eq!(found.session.created_at, t, "sign-in time unchanged");
}

async fn sessions_are_deleted_one_at_a_time_or_all_of_a_token(db: TestDb) {
    let t = monday_morning();
    let end = t + Duration::hours(8);
    token(&db, "tok-1", "ann", Role::Reviewer).await;
    for hash in ["h1", "h2", "h3"] {
        db.store.insert_session(&session(hash, "tok-1", t, end)).await.unwrap();
    }
    assert!(db.store.delete_session("h1").await.unwrap());
    assert!(!db.store.delete_session("h1").await.unwrap(), "deleted once");
    assert!(db.store.session_by_hash("h1", t).await.unwrap().is_none());
    assert!(db.store.session_by_hash("h2", t).await.unwrap().is_some(), "the others stay");
    assert_eq!(db.store.delete_token_sessions("tok-1").await.unwrap(), 2);
    assert!(db.store.session_by_hash("h2", t).await.unwrap().is_none());
}

async fn pruning_deletes_expired_sessions_only(db: TestDb) {
    let t = monday_morning();
    token(&db, "tok-1", "ann", Role::Reviewer).await;
    db.store.insert_session(&session("early", "tok-1", t, t + Duration::hours(1))).await.unwrap();
    db.store.insert_session(&session("late", "tok-1", t, t + Duration::hours(2))).await.unwrap();
    let at = t + Duration::hours(1) - Duration::microseconds(1);
    assert_eq!(db.store.prune_sessions(at).await.unwrap(), 0, "none expired yet");
    assert_eq!(db.store.prune_sessions(t + Duration::hours(1)).await.unwrap(), 1, "expired at its expiry");
    assert!(db.store.session_by_hash("late", t).await.unwrap().is_some(), "the live one stays");
    assert_eq!(db.store.delete_token_sessions("tok-1").await.unwrap(), 1, "only the live one was left");
}
