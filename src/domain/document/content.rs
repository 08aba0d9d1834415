//! An upload's content checked: its type decided by its magic bytes (the file name matters
//! only when it claims another accepted type), then inside it: images decode completely
//! within the pixel limit and end where their format ends; PDFs go to `pdf`.

use super::*;

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

fn named_type(file_name: &str) -> Option<ContentType> {
    let base = file_name.rsplit(['/', '\\']).next().unwrap_or(file_name);
    let (_, ext) = base.trim_end().rsplit_once('.')?;
    ContentType::from_extension(ext)
}
