//! Appeal documents: the kinds of document the account-appeal checklists ask for, the
//! content types we accept (JPEG, PNG, PDF, decided by magic bytes, never by the name),
//! the size limit, and the applicant's file name kept as display metadata only.
//! Pure: no I/O, no async. Which kinds an appeal requires is decided elsewhere.

use std::fmt;
use std::str::FromStr;

use super::FieldError;
use serde::{Deserialize, Serialize};

/// A document an applicant uploads, as named by the account-appeal help page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// Photo of the front of the verified individual's ID card.
    IdCardFront,
    /// Photo of the back of the verified individual's ID card.
    IdCardBack,
    /// The individual appeal letter template, filled in, stamped and photographed.
    IndividualAppealLetter,
    /// The enterprise appeal letter template, filled in, stamped and photographed.
    EnterpriseAppealLetter,
    /// Photo of the latest business license duplicate; for a deregistered enterprise,
    /// the NEW company's license.
    BusinessLicense,
    /// Invoice, screenshot of a successful payment page, or electronic receipt.
    ProofOfPayment,
    BusinessNameChangeCertificate,
    /// Signed (or stamped) by shareholders holding more than two-thirds of the shares.
    MemberAccountHolderChangeForm,
    /// Issued by the local Administration for Market Regulation.
    DeregistrationCertificate,
    /// National Enterprise Credit Information Publicity System page showing the enterprise
    /// as deregistered; accepted when no deregistration certificate can be provided.
    CreditSystemScreenshot,
    AssetDisposalCertificate,
    /// Stamped copy of the front and back of the new company's legal representative's ID card.
    NewLegalRepresentativeIdCard,
    /// Anything that explains the account's special circumstances.
    Supplementary,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 13] = [
        DocumentKind::IdCardFront,
        DocumentKind::IdCardBack,
        DocumentKind::IndividualAppealLetter,
        DocumentKind::EnterpriseAppealLetter,
        DocumentKind::BusinessLicense,
        DocumentKind::ProofOfPayment,
        DocumentKind::BusinessNameChangeCertificate,
        DocumentKind::MemberAccountHolderChangeForm,
        DocumentKind::DeregistrationCertificate,
        DocumentKind::CreditSystemScreenshot,
        DocumentKind::AssetDisposalCertificate,
        DocumentKind::NewLegalRepresentativeIdCard,
        DocumentKind::Supplementary,
    ];

    /// The stable code used in storage, APIs and workflow definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::IdCardFront => "id_card_front",
            DocumentKind::IdCardBack => "id_card_back",
            DocumentKind::IndividualAppealLetter => "individual_appeal_letter",
            DocumentKind::EnterpriseAppealLetter => "enterprise_appeal_letter",
            DocumentKind::BusinessLicense => "business_license",
            DocumentKind::ProofOfPayment => "proof_of_payment",
            DocumentKind::BusinessNameChangeCertificate => "business_name_change_certificate",
            DocumentKind::MemberAccountHolderChangeForm => "member_account_holder_change_form",
            DocumentKind::DeregistrationCertificate => "deregistration_certificate",
            DocumentKind::CreditSystemScreenshot => "credit_system_screenshot",
            DocumentKind::AssetDisposalCertificate => "asset_disposal_certificate",
            DocumentKind::NewLegalRepresentativeIdCard => "new_legal_representative_id_card",
            DocumentKind::Supplementary => "supplementary",
        }
    }

    /// A short English title shown to applicants.
    pub fn title(self) -> &'static str {
        match self {
            DocumentKind::IdCardFront => "ID card of the verified individual (front)",
            DocumentKind::IdCardBack => "ID card of the verified individual (back)",
            DocumentKind::IndividualAppealLetter => "Account appeal application letter (individual, stamped)",
            DocumentKind::EnterpriseAppealLetter => "Account appeal application letter (enterprise, stamped)",
            DocumentKind::BusinessLicense => "Latest business license duplicate",
            DocumentKind::ProofOfPayment => "Proof of payment",
            DocumentKind::BusinessNameChangeCertificate => "Business name change certificate",
            DocumentKind::MemberAccountHolderChangeForm => "Member account holder change application form",
            DocumentKind::DeregistrationCertificate => "Business deregistration certificate",
            DocumentKind::CreditSystemScreenshot => {
                "Credit information publicity system screenshot showing deregistration"
            }
            DocumentKind::AssetDisposalCertificate => "Enterprise asset disposal certificate",
            DocumentKind::NewLegalRepresentativeIdCard => {
                "New company's legal representative ID card (front and back, stamped)"
            }
            DocumentKind::Supplementary => "Supplementary document",
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document kind {0:?}: expected one of {known}", known = known_kinds())]
pub struct DocumentKindError(pub String);

fn known_kinds() -> String {
    DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

impl FromStr for DocumentKind {
    type Err = DocumentKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| DocumentKindError(s.to_string()))
    }
}

