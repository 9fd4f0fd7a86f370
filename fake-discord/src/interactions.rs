//! Interactions: INTERACTION_CREATE for slash commands (type 2) and button
//! presses (type 3), dispatched on the bot's gateway session, and the
//! callback route `POST /interactions/{id}/{token}/callback`.
//!
//! Like Discord, the callback must come within the interaction window
//! (3 s by default, `FakeConfig::interaction_window`): later, or with a
//! wrong token, it is answered 404 Unknown interaction (code 10062); a
//! second callback is 400 "already acknowledged" (40060). Every callback is
//! recorded ([`InteractionResponse`]) with the time since its dispatch.
//! Type 7 (UPDATE_MESSAGE) edits the message the button is on (its content
//! and components, as given).
//!
//! `PATCH /webhooks/{app}/{token}/messages/@original` edits the answer of
//! an acknowledged interaction (how a deferred answer is given), within
//! the token's 15 minutes; each edit is recorded ([`InteractionEdit`]).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::payloads;
use crate::rest::{json_response, parse_json};
use crate::state::{
    Author, InteractionEdit, InteractionResponse, PendingInteraction, Shared, World,
};

/// What a test needs to refer to a dispatched interaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InteractionRef {
    pub id: u64,
    pub token: String,
}

/// Discord's interaction types.
const APPLICATION_COMMAND: u64 = 2;
const MESSAGE_COMPONENT: u64 = 3;
/// Discord's upload limit for a bot without boosts (10 MiB).
const ATTACHMENT_SIZE_LIMIT: u64 = 10 * 1024 * 1024;

/// Dispatches a slash command `name` with `options` (Discord's shape:
/// `[{"name": "n", "type": 4, "value": 20}]`) from `author` in `channel_id`.
pub(crate) fn slash_command(
    shared: &Shared,
    channel_id: u64,
    author: &Author,
    name: &str,
    options: Value,
) -> anyhow::Result<InteractionRef> {
    let guild_id = shared.guild_of(channel_id);
    let mut w = shared.world();
    // The registered command's id when there is one (guild first, as on
    // Discord), else a fresh one.
    let registered = guild_id
        .and_then(|g| find_command(&w, Some(g), name))
        .or_else(|| find_command(&w, None, name));
    let command_id = match registered {
        Some(id) => id,
        None => w.snowflake().to_string(),
    };
    let mut data = json!({
        "id": command_id,
        "name": name,
        "type": 1,
        "options": if options.is_array() { options } else { json!([]) },
    });
    if let Some(g) = guild_id {
        data["guild_id"] = Value::from(g.to_string());
    }
    dispatch(
        shared,
        &mut w,
        APPLICATION_COMMAND,
        channel_id,
        author,
        data,
        None,
    )
}

/// Dispatches a press on the button `custom_id` of message `message_id`.
pub(crate) fn press_button(
    shared: &Shared,
    channel_id: u64,
    author: &Author,
    message_id: u64,
    custom_id: &str,
) -> anyhow::Result<InteractionRef> {
    let mut w = shared.world();
    let data = json!({ "custom_id": custom_id, "component_type": 2 });
    dispatch(
        shared,
        &mut w,
        MESSAGE_COMPONENT,
        channel_id,
        author,
        data,
        Some(message_id),
    )
}

