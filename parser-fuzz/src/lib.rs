//! `src/commands/parse.rs` of the bot, compiled alone. The parser is pure
//! (no dependency), so this crate is the very same code; a release build of
//! it takes seconds, where the bot's takes minutes. Fuzzed by
//! `tests/faults_parser.rs` (see there for the CI command).

#[path = "../../src/commands/parse.rs"]
pub mod parse;
