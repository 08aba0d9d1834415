//! On SQLite the jobs a commit causes go into apalis's job table many to a statement
//! (`store::sqlite::push_jobs`) instead of one statement each, as apalis's own
//! `push_tasks` writes them. The rows must be the very rows apalis writes — its workers
//! poll for them, its administration reads them — so they are compared with apalis's
//! own, column by column, on real databases.

use crate::common;

use appealflow::jobs::ApalisJobs;
use appealflow::store::{JobRef, JobWriter};
use sqlx::{Connection, SqliteConnection};

fn jobs() -> Vec<JobRef> {
    vec![
        JobRef::Notification(1),
        JobRef::Action(2),
        JobRef::ActionRetry { id: 2, nonce: "n1".into() },
        JobRef::Notification(3),
    ]
}

/// Every row of the job table, each column quoted as SQL text, in idempotency key order.
async fn rows(conn: &mut SqliteConnection) -> (Vec<String>, Vec<Vec<String>>) {
    let columns: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_info('Jobs') ORDER BY cid")
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let select = columns.iter().map(|c| format!("quote({c})")).collect::<Vec<_>>().join(" || char(31) || ");
    let lines: Vec<String> =
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT {select} FROM Jobs ORDER BY idempotency_key")))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    (columns, lines.iter().map(|l| l.split('\u{1f}').map(str::to_string).collect()).collect())
}

#[tokio::test]
async fn jobs_written_many_to_a_statement_are_the_rows_apalis_writes_one_by_one() {
    let ours = common::sqlite().await;
    let theirs = common::sqlite().await;
    let writer = ApalisJobs::new(7);

    let mut conn = SqliteConnection::connect(&ours.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    writer.write_sqlite(&mut tx, &jobs()).await.unwrap();
    // Written again (a relay finding the same work): skipped on the idempotency key.
    writer.write_sqlite(&mut tx, &jobs()[..2]).await.unwrap();
    tx.commit().await.unwrap();
    let (columns, mine) = rows(&mut conn).await;

    let mut conn = SqliteConnection::connect(&theirs.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    for (queue, tasks) in writer.tasks(&jobs()) {
        apalis_sqlite::queries::push_tasks(&mut *tx, queue, &tasks).await.unwrap();
    }
    tx.commit().await.unwrap();
    let (their_columns, apalis) = rows(&mut conn).await;

    assert_eq!(columns, their_columns);
    assert_eq!(mine.len(), 4, "one row per job, the repeated ones skipped: {mine:?}");
    assert_eq!(mine.len(), apalis.len());
    for (a, b) in mine.iter().zip(&apalis) {
        for ((column, x), y) in columns.iter().zip(a).zip(b) {
            match column.as_str() {
                // A new ULID each; both 26 characters, quoted.
                "id" => assert!(x.len() == 28 && y.len() == 28 && x != y, "ids {x} and {y}"),
                // Now, in Unix seconds: written a moment apart.
                "run_at" => {
                    let (x, y): (i64, i64) = (x.parse().unwrap(), y.parse().unwrap());
                    assert!((x - y).abs() <= 2, "run_at {x} and {y}");
                }
                _ => assert_eq!(x, y, "column {column} of {a:?} and {b:?}"),
            }
        }
    }
    // And the rows are what the job queue's administration reads as its own.
    let listed = common::jobs(ours.store.as_ref(), appealflow::jobs::NOTIFICATIONS_QUEUE).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
}
