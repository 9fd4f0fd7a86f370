//! JSON builders for the Discord objects the fake hands out: users, guilds,
//! roles, members, channels, messages, the application and READY.
//!
//! The shapes follow Discord's API v10 as serenity 0.12.5 deserializes them
//! (snowflakes as strings, permissions as strings, RFC 3339 timestamps, every
//! field serenity requires present, most optional ones present as `null`).

use std::time::SystemTime;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
pub(crate) const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;

/// Gateway intent bits the fake looks at.
pub(crate) mod intents {
    pub const GUILD_MEMBERS: u64 = 1 << 1;
    pub const GUILD_PRESENCES: u64 = 1 << 8;
    pub const GUILD_MESSAGES: u64 = 1 << 9;
    pub const DIRECT_MESSAGES: u64 = 1 << 12;
    pub const MESSAGE_CONTENT: u64 = 1 << 15;
    /// Intents Discord refuses (close 4014) unless enabled for the application.
    pub const PRIVILEGED: u64 = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT;
}

/// Permission bits granted to `@everyone` in every fake guild.
pub(crate) const EVERYONE_PERMISSIONS: u64 = 1 // CREATE_INSTANT_INVITE
    | (1 << 6) // ADD_REACTIONS
    | (1 << 10) // VIEW_CHANNEL
    | (1 << 11) // SEND_MESSAGES
    | (1 << 14) // EMBED_LINKS
    | (1 << 15) // ATTACH_FILES
    | (1 << 16) // READ_MESSAGE_HISTORY
    | (1 << 18) // USE_EXTERNAL_EMOJIS
    | (1 << 26) // CHANGE_NICKNAME
    | (1 << 38); // SEND_MESSAGES_IN_THREADS

/// Discord's MANAGE_MESSAGES permission bit.
pub(crate) const MANAGE_MESSAGES: u64 = 1 << 13;

/// Every fake guild has a "Moderator" role with MANAGE_MESSAGES; its id is
/// this plus the guild id (no channel or guild id comes near it).
const MANAGER_ROLE_BASE: u64 = 800_000_000_000_000_000;

pub(crate) fn manager_role_id(guild_id: u64) -> u64 {
    MANAGER_ROLE_BASE + guild_id
}

/// A member's permissions in a fake guild channel (no overwrites exist):
/// `@everyone`'s, plus MANAGE_MESSAGES with the Moderator role.
pub(crate) fn member_permissions(guild_id: u64, roles: &[u64]) -> u64 {
    if roles.contains(&manager_role_id(guild_id)) {
        EVERYONE_PERMISSIONS | MANAGE_MESSAGES
    } else {
        EVERYONE_PERMISSIONS
    }
}

/// The Moderator role of a guild (Manage Messages).
pub(crate) fn manager_role(guild_id: u64) -> Value {
    let mut role = everyone_role(guild_id);
    role["id"] = Value::from(manager_role_id(guild_id).to_string());
    role["name"] = Value::from("Moderator");
    role["position"] = Value::from(1);
    role["permissions"] = Value::from((EVERYONE_PERMISSIONS | MANAGE_MESSAGES).to_string());
    role
}

/// The owner of every fake guild (a human, never the bot).
pub(crate) const GUILD_OWNER_ID: u64 = 100_000_000_000_000_001;

/// The bot user's username.
pub(crate) const BOT_NAME: &str = "countdown";

/// An RFC 3339 timestamp as Discord writes them (`2024-05-01T12:00:00.123000+00:00`).
pub(crate) fn timestamp(t: SystemTime) -> String {
    DateTime::<Utc>::from(t)
        .to_rfc3339_opts(SecondsFormat::Micros, false)
        .replace('Z', "+00:00")
}

