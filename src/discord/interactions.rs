//! Interactions: the slash commands `/count n`, `/stop`, `/status` and the
//! Stop button, answered within Discord's 3 s window.
//!
//! The decisions are the mention grammar's ([`CommandService`]: the same
//! admission, caps, stop policy, rows and metrics); only the answers
//! differ:
//! - `/count` answers with a public message naming who started the
//!   countdown (type 4), after its row is written; the numbers then go out
//!   as ordinary messages through the scheduler.
//! - `/stop` answers publicly where the countdown stopped (it waits at most
//!   [`STOP_WAIT`] for an in-flight number).
//! - The Stop button is acknowledged with type 7 (UPDATE_MESSAGE) and no
//!   components: the button disappears from number 1 at once, in the same
//!   request, and there is no "loading" state to clean up later. Where the
//!   countdown stopped is then posted as a reply to number 1.
//! - Refusals (busy channel, caps, nothing to stop, not allowed, database
//!   down, an old button) and `/status` are ephemeral (flags 64): only the
//!   user who asked sees them.
//! - A slash command whose answer is not ready after [`DEFER_AFTER`] (a
//!   slow database while its row is written) is acknowledged first with a
//!   deferred, ephemeral response (type 5, flags 64), and the answer is
//!   then edited in (`PATCH /webhooks/{app}/{token}/messages/@original`):
//!   the user sees "thinking…" instead of "the application did not
//!   respond". Ephemeral, because the answer may turn out to be a refusal.
//!
//! Each interaction's answer is counted once by its outcome
//! ([`AnswerOutcome`], `countdown_interaction_answers_total{outcome}`).
//!
//! Interaction responses are not bound by the bot's global rate limit (a
//! Discord rule), and an unanswered interaction shows the user an error, so
//! they bypass the pacer and the reply budget: every interaction gets
//! exactly one answer. Every answer has `allowed_mentions` empty.

use std::time::Duration;

use serenity::all::{
    ChannelId, CommandDataOptionValue, CommandInteraction, ComponentInteraction, Context,
    CreateAllowedMentions, CreateInteractionResponse, CreateInteractionResponseMessage,
    EditInteractionResponse, Interaction, InteractionId, Member,
};
use tokio::time::Instant;
use tracing::Instrument;

use super::components;
use crate::commands::parse::{InvalidReason, MAX_TARGET};
use crate::commands::{
    policy, replies, status, CommandService, CountOutcome, Origin, Source, StopOutcome,
};
use crate::metrics::Metrics;

/// How long `/stop` waits for the countdown's task before it answers: a
/// number in flight is let finish, and the answer should say where it
/// stopped; the window is 3 s.
pub const STOP_WAIT: Duration = Duration::from_millis(1500);
/// Answers later than this after the interaction arrived are logged: past
/// 3 s Discord refuses them (10062 Unknown interaction).
const SLOW_ANSWER: Duration = Duration::from_millis(2500);
/// A slash command not decided after this is deferred (see the module doc),
/// leaving a second for the deferral itself to reach Discord.
pub const DEFER_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Interactions {
    commands: CommandService,
    metrics: Metrics,
}

/// How an interaction's answer ended, as counted in
/// `countdown_interaction_answers_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerOutcome {
    /// Discord accepted the response (type 4 or 7) within the window.
    Answered,
    /// Acknowledged with a deferral (type 5), then the answer edited in.
    Deferred,
    /// Discord refused the response, the deferral or the edit (past the
    /// window, an unknown interaction), or it did not reach Discord: the
    /// user saw "the application did not respond".
    Failed,
}

impl AnswerOutcome {
    pub const ALL: [AnswerOutcome; 3] = [
        AnswerOutcome::Answered,
        AnswerOutcome::Deferred,
        AnswerOutcome::Failed,
    ];

    pub fn label(self) -> &'static str {
        match self {
            AnswerOutcome::Answered => "answered",
            AnswerOutcome::Deferred => "deferred",
            AnswerOutcome::Failed => "failed",
        }
    }
}

