//! Tests of document kinds, content types, content checks, inspection and file names.

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
fn every_document_kind_has_a_distinct_human_name_in_each_locale() {
    for locale in Locale::ALL {
        let names: std::collections::BTreeSet<&str> = DocumentKind::ALL.iter().map(|k| k.name_in(locale)).collect();
        assert_eq!(names.len(), DocumentKind::ALL.len(), "{locale}: {names:?}");
        assert!(names.iter().all(|n| !n.is_empty() && !n.contains('_')), "{locale}: {names:?}");
    }
    assert_eq!(DocumentKind::ProofOfPayment.name_in(Locale::En), "Proof of payment");
    assert_eq!(DocumentKind::ProofOfPayment.name_in(Locale::ZhCn), "付款凭证");
    assert_eq!(DocumentKind::BusinessLicense.title(), DocumentKind::BusinessLicense.name_in(Locale::En));
    // The Chinese names are Chinese: each holds at least one CJK character.
    for kind in DocumentKind::ALL {
        assert!(kind.name_in(Locale::ZhCn).chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)), "{kind}");
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
    assert!(matches!(err.problem, DocumentProblem::Mislabelled { named: ContentType::Png, actual: ContentType::Jpeg }));
}

#[test]
fn too_large_message_names_the_kind_the_sizes_and_the_fix() {
    let err = DocumentError {
        kind: DocumentKind::ProofOfPayment,
        problem: DocumentProblem::TooLarge { size: (12.3 * 1024.0 * 1024.0) as u64, max: 10 * 1024 * 1024 },
    };
    assert_eq!(err.to_string(), "proof_of_payment: the file is 12.3 MiB; the limit is 10 MiB — upload a smaller scan");
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
    let err = inspect(DocumentKind::Supplementary, ContentType::Pdf, &active, &DocumentLimits::default()).unwrap_err();
    assert_eq!(err.problem, DocumentProblem::ActivePdf("JavaScript"));
    assert!(err.to_string().contains("carries JavaScript"), "{err}");
}
