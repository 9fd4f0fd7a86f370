//! `POST /channels/{id}/messages`: injected faults (hang, 5xx, 429), body
//! validation, the per-channel bucket (headers always, 429 when enforced),
//! `enforce_nonce` deduplication, replies, and the created message (also
//! echoed on the gateway as MESSAGE_CREATE, like Discord does).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::gateway;
use crate::payloads::{self, BOT_NAME};
use crate::ratelimit::{BucketState, DISCORD_CHANNEL_LIMIT};
use crate::rest::{
    json_response, parse_json, reject, set_header, snowflake_of, unknown_channel, Reject,
};
use crate::state::{Fault, PostedMessage, RequestRecord, Shared, World};

pub(crate) fn bucket_hash(route: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in route.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}{:016x}", h.rotate_left(29) ^ 0x5bd1_e995)
}

const MESSAGES_ROUTE: &str = "POST /channels/{channel.id}/messages";

pub(crate) fn add_bucket_headers(resp: &mut Response, b: &BucketState, route: &str) {
    let reset = SystemTime::now() + b.reset_after;
    set_header(resp, "x-ratelimit-limit", b.limit.to_string());
    set_header(resp, "x-ratelimit-remaining", b.remaining.to_string());
    set_header(
        resp,
        "x-ratelimit-reset",
        format!("{:.3}", payloads::epoch_secs(reset)),
    );
    set_header(
        resp,
        "x-ratelimit-reset-after",
        format!("{:.3}", b.reset_after.as_secs_f64()),
    );
    set_header(resp, "x-ratelimit-bucket", bucket_hash(route));
}

/// A 429 as Discord sends it: `Retry-After` in whole seconds (rounded up),
/// the exact value in the body.
pub(crate) fn rate_limited_response(
    retry_after: f64,
    global: bool,
    bucket: Option<BucketState>,
) -> Response {
    rate_limited_on(MESSAGES_ROUTE, retry_after, global, bucket)
}

/// [`rate_limited_response`] for the bucket of `route`.
pub(crate) fn rate_limited_on(
    route: &str,
    retry_after: f64,
    global: bool,
    bucket: Option<BucketState>,
) -> Response {
    let retry_after = (retry_after * 1000.0).round() / 1000.0;
    // Discord's error objects carry a `code` (its published schema requires
    // it; 0 is the general one).
    let body = json!({
        "message": "You are being rate limited.",
        "retry_after": retry_after,
        "global": global,
        "code": 0,
    });
    let mut resp = json_response(StatusCode::TOO_MANY_REQUESTS, &body);
    set_header(
        &mut resp,
        "retry-after",
        (retry_after.ceil().max(0.0) as u64).to_string(),
    );
    set_header(
        &mut resp,
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.to_string(),
    );
    if global {
        set_header(&mut resp, "x-ratelimit-global", "true".to_string());
    }
    if let Some(b) = bucket {
        add_bucket_headers(&mut resp, &b, route);
    }
    resp
}

/// The answer to an injected failure.
fn failure_response(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::BAD_GATEWAY {
        let html = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
                    <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n\
                    </body>\r\n</html>\r\n";
        return (code, [(header::CONTENT_TYPE, "text/html")], html).into_response();
    }
    let body = match code.as_u16() {
        403 => payloads::error_body(50013, "Missing Permissions"),
        404 => payloads::error_body(10003, "Unknown Channel"),
        _ => payloads::error_body(
            0,
            &format!(
                "{}: {}",
                code.as_u16(),
                code.canonical_reason().unwrap_or("Error")
            ),
        ),
    };
    json_response(code, &body)
}

pub(crate) fn is_message_post(method: &Method, path: &str) -> bool {
    method == Method::POST
        && path
            .strip_prefix("/api/v10/channels/")
            .and_then(|rest| rest.strip_suffix("/messages"))
            .is_some_and(|id| !id.contains('/'))
}

/// The nonce of a request as a string (Discord accepts strings and integers).
fn nonce_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn non_empty(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Null) | None => false,
        Some(_) => true,
    }
}

/// Checks the body as Discord would; `Err` is the 400 answer.
fn validate(body: &Value) -> Result<(), Reject> {
    let content = body.get("content").and_then(Value::as_str).unwrap_or("");
    if content.chars().count() > 2000 {
        return Err(reject(payloads::form_error(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        )));
    }
    if let Some(n) = nonce_string(body.get("nonce")) {
        if n.chars().count() > 25 {
            return Err(reject(payloads::form_error(
                "nonce",
                "BASE_TYPE_MAX_LENGTH",
                "Must be 25 or fewer in length.",
            )));
        }
    }
    let has_something = !content.trim().is_empty()
        || ["embeds", "components", "sticker_ids", "attachments", "poll"]
            .iter()
            .any(|k| non_empty(body.get(*k)));
    if !has_something {
        return Err(reject(payloads::error_body(
            50006,
            "Cannot send an empty message",
        )));
    }
    Ok(())
}

