//! Small, valid documents made on demand (each distinct by its tag): for the demo and
//! the tests, which must upload real files now that files are looked into.

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
