//! countdown: a self-hosted Discord bot that counts, one message per second,
//! on time, exactly once across crashes.
//!
//! The layout follows the flow of a command:
//! - [`config`]: settings from the environment, validated at start.
//! - [`discord`]: the serenity adapter (gateway events in, messages out).
//! - [`commands`]: the grammar (pure) and carrying a command out.
//! - [`countdown`]: which countdowns run, and the timing of each.
//! - [`send`]: how a request reaches Discord: the rate-limit pacer, delivery.
//! - [`storage`]: PostgreSQL: schema, queries, the background journal.
//! - [`resume`]: picking up `running` countdowns after a restart.
//! - [`leader`]: which of several instances sends (PostgreSQL advisory lock).
//! - [`metrics`], [`server`]: Prometheus metrics, `/healthz`, `/readyz`.
//! - [`telemetry`]: logging. [`shutdown`]: signals. [`app`]: wiring.

pub mod app;
pub mod commands;
pub mod config;
pub mod countdown;
pub mod discord;
pub mod leader;
pub mod metrics;
pub mod resume;
pub mod send;
pub mod server;
pub mod shutdown;
pub mod storage;
pub mod telemetry;
