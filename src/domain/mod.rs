//! Domain types checked when built: ticket numbers, phone numbers, roles, the appeal
//! record. No I/O, no async, no database or HTTP types.

pub mod account;
pub mod appeal;
pub mod document;
pub mod draft;
pub mod identity;
pub mod locale;
pub mod phone;
pub mod rejection;
pub mod role;
pub mod rules;
pub mod ticket;

pub use account::{Account, AccountInput, EnterpriseStatus, LookupKind, VerificationType};
pub use appeal::{AppealItem, FieldError, check_text};
pub use identity::{IdHasher, IdNumber, ProtectedId};
pub use locale::Locale;
pub use phone::PhoneNumber;
pub use role::{Actor, Role};
pub use ticket::TicketNumber;
