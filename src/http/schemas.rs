//! The components of the OpenAPI document: request bodies as the handlers parse them
//! (unknown members refused, enumerations and patterns as the server checks them) and
//! the answers they give.

use serde_json::{Value, json};

use crate::domain::appeal::AppealItem;
use crate::domain::document::DocumentKind;

/// A ticket number: 20 digits (groups of four may be separated by '-' or a space), the
/// last a Damm check digit over the others. The `ticket-number` format names the check
/// digit, which no pattern can express; a mistyped ticket is refused with 422.
pub(super) fn ticket_schema() -> Value {
    json!({
        "type": "string", "format": "ticket-number", "pattern": "^[0-9]{4}([- ]?[0-9]{4}){4}$",
        "description": "20 digits, the last a Damm check digit; '-' or a space may separate groups of four"
    })
}

fn names<'a>(all: impl IntoIterator<Item = &'a str>) -> Vec<Value> {
    all.into_iter().map(|n| json!(n)).collect()
}

/// Whitespace the server trims (Rust's `char::is_whitespace`, less the control characters
/// text may not carry).
const TRIMMED: &str = "[ \\t\\r\\n\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/// A character free text may hold: no control characters but tab and line breaks.
const TEXT_CHAR: &str = "[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]";

/// What one rejection reason may say (blank entries are ignored).
fn reason_pattern() -> String {
    let kinds = DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>().join("|");
    let ws = format!("{TRIMMED}*");
    let doc = format!("(?:{kinds})");
    let visible = format!("(?!{TRIMMED}){TEXT_CHAR}");
    format!(
        "^{ws}(?:(?:documents_not_meeting_requirements|missing_documents){ws}(?::{ws}(?:{doc}(?:{ws},{ws}{doc})*)?)?\
         |inapplicable_scenario{ws}(?::{TEXT_CHAR}*)?|other{ws}:{ws}{visible}{TEXT_CHAR}*)?{ws}$"
    )
}

/// A name: control characters refused, at least one visible character, at most 100.
fn name_pattern() -> String {
    let char = "[^\\u0000-\\u001f\\u007f-\\u009f]";
    format!("^{TRIMMED}*{char}*(?!{TRIMMED}){char}{char}*{TRIMMED}*$")
}

/// `POST /v1/drafts` and `PUT /v1/drafts/{id}`: what a draft holds. Whether the named
/// account exists, and the checks no schema can state (ID-number and credit-code check
/// characters, phone and email forms), are answered with 422 naming the field.
fn draft_input() -> Value {
    let text = json!({ "type": ["string", "null"] });
    let nullable_enum = |values: &[&str]| {
        let mut v = names(values.iter().copied());
        v.push(Value::Null);
        json!({ "enum": v })
    };
    json!({
        "type": "object", "additionalProperties": false, "required": ["entry_point"],
        "properties": {
            "entry_point": {
                "type": "object", "additionalProperties": false, "required": ["kind"],
                "description": "How the applicant reached the appeal: forgot_username (with lookup and value), \
                    forgot_password or security_page (with account)",
                "properties": {
                    "kind": { "enum": ["forgot_username", "forgot_password", "security_page"] },
                    "account": text, "value": text,
                    "lookup": nullable_enum(&["domain", "icp_domain", "email_domain"])
                }
            },
            "items": { "type": "array", "uniqueItems": true,
                       "items": { "enum": names(AppealItem::ALL.iter().map(|i| i.as_str())) } },
            "also_change_secure_phone": { "type": "boolean" },
            "scenario": nullable_enum(&["active", "name_changed", "deregistered"]),
            "operator": {
                "type": ["object", "null"], "additionalProperties": false,
                "properties": {
                    "kind": nullable_enum(&["verified_individual", "other_person"]),
                    "claims_legal_representative": { "type": "boolean" },
                    "name": text,
                    "id_number": { "type": ["string", "null"],
                                   "description": "The 18-character resident ID number; stored only as a keyed hash" },
                    "id": { "type": ["object", "null"], "description": "An ID number as stored (hash and mask)" },
                    "facial_recognition": { "type": ["object", "null"],
                                            "description": "Recorded by the provider's callback only" }
                }
            },
            "contact_phone": text, "contact_email": text,
            "new_company": {
                "type": ["object", "null"], "additionalProperties": false,
                "properties": { "name": text, "credit_code": text }
            },
            "supplementary_content": text,
            "documents": { "type": "array", "items": {
                "type": "object", "additionalProperties": false, "required": ["kind"],
                "properties": {
                    "kind": { "enum": names(DocumentKind::ALL.iter().map(|k| k.as_str())) },
                    "file": text, "sha256": text, "file_name": text, "company_name": text,
                    "size": { "type": ["integer", "null"], "minimum": 0 },
                    "content_type": nullable_enum(&["jpeg", "png", "pdf"]),
                    "stamped": { "type": ["boolean", "null"] },
                    "signatory_share_percent": { "type": ["number", "null"] },
                    "issued": nullable_enum(&["before_deregistration", "after_deregistration"]),
                    "attestation": nullable_enum(&["company_seal", "shareholder_signatures"])
                }
            } },
            "locale": text
        }
    })
}

