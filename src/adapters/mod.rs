//! Adapters to the world outside the engine: the account directory, the blob store for
//! documents, notification channels. The engine sees them only through their traits.

pub mod accounts;
pub mod blobs;
pub mod notify;
pub mod pdf_sandbox;
