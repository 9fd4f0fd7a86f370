//! A user's message, a mention or a DM: parsed, carried out by the shared
//! core, and answered with a reply. Replies to refused, invalid and help
//! commands stay within the reply budget (see `commands::throttle`); every
//! reply is sent in the background, through the same delivery as numbers.

use std::sync::atomic::Ordering;

use chrono::Utc;
use tokio::time::Instant;
use tracing::Instrument;

use super::{CommandService, CountOutcome, StopOutcome};
use crate::commands::parse::{self, Command};
use crate::commands::{replies, status, Incoming, Origin};
use crate::send::Outgoing;

impl CommandService {
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
                let text = status::text(self.status(&origin), Utc::now().timestamp());
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