fn find_command(w: &World, scope: Option<u64>, name: &str) -> Option<String> {
    w.commands
        .get(&scope)?
        .iter()
        .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|c| c.get("id"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn dispatch(
    shared: &Shared,
    w: &mut World,
    kind: u64,
    channel_id: u64,
    author: &Author,
    data: Value,
    message_id: Option<u64>,
) -> anyhow::Result<InteractionRef> {
    if !shared.channel_exists(w, channel_id) {
        anyhow::bail!("fake-discord: unknown channel {channel_id}");
    }
    let guild_id = shared.guild_of(channel_id);
    if w.gw.intents(guild_id).is_none() {
        anyhow::bail!("fake-discord: no bot connected (no gateway session; IDENTIFY first)");
    }
    let message = match message_id {
        Some(id) => match w.message_objects.get(&id) {
            Some(m) => Some(m.clone()),
            None => anyhow::bail!("fake-discord: unknown message {id}"),
        },
        None => None,
    };
    w.users.insert(author.id, (author.name.clone(), author.bot));
    let id = w.snowflake();
    let token = format!("fake-interaction-token-{id}");
    let user = payloads::user(author.id, &author.name, author.bot);
    let mut d = json!({
        "id": id.to_string(),
        "application_id": shared.application_id.to_string(),
        "type": kind,
        "data": data,
        "token": token,
        "version": 1,
        "channel_id": channel_id.to_string(),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
    });
    match guild_id {
        Some(g) => {
            let position = shared
                .guilds
                .iter()
                .find(|spec| spec.id == g)
                .and_then(|spec| spec.channels.iter().position(|c| *c == channel_id))
                .unwrap_or(0);
            let mut member = payloads::member(Some(user), &shared.joined_at);
            member["roles"] = payloads::role_ids(&author.roles);
            member["permissions"] =
                Value::from(payloads::member_permissions(g, &author.roles).to_string());
            d["guild_id"] = Value::from(g.to_string());
            d["guild_locale"] = Value::from("en-US");
            d["member"] = member;
            d["channel"] = payloads::guild_channel(g, channel_id, position);
            d["app_permissions"] = Value::from(payloads::EVERYONE_PERMISSIONS.to_string());
            d["authorizing_integration_owners"] = json!({ "0": g.to_string() });
            d["context"] = Value::from(0);
        }
        None => {
            let bot = payloads::current_user(shared.bot_user_id);
            d["user"] = user;
            d["channel"] = payloads::dm_channel(channel_id, bot);
            d["app_permissions"] = Value::from(payloads::EVERYONE_PERMISSIONS.to_string());
            d["authorizing_integration_owners"] = json!({ "0": "0" });
            d["context"] = Value::from(1);
        }
    }
    if let Some(m) = message {
        d["message"] = m;
    }
    w.interactions.insert(
        id,
        PendingInteraction {
            token: token.clone(),
            channel_id,
            message_id,
            dispatched: Instant::now(),
            answered: false,
        },
    );
    w.gw.dispatch(guild_id, "INTERACTION_CREATE", d);
    Ok(InteractionRef { id, token })
}

fn unknown_interaction() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &payloads::error_body(10062, "Unknown interaction"),
    )
}

