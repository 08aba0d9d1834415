//! The embedded account directory and its ledger.

use super::*;

#[async_trait]
impl DirectoryStore for Backend {
    async fn put_accounts(&self, accounts: &[Account], at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with(Self::BEGIN).await?;
        for a in accounts {
            sqlx::query(
                "INSERT INTO accounts (name, record, updated_at) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET record = EXCLUDED.record, updated_at = EXCLUDED.updated_at",
            )
            .bind(&a.name)
            .bind(Json(a))
            .bind(Stamp(at))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM account_keys WHERE account = $1").bind(&a.name).execute(&mut *tx).await?;
            for (kind, value) in a.lookup_keys() {
                let inserted = sqlx::query(
                    "INSERT INTO account_keys (kind, value, account) VALUES ($1, $2, $3)
                     ON CONFLICT (kind, value) DO NOTHING",
                )
                .bind(kind.as_str())
                .bind(&value)
                .bind(&a.name)
                .execute(&mut *tx)
                .await?;
                if inserted.rows_affected() == 0 {
                    let owner: String =
                        sqlx::query_scalar("SELECT account FROM account_keys WHERE kind = $1 AND value = $2")
                            .bind(kind.as_str())
                            .bind(&value)
                            .fetch_one(&mut *tx)
                            .await?;
                    if owner != a.name {
                        return Err(StoreError::DuplicateAccountKey {
                            kind: kind.as_str(),
                            value,
                            first: owner,
                            second: a.name.clone(),
                        });
                    }
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn account(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let record: Option<Json<Account>> = sqlx::query_scalar("SELECT record FROM accounts WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.reads)
            .await?;
        Ok(record.map(|r| r.0))
    }

    async fn account_record(&self, name: &str) -> Result<Option<(Account, String)>, StoreError> {
        // The text is what a ledger entry's compare-and-set compares (`CAST(record AS TEXT)`).
        let row: Option<(Json<Account>, String)> =
            sqlx::query_as("SELECT record, CAST(record AS TEXT) FROM accounts WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.reads)
                .await?;
        Ok(row.map(|(record, text)| (record.0, text)))
    }

    async fn account_by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError> {
        let record: Option<Json<Account>> = sqlx::query_scalar(
            "SELECT a.record FROM accounts a JOIN account_keys k ON k.account = a.name
             WHERE k.kind = $1 AND k.value = $2",
        )
        .bind(kind.as_str())
        .bind(crate::domain::account::normalize_domain(value))
        .fetch_optional(&self.reads)
        .await?;
        Ok(record.map(|r| r.0))
    }

    async fn applied_change(&self, key: &str) -> Result<Option<AppliedChange>, StoreError> {
        Ok(sqlx::query_as("SELECT * FROM applied_account_changes WHERE idempotency_key = $1")
            .bind(key)
            .fetch_optional(&self.reads)
            .await?)
    }

    async fn ledger(&self) -> Result<Vec<(String, AppliedChange)>, StoreError> {
        let rows: Vec<Keyed<AppliedChange>> =
            sqlx::query_as("SELECT * FROM applied_account_changes ORDER BY applied_at, idempotency_key")
                .fetch_all(&self.reads)
                .await?;
        Ok(rows.into_iter().map(|k| (k.idempotency_key, k.record)).collect())
    }
}

/// A ledger row with its key.
#[derive(sqlx::FromRow)]
struct Keyed<T> {
    idempotency_key: String,
    #[sqlx(flatten)]
    record: T,
}