/// The content types an appeal document may have, recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    Jpeg,
    Png,
    Pdf,
}

const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG_MAGIC: &[u8] = &[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
const PDF_MAGIC: &[u8] = b"%PDF-";

impl ContentType {
    pub const ALL: [ContentType; 3] = [ContentType::Jpeg, ContentType::Png, ContentType::Pdf];

    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
            ContentType::Pdf => "application/pdf",
        }
    }

    /// File-name extensions (lowercase, without the dot) that claim this type.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ContentType::Jpeg => &["jpg", "jpeg"],
            ContentType::Png => &["png"],
            ContentType::Pdf => &["pdf"],
        }
    }

    /// The type a file-name extension (without the dot, any case) claims, if any.
    pub fn from_extension(ext: &str) -> Option<ContentType> {
        ContentType::ALL.into_iter().find(|t| t.extensions().iter().any(|known| known.eq_ignore_ascii_case(ext)))
    }

    fn magic(self) -> &'static [u8] {
        match self {
            ContentType::Jpeg => JPEG_MAGIC,
            ContentType::Png => PNG_MAGIC,
            ContentType::Pdf => PDF_MAGIC,
        }
    }

    /// The type of `bytes` judged by their leading magic bytes only.
    pub fn sniff(bytes: &[u8]) -> Option<ContentType> {
        ContentType::ALL.into_iter().find(|t| bytes.starts_with(t.magic()))
    }

    fn label(self) -> &'static str {
        match self {
            ContentType::Jpeg => "JPEG",
            ContentType::Png => "PNG",
            ContentType::Pdf => "PDF",
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

const MIB: u64 = 1024 * 1024;

/// What one upload, and one draft's uploads, may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DocumentLimits {
    /// The largest document, in bytes.
    pub max_bytes: u64,
    /// The most pixels an image may have (width × height): a decompression bomb's
    /// declared size is refused before anything is decoded.
    pub max_pixels: u64,
    /// The most documents one draft may hold...
    pub max_per_draft: usize,
    /// ...and of one kind.
    pub max_per_kind: usize,
    /// The most bytes one draft's documents may add up to.
    pub max_draft_bytes: u64,
}

impl Default for DocumentLimits {
    fn default() -> Self {
        DocumentLimits {
            max_bytes: 10 * MIB,
            max_pixels: 40_000_000,
            max_per_draft: 20,
            max_per_kind: 5,
            max_draft_bytes: 50 * MIB,
        }
    }
}

impl DocumentLimits {
    /// Checks a change to a draft's documents: refused only when it breaks a limit *and*
    /// grows the draft (more documents, more of a kind, or more bytes), so a draft over a
    /// limit lowered since (or admitted before the limit existed) can always be shrunk.
    pub fn check_change(&self, before: &[(DocumentKind, u64)], after: &[(DocumentKind, u64)]) -> Vec<FieldError> {
        let problems = self.check_collection(after.iter().copied());
        if problems.is_empty() {
            return problems;
        }
        let bytes = |d: &[(DocumentKind, u64)]| d.iter().map(|(_, s)| *s).sum::<u64>();
        let of = |d: &[(DocumentKind, u64)], k: DocumentKind| d.iter().filter(|(x, _)| *x == k).count();
        let grew = after.len() > before.len()
            || bytes(after) > bytes(before)
            || after.iter().any(|(k, _)| of(after, *k) > of(before, *k));
        if grew { problems } else { Vec::new() }
    }

