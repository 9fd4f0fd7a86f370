//! Posting messages. Each request is built with serenity's `Request` (so the
//! proxy base URL and the token header are serenity's) but executed here,
//! because serenity's `Http::request` drops the headers and body of a failed
//! answer, and we need `Retry-After`, `X-RateLimit-*` and the 429 body.

use std::sync::Arc;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serenity::all::{
    ChannelId, CreateAllowedMentions, CreateMessage, Http, LightMethod, MessageId,
    MessageReference, MessageReferenceKind, Nonce, Request, Route,
};

use super::components;
use crate::send::answer::{self, snowflake};
use crate::send::{Delivered, Listed, MessageSink, Outgoing, SendError, PAGE};

pub struct DiscordSink {
    http: Arc<Http>,
    client: reqwest::Client,
}

impl DiscordSink {
    /// `client` must be the one given to serenity's `HttpBuilder`, so both share
    /// the connection pool and the timeout.
    pub fn new(http: Arc<Http>, client: reqwest::Client) -> Self {
        DiscordSink { http, client }
    }
}

/// The JSON body of a message: never pings anyone, always carries a nonce
/// Discord enforces, so a repeated request cannot post twice. Number 1 of
/// every countdown carries its Stop button (see [`super::components`]).
pub fn message_body(channel_id: ChannelId, message: &Outgoing) -> CreateMessage {
    let builder = CreateMessage::new()
        .nonce(Nonce::String(message.nonce()))
        .enforce_nonce(true)
        .allowed_mentions(CreateAllowedMentions::new().replied_user(false));
    match message {
        Outgoing::Number { task_id, k: 1 } => builder
            .content("1")
            .components(vec![components::stop_row(*task_id)]),
        Outgoing::Number { k, .. } => builder.content(k.to_string()),
        Outgoing::Reply { to_message, text } => builder.content(text).reference_message(
            MessageReference::new(MessageReferenceKind::Default, channel_id)
                .message_id(MessageId::new((*to_message).max(1)))
                .fail_if_not_exists(false),
        ),
    }
}

