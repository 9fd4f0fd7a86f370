//! The `/_test` control API: the library's control operations over HTTP
//! (JSON in, JSON out), for the `fake-discord` binary, demos and benchmarks.
//! Snowflakes are accepted as JSON numbers or strings and returned as numbers.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::gateway;
use crate::interactions::{self, InteractionRef};
use crate::ratelimit::BucketModel;
use crate::rest::{json_response, snowflake_of};
use crate::state::{Author, PostedMessage, Shared};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/messages", post(inject).get(all_messages))
        .route("/messages/{channel_id}", get(channel_messages))
        .route("/stats", get(stats))
        .route("/requests", get(requests))
        .route("/latency", post(latency))
        .route("/fail", post(fail))
        .route("/rate_limit", post(rate_limit))
        .route("/hang", post(hang))
        .route("/limits", post(limits))
        .route("/drop_gateway", post(drop_gateway))
        .route("/resume_allowed", post(resume_allowed))
        .route("/reconnect", post(reconnect))
        .route("/dm", post(open_dm))
        .route("/ready", get(ready))
        .route("/guilds", get(guilds))
        .route("/interactions/command", post(inject_command))
        .route("/interactions/component", post(inject_press))
        .route("/interactions", get(interaction_responses))
        .route("/interactions/edits", get(interaction_edits))
        .route("/commands", get(registered_commands))
        .route("/fail_commands", post(fail_commands))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    json_response(status, &json!({ "error": message.to_string() }))
}

fn ok() -> Response {
    json_response(StatusCode::OK, &json!({ "ok": true }))
}

/// A bad request: what was wrong with it.
type Bad = String;

fn bad(message: Bad) -> Response {
    error(StatusCode::BAD_REQUEST, message)
}

fn body_json(raw: &Bytes) -> Result<Value, Bad> {
    if raw.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(raw).map_err(|e| format!("invalid JSON: {e}"))
}

fn field_u64(v: &Value, key: &str) -> Result<u64, Bad> {
    snowflake_of(v.get(key)).ok_or_else(|| format!("`{key}` (integer) is required"))
}

fn message_json(m: &PostedMessage) -> Value {
    json!({
        "id": m.id,
        "channel_id": m.channel_id,
        "content": m.content,
        "nonce": m.nonce,
        "enforce_nonce": m.enforce_nonce,
        "components": m.components,
        "at_ms": m.at_ms,
    })
}

/// `POST /_test/messages {channel_id, author_id, content, bot?, webhook?, name?}` → `{id}`.
async fn inject(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let parsed = body_json(&raw).and_then(|v| {
        let channel_id = field_u64(&v, "channel_id")?;
        let author_id = field_u64(&v, "author_id")?;
        Ok((v, channel_id, author_id))
    });
    let (v, channel_id, author_id) = match parsed {
        Ok(p) => p,
        Err(e) => return bad(e),
    };
    {
        let content = v.get("content").and_then(Value::as_str).unwrap_or("");
        let flag = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let mut author = if flag("webhook") {
            Author::webhook(author_id)
        } else if flag("bot") {
            Author::bot(author_id)
        } else {
            Author::user(author_id)
        };
        if let Some(name) = v.get("name").and_then(Value::as_str) {
            author.name = name.to_string();
        }
        match gateway::inject_message(&shared, channel_id, &author, content) {
            Ok(id) => json_response(StatusCode::OK, &json!({ "id": id })),
            Err(e) => error(StatusCode::CONFLICT, e),
        }
    }
}

