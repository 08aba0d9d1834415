//! The component schemas of the OpenAPI document come from the types the handlers read
//! and answer with (`utoipa::ToSchema`): the route table names a type ([`schema`]), and
//! `openapi.rs` collects that type's schema and every schema it refers to. This module
//! keeps the few schemas no derive attribute can state, each a hand-implemented
//! `PartialSchema` or a `schema_with` function: the ticket number, the rejection reasons
//! and the reviewer's name (patterns built from the domain's own lists).

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde_json::{Value, json};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::{RefOr, extensions::Extensions};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::TicketNumber;
use crate::domain::document::DocumentKind;

/// A type's component schema, and those it refers to.
pub struct Component {
    pub name: Cow<'static, str>,
    pub schema: RefOr<Schema>,
    pub refers_to: Vec<(String, RefOr<Schema>)>,
}

/// How the route table names a body's or an answer's type: `schema::<Rejection>`.
pub type SchemaOf = fn() -> Component;

/// The component schema of `T`, as its derive (or hand-written impl) states it.
pub fn schema<T: ToSchema>() -> Component {
    let mut refers_to = Vec::new();
    T::schemas(&mut refers_to);
    Component { name: T::name(), schema: T::schema(), refers_to }
}

/// The components section: every named type's schema, once. Two different schemas
/// under one name (two types of the same name) are a programming error.
pub(super) fn components(all: impl IntoIterator<Item = Component>) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let mut add = |name: String, schema: &RefOr<Schema>| {
        let schema = serde_json::to_value(schema).expect("schemas serialise");
        if let Some(before) = out.insert(name.clone(), schema.clone()) {
            assert_eq!(before, schema, "two different types are named {name} in the OpenAPI document");
        }
    };
    for c in all {
        add(c.name.into_owned(), &c.schema);
        for (name, schema) in &c.refers_to {
            add(name.clone(), schema);
        }
    }
    out
}

/// The JSON of a schema, for the operations part (parameters).
pub(super) fn json_of<T: PartialSchema>() -> Value {
    serde_json::to_value(T::schema()).expect("schemas serialise")
}

// ------------------------------------------------------------- the ticket number

const TICKET_PATTERN: &str = "^[0-9]{4}([- ]?[0-9]{4}){4}$";

/// A ticket number as a client sends it: 20 digits (groups of four may be separated by
/// '-' or a space), the last a Damm check digit over the others. The `ticket-number`
/// format names the check digit, which no pattern can express; a mistyped ticket is
/// refused with 422. Hand-written: the type parses itself from a string.
impl PartialSchema for TicketNumber {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("ticket-number".into())))
            .pattern(Some(TICKET_PATTERN))
            .description(Some("20 digits, the last a Damm check digit; '-' or a space may separate groups of four"))
            .into()
    }
}

impl ToSchema for TicketNumber {}

// ------------------------------------------------------------- free text

/// Whitespace the server trims (Rust's `char::is_whitespace`, less the control characters
/// text may not carry).
const TRIMMED: &str = "[ \\t\\r\\n\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
/// A character free text may hold: no control characters but tab and line breaks.
const TEXT_CHAR: &str = "[^\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]";

/// What one rejection reason may say (blank entries are ignored): built from the
/// document kinds, so hand-written.
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

/// A rejection's reasons (`Rejection::reasons`): each matches [`reason_pattern`], and at
/// least one is not blank. JSON Schema's `contains` has no utoipa attribute or builder
/// method, so it is added as a raw keyword beside the array's others.
pub(super) fn rejection_reasons() -> Schema {
    let item = ObjectBuilder::new().schema_type(Type::String).pattern(Some(reason_pattern()));
    let mut keywords = Extensions::default();
    keywords.insert("contains".into(), json!({ "type": "string", "pattern": format!("(?!{TRIMMED}){TEXT_CHAR}") }));
    ArrayBuilder::new()
        .items(item)
        .description(Some(
            "At least one of documents_not_meeting_requirements, inapplicable_scenario, missing_documents (each may \
             name the documents concerned: `missing_documents: kind, kind`) and `other: words`; blank entries are \
             ignored",
        ))
        .extensions(Some(keywords))
        .into()
}

