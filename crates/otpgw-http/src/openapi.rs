//! The OpenAPI 3 document of the HTTP API, generated from the handlers' and types'
//! annotations (utoipa). `docs/openapi.json` is this document; a test keeps the two
//! equal, and `otpgw openapi` prints it.

use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every error's body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable code (see docs/verify.md and the `error` module).
    #[schema(example = "invalid_number")]
    pub code: String,
    pub message: String,
    /// The request field at fault, when one is.
    pub field: Option<String>,
}

/// Every error an operation can answer, added to each operation in one place
/// (the handlers' annotations keep only their successes and particular cases):
/// the body of each is [`ErrorBody`]; 429 and 503 carry `Retry-After`.
struct Errors;

/// (status, description, for operations with a body only, with `Retry-After`).
const ERRORS: &[(&str, &str, bool, bool)] = &[
    (
        "400",
        "Malformed request: bad JSON, a field of the wrong type or out of range, an unknown field, a malformed Idempotency-Key",
        true,
        false,
    ),
    ("401", "No or unknown API key", false, false),
    (
        "403",
        "The key may not be used from this address, or the sender or destination is outside the brand's allow-lists",
        false,
        false,
    ),
    ("404", "No such resource for this brand", false, false),
    (
        "408",
        "The body did not arrive within the body timeout",
        true,
        false,
    ),
    ("413", "The body is over the size cap", true, false),
    (
        "415",
        "Content-Type missing or not application/json",
        true,
        false,
    ),
    (
        "422",
        "Idempotency-Key used with a different request, or no route for the destination",
        true,
        false,
    ),
    (
        "429",
        "Too many failed authentications from this address, or over a limit; Retry-After says when to try again",
        false,
        true,
    ),
    (
        "503",
        "Temporarily unable (store, queue, carriers, shutting down, not configured); Retry-After says when to try again",
        false,
        true,
    ),
];

impl Modify for Errors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::header::HeaderBuilder;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder, schema::Type};
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.post].into_iter().flatten() {
                let has_body = op.request_body.is_some();
                for (status, what, body_only, retry) in ERRORS {
                    if (*body_only && !has_body) || op.responses.responses.contains_key(*status) {
                        continue;
                    }
                    let mut r = ResponseBuilder::new().description(*what).content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("ErrorBody")))
                            .build(),
                    );
                    if *retry {
                        r = r.header(
                            "Retry-After",
                            HeaderBuilder::new()
                                .schema(
                                    utoipa::openapi::ObjectBuilder::new()
                                        .schema_type(Type::Integer)
                                        .minimum(Some(1)),
                                )
                                .description(Some("Seconds to wait before trying again"))
                                .build(),
                        );
                    }
                    op.responses
                        .responses
                        .insert((*status).to_string(), r.build().into());
                }
            }
        }
    }
}

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The brand's API key (`otpgw new-api-key`)"))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "otpgw HTTP API",
        description = "Messages and verifications (one-time codes) for brands. Every message takes the same path as an SMPP submit_sm: validation, brand limits, durable store, priority queue, carriers.",
        version = "1"
    ),
    paths(
        crate::send_message,
        crate::get_message,
        crate::start_verification,
        crate::get_verification,
        crate::check_verification,
        crate::resend_verification
    ),
    components(schemas(ErrorBody, ErrorDetail)),
    modifiers(&Security, &Errors),
    tags(
        (name = "messages", description = "Texts from the brand, with receipts as signed webhooks"),
        (name = "verifications", description = "One-time codes generated, sent, checked once")
    )
)]
struct ApiDoc;

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as pretty JSON (what `docs/openapi.json` holds).
pub fn json() -> String {
    let mut s = document().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    /// docs/openapi.json is the document the code generates (regenerate it with
    /// `otpgw openapi > docs/openapi.json`).
    #[test]
    fn the_shipped_document_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
        let shipped = std::fs::read_to_string(path).unwrap();
        assert!(
            shipped == super::json(),
            "docs/openapi.json is stale: run `otpgw openapi > docs/openapi.json`"
        );
    }

    #[test]
    fn every_operation_is_documented_with_its_errors() {
        let doc = serde_json::to_value(super::document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        let mut ops = Vec::new();
        for (p, item) in paths {
            for (m, op) in item.as_object().unwrap() {
                ops.push(format!("{} {p}", m.to_uppercase()));
                assert!(op["responses"].as_object().unwrap().len() >= 2, "{m} {p}");
            }
        }
        ops.sort();
        assert_eq!(
            ops,
            [
                "GET /v1/messages/{id}",
                "GET /v1/verifications/{id}",
                "POST /v1/messages",
                "POST /v1/verifications",
                "POST /v1/verifications/{id}/check",
                "POST /v1/verifications/{id}/resend",
            ]
        );
    }
}
