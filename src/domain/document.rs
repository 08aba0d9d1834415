//! Appeal documents: the kinds of document the account-appeal checklists ask for, the
//! content types we accept (JPEG, PNG, PDF, decided by magic bytes, never by the name),
//! the size limit, and the applicant's file name kept as display metadata only.
//! Pure: no I/O, no async. Which kinds an appeal requires is decided elsewhere.

use std::fmt;
use std::str::FromStr;

use super::{FieldError, Locale};
use serde::{Deserialize, Serialize};

mod content;
mod error;
mod file_name;
mod limits;
mod pdf;
pub mod sample;

pub use content::{check_content, inspect};
pub use error::{DocumentError, DocumentProblem};
pub use file_name::sanitize_file_name;
pub use limits::DocumentLimits;
pub use pdf::inspect_pdf;

/// A document an applicant uploads, as named by the account-appeal help page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// Photo of the front of the verified individual's ID card.
    IdCardFront,
    /// Photo of the back of the verified individual's ID card.
    IdCardBack,
    /// The individual appeal letter template, filled in, stamped and photographed.
    IndividualAppealLetter,
    /// The enterprise appeal letter template, filled in, stamped and photographed.
    EnterpriseAppealLetter,
    /// Photo of the latest business license duplicate; for a deregistered enterprise,
    /// the NEW company's license.
    BusinessLicense,
    /// Invoice, screenshot of a successful payment page, or electronic receipt.
    ProofOfPayment,
    BusinessNameChangeCertificate,
    /// Signed (or stamped) by shareholders holding more than two-thirds of the shares.
    MemberAccountHolderChangeForm,
    /// Issued by the local Administration for Market Regulation.
    DeregistrationCertificate,
    /// National Enterprise Credit Information Publicity System page showing the enterprise
    /// as deregistered; accepted when no deregistration certificate can be provided.
    CreditSystemScreenshot,
    AssetDisposalCertificate,
    /// Stamped copy of the front and back of the new company's legal representative's ID card.
    NewLegalRepresentativeIdCard,
    /// Anything that explains the account's special circumstances.
    Supplementary,
}

impl DocumentKind {
    pub const ALL: [DocumentKind; 13] = [
        DocumentKind::IdCardFront,
        DocumentKind::IdCardBack,
        DocumentKind::IndividualAppealLetter,
        DocumentKind::EnterpriseAppealLetter,
        DocumentKind::BusinessLicense,
        DocumentKind::ProofOfPayment,
        DocumentKind::BusinessNameChangeCertificate,
        DocumentKind::MemberAccountHolderChangeForm,
        DocumentKind::DeregistrationCertificate,
        DocumentKind::CreditSystemScreenshot,
        DocumentKind::AssetDisposalCertificate,
        DocumentKind::NewLegalRepresentativeIdCard,
        DocumentKind::Supplementary,
    ];

