//! The web console's sessions through the app service, on both backends: sign-in with a
//! token, lookups with injected time (absolute and idle expiry), sign-out, revocation,
//! two processes on one database, and the janitor's pruning.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use appealflow::adapters::blobs::LocalBlobStore;
use appealflow::app::access::{create_token, hash_secret};
use appealflow::app::janitor::{Janitor, JanitorConfig};
use appealflow::app::sessions::{self, SessionError, SessionPolicy, csrf_matches, sign_in, sign_out};
use appealflow::domain::{Actor, Role};
use appealflow::engine::{Engine, ManualClock};
use appealflow::store::TokenRecord;
use chrono::{DateTime, Duration, Utc};

use crate::common::{TestDb, engine, monday_morning};

on_both_backends!(
    signing_in_with_a_good_token_opens_a_session_for_its_staff_member,
    a_revoked_token_and_an_unknown_token_get_the_same_refusal,
    a_session_is_found_until_signed_out,
    a_session_ends_at_its_absolute_expiry_however_active,
    a_session_idle_longer_than_the_policy_allows_ends_and_use_keeps_it_alive,
    use_within_a_minute_of_the_last_recorded_use_is_not_recorded,
    revoking_the_token_ends_its_sessions_and_deletes_their_rows,
    two_processes_on_one_database_see_the_same_sessions,
    the_janitor_prunes_expired_sessions_only,
);

fn policy() -> SessionPolicy {
    SessionPolicy::default()
}

fn setup(db: &TestDb) -> (Arc<Engine>, DateTime<Utc>) {
    let t = monday_morning();
    (engine(db, Arc::new(ManualClock::new(t))), t)
}

async fn new_token(db: &TestDb, name: &str, role: Role) -> (String, TokenRecord) {
    create_token(db.store.as_ref(), role, name, None, monday_morning()).await.unwrap()
}

async fn live(engine: &Engine, secret: &str, at: DateTime<Utc>) -> bool {
    sessions::session(engine, secret, at, policy()).await.unwrap().is_some()
}

async fn signing_in_with_a_good_token_opens_a_session_for_its_staff_member(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, record) = new_token(&db, "lee", Role::Lead).await;
    let new = sign_in(&engine, &token, t, policy()).await.unwrap();
    assert_eq!(new.actor, Actor::new("lee", Role::Lead));
    assert_eq!(new.expires_at, t + Duration::hours(8));
    assert!(new.secret.starts_with("afs_") && new.secret.len() == 68, "a 256-bit secret");
    assert_eq!(new.csrf.len(), 64);
    let found = sessions::session(&engine, &new.secret, t + Duration::minutes(1), policy()).await.unwrap().unwrap();
    assert_eq!(found.actor, new.actor);
    assert_eq!(found.token_id, record.id);
    assert_eq!(found.expires_at, new.expires_at);
    assert!(csrf_matches(&found, &new.csrf));
    assert!(!csrf_matches(&found, &new.secret));
    // Only the secret's hash is stored.
    assert!(db.store.session_by_hash(&new.secret, t).await.unwrap().is_none());
    assert!(db.store.session_by_hash(&hash_secret(&new.secret), t).await.unwrap().is_some());
    let other = sign_in(&engine, &token, t, policy()).await.unwrap();
    assert_ne!((&other.secret, &other.csrf), (&new.secret, &new.csrf), "each session its own secret and csrf");
}

async fn a_revoked_token_and_an_unknown_token_get_the_same_refusal(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, record) = new_token(&db, "ann", Role::Reviewer).await;
    let unknown = sign_in(&engine, "aft_no-such-token", t, policy()).await;
    assert!(matches!(unknown, Err(SessionError::BadToken)), "{unknown:?}");
    assert!(db.store.revoke_token(&record.id, t).await.unwrap());
    let revoked = sign_in(&engine, &token, t, policy()).await;
    assert!(matches!(revoked, Err(SessionError::BadToken)), "{revoked:?}");
    let (Err(a), Err(b)) = (unknown, revoked) else { unreachable!() };
    assert_eq!(a.to_string(), b.to_string(), "one answer for both");
    assert_eq!(db.store.prune_sessions(t + Duration::days(365)).await.unwrap(), 0, "no session stored");
}

async fn a_session_is_found_until_signed_out(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, _) = new_token(&db, "ann", Role::Reviewer).await;
    let here = sign_in(&engine, &token, t, policy()).await.unwrap();
    let there = sign_in(&engine, &token, t, policy()).await.unwrap();
    assert!(live(&engine, &here.secret, t).await);
    sign_out(&engine, &here.secret).await.unwrap();
    assert!(!live(&engine, &here.secret, t).await, "signed out");
    sign_out(&engine, &here.secret).await.expect("signing out twice is harmless");
    assert!(live(&engine, &there.secret, t).await, "the same token's other session stays");
    assert!(!live(&engine, "afs_not-a-session", t).await);
}

async fn a_session_ends_at_its_absolute_expiry_however_active(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, _) = new_token(&db, "ann", Role::Reviewer).await;
    let new = sign_in(&engine, &token, t, policy()).await.unwrap();
    let mut at = t;
    while at < t + Duration::hours(8) - Duration::minutes(10) {
        at += Duration::minutes(10);
        assert!(live(&engine, &new.secret, at).await, "in use at {at}");
    }
    assert!(live(&engine, &new.secret, t + Duration::hours(8) - Duration::seconds(1)).await);
    assert!(!live(&engine, &new.secret, t + Duration::hours(8)).await, "over at eight hours");
}