/// Why a first approval goes back (`SendBack::reasons`): free text without control
/// characters but tab and line breaks, at least one entry not blank.
pub(super) fn send_back_reasons() -> Schema {
    let item = ObjectBuilder::new().schema_type(Type::String).pattern(Some(format!("^{TEXT_CHAR}*$")));
    let mut keywords = Extensions::default();
    keywords.insert("contains".into(), json!({ "type": "string", "pattern": format!("(?!{TRIMMED}){TEXT_CHAR}") }));
    ArrayBuilder::new()
        .items(item)
        .description(Some("Why the first approval goes back for review: at least one entry that is not blank"))
        .extensions(Some(keywords))
        .into()
}

/// A reviewer's name (`Reassignment::to`): control characters refused, at least one
/// visible character, 1 to 100 characters. The pattern is built from the whitespace the
/// server trims, so hand-written.
pub(super) fn reviewer_name() -> Schema {
    let char = "[^\\u0000-\\u001f\\u007f-\\u009f]";
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(100))
        .pattern(Some(format!("^{TRIMMED}*{char}*(?!{TRIMMED}){char}{char}*{TRIMMED}*$")))
        .description(Some("An active reviewer's name (as on their token), 1 to 100 characters"))
        .into()
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::TICKET_PATTERN;
    use crate::workflow::Workflow;

    fn components() -> Value {
        let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workflows");
        let wf = Workflow::load(&dir.join("account-appeal"), &dir.join("calendars")).expect("shipped workflow loads");
        super::super::openapi::openapi_document(&wf)["components"]["schemas"].take()
    }

    /// The derived components state what the server checks (what schemathesis relies on).
    #[test]
    fn derived_components_keep_the_constraints_the_server_checks() {
        let s = components();
        assert_eq!(s["TicketNumber"]["format"], "ticket-number");
        assert_eq!(s["TicketNumber"]["pattern"], TICKET_PATTERN);
        assert_eq!(s["EntityChangeLink"]["properties"]["entity_ticket"]["$ref"], "#/components/schemas/TicketNumber");
        let reasons = &s["Rejection"]["properties"]["reasons"];
        assert!(reasons["items"]["pattern"].as_str().unwrap().contains("|missing_documents)"), "{reasons}");
        assert!(reasons["contains"]["pattern"].is_string(), "{reasons}");
        let to = &s["Reassignment"]["properties"]["to"];
        assert_eq!((&to["minLength"], &to["maxLength"]), (&json!(1), &json!(100)));
        assert!(to["pattern"].is_string());
        for name in ["DraftInput", "Rejection", "Reassignment", "EntityChangeLink", "ProgressQuery"] {
            assert_eq!(s[name]["additionalProperties"], false, "{name}: serde refuses unknown members");
        }
        let draft = &s["DraftInput"];
        assert_eq!(draft["required"], json!(["entry_point"]));
        assert_eq!(draft["properties"]["scenario"]["oneOf"][0]["type"], "null", "an Option accepts null");
        assert_eq!(draft["properties"]["contact_phone"]["type"], json!(["string", "null"]));
        assert_eq!(draft["properties"]["items"]["uniqueItems"], true);
        assert_eq!(draft["properties"]["operator"]["oneOf"][1]["additionalProperties"], false);
        assert_eq!(
            s["CommandOutcome"]["required"],
            json!(["ticket", "transition", "from", "state", "outcome", "version", "replayed"])
        );
        assert_eq!(s["Problem"]["required"], json!(["type", "title", "status", "detail", "code"]));
        assert_eq!(s["Problem"]["properties"]["state"]["type"], "string", "present only on a conflict, never null");
    }
}
