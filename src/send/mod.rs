//! Sending: how a request reaches Discord. Countdowns' numbers, replies,
//! the channel listing of a resume and the slash-command registration all
//! take a slot from the one [`pacer::Pacer`] first, and give Discord's answer
//! (its rate-limit headers, a 429) back to it, so the bot keeps to
//! Discord's limits whoever sends.
//!
//! - [`pacer`]: slots, first come first served, from a channel's bucket
//!   ([`window`]) and the global budget ([`budget`]), left at the exact
//!   instant ([`wake`]).
//! - [`delivery`]: one message through the pacer and the sink, with its
//!   retries.
//! - [`sink`]: the interface to Discord (post a message, list a channel);
//!   the serenity adapter implements it, tests record with it.
//! - [`answer`]: reading Discord's answers (rate-limit headers, 429 bodies).
//!
//! Interaction answers do not go through the pacer: Discord does not count
//! them against the global limit.

pub mod answer;
mod budget;
pub mod delivery;
pub mod pacer;
pub mod sink;
mod wake;
mod window;

pub use delivery::{Delivery, DeliveryError, Posted, RetryPolicy};
pub use pacer::{Grant, Hold, Pacer};
pub use sink::{Delivered, Listed, MessageSink, Outgoing, SendError, PAGE};
