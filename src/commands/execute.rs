//! Carrying out a command: admission (one per channel, the caps), the
//! database row that admits a countdown, stop, and the short replies.
//! Every command that is not carried out is counted and journalled.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::parse::{self, Command};
use super::replies;
use super::throttle::ReplyBudget;
use crate::countdown::delivery::Delivery;
use crate::countdown::sink::Outgoing;
use crate::countdown::{CountdownSpec, Limits, Refusal, Scheduler};
use crate::metrics::Metrics;
use crate::storage::tasks::{self, CommandError, NewTask};
use crate::storage::{Journal, StorageError};

/// A message from a user (bots and webhooks are filtered out before).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub message_id: u64,
    pub channel_id: u64,
    /// `None` for a DM.
    pub guild_id: Option<u64>,
    pub author_id: u64,
    pub content: String,
}

#[derive(Clone)]
pub struct CommandService {
    inner: Arc<Inner>,
}

struct Inner {
    scheduler: Scheduler,
    pool: Pool,
    journal: Journal,
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
        pool: Pool,
        journal: Journal,
        metrics: Metrics,
        replies: Delivery,
        limits: Limits,
        shutdown: CancellationToken,
    ) -> Self {
        CommandService {
            inner: Arc::new(Inner {
                scheduler,
                pool,
                journal,
                metrics,
                replies,
                limits,
                shutdown,
                bot_id: AtomicU64::new(0),
                reply_budget: ReplyBudget::default(),
            }),
        }
    }

    /// The bot's own user id, learnt from READY.
    pub fn set_bot_id(&self, id: u64) {
        self.inner.bot_id.store(id, Ordering::SeqCst);
    }

    /// Handles one user message: ignores guild messages that do not mention
    /// the bot, carries out the rest.
    pub async fn handle(&self, msg: Incoming) {
        let bot_id = self.inner.bot_id.load(Ordering::SeqCst);
        if bot_id == 0 || self.inner.shutdown.is_cancelled() {
            return;
        }
        if msg.guild_id.is_some() && !parse::mentions(&msg.content, bot_id) {
            return;
        }
        let span = tracing::info_span!(
            "command",
            channel_id = msg.channel_id,
            message_id = msg.message_id,
            task_id = tracing::field::Empty
        );
        self.execute(parse::parse(&msg.content, bot_id), &msg)
            .instrument(span)
            .await;
    }

    async fn execute(&self, command: Command, msg: &Incoming) {
        let m = &self.inner.metrics;
        match command {
            Command::Count(target) => {
                m.commands.with_label_values(&["count"]).inc();
                self.count(target, msg).await;
            }
            Command::Stop => {
                m.commands.with_label_values(&["stop"]).inc();
                match self.inner.scheduler.stop(msg.channel_id).await {
                    Some(stopped) => {
                        m.cancelled.inc();
                        tracing::Span::current().record("task_id", stopped.task_id);
                        // At most one per countdown: never over a budget.
                        self.send_reply(msg, replies::stopped(stopped));
                    }
                    None => {
                        self.refuse(msg, "not_counting", "nothing is counting here", None);
                        self.reply(msg, replies::not_counting());
                    }
                }
            }
            Command::Help => {
                m.commands.with_label_values(&["help"]).inc();
                self.reply(msg, replies::usage());
            }
            Command::Invalid(reason) => {
                m.invalid_commands
                    .with_label_values(&[reason.label()])
                    .inc();
                tracing::info!(reason = reason.label(), "invalid command");
                self.journal_error(msg, "invalid", reason.label().to_owned(), None);
                self.reply(msg, replies::invalid(reason));
            }
        }
    }

    async fn count(&self, target: u16, msg: &Incoming) {
        let inner = &self.inner;
        let reservation = match inner.scheduler.reserve(msg.channel_id, msg.guild_id) {
            Ok(r) => r,
            Err(refusal) => return self.refuse_count(msg, refusal),
        };
        let new = NewTask {
            channel_id: msg.channel_id,
            guild_id: msg.guild_id,
            user_id: msg.author_id,
            target,
        };
        let mut inserted = tasks::insert(&inner.pool, &new).await;
        if matches!(inserted, Err(StorageError::ChannelBusy)) {
            // The countdown that just ended here may not have its final
            // status written yet: write it, then try once more.
            if inner.journal.flush().await.is_ok() {
                inserted = tasks::insert(&inner.pool, &new).await;
            }
        }
        let row = match inserted {
            Ok(row) => row,
            Err(StorageError::ChannelBusy) => {
                drop(reservation);
                return self.refuse_count(msg, Refusal::BusyChannel);
            }
            Err(error) => {
                drop(reservation);
                inner.metrics.db_errors.inc();
                tracing::error!(%error, "cannot admit a countdown: database unavailable");
                self.journal_error(msg, "db_unavailable", error.to_string(), None);
                self.reply(msg, replies::database_down());
                return;
            }
        };
        tracing::Span::current().record("task_id", row.id);
        tracing::info!(target, "countdown admitted");
        inner.metrics.count_target.observe(f64::from(target));
        inner.scheduler.start(
            reservation,
            CountdownSpec {
                task_id: row.id,
                channel_id: msg.channel_id,
                guild_id: msg.guild_id,
                user_id: msg.author_id,
                target,
                next: 1,
                first_due: Instant::now(),
            },
        );
    }

    fn refuse_count(&self, msg: &Incoming, refusal: Refusal) {
        // The countdown that makes the channel busy, if it runs here.
        let running = self
            .inner
            .scheduler
            .live(msg.channel_id)
            .filter(|_| refusal == Refusal::BusyChannel);
        let task_id = running.as_ref().map(|live| live.spec.task_id);
        let progress = running.map(|live| (live.last_sent(), live.spec.target));
        self.refuse(msg, refusal.label(), "refused", task_id);
        self.reply(msg, replies::refused(refusal, self.inner.limits, progress));
    }

    fn refuse(&self, msg: &Incoming, reason: &'static str, error: &str, task_id: Option<i64>) {
        self.inner
            .metrics
            .wrong_commands
            .with_label_values(&[reason])
            .inc();
        tracing::info!(reason, "command refused");
        self.journal_error(msg, reason, error.to_owned(), task_id);
    }

    fn journal_error(
        &self,
        msg: &Incoming,
        kind: &'static str,
        error: String,
        task_id: Option<i64>,
    ) {
        self.inner.journal.command_error(CommandError {
            kind,
            channel_id: msg.channel_id,
            guild_id: msg.guild_id,
            user_id: Some(msg.author_id),
            content: Some(msg.content.clone()),
            error,
            task_id,
            at: Utc::now(),
        });
    }

    /// Answers a refused, invalid or help command, within the reply budget;
    /// over it, the answer is dropped and counted (the command was already
    /// counted and journalled).
    fn reply(&self, msg: &Incoming, text: String) {
        // Half of what the running countdowns leave of GLOBAL_RATE
        // (exported as `countdown_rate_budget_per_second` at start; 50 if
        // unset). See `throttle`.
        let rate = match self.inner.metrics.rate_budget.get() {
            r if r > 0 => r as usize,
            _ => 50,
        };
        let per_second = rate.saturating_sub(self.inner.scheduler.active()) / 2;
        if self.inner.reply_budget.admit(msg.channel_id, per_second) {
            self.send_reply(msg, text);
        } else {
            self.inner.metrics.replies_suppressed.inc();
            tracing::debug!("over the reply budget: not answering");
        }
    }

    /// Sends a reply in the background (shutdown waits for it).
    fn send_reply(&self, msg: &Incoming, text: String) {
        let inner = self.inner.clone();
        let channel_id = msg.channel_id;
        let outgoing = Outgoing::Reply {
            to_message: msg.message_id,
            text,
        };
        let span = tracing::Span::current();
        self.inner.scheduler.track(
            async move {
                match inner
                    .replies
                    .deliver(channel_id, &outgoing, &inner.shutdown)
                    .await
                {
                    Ok(_) => inner.metrics.replies_sent.inc(),
                    Err(error) => tracing::warn!(%error, "reply not sent"),
                }
            }
            .instrument(span),
        );
    }
}
