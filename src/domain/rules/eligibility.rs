//! Who may appeal at all: the help page's scenarios where an appeal cannot be submitted,
//! and the guidance screening gives an unverified account.

use super::*;

/// Why an account cannot appeal at all (the help page's "Scenarios where you cannot
/// submit an appeal").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Ineligible {
    #[error("no account matches that {what}: check the spelling, or try another of the account's domain names")]
    NoAccount { what: String },
    #[error(
        "this account has no associated phone number, domain name, ICP-filed domain name, enterprise email \
         domain or issued invoices, so it cannot be located to appeal for a forgotten username"
    )]
    NoAssociations,
    #[error(
        "the enterprise this account was verified with is deregistered; while you can log on, change the \
         account's verified entity to another enterprise or unregister the account instead of appealing"
    )]
    DeregisteredLoggedIn,
}

/// Guidance given with the screening rejection of an unverified account.
pub fn unverified_guidance(account: &Account) -> String {
    use crate::domain::rejection::screening;
    let mut g = format!("inapplicable_scenario: {}", screening::UNVERIFIED);
    if account.associations.icp_filings {
        g.push_str("; ");
        g.push_str(screening::ICP_FILINGS);
    }
    g.push_str("; ");
    g.push_str(screening::VERIFY_FIRST);
    g
}

pub fn eligibility(entry: &EntryPoint, account: &Account) -> Result<(), Ineligible> {
    match entry {
        EntryPoint::ForgotUsername { .. } if !account.associations.any_for_username_search() => {
            Err(Ineligible::NoAssociations)
        }
        EntryPoint::SecurityPage { .. }
            if account.verification == VerificationType::Enterprise
                && account.enterprise_status == Some(EnterpriseStatus::Deregistered) =>
        {
            Err(Ineligible::DeregisteredLoggedIn)
        }
        _ => Ok(()),
    }
}
