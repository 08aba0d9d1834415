//! The blob store for appeal documents: content-addressed by SHA-256, so a document is
//! stored once however often it is uploaded, and a blob is only ever served if its bytes
//! still hash to the digest it was asked for. `LocalBlobStore` keeps blobs on the local
//! file system through `object_store`; other backends implement `BlobStore`.

use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a stored document's bytes live: their SHA-256 (lowercase hex) and size.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {sha256} not found in the blob store")]
    NotFound { sha256: String },
    #[error(
        "invalid blob digest {given:?}: a blob is addressed by its SHA-256 as exactly 64 \
         lowercase hex characters (0-9, a-f)"
    )]
    InvalidDigest { given: String },
    #[error(
        "blob {sha256} is corrupt: its stored bytes hash to {actual}; it will not be served — \
         restore it from a backup or ask the applicant to upload the document again"
    )]
    Corrupt { sha256: String, actual: String },
    #[error("blob store I/O failed: {0}")]
    Io(String),
}

impl From<object_store::Error> for BlobError {
    fn from(err: object_store::Error) -> Self {
        BlobError::Io(err.to_string())
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Stores `bytes` (once: storing the same bytes again changes nothing) and says where.
    async fn put(&self, bytes: Bytes) -> Result<BlobRef, BlobError>;
    /// The bytes whose SHA-256 is `sha256`, verified against it before they are returned.
    async fn get(&self, sha256: &str) -> Result<Bytes, BlobError>;
    async fn exists(&self, sha256: &str) -> Result<bool, BlobError>;
    /// Starts a staged upload: a file the caller writes as the bytes arrive (never
    /// holding them all), hashing as it goes, then adopts or drops.
    async fn stage(&self) -> Result<Staged, BlobError>;
    /// Makes a staged file the blob `blob` names (moving it into place, or dropping it
    /// when the blob is already stored); the blob counts as fresh for the sweep's grace.
    async fn adopt(&self, staged: Staged, blob: &BlobRef) -> Result<(), BlobError>;
    /// Removes stored blobs not in `keep` and staged files, both last written before
    /// `before`; answers what it removed.
    async fn sweep(
        &self,
        keep: &std::collections::HashSet<String>,
        before: std::time::SystemTime,
    ) -> Result<Swept, BlobError>;
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    pub blobs: u64,
    pub bytes: u64,
    pub staged: u64,
}

/// An upload being written to a staging file: its digest and size are computed from
/// what was written, so the blob is addressed by what arrived, not by what was claimed.
pub struct Staged {
    path: std::path::PathBuf,
    file: tokio::fs::File,
    hasher: Sha256,
    size: u64,
    /// Moved into the store: nothing to remove when dropped.
    adopted: bool,
}

/// A staged upload not adopted (refused, interrupted, its request gone) is removed.
impl Drop for Staged {
    fn drop(&mut self) {
        if !self.adopted {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Staged {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<(), BlobError> {
        use tokio::io::AsyncWriteExt;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        self.file.write_all(chunk).await.map_err(|e| BlobError::Io(format!("staging an upload: {e}")))
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Flushes the file and answers what it holds.
    pub async fn finish(&mut self) -> Result<BlobRef, BlobError> {
        use tokio::io::AsyncWriteExt;
        self.file.flush().await.map_err(|e| BlobError::Io(format!("staging an upload: {e}")))?;
        Ok(BlobRef { sha256: hex::encode(self.hasher.clone().finalize()), size: self.size })
    }

    /// The staged file, to read back for inspection.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Drops the staged file (a refused or interrupted upload); dropping does the same.
    pub async fn discard(self) {
        drop(self);
    }
}

/// A digest checked to be 64 lowercase hex characters, so it is safe to build a path from.
struct Digest256<'a>(&'a str);

/// How much of a rejected digest an error quotes: enough to recognise, not a whole payload.
const QUOTED_DIGEST_CHARS: usize = 80;

impl<'a> Digest256<'a> {
    fn parse(given: &'a str) -> Result<Self, BlobError> {
        let ok = given.len() == 64 && given.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Digest256(given))
        } else {
            Err(BlobError::InvalidDigest { given: given.chars().take(QUOTED_DIGEST_CHARS).collect() })
        }
    }

    /// `sha256/<first 2 hex>/<full hex>`: the fan-out keeps directories small.
    fn location(&self) -> ObjectPath {
        ObjectPath::from_iter(["sha256", &self.0[..2], self.0])
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Where uploads are written while they arrive (on the blob store's file system, so
/// adopting one is a rename).
const STAGING: &str = "staging";

/// Blobs as files under one directory, written atomically by `object_store`.
#[derive(Debug)]
pub struct LocalBlobStore {
    store: LocalFileSystem,
    dir: std::path::PathBuf,
}

impl LocalBlobStore {
    /// Opens (creating it if missing) the blob directory `dir`.
    pub fn open(dir: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::Io(format!("cannot create the blob directory {}: {e}", dir.display())))?;
        // Documents are evidence for account changes: a put that returned must survive a crash.
        let store = LocalFileSystem::new_with_prefix(dir)?.with_fsync(true);
        std::fs::create_dir_all(dir.join(STAGING))
            .map_err(|e| BlobError::Io(format!("cannot create {}: {e}", dir.join(STAGING).display())))?;
        Ok(LocalBlobStore { store, dir: dir.to_path_buf() })
    }

    /// Reads and verifies the blob at `digest`.
    async fn read_verified(&self, digest: &Digest256<'_>) -> Result<Bytes, BlobError> {
        let bytes = match self.store.get(&digest.location()).await {
            Ok(found) => found.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(BlobError::NotFound { sha256: digest.0.to_string() });
            }
            Err(err) => return Err(err.into()),
        };
        let actual = sha256_hex(&bytes);
        if actual != digest.0 {
            return Err(BlobError::Corrupt { sha256: digest.0.to_string(), actual });
        }
        Ok(bytes)
    }
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put(&self, bytes: Bytes) -> Result<BlobRef, BlobError> {
        let sha256 = sha256_hex(&bytes);
        let blob = BlobRef { sha256, size: bytes.len() as u64 };
        let digest = Digest256(&blob.sha256);
        let location = digest.location();
        // A stored copy that fails verification is replaced: the caller holds the true bytes.
        let mode = match self.read_verified(&digest).await {
            Ok(_) => return Ok(blob),
            Err(BlobError::NotFound { .. }) => PutMode::Create,
            Err(BlobError::Corrupt { .. }) => PutMode::Overwrite,
            Err(err) => return Err(err),
        };
        match self.store.put_opts(&location, PutPayload::from(bytes), mode.into()).await {
            Ok(_) => Ok(blob),
            // Another writer stored the same content first; content addressing makes that ours.
            Err(object_store::Error::AlreadyExists { .. }) => Ok(blob),
            Err(err) => Err(err.into()),
        }
    }

    async fn get(&self, sha256: &str) -> Result<Bytes, BlobError> {
        let digest = Digest256::parse(sha256)?;
        self.read_verified(&digest).await
    }

    async fn exists(&self, sha256: &str) -> Result<bool, BlobError> {
        let digest = Digest256::parse(sha256)?;
        match self.store.head(&digest.location()).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(err) => Err(err.into()),
        }
    }

    async fn stage(&self) -> Result<Staged, BlobError> {
        let path = self.dir.join(STAGING).join(format!("{}.part", uuid::Uuid::new_v4()));
        let file = tokio::fs::File::create_new(&path)
            .await
            .map_err(|e| BlobError::Io(format!("cannot stage an upload in {}: {e}", path.display())))?;
        Ok(Staged { path, file, hasher: Sha256::new(), size: 0, adopted: false })
    }

    async fn adopt(&self, mut staged: Staged, blob: &BlobRef) -> Result<(), BlobError> {
        let digest = Digest256::parse(&blob.sha256)?;
        let target = self.dir.join("sha256").join(&digest.0[..2]).join(digest.0);
        let io = |what: &str, e: std::io::Error| BlobError::Io(format!("{what} {}: {e}", target.display()));
        staged.file.sync_all().await.map_err(|e| io("syncing the upload for", e))?;
        let exists = match self.read_verified(&digest).await {
            Ok(_) => true,
            Err(BlobError::NotFound { .. } | BlobError::Corrupt { .. }) => false,
            Err(e) => return Err(e),
        };
        if exists {
            // Fresh again: a sweep that read the references before this upload's draft
            // write must not remove it.
            let now = std::time::SystemTime::now();
            let file = std::fs::File::options().append(true).open(&target).map_err(|e| io("opening", e))?;
            file.set_modified(now).map_err(|e| io("touching", e))?;
            staged.discard().await;
            return Ok(());
        }
        let parent = target.parent().expect("a blob path has a parent");
        tokio::fs::create_dir_all(parent).await.map_err(|e| io("creating the directory of", e))?;
        tokio::fs::rename(&staged.path, &target).await.map_err(|e| io("moving the upload to", e))?;
        staged.adopted = true;
        // The rename is durable once the directory is.
        if let Ok(d) = std::fs::File::open(parent) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    async fn sweep(
        &self,
        keep: &std::collections::HashSet<String>,
        before: std::time::SystemTime,
    ) -> Result<Swept, BlobError> {
        let dir = self.dir.clone();
        let keep = keep.clone();
        tokio::task::spawn_blocking(move || sweep_dir(&dir, &keep, before))
            .await
            .map_err(|e| BlobError::Io(format!("sweep: {e}")))?
    }
}

/// Old enough to remove: last written before `before`.
fn stale(meta: &std::fs::Metadata, before: std::time::SystemTime) -> bool {
    meta.modified().is_ok_and(|m| m < before)
}

fn sweep_dir(
    dir: &Path,
    keep: &std::collections::HashSet<String>,
    before: std::time::SystemTime,
) -> Result<Swept, BlobError> {
    let io = |p: &Path, e: std::io::Error| BlobError::Io(format!("sweeping {}: {e}", p.display()));
    let mut swept = Swept::default();
    let staging = dir.join(STAGING);
    for entry in std::fs::read_dir(&staging).map_err(|e| io(&staging, e))? {
        let entry = entry.map_err(|e| io(&staging, e))?;
        if entry.metadata().is_ok_and(|m| m.is_file() && stale(&m, before))
            && std::fs::remove_file(entry.path()).is_ok()
        {
            swept.staged += 1;
        }
    }
    let root = dir.join("sha256");
    let Ok(fans) = std::fs::read_dir(&root) else { return Ok(swept) };
    for fan in fans {
        let fan = fan.map_err(|e| io(&root, e))?.path();
        if !fan.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&fan).map_err(|e| io(&fan, e))? {
            let entry = entry.map_err(|e| io(&fan, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // object_store's own temporary files (`<digest>#<n>`) are swept by age too.
            let digest = name.split('#').next().unwrap_or(&name);
            if keep.contains(digest) && !name.contains('#') {
                continue;
            }
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && stale(&meta, before) && std::fs::remove_file(entry.path()).is_ok() {
                swept.blobs += 1;
                swept.bytes += meta.len();
            }
        }
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        let mut pending = vec![dir.to_path_buf()];
        while let Some(d) = pending.pop() {
            for entry in std::fs::read_dir(&d).expect("read dir") {
                let path = entry.expect("dir entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else {
                    found.push(path);
                }
            }
        }
        found
    }

    #[tokio::test]
    async fn put_then_get_returns_the_same_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let bytes = Bytes::from_static(b"%PDF-1.7 proof of payment");

        let blob = store.put(bytes.clone()).await.expect("put");

        assert_eq!(blob.size, bytes.len() as u64);
        assert_eq!(blob.sha256, sha256_hex(&bytes));
        assert_eq!(store.get(&blob.sha256).await.expect("get"), bytes);
        assert!(store.exists(&blob.sha256).await.expect("exists"));
    }

    #[tokio::test]
    async fn blobs_live_at_sha256_fan_out_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let blob = store.put(Bytes::from_static(b"abc")).await.expect("put");

        // SHA-256("abc"), a published test vector.
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(blob.sha256, hex);
        let expected = dir.path().join("sha256").join("ba").join(hex);
        assert_eq!(std::fs::read(expected).expect("blob file"), b"abc");
    }

    #[tokio::test]
    async fn storing_the_same_content_twice_gives_one_ref_and_one_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let bytes = Bytes::from_static(b"\x89PNG\r\n\x1a\nid card front");

        let first = store.put(bytes.clone()).await.expect("first put");
        let second = store.put(bytes).await.expect("second put");

        assert_eq!(first, second);
        assert_eq!(files_under(dir.path()).len(), 1);
    }