/// One answer to an interaction.
enum Answer {
    /// Type 4, visible to the channel.
    Public(String),
    /// Type 4 with flags 64, visible to the user who asked only.
    Ephemeral(String),
    /// Type 7: update the message the button is on, without components.
    RemoveButton,
}

impl Answer {
    /// The text of a message answer (an edit carries no response type).
    fn text(self) -> String {
        match self {
            Answer::Public(text) | Answer::Ephemeral(text) => text,
            Answer::RemoveButton => String::new(),
        }
    }
}

/// Runs `work`; if it is not done after `defer_after`, runs `defer` (the
/// acknowledgement) alongside it. Returns `work`'s output and, if it was
/// deferred, `defer`'s.
async fn answer_in_time<A, D>(
    work: impl std::future::Future<Output = A>,
    defer_after: Duration,
    defer: impl std::future::Future<Output = D>,
) -> (A, Option<D>) {
    tokio::pin!(work);
    tokio::select! {
        biased;
        done = &mut work => return (done, None),
        _ = tokio::time::sleep(defer_after) => {}
    }
    let (deferral, done) = tokio::join!(defer, work);
    (done, Some(deferral))
}

impl Interactions {
    pub fn new(commands: CommandService, metrics: Metrics) -> Self {
        Interactions { commands, metrics }
    }

    fn count(&self, outcome: AnswerOutcome) {
        self.metrics
            .interaction_answers
            .with_label_values(&[outcome.label()])
            .inc();
    }

    pub async fn handle(&self, ctx: &Context, interaction: Interaction) {
        let arrived = Instant::now();
        match interaction {
            Interaction::Command(command) => {
                let span = span(
                    "command",
                    &command.data.name,
                    command.channel_id,
                    command.id,
                );
                self.answer_command(ctx, &command, arrived)
                    .instrument(span)
                    .await
            }
            Interaction::Component(press) => {
                let span = span(
                    "component",
                    &press.data.custom_id,
                    press.channel_id,
                    press.id,
                );
                self.answer_press(ctx, &press, arrived)
                    .instrument(span)
                    .await
            }
            other => {
                tracing::debug!(kind = ?other.kind(), "interaction ignored");
            }
        }
    }

    async fn answer_command(&self, ctx: &Context, command: &CommandInteraction, arrived: Instant) {
        let defer = async {
            tracing::warn!("answer not ready in time: deferring it");
            let outcome = command.defer_ephemeral(&ctx.http).await;
            log_answer(outcome, arrived)
        };
        let (answer, deferral) = answer_in_time(self.command(command), DEFER_AFTER, defer).await;
        let outcome = match deferral {
            Some(acknowledged) => {
                let edit = EditInteractionResponse::new()
                    .content(answer.text())
                    .allowed_mentions(no_pings());
                match command.edit_response(&ctx.http, edit).await {
                    Ok(_) if acknowledged => AnswerOutcome::Deferred,
                    Ok(_) => AnswerOutcome::Failed,
                    Err(error) => {
                        tracing::warn!(%error, "deferred answer not delivered");
                        AnswerOutcome::Failed
                    }
                }
            }
            None => {
                let outcome = command.create_response(&ctx.http, response(answer)).await;
                answered(log_answer(outcome, arrived))
            }
        };
        self.count(outcome);
    }

    async fn answer_press(&self, ctx: &Context, press: &ComponentInteraction, arrived: Instant) {
        let (answer, then) = self.press(press);
        let outcome = press.create_response(&ctx.http, response(answer)).await;
        self.count(answered(log_answer(outcome, arrived)));
        if let Some(pending) = then {
            // After the acknowledgement: the in-flight number may take
            // longer than the window.
            let stopped = pending.wait().await;
            self.commands.send_to_channel(
                press.channel_id.get(),
                press.message.id.get(),
                replies::stopped_by(press.user.id.get(), stopped),
            );
        }
    }

