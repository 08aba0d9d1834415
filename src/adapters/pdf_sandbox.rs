//! Uploaded PDFs are parsed in a child process (`appealflow __inspect-pdf`), limited in
//! address space, CPU time and wall-clock time: a parser bug, an absurdly nested object
//! that exhausts the stack or a decompression bomb then ends that child — the upload is
//! refused as unreadable — never the server.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::domain::document::DocumentProblem;

/// The hidden command the child runs.
pub const COMMAND: &str = "__inspect-pdf";

#[derive(Debug, Clone)]
pub struct PdfSandbox {
    /// The appealflow binary to run.
    pub exe: PathBuf,
    /// The child's address-space limit, in bytes.
    pub memory: u64,
    /// The child's CPU-time limit, in seconds.
    pub cpu_secs: u64,
    /// The child is killed after this long, whatever it is doing.
    pub wall: Duration,
}

impl PdfSandbox {
    pub fn new(exe: PathBuf) -> Self {
        PdfSandbox { exe, memory: 1 << 30, cpu_secs: 10, wall: Duration::from_secs(20) }
    }

    /// The verdict on `bytes`: `Ok` when the PDF parses and carries nothing active.
    pub async fn inspect(&self, bytes: &[u8]) -> Result<(), DocumentProblem> {
        match self.run(bytes).await {
            Ok(verdict) => verdict,
            Err(e) => {
                tracing::warn!(error = %e, "the PDF inspection child failed; the document is refused as unreadable");
                Err(DocumentProblem::UnreadablePdf)
            }
        }
    }

    async fn run(&self, bytes: &[u8]) -> std::io::Result<Result<(), DocumentProblem>> {
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .arg(COMMAND)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let (memory, cpu) = (self.memory, self.cpu_secs);
        // SAFETY: between fork and exec only async-signal-safe calls are made: setrlimit.
        unsafe {
            command.pre_exec(move || {
                limit(libc::RLIMIT_AS, memory)?;
                limit(libc::RLIMIT_CPU, cpu)?;
                limit(libc::RLIMIT_CORE, 0)?;
                limit(libc::RLIMIT_NOFILE, 16)?;
                Ok(())
            });
        }
        let mut child = command.spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        let mut stdout = child.stdout.take().expect("piped");
        let work = async {
            // The child may die before reading everything (that is its verdict).
            let _ = stdin.write_all(bytes).await;
            drop(stdin);
            let mut out = String::new();
            stdout.read_to_string(&mut out).await?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out))
        };
        let (status, out) = match tokio::time::timeout(self.wall, work).await {
            Ok(done) => done?,
            Err(_) => {
                tracing::warn!("the PDF inspection child ran out of time");
                return Ok(Err(DocumentProblem::UnreadablePdf));
            }
        };
        if !status.success() {
            return Ok(Err(DocumentProblem::UnreadablePdf));
        }
        Ok(decode(out.trim()))
    }
}

fn limit(resource: libc::__rlimit_resource_t, value: u64) -> std::io::Result<()> {
    let l = libc::rlimit { rlim_cur: value, rlim_max: value };
    // SAFETY: a plain system call with a valid pointer to a local.
    if unsafe { libc::setrlimit(resource, &l) } == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

/// The child's one-line verdict, written by [`child_main`].
fn encode(verdict: Result<(), DocumentProblem>) -> &'static str {
    match verdict {
        Ok(()) => "clean",
        Err(DocumentProblem::ActivePdf(what)) => what,
        Err(_) => "unreadable",
    }
}

fn decode(line: &str) -> Result<(), DocumentProblem> {
    const ACTIVE: [&str; 5] = ["JavaScript", "a launch action", "an embedded file", "rich media", "an XFA form"];
    match line {
        "clean" => Ok(()),
        other => match ACTIVE.iter().find(|a| **a == other) {
            Some(what) => Err(DocumentProblem::ActivePdf(what)),
            None => Err(DocumentProblem::UnreadablePdf),
        },
    }
}

/// The child: reads a PDF from stdin, prints its verdict. Run by the binary's `main`
/// before anything else when its first argument is [`COMMAND`].
pub fn child_main() -> std::process::ExitCode {
    use std::io::{Read, Write};
    let mut bytes = Vec::new();
    if std::io::stdin().read_to_end(&mut bytes).is_err() {
        return std::process::ExitCode::FAILURE;
    }
    let verdict = crate::domain::document::inspect_pdf(&bytes);
    let _ = writeln!(std::io::stdout(), "{}", encode(verdict));
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_verdict_survives_the_trip() {
        for what in ["JavaScript", "a launch action", "an embedded file", "rich media", "an XFA form"] {
            assert_eq!(decode(encode(Err(DocumentProblem::ActivePdf(what)))), Err(DocumentProblem::ActivePdf(what)));
        }
        assert_eq!(decode(encode(Ok(()))), Ok(()));
        assert_eq!(decode(encode(Err(DocumentProblem::UnreadablePdf))), Err(DocumentProblem::UnreadablePdf));
        assert_eq!(decode("anything else"), Err(DocumentProblem::UnreadablePdf));
    }
}
