//! Rejection reasons, as the help page lists them: documents that do not meet the
//! requirements, an inapplicable scenario, missing documents — or another reason, in
//! words. A reason is written `code` or `code: detail`; for the two document reasons the
//! detail, when given, names the documents concerned (comma-separated kinds). Stored
//! reasons stay codes (for machines); `in_words` says one to an applicant in their language.

use super::Locale;
use super::document::DocumentKind;

/// The sentences of screening's guidance for an unverified account (written by
/// `rules::unverified_guidance` after `inapplicable_scenario: `, joined by "; "), each with
/// its Chinese wording, so the stored English reason can be said in either language.
pub mod screening {
    pub const UNVERIFIED: &str =
        "the account has not completed identity verification, so its ownership cannot be determined";
    pub const ICP_FILINGS: &str = "it holds domain names or products with ICP filings: transfer them offline first";
    pub const VERIFY_FIRST: &str = "if you can still log on, complete identity verification for the account first";

    pub(super) const IN_CHINESE: [(&str, &str); 3] = [
        (UNVERIFIED, "该账号未完成实名认证，无法确认账号归属"),
        (ICP_FILINGS, "账号下有已备案的域名或产品，请先线下过户"),
        (VERIFY_FIRST, "如仍可登录，请先为该账号完成实名认证"),
    ];
}

pub const CODES: [&str; 4] =
    ["documents_not_meeting_requirements", "inapplicable_scenario", "missing_documents", "other"];