async fn all_messages(State(shared): State<Arc<Shared>>) -> Response {
    let w = shared.world();
    let list: Vec<Value> = w.messages.iter().map(message_json).collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// Long-poll parameters: wait up to `wait_ms` (for `count` messages).
#[derive(Debug, Default, Deserialize)]
struct Wait {
    wait_ms: Option<u64>,
    count: Option<usize>,
}

/// `GET /_test/messages/{channel_id}[?count=N&wait_ms=M]`: with `count`,
/// waits up to `wait_ms` for that many messages (408 with what is there).
async fn channel_messages(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    Query(wait): Query<Wait>,
) -> Response {
    let Ok(channel_id) = channel.parse::<u64>() else {
        return error(StatusCode::BAD_REQUEST, "channel id must be an integer");
    };
    let (status, list) = match wait.count {
        Some(count) => {
            let timeout = Duration::from_millis(wait.wait_ms.unwrap_or(0));
            match shared
                .wait_messages(channel_id, timeout, |m| m.len() >= count)
                .await
            {
                Ok(l) => (StatusCode::OK, l),
                Err(l) => (StatusCode::REQUEST_TIMEOUT, l),
            }
        }
        None => (StatusCode::OK, shared.channel_messages(channel_id)),
    };
    let list: Vec<Value> = list.iter().map(message_json).collect();
    json_response(status, &Value::Array(list))
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    let s = shared.world().stats;
    json_response(StatusCode::OK, &json!(s))
}

async fn requests(State(shared): State<Arc<Shared>>) -> Response {
    let list = shared.world().requests.clone();
    json_response(StatusCode::OK, &json!(list))
}

async fn latency(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body_json(&raw).and_then(|v| field_u64(&v, "ms")) {
        Ok(ms) => {
            shared.world().faults.latency = Duration::from_millis(ms);
            ok()
        }
        Err(e) => bad(e),
    }
}

async fn fail(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let parsed = body_json(&raw).and_then(|v| {
        let n = field_u64(&v, "n")?;
        let status = snowflake_of(v.get("status")).unwrap_or(500);
        Ok((n, status))
    });
    match parsed {
        Ok((n, status)) if (400..600).contains(&status) => {
            let mut w = shared.world();
            w.faults.fail = n as usize;
            w.faults.fail_status = status as u16;
            ok()
        }
        Ok(_) => error(StatusCode::BAD_REQUEST, "`status` must be 400..=599"),
        Err(e) => bad(e),
    }
}

async fn rate_limit(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let parsed = body_json(&raw).and_then(|v| {
        let n = field_u64(&v, "n")?;
        let retry_after = v.get("retry_after").and_then(Value::as_f64).unwrap_or(1.0);
        let global = v.get("global").and_then(Value::as_bool).unwrap_or(false);
        Ok((n, retry_after, global))
    });
    match parsed {
        Ok((n, retry_after, global)) => {
            let mut w = shared.world();
            w.faults.rate_limit = n as usize;
            w.faults.rate_limit_retry_after = retry_after;
            w.faults.rate_limit_global = global;
            ok()
        }
        Err(e) => bad(e),
    }
}

async fn hang(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body_json(&raw).and_then(|v| field_u64(&v, "n")) {
        Ok(n) => {
            shared.world().faults.hang = n as usize;
            ok()
        }
        Err(e) => bad(e),
    }
}

/// `POST /_test/limits {global: n|null, channel: {limit, period_ms}|null,
/// model: "leaky"|"fixed_window"}`; a key left out is left unchanged.
async fn limits(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let v = match body_json(&raw) {
        Ok(v) => v,
        Err(e) => return bad(e),
    };
    let mut w = shared.world();
    if let Some(g) = v.get("global") {
        w.limits.global = g.as_u64().map(|n| n as u32);
    }
    if let Some(c) = v.get("channel") {
        w.limits.channel = match (
            c.get("limit").and_then(Value::as_u64),
            c.get("period_ms").and_then(Value::as_u64),
        ) {
            (Some(l), Some(p)) => Some((l as u32, Duration::from_millis(p))),
            _ => None,
        };
    }
    if let Some(m) = v.get("model") {
        w.limits.model = match m.as_str() {
            Some("leaky") => BucketModel::Leaky,
            Some("fixed_window") => BucketModel::FixedWindow,
            _ => {
                return bad(format!(
                    "model must be \"leaky\" or \"fixed_window\", not {m}"
                ))
            }
        };
    }
    ok()
}

async fn drop_gateway(State(shared): State<Arc<Shared>>) -> Response {
    let mut w = shared.world();
    w.gw.drop_connections();
    shared.publish_gateway(&w);
    ok()
}

async fn reconnect(State(shared): State<Arc<Shared>>) -> Response {
    let sent = shared.world().gw.request_reconnect();
    json_response(StatusCode::OK, &json!({ "sent": sent }))
}

async fn resume_allowed(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body_json(&raw) {
        Ok(v) => {
            let allowed = v.get("allowed").and_then(Value::as_bool).unwrap_or(true);
            shared.world().gw.set_resume_allowed(allowed);
            ok()
        }
        Err(e) => bad(e),
    }
}

async fn open_dm(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body_json(&raw).and_then(|v| field_u64(&v, "user_id")) {
        Ok(user) => {
            let channel_id = shared.world().open_dm(user);
            json_response(StatusCode::OK, &json!({ "channel_id": channel_id }))
        }
        Err(e) => bad(e),
    }
}

/// `GET /_test/ready[?wait_ms=M]`: 200 when a bot is READY (on every
/// shard), else 503 (after waiting up to `wait_ms` for it).
async fn ready(State(shared): State<Arc<Shared>>, Query(wait): Query<Wait>) -> Response {
    if let Some(ms) = wait.wait_ms {
        shared
            .wait_gateway(Duration::from_millis(ms), |s| s.ready)
            .await;
    }
    let ready = shared.world().gw.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, &json!({ "ready": ready }))
}

