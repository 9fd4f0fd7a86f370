//! The demo of the compose profile `demo` (`fake-discord --demo-traffic`):
//! its traffic generator, `fake_discord::demo::run`, against the real bot
//! and PostgreSQL, one cycle of rounds at a fast pace. The channels show
//! complete countdowns, a `status` answered and a `stop` obeyed (both
//! answers through a 502 of Discord's), a countdown failed by a lost
//! permission, an invalid and a refused command answered; the database
//! holds the rows pgAdmin and Grafana show (a `failed` task, its
//! `send_failed` error); the bot's counters cross the threshold of the
//! alert the demo is meant to fire (CountdownSendErrors), with no number
//! late enough for another; and an alert posted to the demo's webhook is
//! printed.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use fake_discord::demo::{self, DemoTraffic, Twist, CYCLE, LONG_COUNT};

/// The stack's bot rules, where CountdownSendErrors's threshold is.
const RULES: &str = "prometheus/rules/countdown.yml";
/// The configuration the stack's setup uses for the demo.
const DEMO_ENV: &str = "docker/demo.env";

fn repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// The ratio CountdownSendErrors compares with (`> 0.05`), read from the
/// rule itself.
fn send_errors_threshold() -> f64 {
    let rules = repo_file(RULES);
    let rule = rules
        .split("- alert: ")
        .find(|r| r.starts_with("CountdownSendErrors"))
        .expect("the rule CountdownSendErrors");
    rule.lines()
        .find_map(|l| l.trim().strip_prefix("> ")?.trim().parse().ok())
        .expect("CountdownSendErrors compares with `> <ratio>`")
}

