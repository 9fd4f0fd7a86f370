//! What the scheduler needs from Discord: post a message to a channel and
//! say how it went, and read what a channel holds after a message (a
//! resume past the nonce window). The serenity adapter implements it for real;
//! tests implement it with a recorder, so the scheduler's timing is tested
//! with paused time and no network.

use std::time::Duration;

use async_trait::async_trait;

/// A message the bot posts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// Number `k` of countdown `task_id`; sent with nonce `"<task_id>:<k>"`.
    Number { task_id: i64, k: u16 },
    /// A short text answering the user's message `to_message`.
    Reply { to_message: u64, text: String },
}

impl Outgoing {
    /// The nonce that lets Discord drop a repeated send (at most 25 characters).
    pub fn nonce(&self) -> String {
        match self {
            Outgoing::Number { task_id, k } => format!("{task_id}:{k}"),
            Outgoing::Reply { to_message, .. } => format!("r{to_message}"),
        }
    }
}

/// What Discord said on a successful send.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Delivered {
    /// `X-RateLimit-Remaining`.
    pub remaining: Option<u32>,
    /// `X-RateLimit-Reset-After`.
    pub reset_after: Option<Duration>,
    /// How long ago Discord created the message it answered with. Near zero
    /// for a new message; for a repeated nonce, the age of the original.
    pub age: Option<Duration>,
    /// The id of the message Discord answered with (the original one for a
    /// repeated nonce).
    pub message_id: Option<u64>,
}

/// A message of a channel's history, as far as a resume needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: u64,
    pub author_id: u64,
    pub content: String,
    /// The countdown whose Stop button the message carries, if any.
    pub stop_button_of: Option<i64>,
}

/// Discord's largest page of a channel's history.
pub const PAGE: usize = 100;

/// Why one attempt to post failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum SendError {
    #[error("rate limited for {retry_after:?} (global: {global})")]
    RateLimited { retry_after: Duration, global: bool },
    #[error("Discord answered HTTP {status}")]
    Server { status: u16 },
    #[error("request timed out")]
    Timeout,
    #[error("network error: {0}")]
    Network(String),
    #[error("Discord refused the message (HTTP {status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("invalid response: {0}")]
    InvalidResponse(String),
}

impl SendError {
    /// Label for `countdown_send_errors_total{kind}`.
    /// Every [`SendError::kind`].
    pub const KINDS: [&'static str; 6] = [
        "rate_limited",
        "server_error",
        "timeout",
        "network",
        "rejected",
        "invalid_response",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            SendError::RateLimited { .. } => "rate_limited",
            SendError::Server { .. } => "server_error",
            SendError::Timeout => "timeout",
            SendError::Network(_) => "network",
            SendError::Rejected { .. } => "rejected",
            SendError::InvalidResponse(_) => "invalid_response",
        }
    }

    /// A rejected message (missing permission, unknown channel) will not
    /// succeed on a retry; everything else may.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SendError::Rejected { .. })
    }
}

#[async_trait]
pub trait MessageSink: Send + Sync + 'static {
    /// One attempt to post `message` in `channel_id`.
    async fn post(&self, channel_id: u64, message: &Outgoing) -> Result<Delivered, SendError>;

    /// One attempt to list the (at most [`PAGE`]) messages of `channel_id`
    /// that come right after message `after`, oldest first.
    async fn list_after(&self, channel_id: u64, after: u64) -> Result<Vec<Listed>, SendError>;
}
