//! What the appeal desk's pages show beside the review API's views: the applicant's data
//! as reviewers may see it (masked), and each reviewer's load.

use serde::Serialize;

use super::intake::AppealData;
use crate::domain::TicketNumber;
use crate::domain::draft::{FacialRecognition, Scenario};
use crate::engine::{Engine, EngineError};

/// The applicant's data with everything identifying masked: the ID number only ever in
/// its stored masked form, the phone and email masked, the name's given part hidden.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApplicantView {
    pub operator_name: Option<String>,
    pub operator_id_masked: Option<String>,
    pub contact_phone_masked: Option<String>,
    pub contact_email_masked: Option<String>,
    pub scenario: Option<Scenario>,
    pub facial_recognition: Option<FacialRecognition>,
    pub new_company: Option<String>,
    pub locale: Option<String>,
}

/// A name with all but its first character hidden ("Li Si" → "L****", "张三" → "张*").
fn mask_name(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) => std::iter::once(first).chain(chars.filter(|c| !c.is_whitespace()).map(|_| '*')).collect(),
        None => String::new(),
    }
}

/// An email with its local part hidden but for the first character.
fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => format!("{}***@{domain}", local.chars().next().unwrap_or('*')),
        None => "***".into(),
    }
}

pub async fn applicant(engine: &Engine, ticket: &TicketNumber) -> Result<ApplicantView, EngineError> {
    let record = super::review::load(engine, ticket).await?;
    let data = AppealData::from_record(&record)?;
    let draft = &data.draft;
    let op = draft.operator.as_ref();
    Ok(ApplicantView {
        operator_name: op.and_then(|o| o.name.as_deref()).map(mask_name),
        operator_id_masked: op.and_then(|o| o.id.as_ref()).map(|id| id.masked.clone()),
        contact_phone_masked: draft.contact_phone.as_ref().map(|p| p.masked()),
        contact_email_masked: draft.contact_email.as_deref().map(mask_email),
        scenario: draft.scenario,
        facial_recognition: op.and_then(|o| o.facial_recognition.clone()),
        new_company: draft.new_company.as_ref().map(|c| c.name.clone()),
        locale: draft.locale.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_emails_are_masked() {
        assert_eq!(mask_name("Li Si"), "L***");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_email("it@acme.example"), "i***@acme.example");
        assert_eq!(mask_email("nonsense"), "***");
    }
}
