//! What the appeal rules need to know about an account: how (and whether) it completed
//! identity verification, for enterprises their status and legal representative, what
//! it is associated with (the keys a forgotten-username search can find it by), and its
//! current security settings (which post-approval actions change).

use serde::{Deserialize, Serialize};

use super::appeal::FieldError;
use super::identity::{IdHasher, IdNumber, ProtectedId};
use super::phone::PhoneNumber;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationType {
    Individual,
    Enterprise,
    /// Never completed identity verification: ownership cannot be determined.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnterpriseStatus {
    Active,
    Deregistered,
}

/// The keys a forgotten-username search locates an account by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LookupKind {
    Domain,
    IcpDomain,
    EmailDomain,
}

impl LookupKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LookupKind::Domain => "domain",
            LookupKind::IcpDomain => "icp_domain",
            LookupKind::EmailDomain => "email_domain",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Associations {
    #[serde(default)]
    pub phone: Option<PhoneNumber>,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default)]
    pub icp_domains: Vec<String>,
    #[serde(default)]
    pub email_domains: Vec<String>,
    #[serde(default)]
    pub issued_invoices: bool,
    /// The account holds domain names or products with ICP filings.
    #[serde(default)]
    pub icp_filings: bool,
}

impl Associations {
    /// Whether a forgotten-username search could find the account at all.
    pub fn any_for_username_search(&self) -> bool {
        self.phone.is_some()
            || !self.domains.is_empty()
            || !self.icp_domains.is_empty()
            || !self.email_domains.is_empty()
            || self.issued_invoices
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySettings {
    #[serde(default)]
    pub secure_phone: Option<PhoneNumber>,
    #[serde(default)]
    pub security_email: Option<String>,
    #[serde(default)]
    pub mfa_attached: bool,
    #[serde(default)]
    pub security_questions_set: bool,
    #[serde(default)]
    pub ip_logon_mask: Option<String>,
}

/// A person named on an account, with their ID number protected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    pub id: ProtectedId,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub name: String,
    pub verification: VerificationType,
    /// The verified individual (individual accounts).
    #[serde(default)]
    pub verified_individual: Option<Person>,
    /// The verified enterprise's name (enterprise accounts).
    #[serde(default)]
    pub enterprise_name: Option<String>,
    #[serde(default)]
    pub enterprise_status: Option<EnterpriseStatus>,
    #[serde(default)]
    pub legal_representative: Option<Person>,
    #[serde(default)]
    pub associations: Associations,
    #[serde(default)]
    pub security: SecuritySettings,
}

impl Account {
    pub fn lookup_keys(&self) -> Vec<(LookupKind, String)> {
        let a = &self.associations;
        let norm = |s: &String| normalize_domain(s);
        a.domains
            .iter()
            .map(|d| (LookupKind::Domain, norm(d)))
            .chain(a.icp_domains.iter().map(|d| (LookupKind::IcpDomain, norm(d))))
            .chain(a.email_domains.iter().map(|d| (LookupKind::EmailDomain, norm(d))))
            .collect()
    }
}

pub fn normalize_domain(s: &str) -> String {
    s.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// A person as imported: the ID number arrives in clear and is protected at once.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub name: String,
    pub id_number: String,
}

/// An account as `appealflow accounts import` reads it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountInput {
    pub name: String,
    pub verification: VerificationType,
    #[serde(default)]
    pub verified_individual: Option<PersonInput>,
    #[serde(default)]
    pub enterprise_name: Option<String>,
    #[serde(default)]
    pub enterprise_status: Option<EnterpriseStatus>,
    #[serde(default)]
    pub legal_representative: Option<PersonInput>,
    #[serde(default)]
    pub associations: Associations,
    #[serde(default)]
    pub security: SecuritySettings,
}

impl AccountInput {
    /// Checks the record and protects its ID numbers; `at` names it in errors.
    pub fn into_account(self, at: &str, hasher: &IdHasher) -> Result<Account, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim().to_string();
        if name.is_empty() {
            errors.push(FieldError::new(format!("{at}.name"), "required"));
        }
        let mut person = |p: Option<PersonInput>, field: &str| -> Option<Person> {
            let p = p?;
            match IdNumber::parse(&p.id_number) {
                Ok(id) => Some(Person { name: p.name.trim().to_string(), id: hasher.protect(&id) }),
                Err(e) => {
                    errors.push(FieldError::new(format!("{at}.{field}.id_number"), e.to_string()));
                    None
                }
            }
        };
        let verified_individual = person(self.verified_individual, "verified_individual");
        let legal_representative = person(self.legal_representative, "legal_representative");
        match self.verification {
            VerificationType::Individual if verified_individual.is_none() => errors.push(FieldError::new(
                format!("{at}.verified_individual"),
                "an individually verified account names its verified individual (name, id_number)",
            )),
            VerificationType::Enterprise => {
                if self.enterprise_status.is_none() {
                    errors.push(FieldError::new(
                        format!("{at}.enterprise_status"),
                        "an enterprise account has a status: active or deregistered",
                    ));
                }
                if self.enterprise_name.as_deref().is_none_or(|n| n.trim().is_empty()) {
                    errors.push(FieldError::new(format!("{at}.enterprise_name"), "required for an enterprise account"));
                }
                if legal_representative.is_none() {
                    errors.push(FieldError::new(
                        format!("{at}.legal_representative"),
                        "an enterprise account names its legal representative (name, id_number)",
                    ));
                }
            }
            _ => {}
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Account {
            name,
            verification: self.verification,
            verified_individual,
            enterprise_name: self.enterprise_name.map(|n| n.trim().to_string()),
            enterprise_status: self.enterprise_status,
            legal_representative,
            associations: self.associations,
            security: self.security,
        })
    }
}

/// One post-approval change to an account, as the built-in directory applies it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum AccountChange {
    RotateSecurePhone { phone: PhoneNumber },
    DetachMfa,
    ClearSecurityQuestions,
    ClearIpLogonMask,
    ChangeVerifiedEntity { enterprise_name: String, legal_representative: Option<Person> },
}

impl AccountChange {
    /// Applies the change; returns what it replaced (for the security notice and audit).
    pub fn apply(&self, account: &mut Account) -> serde_json::Value {
        let s = &mut account.security;
        match self {
            AccountChange::RotateSecurePhone { phone } => {
                let before = s.secure_phone.replace(phone.clone());
                serde_json::json!({ "secure_phone": before, "security_email": s.security_email })
            }
            AccountChange::DetachMfa => {
                serde_json::json!({ "mfa_attached": std::mem::replace(&mut s.mfa_attached, false) })
            }
            AccountChange::ClearSecurityQuestions => serde_json::json!({
                "security_questions_set": std::mem::replace(&mut s.security_questions_set, false)
            }),
            AccountChange::ClearIpLogonMask => serde_json::json!({ "ip_logon_mask": s.ip_logon_mask.take() }),
            AccountChange::ChangeVerifiedEntity { enterprise_name, legal_representative } => {
                let before = serde_json::json!({
                    "enterprise_name": account.enterprise_name,
                    "enterprise_status": account.enterprise_status,
                });
                account.verification = VerificationType::Enterprise;
                account.enterprise_name = Some(enterprise_name.clone());
                account.enterprise_status = Some(EnterpriseStatus::Active);
                account.legal_representative = legal_representative.clone();
                before
            }
        }
    }
}
