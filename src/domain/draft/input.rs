//! The raw draft as JSON arrives from the CLI or the HTTP API (`DraftInput`), and its
//! parsing into a `Draft`: each present value's shape checked, every problem reported at once.

use super::*;

// The OpenAPI document's request schema is derived from these types. Their text fields
// are parsed by hand below (so every problem is reported at once, naming the field);
// `schema(value_type = ...)` states the values that parsing accepts.

/// How the applicant reached the appeal: forgot_username (with lookup and value),
/// forgot_password or security_page (with account).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntryPointInput {
    #[schema(value_type = EntryKind)]
    pub kind: String,
    pub account: Option<String>,
    #[schema(value_type = Option<LookupKind>)]
    pub lookup: Option<String>,
    pub value: Option<String>,
}

/// The entry points `EntryPointInput::kind` names (the values its parsing accepts).
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)] // a schema only: `kind` is parsed by hand, naming the field at fault
pub enum EntryKind {
    ForgotUsername,
    ForgotPassword,
    SecurityPage,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperatorInput {
    #[schema(value_type = Option<OperatorKind>)]
    pub kind: Option<String>,
    #[serde(default)]
    pub claims_legal_representative: bool,
    pub name: Option<String>,
    /// The 18-character resident ID number; stored only as a keyed hash
    pub id_number: Option<String>,
    /// An ID number as stored (hash and mask): a stored draft keeps only this, never the
    /// clear number. Accepted from appealflow's own storage, refused from applicants, so
    /// documented as a bare object.
    #[schema(value_type = Option<Object>)]
    #[serde(default)]
    pub id: Option<ProtectedId>,
    /// Recorded by the provider's callback only (refused from applicants, so documented
    /// as a bare object).
    #[schema(value_type = Option<Object>)]
    pub facial_recognition: Option<FacialRecognition>,
}

#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCompanyInput {
    pub name: Option<String>,
    pub credit_code: Option<String>,
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentInput {
    #[schema(value_type = DocumentKind)]
    pub kind: String,
    pub file: Option<String>,
    pub sha256: Option<String>,
    pub size: Option<u64>,
    pub content_type: Option<ContentType>,
    pub file_name: Option<String>,
    pub stamped: Option<bool>,
    pub company_name: Option<String>,
    pub signatory_share_percent: Option<f64>,
    pub issued: Option<DisposalIssued>,
    pub attestation: Option<Attestation>,
}

/// A draft as JSON arrives from the CLI or the HTTP API (`POST /v1/drafts`,
/// `PUT /v1/drafts/{id}`). Whether the named account exists, and the checks no schema
/// can state (ID-number and credit-code check characters, phone and email forms), are
/// answered with 422 naming the field.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DraftInput {
    /// Required: a draft without one is refused (422).
    #[schema(required = true, nullable = false, inline)]
    pub entry_point: Option<EntryPointInput>,
    #[schema(value_type = BTreeSet<AppealItem>)]
    #[serde(default)]
    pub items: Vec<String>,
    #[serde(default)]
    pub also_change_secure_phone: bool,
    #[schema(value_type = Option<Scenario>)]
    pub scenario: Option<String>,
    #[schema(inline)]
    pub operator: Option<OperatorInput>,
    pub contact_phone: Option<String>,
    pub contact_email: Option<String>,
    #[schema(inline)]
    pub new_company: Option<NewCompanyInput>,
    pub supplementary_content: Option<String>,
    #[schema(inline)]
    #[serde(default)]
    pub documents: Vec<DocumentInput>,
    /// The applicant's language for notifications and the progress answer: `zh-CN`
    /// (default) or `en`; a tag such as `en-US` or `zh` is read as one of these.
    pub locale: Option<String>,
}

const MAX_TEXT: usize = 2000;
const MAX_NAME: usize = 200;

