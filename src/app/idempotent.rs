//! `Idempotency-Key` for the commands outside the engine's own (which records its keys
//! in the command's commit): the first answer is kept under `namespace/key` with a hash
//! of what was asked, a repeat gets that answer, and the key reused for something else
//! is refused (`EngineError::IdempotencyMismatch`).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::access::hash_secret;
use crate::engine::{Engine, EngineError};
use crate::store::IdempotencyRecord;

/// One keyed request: its key in its namespace and the fingerprint of what it asks.
pub struct Idempotent<'a> {
    engine: &'a Engine,
    key: String,
    fingerprint: String,
}

impl<'a> Idempotent<'a> {
    /// `subject` is what the request is about (a job's id, say): the same key for another
    /// subject is a mismatch.
    pub fn new(engine: &'a Engine, namespace: &str, key: &str, subject: &str) -> Self {
        Idempotent { engine, key: format!("{namespace}/{key}"), fingerprint: hash_secret(subject) }
    }

    /// The first answer to this key, if there was one; a mismatch if the key was used
    /// for another subject.
    pub async fn replay<T: DeserializeOwned>(&self) -> Result<Option<T>, EngineError> {
        match self.engine.store().idempotency(&self.key).await? {
            Some(r) if r.fingerprint == self.fingerprint => serde_json::from_value(r.response)
                .map(Some)
                .map_err(|e| EngineError::Effects(format!("stored answer to {:?} does not parse: {e}", self.key))),
            Some(_) => Err(EngineError::IdempotencyMismatch { key: self.key.clone() }),
            None => Ok(None),
        }
    }

    /// Keeps `answer` as the answer to this key (the first one kept wins).
    pub async fn remember(&self, answer: &impl Serialize) -> Result<(), EngineError> {
        let record = IdempotencyRecord {
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            response: serde_json::to_value(answer).expect("answers serialise"),
            created_at: self.engine.now(),
        };
        self.engine.store().remember_idempotency(&record).await?;
        Ok(())
    }
}
