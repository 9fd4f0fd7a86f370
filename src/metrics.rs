//! Every Prometheus metric of the bot, defined in one place and passed around
//! as a handle ([`Metrics`]), plus the text rendering for `/metrics`.
//!
//! No label carries a channel, user or guild id: label values come from
//! bounded sets, and every known value is created at start so dashboards and
//! alerts see a series (at 0) before the first event.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

/// The values each bounded label can take, so every series exists (at 0)
/// from the start. They come from the enums that own them (the grammar,
/// the admission rules, the sender, the task statuses, the retention), and
/// the application hands them in ([`Metrics::seed`]): this module depends
/// on nothing of the bot.
#[derive(Debug, Default, Clone)]
pub struct KnownLabels {
    /// `countdown_commands_total{command}`.
    pub commands: Vec<&'static str>,
    /// `countdown_commands_by_source_total{source, command}`: the pairs that
    /// can happen.
    pub commands_by_source: Vec<(&'static str, &'static str)>,
    /// `countdown_invalid_commands_total{reason}`.
    pub invalid_reasons: Vec<&'static str>,
    /// `countdown_wrong_commands_total{reason}`.
    pub wrong_reasons: Vec<&'static str>,
    /// `countdown_send_errors_total{kind}`.
    pub send_error_kinds: Vec<&'static str>,
    /// `countdown_countdowns_ended_total{status}`: the final statuses.
    pub end_statuses: Vec<&'static str>,
    /// `countdown_retention_deleted_total{table}`.
    pub retention_tables: Vec<&'static str>,
    /// `countdown_interaction_answers_total{outcome}`.
    pub interaction_outcomes: Vec<&'static str>,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub commands: IntCounterVec,
    /// `countdown_commands_by_source_total{source, command}`: a counter of
    /// its own, so the series of `countdown_commands_total` (dashboards,
    /// rules) keep their labels.
    pub commands_by_source: IntCounterVec,
    pub invalid_commands: IntCounterVec,
    pub wrong_commands: IntCounterVec,
    pub cancelled: IntCounter,
    pub count_target: Histogram,
    pub active: IntGauge,
    pub messages_sent: IntCounter,
    pub replies_sent: IntCounter,
    pub replies_suppressed: IntCounter,
    pub send_errors: IntCounterVec,
    pub tick_lateness: Histogram,
    /// `countdown_admission_seconds`: from a command (its Discord
    /// timestamp) to its number 1 leaving the bot: the wait a user sees
    /// before the count starts, which `tick_lateness` (against number 1)
    /// cannot show.
    pub admission: Histogram,
    pub resumed: IntCounter,
    pub db_errors: IntCounter,
    pub finished: IntCounterVec,
    /// 1 while every gateway shard of this instance is ready.
    pub gateway_ready: IntGauge,
    /// `countdown_shards`: the gateway shards this instance runs (0 on a
    /// standby, and before the first READY).
    pub shards: IntGauge,
    /// `countdown_shards_ready`: of those, the shards with a ready session.
    pub shards_ready: IntGauge,
    pub rate_budget: IntGauge,
    pub leader: IntGauge,
    pub leader_standbys: IntGauge,
    pub edge_races: IntCounter,
    pub registration_failures: IntCounter,
    /// `countdown_interaction_answers_total{outcome}`: one per interaction
    /// (slash command or button press), by how its answer ended.
    pub interaction_answers: IntCounterVec,
    /// `countdown_retention_deleted_total{table}`: rows older than
    /// `RETENTION` deleted.
    pub retention_deleted: IntCounterVec,
    /// `MAX_ACTIVE` and `MAX_ACTIVE_PER_GUILD`, for dashboards to draw the
    /// caps beside `countdown_active`.
    pub max_active: IntGauge,
    pub max_active_per_guild: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let commands = IntCounterVec::new(
            Opts::new(
                "countdown_commands_total",
                "Valid commands received, by command.",
            ),
            &["command"],
        )?;
        let commands_by_source = IntCounterVec::new(
            Opts::new(
                "countdown_commands_by_source_total",
                "Valid commands received, by source (mention, dm, slash, button) and command.",
            ),
            &["source", "command"],
        )?;
        let invalid_commands = IntCounterVec::new(
            Opts::new(
                "countdown_invalid_commands_total",
                "Messages addressed to the bot that are not a valid command, by reason.",
            ),
            &["reason"],
        )?;
        let wrong_commands = IntCounterVec::new(
            Opts::new(
                "countdown_wrong_commands_total",
                "Valid commands refused (busy channel, caps, nothing to stop), by reason.",
            ),
            &["reason"],
        )?;
        let cancelled = IntCounter::new(
            "countdown_cancelled_total",
            "Countdowns stopped by a user before their end.",
        )?;
        let count_target = Histogram::with_opts(
            HistogramOpts::new(
                "countdown_count_target",
                "Requested N of accepted countdowns.",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 30.0, 60.0, 100.0, 300.0, 1000.0, 3000.0, 9999.0,
            ]),
        )?;
        let active = IntGauge::new("countdown_active", "Countdowns running now.")?;
        let messages_sent = IntCounter::new(
            "countdown_messages_sent_total",
            "Numbers posted to Discord.",
        )?;
        let replies_sent = IntCounter::new(
            "countdown_replies_sent_total",
            "Replies (usage, refusals, stop confirmations) posted to Discord.",
        )?;
        let replies_suppressed = IntCounter::new(
            "countdown_replies_suppressed_total",
            "Replies not sent because the channel or the bot is over its reply budget \
             (the command is counted and journalled all the same).",
        )?;
        let send_errors = IntCounterVec::new(
            Opts::new(
                "countdown_send_errors_total",
                "Failed attempts to post a message, by kind (each retry counts).",
            ),
            &["kind"],
        )?;
        let tick_lateness = Histogram::with_opts(
            HistogramOpts::new(
                "countdown_tick_lateness_seconds",
                "How late each number's send started, against its due time.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let admission = Histogram::with_opts(
            HistogramOpts::new(
                "countdown_admission_seconds",
                "From a command (its Discord timestamp) to its number 1 leaving the bot.",
            )
            .buckets(vec![
                0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )?;
        let resumed = IntCounter::new(
            "countdown_resumed_total",
            "Countdowns resumed from the database after a restart.",
        )?;
        let db_errors =
            IntCounter::new("countdown_db_errors_total", "Failed database operations.")?;
        let finished = IntCounterVec::new(
            Opts::new(
                "countdown_countdowns_ended_total",
                "Countdowns that ended, by final status.",
            ),
            &["status"],
        )?;
        let gateway_ready = IntGauge::new(
            "countdown_gateway_ready",
            "1 while the Discord gateway session of every shard is ready.",
        )?;
        let shards = IntGauge::new(
            "countdown_shards",
            "Discord gateway shards this instance runs (0 on a standby and before the first READY).",
        )?;
        let shards_ready = IntGauge::new(
            "countdown_shards_ready",
            "Discord gateway shards of this instance whose session is ready.",
        )?;
        let rate_budget = IntGauge::new(
            "countdown_rate_budget_per_second",
            "GLOBAL_RATE: requests per second the bot allows itself.",
        )?;

        let leader = IntGauge::new(
            "countdown_leader",
            "1 while this instance is the leader (the one that connects and sends).",
        )?;
        let leader_standbys = IntGauge::new(
            "countdown_leader_standbys",
            "Standbys waiting for the leader lock, as the leader saw at its last ping \
             (0 on a standby). With none, the leader keeps counting through a database outage.",
        )?;

        let edge_races = IntCounter::new(
            "countdown_rate_limit_edge_races_total",
            "429s of a channel bucket asking to wait at most 100 ms: a number sent exactly when \
             the bucket's window ends arrived a few ms early (also counted in \
             countdown_send_errors_total{kind=\"rate_limited\"}).",
        )?;

        let registration_failures = IntCounter::new(
            "countdown_command_registration_failures_total",
            "Failed attempts to register the slash commands with Discord.",
        )?;

        let interaction_answers = IntCounterVec::new(
            Opts::new(
                "countdown_interaction_answers_total",
                "Interactions (slash commands, button presses) by how their answer ended \
                 (answered, deferred then edited in, failed).",
            ),
            &["outcome"],
        )?;

        let retention_deleted = IntCounterVec::new(
            Opts::new(
                "countdown_retention_deleted_total",
                "Rows older than RETENTION deleted (ended tasks, error rows), by table.",
            ),
            &["table"],
        )?;
        let max_active = IntGauge::new(
            "countdown_max_active",
            "MAX_ACTIVE: countdowns the bot takes on at once.",
        )?;
        let max_active_per_guild = IntGauge::new(
            "countdown_max_active_per_guild",
            "MAX_ACTIVE_PER_GUILD: countdowns one server may run at once.",
        )?;
        for c in [
            Box::new(commands.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(commands_by_source.clone()),
            Box::new(registration_failures.clone()),
            Box::new(interaction_answers.clone()),
            Box::new(invalid_commands.clone()),
            Box::new(wrong_commands.clone()),
            Box::new(cancelled.clone()),
            Box::new(count_target.clone()),
            Box::new(active.clone()),
            Box::new(messages_sent.clone()),
            Box::new(replies_sent.clone()),
            Box::new(replies_suppressed.clone()),
            Box::new(send_errors.clone()),
            Box::new(tick_lateness.clone()),
            Box::new(admission.clone()),
            Box::new(resumed.clone()),
            Box::new(db_errors.clone()),
            Box::new(finished.clone()),
            Box::new(gateway_ready.clone()),
            Box::new(shards.clone()),
            Box::new(shards_ready.clone()),
            Box::new(rate_budget.clone()),
            Box::new(leader.clone()),
            Box::new(leader_standbys.clone()),
            Box::new(edge_races.clone()),
            Box::new(retention_deleted.clone()),
            Box::new(max_active.clone()),
            Box::new(max_active_per_guild.clone()),
        ] {
            registry.register(c)?;
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Metrics {
            registry,
            commands,
            commands_by_source,
            invalid_commands,
            wrong_commands,
            cancelled,
            count_target,
            active,
            messages_sent,
            replies_sent,
            replies_suppressed,
            send_errors,
            tick_lateness,
            admission,
            resumed,
            db_errors,
            finished,
            gateway_ready,
            shards,
            shards_ready,
            rate_budget,
            leader,
            leader_standbys,
            edge_races,
            registration_failures,
            interaction_answers,
            retention_deleted,
            max_active,
            max_active_per_guild,
        })
    }

    /// Creates the series of every known label value, at 0.
    pub fn seed(&self, known: &KnownLabels) {
        let each = |vec: &IntCounterVec, values: &[&str]| {
            for value in values {
                vec.with_label_values(&[value]);
            }
        };
        each(&self.commands, &known.commands);
        for (source, command) in &known.commands_by_source {
            self.commands_by_source
                .with_label_values(&[source, command]);
        }
        each(&self.invalid_commands, &known.invalid_reasons);
        each(&self.wrong_commands, &known.wrong_reasons);
        each(&self.send_errors, &known.send_error_kinds);
        each(&self.finished, &known.end_statuses);
        each(&self.retention_deleted, &known.retention_tables);
        each(&self.interaction_answers, &known.interaction_outcomes);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_and_every_seeded_label_is_exported_before_any_event() {
        let metrics = Metrics::new().unwrap();
        metrics.seed(&KnownLabels {
            commands: vec!["count", "status"],
            commands_by_source: vec![("button", "stop"), ("slash", "count")],
            invalid_reasons: vec!["out_of_range"],
            wrong_reasons: vec!["busy_channel"],
            send_error_kinds: vec!["rate_limited"],
            ..KnownLabels::default()
        });
        let text = metrics.render().unwrap();
        for name in [
            "countdown_commands_total{command=\"count\"} 0",
            "countdown_commands_total{command=\"status\"} 0",
            "countdown_commands_by_source_total{command=\"stop\",source=\"button\"} 0",
            "countdown_commands_by_source_total{command=\"count\",source=\"slash\"} 0",
            "countdown_command_registration_failures_total 0",
            "countdown_invalid_commands_total{reason=\"out_of_range\"} 0",
            "countdown_wrong_commands_total{reason=\"busy_channel\"} 0",
            "countdown_cancelled_total 0",
            "countdown_count_target_bucket{le=\"9999\"} 0",
            "countdown_active 0",
            "countdown_messages_sent_total 0",
            "countdown_send_errors_total{kind=\"rate_limited\"} 0",
            "countdown_tick_lateness_seconds_bucket",
            "countdown_admission_seconds_bucket",
            "countdown_resumed_total 0",
            "countdown_db_errors_total 0",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "missing {name}");
        }
    }
}
