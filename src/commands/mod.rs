//! Commands: the grammar ([`parse`], pure) and carrying a command out
//! ([`execute`]: admission, the database row, stop, status, replies), for
//! mentions, DMs, slash commands and the Stop button alike.
//!
//! - [`policy`]: who may stop a countdown (`STOP_POLICY`), pure.
//! - [`status`]: the `status` answer, pure.
//! - [`replies`]: every text the bot answers.
//! - [`throttle`]: the reply budget.

pub mod execute;
pub mod parse;
pub mod policy;
pub mod replies;
pub mod status;
pub mod throttle;

pub use execute::{CommandService, CountOutcome, Incoming, Origin, Source, StopOutcome};
pub use parse::{parse, Command, InvalidReason};