    #[tokio::test]
    async fn open_creates_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("data").join("blobs");
        let store = LocalBlobStore::open(&nested).expect("open");
        store.put(Bytes::from_static(b"x")).await.expect("put");
        assert!(nested.is_dir());
    }

    #[tokio::test]
    async fn unknown_digest_is_not_found() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let missing = sha256_hex(b"never stored");

        let err = store.get(&missing).await.unwrap_err();
        assert!(matches!(err, BlobError::NotFound { ref sha256 } if *sha256 == missing));
        assert!(!store.exists(&missing).await.expect("exists"));
    }

    #[tokio::test]
    async fn malformed_digests_are_refused_before_any_lookup() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let upper = sha256_hex(b"abc").to_uppercase();
        let malformed = [
            "../../etc/passwd",
            upper.as_str(),
            "",
            "abc",
            &"g".repeat(64),
            &"a".repeat(65),
            "../ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f2001",
        ];
        for bad in malformed {
            let err = store.get(bad).await.unwrap_err();
            assert!(matches!(err, BlobError::InvalidDigest { .. }), "{bad:?}: {err}");
            assert!(err.to_string().contains("64 lowercase hex"), "{err}");
            let err = store.exists(bad).await.unwrap_err();
            assert!(matches!(err, BlobError::InvalidDigest { .. }), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn a_blob_corrupted_on_disk_is_never_served() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let blob = store.put(Bytes::from_static(b"%PDF-1.4 asset disposal certificate")).await.expect("put");
        let file = dir.path().join("sha256").join(&blob.sha256[..2]).join(&blob.sha256);
        std::fs::write(&file, b"%PDF-1.4 tampered").expect("overwrite");

        let err = store.get(&blob.sha256).await.unwrap_err();
        assert!(matches!(err, BlobError::Corrupt { ref sha256, .. } if *sha256 == blob.sha256));
    }

    #[tokio::test]
    async fn storing_the_true_bytes_again_repairs_a_corrupted_blob() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let bytes = Bytes::from_static(b"\xFF\xD8\xFF deregistration certificate");
        let blob = store.put(bytes.clone()).await.expect("put");
        let file = dir.path().join("sha256").join(&blob.sha256[..2]).join(&blob.sha256);
        std::fs::write(&file, b"garbage").expect("overwrite");

        assert_eq!(store.put(bytes.clone()).await.expect("re-put"), blob);
        assert_eq!(store.get(&blob.sha256).await.expect("get"), bytes);
        assert_eq!(files_under(dir.path()).len(), 1);
    }
}

