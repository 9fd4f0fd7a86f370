//! Does the author of a guild message hold Manage Messages in its channel?
//! Only `STOP_POLICY=starter_or_manager` asks, for a mention `stop`.
//!
//! Computed from serenity's cache: GUILD_CREATE gives every guild's roles
//! and channels (with their permission overwrites), and MESSAGE_CREATE
//! carries the author's roles. So the answer costs no request and no time
//! within the command. When the cache lacks the guild or the channel (it
//! should not: the GUILDS intent fills it), the answer is "no": the user
//! can still stop a countdown they started, and the refusal is journalled.
//! Interactions do not need this: Discord sends the member's permissions
//! in the channel with them.

use serenity::all::{Cache, ChannelId, GuildId, PartialMember, UserId};

use crate::commands::policy;

pub fn manages_messages(
    cache: &Cache,
    guild_id: GuildId,
    channel_id: ChannelId,
    user_id: UserId,
    member: Option<&PartialMember>,
) -> bool {
    let Some(member) = member else {
        return false;
    };
    let Some(guild) = cache.guild(guild_id) else {
        tracing::warn!(%guild_id, "guild not in the cache: treating the author as no manager");
        return false;
    };
    // A thread takes the permissions of its parent channel.
    let channel = guild.channels.get(&channel_id).or_else(|| {
        let parent = guild
            .threads
            .iter()
            .find(|t| t.id == channel_id)
            .and_then(|t| t.parent_id)?;
        guild.channels.get(&parent)
    });
    let Some(channel) = channel else {
        tracing::warn!(%channel_id, "channel not in the cache: treating the author as no manager");
        return false;
    };
    // serenity asserts that a member's user (when present) is `user_id`;
    // MESSAGE_CREATE's member has none, but never risk the panic.
    let mut member = member.clone();
    member.user = None;
    let permissions = guild.partial_member_permissions_in(channel, user_id, &member);
    policy::manages_messages(permissions.bits())
}
