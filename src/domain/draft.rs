//! The appeal draft: everything an applicant assembles before submitting — how they
//! reached the appeal page, what they ask for, who the operator is, how to contact
//! them, the new company (deregistered enterprises), supplementary content and the
//! documents. A draft may be incomplete; [`crate::domain::rules`] says what is missing.
//! Parsing checks each value's shape (and protects the operator's ID number at once);
//! completeness is the rules' job.

use serde::{Deserialize, Serialize};

use super::account::{LookupKind, normalize_domain};
use super::appeal::{AppealItem, FieldError, check_text};
use super::document::{ContentType, DocumentKind};
use super::identity::{IdHasher, IdNumber, ProtectedId};
use super::locale::Locale;
use super::phone::PhoneNumber;

mod input;

pub use input::{
    DocumentInput, DraftInput, EntryPointInput, NewCompanyInput, OperatorInput, valid_credit_code, valid_email,
};

/// How the applicant reached the identity verification page, and so how the account
/// is located.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryPoint {
    /// "Forgot username": located by a domain name, ICP-filed domain or enterprise email domain.
    ForgotUsername { lookup: LookupKind, value: String },
    /// "Forgot password": the applicant types the account name.
    ForgotPassword { account: String },
    /// Logged in, from the Account Security page ("Change Phone Number").
    SecurityPage { account: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    Active,
    NameChanged,
    Deregistered,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperatorKind {
    /// The verified individual themself (individual accounts).
    VerifiedIndividual,
    /// Someone else acting for the account.
    OtherPerson,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaceResult {
    Passed,
    Failed,
}

/// The facial-recognition result as the provider reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FacialRecognition {
    pub result: FaceResult,
    pub provider: String,
    pub reference: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<OperatorKind>,
    /// Enterprise accounts: "I am the legal representative".
    #[serde(default)]
    pub claims_legal_representative: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<ProtectedId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facial_recognition: Option<FacialRecognition>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewCompany {
    pub name: String,
    /// Unified Social Credit Code (18 characters).
    pub credit_code: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DisposalIssued {
    BeforeDeregistration,
    AfterDeregistration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Attestation {
    CompanySeal,
    ShareholderSignatures,
}

/// Where a document's content is: uploaded to the blob store (`sha256`), or a local file
/// the CLI reads at submission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DraftDocument {
    pub kind: DocumentKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<ContentType>,
    /// The applicant's file name: display metadata only, never a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamped: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatory_share_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued: Option<DisposalIssued>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Attestation>,
}

/// A parsed draft. Everything may be missing; nothing present is malformed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Draft {
    pub entry_point: Option<EntryPoint>,
    pub items: Vec<AppealItem>,
    #[serde(default)]
    pub also_change_secure_phone: bool,
    pub scenario: Option<Scenario>,
    pub operator: Option<Operator>,
    pub contact_phone: Option<PhoneNumber>,
    pub contact_email: Option<String>,
    pub new_company: Option<NewCompany>,
    pub supplementary_content: Option<String>,
    #[serde(default)]
    pub documents: Vec<DraftDocument>,
    /// The language notifications are sent in: `zh-CN` (default) or `en`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

impl Draft {
    /// The applicant's language: the draft's `locale`, else the default.
    pub fn language(&self) -> Locale {
        Locale::or_default(self.locale.as_deref())
    }

    /// The account name the entry point names directly (None for a domain search).
    pub fn named_account(&self) -> Option<&str> {
        match &self.entry_point {
            Some(EntryPoint::ForgotPassword { account } | EntryPoint::SecurityPage { account }) => Some(account),
            _ => None,
        }
    }

    pub fn documents_of(&self, kind: DocumentKind) -> impl Iterator<Item = &DraftDocument> {
        self.documents.iter().filter(move |d| d.kind == kind)
    }
}

impl Draft {
    fn control_character_problems(&self) -> Vec<FieldError> {
        let mut texts: Vec<(String, &str, bool)> = Vec::new();
        match &self.entry_point {
            Some(EntryPoint::ForgotUsername { value, .. }) => texts.push(("entry_point.value".into(), value, false)),
            Some(EntryPoint::ForgotPassword { account } | EntryPoint::SecurityPage { account }) => {
                texts.push(("entry_point.account".into(), account, false))
            }
            None => {}
        }
        if let Some(op) = &self.operator {
            if let Some(n) = &op.name {
                texts.push(("operator.name".into(), n, false));
            }
            if let Some(f) = &op.facial_recognition {
                texts.push(("operator.facial_recognition.provider".into(), &f.provider, false));
                texts.push(("operator.facial_recognition.reference".into(), &f.reference, false));
            }
        }
        if let Some(e) = &self.contact_email {
            texts.push(("contact_email".into(), e, false));
        }
        if let Some(c) = &self.new_company {
            texts.push(("new_company.name".into(), &c.name, false));
        }
        if let Some(s) = &self.supplementary_content {
            texts.push(("supplementary_content".into(), s, true));
        }
        for (i, d) in self.documents.iter().enumerate() {
            if let Some(f) = &d.file {
                texts.push((format!("documents[{i}].file"), f, false));
            }
            if let Some(c) = &d.company_name {
                texts.push((format!("documents[{i}].company_name"), c, false));
            }
        }
        texts.into_iter().filter_map(|(field, value, multi)| check_text(&field, value, multi).err()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with_locale(locale: serde_json::Value) -> Result<Draft, Vec<FieldError>> {
        let mut v: serde_json::Value =
            serde_json::from_str(include_str!("../../examples/http-draft.json")).expect("the example parses");
        v["locale"] = locale;
        let input: DraftInput = serde_json::from_value(v).expect("a draft input");
        input.parse(&IdHasher::new(b"a test key, long enough").expect("key"))
    }

    #[test]
    fn keeps_the_locale_as_its_canonical_tag_whatever_variant_was_given() {
        for (given, kept, language) in
            [("en-US", "en", Locale::En), ("zh", "zh-CN", Locale::ZhCn), ("en", "en", Locale::En)]
        {
            let draft = parse_with_locale(serde_json::json!(given)).expect("parses");
            assert_eq!(draft.locale.as_deref(), Some(kept), "{given}");
            assert_eq!(draft.language(), language, "{given}");
        }
        let draft = parse_with_locale(serde_json::Value::Null).expect("parses");
        assert_eq!((draft.locale.as_deref(), draft.language()), (None, Locale::ZhCn));
    }

    #[test]
    fn refuses_an_unsupported_locale_naming_the_field_and_the_supported_ones() {
        let errors = parse_with_locale(serde_json::json!("fr")).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].field, "locale");
        assert!(errors[0].rule.contains("en or zh-CN"), "{}", errors[0].rule);
    }
}
