//! Carrying out a command: admission (one per channel, the caps), the
//! database row that admits a countdown, stop (with `STOP_POLICY`), status,
//! and the short replies. Every command that is not carried out is counted
//! and journalled.
//!
//! Mentions and DMs ([`CommandService::handle`]) and interactions (slash
//! commands and the Stop button, `discord::interactions`) share the same
//! core: [`CommandService::count`], [`CommandService::stop`] and
//! [`CommandService::status`] decide, count and journal; each source only
//! turns the outcome into its kind of answer (a reply to the message, or an
//! interaction response).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use deadpool_postgres::Pool;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::parse::{self, Command, InvalidReason};
use super::policy::{Actor, StopPolicy};
use super::replies;
use super::status::Snapshot;
use super::throttle::ReplyBudget;
use crate::countdown::{
    CountdownSpec, Limits, PendingStop, Refusal, Scheduler, StopRefused, Stopped,
};
use crate::metrics::Metrics;
use crate::send::{Delivery, Outgoing};
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
}

impl Origin {
    fn actor(&self) -> Actor {
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
        }
    }
}

/// What became of a `count to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountOutcome {
    Started {
        task_id: i64,
    },
    /// A cap or a busy channel; for a busy channel, the progress of the
    /// countdown running there (last sent, target).
    Refused {
        refusal: Refusal,
        running: Option<(u16, u16)>,
    },
    /// The row could not be written, so the countdown could not be promised.
    DatabaseDown,
    /// The bot is shutting down or not connected yet.
    NotNow,
}

/// What became of a stop.
pub enum StopOutcome {
    /// The countdown was asked to stop; wait for it to end for the final number.
    Stopping(PendingStop),
    /// Nothing counts here (or another stop got there first).
    NotCounting,
    /// A Stop button of a countdown that is over: another one (or none)
    /// runs in the channel now.
    AlreadyFinished,
    /// `STOP_POLICY` does not let this user stop it.
    NotAllowed,
    NotNow,
}

/// Why a stop request was refused by [`CommandService::stop`]'s check.
enum StopCheck {
    OtherTask,
    NotAllowed { starter: u64 },
}

#[derive(Clone)]
pub struct CommandService {
    inner: Arc<Inner>,
    stop_policy: StopPolicy,
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

    /// A mention or DM: the shared core decides, a reply answers.
    async fn execute(&self, command: Command, msg: &Incoming) {
        let origin = Origin::from(msg);
        match command {
            Command::Count(target) => match self.count(&origin, target).await {
                CountOutcome::Started { .. } | CountOutcome::NotNow => {}
                CountOutcome::Refused { refusal, running } => {
                    self.reply(msg, replies::refused(refusal, self.inner.limits, running))
                }
                CountOutcome::DatabaseDown => self.reply(msg, replies::database_down()),
            },
            Command::Stop => match self.stop(&origin, None) {
                StopOutcome::Stopping(pending) => {
                    let stopped = pending.wait().await;
                    // At most one per countdown: never over a budget.
                    self.send_reply(msg, replies::stopped(stopped));
                }
                StopOutcome::NotCounting | StopOutcome::AlreadyFinished => {
                    self.reply(msg, replies::not_counting())
                }
                StopOutcome::NotAllowed => self.reply(msg, replies::not_allowed()),
                StopOutcome::NotNow => {}
            },
            Command::Status => {
                let text = super::status::text(self.status(&origin), Utc::now().timestamp());
                self.reply(msg, text);
            }
            Command::Help => {
                self.count_command(&origin, "help");
                self.reply(msg, replies::usage());
            }
            Command::Invalid(reason) => {
                self.invalid(&origin, reason);
                self.reply(msg, replies::invalid(reason));
            }
        }
    }

    fn count_command(&self, origin: &Origin, command: &'static str) {
        let m = &self.inner.metrics;
        m.commands.with_label_values(&[command]).inc();
        m.commands_by_source
            .with_label_values(&[origin.source.label(), command])
            .inc();
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

    /// Admits a countdown to `target` in the origin's channel if the caps
    /// allow it and its row is written: a countdown is only started once it
    /// can be resumed.
    pub async fn count(&self, origin: &Origin, target: u16) -> CountOutcome {
        if self.inner.shutdown.is_cancelled() {
            return CountOutcome::NotNow;
        }
        self.count_command(origin, "count");
        let inner = &self.inner;
        let reservation = match inner.scheduler.reserve(origin.channel_id, origin.guild_id) {
            Ok(r) => r,
            Err(refusal) => return self.refuse_count(origin, refusal),
        };
        let new = NewTask {
            channel_id: origin.channel_id,
            guild_id: origin.guild_id,
            user_id: origin.user_id,
            target,
            source: origin.source.label(),
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
                return self.refuse_count(origin, Refusal::BusyChannel);
            }
            Err(error) => {
                drop(reservation);
                inner.metrics.db_errors.inc();
                tracing::error!(%error, "cannot admit a countdown: database unavailable");
                self.journal_error(origin, "db_unavailable", error.to_string(), None);
                return CountOutcome::DatabaseDown;
            }
        };
        tracing::Span::current().record("task_id", row.id);
        tracing::info!(target, source = origin.source.label(), "countdown admitted");
        inner.metrics.count_target.observe(f64::from(target));
        inner.scheduler.start(
            reservation,
            CountdownSpec {
                task_id: row.id,
                channel_id: origin.channel_id,
                guild_id: origin.guild_id,
                user_id: origin.user_id,
                target,
                next: 1,
                first_due: Instant::now(),
                check: None,
            },
        );
        CountOutcome::Started { task_id: row.id }
    }

