//! The served OpenAPI document: valid, self-contained, one operation per route
//! the router serves, and answered by the running router as it says.

use command_api::error::ApiError;
use command_api::openapi::{self, Auth};
use command_api::routes::invoices::{ACTIONS, BULK};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn doc() -> Value {
    serde_json::from_slice(openapi::document_bytes()).expect("the document is JSON")
}

/// Every (METHOD, path) of the document, path parameters written `{}`.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            assert!(
                METHODS.contains(&method.as_str()),
                "{path}: unexpected key {method}"
            );
            out.insert((method.to_uppercase(), normalize(path)));
        }
    }
    out
}

/// `/invoices/{id}/x` and `/invoices/{invoice_id}/x` are the same route.
fn normalize(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') && s.ends_with('}') {
                "{}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("path item") {
            out.push((method.clone(), path.clone(), op));
        }
    }
    out
}

// ---------------------------------------------------------------------------
// The document itself
// ---------------------------------------------------------------------------

#[test]
fn the_document_is_openapi_3_1_json() {
    let doc = doc();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["title"], "Expereon API");
    assert!(doc["info"]["version"].is_string());
    assert_eq!(
        doc,
        openapi::document(),
        "served bytes and document() agree"
    );
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for name in [
        "Invoice",
        "LineItem",
        "Connection",
        "Organization",
        "ApiKey",
        "Payment",
        "Balance",
        "BalanceChange",
        "Transaction",
        "Withdrawal",
        "Refund",
        "WebhookEndpoint",
        "File",
        "InvoicePage",
        "InvoiceBulkResult",
        "BulkPreview",
        "Error",
        "Money",
    ] {
        assert!(
            schemas.contains_key(name),
            "components/schemas/{name} is missing"
        );
    }
    assert_eq!(schemas["Money"]["type"], "string");
    assert!(schemas["Money"]["pattern"].is_string());
    assert_eq!(schemas["Timestamp"]["format"], "date-time");
    assert_eq!(schemas["Date"]["format"], "date");
    for scheme in ["apiKey", "apiSecret", "adminToken"] {
        assert_eq!(
            doc["components"]["securitySchemes"][scheme]["type"],
            "apiKey"
        );
    }
}

#[test]
fn the_conventions_are_documented() {
    let doc = doc();
    let info = doc["info"]["description"]
        .as_str()
        .expect("info.description");
    for needle in [
        "requestId",
        "Idempotency-Key",
        "IDEMPOTENCY_KEY_REUSED",
        "decimal **strings**",
        "minor units",
        "nextCursor",
        "`createdAt` descending",
        "order=asc|desc",
        "`dueBefore` and `dueAfter` are inclusive",
        "X-Request-Id",
    ] {
        assert!(
            info.contains(needle),
            "info.description does not mention {needle:?}"
        );
    }
    let limit = &doc["components"]["parameters"]["Limit"]["schema"];
    assert_eq!(limit["maximum"], command_api::paging::MAX_LIMIT);
    assert_eq!(limit["default"], command_api::paging::DEFAULT_LIMIT);
    let list = &doc["paths"]["/api/v1/invoices"]["get"];
    let sort = list["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "sort")
        .expect("sort parameter");
    assert_eq!(sort["schema"]["default"], "createdAt");
}

fn resolve<'a>(doc: &'a Value, pointer: &str) -> Option<&'a Value> {
    doc.pointer(pointer.strip_prefix('#')?)
}

/// The value itself, or what its `$ref` points at.
fn deref<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str() {
        Some(r) => resolve(doc, r).unwrap_or_else(|| panic!("unresolved {r}")),
        None => v,
    }
}

fn walk<'a>(v: &'a Value, at: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    out.push((at.clone(), x.as_str().unwrap_or("<not a string>")));
                } else {
                    walk(x, format!("{at}/{k}"), out);
                }
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_ref_resolves() {
    let doc = doc();
    let mut refs = Vec::new();
    walk(&doc, String::new(), &mut refs);
    assert!(refs.len() > 100, "the document uses shared components");
    let broken: Vec<_> = refs
        .iter()
        .filter(|(_, r)| !r.starts_with("#/") || resolve(&doc, r).is_none())
        .collect();
    assert!(broken.is_empty(), "unresolved $ref: {broken:#?}");
}