pub(super) fn schemas() -> Value {
    let ticket = ticket_schema();
    let object = |description: &str| json!({ "type": "object", "description": description });
    let string = json!({ "type": "string" });
    let nullable_string = json!({ "type": ["string", "null"] });
    json!({
        "Problem": {
            "type": "object",
            "description": "RFC 9457 problem details; `code` is stable (also the last segment of `type`)",
            "required": ["type", "title", "status", "detail", "code"],
            "properties": {
                "type": { "type": "string", "format": "uri" },
                "title": string, "status": { "type": "integer" }, "detail": string, "code": string,
                "errors": { "type": "array", "items": {
                    "type": "object", "properties": { "field": string, "rule": string } } },
                "state": string, "version": { "type": "integer" }
            }
        },
        "Decision": {
            "type": "object",
            "required": ["ticket", "transition", "from", "state", "outcome", "version", "replayed"],
            "properties": {
                "ticket": string, "transition": string, "from": nullable_string, "state": string,
                "outcome": nullable_string, "version": { "type": "integer" }, "replayed": { "type": "boolean" },
                "assignee": { "type": "string", "description": "reassign only: who holds the claim now" }
            }
        },
        "QueuePage": {
            "type": "object",
            "properties": {
                "states": { "type": "array", "items": string },
                "page": { "type": "integer" }, "per_page": { "type": "integer" }, "total": { "type": "integer" },
                "items": { "type": "array", "items": {
                    "type": "object",
                    "properties": {
                        "ticket": string, "account": string, "state": string, "version": { "type": "integer" },
                        "assignee": nullable_string,
                        "review_due_at": { "type": ["string", "null"], "format": "date-time" },
                        "breached": { "type": "boolean" }
                    }
                } }
            }
        },
        "AppealDetail": object("The appeal (state, version, timers, history) with its checklist case, documents \
            (metadata only), previous documents, actions, notifications (recipients masked) and entity-change link"),
        "Rejection": {
            "type": "object", "required": ["reasons"], "additionalProperties": false,
            "properties": { "reasons": {
                "type": "array", "items": { "type": "string", "pattern": reason_pattern() },
                "contains": { "type": "string", "pattern": format!("(?!{TRIMMED}){TEXT_CHAR}") },
                "description": "At least one of documents_not_meeting_requirements, inapplicable_scenario, \
                    missing_documents (each may name the documents concerned: `missing_documents: kind, kind`) \
                    and `other: words`; blank entries are ignored"
            } }
        },
        "EntityChangeLink": {
            "type": "object", "required": ["entity_ticket", "account"], "additionalProperties": false,
            "properties": {
                "entity_ticket": ticket.clone(),
                "account": { "type": "string", "description": "The account the new entity's appeal was filed from" }
            }
        },
        "Reassignment": {
            "type": "object", "required": ["to"], "additionalProperties": false,
            "properties": { "to": { "type": "string", "minLength": 1, "maxLength": 100, "pattern": name_pattern(),
                "description": "An active reviewer's name (as on their token), 1 to 100 characters" } }
        },
        "Jobs": { "type": "object", "properties": { "jobs": { "type": "array", "items": object("A job-queue row") } } },
        "JobRetried": {
            "type": "object",
            "properties": { "id": string, "queue": string, "retried": { "type": "boolean" } }
        },
        "WorkflowDocument": {
            "type": "object",
            "properties": {
                "name": string, "version": { "type": "integer" }, "calendar": string,
                "definition": object("The loaded workflow definition"), "mermaid": string
            }
        },
        "Calendars": { "type": "object", "properties": { "calendars": { "type": "array", "items": {
            "type": "object",
            "properties": {
                "name": string, "description": string, "time_zone": string,
                "published": object("first_year and last_year"),
                "years": { "type": "array", "items": { "type": "integer" } },
                "in_use": { "type": "boolean" }
            }
        } } } },
        "OpenApi": object("This OpenAPI 3.1 document"),
        "ProgressQuery": {
            "type": "object", "required": ["ticket", "phone"], "additionalProperties": false,
            "properties": {
                "ticket": { "type": "string", "description": "The ticket number as the applicant has it" },
                "phone": { "type": "string", "description": "The contact phone given with the appeal" }
            }
        },
        "Progress": {
            "type": "object",
            "properties": {
                "ticket": string, "stage": string, "outcome": nullable_string,
                "reasons": { "type": "array", "items": string }, "continue_until": nullable_string,
                "received_at": string, "updated_at": string
            }
        },
        "DraftInput": draft_input(),
        "DraftCreated": {
            "type": "object", "required": ["draft_id", "secret", "checklist"],
            "properties": {
                "draft_id": string, "secret": { "type": "string", "description": "Shown once" },
                "checklist": { "$ref": "#/components/schemas/Checklist" }
            }
        },
        "Draft": {
            "type": "object", "required": ["draft_id", "data", "ticket", "checklist", "created_at", "updated_at"],
            "properties": {
                "draft_id": string, "data": object("The draft as stored (ID numbers only protected and masked)"),
                "ticket": nullable_string,
                "checklist": { "oneOf": [{ "$ref": "#/components/schemas/Checklist" }, { "type": "null" }],
                               "description": "null when the account can no longer be located" },
                "created_at": { "type": "string", "format": "date-time" },
                "updated_at": { "type": "string", "format": "date-time" }
            }
        },
        "DraftReplaced": {
            "type": "object", "required": ["draft_id", "data", "checklist"],
            "properties": {
                "draft_id": string, "data": object("The draft as stored"),
                "checklist": { "$ref": "#/components/schemas/Checklist" }
            }
        },
        "DocumentAdded": {
            "type": "object", "required": ["index", "document"],
            "properties": {
                "index": { "type": "integer", "minimum": 0 },
                "document": object("The document's entry: kind, sha256, size, content type, file name and what the query said"),
                "repeated": { "type": "boolean", "description": "The same file as the same document was already there" }
            }
        },
        "Documents": {
            "type": "object", "required": ["documents"],
            "properties": { "documents": { "type": "array", "items": object("A document's entry") } }
        },
        "FaceRecorded": {
            "type": "object", "required": ["draft_id", "facial_recognition"],
            "properties": { "draft_id": string, "facial_recognition": object("result, provider, reference") }
        },
        "Checklist": object("What each document is for, what is missing, and every other problem"),
        "FacialRecognitionResult": object("The provider's result for a draft"),
        "Submitted": {
            "type": "object", "required": ["ticket", "state", "superseded", "screening"],
            "properties": {
                "ticket": string, "state": string,
                "superseded": { "type": ["string", "null"], "description": "The earlier appeal this one closed" },
                "screening": { "type": ["string", "null"], "description": "Screening's rejection, with guidance" }
            }
        },
        "Resubmitted": {
            "type": "object", "required": ["ticket", "state", "outcome", "version"],
            "properties": { "ticket": string, "state": string, "outcome": nullable_string, "version": { "type": "integer" } }
        },
        "Withdrawn": {
            "type": "object", "required": ["state", "outcome", "version"],
            "properties": { "state": string, "outcome": nullable_string, "version": { "type": "integer" } }
        },
    })
}