/// The users a created message mentions, after `allowed_mentions`.
fn allowed_mention_ids(content: &str, allowed: Option<&Value>) -> Vec<u64> {
    let ids = payloads::mentioned_user_ids(content);
    let Some(allowed) = allowed else {
        return ids;
    };
    let parse_users = allowed
        .get("parse")
        .and_then(Value::as_array)
        .is_some_and(|p| p.iter().any(|x| x == "users"));
    if parse_users {
        return ids;
    }
    let listed: Vec<u64> = allowed
        .get("users")
        .and_then(Value::as_array)
        .map(|u| u.iter().filter_map(|x| snowflake_of(Some(x))).collect())
        .unwrap_or_default();
    ids.into_iter().filter(|id| listed.contains(id)).collect()
}

fn allows_everyone(allowed: Option<&Value>) -> bool {
    match allowed {
        None => true,
        Some(a) => a
            .get("parse")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|x| x == "everyone")),
    }
}

pub(crate) async fn post_message(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    raw: Bytes,
) -> Response {
    let now = Instant::now();
    let channel_id = channel.parse::<u64>().ok();
    let fault = {
        let mut w = shared.world();
        w.stats.message_posts += 1;
        match channel_id {
            Some(c) if shared.channel_exists(&w, c) => {}
            _ => return unknown_channel(),
        }
        // A missing permission is checked before anything else happens to
        // the request, as Discord does: no injected fault is used up on it.
        if let Some(refused) = channel_id.and_then(|c| w.send_denied.get_mut(&c)) {
            *refused += 1;
            drop(w);
            return failure_response(403);
        }
        let fault = w.faults.take();
        match fault {
            Some(Fault::Hang) => {
                w.stats.hung += 1;
                w.stats.injected_errors += 1;
                w.requests.push(RequestRecord {
                    method: "POST".into(),
                    path: format!("/api/v10/channels/{channel}/messages"),
                    status: 0,
                    at: now,
                    at_ms: shared.ms_since_start(now),
                });
            }
            Some(Fault::Fail(_)) => w.stats.injected_errors += 1,
            Some(Fault::RateLimit { .. }) => w.stats.rate_limited += 1,
            None => {}
        }
        fault
    };
    let channel_id = channel_id.unwrap_or_default();
    match fault {
        Some(Fault::Hang) => {
            tracing::debug!(channel_id, "hanging a message POST");
            return std::future::pending::<Response>().await;
        }
        Some(Fault::Fail(status)) => return failure_response(status),
        Some(Fault::RateLimit {
            retry_after,
            global,
        }) => {
            let limit = shared
                .world()
                .limits
                .channel
                .unwrap_or(DISCORD_CHANNEL_LIMIT)
                .0;
            let bucket = (!global).then(|| BucketState {
                limit,
                remaining: 0,
                reset_after: Duration::from_secs_f64(retry_after.max(0.0)),
                room_from: None,
            });
            return rate_limited_response(retry_after, global, bucket);
        }
        None => {}
    }
    let body = match parse_json(&raw) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if let Err(resp) = validate(&body) {
        return *resp;
    }
    let (resp_body, bucket, created) = {
        let mut w = shared.world();
        let bucket = match w.limits.check_channel(channel_id, now) {
            Ok(b) => b,
            Err(b) => {
                w.stats.rate_limited += 1;
                w.stats.rate_limited_channel += 1;
                let early = b.reset_after.as_millis() as u64;
                w.stats.channel_429_max_early_ms = w.stats.channel_429_max_early_ms.max(early);
                drop(w);
                return rate_limited_response(b.reset_after.as_secs_f64(), false, Some(b));
            }
        };
        match create_or_dedup(&shared, &mut w, channel_id, body, now, bucket.room_from) {
            Ok((v, created)) => (v, bucket, created),
            Err(resp) => return *resp,
        }
    };
    if created {
        shared.bump_messages();
    }
    let mut resp = json_response(StatusCode::OK, &resp_body);
    add_bucket_headers(&mut resp, &bucket, MESSAGES_ROUTE);
    resp
}