async fn a_session_idle_longer_than_the_policy_allows_ends_and_use_keeps_it_alive(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, _) = new_token(&db, "ann", Role::Reviewer).await;
    let new = sign_in(&engine, &token, t, policy()).await.unwrap();
    let used = t + Duration::minutes(29);
    assert!(live(&engine, &new.secret, used).await);
    assert!(live(&engine, &new.secret, used + Duration::minutes(30)).await, "idle time counts from the last use");
    let last = used + Duration::minutes(30);
    assert!(!live(&engine, &new.secret, last + Duration::minutes(30) + Duration::seconds(1)).await, "idle too long");
    assert!(!live(&engine, &new.secret, last + Duration::minutes(1)).await, "an idle expiry is final");
    let short = SessionPolicy { idle: StdDuration::from_secs(60), ..policy() };
    let other = sign_in(&engine, &token, t, short).await.unwrap();
    assert!(sessions::session(&engine, &other.secret, t + Duration::seconds(60), short).await.unwrap().is_some());
    assert!(sessions::session(&engine, &other.secret, t + Duration::seconds(121), short).await.unwrap().is_none());
}

async fn use_within_a_minute_of_the_last_recorded_use_is_not_recorded(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, _) = new_token(&db, "ann", Role::Reviewer).await;
    let new = sign_in(&engine, &token, t, policy()).await.unwrap();
    let hash = hash_secret(&new.secret);
    assert!(live(&engine, &new.secret, t + Duration::seconds(59)).await);
    let row = db.store.session_by_hash(&hash, t).await.unwrap().unwrap();
    assert_eq!(row.session.last_seen_at, t, "not written within the minute");
    assert!(live(&engine, &new.secret, t + Duration::seconds(60)).await);
    let row = db.store.session_by_hash(&hash, t).await.unwrap().unwrap();
    assert_eq!(row.session.last_seen_at, t + Duration::seconds(60), "written once a minute has passed");
}

async fn revoking_the_token_ends_its_sessions_and_deletes_their_rows(db: TestDb) {
    let (engine, t) = setup(&db);
    let (token, record) = new_token(&db, "ann", Role::Reviewer).await;
    let (other_token, _) = new_token(&db, "bob", Role::Reviewer).await;
    let one = sign_in(&engine, &token, t, policy()).await.unwrap();
    let two = sign_in(&engine, &token, t, policy()).await.unwrap();
    let bobs = sign_in(&engine, &other_token, t, policy()).await.unwrap();
    // `tokens revoke` calls this.
    assert!(db.store.revoke_token(&record.id, t + Duration::minutes(1)).await.unwrap());
    assert!(!live(&engine, &one.secret, t + Duration::minutes(2)).await);
    assert!(!live(&engine, &two.secret, t + Duration::minutes(2)).await);
    assert_eq!(db.store.delete_token_sessions(&record.id).await.unwrap(), 0, "the rows are gone");
    assert!(live(&engine, &bobs.secret, t + Duration::minutes(2)).await, "another token's session stays");
}

async fn two_processes_on_one_database_see_the_same_sessions(db: TestDb) {
    let (a, t) = setup(&db);
    let other = db.reopen().await;
    let (b, _) = setup(&other);
    let (token, _) = new_token(&db, "ann", Role::Reviewer).await;
    let new = sign_in(&a, &token, t, policy()).await.unwrap();
    let seen = sessions::session(&b, &new.secret, t + Duration::minutes(5), policy()).await.unwrap();
    assert_eq!(seen.map(|s| s.actor), Some(Actor::new("ann", Role::Reviewer)), "signed in on a, seen on b");
    // Use recorded by b keeps the session alive on a past a's own last sight of it.
    assert!(live(&a, &new.secret, t + Duration::minutes(34)).await);
    sign_out(&b, &new.secret).await.unwrap();
    assert!(!live(&a, &new.secret, t + Duration::minutes(35)).await, "signed out on b, gone on a");
}

async fn the_janitor_prunes_expired_sessions_only(db: TestDb) {
    let t = monday_morning();
    let clock = Arc::new(ManualClock::new(t));
    let engine = engine(&db, clock.clone());
    let dir = tempfile::tempdir().unwrap();
    let blobs = Arc::new(LocalBlobStore::open(dir.path()).unwrap());
    let janitor = Janitor::new(engine.clone(), blobs, JanitorConfig::default());
    let (token, _) = new_token(&db, "ann", Role::Reviewer).await;
    // A long idle allowance, so only the absolute expiry decides here.
    let lenient = SessionPolicy { idle: StdDuration::from_secs(24 * 3600), ..policy() };
    let early = sign_in(&engine, &token, t, lenient).await.unwrap();
    let late = sign_in(&engine, &token, t + Duration::hours(1), lenient).await.unwrap();
    clock.set(t + Duration::hours(8) - Duration::seconds(1));
    assert_eq!(janitor.run_once().await.unwrap().sessions_expired, 0, "none expired yet");
    clock.set(t + Duration::hours(8));
    assert_eq!(janitor.run_once().await.unwrap().sessions_expired, 1);
    assert!(db.store.session_by_hash(&hash_secret(&early.secret), t).await.unwrap().is_none(), "its row is gone");
    assert!(sessions::session(&engine, &late.secret, engine.now(), lenient).await.unwrap().is_some());
    assert_eq!(janitor.run_once().await.unwrap().sessions_expired, 0, "pruned once");
}
