//! Who asks, where, and how: a user's message ([`Incoming`]), the source of
//! a command ([`Source`]), and what admission, stop and status need to know
//! about a command whatever its source ([`Origin`]).

use super::policy::Actor;

/// A message from a user (bots and webhooks are filtered out before).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message_id: u64,
    pub channel_id: u64,
    /// `None` for a DM.
    pub guild_id: Option<u64>,
    pub author_id: u64,
    pub content: String,
    /// The author holds Manage Messages in the channel (see
    /// `discord::permissions`); only `STOP_POLICY=starter_or_manager` reads it.
    pub manages_messages: bool,
}

/// Where a command came from: the label of
/// `countdown_commands_by_source_total` and the `source` of a task row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A guild message mentioning the bot.
    Mention,
    /// A direct message.
    Dm,
    /// A slash command.
    Slash,
    /// The Stop button.
    Button,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::Mention, Source::Dm, Source::Slash, Source::Button];

    pub fn label(self) -> &'static str {
        match self {
            Source::Mention => "mention",
            Source::Dm => "dm",
            Source::Slash => "slash",
            Source::Button => "button",
        }
    }
}

/// Who asks, where, and how: what admission, stop and status need to know
/// about a command, whatever its source.
#[derive(Debug, Clone)]
pub struct Origin {
    pub source: Source,
    pub channel_id: u64,
    /// `None` for a DM.
    pub guild_id: Option<u64>,
    pub user_id: u64,
    pub manages_messages: bool,
    /// The command as the user gave it, for `command_errors.content`.
    pub content: String,
    /// The id of the command's message or interaction: a snowflake, so it
    /// says when the user gave the command.
    pub command_id: u64,
}

impl Origin {
    pub(super) fn actor(&self) -> Actor {
        Actor {
            user_id: self.user_id,
            manages_messages: self.manages_messages,
        }
    }
}

impl From<&Incoming> for Origin {
    fn from(msg: &Incoming) -> Self {
        Origin {
            source: if msg.guild_id.is_some() {
                Source::Mention
            } else {
                Source::Dm
            },
            channel_id: msg.channel_id,
            guild_id: msg.guild_id,
            user_id: msg.author_id,
            manages_messages: msg.manages_messages,
            content: msg.content.clone(),
            command_id: msg.message_id,
        }
    }
}
