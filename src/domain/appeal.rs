//! Appeal items (what an applicant asks for) and field errors (what is wrong with an
//! input, naming the field and the rule). The draft that carries them is in `draft.rs`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The eight appeal items of the help page ("multiple selections allowed").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppealItem {
    RetrieveUsername,
    ResetPassword,
    ChangeSecurePhone,
    ChangeSecurityEmail,
    DetachMfa,
    ClearSecurityQuestions,
    ClearIpLogonMask,
    Other,
}

impl AppealItem {
    pub const ALL: [AppealItem; 8] = [
        AppealItem::RetrieveUsername,
        AppealItem::ResetPassword,
        AppealItem::ChangeSecurePhone,
        AppealItem::ChangeSecurityEmail,
        AppealItem::DetachMfa,
        AppealItem::ClearSecurityQuestions,
        AppealItem::ClearIpLogonMask,
        AppealItem::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AppealItem::RetrieveUsername => "retrieve_username",
            AppealItem::ResetPassword => "reset_password",
            AppealItem::ChangeSecurePhone => "change_secure_phone",
            AppealItem::ChangeSecurityEmail => "change_security_email",
            AppealItem::DetachMfa => "detach_mfa",
            AppealItem::ClearSecurityQuestions => "clear_security_questions",
            AppealItem::ClearIpLogonMask => "clear_ip_logon_mask",
            AppealItem::Other => "other",
        }
    }

    /// Items 1-4 all end with the secure phone changed (help page, "Appeal scenarios").
    pub fn changes_secure_phone(self) -> bool {
        matches!(
            self,
            AppealItem::RetrieveUsername
                | AppealItem::ResetPassword
                | AppealItem::ChangeSecurePhone
                | AppealItem::ChangeSecurityEmail
        )
    }
}

impl fmt::Display for AppealItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem with an input, naming the field and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError { field: field.into(), rule: rule.into() }
    }
}

/// Text from outside must not carry control characters: they corrupt logs, and one
/// database (PostgreSQL) refuses NUL where the other stores it. Newlines and tabs are
/// allowed where `multiline` says so.
pub fn check_text(field: &str, value: &str, multiline: bool) -> Result<(), FieldError> {
    let bad = value.chars().any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if bad { Err(FieldError::new(field, "must not contain control characters")) } else { Ok(()) }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_refused_in_text() {
        assert!(check_text("name", "a\u{0}b", false).is_err());
        assert!(check_text("name", "line\nbreak", false).is_err());
        assert!(check_text("content", "line\nbreak\ttab", true).is_ok());
        assert!(check_text("content", "bell\u{7}", true).is_err());
    }

    #[test]
    fn phone_changing_items_are_the_first_four() {
        let changing: Vec<_> = AppealItem::ALL.into_iter().filter(|i| i.changes_secure_phone()).collect();
        assert_eq!(
            changing,
            [
                AppealItem::RetrieveUsername,
                AppealItem::ResetPassword,
                AppealItem::ChangeSecurePhone,
                AppealItem::ChangeSecurityEmail
            ]
        );
    }
}