/// Returns the existing message for a repeated enforced nonce, or creates
/// a new one. `Ok((message, created))`.
fn create_or_dedup(
    shared: &Shared,
    w: &mut World,
    channel_id: u64,
    body: Value,
    now: Instant,
    room_from: Option<Instant>,
) -> Result<(Value, bool), Reject> {
    let nonce = nonce_string(body.get("nonce"));
    let enforce_nonce = body
        .get("enforce_nonce")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let (true, Some(n)) = (enforce_nonce, &nonce) {
        if let Some((idx, at)) = w.nonces.get(&(channel_id, n.clone())) {
            if now.saturating_duration_since(*at) < shared.nonce_ttl {
                let existing = w
                    .messages
                    .get(*idx)
                    .and_then(|m| w.message_objects.get(&m.id))
                    .cloned();
                if let Some(existing) = existing {
                    w.stats.nonce_duplicates += 1;
                    return Ok((existing, false));
                }
            }
        }
    }

    let reference = body.get("message_reference").filter(|r| r.is_object());
    let mut message_reference = None;
    let mut referenced_message = None;
    if let Some(r) = reference {
        let target = snowflake_of(r.get("message_id"));
        match target.and_then(|id| w.message_objects.get(&id)) {
            Some(found) => {
                let mut found = found.clone();
                if let Some(obj) = found.as_object_mut() {
                    obj.remove("referenced_message");
                }
                let mut mr = json!({
                    "type": 0,
                    "channel_id": found.get("channel_id").cloned().unwrap_or(Value::Null),
                    "message_id": found.get("id").cloned().unwrap_or(Value::Null),
                });
                if let Some(g) = found.get("guild_id") {
                    mr["guild_id"] = g.clone();
                }
                message_reference = Some(mr);
                referenced_message = Some(found);
            }
            None if r.get("fail_if_not_exists").and_then(Value::as_bool) == Some(false) => {}
            None => {
                return Err(reject(payloads::form_error(
                    "message_reference",
                    "MESSAGE_REFERENCE_UNKNOWN_MESSAGE",
                    "Unknown message",
                )))
            }
        }
    }

    let bot = shared.bot_user_id;
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let allowed = body.get("allowed_mentions").filter(|a| a.is_object());
    let mention_ids = allowed_mention_ids(&content, allowed);
    let mentions = mention_ids.iter().map(|u| w.user_json(*u, bot)).collect();
    let id = w.snowflake();
    let guild_id = shared.guild_of(channel_id);
    let view = |guild_id: Option<u64>, member: Option<Value>, mentions: Vec<Value>| {
        payloads::message(payloads::MessageView {
            id,
            channel_id,
            guild_id,
            author: payloads::user(bot, BOT_NAME, true),
            member,
            content: content.clone(),
            timestamp: payloads::timestamp(SystemTime::now()),
            tts: body.get("tts").and_then(Value::as_bool).unwrap_or(false),
            mentions,
            mention_everyone: payloads::mentions_everyone(&content) && allows_everyone(allowed),
            nonce: body.get("nonce").filter(|n| !n.is_null()).cloned(),
            webhook_id: None,
            message_reference: message_reference.clone(),
            referenced_message: referenced_message.clone(),
            components: body.get("components").cloned().unwrap_or_else(|| json!([])),
            flags: body.get("flags").and_then(Value::as_u64).unwrap_or(0),
        })
    };
    // REST answers carry no guild_id (serenity fills it in itself); the
    // gateway's MESSAGE_CREATE has it, and the member. The echo is the REST
    // message plus those two (built once: the benchmarks post thousands of
    // messages a second through here).
    let rest_message = view(None, None, mentions);
    let echo = shared.echo_own_messages.then(|| {
        let mut echo = rest_message.clone();
        if let Some(g) = guild_id {
            echo["guild_id"] = Value::from(g.to_string());
            echo["member"] = payloads::member(None, &shared.joined_at);
        }
        echo
    });

    let idx = w.push_message(PostedMessage {
        id,
        channel_id,
        content,
        nonce: nonce.clone(),
        enforce_nonce,
        allowed_mentions: allowed.cloned(),
        message_reference: body.get("message_reference").cloned(),
        components: body.get("components").cloned(),
        body: body.clone(),
        at: now,
        room_from,
        at_ms: shared.ms_since_start(now),
    });
    if let Some(n) = nonce {
        w.nonces.insert((channel_id, n), (idx, now));
    }
    w.message_objects.insert(id, rest_message.clone());
    w.log_message(channel_id, id);
    w.stats.created += 1;
    if let (Some(echo), Some(intents)) = (echo, w.gw.intents(guild_id)) {
        gateway::dispatch_message(w, bot, guild_id, intents, echo, bot, &mention_ids);
    }
    Ok((rest_message, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_message_posts() {
        assert!(is_message_post(
            &Method::POST,
            "/api/v10/channels/1001/messages"
        ));
        assert!(!is_message_post(
            &Method::GET,
            "/api/v10/channels/1001/messages"
        ));
        assert!(!is_message_post(
            &Method::POST,
            "/api/v10/channels/1/x/messages"
        ));
    }

    #[test]
    fn allowed_mentions_filter() {
        let empty = json!({ "parse": [], "users": [], "roles": [] });
        assert!(allowed_mention_ids("<@5> hi", Some(&empty)).is_empty());
        assert_eq!(allowed_mention_ids("<@5> hi", None), vec![5]);
        let five = json!({ "users": ["5"] });
        assert_eq!(allowed_mention_ids("<@5> <@6>", Some(&five)), vec![5]);
        assert!(!allows_everyone(Some(&empty)));
    }
}