#[test]
fn every_operation_documents_success_and_errors() {
    let doc = doc();
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let mut ids = BTreeSet::new();
    for (method, path, op) in operations(&doc) {
        let at = format!("{} {path}", method.to_uppercase());
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{at}: operationId"));
        assert!(
            ids.insert(id.to_owned()),
            "{at}: duplicate operationId {id}"
        );
        for field in ["summary", "description"] {
            assert!(
                op[field].as_str().is_some_and(|s| !s.is_empty()),
                "{at}: {field}"
            );
        }
        assert_eq!(
            op["tags"].as_array().map(Vec::len),
            Some(1),
            "{at}: one tag"
        );
        assert!(op["security"].is_array(), "{at}: security is explicit");
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{at}: responses"));
        assert!(responses.contains_key("200"), "{at}: 200");
        // A health check's 503 is its own body, saying why (`Success::JsonOr503`).
        let errors: Vec<_> = responses
            .iter()
            .filter(|(s, _)| s.as_str() >= "400")
            .filter(|(s, _)| !(s.as_str() == "503" && op["operationId"] == "getHealth"))
            .collect();
        assert!(!errors.is_empty(), "{at}: no error response");
        assert!(responses.contains_key("500"), "{at}: 500");
        for (status, response) in errors {
            let media = &deref(&doc, response)["content"]["application/json"];
            assert_eq!(
                media["schema"]["$ref"], "#/components/schemas/Error",
                "{at} {status}"
            );
            let examples = media["examples"]
                .as_object()
                .unwrap_or_else(|| panic!("{at} {status}: examples"));
            assert!(!examples.is_empty(), "{at} {status}");
            for (name, example) in examples {
                let code = deref(&doc, example)["value"]["error"]["code"]
                    .as_str()
                    .unwrap_or("");
                assert!(
                    codes.contains(code),
                    "{at} {status} {name}: code {code:?} not in ErrorCode"
                );
                assert!(
                    deref(&doc, example)["value"]["error"]["message"].is_string(),
                    "{at} {status} {name}"
                );
            }
        }
        if let Some(body) = op.get("requestBody") {
            for status in ["400", "413"] {
                assert!(
                    responses.contains_key(status),
                    "{at}: a body call documents {status}"
                );
            }
            for (media, content) in body["content"].as_object().unwrap() {
                let schema = &content["schema"];
                if media == "application/json" || media.starts_with("multipart/") {
                    assert!(
                        schema["$ref"]
                            .as_str()
                            .is_some_and(|r| r.starts_with("#/components/schemas/")),
                        "{at}: the {media} request body references components/schemas"
                    );
                }
            }
        }
        let idempotent = op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["$ref"] == "#/components/parameters/IdempotencyKey");
        let replays = responses["200"]["headers"]["Idempotent-Replayed"].is_object();
        assert!(!replays || idempotent, "{at}: a replayed call takes a key");
        if replays {
            let conflicts =
                &deref(&doc, &responses["409"])["content"]["application/json"]["examples"];
            for code in ["IDEMPOTENCY_KEY_REUSED", "REQUEST_IN_PROGRESS"] {
                assert!(
                    conflicts[code].is_object(),
                    "{at}: a replayed call documents 409 {code}"
                );
            }
        }
        if method != "get" && !path.ends_with("/admin/clock") {
            assert!(
                idempotent,
                "{at}: every mutation takes a requestId / Idempotency-Key"
            );
        }
        let authenticated = op["security"].as_array().is_some_and(|s| !s.is_empty());
        if authenticated {
            assert!(responses.contains_key("401"), "{at}: 401");
        }
        if op["x-permissions"].is_array() {
            assert!(responses.contains_key("403"), "{at}: 403");
            assert!(responses.contains_key("429"), "{at}: 429");
            assert!(
                deref(&doc, &responses["429"])["headers"]["Retry-After"].is_object(),
                "{at}: Retry-After"
            );
        }
        if path.contains('{') {
            assert!(
                responses.contains_key("404"),
                "{at}: an id in the path can be unknown"
            );
        }
    }
}

