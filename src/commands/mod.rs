//! Commands: the grammar ([`parse`], pure) and carrying a command out
//! ([`execute`]: admission, the database row, stop, status, replies), for
//! mentions, DMs, slash commands and the Stop button alike.
//!
//! - [`origin`]: who asks, where, and how.
//! - [`policy`]: who may stop a countdown (`STOP_POLICY`), pure.
//! - [`status`]: the `status` answer, pure.
//! - [`replies`]: every text the bot answers.
//! - [`throttle`]: the reply budget.

pub mod execute;
pub mod origin;
pub mod parse;
pub mod policy;
pub mod replies;
pub mod status;
pub mod throttle;

pub use execute::{CommandService, CountOutcome, StopOutcome};
pub use origin::{Incoming, Origin, Source};
pub use parse::{parse, Command, InvalidReason};

use crate::countdown::Refusal;
use crate::metrics::KnownLabels;

/// The label values of the command metrics: every command, the (source,
/// command) pairs that can happen (help is mention/DM only, the button only
/// stops), every reason a command is invalid or refused.
pub fn known_labels(known: &mut KnownLabels) {
    const COMMANDS: [&str; 4] = ["count", "stop", "status", "help"];
    known.commands.extend(COMMANDS);
    for source in Source::ALL {
        for command in COMMANDS {
            let possible = match source {
                Source::Button => command == "stop",
                Source::Slash => command != "help",
                Source::Mention | Source::Dm => true,
            };
            if possible {
                known.commands_by_source.push((source.label(), command));
            }
        }
    }
    known
        .invalid_reasons
        .extend(InvalidReason::ALL.map(InvalidReason::label));
    known.wrong_reasons.extend(Refusal::ALL.map(Refusal::label));
    known.wrong_reasons.extend(["not_counting", "not_allowed"]);
}