    /// Checks one draft's documents (kind and size of each) against the per-draft
    /// limits: how many, how many of one kind, how many bytes in all.
    pub fn check_collection(&self, documents: impl IntoIterator<Item = (DocumentKind, u64)>) -> Vec<FieldError> {
        let mut problems = Vec::new();
        let mut count = 0usize;
        let mut bytes = 0u64;
        let mut per_kind: std::collections::BTreeMap<DocumentKind, usize> = Default::default();
        for (kind, size) in documents {
            count += 1;
            bytes = bytes.saturating_add(size);
            *per_kind.entry(kind).or_default() += 1;
        }
        if count > self.max_per_draft {
            problems.push(FieldError::new(
                "documents",
                format!("a draft holds at most {} documents; this one would hold {count}", self.max_per_draft),
            ));
        }
        for (kind, n) in per_kind {
            if n > self.max_per_kind {
                problems.push(FieldError::new(
                    "documents",
                    format!(
                        "{kind}: a draft holds at most {} of this kind; this one would hold {n}",
                        self.max_per_kind
                    ),
                ));
            }
        }
        if bytes > self.max_draft_bytes {
            let (size, max) = describe_sizes(bytes, self.max_draft_bytes);
            problems.push(FieldError::new(
                "documents",
                format!("a draft's documents add up to at most {max}; this one's would be {size}"),
            ));
        }
        problems
    }
}

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
fn describe_sizes(size: u64, max: u64) -> (String, String) {
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

/// Decides an upload's content type from its bytes and refuses what we cannot accept.
/// The file name only matters when its extension claims a *different* accepted type.
pub fn check_content(
    kind: DocumentKind,
    file_name: Option<&str>,
    bytes: &[u8],
    limits: &DocumentLimits,
) -> Result<ContentType, DocumentError> {
    let refuse = |problem| DocumentError { kind, problem };
    if bytes.is_empty() {
        return Err(refuse(DocumentProblem::Empty));
    }
    let size = bytes.len() as u64;
    if size > limits.max_bytes {
        return Err(refuse(DocumentProblem::TooLarge { size, max: limits.max_bytes }));
    }
    let actual = ContentType::sniff(bytes).ok_or_else(|| refuse(DocumentProblem::UnknownContent))?;
    if let Some(named) = file_name.and_then(named_type)
        && named != actual
    {
        return Err(refuse(DocumentProblem::Mislabelled { named, actual }));
    }
    Ok(actual)
}

/// Looks inside a document whose type is known: an image must decode completely within
/// the pixel limit and end where its format ends; a PDF must parse and carry no
/// JavaScript, launch action or embedded file. Parsers are the `image` and `lopdf`
/// crates; a panic inside one is a refusal, not a crash.
pub fn inspect(
    kind: DocumentKind,
    content: ContentType,
    bytes: &[u8],
    limits: &DocumentLimits,
) -> Result<(), DocumentError> {
    let refuse = |problem| DocumentError { kind, problem };
    let result = std::panic::catch_unwind(|| match content {
        ContentType::Jpeg | ContentType::Png => inspect_image(content, bytes, limits),
        ContentType::Pdf => inspect_pdf(bytes),
    });
    result
        .unwrap_or(Err(match content {
            ContentType::Pdf => DocumentProblem::UnreadablePdf,
            _ => DocumentProblem::Undecodable,
        }))
        .map_err(refuse)
}

/// The PNG trailer: an empty IEND chunk and its CRC.
const PNG_END: &[u8] = &[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82];
/// The JPEG end-of-image marker.
const JPEG_END: &[u8] = &[0xFF, 0xD9];

fn inspect_image(content: ContentType, bytes: &[u8], limits: &DocumentLimits) -> Result<(), DocumentProblem> {
    let (format, end) = match content {
        ContentType::Jpeg => (image::ImageFormat::Jpeg, JPEG_END),
        _ => (image::ImageFormat::Png, PNG_END),
    };
    let reader = || image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(|_| DocumentProblem::Undecodable)?;
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(DocumentProblem::TooManyPixels { width, height, max: limits.max_pixels });
    }
    let mut decoder = reader();
    let mut l = image::Limits::default();
    l.max_image_width = Some(width);
    l.max_image_height = Some(height);
    // Four bytes a pixel (RGBA at most for JPEG and 8-bit PNG), twice over for the
    // decoder's own buffers; 16-bit PNGs need twice that.
    l.max_alloc = Some(limits.max_pixels.saturating_mul(16));
    decoder.limits(l);
    decoder.decode().map_err(|_| DocumentProblem::Undecodable)?;
    // Decoded whole, and nothing after the format's end: a polyglot (an archive or a
    // page behind the picture) is refused.
    if !bytes.ends_with(end) {
        return Err(DocumentProblem::TrailingData);
    }
    Ok(())
}

/// The deepest nesting of arrays and dictionaries a PDF may have. lopdf's parser
/// descends recursively, so an absurdly nested object would exhaust the stack (a crash,
/// not a refusal); real documents stay within a handful of levels.
const MAX_PDF_NESTING: usize = 64;
/// The stack lopdf parses on: ample for `MAX_PDF_NESTING` levels in any build.
const PDF_PARSE_STACK: usize = 64 * 1024 * 1024;

