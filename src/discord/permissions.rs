//! Does the author of a guild message hold Manage Messages in its channel?
//! Only `STOP_POLICY=starter_or_manager` asks, for a mention `stop`.
//!
//! Computed from serenity's cache: GUILD_CREATE gives every guild's roles
//! and channels (with their permission overwrites), and MESSAGE_CREATE
//! carries the author's roles. So the answer usually costs no request.
//! When the cache lacks the guild or the channel (a guild still
//! unavailable after READY, a channel created while the gateway was away),
//! one look-up asks Discord instead: `GET /guilds/{id}` (roles, owner) and
//! `GET /channels/{id}` (overwrites; a thread's parent as well), each
//! booked in the pacer's global budget. If the look-up fails the answer is
//! "no" (the user can still stop a countdown they started, and the refusal
//! is journalled), logged once.
//! Interactions do not need this: Discord sends the member's permissions
//! in the channel with them.

use serenity::all::{
    Cache, ChannelId, GuildChannel, GuildId, Http, PartialGuild, PartialMember, UserId,
};

use crate::commands::policy;
use crate::send::Pacer;

/// Why the look-up could not answer.
#[derive(Debug, thiserror::Error)]
enum LookupError {
    #[error("Discord refused the look-up: {0}")]
    Http(#[from] serenity::Error),
    #[error("channel {0} is not a guild channel")]
    NotGuildChannel(ChannelId),
}

/// Where the answer comes from: serenity's cache, else one look-up.
pub async fn manages_messages(
    cache: &Cache,
    http: &Http,
    pacer: &Pacer,
    guild_id: GuildId,
    channel_id: ChannelId,
    user_id: UserId,
    member: Option<&PartialMember>,
) -> bool {
    let Some(member) = member else {
        return false;
    };
    // serenity asserts that a member's user (when present) is `user_id`;
    // MESSAGE_CREATE's member has none, but never risk the panic.
    let mut member = member.clone();
    member.user = None;
    if let Some(known) = from_cache(cache, guild_id, channel_id, user_id, &member) {
        return known;
    }
    tracing::debug!(%guild_id, %channel_id, "not in the cache: asking Discord");
    match look_up(http, pacer, guild_id, channel_id, user_id, &member).await {
        Ok(manages) => manages,
        Err(error) => {
            tracing::warn!(
                %guild_id,
                %channel_id,
                %error,
                "permissions look-up failed: treating the author as no manager"
            );
            false
        }
    }
}

/// The answer from the cache; `None` when it lacks the guild or channel.
fn from_cache(
    cache: &Cache,
    guild_id: GuildId,
    channel_id: ChannelId,
    user_id: UserId,
    member: &PartialMember,
) -> Option<bool> {
    let guild = cache.guild(guild_id)?;
    // A thread takes the permissions of its parent channel.
    let channel = guild.channels.get(&channel_id).or_else(|| {
        let parent = guild
            .threads
            .iter()
            .find(|t| t.id == channel_id)
            .and_then(|t| t.parent_id)?;
        guild.channels.get(&parent)
    })?;
    let permissions = guild.partial_member_permissions_in(channel, user_id, member);
    Some(policy::manages_messages(permissions.bits()))
}

async fn look_up(
    http: &Http,
    pacer: &Pacer,
    guild_id: GuildId,
    channel_id: ChannelId,
    user_id: UserId,
    member: &PartialMember,
) -> Result<bool, LookupError> {
    pacer.acquire_global().await;
    let guild: PartialGuild = http.get_guild(guild_id).await?;
    let mut channel = fetch_channel(http, pacer, channel_id).await?;
    // A thread takes the permissions of its parent channel.
    if channel.thread_metadata.is_some() {
        if let Some(parent) = channel.parent_id {
            channel = fetch_channel(http, pacer, parent).await?;
        }
    }
    let permissions = guild.partial_member_permissions_in(&channel, user_id, member);
    Ok(policy::manages_messages(permissions.bits()))
}

async fn fetch_channel(
    http: &Http,
    pacer: &Pacer,
    channel_id: ChannelId,
) -> Result<GuildChannel, LookupError> {
    pacer.acquire_global().await;
    http.get_channel(channel_id)
        .await?
        .guild()
        .ok_or(LookupError::NotGuildChannel(channel_id))
}
