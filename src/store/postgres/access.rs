//! postgres: tokens, drafts, rate-limit counters, the janitor's sweeps, row counts.

use super::*;

#[async_trait]
impl AccessStore for PgStore {
    async fn insert_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_tokens (id, name, role, token_hash, email, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.role.as_str())
        .bind(&t.token_hash)
        .bind(&t.email)
        .bind(t.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::token_row).transpose()
    }

    async fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY created_at, id").fetch_all(&self.pool).await?;
        rows.iter().map(Self::token_row).collect()
    }

    async fn revoke_token(&self, id: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(at)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_draft(&self, d: &DraftRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO drafts (id, secret_hash, data, ticket, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&d.id)
        .bind(&d.secret_hash)
        .bind(Json(&d.data))
        .bind(&d.ticket)
        .bind(d.created_at)
        .bind(d.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn draft(&self, id: &str) -> Result<Option<DraftRecord>, StoreError> {
        let row = sqlx::query("SELECT * FROM drafts WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let data: Json<serde_json::Value> = row.try_get("data")?;
            Ok(DraftRecord {
                id: row.try_get("id")?,
                secret_hash: row.try_get("secret_hash")?,
                data: data.0,
                ticket: row.try_get("ticket")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        })
        .transpose()
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
            "UPDATE drafts SET data = $1, ticket = COALESCE($2, ticket), updated_at = $3 WHERE id = $4 AND updated_at = $5",
        )
        .bind(Json(data))
        .bind(ticket)
        .bind(at)
        .bind(id)
        .bind(expected)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn count_hit(&self, key: &str, window: i64, expires_at: DateTime<Utc>) -> Result<i64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "INSERT INTO rate_limits (key, slot, count, expires_at) VALUES ($1, $2, 1, $3)
             ON CONFLICT (key, slot) DO UPDATE SET count = rate_limits.count + 1 RETURNING count",
        )
        .bind(key)
        .bind(window)
        .bind(expires_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(n)
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
        let done = sqlx::query("DELETE FROM rate_limits WHERE expires_at < $1").bind(now).execute(&self.pool).await?;
        Ok(done.rows_affected())
    }

    async fn delete_stale_drafts(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM drafts WHERE ticket IS NULL AND updated_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    async fn referenced_blobs(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let rows: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT d ->> 'sha256' FROM drafts, jsonb_array_elements(COALESCE(data -> 'documents', '[]')) d
             UNION SELECT d ->> 'sha256'
                   FROM appeals, jsonb_array_elements(COALESCE(data -> 'draft' -> 'documents', '[]')) d
             UNION SELECT d -> 'document' ->> 'sha256'
                   FROM appeals, jsonb_array_elements(COALESCE(data -> 'previous_documents', '[]')) d",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().flatten().collect())
    }
}

#[async_trait]
impl Diagnostics for PgStore {
    async fn row_counts(&self) -> Result<RowCounts, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM appeals) AS appeals, (SELECT COUNT(*) FROM appeal_events) AS events,
                    (SELECT COUNT(*) FROM timers) AS timers, (SELECT COUNT(*) FROM notifications) AS notifications,
                    (SELECT COUNT(*) FROM appeal_actions) AS actions, (SELECT COUNT(*) FROM apalis.jobs) AS jobs,
                    (SELECT COUNT(*) FROM idempotency_keys) AS idempotency",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RowCounts {
            appeals: row.try_get("appeals")?,
            events: row.try_get("events")?,
            timers: row.try_get("timers")?,
            notifications: row.try_get("notifications")?,
            actions: row.try_get("actions")?,
            jobs: row.try_get("jobs")?,
            idempotency: row.try_get("idempotency")?,
        })
    }
}
