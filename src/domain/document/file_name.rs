//! The applicant's file name, made safe to display and store as metadata (never a path).

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
