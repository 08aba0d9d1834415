//! Domain types checked when built: ticket numbers, phone numbers, roles, the appeal
//! record. No I/O, no async, no database or HTTP types.

pub mod appeal;
pub mod phone;
pub mod role;
pub mod ticket;

pub use appeal::{AppealInput, AppealItem, AppealRequest, FieldError};
pub use phone::PhoneNumber;
pub use role::{Actor, Role};
pub use ticket::TicketNumber;