    fn refuse_count(&self, origin: &Origin, refusal: Refusal) -> CountOutcome {
        // The countdown that makes the channel busy, if it runs here.
        let running = self
            .inner
            .scheduler
            .live(origin.channel_id)
            .filter(|_| refusal == Refusal::BusyChannel);
        let task_id = running.as_ref().map(|live| live.spec.task_id);
        let progress = running.map(|live| (live.last_sent(), live.spec.target));
        self.refuse(origin, refusal.label(), "refused", task_id);
        CountOutcome::Refused {
            refusal,
            running: progress,
        }
    }

    /// Asks the countdown of the origin's channel to stop, if `STOP_POLICY`
    /// lets the origin's user stop it and, for a Stop button (`task`), it
    /// is that button's countdown. Does not wait for the countdown's task.
    pub fn stop(&self, origin: &Origin, task: Option<i64>) -> StopOutcome {
        if self.inner.shutdown.is_cancelled() {
            return StopOutcome::NotNow;
        }
        self.count_command(origin, "stop");
        if let Some(task_id) = task {
            tracing::Span::current().record("task_id", task_id);
        }
        let policy = self.stop_policy;
        let actor = origin.actor();
        let requested = self
            .inner
            .scheduler
            .request_stop(origin.channel_id, |spec| {
                if task.is_some_and(|t| t != spec.task_id) {
                    Err(StopCheck::OtherTask)
                } else if !policy.allows(&actor, spec.user_id) {
                    Err(StopCheck::NotAllowed {
                        starter: spec.user_id,
                    })
                } else {
                    Ok(())
                }
            });
        match requested {
            Ok(pending) => {
                self.inner.metrics.cancelled.inc();
                if task.is_none() {
                    tracing::Span::current().record("task_id", pending.task_id());
                }
                tracing::info!(source = origin.source.label(), "countdown stop requested");
                StopOutcome::Stopping(pending)
            }
            // The button's task id goes into the text, not `task_id`: a
            // forged custom id may name no row (the column is a foreign key).
            Err(StopRefused::NotCounting) if task.is_some() => {
                let error = format!("the countdown of button {} is over", origin.content);
                self.refuse(origin, "not_counting", &error, None);
                StopOutcome::AlreadyFinished
            }
            Err(StopRefused::NotCounting) => {
                self.refuse(origin, "not_counting", "nothing is counting here", None);
                StopOutcome::NotCounting
            }
            Err(StopRefused::Check(StopCheck::OtherTask)) => {
                let error = format!(
                    "the countdown of button {} is over; another one runs here",
                    origin.content
                );
                self.refuse(origin, "not_counting", &error, None);
                StopOutcome::AlreadyFinished
            }
            Err(StopRefused::Check(StopCheck::NotAllowed { starter })) => {
                let error = format!(
                    "STOP_POLICY={}: user {} did not start it (user {starter} did) \
                     and lacks Manage Messages",
                    policy.as_str(),
                    origin.user_id
                );
                let running = self
                    .inner
                    .scheduler
                    .live(origin.channel_id)
                    .map(|l| l.spec.task_id);
                self.refuse(origin, "not_allowed", &error, running);
                StopOutcome::NotAllowed
            }
        }
    }

    /// Waits (at most `within`) for a requested stop to take effect: where
    /// the countdown stopped, final if it ended in time.
    pub async fn stopped_within(pending: PendingStop, within: std::time::Duration) -> Stopped {
        let now = pending.snapshot();
        tokio::time::timeout(within, pending.wait())
            .await
            .unwrap_or(now)
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

    /// Sends an answer outside the reply budget (an interaction's, after
    /// it was acknowledged): through the same delivery as replies, so it
    /// is paced, retried, and waited for at shutdown.
    pub fn send_to_channel(&self, channel_id: u64, to_message: u64, text: String) {
        self.send_reply(
            &Incoming {
                message_id: to_message,
                channel_id,
                guild_id: None,
                author_id: 0,
                content: String::new(),
                manages_messages: false,
            },
            text,
        );
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
                    .deliver(channel_id, &outgoing, Instant::now(), &inner.shutdown)
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
