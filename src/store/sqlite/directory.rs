//! sqlite: the embedded account directory and its ledger.

use super::*;

#[async_trait]
impl DirectoryStore for SqliteStore {
    async fn put_accounts(&self, accounts: &[Account], at: DateTime<Utc>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        for a in accounts {
            sqlx::query("INSERT INTO accounts (name, record, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET record = excluded.record, updated_at = excluded.updated_at")
                .bind(&a.name)
                .bind(serde_json::to_string(a).expect("accounts serialise"))
                .bind(ts(at))
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM account_keys WHERE account = ?").bind(&a.name).execute(&mut *tx).await?;
            for (kind, value) in a.lookup_keys() {
                let inserted = sqlx::query("INSERT INTO account_keys (kind, value, account) VALUES (?, ?, ?) ON CONFLICT (kind, value) DO NOTHING")
                    .bind(kind.as_str())
                    .bind(&value)
                    .bind(&a.name)
                    .execute(&mut *tx)
                    .await?;
                if inserted.rows_affected() == 0 {
                    let owner: String =
                        sqlx::query_scalar("SELECT account FROM account_keys WHERE kind = ? AND value = ?")
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
        let row =
            sqlx::query("SELECT record FROM accounts WHERE name = ?").bind(name).fetch_optional(&self.pool).await?;
        row.map(|row| {
            let record: String = row.try_get("record")?;
            serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))
        })
        .transpose()
    }

    async fn account_record(&self, name: &str) -> Result<Option<(Account, String)>, StoreError> {
        let text: Option<String> = sqlx::query_scalar("SELECT record FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        text.map(|text| {
            let account =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))?;
            Ok((account, text))
        })
        .transpose()
    }

    async fn account_by_key(&self, kind: LookupKind, value: &str) -> Result<Option<Account>, StoreError> {
        let row = sqlx::query("SELECT a.record FROM accounts a JOIN account_keys k ON k.account = a.name WHERE k.kind = ? AND k.value = ?")
            .bind(kind.as_str())
            .bind(crate::domain::account::normalize_domain(value))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            let record: String = row.try_get("record")?;
            serde_json::from_str(&record).map_err(|e| StoreError::Corrupt(format!("account record: {e}")))
        })
        .transpose()
    }

    async fn applied_change(&self, key: &str) -> Result<Option<AppliedChange>, StoreError> {
        let row = sqlx::query("SELECT * FROM applied_account_changes WHERE idempotency_key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(Self::applied_row).transpose()
    }

    async fn ledger(&self) -> Result<Vec<(String, AppliedChange)>, StoreError> {
        let rows = sqlx::query("SELECT * FROM applied_account_changes ORDER BY applied_at, idempotency_key")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok((row.try_get("idempotency_key")?, Self::applied_row(row)?))).collect()
    }
}