    /// The stable code used in storage, APIs and workflow definitions.
    pub fn as_str(self) -> &'static str {
        match self {
            DocumentKind::IdCardFront => "id_card_front",
            DocumentKind::IdCardBack => "id_card_back",
            DocumentKind::IndividualAppealLetter => "individual_appeal_letter",
            DocumentKind::EnterpriseAppealLetter => "enterprise_appeal_letter",
            DocumentKind::BusinessLicense => "business_license",
            DocumentKind::ProofOfPayment => "proof_of_payment",
            DocumentKind::BusinessNameChangeCertificate => "business_name_change_certificate",
            DocumentKind::MemberAccountHolderChangeForm => "member_account_holder_change_form",
            DocumentKind::DeregistrationCertificate => "deregistration_certificate",
            DocumentKind::CreditSystemScreenshot => "credit_system_screenshot",
            DocumentKind::AssetDisposalCertificate => "asset_disposal_certificate",
            DocumentKind::NewLegalRepresentativeIdCard => "new_legal_representative_id_card",
            DocumentKind::Supplementary => "supplementary",
        }
    }

    /// A short English title shown to applicants.
    pub fn title(self) -> &'static str {
        self.name_in(Locale::En)
    }

    /// The document's human name in `locale`, as applicants see it (checklists, rejection
    /// reasons).
    pub fn name_in(self, locale: Locale) -> &'static str {
        let (en, zh) = match self {
            DocumentKind::IdCardFront => ("ID card of the verified individual (front)", "实名认证人身份证（人像面）"),
            DocumentKind::IdCardBack => ("ID card of the verified individual (back)", "实名认证人身份证（国徽面）"),
            DocumentKind::IndividualAppealLetter => {
                ("Account appeal application letter (individual, stamped)", "账号申诉申请函（个人版，已盖章）")
            }
            DocumentKind::EnterpriseAppealLetter => {
                ("Account appeal application letter (enterprise, stamped)", "账号申诉申请函（企业版，已盖章）")
            }
            DocumentKind::BusinessLicense => ("Latest business license duplicate", "最新营业执照副本"),
            DocumentKind::ProofOfPayment => ("Proof of payment", "付款凭证"),
            DocumentKind::BusinessNameChangeCertificate => ("Business name change certificate", "企业名称变更证明"),
            DocumentKind::MemberAccountHolderChangeForm => {
                ("Member account holder change application form", "会员账号主体变更申请表")
            }
            DocumentKind::DeregistrationCertificate => ("Business deregistration certificate", "企业注销证明"),
            DocumentKind::CreditSystemScreenshot => (
                "Credit information publicity system screenshot showing deregistration",
                "国家企业信用信息公示系统注销状态截图",
            ),
            DocumentKind::AssetDisposalCertificate => ("Enterprise asset disposal certificate", "企业资产处置证明"),
            DocumentKind::NewLegalRepresentativeIdCard => (
                "New company's legal representative ID card (front and back, stamped)",
                "新公司法定代表人身份证正反面复印件（加盖公章）",
            ),
            DocumentKind::Supplementary => ("Supplementary document", "补充材料"),
        };
        match locale {
            Locale::En => en,
            Locale::ZhCn => zh,
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown document kind {0:?}: expected one of {known}", known = known_kinds())]
pub struct DocumentKindError(pub String);

fn known_kinds() -> String {
    DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
}

impl FromStr for DocumentKind {
    type Err = DocumentKindError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DocumentKind::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| DocumentKindError(s.to_string()))
    }
}

/// The content types an appeal document may have, recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    Jpeg,
    Png,
    Pdf,
}

const JPEG_MAGIC: &[u8] = &[0xFF, 0xD8, 0xFF];
const PNG_MAGIC: &[u8] = &[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];
const PDF_MAGIC: &[u8] = b"%PDF-";

impl ContentType {
    pub const ALL: [ContentType; 3] = [ContentType::Jpeg, ContentType::Png, ContentType::Pdf];

    pub fn mime(self) -> &'static str {
        match self {
            ContentType::Jpeg => "image/jpeg",
            ContentType::Png => "image/png",
            ContentType::Pdf => "application/pdf",
        }
    }

    /// File-name extensions (lowercase, without the dot) that claim this type.
    pub fn extensions(self) -> &'static [&'static str] {
        match self {
            ContentType::Jpeg => &["jpg", "jpeg"],
            ContentType::Png => &["png"],
            ContentType::Pdf => &["pdf"],
        }
    }

    /// The type a file-name extension (without the dot, any case) claims, if any.
    pub fn from_extension(ext: &str) -> Option<ContentType> {
        ContentType::ALL.into_iter().find(|t| t.extensions().iter().any(|known| known.eq_ignore_ascii_case(ext)))
    }

    fn magic(self) -> &'static [u8] {
        match self {
            ContentType::Jpeg => JPEG_MAGIC,
            ContentType::Png => PNG_MAGIC,
            ContentType::Pdf => PDF_MAGIC,
        }
    }

    /// The type of `bytes` judged by their leading magic bytes only.
    pub fn sniff(bytes: &[u8]) -> Option<ContentType> {
        ContentType::ALL.into_iter().find(|t| bytes.starts_with(t.magic()))
    }

    fn label(self) -> &'static str {
        match self {
            ContentType::Jpeg => "JPEG",
            ContentType::Png => "PNG",
            ContentType::Pdf => "PDF",
        }
    }
}

impl fmt::Display for ContentType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

const MIB: u64 = 1024 * 1024;

#[cfg(test)]
mod tests;
