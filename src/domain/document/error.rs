//! Why a document is refused (`DocumentProblem`, `DocumentError`), in a message that names
//! the kind and the fix and never quotes the file's contents.

use super::*;

/// What is wrong with an uploaded document's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentProblem {
    Empty,
    TooLarge {
        size: u64,
        max: u64,
    },
    UnknownContent,
    /// The file name's extension claims one accepted type, the content is another.
    Mislabelled {
        named: ContentType,
        actual: ContentType,
    },
    /// An image that does not decode completely (damaged, truncated, or only dressed as one).
    Undecodable,
    /// An image with bytes after its end marker (a polyglot: an archive or a page behind it).
    TrailingData,
    /// An image larger than the pixel limit (a decompression bomb, or an absurd scan).
    TooManyPixels {
        width: u32,
        height: u32,
        max: u64,
    },
    /// A PDF that cannot be read (damaged, truncated, or encrypted).
    UnreadablePdf,
    /// A PDF with active content: what it carries.
    ActivePdf(&'static str),
}

/// A refused document: which kind it was meant to be and what is wrong. Its message never
/// quotes the file's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub struct DocumentError {
    pub kind: DocumentKind,
    pub problem: DocumentProblem,
}

impl fmt::Display for DocumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind;
        match self.problem {
            DocumentProblem::Empty => {
                write!(f, "{kind}: the file is empty — upload the scan or photo again")
            }
            DocumentProblem::TooLarge { size, max } => {
                let (size, max) = describe_sizes(size, max);
                write!(f, "{kind}: the file is {size}; the limit is {max} — upload a smaller scan")
            }
            DocumentProblem::UnknownContent => {
                write!(f, "{kind}: the file is not a JPEG, PNG or PDF — upload a photo (JPEG or PNG) or a PDF scan")
            }
            DocumentProblem::Mislabelled { named, actual } => write!(
                f,
                "{kind}: the file is named as a {named} but its content is a {actual} — \
                 rename it with a .{ext} extension or upload the intended file",
                ext = actual.extensions()[0],
            ),
            DocumentProblem::Undecodable => {
                write!(
                    f,
                    "{kind}: the image does not decode completely (damaged or not a real image) — upload it again"
                )
            }
            DocumentProblem::TrailingData => {
                write!(f, "{kind}: the image carries other data after its end — upload the photo or scan on its own")
            }
            DocumentProblem::TooManyPixels { width, height, max } => write!(
                f,
                "{kind}: the image is {width}×{height} pixels; the limit is {max} pixels — upload a smaller photo"
            ),
            DocumentProblem::UnreadablePdf => write!(
                f,
                "{kind}: the PDF cannot be read (damaged, truncated, password-protected or absurdly nested) — \
                 upload an unprotected copy"
            ),
            DocumentProblem::ActivePdf(what) => write!(
                f,
                "{kind}: the PDF carries {what}; documents with active content are refused — print it to a plain PDF and upload that"
            ),
        }
    }
}

/// Human sizes for the too-large message; falls back to exact bytes when rounding would
/// make the size read as if it were within the limit.
pub(super) fn describe_sizes(size: u64, max: u64) -> (String, String) {
    let (s, m) = (human_size(size), human_size(max));
    if s == m { (format!("{size} bytes"), format!("{max} bytes")) } else { (s, m) }
}

fn human_size(n: u64) -> String {
    const KIB: u64 = 1024;
    let (value, unit) = if n >= MIB {
        (n as f64 / MIB as f64, "MiB")
    } else if n >= KIB {
        (n as f64 / KIB as f64, "KiB")
    } else {
        return format!("{n} bytes");
    };
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text} {unit}")
}
