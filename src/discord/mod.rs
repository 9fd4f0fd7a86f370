//! The Discord adapter: everything that knows about serenity.
//!
//! - [`client`]: builds serenity's HTTP client and gateway client.
//! - [`sender`]: posts messages with nonces and reads Discord's rate-limit
//!   answers (implements the scheduler's [`MessageSink`](crate::send::MessageSink)).
//! - [`handler`]: gateway events in, commands out.
//! - [`interactions`]: slash commands and the Stop button, answered within
//!   Discord's 3 s window.
//! - [`registration`]: the slash commands, registered at start.
//! - [`components`]: the Stop button and its custom id.
//! - [`permissions`]: a member's Manage Messages, from serenity's cache.
//! - [`refusal`]: Discord refusing the shard count (4011) or a shard (4010).

pub mod client;
pub mod components;
pub mod handler;
pub mod interactions;
pub mod permissions;
pub mod refusal;
pub mod registration;
pub mod sender;