/// Checks a decision's reasons: at least one, each with a known code; `other` needs
/// words; named documents must be known kinds.
pub fn check_reasons(reasons: &[String]) -> Result<(), String> {
    let reasons: Vec<&str> = reasons.iter().map(|r| r.trim()).filter(|r| !r.is_empty()).collect();
    if reasons.is_empty() {
        return Err(format!("at least one reason is required ({})", CODES.join(", ")));
    }
    for reason in reasons {
        let (code, detail) = match reason.split_once(':') {
            Some((c, d)) => (c.trim(), d.trim()),
            None => (reason, ""),
        };
        match code {
            "documents_not_meeting_requirements" | "missing_documents" if !detail.is_empty() => {
                for kind in detail.split(',').map(str::trim) {
                    kind.parse::<DocumentKind>().map_err(|e| format!("reason {reason:?}: {e}"))?;
                }
            }
            "documents_not_meeting_requirements" | "missing_documents" | "inapplicable_scenario" => {}
            "other" if detail.is_empty() => {
                return Err("reason \"other\" needs words: write it as \"other: what is wrong\"".into());
            }
            "other" => {}
            unknown => {
                return Err(format!(
                    "unknown reason {unknown:?}: expected one of {} (then ': detail')",
                    CODES.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// One stored reason (`code` or `code: detail`) in words in `locale`, naming each document
/// by its human name. A reason this version does not know, or a document kind it does not
/// know, reads as written: stored history is shown, never refused.
pub fn in_words(reason: &str, locale: Locale) -> String {
    let reason = reason.trim();
    let (code, detail) = match reason.split_once(':') {
        Some((c, d)) => (c.trim(), d.trim()),
        None => (reason, ""),
    };
    let zh = locale == Locale::ZhCn;
    let headline = match code {
        "documents_not_meeting_requirements" if zh => "材料不符合要求",
        "documents_not_meeting_requirements" => "Documents do not meet the requirements",
        "missing_documents" if zh => "缺少材料",
        "missing_documents" => "Documents are missing",
        "inapplicable_scenario" if zh => "申诉场景不适用",
        "inapplicable_scenario" => "The appeal scenario does not apply",
        // The reviewer's own words, as written.
        "other" if !detail.is_empty() => return detail.to_string(),
        _ => return reason.to_string(),
    };
    if detail.is_empty() {
        return headline.to_string();
    }
    let detail = match code {
        "documents_not_meeting_requirements" | "missing_documents" => {
            let names: Vec<&str> = detail
                .split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| k.parse::<DocumentKind>().map_or(k, |kind| kind.name_in(locale)))
                .collect();
            names.join(if zh { "、" } else { ", " })
        }
        // Screening's guidance, sentence by sentence; other words as written.
        _ if zh => detail
            .split("; ")
            .map(|part| screening::IN_CHINESE.iter().find(|(en, _)| *en == part).map_or(part, |(_, zh)| zh))
            .collect::<Vec<_>>()
            .join("；"),
        _ => detail.to_string(),
    };
    if zh { format!("{headline}：{detail}") } else { format!("{headline}: {detail}") }
}

/// Several stored reasons in words, joined as one sentence list in `locale`.
pub fn all_in_words(reasons: &[String], locale: Locale) -> String {
    let words: Vec<String> = reasons.iter().map(|r| in_words(r, locale)).collect();
    words.join(if locale == Locale::ZhCn { "；" } else { "; " })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(reasons: &[&str]) -> Result<(), String> {
        check_reasons(&reasons.iter().map(|r| r.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn accepts_the_listed_reasons_with_documents_named() {
        assert!(check(&["missing_documents: proof_of_payment, enterprise_appeal_letter"]).is_ok());
        assert!(check(&["documents_not_meeting_requirements", "inapplicable_scenario"]).is_ok());
        assert!(check(&["other: the letter is signed by someone else"]).is_ok());
    }

    #[test]
    fn refuses_empty_unknown_and_wordless_reasons() {
        assert!(check(&[]).unwrap_err().contains("at least one reason"));
        assert!(check(&["  "]).is_err());
        assert!(check(&["because"]).unwrap_err().contains("unknown reason \"because\""));
        assert!(check(&["other"]).unwrap_err().contains("needs words"));
        assert!(check(&["missing_documents: passport"]).unwrap_err().contains("passport"));
    }

    #[test]
    fn says_document_reasons_in_words_naming_each_document() {
        let reason = "documents_not_meeting_requirements: proof_of_payment, enterprise_appeal_letter";
        assert_eq!(
            in_words(reason, Locale::En),
            "Documents do not meet the requirements: Proof of payment, \
             Account appeal application letter (enterprise, stamped)"
        );
        assert_eq!(in_words(reason, Locale::ZhCn), "材料不符合要求：付款凭证、账号申诉申请函（企业版，已盖章）");
        assert_eq!(
            in_words("missing_documents:business_license", Locale::En),
            "Documents are missing: Latest business license duplicate"
        );
        assert_eq!(in_words("missing_documents: business_license", Locale::ZhCn), "缺少材料：最新营业执照副本");
    }

    #[test]
    fn says_reasons_without_detail_and_the_reviewers_own_words() {
        assert_eq!(in_words("missing_documents", Locale::En), "Documents are missing");
        assert_eq!(in_words("inapplicable_scenario", Locale::ZhCn), "申诉场景不适用");
        assert_eq!(
            in_words("inapplicable_scenario: the account never completed identity verification", Locale::En),
            "The appeal scenario does not apply: the account never completed identity verification"
        );
        assert_eq!(
            in_words("other: the letter is signed by someone else", Locale::ZhCn),
            "the letter is signed by someone else"
        );
    }

    #[test]
    fn every_accepted_reason_is_said_in_words_without_its_codes() {
        for code in ["documents_not_meeting_requirements", "missing_documents"] {
            for kind in DocumentKind::ALL {
                let reason = format!("{code}: {kind}");
                if check_reasons(std::slice::from_ref(&reason)).is_err() {
                    continue;
                }
                for locale in Locale::ALL {
                    let words = in_words(&reason, locale);
                    assert!(!words.contains(code) && !words.contains(kind.as_str()), "{reason} in {locale}: {words}");
                    assert!(words.contains(kind.name_in(locale)), "{reason} in {locale}: {words}");
                }
            }
        }
    }

    #[test]
    fn says_screenings_guidance_in_chinese_sentence_by_sentence() {
        let reason = format!("inapplicable_scenario: {}; {}", screening::UNVERIFIED, screening::VERIFY_FIRST);
        assert_eq!(
            in_words(&reason, Locale::ZhCn),
            "申诉场景不适用：该账号未完成实名认证，无法确认账号归属；如仍可登录，请先为该账号完成实名认证"
        );
        assert!(in_words(&reason, Locale::En).starts_with("The appeal scenario does not apply: the account has not"));
    }

    #[test]
    fn reads_an_unknown_stored_reason_or_document_as_written() {
        assert_eq!(in_words("because", Locale::En), "because");
        assert_eq!(in_words("missing_documents: passport", Locale::En), "Documents are missing: passport");
    }

    #[test]
    fn joins_several_reasons_in_the_locales_punctuation() {
        let reasons = vec!["missing_documents: proof_of_payment".to_string(), "inapplicable_scenario".to_string()];
        assert_eq!(
            all_in_words(&reasons, Locale::En),
            "Documents are missing: Proof of payment; The appeal scenario does not apply"
        );
        assert_eq!(all_in_words(&reasons, Locale::ZhCn), "缺少材料：付款凭证；申诉场景不适用");
    }
}