/// `POST /interactions/{id}/{token}/callback`.
pub(crate) async fn callback(
    State(shared): State<Arc<Shared>>,
    Path((id, token)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    let now = Instant::now();
    let body = match parse_json(&raw) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let kind = body.get("type").and_then(Value::as_u64).unwrap_or(0);
    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let id = id.parse::<u64>().unwrap_or(0);
    let mut w = shared.world();
    let Some(pending) = w.interactions.get(&id).cloned() else {
        return unknown_interaction();
    };
    if pending.token != token {
        return unknown_interaction();
    }
    let elapsed = now.saturating_duration_since(pending.dispatched);
    let (status, resp) = if elapsed > shared.interaction_window {
        (404, unknown_interaction())
    } else if pending.answered {
        (
            400,
            json_response(
                StatusCode::BAD_REQUEST,
                &payloads::error_body(40060, "Interaction has already been acknowledged."),
            ),
        )
    } else if let Err(message) = validate(kind, &data, pending.message_id.is_some()) {
        (
            400,
            json_response(
                StatusCode::BAD_REQUEST,
                &payloads::form_error("data", "BASE_TYPE_BAD", message),
            ),
        )
    } else {
        (204, StatusCode::NO_CONTENT.into_response())
    };
    if status == 204 {
        if let Some(p) = w.interactions.get_mut(&id) {
            p.answered = true;
        }
        if kind == 7 {
            if let Some(message_id) = pending.message_id {
                update_message(&mut w, message_id, &data);
            }
        }
    }
    w.interaction_responses.push(InteractionResponse {
        interaction_id: id,
        channel_id: pending.channel_id,
        kind,
        flags: data.get("flags").and_then(Value::as_u64).unwrap_or(0),
        content: data
            .get("content")
            .and_then(Value::as_str)
            .map(str::to_owned),
        components: data.get("components").cloned(),
        allowed_mentions: data.get("allowed_mentions").cloned(),
        body,
        status,
        elapsed_ms: elapsed.as_millis() as u64,
        elapsed,
    });
    drop(w);
    shared.bump_events();
    if kind == 7 {
        shared.bump_messages();
    }
    resp
}

/// How long an interaction token can edit its answer (Discord: 15 minutes).
const TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(15 * 60);

/// `PATCH /webhooks/{application_id}/{token}/messages/@original`.
pub(crate) async fn edit_original(
    State(shared): State<Arc<Shared>>,
    Path((app, token)): Path<(String, String)>,
    raw: Bytes,
) -> Response {
    let now = Instant::now();
    let body = match parse_json(&raw) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    if app != shared.application_id.to_string() {
        return json_response(
            StatusCode::NOT_FOUND,
            &payloads::error_body(10015, "Unknown Webhook"),
        );
    }
    let mut w = shared.world();
    let found = w
        .interactions
        .iter()
        .find(|(_, p)| p.token == token)
        .map(|(id, p)| (*id, p.clone()));
    let Some((id, pending)) = found else {
        return json_response(
            StatusCode::NOT_FOUND,
            &payloads::error_body(10015, "Unknown Webhook"),
        );
    };
    let elapsed = now.saturating_duration_since(pending.dispatched);
    if !pending.answered || elapsed > TOKEN_LIFETIME {
        return json_response(
            StatusCode::NOT_FOUND,
            &payloads::error_body(10008, "Unknown Message"),
        );
    }
    let content = body
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    w.interaction_edits.push(InteractionEdit {
        interaction_id: id,
        channel_id: pending.channel_id,
        content: content.clone(),
        allowed_mentions: body.get("allowed_mentions").cloned(),
        body: body.clone(),
        elapsed_ms: elapsed.as_millis() as u64,
    });
    let message_id = w.snowflake();
    let message = payloads::message(payloads::MessageView {
        id: message_id,
        channel_id: pending.channel_id,
        guild_id: None,
        author: payloads::user(shared.bot_user_id, payloads::BOT_NAME, true),
        member: None,
        content,
        timestamp: payloads::timestamp(std::time::SystemTime::now()),
        tts: false,
        mentions: Vec::new(),
        mention_everyone: false,
        nonce: None,
        webhook_id: Some(shared.application_id),
        message_reference: None,
        referenced_message: None,
        components: body.get("components").cloned().unwrap_or_else(|| json!([])),
        flags: 0,
    });
    drop(w);
    shared.bump_events();
    json_response(StatusCode::OK, &message)
}

/// The checks Discord makes that matter here.
fn validate(kind: u64, data: &Value, is_component: bool) -> Result<(), &'static str> {
    match kind {
        4 => {
            let content = data.get("content").and_then(Value::as_str).unwrap_or("");
            let has_components = data
                .get("components")
                .and_then(Value::as_array)
                .is_some_and(|c| !c.is_empty());
            if content.trim().is_empty() && !has_components {
                return Err("Cannot send an empty message");
            }
            if content.chars().count() > 2000 {
                return Err("Must be 2000 or fewer in length.");
            }
            Ok(())
        }
        5 => Ok(()),
        6 | 7 if is_component => Ok(()),
        6 | 7 => Err("Interaction response type only valid for component interactions"),
        _ => Err("Value is not a valid interaction response type"),
    }
}

