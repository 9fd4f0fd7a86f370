//! The seven scenarios (BENCHMARKS.md, "The seven scenarios"), one module each,
//! and what they share: the context they report to, the fake's world, and
//! the figures ([`figures`]). Each starts its own fake Discord, database and
//! bot, measures, and adds rows to the report. The fake's channel buckets
//! are Discord's leaky ones unless `--fixed-windows` asks for the older
//! shape (BENCHMARKS.md, "Discord's limits as the fake models them").

mod burst;
mod cold_start;
mod drift;
mod figures;
mod lateness;
mod over_budget;
mod resume;
mod scale;

use std::path::PathBuf;

use fake_discord::{BucketModel, FakeConfig, FakeDiscord, GuildSpec, PostedMessage};

use crate::harness::{Clock, RunningRow};
use crate::report::Report;

pub use burst::burst;
pub use cold_start::cold_start;
pub use drift::drift;
pub use lateness::lateness;
pub use over_budget::over_budget;
pub use resume::resume;
pub use scale::scale;

pub struct Ctx {
    pub bin: PathBuf,
    pub quick: bool,
    pub report: Report,
    /// The fake's channel buckets (`--fixed-windows`: Discord before 2022).
    pub channel_model: BucketModel,
    /// Scenario 2's fake refuses the 51st request of any rolling second
    /// (`--strict-global`).
    pub strict_global: bool,
}

impl Ctx {
    /// Starts the fake with `config`, in the channel-bucket shape chosen.
    async fn fake(&self, config: FakeConfig) -> anyhow::Result<FakeDiscord> {
        FakeDiscord::start(FakeConfig {
            channel_model: self.channel_model,
            ..config
        })
        .await
    }

    fn row(&mut self, scenario: &str, figure: &str, value: String, goal: &str, met: Option<bool>) {
        let met = if self.quick { None } else { met };
        self.report.push(scenario, figure, value, goal, met);
    }

    fn info(&mut self, scenario: &str, figure: &str, value: String) {
        self.report.push(scenario, figure, value, "", None);
    }
}

/// `guilds` guilds of `per_guild` channels, ids as in the fake's default
/// world: guild `g*1000`, channels `g*1000+1 ..`.
fn world(guilds: u64, per_guild: u64) -> FakeConfig {
    assert!(per_guild < 1000);
    FakeConfig {
        guilds: (1..=guilds)
            .map(|g| GuildSpec {
                id: g * 1000,
                channels: (1..=per_guild).map(|c| g * 1000 + c).collect(),
            })
            .collect(),
        ..FakeConfig::default()
    }
}

/// The first `n` channels of a world, round-robin over its guilds, with
/// their guild.
fn channels(fake: &FakeDiscord, n: usize) -> Vec<(u64, u64)> {
    let guilds = fake.guilds();
    let per = guilds.iter().map(|g| g.channels.len()).max().unwrap_or(0);
    let mut out = Vec::with_capacity(n);
    for c in 0..per {
        for g in &guilds {
            if out.len() == n {
                return out;
            }
            if let Some(ch) = g.channels.get(c) {
                out.push((*ch, g.id));
            }
        }
    }
    assert!(out.len() == n, "the world has fewer than {n} channels");
    out
}

/// A size set in the environment, for experiments (the goals are for the
/// default sizes).
fn size_override(var: &str) -> Option<u64> {
    std::env::var(var).ok()?.parse().ok()
}

fn mention(fake: &FakeDiscord, text: &str) -> String {
    format!("<@{}> {text}", fake.bot_user_id())
}

/// The bot's environment with its caps (`GLOBAL_RATE`, `MAX_ACTIVE`,
/// `MAX_ACTIVE_PER_GUILD`) all at `limit`: a scenario that measures the bot
/// at a size, not its caps.
fn caps(limit: u64) -> [(&'static str, String); 3] {
    let limit = limit.to_string();
    [
        ("GLOBAL_RATE", limit.clone()),
        ("MAX_ACTIVE", limit.clone()),
        ("MAX_ACTIVE_PER_GUILD", limit),
    ]
}

/// `running` rows (target 9999, `last_sent` numbers sent) in the first
/// `count` channels, created `age` seconds ago and last written `idle`
/// seconds ago: countdowns an outage or a restart left overdue.
fn overdue_rows(
    fake: &FakeDiscord,
    count: u64,
    last_sent: i32,
    age: f64,
    idle: f64,
) -> Vec<RunningRow> {
    let now = Clock::now().wall_now();
    channels(fake, count as usize)
        .into_iter()
        .map(|(channel_id, guild_id)| RunningRow {
            channel_id,
            guild_id,
            target: 9999,
            last_sent,
            created_at: now - age,
            updated_at: now - idle,
        })
        .collect()
}

/// `task_id:k` of a number's nonce.
fn nonce_of(m: &PostedMessage) -> Option<(i64, u32)> {
    let (id, k) = m.nonce.as_deref()?.split_once(':')?;
    Some((id.parse().ok()?, k.parse().ok()?))
}