#[cfg(test)]
mod staging_tests {
    use super::*;

    #[tokio::test]
    async fn a_staged_upload_is_adopted_by_its_digest_and_swept_when_unreferenced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let mut staged = store.stage().await.expect("stage");
        staged.write(b"ab").await.expect("write");
        staged.write(b"c").await.expect("write");
        let blob = staged.finish().await.expect("finish");
        assert_eq!(blob.sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        store.adopt(staged, &blob).await.expect("adopt");
        assert_eq!(store.get(&blob.sha256).await.expect("get"), Bytes::from_static(b"abc"));
        assert_eq!(std::fs::read_dir(dir.path().join(STAGING)).expect("staging").count(), 0);

        // Kept while referenced or young; removed once neither.
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
        let keep = std::collections::HashSet::from([blob.sha256.clone()]);
        assert_eq!(store.sweep(&keep, later).await.expect("sweep").blobs, 0);
        let young = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
        assert_eq!(store.sweep(&Default::default(), young).await.expect("sweep").blobs, 0);
        let swept = store.sweep(&Default::default(), later).await.expect("sweep");
        assert_eq!((swept.blobs, swept.bytes), (1, 3));
        assert!(!store.exists(&blob.sha256).await.expect("exists"));
    }

    #[tokio::test]
    async fn adopting_content_already_stored_keeps_one_file_and_drops_the_staged_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let first = store.put(Bytes::from_static(b"same")).await.expect("put");
        let mut staged = store.stage().await.expect("stage");
        staged.write(b"same").await.expect("write");
        let blob = staged.finish().await.expect("finish");
        assert_eq!(blob, first);
        store.adopt(staged, &blob).await.expect("adopt");
        assert_eq!(std::fs::read_dir(dir.path().join(STAGING)).expect("staging").count(), 0);
        assert_eq!(store.get(&blob.sha256).await.expect("get"), Bytes::from_static(b"same"));
    }
}
