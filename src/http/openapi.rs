//! The OpenAPI 3.1 document of the whole API, built from the route table ([`API`]).

use std::collections::BTreeMap;

use axum::Json;
use serde_json::{Value, json};

use super::api::{ADMINS, API, Access, ApiRoute, Body, Reply, STAFF};
use super::extractors::MAX_KEY_CHARS;
use crate::domain::document::DocumentKind;

pub(super) async fn openapi() -> Json<Value> {
    Json(openapi_document())
}

fn problem_response(status: u16) -> (String, Value) {
    let description = match status {
        401 => "No token, or an unknown or revoked one",
        403 => "The role, or the claim, does not allow it",
        404 => "Not found",
        409 => "Conflict: the appeal's current state and version are in the problem",
        413 => "Body too large",
        422 => "Invalid input: the fields at fault are in `errors`",
        429 => "Too many requests (see Retry-After)",
        503 => "Not ready",
        _ => "Problem",
    };
    (
        status.to_string(),
        json!({
            "description": description,
            "content": { "application/problem+json": { "schema": { "$ref": "#/components/schemas/Problem" } } }
        }),
    )
}

fn path_parameters(path: &str) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| {
            let description = match name {
                "ticket" => "The appeal's ticket number (20 digits; '-' or spaces may separate groups)",
                "sha256" => "The document's SHA-256 (64 hex characters)",
                "id" => "The draft's or job's id",
                "index" => "The document's position in the draft, from 0",
                _ => "",
            };
            let schema = match name {
                "index" => json!({ "type": "integer", "minimum": 0 }),
                "ticket" => json!({ "type": "string", "pattern": "^[0-9]{4}([- ]?[0-9]{4}){4}$" }),
                "sha256" => json!({ "type": "string", "pattern": "^[0-9a-fA-F]{64}$" }),
                _ => json!({ "type": "string", "minLength": 1, "maxLength": 100 }),
            };
            json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
        })
        .collect()
}

