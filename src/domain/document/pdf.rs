//! A PDF looked into: parsed by lopdf (on its own large stack, its nesting bounded first)
//! and refused when it carries JavaScript, a launch action, an embedded file or other
//! active content.

use super::*;

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