async fn guilds(State(shared): State<Arc<Shared>>) -> Response {
    let list: Vec<Value> = shared
        .guilds
        .iter()
        .map(|g| json!({ "id": g.id, "channels": g.channels }))
        .collect();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// The user of an interaction body: `user_id`, optional `roles` (ids).
fn invoker(v: &Value) -> Result<Author, Bad> {
    let user_id = field_u64(v, "user_id")?;
    let roles: Vec<u64> = v
        .get("roles")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(|x| snowflake_of(Some(x))).collect())
        .unwrap_or_default();
    Ok(Author::user(user_id).with_roles(&roles))
}

fn dispatched(result: anyhow::Result<InteractionRef>) -> Response {
    match result {
        Ok(r) => json_response(StatusCode::OK, &json!({ "id": r.id, "token": r.token })),
        Err(e) => error(StatusCode::CONFLICT, e),
    }
}

/// `POST /_test/interactions/command {channel_id, user_id, name, options?, roles?}`
/// → `{id, token}`: a slash command (INTERACTION_CREATE type 2).
async fn inject_command(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let parsed = body_json(&raw).and_then(|v| {
        let channel_id = field_u64(&v, "channel_id")?;
        let author = invoker(&v)?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or("`name` (string) is required")?
            .to_owned();
        let options = v.get("options").cloned().unwrap_or_else(|| json!([]));
        Ok((channel_id, author, name, options))
    });
    match parsed {
        Ok((channel_id, author, name, options)) => dispatched(interactions::slash_command(
            &shared, channel_id, &author, &name, options,
        )),
        Err(e) => bad(e),
    }
}

/// `POST /_test/interactions/component {channel_id, user_id, message_id, custom_id, roles?}`
/// → `{id, token}`: a button press (INTERACTION_CREATE type 3).
async fn inject_press(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    let parsed = body_json(&raw).and_then(|v| {
        let channel_id = field_u64(&v, "channel_id")?;
        let message_id = field_u64(&v, "message_id")?;
        let author = invoker(&v)?;
        let custom_id = v
            .get("custom_id")
            .and_then(Value::as_str)
            .ok_or("`custom_id` (string) is required")?
            .to_owned();
        Ok((channel_id, message_id, author, custom_id))
    });
    match parsed {
        Ok((channel_id, message_id, author, custom_id)) => dispatched(interactions::press_button(
            &shared, channel_id, &author, message_id, &custom_id,
        )),
        Err(e) => bad(e),
    }
}

/// `GET /_test/interactions`: every callback, `[{interaction_id, channel_id,
/// type, flags, content, components, allowed_mentions, body, status, elapsed_ms}]`.
async fn interaction_responses(State(shared): State<Arc<Shared>>) -> Response {
    let list = shared.world().interaction_responses.clone();
    json_response(StatusCode::OK, &json!(list))
}

/// `GET /_test/interactions/edits`: every edit of an answer (`PATCH
/// …/messages/@original`), `[{interaction_id, channel_id, content, …}]`.
async fn interaction_edits(State(shared): State<Arc<Shared>>) -> Response {
    let list = shared.world().interaction_edits.clone();
    json_response(StatusCode::OK, &json!(list))
}

#[derive(Debug, Default, Deserialize)]
struct Scope {
    guild_id: Option<u64>,
}

/// `GET /_test/commands[?guild_id=G]`: the registered commands (global
/// without `guild_id`).
async fn registered_commands(
    State(shared): State<Arc<Shared>>,
    Query(scope): Query<Scope>,
) -> Response {
    let list = shared
        .world()
        .commands
        .get(&scope.guild_id)
        .cloned()
        .unwrap_or_default();
    json_response(StatusCode::OK, &Value::Array(list))
}

/// `POST /_test/fail_commands {n}`: the next `n` bulk overwrites answer 500.
async fn fail_commands(State(shared): State<Arc<Shared>>, raw: Bytes) -> Response {
    match body_json(&raw).and_then(|v| field_u64(&v, "n")) {
        Ok(n) => {
            shared.world().fail_commands = n as usize;
            ok()
        }
        Err(e) => bad(e),
    }
}
