//! End-to-end harness: a fresh PostgreSQL database per test, the fake
//! Discord in-process, and the real `countdown` binary as a child process
//! pointed at both. Logs go to a file in the test's temp dir and are printed
//! when a test fails (set `TEST_LOG=1` to always print them).
//!
//! One module per concept, all re-exported here so that a test says
//! `use common::*`: [`db`] the test's database, [`bot`] the bot process with
//! its log and metrics, [`fake`] the fake Discord checked against Discord's
//! schemas ([`schema`]), [`messages`] what a user writes and sees,
//! [`interactions`] slash commands and buttons, [`private_pg`] a PostgreSQL
//! cluster a test can stop, [`wait`] polling what no event announces.
#![allow(dead_code)]

mod bot;
mod db;
mod fake;
mod interactions;
mod messages;
mod private_pg;
pub mod schema;
mod wait;

// Each test file uses a part of them.
#[allow(unused_imports)]
pub use self::{bot::*, db::*, fake::*, interactions::*, messages::*, private_pg::*, wait::*};