    async fn command(&self, command: &CommandInteraction) -> Answer {
        let origin = Origin {
            source: Source::Slash,
            channel_id: command.channel_id.get(),
            guild_id: command.guild_id.map(|g| g.get()),
            user_id: command.user.id.get(),
            manages_messages: manages_messages(command.member.as_deref()),
            content: describe(command),
            command_id: command.id.get(),
        };
        if !self.commands.accepting() {
            return Answer::Ephemeral(replies::restarting());
        }
        match command.data.name.as_str() {
            "count" => {
                let n = command.data.options.iter().find_map(|o| match o.value {
                    CommandDataOptionValue::Integer(n) if o.name == "n" => Some(n),
                    _ => None,
                });
                let target = match n {
                    None => {
                        self.commands.invalid(&origin, InvalidReason::MissingNumber);
                        return Answer::Ephemeral(replies::invalid(InvalidReason::MissingNumber));
                    }
                    // Discord checks the range it was told; the bot checks
                    // again (an old registration, a forged request).
                    Some(n) if !(1..=i64::from(MAX_TARGET)).contains(&n) => {
                        self.commands.invalid(&origin, InvalidReason::OutOfRange);
                        return Answer::Ephemeral(replies::invalid(InvalidReason::OutOfRange));
                    }
                    Some(n) => n as u16,
                };
                match self.commands.count(&origin, target).await {
                    // `count` recorded the task id in this span.
                    CountOutcome::Started { .. } => {
                        Answer::Public(replies::started(origin.user_id, target))
                    }
                    CountOutcome::Refused { refusal, running } => Answer::Ephemeral(
                        replies::refused(refusal, self.commands.limits(), running),
                    ),
                    CountOutcome::DatabaseDown => Answer::Ephemeral(replies::database_down()),
                    CountOutcome::NotNow => Answer::Ephemeral(replies::restarting()),
                }
            }
            "stop" => match self.commands.stop(&origin, None) {
                StopOutcome::Stopping(pending) => {
                    let stopped = CommandService::stopped_within(pending, STOP_WAIT).await;
                    Answer::Public(replies::stopped_by(origin.user_id, stopped))
                }
                StopOutcome::NotCounting | StopOutcome::AlreadyFinished => {
                    Answer::Ephemeral(replies::not_counting())
                }
                StopOutcome::NotAllowed => Answer::Ephemeral(replies::not_allowed()),
                StopOutcome::NotNow => Answer::Ephemeral(replies::restarting()),
            },
            "status" => {
                let snapshot = self.commands.status(&origin);
                Answer::Ephemeral(status::text(snapshot, chrono::Utc::now().timestamp()))
            }
            other => {
                tracing::warn!(name = other, "unknown slash command (an old registration?)");
                Answer::Ephemeral(replies::usage())
            }
        }
    }

    /// A button press: the answer now, and the stop to report once it ended.
    fn press(
        &self,
        press: &ComponentInteraction,
    ) -> (Answer, Option<crate::countdown::PendingStop>) {
        let Some(task_id) = components::parse_stop_custom_id(&press.data.custom_id) else {
            tracing::warn!("unknown button");
            return (Answer::Ephemeral(replies::already_finished()), None);
        };
        if !self.commands.accepting() {
            return (Answer::Ephemeral(replies::restarting()), None);
        }
        let origin = Origin {
            source: Source::Button,
            channel_id: press.channel_id.get(),
            guild_id: press.guild_id.map(|g| g.get()),
            user_id: press.user.id.get(),
            manages_messages: manages_messages(press.member.as_ref()),
            content: format!("[Stop button {}]", press.data.custom_id),
            command_id: press.id.get(),
        };
        match self.commands.stop(&origin, Some(task_id)) {
            StopOutcome::Stopping(pending) => (Answer::RemoveButton, Some(pending)),
            StopOutcome::NotCounting | StopOutcome::AlreadyFinished => {
                (Answer::Ephemeral(replies::already_finished()), None)
            }
            StopOutcome::NotAllowed => (Answer::Ephemeral(replies::not_allowed()), None),
            StopOutcome::NotNow => (Answer::Ephemeral(replies::restarting()), None),
        }
    }
}

/// One span per interaction: what it is, where, and (once known) its task.
fn span(kind: &'static str, what: &str, channel: ChannelId, id: InteractionId) -> tracing::Span {
    tracing::info_span!(
        "interaction",
        kind,
        what,
        channel_id = channel.get(),
        interaction_id = id.get(),
        task_id = tracing::field::Empty
    )
}