fn text(raw: Option<String>) -> Option<String> {
    raw.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

fn one_of<T: Copy>(field: &str, raw: &str, options: &[(&str, T)], errors: &mut Vec<FieldError>) -> Option<T> {
    match options.iter().find(|(name, _)| *name == raw) {
        Some((_, v)) => Some(*v),
        None => {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            errors.push(FieldError::new(field, format!("{raw:?} is not one of: {}", names.join(", "))));
            None
        }
    }
}

/// A plausible email address: one `@`, something before it, a dotted domain after it.
pub fn valid_email(email: &str) -> bool {
    email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
}

/// A Unified Social Credit Code: 18 characters of digits and capital letters
/// (excluding I, O, Z, S, V).
pub fn valid_credit_code(code: &str) -> bool {
    code.len() == 18 && code.chars().all(|c| c.is_ascii_digit() || (c.is_ascii_uppercase() && !"IOZSV".contains(c)))
}

impl DraftInput {
    /// Checks every present value's shape; reports every problem at once.
    pub fn parse(self, hasher: &IdHasher) -> Result<Draft, Vec<FieldError>> {
        let mut errors = Vec::new();

        let entry_point = self.entry_point.and_then(|ep| {
            let account = text(ep.account);
            match ep.kind.as_str() {
                "forgot_username" => {
                    let lookup = match ep.lookup.as_deref() {
                        None => {
                            errors.push(FieldError::new(
                                "entry_point.lookup",
                                "forgot_username locates the account by domain, icp_domain or email_domain",
                            ));
                            None
                        }
                        Some(raw) => one_of(
                            "entry_point.lookup",
                            raw,
                            &[
                                ("domain", LookupKind::Domain),
                                ("icp_domain", LookupKind::IcpDomain),
                                ("email_domain", LookupKind::EmailDomain),
                            ],
                            &mut errors,
                        ),
                    };
                    let value = text(ep.value).map(|v| normalize_domain(&v));
                    if value.is_none() {
                        errors.push(FieldError::new("entry_point.value", "the domain name to search by is required"));
                    }
                    Some(EntryPoint::ForgotUsername { lookup: lookup?, value: value? })
                }
                "forgot_password" | "security_page" => {
                    let Some(account) = account else {
                        errors.push(FieldError::new("entry_point.account", "the account name is required"));
                        return None;
                    };
                    Some(if ep.kind == "forgot_password" {
                        EntryPoint::ForgotPassword { account }
                    } else {
                        EntryPoint::SecurityPage { account }
                    })
                }
                other => {
                    errors.push(FieldError::new(
                        "entry_point.kind",
                        format!("{other:?} is not one of: forgot_username, forgot_password, security_page"),
                    ));
                    None
                }
            }
        });

        let mut items = Vec::new();
        for (i, raw) in self.items.iter().enumerate() {
            match AppealItem::ALL.into_iter().find(|it| it.as_str() == raw) {
                Some(item) if items.contains(&item) => {
                    errors.push(FieldError::new(format!("items[{i}]"), format!("{raw:?} is listed twice")))
                }
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

        let scenario = self.scenario.as_deref().and_then(|raw| {
            one_of(
                "scenario",
                raw,
                &[
                    ("active", Scenario::Active),
                    ("name_changed", Scenario::NameChanged),
                    ("deregistered", Scenario::Deregistered),
                ],
                &mut errors,
            )
        });

        let operator = self.operator.map(|op| {
            let kind = op.kind.as_deref().and_then(|raw| {
                one_of(
                    "operator.kind",
                    raw,
                    &[
                        ("verified_individual", OperatorKind::VerifiedIndividual),
                        ("other_person", OperatorKind::OtherPerson),
                    ],
                    &mut errors,
                )
            });
            let name = text(op.name);
            if name.as_ref().is_some_and(|n| n.chars().count() > MAX_NAME) {
                errors.push(FieldError::new("operator.name", format!("at most {MAX_NAME} characters")));
            }
            let id = match op.id_number {
                Some(raw) => match IdNumber::parse(&raw) {
                    Ok(id) => Some(hasher.protect(&id)),
                    Err(e) => {
                        errors.push(FieldError::new("operator.id_number", e.to_string()));
                        None
                    }
                },
                None => op.id,
            };
            if let Some(face) = &op.facial_recognition
                && (face.provider.trim().is_empty() || face.reference.trim().is_empty())
            {
                errors.push(FieldError::new(
                    "operator.facial_recognition",
                    "a facial-recognition result names its provider and the provider's reference",
                ));
            }
            Operator {
                kind,
                claims_legal_representative: op.claims_legal_representative,
                name,
                id,
                facial_recognition: op.facial_recognition,
            }
        });

        let contact_phone = self.contact_phone.and_then(|raw| match PhoneNumber::parse(&raw) {
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(FieldError::new("contact_phone", e.to_string()));
                None
            }
        });
        let contact_email = text(self.contact_email);
        if contact_email.as_deref().is_some_and(|e| !valid_email(e)) {
            errors.push(FieldError::new("contact_email", "not an email address (name@example.com)"));
        }

        let new_company = self.new_company.and_then(|c| {
            let name = text(c.name);
            let code = text(c.credit_code).map(|c| c.to_ascii_uppercase());
            if name.is_none() {
                errors.push(FieldError::new("new_company.name", "required: the new company's registered name"));
            }
            match &code {
                None => errors.push(FieldError::new(
                    "new_company.credit_code",
                    "required: the new company's Unified Social Credit Code",
                )),
                Some(c) if !valid_credit_code(c) => errors.push(FieldError::new(
                    "new_company.credit_code",
                    "a Unified Social Credit Code has 18 digits and capital letters (no I, O, Z, S or V)",
                )),
                _ => {}
            }
            Some(NewCompany { name: name?, credit_code: code.filter(|c| valid_credit_code(c))? })
        });

        let supplementary_content = text(self.supplementary_content);
        if supplementary_content.as_ref().is_some_and(|s| s.chars().count() > MAX_TEXT) {
            errors.push(FieldError::new("supplementary_content", format!("at most {MAX_TEXT} characters")));
        }

        let mut documents = Vec::new();
        for (i, d) in self.documents.into_iter().enumerate() {
            let field = |f: &str| format!("documents[{i}].{f}");
            let kind = match d.kind.parse::<DocumentKind>() {
                Ok(k) => k,
                Err(e) => {
                    errors.push(FieldError::new(field("kind"), e.to_string()));
                    continue;
                }
            };
            if d.file.is_none() && d.sha256.is_none() {
                errors.push(FieldError::new(
                    format!("documents[{i}]"),
                    format!("{kind}: give the uploaded content's sha256 or a local file to read"),
                ));
            }
            if let Some(sha) = &d.sha256
                && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            {
                errors.push(FieldError::new(field("sha256"), "64 lowercase hexadecimal characters"));
            }
            if let Some(p) = d.signatory_share_percent
                && (!(0.0..=100.0).contains(&p) || p.is_nan())
            {
                errors.push(FieldError::new(field("signatory_share_percent"), "a percentage from 0 to 100"));
            }
            documents.push(DraftDocument {
                kind,
                file: d.file,
                sha256: d.sha256,
                size: d.size,
                content_type: d.content_type,
                file_name: d.file_name.map(|n| crate::domain::document::sanitize_file_name(&n)),
                stamped: d.stamped,
                company_name: text(d.company_name),
                signatory_share_percent: d.signatory_share_percent,
                issued: d.issued,
                attestation: d.attestation,
            });
        }

        // Kept as the canonical tag (`en`, `zh-CN`) whatever variant was given (`en-US`, `zh`).
        let locale = match text(self.locale).map(|l| Locale::parse(&l)) {
            None => None,
            Some(Ok(l)) => Some(l.as_str().to_string()),
            Some(Err(e)) => {
                errors.push(FieldError::new("locale", e.to_string()));
                None
            }
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let draft = Draft {
            entry_point,
            items,
            also_change_secure_phone: self.also_change_secure_phone,
            scenario,
            operator,
            contact_phone,
            contact_email,
            new_company,
            supplementary_content,
            documents,
            locale,
        };
        let problems = draft.control_character_problems();
        if problems.is_empty() { Ok(draft) } else { Err(problems) }
    }
}