thread_local! {
    /// Set by `object_stream_filter` when a compressed object stream nests too deeply.
    static TOO_DEEP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A PDF's verdict (in this process: the server runs it in `adapters::pdf_sandbox`).
pub fn inspect_pdf(bytes: &[u8]) -> Result<(), DocumentProblem> {
    // Encrypted documents are refused unread: lopdf would parse their object streams
    // without the nesting check below.
    if nesting_depth(bytes) > MAX_PDF_NESTING || find(bytes, b"/Encrypt").is_some() {
        return Err(DocumentProblem::UnreadablePdf);
    }
    let owned = bytes.to_vec();
    let parse = move || {
        TOO_DEEP.with(|t| t.set(false));
        let reader = lopdf::Reader {
            buffer: &owned,
            document: lopdf::Document::new(),
            encryption_state: None,
            raw_objects: Default::default(),
        };
        let doc = reader.read(Some(object_stream_filter));
        (doc, TOO_DEEP.with(|t| t.get()))
    };
    let (doc, too_deep) = std::thread::Builder::new()
        .name("pdf-inspect".into())
        .stack_size(PDF_PARSE_STACK)
        .spawn(parse)
        .map_err(|_| DocumentProblem::UnreadablePdf)?
        .join()
        .map_err(|_| DocumentProblem::UnreadablePdf)?;
    let doc = doc.map_err(|_| DocumentProblem::UnreadablePdf)?;
    if too_deep || doc.trailer.get(b"Encrypt").is_ok() {
        return Err(DocumentProblem::UnreadablePdf);
    }
    if let Some(what) = active_in(&lopdf::Object::Dictionary(doc.trailer.clone())) {
        return Err(DocumentProblem::ActivePdf(what));
    }
    for object in doc.objects.values() {
        if let Some(what) = active_in(object) {
            return Err(DocumentProblem::ActivePdf(what));
        }
    }
    Ok(())
}

/// Run by lopdf on each top-level object before it parses the objects packed in an
/// object stream: a stream whose decompressed objects nest too deeply is dropped (and
/// the document refused) instead of parsed.
fn object_stream_filter(id: lopdf::ObjectId, object: &mut lopdf::Object) -> Option<(lopdf::ObjectId, lopdf::Object)> {
    if let lopdf::Object::Stream(stream) = object
        && stream.dict.has_type(b"ObjStm")
    {
        let content = stream.decompressed_content().unwrap_or_else(|_| stream.content.clone());
        if nesting_depth(&content) > MAX_PDF_NESTING {
            TOO_DEEP.with(|t| t.set(true));
            return None;
        }
    }
    Some((id, object.clone()))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The deepest nesting of `[` arrays and `<<` dictionaries in PDF syntax, skipping
/// comments, literal and hex strings, and stream bodies (binary data, not syntax).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut i, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    let mut after_dict = false;
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'%' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
                continue;
            }
            b'(' => {
                let mut open = 0usize;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 1,
                        b'(' => open += 1,
                        b')' => {
                            open -= 1;
                            if open == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                after_dict = false;
            }
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                deepest = deepest.max(depth);
                i += 1;
            }
            b'<' => {
                while i < bytes.len() && bytes[i] != b'>' {
                    i += 1;
                }
                after_dict = false;
            }
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 2;
                after_dict = true;
                continue;
            }
            b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' => depth = depth.saturating_sub(1),
            b's' if after_dict && bytes[i..].starts_with(b"stream") => {
                // The body runs to `endstream`: skipped whole.
                match find(&bytes[i + 6..], b"endstream") {
                    Some(at) => i += 6 + at + 9,
                    None => return deepest,
                }
                after_dict = false;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' | b'\x0c' | 0 => {
                i += 1;
                continue;
            }
            _ => after_dict = false,
        }
        i += 1;
    }
    deepest
}

/// What active content an object (and what it contains directly) carries, if any.
fn active_in(object: &lopdf::Object) -> Option<&'static str> {
    use lopdf::Object;
    let dict = match object {
        Object::Dictionary(d) => d,
        Object::Stream(s) => &s.dict,
        Object::Array(items) => return items.iter().find_map(active_in),
        _ => return None,
    };
    for (key, value) in dict.iter() {
        let named = |n: &[u8]| matches!(value, Object::Name(v) if v.as_slice() == n);
        let found = match key.as_slice() {
            b"JS" | b"JavaScript" => Some("JavaScript"),
            b"S" if named(b"JavaScript") => Some("JavaScript"),
            b"S" if named(b"Launch") => Some("a launch action"),
            b"Launch" => Some("a launch action"),
            b"EmbeddedFile" | b"EmbeddedFiles" => Some("an embedded file"),
            b"Type" if named(b"EmbeddedFile") || named(b"Filespec") => Some("an embedded file"),
            b"RichMedia" | b"RichMediaContent" => Some("rich media"),
            b"XFA" => Some("an XFA form"),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        if let Some(found) = active_in(value) {
            return Some(found);
        }
    }
    None
}

