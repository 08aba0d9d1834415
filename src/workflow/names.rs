//! The names Rust implements, as enums: guards, effects, post-approval actions and
//! recipients. A definition naming another is refused when it loads (`UnknownName`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A name the Rust code implements, as the definition spells it.
macro_rules! name_enum {
    ($(#[$doc:meta])* $name:ident, $kind:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),*
        }

        impl $name {
            pub const ALL: &[$name] = &[$($name::$variant),*];
            /// What a definition problem calls it ("unknown guard ...").
            pub const KIND: &str = $kind;

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),* }
            }

            /// Every name, comma-separated, for messages.
            pub fn known() -> String {
                [$($text),*].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = UnknownName;
            fn from_str(s: &str) -> Result<Self, UnknownName> {
                match s {
                    $($text => Ok($name::$variant),)*
                    other => Err(UnknownName { kind: $kind, name: other.to_string(), known: $name::known() }),
                }
            }
        }
    };
}

/// A name no Rust code implements.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {name:?} (known: {known})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub name: String,
    pub known: String,
}

name_enum!(
    /// Guards the engine knows how to evaluate (see `workflow::decide`).
    Guard, "guard" {
        /// A reviewer fires it only on an appeal they hold (leads, admins and `system` always).
        HoldsClaim = "holds_claim",
        /// At least one non-empty reason.
        HasReasons = "has_reasons",
        /// Reasons from the rejection catalogue (`domain::rejection`).
        RejectionReasons = "rejection_reasons",
        /// A deregistered enterprise's entity-change ticket is linked.
        EntityChangeLinked = "entity_change_linked",
        /// The second approval of a four-eyes approval: the actor is neither the first
        /// approver nor the reviewer who held the claim when it was given.
        FourEyes = "four_eyes",
        /// Stopping a pending change: the command's `code` is the one-time code the
        /// "not you?" notice carried when the appeal entered its cooling-off.
        StopCode = "stop_code",
    }
);

impl Guard {
    /// Whether the guard asks the command for reasons (which a timer never gives).
    pub fn needs_reasons(self) -> bool {
        match self {
            Guard::HasReasons | Guard::RejectionReasons => true,
            Guard::HoldsClaim | Guard::EntityChangeLinked | Guard::FourEyes | Guard::StopCode => false,
        }
    }
}

name_enum!(
    /// Facts about an appeal a risk rule may combine (`second_approval.when`,
    /// `cooling_off.when`).
    RiskFact, "risk fact" {
        /// The approval rotates the account's secure phone (items 1-4, opted in, or
        /// a deregistered enterprise).
        ChangesSecurePhone = "changes_secure_phone",
        /// The account is verified as an enterprise.
        EnterpriseAccount = "enterprise_account",
        /// The approval changes the account's verified entity (deregistered enterprise).
        EntityChange = "entity_change",
        /// The account holder stopped an earlier approval of this appeal in its
        /// cooling-off (the appeal is flagged disputed).
        Disputed = "disputed",
    }
);

name_enum!(
    /// Effects the engine knows how to plan.
    EffectKind, "effect" {
        /// A notification rendered from a template for a recipient.
        Notify = "notify",
        /// The post-approval actions the appeal calls for, each with its job.
        PostApprovalActions = "post_approval_actions",
    }
);

name_enum!(
    /// Post-approval actions the account seam knows how to apply (or, for `manual_task`,
    /// a reviewer marks done).
    ActionKind, "action" {
        RotateSecurePhone = "rotate_secure_phone",
        DetachMfa = "detach_mfa",
        ClearSecurityQuestions = "clear_security_questions",
        ClearIpLogonMask = "clear_ip_logon_mask",
        ChangeVerifiedEntity = "change_verified_entity",
        ManualTask = "manual_task",
    }
);

impl ActionKind {
    /// Done by a reviewer by hand (`appeal task-done`), not through the account seam.
    pub fn is_manual(self) -> bool {
        match self {
            ActionKind::ManualTask => true,
            ActionKind::RotateSecurePhone
            | ActionKind::DetachMfa
            | ActionKind::ClearSecurityQuestions
            | ActionKind::ClearIpLogonMask
            | ActionKind::ChangeVerifiedEntity => false,
        }
    }
}

name_enum!(
    /// Who a `notify` effect is addressed to.
    Recipient, "recipient" {
        /// The applicant's contact phone and email.
        Applicant = "applicant",
        /// Every lead's email and the configured distribution list.
        Leads = "leads",
        /// The security phone and email an action replaced (only after an action).
        SecurityContacts = "security_contacts",
    }
);