/// UPDATE_MESSAGE: the fields given replace the message's.
fn update_message(w: &mut World, message_id: u64, data: &Value) {
    let content = data.get("content").and_then(Value::as_str);
    let components = data.get("components");
    if let Some(obj) = w.message_objects.get_mut(&message_id) {
        if let Some(c) = content {
            obj["content"] = Value::from(c);
        }
        if let Some(c) = components {
            obj["components"] = payloads::answered_components(c);
        }
    }
    w.update_posted(message_id, content, components);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::FakeConfig;

    fn shared(window: Duration) -> Arc<Shared> {
        let config = FakeConfig {
            interaction_window: window,
            ..FakeConfig::default()
        };
        Arc::new(Shared::new(&config, ([127, 0, 0, 1], 0).into()))
    }

    fn pending(shared: &Shared, id: u64, message_id: Option<u64>) {
        shared.world().interactions.insert(
            id,
            PendingInteraction {
                token: format!("tok{id}"),
                channel_id: 1001,
                message_id,
                dispatched: Instant::now(),
                answered: false,
            },
        );
    }

    async fn answer(shared: &Arc<Shared>, id: u64, token: &str, body: Value) -> StatusCode {
        callback(
            State(shared.clone()),
            Path((id.to_string(), token.to_owned())),
            Bytes::from(body.to_string()),
        )
        .await
        .status()
    }

    fn message(content: &str) -> Value {
        json!({ "type": 4, "data": { "content": content, "flags": 64 } })
    }

    #[tokio::test]
    async fn the_first_answer_in_time_is_accepted_and_recorded() {
        let s = shared(Duration::from_secs(3));
        pending(&s, 1, None);
        assert_eq!(
            answer(&s, 1, "tok1", message("hi")).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            answer(&s, 1, "tok1", message("again")).await,
            StatusCode::BAD_REQUEST
        );
        let r = s.world().interaction_responses.clone();
        assert_eq!(r.len(), 2);
        assert!(r[0].accepted() && r[0].ephemeral());
        assert_eq!(r[0].content.as_deref(), Some("hi"));
        assert!(r[0].elapsed < Duration::from_secs(1));
        assert_eq!(r[1].status, 400);
    }

    #[tokio::test]
    async fn a_late_answer_or_a_wrong_token_is_an_unknown_interaction() {
        let s = shared(Duration::from_millis(50));
        pending(&s, 2, None);
        pending(&s, 3, None);
        assert_eq!(
            answer(&s, 3, "nope", message("x")).await,
            StatusCode::NOT_FOUND
        );
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(
            answer(&s, 2, "tok2", message("late")).await,
            StatusCode::NOT_FOUND
        );
        let r = s.world().interaction_responses.clone();
        assert_eq!(r.len(), 1, "a wrong token is not recorded as an answer");
        assert_eq!(r[0].status, 404);
        assert!(r[0].elapsed >= Duration::from_millis(50));
    }

    #[tokio::test]
    async fn an_acknowledged_answer_can_be_edited_in() {
        let s = shared(Duration::from_secs(3));
        pending(&s, 6, None);
        let app = s.application_id.to_string();
        let edit = |token: &str| {
            edit_original(
                State(s.clone()),
                Path((app.clone(), token.to_owned())),
                Bytes::from(json!({ "content": "done" }).to_string()),
            )
        };
        assert_eq!(
            edit("tok6").await.status(),
            StatusCode::NOT_FOUND,
            "not acknowledged yet"
        );
        let deferred = json!({ "type": 5, "data": { "flags": 64 } });
        assert_eq!(
            answer(&s, 6, "tok6", deferred).await,
            StatusCode::NO_CONTENT
        );
        assert_eq!(edit("tok6").await.status(), StatusCode::OK);
        assert_eq!(edit("other").await.status(), StatusCode::NOT_FOUND);
        let edits = s.world().interaction_edits.clone();
        assert_eq!(edits.len(), 1);
        assert_eq!(
            (edits[0].interaction_id, edits[0].content.as_str()),
            (6, "done")
        );
    }

    #[tokio::test]
    async fn update_message_is_for_buttons_and_edits_the_message() {
        let s = shared(Duration::from_secs(3));
        pending(&s, 4, None);
        let update = json!({ "type": 7, "data": { "components": [] } });
        assert_eq!(
            answer(&s, 4, "tok4", update.clone()).await,
            StatusCode::BAD_REQUEST
        );
        s.world()
            .message_objects
            .insert(77, json!({ "id": "77", "components": [{ "type": 1 }] }));
        pending(&s, 5, Some(77));
        assert_eq!(answer(&s, 5, "tok5", update).await, StatusCode::NO_CONTENT);
        assert_eq!(s.world().message_objects[&77]["components"], json!([]));
    }
}
