//! Rejection reasons, as the help page lists them: documents that do not meet the
//! requirements, an inapplicable scenario, missing documents — or another reason, in
//! words. A reason is written `code` or `code: detail`; for the two document reasons the
//! detail, when given, names the documents concerned (comma-separated kinds).

use super::document::DocumentKind;

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
}
