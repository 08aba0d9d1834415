//! Tokens, staff sessions, drafts, rate-limit counters, the janitor's sweeps, row counts.

use super::*;

#[async_trait]
impl AccessStore for Backend {
    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, email, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(&t.email)
        .bind(Stamp(t.created_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.reads)
            .await?)
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM api_tokens ORDER BY created_at, id").fetch_all(&self.reads).await?)
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        // One transaction: a revoked token never leaves a session behind, even for a moment.
        let mut tx = self.pool.begin_with(Self::BEGIN).await?;
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(Stamp(at))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM staff_sessions WHERE token_id = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn insert_session(&self, s: &SessionRecord) -> Result<bool, StoreError> {
        // Conditional on the token, so a sign-in racing a revocation stores nothing for it.
        let done = sqlx::query(
            "INSERT INTO staff_sessions (id, token_id, csrf, created_at, last_seen_at, expires_at)
             SELECT $1, id, $2, $3, $4, $5 FROM api_tokens WHERE id = $6 AND revoked_at IS NULL",
        )
        .bind(&s.id)
        .bind(&s.csrf)
        .bind(Stamp(s.created_at))
        .bind(Stamp(s.last_seen_at))
        .bind(Stamp(s.expires_at))
        .bind(&s.token_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn session_by_hash(&self, hash: &str, now: DateTime<Utc>) -> Result<Option<StaffSessionRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT s.id, s.token_id, s.csrf, s.created_at, s.last_seen_at, s.expires_at, t.name, t.role
             FROM staff_sessions s JOIN api_tokens t ON t.id = s.token_id
             WHERE s.id = $1 AND t.revoked_at IS NULL AND s.expires_at > $2",
        )
        .bind(hash)
        .bind(Stamp(now))
        .fetch_optional(&self.reads)
        .await?)
    }

    async fn touch_session(&self, hash: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE staff_sessions SET last_seen_at = $1 WHERE id = $2 AND last_seen_at < $1")
            .bind(Stamp(at))
            .bind(hash)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_session(&self, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM staff_sessions WHERE id = $1").bind(hash).execute(&self.pool).await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_token_sessions(&self, token_id: &str) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM staff_sessions WHERE token_id = $1").bind(token_id).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn prune_sessions(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM staff_sessions WHERE expires_at <= $1")
            .bind(Stamp(now))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn insert_draft(&self, d: &DraftRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO drafts (id, secret_hash, data, ticket, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.id)
        .bind(&d.secret_hash)
        .bind(Json(&d.data))
        .bind(&d.ticket)
        .bind(Stamp(d.created_at))
        .bind(Stamp(d.updated_at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn draft(&self, id: &str) -> Result<Option<DraftRecord>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM drafts WHERE id = $1").bind(id).fetch_optional(&self.reads).await?)
    }

    async fn update_draft(
        &self,
        id: &str,
        data: &serde_json::Value,
        ticket: Option<&str>,
        expected: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        // The new time is kept strictly after the old, so the next compare-and-set sees a change.
        let at = at.max(expected + chrono::Duration::microseconds(1));
        let done = sqlx::query(
            "UPDATE drafts SET data = $1, ticket = COALESCE($2, ticket), updated_at = $3
             WHERE id = $4 AND updated_at = $5",
        )
        .bind(Json(data))
        .bind(ticket)
        .bind(Stamp(at))
        .bind(id)
        .bind(Stamp(expected))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_hit(&self, key: &str, window: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO rate_limits (key, slot, count, expires_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (key, slot) DO UPDATE SET count = rate_limits.count + 1 RETURNING count",
        )
        .bind(key)
        .bind(window)
        .bind(Stamp(expires_at))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn uncount_hit(&self, key: &str, window: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE rate_limits SET count = count - 1 WHERE key = $1 AND slot = $2 AND count > 0")
            .bind(key)
            .bind(window)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn prune_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM rate_limits WHERE expires_at < $1").bind(Stamp(now)).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_drafts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM drafts WHERE ticket IS NULL AND updated_at < $1")
            .bind(Stamp(before))
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows: Vec<Option<String>> = sqlx::query_scalar(Self::REFERENCED_BLOBS).fetch_all(&self.reads).await?;
        Ok(rows.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Diagnostics for Backend {
    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let sql = format!(
            "SELECT (SELECT COUNT(*) FROM appeals) AS appeals, (SELECT COUNT(*) FROM appeal_events) AS events,
                    (SELECT COUNT(*) FROM timers) AS timers, (SELECT COUNT(*) FROM notifications) AS notifications,
                    (SELECT COUNT(*) FROM appeal_actions) AS actions, (SELECT COUNT(*) FROM {}) AS jobs,
                    (SELECT COUNT(*) FROM idempotency_keys) AS idempotency",
            Self::JOBS
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_one(&self.reads).await?)
    }
}
