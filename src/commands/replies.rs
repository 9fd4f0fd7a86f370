//! What the bot answers, in one place. Replies never echo the user's text
//! (and are sent with no mentions allowed anyway).

use super::parse::{InvalidReason, MAX_TARGET};
use crate::countdown::{Refusal, Stopped};

pub fn usage() -> String {
    format!(
        "I count, one number per second. Mention me with `count to N` (N from 1 to {MAX_TARGET}) \
         to start in this channel, `stop` to stop, or `status` to see what is counting. \
         In a DM no mention is needed. The slash commands `/count`, `/stop` and `/status` \
         do the same."
    )
}

pub fn invalid(reason: InvalidReason) -> String {
    let why = match reason {
        InvalidReason::UnknownCommand => "I didn't understand that.",
        InvalidReason::MissingNumber => "Count to what? Give me a number.",
        InvalidReason::NotANumber => "That's not a number I can count to.",
        InvalidReason::OutOfRange => "I can count to any whole number from 1 to 9999.",
    };
    format!("{why} {}", usage())
}

pub fn refused(
    refusal: Refusal,
    limits: crate::countdown::Limits,
    running: Option<(u16, u16)>,
) -> String {
    match refusal {
        Refusal::BusyChannel => match running {
            Some((at, target)) => format!(
                "I'm already counting here ({at} of {target}). Say `stop` first to start over."
            ),
            None => "I'm already counting here. Say `stop` first to start over.".to_owned(),
        },
        Refusal::BusyGuild => format!(
            "This server already has {} countdowns running. Try again when one has finished.",
            limits.max_active_per_guild
        ),
        Refusal::BusyBot => format!(
            "I'm busy with {} countdowns right now. Try again soon.",
            limits.max_active
        ),
    }
}

pub fn stopped(stopped: Stopped) -> String {
    stopped_text(stopped)
}

pub fn not_allowed() -> String {
    "Only the person who started this countdown, or a member who can manage messages here, \
     can stop it."
        .to_owned()
}

/// A Stop button of a countdown that is over.
pub fn already_finished() -> String {
    "That countdown has already finished.".to_owned()
}

/// The public answer to `/count`: who started what.
pub fn started(user_id: u64, target: u16) -> String {
    format!("<@{user_id}> started a countdown to {target}.")
}

/// The public answer to `/stop` or the Stop button.
pub fn stopped_by(user_id: u64, stopped: Stopped) -> String {
    format!("{} (stopped by <@{user_id}>)", stopped_text(stopped))
}

fn stopped_text(stopped: Stopped) -> String {
    if stopped.last_sent == 0 {
        "Stopped before the first number.".to_owned()
    } else {
        format!("Stopped at {} of {}.", stopped.last_sent, stopped.target)
    }
}

pub fn not_counting() -> String {
    "Nothing is counting here.".to_owned()
}

/// An interaction that arrives while the bot is stopping (or not ready).
pub fn restarting() -> String {
    "I'm restarting. Please try again in a few seconds.".to_owned()
}

pub fn database_down() -> String {
    "I can't reach my database right now, so I can't promise to finish a countdown. \
     Please try again in a minute."
        .to_owned()
}
