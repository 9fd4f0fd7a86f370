//! Discord refusing the shards themselves: close code 4011 (sharding
//! required: the bot is in too many servers for the shard count) or 4010
//! (invalid shard). Neither goes away by trying again, yet serenity 0.12
//! tells the application nothing: it logs a line of its own, loops on the
//! closed connection (a busy core) until its next heartbeat is due, then
//! identifies again, for ever, each attempt spending one of the day's 1,000
//! session starts (Discord resets the token of a bot that spends them all).
//!
//! [`layer`] (installed with the logging, see [`crate::telemetry`]) reads
//! serenity's line for either close code and reports it; the term waiting
//! on [`Refusals::next`] ends, and the bot exits with one line naming the
//! fix, as it does when Discord refuses the token.

use std::sync::OnceLock;

use tokio::sync::watch;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Filter, Layer};
use tracing_subscriber::registry::LookupSpan;

use crate::config::Shards;

/// Where serenity 0.12.5 logs the close codes of a shard.
const SERENITY_SHARD: &str = "serenity::gateway::shard";
/// serenity's line for close code 4011, and for 4010.
const SHARDING_REQUIRED_LINE: &str = "Shard has too many guilds";
const INVALID_SHARD_LINE: &str = "Sent invalid shard data";

/// A close code Discord gives a shard that no retry can fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 4011: too many servers for the shard count.
    ShardingRequired,
    /// 4010: a shard id or count Discord does not accept.
    InvalidShard,
}

impl Refusal {
    /// Discord's close code.
    pub fn code(self) -> u16 {
        match self {
            Refusal::ShardingRequired => 4011,
            Refusal::InvalidShard => 4010,
        }
    }

    /// The refusal serenity's log line `message` reports, if any.
    fn of_line(message: &str) -> Option<Refusal> {
        if message.contains(SHARDING_REQUIRED_LINE) {
            Some(Refusal::ShardingRequired)
        } else if message.contains(INVALID_SHARD_LINE) {
            Some(Refusal::InvalidShard)
        } else {
            None
        }
    }

    /// The line the bot exits with: what Discord said, and what to change.
    pub fn advice(self, shards: Shards) -> String {
        let fix = match (self, shards) {
            (Refusal::ShardingRequired, Shards::Auto) => {
                "the bot outgrew the count Discord recommended at start; starting again asks \
                 Discord anew"
                    .to_owned()
            }
            (Refusal::ShardingRequired, Shards::Fixed(n)) => format!(
                "the bot is in too many servers for {n} shard{}; set SHARDS=auto",
                if n == 1 { "" } else { "s" }
            ),
            (Refusal::InvalidShard, _) => {
                format!("Discord does not accept the shards of SHARDS={shards}; set SHARDS=auto")
            }
        };
        format!("Discord closed the gateway with {self} (SHARDS={shards}): {fix}")
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ShardingRequired => write!(f, "{}: sharding required", self.code()),
            Refusal::InvalidShard => write!(f, "{}: invalid shard", self.code()),
        }
    }
}

/// The last refusal reported, shared by the log layer and the terms.
fn channel() -> &'static watch::Sender<Option<Refusal>> {
    static CHANNEL: OnceLock<watch::Sender<Option<Refusal>>> = OnceLock::new();
    CHANNEL.get_or_init(|| watch::Sender::new(None))
}

/// Reports a refusal to whoever waits in [`Refusals::next`].
pub fn report(refusal: Refusal) {
    channel().send_replace(Some(refusal));
}

/// The refusals reported from now on.
pub struct Refusals(watch::Receiver<Option<Refusal>>);

impl Refusals {
    /// Starts listening; what was reported before is not seen.
    pub fn subscribe() -> Self {
        let mut rx = channel().subscribe();
        rx.borrow_and_update();
        Refusals(rx)
    }

    /// Waits for the next refusal.
    pub async fn next(&mut self) -> Refusal {
        loop {
            if self.0.changed().await.is_err() {
                // The sender is a static: it is never dropped.
                std::future::pending::<()>().await;
            }
            if let Some(refusal) = *self.0.borrow_and_update() {
                return refusal;
            }
        }
    }
}

/// The tracing layer that reads serenity's close-code lines, whatever
/// `RUST_LOG` lets through to the log (it has its own filter).
pub fn layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    ShardLog.with_filter(shard_events())
}

fn shard_events<S: Subscriber>() -> impl Filter<S> {
    Targets::new().with_target(SERENITY_SHARD, Level::WARN)
}

struct ShardLog;

impl<S: Subscriber> Layer<S> for ShardLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut message = Message(String::new());
        event.record(&mut message);
        if let Some(refusal) = Refusal::of_line(&message.0) {
            report(refusal);
        }
    }
}

/// The `message` field of an event, formatted.
struct Message(String);

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn serenitys_lines_for_4011_and_4010_are_recognised() {
        assert_eq!(
            Refusal::of_line("[ShardInfo { id: ShardId(0), total: 1 }] Shard has too many guilds."),
            Some(Refusal::ShardingRequired)
        );
        assert_eq!(
            Refusal::of_line("[ShardInfo { id: ShardId(2), total: 2 }] Sent invalid shard data."),
            Some(Refusal::InvalidShard)
        );
        assert_eq!(
            Refusal::of_line("[ShardInfo { id: ShardId(0), total: 1 }] Gateway ratelimited."),
            None
        );
        assert_eq!(Refusal::ShardingRequired.code(), 4011);
    }

    #[test]
    fn the_advice_names_the_code_and_the_fix() {
        assert_eq!(
            Refusal::ShardingRequired.advice(Shards::Fixed(1)),
            "Discord closed the gateway with 4011: sharding required (SHARDS=1): \
             the bot is in too many servers for 1 shard; set SHARDS=auto"
        );
        assert!(Refusal::InvalidShard
            .advice(Shards::Fixed(3))
            .contains("4010: invalid shard (SHARDS=3)"));
        assert!(Refusal::ShardingRequired
            .advice(Shards::Auto)
            .contains("starting again asks Discord anew"));
    }

    #[tokio::test]
    async fn the_layer_reports_serenitys_event_and_nothing_else() {
        let subscriber = tracing_subscriber::registry().with(layer());
        let mut refusals = Refusals::subscribe();
        tracing::subscriber::with_default(subscriber, || {
            // The same line from another target is not serenity's.
            tracing::error!(target: "countdown::x", "Shard has too many guilds.");
        });
        assert!(!refusals.0.has_changed().unwrap_or(true));
        let subscriber = tracing_subscriber::registry().with(layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(
                target: "serenity::gateway::shard",
                "[{:?}] Shard has too many guilds.",
                (0, 1)
            );
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(1), refusals.next()).await;
        assert_eq!(got, Ok(Refusal::ShardingRequired));
    }
}
