//! Discord's published REST schemas (`fake-discord/spec`, OpenAPI 3.1 with
//! JSON Schema 2020-12) held against what crossed the wire in a test: every
//! request body the bot sent, and every answer the fake gave.
//!
//! An exchange on a route Discord does not publish is a violation too: the
//! bot must not call it, and the fake must not serve the bot from it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use fake_discord::Exchange;
use serde_json::{json, Value};

struct Spec {
    paths: Vec<(Vec<String>, Value)>,
    components: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

fn spec() -> &'static Spec {
    static SPEC: OnceLock<Spec> = OnceLock::new();
    SPEC.get_or_init(|| {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fake-discord/spec/discord-openapi.json"
        );
        let text = std::fs::read_to_string(path).expect("the vendored OpenAPI document");
        let doc: Value = serde_json::from_str(&text).expect("OpenAPI JSON");
        let paths = doc["paths"]
            .as_object()
            .expect("paths")
            .iter()
            .map(|(template, ops)| (segments(template), ops.clone()))
            .collect();
        Spec {
            paths,
            components: doc["components"].clone(),
            validators: Mutex::new(HashMap::new()),
        }
    })
}

fn segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// The operation of `method` on the published path `path` matches.
fn operation(method: &str, path: &str) -> Option<&'static Value> {
    let actual = segments(path);
    spec()
        .paths
        .iter()
        .filter(|(template, _)| {
            template.len() == actual.len()
                && template
                    .iter()
                    .zip(&actual)
                    .all(|(t, a)| (t.starts_with('{') && t.ends_with('}')) || t == a)
        })
        // A literal segment (`@me`) wins over a parameter.
        .max_by_key(|(template, _)| template.iter().filter(|t| !t.starts_with('{')).count())
        .and_then(|(_, ops)| ops.get(method.to_ascii_lowercase()))
}

/// Follows a `$ref` into `#/components/...`.
fn resolve<'a>(spec: &'a Spec, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut at = &spec.components;
            for part in r.trim_start_matches("#/components/").split('/') {
                at = &at[part];
            }
            at
        }
        None => v,
    }
}

/// The schema of a request body, or of the answer with `status`.
fn body_schema(spec: &Spec, op: &Value, status: Option<u16>) -> Option<Value> {
    let holder = match status {
        None => op.get("requestBody")?,
        Some(status) => {
            let responses = op.get("responses")?;
            let exact = status.to_string();
            let class = format!("{}XX", status / 100);
            resolve(
                spec,
                responses.get(&exact).or_else(|| responses.get(&class))?,
            )
        }
    };
    resolve(spec, holder)
        .get("content")?
        .get("application/json")?
        .get("schema")
        .cloned()
}

fn validator(spec: &Spec, schema: &Value) -> std::sync::Arc<jsonschema::Validator> {
    let key = schema.to_string();
    let mut cache = spec.validators.lock().unwrap();
    cache
        .entry(key)
        .or_insert_with(|| {
            let mut root = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "components": spec.components,
            });
            for (k, v) in schema.as_object().expect("a schema object") {
                root[k] = v.clone();
            }
            std::sync::Arc::new(
                jsonschema::draft202012::new(&root).expect("Discord's schema compiles"),
            )
        })
        .clone()
}

fn check(spec: &Spec, schema: &Value, instance: &Value, what: &str, out: &mut Vec<String>) {
    let validator = validator(spec, schema);
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .take(5)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if !errors.is_empty() {
        out.push(format!(
            "{what}: {}\n    body: {instance}",
            errors.join("; ")
        ));
    }
}

/// What in `exchanges` breaks Discord's published schemas, one line each.
pub fn violations(exchanges: &[Exchange]) -> Vec<String> {
    let spec = spec();
    let mut out = Vec::new();
    for x in exchanges {
        let what = format!("{} {} ({})", x.method, x.path, x.status);
        let Some(op) = operation(&x.method, &x.path) else {
            out.push(format!("{what}: no such route in Discord's API"));
            continue;
        };
        if let Some(body) = &x.request {
            match body_schema(spec, op, None) {
                Some(schema) => check(spec, &schema, body, &format!("{what} request"), &mut out),
                None => out.push(format!("{what}: a body on a route that takes none")),
            }
        }
        if let (Some(body), Some(schema)) = (&x.response, body_schema(spec, op, Some(x.status))) {
            check(spec, &schema, body, &format!("{what} answer"), &mut out);
        }
    }
    out
}
