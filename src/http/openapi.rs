//! The OpenAPI 3.1 document of the whole API, built from the route table ([`API`]): the
//! operations from its lines, the component schemas from the types they name.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::Shared;
use super::api::{ADMINS, API, Access, ApiRoute, Body, Reply, STAFF};
use super::error::Problem;
use super::extractors::MAX_KEY_CHARS;
use super::schemas::{Component, components, json_of, schema};
use crate::domain::TicketNumber;
use crate::domain::document::DocumentKind;
use crate::workflow::Workflow;

/// This OpenAPI 3.1 document (free-form: its schema is the OpenAPI specification's).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(value_type = Object)]
pub(super) struct OpenApi(Value);

pub(super) async fn openapi(State(state): State<Shared>) -> Json<OpenApi> {
    Json(OpenApi(openapi_document(state.engine().workflow())))
}

/// The `$ref` of a component.
fn schema_ref(c: &Component) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", c.name) })
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
            "content": { "application/problem+json": { "schema": schema_ref(&schema::<Problem<'static>>()) } }
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
                "ticket" => json_of::<TicketNumber>(),
                "sha256" => json!({ "type": "string", "pattern": "^[0-9a-fA-F]{64}$" }),
                _ => json!({ "type": "string", "minLength": 1, "maxLength": 100 }),
            };
            json!({ "name": name, "in": "path", "required": true, "description": description, "schema": schema })
        })
        .collect()
}

fn operation(r: &ApiRoute, wf: &Workflow) -> Value {
    let mut parameters = path_parameters(r.path);
    for q in r.query {
        let mut schema: Value = serde_json::from_str(q.schema).expect("a route table's query schema is JSON");
        if matches!(r.body, Body::Multipart) && q.name == "kind" {
            schema =
                json!({ "type": "string", "enum": DocumentKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>() });
        }
        if r.operation == "queue" && q.name == "state" {
            // The workflow's open states, comma-separated.
            let one = format!("(?:{})", wf.open_states().join("|"));
            schema = json!({ "type": "string", "pattern": format!("^{one}(?:,{one})*$") });
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
    let ok = match r.reply {
        Reply::Json(of) => {
            json!({ "description": "OK", "content": { "application/json": { "schema": schema_ref(&of()) } } })
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
    if let Some(links) = links(r.operation) {
        op["responses"][r.status.to_string()]["links"] = links;
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
        Body::Json(of) => {
            op["requestBody"] =
                json!({ "required": true, "content": { "application/json": { "schema": schema_ref(&of()) } } });
        }
        Body::Multipart => {
            op["requestBody"] = json!({
                "required": true,
                "content": { "multipart/form-data": {
                    "schema": {
                        "type": "object", "required": ["file"], "additionalProperties": false,
                        "description": "Exactly one part, the file; what it is goes in the query (`kind`, ...)",
                        "properties": { "file": { "type": "string", "format": "binary" } }
                    },
                    "encoding": { "file": { "contentType": "image/jpeg, image/png, application/pdf" } }
                } }
            });
        }
    }
    op
}

/// Where an answer leads: the applicant's walk (draft → documents → submit → progress,
/// withdraw) and the reviewer's (appeal → claim → decide), so a client, or a stateful
/// test, can follow it.
fn links(operation: &str) -> Option<Value> {
    let draft = |op: &str, id: &str, secret: &str| json!({ "operationId": op, "parameters": { "path.id": id, "header.X-Draft-Secret": secret } });
    let created = |op: &str| draft(op, "$response.body#/draft_id", "$response.body#/secret");
    let same = |op: &str| draft(op, "$request.path.id", "$request.header.X-Draft-Secret");
    let appeal = |op: &str, ticket: &str| json!({ "operationId": op, "parameters": { "path.ticket": ticket } });
    let decided = |op: &str| {
        json!({ "operationId": op, "parameters": {
            "path.ticket": "$request.path.ticket", "header.If-Match": "$response.body#/version" } })
    };
    Some(match operation {
        "create_draft" => json!({
            "GetDraft": created("get_draft"), "ReplaceDraft": created("put_draft"),
            "AddDocument": created("add_document"), "Checklist": created("draft_checklist"),
            "Submit": created("submit_draft")
        }),
        "put_draft" => json!({ "AddDocument": same("add_document"), "Submit": same("submit_draft") }),
        "add_document" => {
            let at = |op: &str| {
                json!({ "operationId": op, "parameters": {
                    "path.id": "$request.path.id", "path.index": "$response.body#/index",
                    "header.X-Draft-Secret": "$request.header.X-Draft-Secret" } })
            };
            json!({
                "ReplaceDocument": at("replace_document"), "RemoveDocument": at("remove_document"),
                "Checklist": same("draft_checklist"), "Submit": same("submit_draft")
            })
        }
        "submit_draft" => json!({
            "Progress": { "operationId": "progress",
                          "requestBody": { "ticket": "$response.body#/ticket", "phone": "+8613900002222" } },
            "Withdraw": { "operationId": "withdraw", "parameters": {
                "path.ticket": "$response.body#/ticket", "header.X-Draft-Id": "$request.path.id",
                "header.X-Draft-Secret": "$request.header.X-Draft-Secret" } },
            "Appeal": appeal("appeal", "$response.body#/ticket"),
            "Claim": appeal("claim", "$response.body#/ticket")
        }),
        "claim" => json!({
            "Approve": decided("approve"), "Reject": decided("reject"), "Release": decided("release"),
            "Appeal": appeal("appeal", "$request.path.ticket")
        }),
        "approve" => json!({
            "ConfirmApproval": decided("confirm_approval"), "SendBack": decided("send_back"),
            "Appeal": appeal("appeal", "$request.path.ticket")
        }),
        _ => return None,
    })
}

/// Every type the document names: the problem, and each route's body and answer.
fn named_types() -> impl Iterator<Item = Component> {
    let bodies = API.iter().filter_map(|r| match r.body {
        Body::Json(of) => Some(of()),
        _ => None,
    });
    let replies = API.iter().filter_map(|r| match r.reply {
        Reply::Json(of) => Some(of()),
        _ => None,
    });
    std::iter::once(schema::<Problem<'static>>()).chain(bodies).chain(replies)
}

/// The OpenAPI 3.1 document of the whole API, from [`API`].
pub fn openapi_document(wf: &Workflow) -> Value {
    let mut paths: BTreeMap<&str, serde_json::Map<String, Value>> = BTreeMap::new();
    for r in API {
        paths.entry(r.path).or_default().insert(r.method.to_ascii_lowercase(), operation(r, wf));
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
            "schemas": components(named_types()),
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
