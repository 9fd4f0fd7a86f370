//! Incoming webhooks, as Alertmanager's Discord receiver uses them:
//! `POST /api/webhooks/{id}/{token}` (and the same under `/api/v10`), both
//! behind the REST middleware.
//!
//! As Discord documents it: the token in the path is the authorisation (no
//! `Authorization` header); an unknown id or a wrong token is 404 Unknown
//! Webhook (10015); a body with neither `content` nor `embeds` is 400
//! Cannot send an empty message (50006); `content` at most 2,000
//! characters, at most 10 embeds, an embed's title at most 256 and its
//! description at most 4,096 characters (400 Invalid Form Body otherwise);
//! the answer is 204 without `?wait=true`, the message with it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::payloads;
use crate::rest::{json_response, parse_json, reject, Reject};
use crate::state::{Shared, WebhookMessage};

/// A webhook of the fake: posts into `channel_id`.
#[derive(Debug, Clone)]
pub(crate) struct Webhook {
    pub channel_id: u64,
    pub token: String,
}

fn check(body: &Value) -> Result<(), Reject> {
    let content = body.get("content").and_then(Value::as_str).unwrap_or("");
    let embeds = body
        .get("embeds")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if content.chars().count() > 2000 {
        return Err(reject(payloads::form_error(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 2000 or fewer in length.",
        )));
    }
    if embeds.len() > 10 {
        return Err(reject(payloads::form_error(
            "embeds",
            "BASE_TYPE_MAX_LENGTH",
            "Must be 10 or fewer in length.",
        )));
    }
    for (field, max) in [("title", 256), ("description", 4096)] {
        let too_long = embeds.iter().any(|e| {
            e.get(field)
                .and_then(Value::as_str)
                .is_some_and(|t| t.chars().count() > max)
        });
        if too_long {
            return Err(reject(payloads::form_error(
                &format!("embeds.0.{field}"),
                "BASE_TYPE_MAX_LENGTH",
                &format!("Must be {max} or fewer in length."),
            )));
        }
    }
    if content.trim().is_empty() && embeds.is_empty() {
        return Err(reject(payloads::error_body(
            50006,
            "Cannot send an empty message",
        )));
    }
    Ok(())
}

pub(crate) async fn execute(
    State(shared): State<Arc<Shared>>,
    Path((id, token)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    raw: Bytes,
) -> Response {
    answer(&shared, &id, &token, &query, &raw)
}

fn answer(
    shared: &Shared,
    id: &str,
    token: &str,
    query: &HashMap<String, String>,
    raw: &Bytes,
) -> Response {
    let unknown = || {
        json_response(
            StatusCode::NOT_FOUND,
            &payloads::error_body(10015, "Unknown Webhook"),
        )
    };
    let Ok(webhook_id) = id.parse::<u64>() else {
        return unknown();
    };
    let body = match parse_json(raw) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let mut w = shared.world();
    let Some(hook) = w.webhooks.get(&webhook_id).cloned() else {
        return unknown();
    };
    if hook.token != token {
        return unknown();
    }
    if let Err(resp) = check(&body) {
        return *resp;
    }
    let message_id = w.snowflake();
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    let name = body
        .get("username")
        .and_then(Value::as_str)
        .unwrap_or("webhook")
        .to_owned();
    let message = payloads::message(payloads::MessageView {
        id: message_id,
        channel_id: hook.channel_id,
        guild_id: None,
        author: payloads::webhook_author(webhook_id, &name, true),
        member: None,
        content: content.clone(),
        timestamp: payloads::timestamp(SystemTime::now()),
        tts: false,
        mentions: Vec::new(),
        mention_everyone: false,
        nonce: None,
        webhook_id: Some(webhook_id),
        message_reference: None,
        referenced_message: None,
        components: json!([]),
        flags: 0,
    });
    let mut message = message;
    if let Some(embeds) = body.get("embeds") {
        message["embeds"] = embeds.clone();
    }
    w.message_objects.insert(message_id, message.clone());
    w.log_message(hook.channel_id, message_id);
    w.webhook_messages.push(WebhookMessage {
        webhook_id,
        channel_id: hook.channel_id,
        content,
        body,
        at: Instant::now(),
    });
    drop(w);
    shared.bump_messages();
    if query.get("wait").is_some_and(|v| v == "true") {
        json_response(StatusCode::OK, &message)
    } else {
        StatusCode::NO_CONTENT.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_checked_as_discord_does() {
        assert!(check(&json!({ "content": "hi" })).is_ok());
        assert!(check(&json!({ "embeds": [{ "title": "[FIRING:1] X" }] })).is_ok());
        assert!(check(&json!({})).is_err());
        assert!(check(&json!({ "content": "x".repeat(2001) })).is_err());
        assert!(check(&json!({ "embeds": [{ "title": "t".repeat(257) }] })).is_err());
        let eleven: Vec<Value> = (0..11).map(|_| json!({ "title": "t" })).collect();
        assert!(check(&json!({ "embeds": eleven })).is_err());
    }
}
