//! Carrying a command out. Mentions and DMs ([`CommandService::handle`])
//! and interactions (slash commands and the Stop button,
//! `discord::interactions`) share the same core: [`CommandService::count`],
//! [`CommandService::stop`] and [`CommandService::status`] decide, count
//! and journal; each source only turns the outcome into its kind of answer
//! (a reply to the message, or an interaction response). Every command
//! that is not carried out is counted and journalled.
//!
//! - [`admit`]: `count to` (the caps, one per channel, the row).
//! - [`stop`]: `stop` and the Stop button, with `STOP_POLICY`.
//! - [`message`]: a mention or DM, and the sending of replies.

pub mod admit;
pub mod message;
pub mod stop;
#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::parse::InvalidReason;
use super::policy::StopPolicy;
use super::status::Snapshot;
use super::throttle::ReplyBudget;
use super::Origin;
use crate::countdown::{Limits, Scheduler};
use crate::metrics::Metrics;
use crate::send::Delivery;
use crate::storage::{Admissions, CommandError, Journal};

pub use admit::CountOutcome;
pub use stop::StopOutcome;

#[derive(Clone)]
pub struct CommandService {
    inner: Arc<Inner>,
    stop_policy: StopPolicy,
}

struct Inner {
    scheduler: Scheduler,
    journal: Journal,
    /// Where a countdown's row is written, with the others of its burst
    /// (over [`Journal::store`]).
    admissions: Admissions,
    metrics: Metrics,
    replies: Delivery,
    limits: Limits,
    shutdown: CancellationToken,
    bot_id: AtomicU64,
    /// Bounds refusals and usage answers (see [`super::throttle`]).
    reply_budget: ReplyBudget,
}

impl CommandService {
    pub fn new(
        scheduler: Scheduler,
        journal: Journal,
        metrics: Metrics,
        replies: Delivery,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Self {
        CommandService {
            inner: Arc::new(Inner {
                scheduler,
                admissions: Admissions::start(journal.store().clone()),
                journal,
                metrics,
                replies,
                limits,
                shutdown,
                bot_id: AtomicU64::new(0),
                reply_budget: ReplyBudget::default(),
            }),
            stop_policy: StopPolicy::default(),
        }
    }

    /// Sets `STOP_POLICY`.
    pub fn with_stop_policy(mut self, policy: StopPolicy) -> Self {
        self.stop_policy = policy;
        self
    }

    pub fn limits(&self) -> Limits {
        self.inner.limits
    }

    pub fn stop_policy(&self) -> StopPolicy {
        self.stop_policy
    }

    /// False while shutting down (or before READY): commands are not taken.
    pub fn accepting(&self) -> bool {
        self.inner.bot_id.load(Ordering::SeqCst) != 0 && !self.inner.shutdown.is_cancelled()
    }

    /// A message that is a `stop` addressed to the bot: the only command
    /// whose author's permissions matter.
    pub fn is_stop(&self, content: &str) -> bool {
        let bot_id = self.inner.bot_id.load(Ordering::SeqCst);
        bot_id != 0
            && crate::commands::parse::mentions(content, bot_id)
            && matches!(
                crate::commands::parse::parse(content, bot_id),
                crate::commands::Command::Stop
            )
    }

    /// The bot's own user id, learnt from READY.
    pub fn set_bot_id(&self, id: u64) {
        self.inner.bot_id.store(id, Ordering::SeqCst);
    }

    /// The countdown running in the origin's channel, for `status`.
    pub fn status(&self, origin: &Origin) -> Option<Snapshot> {
        self.count_command(origin, "status");
        self.inner
            .scheduler
            .live(origin.channel_id)
            .map(|live| Snapshot {
                task_id: live.spec.task_id,
                starter: live.spec.user_id,
                target: live.spec.target,
                last_sent: live.last_sent(),
            })
    }

    /// Counts and journals a command that is no command (or, for a slash
    /// command, a value Discord should have refused).
    pub fn invalid(&self, origin: &Origin, reason: InvalidReason) {
        self.inner
            .metrics
            .invalid_commands
            .with_label_values(&[reason.label()])
            .inc();
        tracing::info!(reason = reason.label(), "invalid command");
        self.journal_error(origin, "invalid", reason.label().to_owned(), None);
    }

    fn count_command(&self, origin: &Origin, command: &'static str) {
        let m = &self.inner.metrics;
        m.commands.with_label_values(&[command]).inc();
        m.commands_by_source
            .with_label_values(&[origin.source.label(), command])
            .inc();
    }

    fn refuse(&self, origin: &Origin, reason: &'static str, error: &str, task_id: Option<i64>) {
        self.inner
            .metrics
            .wrong_commands
            .with_label_values(&[reason])
            .inc();
        tracing::info!(reason, "command refused");
        self.journal_error(origin, reason, error.to_owned(), task_id);
    }

    fn journal_error(
        &self,
        origin: &Origin,
        kind: &'static str,
        error: String,
        task_id: Option<i64>,
    ) {
        self.inner.journal.command_error(CommandError {
            kind,
            channel_id: origin.channel_id,
            guild_id: origin.guild_id,
            user_id: Some(origin.user_id),
            content: Some(origin.content.clone()),
            error,
            task_id,
            at: Utc::now(),
        });
    }
}