fn operation(r: &ApiRoute) -> Value {
    let mut parameters = path_parameters(r.path);
    for q in r.query {
        let mut schema: Value = serde_json::from_str(q.schema).expect("a route table's query schema is JSON");
        if r.body == Body::Multipart && q.name == "kind" {
            schema =
                json!({ "type": "string", "enum": DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>() });
        }
        parameters.push(json!({
            "name": q.name, "in": "query", "required": q.required, "description": q.description, "schema": schema
        }));
    }
    if r.method == "POST" && r.unkeyed.is_none() {
        parameters.push(json!({
            "name": "Idempotency-Key", "in": "header", "required": false,
            "description": "A repeat with the same key answers as the first request did (`replayed: true`)",
            "schema": { "type": "string", "pattern": format!("^[\\x21-\\x7e]{{1,{MAX_KEY_CHARS}}}$") }
        }));
    }
    if r.if_match {
        parameters.push(json!({
            "name": "If-Match", "in": "header", "required": false,
            "description": "The appeal's version the decision was made on; a stale one gets 409",
            "schema": { "type": "string", "pattern": "^(W/)?\"?[1-9][0-9]{0,17}\"?$" }
        }));
    }
    if r.access == Access::Applicant && !r.path.contains("{id}") {
        parameters.push(json!({
            "name": "X-Draft-Id", "in": "header", "required": true,
            "description": "The draft the appeal was submitted from", "schema": { "type": "string" }
        }));
    }
    if r.access == Access::Applicant {
        parameters.push(json!({
            "name": "X-Draft-Secret", "in": "header", "required": true,
            "description": "The draft's secret, as returned when it was created", "schema": { "type": "string" }
        }));
    }
    let schema_ref = |name: &str| json!({ "$ref": format!("#/components/schemas/{name}") });
    let ok = match r.reply {
        Reply::Json(name) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": schema_ref(name) } } })
        }
        Reply::Text => json!({ "description": "OK", "content": { "text/plain": { "schema": { "type": "string" } } } }),
        Reply::Document => json!({
            "description": "The document, with its stored content type",
            "content": {
                "image/jpeg": { "schema": { "type": "string", "format": "binary" } },
                "image/png": { "schema": { "type": "string", "format": "binary" } },
                "application/pdf": { "schema": { "type": "string", "format": "binary" } }
            }
        }),
    };
    let mut responses = serde_json::Map::new();
    responses.insert(r.status.to_string(), ok);
    let mut statuses: Vec<u16> = r.errors.to_vec();
    match r.access {
        Access::Staff(roles) => {
            statuses.push(401);
            if roles != STAFF {
                statuses.push(403);
            }
        }
        Access::Applicant | Access::Provider => statuses.push(401),
        Access::Public => {}
    }
    if !matches!(r.body, Body::None) {
        statuses.extend([413, 422]);
    }
    statuses.sort_unstable();
    statuses.dedup();
    for status in statuses {
        let (k, v) = problem_response(status);
        responses.insert(k, v);
    }
    let tag = match r.access {
        Access::Staff(roles) if roles == ADMINS => "admin",
        Access::Staff(_) => "reviewers",
        Access::Applicant | Access::Provider => "applicants",
        Access::Public if r.path.starts_with("/v1/drafts") => "applicants",
        Access::Public => "service",
    };
    let mut op = json!({
        "operationId": r.operation,
        "summary": r.summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": responses,
    });
    if let Some(why) = r.unkeyed {
        op["x-repeat"] = json!(why);
    }
    // The other success answers carry the same body as the first.
    for (status, description) in r.also {
        let mut answer = op["responses"][r.status.to_string()].clone();
        answer["description"] = json!(description);
        op["responses"][status.to_string()] = answer;
    }
    match r.access {
        Access::Staff(roles) => {
            op["security"] = json!([{ "bearer": [] }]);
            op["x-roles"] = json!(roles.iter().map(|r| r.as_str()).collect::<Vec<_>>());
        }
        Access::Provider => op["security"] = json!([{ "providerSignature": [] }]),
        Access::Applicant | Access::Public => op["security"] = json!([]),
    }
    match r.body {
        Body::None => {}
        Body::Empty => {
            op["requestBody"] = json!({
                "required": false,
                "content": { "application/json": { "schema": { "type": "object", "maxProperties": 0 } } }
            });
        }
        Body::Json(name) => {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": schema_ref(name) } } });
        }
        Body::Multipart => {
            op["requestBody"] = json!({
                "required": true,
                "content": { "multipart/form-data": { "schema": {
                    "type": "object", "required": ["file"],
                    "description": "One part, the file; what it is goes in the query (`kind`, ...)",
                    "properties": { "file": { "type": "string", "format": "binary" } }
                } } }
            });
        }
    }
    op
}

fn schemas() -> Value {
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
            "properties": { "reasons": { "type": "array", "minItems": 1, "items": string,
                "description": "documents_not_meeting_requirements, inapplicable_scenario, missing_documents, other (each may say `: detail`)" } }
        },
        "EntityChangeLink": {
            "type": "object", "required": ["entity_ticket", "account"], "additionalProperties": false,
            "properties": { "entity_ticket": string, "account": string }
        },
        "Reassignment": {
            "type": "object", "required": ["to"], "additionalProperties": false,
            "properties": { "to": { "type": "string", "description": "A reviewer's name (as on their token)" } }
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
            "properties": { "ticket": string, "phone": string }
        },
        "Progress": {
            "type": "object",
            "properties": {
                "ticket": string, "stage": string, "outcome": nullable_string,
                "reasons": { "type": "array", "items": string }, "continue_until": nullable_string,
                "received_at": string, "updated_at": string
            }
        },
        "DraftInput": object("A draft's content: entry point, items, scenario, operator, contact, documents"),
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

/// The OpenAPI 3.1 document of the whole API, from [`API`].
pub fn openapi_document() -> Value {
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for r in API {
        paths.entry(r.path).or_default().insert(r.method.to_ascii_lowercase(), operation(r));
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "appealflow",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Account appeals: applicants' drafts and submissions, reviewers' queue and decisions, \
                            admins' jobs, workflow and calendars. Errors are RFC 9457 problem documents."
        },
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer",
                            "description": "A reviewer's, lead's or admin's token (appealflow tokens create)" },
                "providerSignature": { "type": "apiKey", "in": "header", "name": "X-Appealflow-Signature",
                                       "description": "HMAC-SHA256 with the provider's secret, over the \
                                                       X-Appealflow-Timestamp header and the body" }
            }
        }
    })
}
