//! Commands: the grammar ([`parse`], pure) and carrying a command out
//! ([`execute`]: admission, the database row, replies).

pub mod execute;
pub mod parse;
pub mod replies;
pub mod throttle;

pub use execute::{CommandService, Incoming};
pub use parse::{parse, Command, InvalidReason};