/// Discord sends a guild member's permissions in the channel with the
/// interaction (none in a DM, where only the starter can be anyway).
fn manages_messages(member: Option<&Member>) -> bool {
    member
        .and_then(|m| m.permissions)
        .is_some_and(|p| policy::manages_messages(p.bits()))
}

/// The slash command as the user typed it, e.g. `/count n:20`.
fn describe(command: &CommandInteraction) -> String {
    let mut text = format!("/{}", command.data.name);
    for option in &command.data.options {
        let value = match &option.value {
            CommandDataOptionValue::Integer(n) => n.to_string(),
            CommandDataOptionValue::String(s) => s.clone(),
            other => format!("{other:?}"),
        };
        text.push_str(&format!(" {}:{value}", option.name));
    }
    text
}

fn response(answer: Answer) -> CreateInteractionResponse {
    let message = || CreateInteractionResponseMessage::new().allowed_mentions(no_pings());
    match answer {
        Answer::Public(text) => CreateInteractionResponse::Message(message().content(text)),
        Answer::Ephemeral(text) => {
            CreateInteractionResponse::Message(message().content(text).ephemeral(true))
        }
        Answer::RemoveButton => {
            CreateInteractionResponse::UpdateMessage(message().components(Vec::new()))
        }
    }
}

fn no_pings() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
        .empty_users()
        .empty_roles()
        .replied_user(false)
}

/// A response's outcome: whether Discord accepted it.
fn answered(accepted: bool) -> AnswerOutcome {
    if accepted {
        AnswerOutcome::Answered
    } else {
        AnswerOutcome::Failed
    }
}

/// Logs a response's fate; true when Discord accepted it.
fn log_answer(outcome: serenity::Result<()>, arrived: Instant) -> bool {
    let took = arrived.elapsed();
    let accepted = outcome.is_ok();
    match outcome {
        Ok(()) if took > SLOW_ANSWER => {
            tracing::warn!(
                took_ms = took.as_millis() as u64,
                "interaction answered late"
            )
        }
        Ok(()) => tracing::debug!(took_ms = took.as_millis() as u64, "interaction answered"),
        Err(error) => tracing::warn!(
            %error,
            took_ms = took.as_millis() as u64,
            "interaction answer refused"
        ),
    }
    accepted
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_quick_answer_is_not_deferred() {
        let deferred = AtomicBool::new(false);
        let work = async {
            tokio::time::sleep(Duration::from_millis(1999)).await;
            7
        };
        let defer = async { deferred.store(true, Ordering::SeqCst) };
        assert_eq!(answer_in_time(work, DEFER_AFTER, defer).await, (7, None));
        assert!(!deferred.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_is_deferred_at_two_seconds_then_given() {
        let start = Instant::now();
        let deferred_at = std::sync::Mutex::new(None);
        let work = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "late"
        };
        let defer = async { *deferred_at.lock().unwrap() = Some(start.elapsed()) };
        assert_eq!(
            answer_in_time(work, DEFER_AFTER, defer).await,
            ("late", Some(()))
        );
        assert_eq!(*deferred_at.lock().unwrap(), Some(DEFER_AFTER));
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(5),
            "the work went on meanwhile"
        );
    }

    #[test]
    fn every_answer_pings_nobody() {
        for answer in [
            Answer::Public("<@1> started".into()),
            Answer::Ephemeral("no".into()),
            Answer::RemoveButton,
        ] {
            let json = serde_json::to_value(response(answer)).unwrap();
            let allowed = &json["data"]["allowed_mentions"];
            assert_eq!(allowed["parse"], serde_json::json!([]), "{json}");
            assert_eq!(allowed["users"], serde_json::json!([]), "{json}");
        }
        let remove = serde_json::to_value(response(Answer::RemoveButton)).unwrap();
        assert_eq!(remove["type"], 7);
        assert_eq!(remove["data"]["components"], serde_json::json!([]));
        let private = serde_json::to_value(response(Answer::Ephemeral("x".into()))).unwrap();
        assert_eq!(
            (private["type"].as_u64(), private["data"]["flags"].as_u64()),
            (Some(4), Some(64))
        );
    }
}