/// Seconds since the Unix epoch, as a float (for `X-RateLimit-Reset`).
pub(crate) fn epoch_secs(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A public user object (message authors, mentions, DM recipients).
pub(crate) fn user(id: u64, name: &str, bot: bool) -> Value {
    let mut u = json!({
        "id": id.to_string(),
        "username": name,
        "discriminator": "0",
        "global_name": if bot { Value::Null } else { Value::from(name) },
        "avatar": null,
        "avatar_decoration_data": null,
        "banner": null,
        "accent_color": null,
        "public_flags": 0,
        "flags": 0,
        "clan": null,
        "primary_guild": null,
    });
    if bot {
        u["bot"] = Value::Bool(true);
    }
    u
}

/// The author object of a webhook message (Discord marks it `bot: true`).
pub(crate) fn webhook_author(id: u64, name: &str, bot: bool) -> Value {
    json!({
        "id": id.to_string(),
        "username": name,
        "discriminator": "0000",
        "avatar": null,
        "bot": bot,
    })
}

/// The bot's own user as `GET /users/@me` and READY describe it.
pub(crate) fn current_user(bot_id: u64) -> Value {
    json!({
        "id": bot_id.to_string(),
        "username": BOT_NAME,
        "discriminator": "0",
        "global_name": null,
        "avatar": null,
        "avatar_decoration_data": null,
        "banner": null,
        "accent_color": null,
        "bot": true,
        "system": false,
        "mfa_enabled": false,
        "verified": true,
        "email": null,
        "locale": "en-US",
        "flags": 0,
        "public_flags": 0,
        "premium_type": 0,
        "bio": "",
        "clan": null,
        "primary_guild": null,
    })
}

/// `GET /oauth2/applications/@me`.
pub(crate) fn application(app_id: u64, bot_id: u64, guild_count: usize) -> Value {
    json!({
        "id": app_id.to_string(),
        "name": BOT_NAME,
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "hook": true,
        "bot_public": true,
        "bot_require_code_grant": false,
        "verify_key": "5f3a2e1d0c9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a39",
        "flags": 0,
        "flags_new": "0",
        "team": null,
        "owner": user(GUILD_OWNER_ID, "owner", false),
        "bot": current_user(bot_id),
        "rpc_origins": [],
        "tags": [],
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "approximate_guild_count": guild_count,
        "approximate_user_install_count": 0,
        "approximate_user_authorization_count": 0,
        "explicit_content_filter": 0,
        "eligible_oauth2_scopes": [],
        "integration_types_config": { "0": {} },
        "is_monetized": false,
        "is_verified": false,
        "is_discoverable": false,
    })
}

/// The `@everyone` role of a guild (its id is the guild id).
pub(crate) fn everyone_role(guild_id: u64) -> Value {
    json!({
        "id": guild_id.to_string(),
        "name": "@everyone",
        "description": null,
        "color": 0,
        "colors": { "primary_color": 0, "secondary_color": null, "tertiary_color": null },
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": 0,
        "permissions": EVERYONE_PERMISSIONS.to_string(),
        "managed": false,
        "mentionable": false,
        "flags": 0,
    })
}

/// A guild member; `user` is omitted when `None` (as in MESSAGE_CREATE's `member`).
pub(crate) fn member(user: Option<Value>, joined_at: &str) -> Value {
    let mut m = json!({
        "roles": [],
        "nick": null,
        "avatar": null,
        "banner": null,
        "joined_at": joined_at,
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
        "unusual_dm_activity_until": null,
    });
    if let Some(u) = user {
        m["user"] = u;
    }
    m
}

/// Role ids as Discord lists them (strings).
pub(crate) fn role_ids(roles: &[u64]) -> Value {
    Value::Array(roles.iter().map(|r| Value::from(r.to_string())).collect())
}

/// A guild text channel (type 0).
pub(crate) fn guild_channel(guild_id: u64, channel_id: u64, position: usize) -> Value {
    json!({
        "id": channel_id.to_string(),
        "type": 0,
        "guild_id": guild_id.to_string(),
        "name": format!("count-{}", channel_id % 1000),
        "position": position,
        "permission_overwrites": [],
        "parent_id": null,
        "topic": null,
        "nsfw": false,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "flags": 0,
        "icon_emoji": null,
        "theme_color": null,
    })
}

/// A DM channel (type 1) with one recipient.
pub(crate) fn dm_channel(channel_id: u64, recipient: Value) -> Value {
    json!({
        "id": channel_id.to_string(),
        "type": 1,
        "last_message_id": null,
        "flags": 0,
        "recipients": [recipient],
    })
}

/// Everything a guild needs to build its GUILD_CREATE payload.
pub(crate) struct GuildView<'a> {
    pub id: u64,
    pub channels: &'a [u64],
    pub bot_id: u64,
    pub joined_at: &'a str,
}

