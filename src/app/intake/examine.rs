//! A document's content examined: its type from its bytes, then inside it: a PDF in the
//! sandboxed child process when one is set, anything else on the blocking pool, at most
//! as many parses at once as there are cores.

use super::*;

impl Intake {
    /// Checks one document's content: its type from its bytes, then inside it (images
    /// decode completely under the pixel limit, PDFs carry nothing active). The parsers
    /// run on the blocking pool, at most as many at once as there are cores, so a burst
    /// of uploads cannot hold more decoded images in memory than that.
    pub async fn examine(
        &self,
        kind: DocumentKind,
        file_name: Option<&str>,
        bytes: Bytes,
    ) -> Result<ContentType, DocumentError> {
        let permit = self.inspecting.clone().acquire_owned().await.expect("the inspection semaphore is never closed");
        self.examine_now(kind, file_name, bytes, permit).await
    }

    /// [`Intake::examine`] for a staged upload, read only once it is its turn.
    pub async fn examine_file(
        &self,
        kind: DocumentKind,
        file_name: Option<&str>,
        path: &std::path::Path,
    ) -> Result<Result<ContentType, DocumentError>, IntakeError> {
        let permit = self.inspecting.clone().acquire_owned().await.expect("the inspection semaphore is never closed");
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| BlobError::Io(format!("reading the staged upload {}: {e}", path.display())))?;
        Ok(self.examine_now(kind, file_name, Bytes::from(bytes), permit).await)
    }

    /// The permit travels with the work: an inspection whose request went away still
    /// counts until it ends (the sandbox's child is killed with the request).
    async fn examine_now(
        &self,
        kind: DocumentKind,
        file_name: Option<&str>,
        bytes: Bytes,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) -> Result<ContentType, DocumentError> {
        let content = check_content(kind, file_name, &bytes, &self.limits)?;
        if let (ContentType::Pdf, Some(sandbox)) = (content, &self.pdf_sandbox) {
            let verdict = sandbox.inspect(&bytes).await;
            drop(permit);
            verdict.map_err(|problem| DocumentError { kind, problem })?;
            return Ok(content);
        }
        let limits = self.limits;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            inspect(kind, content, &bytes, &limits)
        })
        .await
        .unwrap_or(Err(DocumentError { kind, problem: DocumentProblem::Undecodable }))?;
        Ok(content)
    }

    /// Parses PDFs in a sandboxed child process (the server always does; without it,
    /// in this process).
    pub fn with_pdf_sandbox(mut self, sandbox: crate::adapters::pdf_sandbox::PdfSandbox) -> Self {
        self.pdf_sandbox = Some(sandbox);
        self
    }
}
