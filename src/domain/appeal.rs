//! The appeal record: what an applicant asks for and how to reach them. Input arrives
//! as [`AppealInput`] (raw JSON from the CLI or HTTP) and is checked once into
//! [`AppealRequest`]; every problem is reported at once, each naming its field and rule.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::phone::PhoneNumber;

/// The eight appeal items of the help page ("multiple selections allowed").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.rule)
    }
}

/// Raw appeal input as it arrives at the edge.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppealInput {
    pub account: Option<String>,
    #[serde(default)]
    pub items: Vec<String>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    pub supplementary_content: Option<String>,
}

/// A checked appeal request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppealRequest {
    pub account: String,
    pub items: Vec<AppealItem>,
    pub contact_phone: PhoneNumber,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact_email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supplementary_content: Option<String>,
}

const MAX_TEXT: usize = 2000;

impl TryFrom<AppealInput> for AppealRequest {
    type Error = Vec<FieldError>;

    fn try_from(input: AppealInput) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let account = input
            .account
            .map(|a| a.trim().to_string())
            .unwrap_or_default();
        if account.is_empty() {
            errors.push(FieldError::new(
                "account",
                "required: the account name the appeal is about",
            ));
        } else if account.chars().count() > 128 {
            errors.push(FieldError::new("account", "at most 128 characters"));
        }
        let mut items = Vec::new();
        if input.items.is_empty() {
            errors.push(FieldError::new("items", "choose at least one appeal item"));
        }
        for (i, raw) in input.items.iter().enumerate() {
            match AppealItem::ALL.into_iter().find(|it| it.as_str() == raw) {
                Some(item) if items.contains(&item) => errors.push(FieldError::new(
                    format!("items[{i}]"),
                    format!("{raw:?} is listed twice"),
                )),
                Some(item) => items.push(item),
                None => errors.push(FieldError::new(
                    format!("items[{i}]"),
                    format!(
                        "unknown appeal item {raw:?}: expected one of {}",
                        AppealItem::ALL.map(|i| i.as_str()).join(", ")
                    ),
                )),
            }
        }
        items.sort();
        let contact_phone = match input.contact_phone.as_deref().map(PhoneNumber::parse) {
            None => {
                errors.push(FieldError::new(
                    "contact_phone",
                    "required: the ticket number is sent to it by SMS",
                ));
                None
            }
            Some(Err(e)) => {
                errors.push(FieldError::new("contact_phone", e.to_string()));
                None
            }
            Some(Ok(p)) => Some(p),
        };
        let contact_email = input
            .contact_email
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty());
        if let Some(email) = &contact_email {
            let valid = email.len() <= 254
                && email.split_once('@').is_some_and(|(local, domain)| {
                    !local.is_empty()
                        && domain.contains('.')
                        && !domain.starts_with('.')
                        && !domain.ends_with('.')
                })
                && !email.chars().any(char::is_whitespace);
            if !valid {
                errors.push(FieldError::new(
                    "contact_email",
                    "not an email address (name@example.com)",
                ));
            }
        }
        let supplementary_content = input
            .supplementary_content
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if supplementary_content
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_TEXT)
        {
            errors.push(FieldError::new(
                "supplementary_content",
                format!("at most {MAX_TEXT} characters"),
            ));
        }
        match (errors.is_empty(), contact_phone) {
            (true, Some(contact_phone)) => Ok(AppealRequest {
                account,
                items,
                contact_phone,
                contact_email,
                supplementary_content,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_reported_at_once_with_its_field() {
        let input = AppealInput {
            account: Some(" ".into()),
            items: vec![
                "reset_password".into(),
                "fly_to_moon".into(),
                "reset_password".into(),
            ],
            contact_phone: Some("12".into()),
            contact_email: Some("nope".into()),
            supplementary_content: None,
        };
        let errors = AppealRequest::try_from(input).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "account",
                "items[1]",
                "items[2]",
                "contact_phone",
                "contact_email"
            ]
        );
    }

    #[test]
    fn a_valid_request_is_normalised() {
        let input = AppealInput {
            account: Some(" acme ".into()),
            items: vec!["detach_mfa".into(), "reset_password".into()],
            contact_phone: Some("13812345678".into()),
            ..Default::default()
        };
        let req = AppealRequest::try_from(input).unwrap();
        assert_eq!(req.account, "acme");
        assert_eq!(
            req.items,
            [AppealItem::ResetPassword, AppealItem::DetachMfa]
        );
        assert_eq!(req.contact_phone.as_e164(), "+8613812345678");
    }
}
