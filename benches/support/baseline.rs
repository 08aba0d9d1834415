//! The baseline both benchmarks measure against in the same run: the cheapest durable
//! write the database does — one single-row UPDATE per transaction, committed.

use std::time::Instant;

pub async fn commits_per_second(url: &str, n: usize) -> f64 {
    if url.starts_with("sqlite") {
        let pool = sqlx::SqlitePool::connect(url).await.unwrap();
        sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_baseline (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT OR REPLACE INTO bench_baseline VALUES (1, 0)").execute(&pool).await.unwrap();
        let start = Instant::now();
        for _ in 0..n {
            let mut conn = pool.acquire().await.unwrap();
            sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await.unwrap();
            let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
            sqlx::query("UPDATE bench_baseline SET v = v + 1 WHERE id = 1").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
        n as f64 / start.elapsed().as_secs_f64()
    } else {
        let pool = sqlx::PgPool::connect(url).await.unwrap();
        sqlx::query("CREATE TABLE IF NOT EXISTS bench_baseline (id INT PRIMARY KEY, v BIGINT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO bench_baseline VALUES (1, 0) ON CONFLICT (id) DO NOTHING")
            .execute(&pool)
            .await
            .unwrap();
        let start = Instant::now();
        for _ in 0..n {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("UPDATE bench_baseline SET v = v + 1 WHERE id = 1").execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        }
        n as f64 / start.elapsed().as_secs_f64()
    }
}
