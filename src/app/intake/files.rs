//! Where the content of a draft's `file` documents comes from.

use super::*;

/// Where the content of a draft's `file` documents comes from.
pub trait DocumentSource: Send + Sync {
    fn read(&self, file: &str) -> Result<Vec<u8>, String>;
}

/// Files on the local disk, relative to a base directory (the draft file's).
pub struct LocalFiles {
    pub base: PathBuf,
}

impl DocumentSource for LocalFiles {
    fn read(&self, file: &str) -> Result<Vec<u8>, String> {
        std::fs::read(self.base.join(file)).map_err(|e| format!("cannot read {file:?}: {e}"))
    }
}

/// A source that has no files: every document must already be uploaded.
pub struct NoFiles;

impl DocumentSource for NoFiles {
    fn read(&self, file: &str) -> Result<Vec<u8>, String> {
        Err(format!("{file:?}: upload the document first and give its sha256"))
    }
}
