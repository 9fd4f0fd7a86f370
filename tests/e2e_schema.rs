//! The schema check every end-to-end test ends with (`common::schema`):
//! it finds a body or an answer that breaks Discord's published schemas,
//! and a route Discord does not publish, and passes what conforms.

mod common;

use common::schema::violations;
use fake_discord::Exchange;
use serde_json::{json, Value};

fn exchange(
    method: &str,
    path: &str,
    request: Option<Value>,
    status: u16,
    response: Option<Value>,
) -> Exchange {
    Exchange {
        method: method.into(),
        path: path.into(),
        request,
        status,
        response,
    }
}

fn message(content: &str) -> Value {
    json!({
        "id": "1300000000000000000",
        "channel_id": "1001",
        "type": 0,
        "content": content,
        "author": { "id": "42", "username": "countdown", "discriminator": "0", "global_name": null,
                    "avatar": null, "bot": true, "public_flags": 0, "flags": 0, "primary_guild": null },
        "attachments": [], "embeds": [], "mentions": [], "mention_roles": [], "pinned": false,
        "mention_everyone": false, "tts": false, "timestamp": "2026-12-07T12:00:00.000000+00:00",
        "edited_timestamp": null, "flags": 0, "components": [],
    })
}

#[test]
fn a_conforming_message_create_passes() {
    let body = json!({
        "content": "7",
        "nonce": "42:7",
        "enforce_nonce": true,
        "allowed_mentions": { "parse": [], "replied_user": false },
    });
    let found = violations(&[exchange(
        "POST",
        "/channels/1001/messages",
        Some(body),
        200,
        Some(message("7")),
    )]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn a_body_that_breaks_the_schema_is_found() {
    // `content` a number, `allowed_mentions.parse` with a value Discord
    // does not know.
    let body = json!({ "content": 7, "allowed_mentions": { "parse": ["nobody"] } });
    let found = violations(&[exchange(
        "POST",
        "/channels/1001/messages",
        Some(body),
        200,
        Some(message("7")),
    )]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("request"), "{}", found[0]);
}

#[test]
fn an_answer_missing_a_required_field_is_found() {
    let mut answer = message("7");
    answer.as_object_mut().unwrap().remove("author");
    let found = violations(&[exchange(
        "GET",
        "/channels/1001/messages",
        None,
        200,
        Some(json!([answer])),
    )]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("author"), "{}", found[0]);

    // A 429 without Discord's `code`.
    let found = violations(&[exchange(
        "POST",
        "/channels/1001/messages",
        None,
        429,
        Some(
            json!({ "message": "You are being rate limited.", "retry_after": 0.5, "global": false }),
        ),
    )]);
    assert_eq!(found.len(), 1, "{found:#?}");
}

#[test]
fn a_route_discord_does_not_publish_is_found() {
    let found = violations(&[exchange("GET", "/channels/1001/numbers", None, 200, None)]);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].contains("no such route"), "{}", found[0]);
}