/// A full GUILD_CREATE guild object (with the extra gateway-only fields).
pub(crate) fn guild_create(g: &GuildView<'_>) -> Value {
    let channels: Vec<Value> = g
        .channels
        .iter()
        .enumerate()
        .map(|(i, c)| guild_channel(g.id, *c, i))
        .collect();
    let system_channel = g.channels.first().map(|c| c.to_string());
    json!({
        "id": g.id.to_string(),
        "name": format!("Guild {}", g.id),
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": GUILD_OWNER_ID.to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 0,
        "default_message_notifications": 1,
        "explicit_content_filter": 0,
        "roles": [everyone_role(g.id), manager_role(g.id)],
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": system_channel,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500_000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "nsfw": false,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
        "incidents_data": null,
        "hub_type": null,
        "latest_onboarding_question_id": null,
        "home_header": null,
        "inventory_settings": null,
        "version": 0,
        "soundboard_sounds": [],
        "embedded_activities": [],
        "activity_instances": [],
        "application_command_counts": {},
        // GUILD_CREATE extra fields
        "joined_at": g.joined_at,
        "large": false,
        "unavailable": false,
        "lazy": true,
        "member_count": 2,
        "voice_states": [],
        "members": [member(Some(current_user(g.bot_id)), g.joined_at)],
        "channels": channels,
        "threads": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
    })
}

/// The fields GUILD_CREATE has and `GET /guilds/{id}` has not.
const GATEWAY_ONLY: [&str; 17] = [
    "joined_at",
    "large",
    "unavailable",
    "lazy",
    "member_count",
    "voice_states",
    "members",
    "channels",
    "threads",
    "presences",
    "stage_instances",
    "guild_scheduled_events",
    "soundboard_sounds",
    "embedded_activities",
    "activity_instances",
    "application_command_counts",
    "version",
];

/// `GET /guilds/{id}`'s guild: GUILD_CREATE's without the gateway-only
/// fields, with the deprecated `region` Discord still sends.
pub(crate) fn guild(g: &GuildView<'_>) -> Value {
    let mut guild = guild_create(g);
    if let Some(fields) = guild.as_object_mut() {
        for key in GATEWAY_ONLY {
            fields.remove(key);
        }
        fields.insert("region".into(), Value::from("deprecated"));
    }
    guild
}

/// READY's `d`.
pub(crate) struct ReadyView<'a> {
    pub bot_id: u64,
    pub application_id: u64,
    pub guild_ids: &'a [u64],
    pub session_id: &'a str,
    pub resume_gateway_url: &'a str,
    pub shard: Option<Value>,
}

pub(crate) fn ready(r: &ReadyView<'_>) -> Value {
    let guilds: Vec<Value> = r
        .guild_ids
        .iter()
        .map(|g| json!({ "id": g.to_string(), "unavailable": true }))
        .collect();
    let mut d = json!({
        "v": 10,
        "user": current_user(r.bot_id),
        "user_settings": {},
        "guilds": guilds,
        "guild_join_requests": [],
        "presences": [],
        "private_channels": [],
        "relationships": [],
        "session_id": r.session_id,
        "session_type": "normal",
        "resume_gateway_url": r.resume_gateway_url,
        "geo_ordered_rtc_regions": ["fake"],
        "application": { "id": r.application_id.to_string(), "flags": 0 },
        "auth": {},
        "_trace": ["[\"fake-discord-gateway\",{\"micros\":0}]"],
    });
    if let Some(shard) = &r.shard {
        d["shard"] = shard.clone();
    }
    d
}

