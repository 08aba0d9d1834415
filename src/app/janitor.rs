//! Housekeeping the worker does on a schedule: unsubmitted drafts expire, rate-limit
//! counters whose windows have passed and staff sessions past their absolute expiry are
//! forgotten, and document files nothing refers to any more (a refused or abandoned
//! upload, an expired draft's documents) are removed once older than a grace period — so
//! an upload whose draft write is still in flight, or was just made, is never taken.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::adapters::blobs::{BlobError, BlobStore, Swept};
use crate::engine::Engine;
use crate::store::StoreError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JanitorConfig {
    /// An unsubmitted draft not written for this long is deleted.
    pub draft_ttl: Duration,
    /// A document file is removed only once unreferenced and older than this.
    pub blob_grace: Duration,
    /// How often the worker runs a pass.
    pub every: Duration,
}

impl Default for JanitorConfig {
    fn default() -> Self {
        JanitorConfig {
            draft_ttl: Duration::from_secs(7 * 24 * 3600),
            blob_grace: Duration::from_secs(3600),
            every: Duration::from_secs(600),
        }
    }
}

/// What one pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Cleaned {
    pub drafts_expired: u64,
    pub counters_pruned: u64,
    pub sessions_expired: u64,
    pub blobs_removed: u64,
    pub bytes_removed: u64,
    pub staged_removed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum JanitorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] BlobError),
}

pub struct Janitor {
    engine: Arc<Engine>,
    blobs: Arc<dyn BlobStore>,
    config: JanitorConfig,
}

impl Janitor {
    pub fn new(engine: Arc<Engine>, blobs: Arc<dyn BlobStore>, config: JanitorConfig) -> Self {
        Janitor { engine, blobs, config }
    }

    pub fn config(&self) -> JanitorConfig {
        self.config
    }

    /// One pass: the references, then expired drafts, counters, sessions and unreferenced
    /// files. Draft and session age is on the engine's clock; file age on the file system's.
    pub async fn run_once(&self) -> Result<Cleaned, JanitorError> {
        let store = self.engine.store();
        let now = self.engine.now();
        let ttl = chrono::Duration::from_std(self.config.draft_ttl).unwrap_or(chrono::Duration::MAX);
        // The references are read first: a file adopted after this read is younger than
        // the grace period, so it is kept; and a draft submitted while this pass deletes
        // expired drafts keeps its files (an expired draft's files go at the next pass).
        let keep = store.referenced_blobs().await?;
        let drafts_expired = store.delete_stale_drafts(now - ttl).await?;
        let counters_pruned = store.prune_rate_limits(now).await?;
        let sessions_expired = store.prune_sessions(now).await?;
        let before = std::time::SystemTime::now() - self.config.blob_grace;
        let Swept { blobs, bytes, staged } = self.blobs.sweep(&keep, before).await?;
        let cleaned = Cleaned {
            drafts_expired,
            counters_pruned,
            sessions_expired,
            blobs_removed: blobs,
            bytes_removed: bytes,
            staged_removed: staged,
        };
        if cleaned != Cleaned::default() {
            tracing::info!(?cleaned, "janitor pass");
        }
        Ok(cleaned)
    }
}