fn named_type(file_name: &str) -> Option<ContentType> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let (_, ext) = base.trim_end().rsplit_once('.')?;
    ContentType::from_extension(ext)
}

const MAX_FILE_NAME_BYTES: usize = 255;
/// Extensions longer than this are not worth preserving when a name is shortened.
const MAX_KEPT_EXTENSION_BYTES: usize = 16;

/// The applicant's file name, made safe to display and store as metadata: no directory
/// components, no control characters, no bidirectional overrides (which can disguise an
/// extension), at most 255 bytes. Never used to build a path.
pub fn sanitize_file_name(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or(raw);
    let cleaned: String = base.chars().filter(|c| !c.is_control() && !is_bidi_control(*c)).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return "document".to_string();
    }
    shorten(cleaned, MAX_FILE_NAME_BYTES)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Cuts `name` to at most `max` bytes on a char boundary, keeping a short extension so the
/// shortened name still says what it is.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() && ext.len() <= MAX_KEPT_EXTENSION_BYTES => {
            let stem = prefix_within(stem, max - ext.len() - 1);
            format!("{stem}.{ext}")
        }
        _ => prefix_within(name, max).to_string(),
    }
}

fn prefix_within(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Small, valid documents made on demand (each distinct by its tag): for the demo and
/// the tests, which must upload real files now that files are looked into.
pub mod sample {
    /// A 24×16 JPEG whose pixels depend on `tag`.
    pub fn jpeg(tag: &str) -> Vec<u8> {
        encode(tag, image::ImageFormat::Jpeg)
    }

    /// A 24×16 PNG whose pixels depend on `tag`.
    pub fn png(tag: &str) -> Vec<u8> {
        encode(tag, image::ImageFormat::Png)
    }

    fn encode(tag: &str, format: image::ImageFormat) -> Vec<u8> {
        use sha2::Digest;
        let seed = sha2::Sha256::digest(tag.as_bytes());
        let img = image::RgbImage::from_fn(24, 16, |x, y| {
            let i = ((x + 24 * y) as usize * 3) % 30;
            image::Rgb([seed[i], seed[i + 1], seed[i + 2]])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).expect("encoding a small image in memory cannot fail");
        out.into_inner()
    }

    /// A one-page PDF showing `tag`.
    pub fn pdf(tag: &str) -> Vec<u8> {
        let text: String = tag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == ' ').collect();
        pdf_with_stream(format!("BT /F1 12 Tf 20 40 Td ({text}) Tj ET").as_bytes())
    }

    /// A one-page PDF whose page content stream is `content` (any bytes).
    pub fn pdf_with_stream(content: &[u8]) -> Vec<u8> {
        pdf_with("", content)
    }

    /// A one-page PDF whose catalog also holds `catalog_extra` (entries of a PDF
    /// dictionary, e.g. an `/OpenAction`), with a correct cross-reference table.
    pub fn pdf_with(catalog_extra: &str, content: &[u8]) -> Vec<u8> {
        let objects: Vec<Vec<u8>> = vec![
            format!("<< /Type /Catalog /Pages 2 0 R {catalog_extra} >>").into_bytes(),
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 80] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
                .to_vec(),
            [format!("<< /Length {} >>\nstream\n", content.len()).as_bytes(), content, b"\nendstream"].concat(),
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
        ];
        let mut out = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n".to_vec();
        let mut offsets = Vec::new();
        for (i, body) in objects.iter().enumerate() {
            offsets.push(out.len());
            out.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\nendobj\n");
        }
        let xref = out.len();
        out.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
        for o in offsets {
            out.extend_from_slice(format!("{o:010} 00000 n \n").as_bytes());
        }
        out.extend_from_slice(
            format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PDF: &[u8] = b"%PDF-1.7\n%\xE2\xE3\xCF\xD3\n1 0 obj";
    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F'];
    const PNG: &[u8] = &[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13];

    fn check(name: Option<&str>, bytes: &[u8]) -> Result<ContentType, DocumentError> {
        check_content(DocumentKind::ProofOfPayment, name, bytes, &DocumentLimits::default())
    }

    #[test]
    fn document_kinds_round_trip_through_their_codes_and_serde() {
        for kind in DocumentKind::ALL {
            assert_eq!(kind.as_str().parse::<DocumentKind>(), Ok(kind));
            let json = serde_json::to_string(&kind).expect("serialise");
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert!(!kind.title().is_empty());
        }
    }

    #[test]
    fn unknown_document_kind_error_lists_the_known_kinds() {
        let err = "passport".parse::<DocumentKind>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"passport\""), "{msg}");
        for kind in DocumentKind::ALL {
            assert!(msg.contains(kind.as_str()), "{msg} lacks {kind}");
        }
    }

    #[test]
    fn content_types_are_recognised_by_magic_bytes() {
        assert_eq!(ContentType::sniff(JPEG), Some(ContentType::Jpeg));
        assert_eq!(ContentType::sniff(PNG), Some(ContentType::Png));
        assert_eq!(ContentType::sniff(PDF), Some(ContentType::Pdf));
        assert_eq!(ContentType::sniff(b""), None);
        assert_eq!(ContentType::sniff(b"GIF89a"), None);
        assert_eq!(ContentType::sniff(b"%PDF"), None, "PDF magic includes the dash");
        assert_eq!(ContentType::sniff(b" %PDF-1.4"), None, "magic is at offset 0 only");
    }

    #[test]
    fn png_needs_the_full_eight_byte_signature() {
        assert_eq!(ContentType::sniff(&PNG[..7]), None);
        assert_eq!(ContentType::sniff(b"\x89PNG\r\n\x1a\x0b"), None);
    }

    #[test]
    fn mime_types_and_extensions_match_the_content_type() {
        assert_eq!(ContentType::Jpeg.mime(), "image/jpeg");
        assert_eq!(ContentType::Png.mime(), "image/png");
        assert_eq!(ContentType::Pdf.mime(), "application/pdf");
        assert_eq!(ContentType::Jpeg.extensions(), ["jpg", "jpeg"]);
        assert_eq!(ContentType::Png.extensions(), ["png"]);
        assert_eq!(ContentType::Pdf.extensions(), ["pdf"]);
        assert_eq!(ContentType::from_extension("JPEG"), Some(ContentType::Jpeg));
        assert_eq!(ContentType::from_extension("gif"), None);
    }

    #[test]
    fn default_limit_is_ten_mebibytes() {
        assert_eq!(DocumentLimits::default().max_bytes, 10 * 1024 * 1024);
    }

    #[test]
    fn accepts_content_whose_name_agrees_or_says_nothing() {
        assert_eq!(check(Some("receipt.pdf"), PDF), Ok(ContentType::Pdf));
        assert_eq!(check(Some("IMG_0001.JPEG"), JPEG), Ok(ContentType::Jpeg));
        assert_eq!(check(Some("scan.Png"), PNG), Ok(ContentType::Png));
        assert_eq!(check(None, PDF), Ok(ContentType::Pdf));
        assert_eq!(check(Some("scan"), PNG), Ok(ContentType::Png));
        assert_eq!(check(Some("upload.bin"), JPEG), Ok(ContentType::Jpeg));
        assert_eq!(check(Some("archive.tar.gz"), PDF), Ok(ContentType::Pdf));
    }

    #[test]
    fn rejects_empty_content() {
        let err = check(Some("a.pdf"), b"").unwrap_err();
        assert_eq!(err.problem, DocumentProblem::Empty);
        assert_eq!(err.kind, DocumentKind::ProofOfPayment);
    }

    #[test]
    fn rejects_content_over_the_limit_and_accepts_content_at_it() {
        let limits = DocumentLimits { max_bytes: 16, ..DocumentLimits::default() };
        let mut bytes = PDF[..16].to_vec();
        let at_limit = check_content(DocumentKind::Supplementary, None, &bytes, &limits);
        assert_eq!(at_limit, Ok(ContentType::Pdf));
        bytes.push(b'x');
        let err = check_content(DocumentKind::Supplementary, None, &bytes, &limits).unwrap_err();
        assert_eq!(err.problem, DocumentProblem::TooLarge { size: 17, max: 16 });
    }

    #[test]
    fn rejects_content_that_is_not_jpeg_png_or_pdf() {
        let err = check(Some("photo.jpg"), b"GIF89a....").unwrap_err();
        assert_eq!(err.problem, DocumentProblem::UnknownContent);
        let err = check(None, b"<html>").unwrap_err();
        assert_eq!(err.problem, DocumentProblem::UnknownContent);
    }

    #[test]
    fn rejects_a_pdf_named_as_a_jpeg() {
        let err = check(Some("scan.jpg"), PDF).unwrap_err();
        assert_eq!(err.problem, DocumentProblem::Mislabelled { named: ContentType::Jpeg, actual: ContentType::Pdf });
        let err = check(Some("C:\\Users\\me\\photo.PNG"), JPEG).unwrap_err();
        assert!(matches!(
            err.problem,
            DocumentProblem::Mislabelled { named: ContentType::Png, actual: ContentType::Jpeg }
        ));
    }

    #[test]
    fn too_large_message_names_the_kind_the_sizes_and_the_fix() {
        let err = DocumentError {
            kind: DocumentKind::ProofOfPayment,
            problem: DocumentProblem::TooLarge { size: (12.3 * 1024.0 * 1024.0) as u64, max: 10 * 1024 * 1024 },
        };
        assert_eq!(
            err.to_string(),
            "proof_of_payment: the file is 12.3 MiB; the limit is 10 MiB — upload a smaller scan"
        );
    }

    #[test]
    fn too_large_message_shows_bytes_when_rounding_would_hide_the_excess() {
        let err = DocumentError {
            kind: DocumentKind::BusinessLicense,
            problem: DocumentProblem::TooLarge { size: 10 * 1024 * 1024 + 1, max: 10 * 1024 * 1024 },
        };
        assert_eq!(
            err.to_string(),
            "business_license: the file is 10485761 bytes; the limit is 10485760 bytes — upload a smaller scan"
        );
    }

    #[test]
    fn every_problem_message_is_one_line_naming_the_kind_and_a_fix() {
        let problems = [
            DocumentProblem::Empty,
            DocumentProblem::TooLarge { size: 2048, max: 1024 },
            DocumentProblem::UnknownContent,
            DocumentProblem::Mislabelled { named: ContentType::Jpeg, actual: ContentType::Pdf },
        ];
        for problem in problems {
            let msg = DocumentError { kind: DocumentKind::IdCardFront, problem }.to_string();
            assert!(msg.starts_with("id_card_front: "), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            assert!(msg.contains(" — "), "{msg}");
        }
        let mislabelled = DocumentError { kind: DocumentKind::IdCardFront, problem: problems[3] };
        assert!(mislabelled.to_string().contains(".pdf extension"));
    }

    #[test]
    fn sanitized_file_names_lose_directories_and_control_characters() {
        assert_eq!(sanitize_file_name("../../etc/passwd"), "passwd");
        assert_eq!(sanitize_file_name("C:\\Users\\me\\scan.pdf"), "scan.pdf");
        assert_eq!(sanitize_file_name("re\u{0}ce\nipt\u{7f}.jpg"), "receipt.jpg");
        assert_eq!(sanitize_file_name("invoice\u{202E}fdp.exe"), "invoicefdp.exe");
        assert_eq!(sanitize_file_name("营业执照.jpg"), "营业执照.jpg");
    }

    #[test]
    fn sanitized_file_name_falls_back_to_document_when_nothing_is_left() {
        for raw in ["", "   ", "dir/", "\u{1}\u{2}", "..", "a/.", "\\"] {
            assert_eq!(sanitize_file_name(raw), "document", "{raw:?}");
        }
    }

    #[test]
    fn long_file_names_are_cut_on_a_char_boundary_keeping_the_extension() {
        let long = format!("{}.pdf", "证".repeat(200));
        let cut = sanitize_file_name(&long);
        assert!(cut.len() <= 255, "{}", cut.len());
        assert!(cut.ends_with(".pdf"));
        let no_ext = "é".repeat(200);
        let cut = sanitize_file_name(&no_ext);
        assert!(cut.len() <= 255 && cut.len() >= 254);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    proptest! {
        #[test]
        fn sniff_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = ContentType::sniff(&bytes);
        }

        #[test]
        fn check_content_accepts_only_content_whose_magic_matches(
            prefix in prop_oneof![
                Just(Vec::new()),
                Just(JPEG_MAGIC.to_vec()),
                Just(PNG_MAGIC.to_vec()),
                Just(PDF_MAGIC.to_vec()),
            ],
            tail in proptest::collection::vec(any::<u8>(), 0..64),
            name in proptest::option::of(".{0,20}"),
            max_bytes in 0u64..96,
        ) {
            let bytes = [prefix, tail].concat();
            let limits = DocumentLimits { max_bytes, ..DocumentLimits::default() };
            match check_content(DocumentKind::Supplementary, name.as_deref(), &bytes, &limits) {
                Ok(t) => {
                    prop_assert!(bytes.starts_with(t.magic()));
                    prop_assert_eq!(ContentType::sniff(&bytes), Some(t));
                    prop_assert!(bytes.len() as u64 <= max_bytes);
                }
                Err(e) => prop_assert_eq!(e.kind, DocumentKind::Supplementary),
            }
        }

        #[test]
        fn sanitized_file_names_never_hold_separators_or_control_characters(raw in any::<String>()) {
            let clean = sanitize_file_name(&raw);
            prop_assert!(!clean.is_empty());
            prop_assert!(clean.len() <= 255);
            prop_assert!(!clean.contains('/') && !clean.contains('\\'));
            prop_assert!(!clean.chars().any(|c| c.is_control()));
        }

        #[test]
        fn long_sanitized_file_names_stay_within_255_bytes(raw in ".{200,400}") {
            prop_assert!(sanitize_file_name(&raw).len() <= 255);
        }
    }

    #[test]
    fn sample_documents_pass_inspection() {
        let limits = DocumentLimits::default();
        for (content, bytes) in [
            (ContentType::Jpeg, sample::jpeg("a")),
            (ContentType::Png, sample::png("a")),
            (ContentType::Pdf, sample::pdf("a")),
        ] {
            assert_eq!(ContentType::sniff(&bytes), Some(content));
            inspect(DocumentKind::Supplementary, content, &bytes, &limits).unwrap_or_else(|e| panic!("{content}: {e}"));
        }
        assert_ne!(sample::jpeg("a"), sample::jpeg("b"), "distinct by tag");
    }

    #[test]
    fn an_image_with_bytes_after_its_end_is_refused_as_a_polyglot() {
        let mut jpeg = sample::jpeg("x");
        jpeg.extend_from_slice(b"PK\x03\x04 an archive behind the picture");
        let err = inspect(DocumentKind::IdCardFront, ContentType::Jpeg, &jpeg, &DocumentLimits::default()).unwrap_err();
        assert_eq!(err.problem, DocumentProblem::TrailingData);
        assert!(err.to_string().contains("after its end"), "{err}");
    }

    #[test]
    fn a_pdf_with_javascript_is_refused_naming_it() {
        let active = sample::pdf_with("/OpenAction << /S /JavaScript /JS (app.alert(1)) >>", b"BT ET");
        let err =
            inspect(DocumentKind::Supplementary, ContentType::Pdf, &active, &DocumentLimits::default()).unwrap_err();
        assert_eq!(err.problem, DocumentProblem::ActivePdf("JavaScript"));
        assert!(err.to_string().contains("carries JavaScript"), "{err}");
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;
    use DocumentKind::{BusinessLicense as L, Supplementary as S};

    #[test]
    fn a_draft_over_a_limit_can_shrink_but_not_grow() {
        let limits = DocumentLimits { max_per_draft: 2, max_per_kind: 1, max_draft_bytes: 100, ..Default::default() };
        let over = [(S, 10), (S, 10), (L, 10)];
        assert!(limits.check_change(&over, &over[..2]).is_empty(), "removing one is allowed");
        assert!(limits.check_change(&over, &[(S, 10), (S, 5), (L, 10)]).is_empty(), "a smaller replacement too");
        assert!(!limits.check_change(&over, &[(S, 10), (S, 10), (L, 11)]).is_empty(), "more bytes are not");
        assert!(!limits.check_change(&[(S, 10)], &[(S, 10), (S, 1)]).is_empty(), "a second of a kind is not");
        assert!(limits.check_change(&[], &[(S, 10)]).is_empty());
    }
}

#[cfg(test)]
mod nesting_tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings_comments_and_streams() {
        assert_eq!(nesting_depth(b"<< /A [1 [2 [3]]] >>"), 4);
        assert_eq!(nesting_depth(b"<< /A ([[[[ not syntax \\) (((( ) >>"), 1);
        assert_eq!(nesting_depth(b"% [[[[[[\n[1]"), 1);
        assert_eq!(nesting_depth(b"<< /Length 4 >>\nstream\n[[[[\nendstream [1]"), 1);
        assert_eq!(nesting_depth(b"<4142> [<<>>]"), 2);
    }

    #[test]
    fn an_absurdly_nested_pdf_is_refused_not_a_crash() {
        let limits = DocumentLimits::default();
        let deep = format!("/Probe {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let pdf = sample::pdf_with(&deep, b"x");
        let refused = inspect(DocumentKind::Supplementary, ContentType::Pdf, &pdf, &limits).unwrap_err();
        assert_eq!(refused.problem, DocumentProblem::UnreadablePdf);
        // Nesting within the limit parses.
        let fine = format!("/Probe {}{}", "[".repeat(MAX_PDF_NESTING - 2), "]".repeat(MAX_PDF_NESTING - 2));
        inspect(DocumentKind::Supplementary, ContentType::Pdf, &sample::pdf_with(&fine, b"x"), &limits)
            .expect("nesting within the limit is read");
    }
}