impl DiscordSink {
    /// Sends `request` and returns the headers and body of a 2xx answer;
    /// anything else is a [`SendError`] read from the raw answer.
    async fn execute(&self, request: Request<'_>) -> Result<(HeaderMap, String), SendError> {
        let request = request
            .build(&self.client, self.http.token(), self.http.proxy.as_deref())
            .map_err(|e| SendError::Network(format!("cannot build request: {e}")))?;
        let response = request.send().await.map_err(|e| {
            if e.is_timeout() {
                SendError::Timeout
            } else {
                SendError::Network(e.without_url().to_string())
            }
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        // Bodies of failed answers are small JSON (or Cloudflare's HTML).
        let body = response.text().await.unwrap_or_default();
        if status.is_success() {
            Ok((headers, body))
        } else {
            Err(answer::failure(status, &headers, &body))
        }
    }
}

fn channel(channel_id: u64) -> Result<ChannelId, SendError> {
    if channel_id == 0 {
        return Err(SendError::Rejected {
            status: 0,
            message: "channel id 0".into(),
        });
    }
    Ok(ChannelId::new(channel_id))
}

#[async_trait]
impl MessageSink for DiscordSink {
    async fn post(&self, channel_id: u64, message: &Outgoing) -> Result<Delivered, SendError> {
        let channel = channel(channel_id)?;
        let body = serde_json::to_vec(&message_body(channel, message))
            .map_err(|e| SendError::InvalidResponse(format!("cannot encode message: {e}")))?;
        let request = Request::new(
            Route::ChannelMessages {
                channel_id: channel,
            },
            LightMethod::Post,
        )
        .body(Some(body));
        let (headers, body) = self.execute(request).await?;
        Ok(answer::delivered(&headers, &body))
    }

    async fn list_after(&self, channel_id: u64, after: u64) -> Result<Vec<Listed>, SendError> {
        let request = Request::new(
            Route::ChannelMessages {
                channel_id: channel(channel_id)?,
            },
            LightMethod::Get,
        )
        .params(Some(vec![
            ("after", after.to_string()),
            ("limit", PAGE.to_string()),
        ]));
        let (_, body) = self.execute(request).await?;
        parse_listing(&body)
    }
}

/// A page of `GET /channels/{id}/messages` (newest first), oldest first.
pub fn parse_listing(body: &str) -> Result<Vec<Listed>, SendError> {
    let page: Vec<serde_json::Value> = serde_json::from_str(body)
        .map_err(|e| SendError::InvalidResponse(format!("message list: {e}")))?;
    let mut listed: Vec<Listed> = page
        .iter()
        .filter_map(|m| {
            Some(Listed {
                id: snowflake(m.get("id"))?,
                author_id: snowflake(m.get("author")?.get("id"))?,
                content: m.get("content")?.as_str()?.to_owned(),
                stop_button_of: stop_button_of(m),
            })
        })
        .collect();
    listed.sort_by_key(|m| m.id);
    Ok(listed)
}

/// The countdown whose Stop button message `m` carries.
fn stop_button_of(m: &serde_json::Value) -> Option<i64> {
    m.get("components")?
        .as_array()?
        .iter()
        .filter_map(|row| row.get("components")?.as_array())
        .flatten()
        .filter_map(|c| c.get("custom_id")?.as_str())
        .find_map(components::parse_stop_custom_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_carry_nonce_and_ping_nobody() {
        let body = serde_json::to_value(message_body(
            ChannelId::new(5),
            &Outgoing::Number { task_id: 42, k: 7 },
        ))
        .unwrap();
        assert_eq!(body["content"], "7");
        assert_eq!(body["nonce"], "42:7");
        assert_eq!(body["enforce_nonce"], true);
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
        assert_eq!(body["allowed_mentions"]["replied_user"], false);
        assert!(
            body.get("components").is_none(),
            "only number 1 has a button"
        );
    }

    #[test]
    fn number_one_carries_the_stop_button_of_its_countdown() {
        let body = serde_json::to_value(message_body(
            ChannelId::new(5),
            &Outgoing::Number { task_id: 42, k: 1 },
        ))
        .unwrap();
        assert_eq!(body["content"], "1");
        assert_eq!(body["nonce"], "42:1");
        assert_eq!(
            body["components"][0]["components"][0]["custom_id"],
            "stop:42"
        );
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    }

    #[test]
    fn the_longest_nonce_fits_discords_limit() {
        let nonce = Outgoing::Number {
            task_id: i64::MAX,
            k: 9999,
        }
        .nonce();
        assert!(nonce.len() <= 25, "{nonce}");
        let reply = Outgoing::Reply {
            to_message: u64::MAX,
            text: String::new(),
        };
        assert!(reply.nonce().len() <= 25);
    }

    #[test]
    fn replies_reference_the_command() {
        let body = serde_json::to_value(message_body(
            ChannelId::new(5),
            &Outgoing::Reply {
                to_message: 99,
                text: "hi @everyone".into(),
            },
        ))
        .unwrap();
        assert_eq!(body["message_reference"]["message_id"], "99");
        assert_eq!(body["message_reference"]["fail_if_not_exists"], false);
        assert_eq!(body["allowed_mentions"]["parse"], serde_json::json!([]));
    }

    #[test]
    fn a_listing_is_read_oldest_first_with_its_stop_buttons() {
        let body = r#"[
            {"id":"30","author":{"id":"7"},"content":"2","components":[]},
            {"id":"20","author":{"id":"9"},"content":"hello"},
            {"id":"10","author":{"id":"7"},"content":"1","components":[{"type":1,"components":[{"type":2,"custom_id":"stop:42"}]}]}
        ]"#;
        let listed = parse_listing(body).unwrap();
        assert_eq!(
            listed.iter().map(|m| m.id).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
        assert_eq!(listed[0].stop_button_of, Some(42));
        assert_eq!(listed[1].author_id, 9);
        assert_eq!(listed[2].stop_button_of, None);
        assert!(parse_listing("<html>").is_err());
    }
}