/// The parts of a message object.
pub(crate) struct MessageView {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub author: Value,
    pub member: Option<Value>,
    pub content: String,
    pub timestamp: String,
    pub tts: bool,
    pub mentions: Vec<Value>,
    pub mention_everyone: bool,
    pub nonce: Option<Value>,
    pub webhook_id: Option<u64>,
    pub message_reference: Option<Value>,
    pub referenced_message: Option<Value>,
    pub components: Value,
    pub flags: u64,
}

/// A message object (REST answer or MESSAGE_CREATE's `d`).
pub(crate) fn message(m: MessageView) -> Value {
    let kind = if m.message_reference.is_some() { 19 } else { 0 };
    let mut v = json!({
        "id": m.id.to_string(),
        "type": kind,
        "channel_id": m.channel_id.to_string(),
        "author": m.author,
        "content": m.content,
        "timestamp": m.timestamp,
        "edited_timestamp": null,
        "tts": m.tts,
        "mention_everyone": m.mention_everyone,
        "mentions": m.mentions,
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "components": answered_components(&m.components),
        "pinned": false,
        "flags": m.flags,
    });
    if let Some(g) = m.guild_id {
        v["guild_id"] = Value::from(g.to_string());
    }
    if let Some(member) = m.member {
        v["member"] = member;
    }
    if let Some(n) = m.nonce {
        v["nonce"] = n;
    }
    if let Some(w) = m.webhook_id {
        v["webhook_id"] = Value::from(w.to_string());
    }
    if let Some(r) = m.message_reference {
        v["message_reference"] = r;
        v["referenced_message"] = m.referenced_message.unwrap_or(Value::Null);
    }
    v
}

/// User ids mentioned in `content` as `<@id>` or `<@!id>`, in order, without repeats.
pub(crate) fn mentioned_user_ids(content: &str) -> Vec<u64> {
    let mut out = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let body = rest.strip_prefix('!').unwrap_or(rest);
        let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && body[digits.len()..].starts_with('>') {
            if let Ok(id) = digits.parse::<u64>() {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
        }
    }
    out
}

/// Whether `content` pings everyone (`@everyone` or `@here`).
pub(crate) fn mentions_everyone(content: &str) -> bool {
    content.contains("@everyone") || content.contains("@here")
}

/// A Discord JSON error body.
pub(crate) fn error_body(code: u32, message: &str) -> Value {
    json!({ "message": message, "code": code })
}

/// Components as Discord answers them: every component carries a numeric
/// `id`, numbered from 1 in document order where the request gave none.
pub(crate) fn answered_components(components: &Value) -> Value {
    fn number(v: &mut Value, next: &mut u64) {
        match v {
            Value::Array(items) => items.iter_mut().for_each(|i| number(i, next)),
            Value::Object(obj) => {
                if obj.contains_key("type") {
                    let id = obj.entry("id").or_insert(Value::Null);
                    if id.is_null() {
                        *id = Value::from(*next);
                    }
                    *next += 1;
                }
                if let Some(children) = obj.get_mut("components") {
                    number(children, next);
                }
            }
            _ => {}
        }
    }
    let mut answered = components.clone();
    number(&mut answered, &mut 1);
    answered
}

/// Discord's "Invalid Form Body" (50035) with one field error.
pub(crate) fn form_error(field: &str, code: &str, message: &str) -> Value {
    json!({
        "message": "Invalid Form Body",
        "code": 50035,
        "errors": { field: { "_errors": [ { "code": code, "message": message } ] } },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mentions() {
        assert_eq!(
            mentioned_user_ids("<@12> hi <@!34> <@12> <@x> <@56"),
            vec![12, 34]
        );
        assert!(mentioned_user_ids("no mention <@> <@!>").is_empty());
    }

    #[test]
    fn timestamps_look_like_discords() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14T22:13:20.123000+00:00");
    }
}