#[test]
fn state_and_balance_errors_are_where_the_contract_puts_them() {
    let doc = doc();
    let codes_at = |method: &str, path: &str, status: &str| -> BTreeSet<String> {
        deref(&doc, &doc["paths"][path][method]["responses"][status])["content"]["application/json"]
            ["examples"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|e| {
                        deref(&doc, e)["value"]["error"]["code"]
                            .as_str()
                            .map(str::to_owned)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let approve = codes_at("post", "/api/v1/invoices/{id}/approve", "400");
    assert!(
        approve.contains("INVALID_STATE_TRANSITION") && approve.contains("INSUFFICIENT_BALANCE")
    );
    assert!(codes_at("patch", "/api/v1/invoices/{id}", "409").contains("VERSION_CONFLICT"));
    for (method, path) in [
        ("post", "/api/v1/invoices"),
        ("post", "/api/v1/payments/settle"),
    ] {
        let conflicts = codes_at(method, path, "409");
        assert!(
            conflicts.contains("IDEMPOTENCY_KEY_REUSED")
                && conflicts.contains("REQUEST_IN_PROGRESS")
        );
        assert!(codes_at(method, path, "413").contains("PAYLOAD_TOO_LARGE"));
    }
    assert!(
        codes_at("post", "/api/v1/treasury/{orgId}/withdrawals", "400")
            .contains("INSUFFICIENT_BALANCE")
    );
}

#[test]
fn error_codes_and_statuses_follow_error_rs() {
    let doc = doc();
    let documented: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let every = [
        ApiError::Validation(String::new()),
        ApiError::ValidationDetails {
            message: String::new(),
            details: json!({}),
        },
        ApiError::InvalidState {
            message: String::new(),
            current: "DRAFT",
        },
        ApiError::InsufficientBalance {
            message: String::new(),
            details: json!({}),
        },
        ApiError::Unauthorized(""),
        ApiError::Forbidden(String::new()),
        ApiError::NotFound("invoice"),
        ApiError::RouteNotFound,
        ApiError::MethodNotAllowed,
        ApiError::VersionConflict {
            message: String::new(),
            current: 1,
        },
        ApiError::IdempotencyKeyReused,
        ApiError::RequestInProgress,
        ApiError::PayloadTooLarge { limit: 1 },
        ApiError::UnsupportedMediaType(String::new()),
        ApiError::RateLimited {
            retry_after_secs: 1,
        },
        ApiError::Unavailable,
        ApiError::Unanswered(String::new()),
        ApiError::DiskFull { free: 0, floor: 1 },
        ApiError::RequestTimeout { limit_secs: 1 },
        ApiError::Internal(String::new()),
    ];
    // Exhaustive on purpose: a new ApiError variant stops this test from
    // compiling until it is listed above (and so checked against ErrorCode).
    for e in &every {
        match e {
            ApiError::Validation(_)
            | ApiError::ValidationDetails { .. }
            | ApiError::InvalidState { .. }
            | ApiError::InsufficientBalance { .. }
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::RouteNotFound
            | ApiError::MethodNotAllowed
            | ApiError::VersionConflict { .. }
            | ApiError::IdempotencyKeyReused
            | ApiError::RequestInProgress
            | ApiError::PayloadTooLarge { .. }
            | ApiError::UnsupportedMediaType(_)
            | ApiError::RateLimited { .. }
            | ApiError::Unavailable
            | ApiError::Unanswered(_)
            | ApiError::DiskFull { .. }
            | ApiError::RequestTimeout { .. }
            | ApiError::Internal(_) => {}
        }
    }
    let mut status_of: BTreeMap<&str, BTreeSet<u16>> = BTreeMap::new();
    for e in &every {
        status_of
            .entry(e.code())
            .or_default()
            .insert(e.status().as_u16());
    }
    let actual: BTreeSet<&str> = status_of.keys().copied().collect();
    assert_eq!(
        documented, actual,
        "ErrorCode lists exactly the codes error.rs produces"
    );
    // Every example sits under a status error.rs gives its code.
    for (method, path, op) in operations(&doc) {
        for (status, response) in op["responses"].as_object().unwrap() {
            let Some(examples) =
                deref(&doc, response)["content"]["application/json"]["examples"].as_object()
            else {
                continue;
            };
            for example in examples.values() {
                let code = deref(&doc, example)["value"]["error"]["code"]
                    .as_str()
                    .unwrap();
                let status: u16 = status.parse().unwrap();
                assert!(
                    status_of[code].contains(&status),
                    "{method} {path}: {code} documented under {status}"
                );
            }
        }
    }
}

#[test]
fn enums_follow_the_domain() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    let list = |name: &str| -> Vec<String> {
        schemas[name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} enum"))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    use ledger_core::domain::invoice::InvoiceStatus;
    use ledger_core::domain::payment::PaymentStatus;
    use ledger_core::events::Permission;
    use ledger_core::money::Currency;
    let invoice: Vec<String> = InvoiceStatus::ALL
        .iter()
        .map(|s| s.as_str().to_owned())
        .collect();
    assert_eq!(list("InvoiceStatus"), invoice);
    let types: Vec<String> = projections::TransactionType::ALL
        .iter()
        .map(|t| t.as_str().to_owned())
        .collect();
    assert_eq!(list("TransactionType"), types);
    let permissions: Vec<String> = Permission::NAMES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(list("Permission"), permissions);
    let currencies: Vec<String> = Currency::all().map(|c| c.code().to_owned()).collect();
    assert_eq!(list("Currency"), currencies);
    for s in list("PaymentStatus") {
        assert!(PaymentStatus::parse(&s).is_some(), "{s}");
    }
}

#[test]
fn money_patterns_accept_what_the_parser_accepts() {
    let doc = doc();
    let schemas = &doc["components"]["schemas"];
    // No regex engine in the dependencies: check the documented pattern is the
    // one these cases were written for, and the cases against the parser.
    assert_eq!(schemas["Money"]["pattern"], "^[0-9]+(\\.[0-9]{1,3})?$");
    use ledger_core::money::{Amount, Currency};
    let usd = Currency::parse("USD").unwrap();
    let kwd = Currency::parse("KWD").unwrap();
    for ok in ["1", "1250.00", "0.5", "007.10"] {
        assert!(Amount::parse(usd, ok).is_ok(), "{ok}");
    }
    for bad in ["-1", "1e3", "1.", ".5", "1.500", "1,00", " 1"] {
        assert!(Amount::parse(usd, bad).is_err(), "{bad}");
    }
    assert!(Amount::parse(kwd, "3.765").is_ok());
    assert!(Amount::parse(kwd, "3.7651").is_err());
}

// ---------------------------------------------------------------------------
// The document lists exactly what the router serves: both are built from
// `routes::all()`, so these check the operations themselves.
// ---------------------------------------------------------------------------

#[test]
fn each_route_is_one_documented_operation() {
    let ops = openapi::operations();
    let doc = doc();
    let documented = documented(&doc);
    let mut seen = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for op in &ops {
        let key = (op.method.as_str().to_uppercase(), normalize(op.path));
        assert!(seen.insert(key.clone()), "{key:?} is served twice");
        assert!(
            ids.insert(op.operation_id),
            "{} names two operations",
            op.operation_id
        );
        assert!(documented.contains(&key), "{key:?} is not in the document");
    }
    assert_eq!(
        seen, documented,
        "the document lists what the router serves"
    );
    assert!(ops.len() > 90, "{} operations", ops.len());
}

/// The extractors that read a JSON body of type `T`: `JsonBody<T>`, and the
/// treasury's `Decision<T>` around it.
const BODY_EXTRACTORS: [&str; 2] = ["JsonBody", "Decision"];

/// The body an operation documents is the type its handler deserializes (by
/// type name, among the handler's extractors), and a handler reading a JSON
/// body documents one.
#[test]
fn each_documented_body_is_the_one_its_handler_reads() {
    let mut checked = 0;
    for route in command_api::routes::all() {
        let at = format!("{} {}", route.op.method.as_str(), route.op.path);
        match route.op.body {
            openapi::Body::Required(body) | openapi::Body::Optional(body) => {
                let (_, rust) = body(&mut projections::schema::Components::requests());
                assert!(
                    BODY_EXTRACTORS
                        .iter()
                        .any(|e| route.args.contains(&format!("{e}<{rust}>"))),
                    "{at} documents {rust}, its handler reads {}",
                    route.args
                );
                checked += 1;
            }
            openapi::Body::None | openapi::Body::Upload => assert!(
                !BODY_EXTRACTORS
                    .iter()
                    .any(|e| route.args.contains(&format!("{e}<"))),
                "{at} reads a JSON body it does not document: {}",
                route.args
            ),
        }
    }
    assert!(checked > 40, "{checked} bodies checked");
}

#[test]
fn each_invoice_action_and_bulk_call_has_its_own_operation() {
    for action in ACTIONS {
        let op = action.operation();
        assert_eq!(op.method, openapi::Method::Post);
        assert_eq!(
            op.path,
            format!("/api/v1/invoices/{{id}}/{}", action.segment())
        );
    }
    for kind in BULK {
        let (run, preview) = kind.operations();
        assert_eq!(
            run.path,
            format!("/api/v1/invoices/bulk-{}", kind.segment())
        );
        assert_eq!(preview.path, format!("{}/preview", run.path));
    }
}

#[test]
fn the_operations_are_the_document() {
    let doc = doc();
    for op in openapi::operations() {
        let o = &doc["paths"][op.path][op.method.as_str()];
        assert_eq!(o["operationId"], op.operation_id);
        match op.auth {
            Auth::Public => assert_eq!(o["security"], json!([])),
            Auth::Admin => assert_eq!(o["security"], json!([{ "adminToken": [] }])),
            Auth::Key(p) => {
                let names: Vec<&str> = p.iter().map(|p| p.name()).collect();
                assert_eq!(o["x-permissions"], json!(names))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Black box: the running router serves the document and every listed route
// ---------------------------------------------------------------------------

#[derive(clap::Parser)]
struct Flags {
    #[command(flatten)]
    config: command_api::config::Config,
}

#[tokio::test(flavor = "multi_thread")]
async fn the_router_serves_the_document_and_every_documented_route() {
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use clap::Parser;
    use tower::ServiceExt;

    let dir = std::env::temp_dir().join(format!(
        "expereon-openapi-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    let flags = Flags::try_parse_from([
        "test",
        "--data-dir",
        dir.to_str().unwrap(),
        "--admin-token",
        "openapi-test-token-of-32-characters-or-more",
    ])
    .unwrap();
    let started = command_api::app::start(flags.config).unwrap();
    let app = command_api::app::router(started.state.clone());

    let response = app
        .clone()
        .oneshot(
            Request::get("/api/v1/openapi.json")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(response.headers().contains_key("x-request-id"));
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(served, openapi::document());

    // Without credentials: every documented route is routed (no fallback 404
    // or 405) and answers as its security says.
    for op in openapi::operations() {
        let path = op
            .path
            .split('/')
            .map(|s| match s {
                "{orgId}" if op.path.starts_with("/api/v1/treasury/") => "me".to_owned(),
                "{currency}" => "USD".to_owned(),
                s if s.starts_with('{') => uuid::Uuid::now_v7().to_string(),
                s => s.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("/");
        let method = Method::from_bytes(op.method.as_str().to_uppercase().as_bytes()).unwrap();
        let response = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(&path)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let at = format!("{} {path}", op.method.as_str().to_uppercase());
        assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{at}");
        let expected = match op.auth {
            Auth::Public => StatusCode::OK,
            Auth::Admin | Auth::Key(_) => StatusCode::UNAUTHORIZED,
        };
        assert_eq!(status, expected, "{at}: {}", String::from_utf8_lossy(&body));
    }
    drop(app);
    drop(started);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The resources whose schemas are derived from their view types are in the
/// document as derived: no hand-written entry replaces one.
#[test]
fn derived_schemas_are_the_documents() {
    let doc = doc();
    let derived = openapi::derived_schemas();
    assert!(derived.len() >= 20, "{:?}", derived.keys());
    for (name, schema) in &derived {
        assert_eq!(
            &doc["components"]["schemas"][name], schema,
            "{name}: the document's schema is not the derived one"
        );
    }
}