/// `(labels, value)` of every sample of the metric `name` in `metrics`
/// (Prometheus' text format); the labels as written between the braces.
fn samples<'a>(metrics: &'a str, name: &str) -> Vec<(&'a str, f64)> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let labels = match series.strip_prefix(name)? {
                "" => "",
                rest => rest.strip_prefix('{')?.strip_suffix('}')?,
            };
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_of_demo_traffic_counts_stops_and_fails() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    // One channel per round, so no round asks where another one counts.
    let alerts = channel(&fake, 7, 29);
    let traffic = DemoTraffic {
        channels: (0..CYCLE.len()).map(|g| channel(&fake, g, 0)).collect(),
        // Whole seconds, as the default 15 s: every number of every round
        // falls on the same second's grid, and the answers Discord first
        // refuses (1.5 s and 2.5 s into their rounds) half a second off it.
        every: Duration::from_secs(1),
        max_count: 7,
        rounds: Some(CYCLE.len() as u64),
        user: USER,
        alerts_channel: Some(alerts),
    };
    // What the stack's Alertmanager would post, there before the demo
    // starts: the demo takes the webhook over and prints it.
    let url = fake.create_webhook_with(alerts, demo::ALERTS_WEBHOOK_ID, demo::ALERTS_WEBHOOK_TOKEN);
    assert_eq!(url, demo::alerts_webhook_url(&fake.base_url()));
    let posted = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({
            "embeds": [{
                "title": "[FIRING:1] CountdownSendErrors",
                "description": "**warning**: Posting to Discord fails\nRunbook: docs/alerts.md#countdownsenderrors",
            }]
        }))
        .send()
        .await
        .expect("the demo's webhook answers");
    assert_eq!(posted.status().as_u16(), 204);

    let mut lines = Vec::new();
    let asked = tokio::time::timeout(
        Duration::from_secs(30),
        demo::run(&fake, &traffic, |line| lines.push(line.to_owned())),
    )
    .await
    .unwrap_or_else(|_| panic!("the demo never saw its countdowns end\n{}", bot.logs()));

    assert_eq!(asked.len(), CYCLE.len());
    let line = |text: String| {
        assert!(lines.contains(&text), "no line {text:?} in {lines:#?}");
    };
    line(format!("#{alerts} alert: [FIRING:1] CountdownSendErrors"));
    line(format!(
        "#{alerts} alert:   Runbook: docs/alerts.md#countdownsenderrors"
    ));
    let (mut numbers_posted, mut replies_posted, mut failing_answers) = (0, 0, 0);
    for (round, a) in asked.iter().enumerate() {
        assert_eq!(a.twist, CYCLE[round]);
        let (ch, n) = (a.channel, a.target);
        let msgs = fake.messages(ch);
        let nums = numbers(&msgs);
        let replies: Vec<String> = msgs
            .iter()
            .filter(|m| m.message_reference.is_some())
            .map(|m| m.content.clone())
            .collect();
        match a.twist {
            Twist::Stopped => {
                assert_eq!(n, LONG_COUNT);
                let last = *nums.last().expect("numbers before the stop");
                assert!(last < LONG_COUNT, "round {round}: not stopped: {nums:?}");
                assert_eq!(nums, one_to(last), "round {round}");
                assert!(contents(&msgs).iter().any(|c| c.starts_with("Stopped at")));
                line(format!(
                    "#{ch} count to {n}: stopped at {last} (1..={last} in order, once each)"
                ));
            }
            Twist::LosesPermission => {
                // The number after the second was refused, and the bot let
                // the countdown go: nothing more in the channel.
                assert_eq!(nums, one_to(2), "round {round}: {:?}", contents(&msgs));
                line(format!(
                    "#{ch} demo: a moderator takes away the bot's Send Messages here"
                ));
                line(format!(
                    "#{ch} count to {n}: failed at 2 (1..=2 in order, once each; Discord \
                     refused the next number: 403 Missing Permissions)"
                ));
                line(format!("#{ch} demo: the bot may post here again"));
                assert_eq!(fake.send_refusals(ch), None, "the permission is back");
            }
            _ => {
                assert_eq!(nums, one_to(n), "round {round}");
                line(format!(
                    "#{ch} count to {n}: complete (1..={n} in order, once each)"
                ));
            }
        }
        let fails = traffic
            .script(round as u64)
            .1
            .iter()
            .any(|s| s.answer_fails);
        if fails {
            line(format!(
                "#{ch} demo: Discord answers the next post 502 Bad Gateway"
            ));
            failing_answers += 1;
        }
        match a.twist {
            Twist::Status => assert!(
                replies.iter().any(|r| r.contains("started a countdown to")),
                "no answer to status: {replies:?}"
            ),
            Twist::Refusals => {
                assert!(
                    replies.iter().any(|r| r.contains("not a number")),
                    "no usage for `count to ten`: {replies:?}"
                );
                assert!(
                    replies
                        .iter()
                        .any(|r| r.starts_with("I'm already counting here")),
                    "no refusal of the second `count to`: {replies:?}"
                );
            }
            _ => {}
        }
        for m in &msgs {
            let shown = match m.message_reference {
                Some(_) => format!("#{ch} bot (reply): {}", m.content),
                None => format!("#{ch} bot: {}", m.content),
            };
            assert!(lines.contains(&shown), "{shown:?} not printed");
        }
        numbers_posted += nums.len();
        replies_posted += replies.len();
    }

    // What pgAdmin and Grafana's tables show: a row per countdown, one of
    // them failed at 2 with the error that says why, the invalid and the
    // refused command.
    let tasks = db
        .wait_tasks("every countdown of the cycle ended", |t| {
            t.len() == CYCLE.len() && t.iter().all(|(status, _, _)| status != "running")
        })
        .await;
    let statuses: Vec<&str> = tasks.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        ["finished", "finished", "failed", "stopped", "finished", "finished"]
    );
    assert_eq!(
        tasks[2].1, 2,
        "the failed countdown's last number: {tasks:?}"
    );
    let mut kinds = db.wait_command_errors(3).await;
    kinds.sort();
    assert_eq!(kinds, ["busy_channel", "invalid", "send_failed"]);
    let failed_channel = asked[2].channel as i64;
    let errors = db
        .client()
        .await
        .query(
            "SELECT error FROM command_errors WHERE kind = 'send_failed' AND channel_id = $1",
            &[&failed_channel],
        )
        .await
        .expect("command_errors");
    let error: String = errors.first().expect("a send_failed row").get(0);
    assert!(
        error.contains("number 3 could not be sent") && error.contains("403"),
        "{error}"
    );

    // What Prometheus scrapes: one refused post and the 502s among the
    // attempts, more than CountdownSendErrors allows; a cycle repeated for
    // its 5 minutes fires it. And no number was half a second late (what
    // CountdownTickLatenessHigh minds): the 502s fell on answers.
    bot.wait_metric("countdown_tick_lateness_seconds_count", |v| {
        v as usize == numbers_posted
    })
    .await;
    let on_time = bot
        .metric("countdown_tick_lateness_seconds_bucket{le=\"0.5\"}")
        .await;
    assert_eq!(on_time as usize, numbers_posted, "numbers over 0.5 s late");
    bot.wait_metric("countdown_messages_sent_total", |v| {
        v as usize == numbers_posted
    })
    .await;
    bot.wait_metric("countdown_replies_sent_total", |v| {
        v as usize == replies_posted
    })
    .await;
    let metrics = bot.metrics().await;
    let errors = samples(&metrics, "countdown_send_errors_total");
    let kind = |k: &str| {
        errors
            .iter()
            .find(|(labels, _)| *labels == format!("kind=\"{k}\""))
            .map_or(0.0, |(_, v)| *v)
    };
    assert_eq!(kind("rejected"), 1.0, "{errors:?}");
    assert_eq!(failing_answers, 2, "two answers a cycle meet a 502");
    assert_eq!(kind("server_error"), failing_answers as f64, "{errors:?}");
    let failed: f64 = errors
        .iter()
        .filter(|(labels, _)| *labels != "kind=\"rate_limited\"")
        .map(|(_, v)| v)
        .sum();
    let attempts = (numbers_posted + replies_posted) as f64 + failed;
    let threshold = send_errors_threshold();
    assert!(
        failed / attempts > threshold,
        "{failed} failed of {attempts} attempts: not over CountdownSendErrors's {threshold}"
    );
    bot.assert_logs_clean();
    assert_no_pings(&fake);
}

/// The stack's demo configuration sends the bot and Alertmanager to the
/// fake: Alertmanager's webhook is the one the demo traffic creates, on the
/// fake the bot talks to.
#[test]
fn the_stacks_demo_configuration_points_at_the_demos_webhook() {
    let env = repo_file(DEMO_ENV);
    let value = |name: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("{DEMO_ENV} sets no {name}"))
            .to_owned()
    };
    let api = value("DISCORD_API_URL");
    assert_eq!(
        value("ALERT_DISCORD_WEBHOOK_URL"),
        demo::alerts_webhook_url(&api)
    );
}
