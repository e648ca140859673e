//! Every response the black-box suites receive is checked against the OpenAPI
//! document the server serves: its status must be documented for the
//! operation, its content type among the documented ones, and a JSON body (or
//! each line of a JSON-lines body) valid against the documented schema.
//!
//! So each suite doubles as a test of the document: a field added to a
//! response without its schema, a status the document does not list, or a
//! schema narrower than what is served fails the test that saw it.

use jsonschema::Validator;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The document the server binary serves (the same code builds both;
/// `documented.rs` compares it with `GET /api/v1/openapi.json`).
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(command_api::openapi::document)
}

/// Compiled schemas, by their JSON text: the suites reuse a few dozen.
fn validator(schema: &Value) -> Arc<Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Validator>>>> = OnceLock::new();
    let key = schema.to_string();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return v.clone();
    }
    // The document's `components` travel with the schema so that its
    // `#/components/schemas/…` references resolve inside it.
    let mut root = match schema {
        Value::Object(m) => m.clone(),
        other => panic!("schema is not an object: {other}"),
    };
    root.insert("components".into(), document()["components"].clone());
    let compiled = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .should_validate_formats(true)
        .build(&Value::Object(root))
        .unwrap_or_else(|e| panic!("the document's schema {key} does not compile: {e}"));
    let compiled = Arc::new(compiled);
    cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, compiled.clone());
    compiled
}

/// The path item serving `path`: literal segments beat `{parameters}`, so
/// `/invoices/bulk` is not taken for `/invoices/{id}`.
fn path_item(path: &str) -> Option<&'static Map<String, Value>> {
    let segments: Vec<&str> = path.split('/').collect();
    let paths = document()["paths"].as_object()?;
    paths
        .iter()
        .filter_map(|(template, item)| {
            let t: Vec<&str> = template.split('/').collect();
            if t.len() != segments.len() {
                return None;
            }
            let mut literal = 0;
            for (a, b) in t.iter().zip(&segments) {
                if a.starts_with('{') {
                    continue;
                }
                if a != b {
                    return None;
                }
                literal += 1;
            }
            Some((literal, item.as_object()?))
        })
        .max_by_key(|(literal, _)| *literal)
        .map(|(_, item)| item)
}

fn resolve(v: &'static Value) -> &'static Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.trim_start_matches('#');
            document()
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling reference {r} in the document"))
        }
        None => v,
    }
}

/// Checks one response; `what` is `METHOD path?query`. Requests to routes the
/// document does not describe (the router's own 404/405) are not checked.
pub fn check(what: &str, status: u16, content_type: Option<&str>, body: &[u8]) {
    let Some((method, target)) = what.split_once(' ') else {
        return;
    };
    let path = target.split(['?', '#']).next().unwrap_or(target);
    let Some(item) = path_item(path) else {
        return;
    };
    let method = match method {
        "HEAD" => "get".to_owned(),
        m => m.to_ascii_lowercase(),
    };
    let Some(operation) = item.get(&method) else {
        return;
    };
    let responses = &operation["responses"];
    let Some(response) = responses.get(status.to_string()) else {
        let documented: Vec<&String> = responses
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        fail(format!(
            "{what}: status {status} is not documented for this operation (documented: {documented:?}); body: {}",
            String::from_utf8_lossy(body)
        ));
        return;
    };
    let response = resolve(response);
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        if !body.is_empty() && !what.starts_with("HEAD ") {
            fail(format!(
                "{what}: {status} has a body but the document gives it none: {}",
                String::from_utf8_lossy(body)
            ));
        }
        return;
    };
    if body.is_empty() && (what.starts_with("HEAD ") || status == 304) {
        return;
    }
    let full = content_type.unwrap_or("").trim().to_ascii_lowercase();
    let media = full.split(';').next().unwrap_or("").trim().to_owned();
    // A documented media type may carry parameters (`text/plain; version=0.0.4`).
    let matched = [full.as_str(), media.as_str(), "*/*"]
        .into_iter()
        .find(|k| content.contains_key(*k));
    let Some((key, entry)) = matched.map(|k| (k, &content[k])) else {
        fail(format!(
            "{what}: {status} answered `{media}`, the document lists {:?}",
            content.keys().collect::<Vec<_>>()
        ));
        return;
    };
    let Some(schema) = entry.get("schema") else {
        return;
    };
    // Bodies are parsed by the documented media type: a stored file that
    // happens to be JSON is served under `*/*` and is just bytes.
    match key {
        "application/json" => {
            let value: Value = serde_json::from_slice(body).unwrap_or_else(|e| {
                panic!(
                    "{what}: {status} says JSON but is not ({e}): {}",
                    String::from_utf8_lossy(body)
                )
            });
            conforms(what, status, schema, &value);
        }
        "application/x-ndjson" => {
            for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let value: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!(
                        "{what}: a JSON line is not JSON ({e}): {}",
                        String::from_utf8_lossy(line)
                    )
                });
                conforms(what, status, schema, &value);
            }
        }
        _ => {}
    }
}

fn conforms(what: &str, status: u16, schema: &Value, value: &Value) {
    let v = validator(schema);
    let errors: Vec<String> = v
        .iter_errors(value)
        .take(5)
        .map(|e| format!("at `{}`: {e}", e.instance_path()))
        .collect();
    if !errors.is_empty() {
        fail(format!(
            "{what}: the {status} body does not match the document's schema {schema}:\n  {}\nbody: {value}",
            errors.join("\n  ")
        ));
    }
}

/// Panics, failing the test; with `EXPEREON_CONTRACT_TRIAGE=<file>` set, the
/// failure is appended there instead, to list all of a run's at once.
fn fail(message: String) {
    match std::env::var_os("EXPEREON_CONTRACT_TRIAGE") {
        Some(file) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .expect("triage file");
            writeln!(f, "{message}").expect("triage write");
        }
        None => panic!("{message}"),
    }
}
