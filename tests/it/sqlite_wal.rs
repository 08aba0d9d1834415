//! SQLite's write-ahead log is folded into the database file by the store's own task
//! shortly after a commit, not by whichever commit fills a thousand pages of it — so the
//! file catches up with what was committed without any command paying for the copy.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use appealflow::engine::ManualClock;
use sqlx::{Connection, SqliteConnection};

/// The database's pages as committed (the log included), and as the file holds them;
/// `conn` stays open for the whole test, as the last connection to close would
/// checkpoint the log itself.
async fn pages(conn: &mut SqliteConnection, url: &str) -> (i64, u64) {
    let count: i64 = sqlx::query_scalar("PRAGMA page_count").fetch_one(&mut *conn).await.unwrap();
    let size: i64 = sqlx::query_scalar("PRAGMA page_size").fetch_one(&mut *conn).await.unwrap();
    let path = url.trim_start_matches("sqlite://");
    (count, std::fs::metadata(path).unwrap().len() / size as u64)
}

#[tokio::test]
async fn the_database_file_catches_up_with_the_commits_shortly_after_them() {
    let db = common::sqlite().await;
    let engine = common::engine(&db, Arc::new(ManualClock::new(common::monday_morning())));
    let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
    let (_, before) = pages(&mut conn, &db.url).await;
    for i in 0..40 {
        engine.create(&common::request(&format!("wal{i}")), &common::applicant(), None).await.unwrap();
    }
    let (committed, _) = pages(&mut conn, &db.url).await;
    assert!(
        committed as u64 > before,
        "the appeals took new pages: {committed} committed, {before} in the file before"
    );
    // Far fewer pages than SQLite's own checkpoint waits for (1,000 by default).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (committed, in_file) = pages(&mut conn, &db.url).await;
        if in_file == committed as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file holds {in_file} of {committed} committed pages 10 s after the commits"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
