//! The Discord adapter: everything that knows about serenity.
//!
//! - [`client`]: builds serenity's HTTP client and gateway client.
//! - [`sender`]: posts messages with nonces and reads Discord's rate-limit
//!   answers (implements the scheduler's [`MessageSink`](crate::countdown::sink::MessageSink)).
//! - [`handler`]: gateway events in, commands out.

pub mod client;
pub mod handler;
pub mod sender;
