//! The slash commands `/count n`, `/stop` and `/status`, registered at
//! start with one bulk overwrite (`PUT /applications/{id}/commands`, or the
//! guild's route when `DISCORD_GUILD_ID` is set: guild commands appear at
//! once, global ones can take a while to reach every client).
//!
//! A failed registration is logged, counted
//! (`countdown_command_registration_failures_total`) and journalled, never
//! fatal: the mention grammar keeps working, and the commands registered by
//! an earlier start stay in place at Discord.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serenity::all::{
    Command, CommandOptionType, CreateCommand, CreateCommandOption, GuildId, Http,
};

use crate::commands::parse::MAX_TARGET;
use crate::metrics::Metrics;
use crate::send::Pacer;
use crate::storage::Journal;

/// Attempts before giving up until the next start.
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// The commands, as Discord is told about them. `n` carries its range, so
/// Discord's client refuses 0 or 10000 before it reaches the bot (which
/// checks again all the same).
pub fn definitions() -> Vec<CreateCommand> {
    vec![
        CreateCommand::new("count")
            .description("Count from 1 to n in this channel, one number per second")
            .add_option(
                CreateCommandOption::new(CommandOptionType::Integer, "n", "Where to stop counting")
                    .required(true)
                    .min_int_value(1)
                    .max_int_value(u64::from(MAX_TARGET)),
            ),
        CreateCommand::new("stop").description("Stop the countdown of this channel"),
        CreateCommand::new("status").description("What is counting in this channel"),
    ]
}

#[derive(Clone)]
pub struct Registration {
    inner: Arc<Inner>,
}

struct Inner {
    guild_id: Option<u64>,
    /// The registration takes a slot of the global budget like any request.
    pacer: Arc<Pacer>,
    metrics: Metrics,
    journal: Journal,
    /// Once per term: a second READY (a fresh session) needs no new overwrite.
    started: AtomicBool,
}

impl Registration {
    pub fn new(
        guild_id: Option<u64>,
        pacer: Arc<Pacer>,
        metrics: Metrics,
        journal: Journal,
    ) -> Self {
        Registration {
            inner: Arc::new(Inner {
                guild_id,
                pacer,
                metrics,
                journal,
                started: AtomicBool::new(false),
            }),
        }
    }

    /// Registers the commands in the background, the first time only.
    pub fn start(&self, http: Arc<Http>) {
        if self.inner.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.register(&http).await });
    }

    async fn register(&self, http: &Http) {
        let inner = &self.inner;
        let scope = match inner.guild_id {
            Some(id) => format!("guild {id}"),
            None => "global".to_owned(),
        };
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            inner.pacer.acquire_global().await;
            let outcome = match inner.guild_id {
                Some(id) => GuildId::new(id).set_commands(http, definitions()).await,
                None => Command::set_global_commands(http, definitions()).await,
            };
            match outcome {
                Ok(registered) => {
                    tracing::info!(
                        scope,
                        commands = registered.len(),
                        "slash commands registered"
                    );
                    return;
                }
                Err(error) => {
                    inner.metrics.registration_failures.inc();
                    tracing::error!(
                        scope,
                        attempt,
                        %error,
                        "cannot register the slash commands; mentions still work"
                    );
                    if attempt == ATTEMPTS {
                        inner.journal.general_error(
                            "registration",
                            format!("slash commands ({scope}) not registered: {error}"),
                        );
                        return;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_takes_a_required_integer_within_the_grammar() {
        let json = serde_json::to_value(definitions()).unwrap();
        let names: Vec<&str> = json
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["count", "stop", "status"]);
        let n = &json[0]["options"][0];
        assert_eq!(n["name"], "n");
        assert_eq!(n["type"], 4);
        assert_eq!(n["required"], true);
        assert_eq!(n["min_value"], 1);
        assert_eq!(n["max_value"], 9999);
    }
}
