//! Demo traffic: a user who talks to the bot connected to the fake, and a
//! Discord that lets the bot down now and then, so that a demo without
//! Discord (`fake-discord --demo-traffic`, the compose profile `demo`) shows
//! the bot counting, stopping and failing, and the stack's panels, tables
//! and alerts moving with it.
//!
//! Once a bot is connected, every [`DemoTraffic::every`] it starts the next
//! round in the next of its channels. The rounds follow [`CYCLE`]: a plain
//! countdown, one asked for its `status`, one whose channel the bot loses
//! Send Messages in (Discord refuses its next number with 403, the countdown
//! fails), a long one that a `stop` ends, one during which Discord answers
//! 502 to two numbers (the bot retries each, the countdown completes), and
//! an invalid command and a second `count to` in a counting channel (both
//! answered, both refused). With the default 15 s, the first minute has
//! shown counting, a status, a failure and a stop.
//!
//! Every post of a round fits its channel's limit (5 per 5 s, which the bot
//! keeps to): a countdown that gets a reply or a retry while it counts is
//! short enough to leave room for it, so no number waits for a reply, and
//! the numbers are as punctual as Discord's faults let them be.
//!
//! It prints what the user says, every message the bot posts in those
//! channels, what the fake does to the bot, a line per countdown once it is
//! over (complete, stopped or failed, and whether its numbers came in order,
//! once each), and every alert posted through the demo's incoming webhook
//! ([`ALERTS_WEBHOOK_ID`], [`alerts_webhook_url`]).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Author, FakeDiscord, PostedMessage};

/// The target of the countdowns that a `stop` ends (3.5 s in: four numbers
/// and the confirmation, within the channel's 5 posts per 5 s).
pub const LONG_COUNT: u32 = 60;
/// The target of a countdown that gets a reply while it counts: its numbers
/// and the reply are the channel's 5 posts per 5 s.
pub const SHORT_COUNT: u32 = 4;
/// Numbers a countdown posts before the bot loses Send Messages.
pub const PERMISSION_LOST_AFTER: u32 = 2;
/// Numbers whose first attempt Discord answers 502 in a [`Twist::Hiccup`]
/// round: the second and the third of a count to [`HICCUP_COUNT`], so that
/// with their retries (250 ms later, each number that late) they are the
/// channel's 5 posts per 5 s, and no later number waits for room.
pub const HICCUP_POSTS: usize = 2;
pub const HICCUP_COUNT: u32 = 3;
/// The demo's incoming webhook, where the stack's Alertmanager posts: its
/// id and token are fixed so that the stack's configuration can name its
/// URL before the fake runs (docker/demo.env).
pub const ALERTS_WEBHOOK_ID: u64 = 900_000_000_000_000_100;
pub const ALERTS_WEBHOOK_TOKEN: &str = "demo-alerts";

/// The URL of the demo's alerts webhook on a fake reached at `base_url`.
pub fn alerts_webhook_url(base_url: &str) -> String {
    format!(
        "{}/api/webhooks/{ALERTS_WEBHOOK_ID}/{ALERTS_WEBHOOK_TOKEN}",
        base_url.trim_end_matches('/')
    )
}

/// What a round does besides asking for a countdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Twist {
    /// Nothing: the countdown runs to its end.
    Plain,
    /// A count to [`SHORT_COUNT`], asked for its `status` 1.5 s in.
    Status,
    /// After [`PERMISSION_LOST_AFTER`] numbers the bot loses Send Messages
    /// in the channel: Discord refuses its next number (403 Missing
    /// Permissions), which the bot does not retry, and the countdown fails.
    /// The permission comes back once the refusal is seen.
    LosesPermission,
    /// A countdown to [`LONG_COUNT`] that a `stop` ends 3.5 s in.
    Stopped,
    /// A count to [`HICCUP_COUNT`] whose numbers after the first each have
    /// their first attempt answered 502 Bad Gateway ([`HICCUP_POSTS`]); the
    /// bot retries them, and the countdown completes.
    Hiccup,
    /// `count to ten` (invalid: the bot answers with its usage), a count
    /// to [`SHORT_COUNT`] - 1 a second later, and a `count to 5` while it
    /// counts (refused: the channel is counting).
    Refusals,
}

/// The rounds, in turn. The failed attempts of one cycle (one refused post,
/// two 502s) are well over 5 % of the bot's attempts, as steady as the
/// cycle: what the stack's CountdownSendErrors needs for its 5 minutes.
pub const CYCLE: [Twist; 6] = [
    Twist::Plain,
    Twist::Status,
    Twist::LosesPermission,
    Twist::Stopped,
    Twist::Hiccup,
    Twist::Refusals,
];

/// How the demo user talks to the bot.
#[derive(Clone, Debug)]
pub struct DemoTraffic {
    /// The channels to talk in, in turn.
    pub channels: Vec<u64>,
    /// Time between two rounds.
    pub every: Duration,
    /// The largest N of a plain countdown, or of one that loses its
    /// permission (they range from [`SHORT_COUNT`] + 1 to this).
    pub max_count: u32,
    /// How many rounds to run; `None`: until the process ends.
    pub rounds: Option<u64>,
    /// The user id that speaks.
    pub user: u64,
    /// Where the demo's alerts webhook posts; `None`: no webhook.
    pub alerts_channel: Option<u64>,
}

impl DemoTraffic {
    /// The first channel of each of the first three guilds, a round every
    /// 15 s, up to `count to 10`, forever; the alerts webhook posts in the
    /// second channel of the first guild.
    pub fn new(fake: &FakeDiscord) -> DemoTraffic {
        let guilds = fake.guilds();
        DemoTraffic {
            channels: guilds
                .iter()
                .take(3)
                .filter_map(|g| g.channels.first().copied())
                .collect(),
            every: Duration::from_secs(15),
            max_count: 10,
            rounds: None,
            user: 42,
            alerts_channel: guilds.first().and_then(|g| g.channels.get(1)).copied(),
        }
    }

    /// Round `round`: the countdown asked for, and what the user says when
    /// (after the round's start).
    pub fn script(&self, round: u64) -> (Asked, Vec<(Duration, String)>) {
        let channel = self.channels[(round % self.channels.len() as u64) as usize];
        let twist = CYCLE[(round % CYCLE.len() as u64) as usize];
        let lowest = SHORT_COUNT + 1;
        let span = u64::from(self.max_count.max(lowest) - lowest + 1);
        let target = match twist {
            Twist::Plain | Twist::LosesPermission => lowest + ((round * 3) % span) as u32,
            Twist::Status => SHORT_COUNT,
            // Two replies besides the numbers.
            Twist::Refusals => SHORT_COUNT - 1,
            Twist::Stopped => LONG_COUNT,
            Twist::Hiccup => HICCUP_COUNT,
        };
        let count = (Duration::ZERO, format!("count to {target}"));
        let says = match twist {
            Twist::Plain | Twist::LosesPermission | Twist::Hiccup => vec![count],
            Twist::Status => vec![count, (Duration::from_millis(1_500), "status".to_owned())],
            Twist::Stopped => vec![count, (Duration::from_millis(3_500), "stop".to_owned())],
            Twist::Refusals => vec![
                (Duration::ZERO, "count to ten".to_owned()),
                (Duration::from_millis(1_000), count.1),
                (Duration::from_millis(2_500), "count to 5".to_owned()),
            ],
        };
        let asked = Asked {
            channel,
            target,
            twist,
        };
        (asked, says)
    }
}

/// A countdown the demo asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub channel: u64,
    pub target: u32,
    pub twist: Twist,
}

struct Watch {
    asked: Asked,
    /// Past it the countdown is given up on (the bot refused it, or lost it).
    deadline: Instant,
    /// The channel's message count when it was asked for.
    from: usize,
    /// Steps of the round's trouble started so far (the permission taken,
    /// a 502 armed).
    troubles: u32,
    done: bool,
}

/// Talks to the bot as [`DemoTraffic`] says and hands each line to show to
/// `out`. Returns the countdowns asked for once `rounds` are asked and each
/// of them is over (complete, stopped or failed); with `rounds: None` it
/// never returns. While no bot is connected it waits (the clock of the
/// rounds waits with it).
pub async fn run(
    fake: &FakeDiscord,
    traffic: &DemoTraffic,
    mut out: impl FnMut(&str),
) -> Vec<Asked> {
    assert!(!traffic.channels.is_empty(), "demo traffic needs a channel");
    if let Some(channel) = traffic.alerts_channel {
        let url = fake.create_webhook_with(channel, ALERTS_WEBHOOK_ID, ALERTS_WEBHOOK_TOKEN);
        out(&format!(
            "demo: alerts posted to {url} show here, as #{channel} gets them"
        ));
    }
    let mut round = 0u64;
    let mut next_round = Instant::now();
    let mut pending: Vec<(Instant, u64, String)> = Vec::new();
    let mut watches: Vec<Watch> = Vec::new();
    let mut shown: HashMap<u64, usize> = HashMap::new();
    let mut alerts_shown = 0usize;
    let mut waiting_since: Option<Instant> = None;
    let mut hint_given = false;
    loop {
        alerts_shown += show_alerts(fake, alerts_shown, &mut out);
        if !fake.is_ready() {
            let since = *waiting_since.get_or_insert_with(|| {
                out("demo: waiting for a bot to connect to the fake Discord");
                Instant::now()
            });
            if !hint_given && since.elapsed() >= Duration::from_secs(60) {
                out(
                    "demo: no bot has connected for a minute; in the compose demo, \
                     `docker compose logs setup bot` says why",
                );
                hint_given = true;
            }
            let _ = fake.wait_ready(Duration::from_secs(1)).await;
            next_round = Instant::now() + Duration::from_secs(1);
            continue;
        }
        if waiting_since.take().is_some() {
            out("demo: a bot is connected");
        }

        let now = Instant::now();
        if traffic.rounds.is_none_or(|n| round < n) && now >= next_round {
            let (asked, says) = traffic.script(round);
            for (after, text) in says {
                pending.push((now + after, asked.channel, text));
            }
            watches.push(Watch {
                deadline: now + Duration::from_secs(u64::from(asked.target) + 30),
                from: fake.message_count(asked.channel),
                asked,
                troubles: 0,
                done: false,
            });
            round += 1;
            next_round = now + traffic.every;
        }

        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _, _)| *at <= now);
        pending = later;
        for (_, channel, text) in due {
            let content = format!("<@{}> {text}", fake.bot_user_id());
            out(&format!("#{channel} user{}: @bot {text}", traffic.user));
            if let Err(e) = fake
                .inject_message(channel, Author::user(traffic.user), &content)
                .await
            {
                out(&format!("demo: could not say {text:?} in #{channel}: {e}"));
            }
        }

        for &channel in &traffic.channels {
            let seen = shown.entry(channel).or_insert(0);
            let new = fake.messages_from(channel, *seen);
            for m in &new {
                let reply = if m.message_reference.is_some() {
                    " (reply)"
                } else {
                    ""
                };
                out(&format!("#{channel} bot{reply}: {}", m.content));
            }
            *seen += new.len();
            for w in watches
                .iter_mut()
                .filter(|w| !w.done && w.asked.channel == channel)
            {
                let since = fake.messages_from(channel, w.from);
                let posted = numbers(&since).len() as u32;
                let (first, steps) = trouble_steps(w.asked.twist);
                if w.troubles < steps && posted >= first + w.troubles {
                    trouble(fake, &w.asked, &mut out);
                    w.troubles += 1;
                }
                let refused = fake.send_refusals(channel).unwrap_or(0) > 0;
                if let Some(line) = verdict(&w.asked, &since, refused) {
                    out(&format!("#{channel} {line}"));
                    if w.asked.twist == Twist::LosesPermission {
                        fake.deny_send(channel, false);
                        out(&format!("#{channel} demo: the bot may post here again"));
                    }
                    w.done = true;
                } else if now >= w.deadline {
                    let target = w.asked.target;
                    out(&format!("#{channel} count to {target}: NOT over in time"));
                    fake.deny_send(channel, false);
                    w.done = true;
                }
            }
        }
        watches.retain(|w| !w.done || traffic.rounds.is_some());

        if traffic.rounds.is_some_and(|n| round >= n)
            && pending.is_empty()
            && watches.iter().all(|w| w.done)
        {
            return watches.into_iter().map(|w| w.asked).collect();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// When a round's trouble starts (after how many numbers) and in how many
/// steps, one more number apart each.
fn trouble_steps(twist: Twist) -> (u32, u32) {
    match twist {
        Twist::LosesPermission => (PERMISSION_LOST_AFTER, 1),
        Twist::Hiccup => (1, HICCUP_POSTS as u32),
        Twist::Plain | Twist::Status | Twist::Stopped | Twist::Refusals => (0, 0),
    }
}

/// Starts a step of the trouble of `asked`'s round.
fn trouble(fake: &FakeDiscord, asked: &Asked, out: &mut impl FnMut(&str)) {
    let channel = asked.channel;
    match asked.twist {
        Twist::LosesPermission => {
            fake.deny_send(channel, true);
            out(&format!(
                "#{channel} demo: a moderator takes away the bot's Send Messages here"
            ));
        }
        Twist::Hiccup => {
            fake.fail_next(1, 502);
            out(&format!(
                "#{channel} demo: Discord answers the next post 502 Bad Gateway"
            ));
        }
        Twist::Plain | Twist::Status | Twist::Stopped | Twist::Refusals => {}
    }
}

/// Prints the alerts posted through incoming webhooks from the
/// `already`-th on; returns how many it printed.
fn show_alerts(fake: &FakeDiscord, already: usize, out: &mut impl FnMut(&str)) -> usize {
    let messages = fake.webhook_messages();
    let new = messages.get(already..).unwrap_or_default();
    for m in new {
        for line in alert_lines(m) {
            out(&format!("#{} alert: {line}", m.channel_id));
        }
    }
    new.len()
}

/// What a webhook message shows: its content, then each embed's title and
/// the lines of its description (Alertmanager's Discord messages are one
/// embed).
fn alert_lines(m: &crate::WebhookMessage) -> Vec<String> {
    let mut lines: Vec<String> = m
        .content
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    let embeds = m.body["embeds"].as_array().cloned().unwrap_or_default();
    for embed in embeds {
        if let Some(title) = embed["title"].as_str() {
            lines.push(title.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        if let Some(description) = embed["description"].as_str() {
            lines.extend(
                description
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| format!("  {l}")),
            );
        }
    }
    lines
}

/// The numbers among `messages` (not the replies), in order.
fn numbers(messages: &[PostedMessage]) -> Vec<u32> {
    messages
        .iter()
        .filter(|m| m.message_reference.is_none())
        .filter_map(|m| m.content.parse().ok())
        .collect()
}

/// The line for a countdown that is over, `None` while it runs. `refused`:
/// Discord refused a post in its channel for a missing permission.
fn verdict(asked: &Asked, since: &[PostedMessage], refused: bool) -> Option<String> {
    let numbers = numbers(since);
    let last = *numbers.last().unwrap_or(&0);
    let in_order = numbers.iter().copied().eq(1..=last);
    let replies = since
        .iter()
        .filter(|m| m.message_reference.is_some())
        .count();
    let over = match asked.twist {
        Twist::Stopped => since.iter().any(|m| m.content.starts_with("Stopped")),
        Twist::LosesPermission => refused,
        // Over when what the user said is answered too.
        Twist::Status => last >= asked.target && replies >= 1,
        Twist::Refusals => last >= asked.target && replies >= 2,
        Twist::Plain | Twist::Hiccup => last >= asked.target,
    };
    if !over {
        return None;
    }
    let how = if in_order {
        "in order, once each"
    } else {
        "NOT in order"
    };
    let target = asked.target;
    Some(match asked.twist {
        Twist::Stopped => format!("count to {target}: stopped at {last} (1..={last} {how})"),
        Twist::LosesPermission => format!(
            "count to {target}: failed at {last} (1..={last} {how}; Discord refused the next \
             number: 403 Missing Permissions)"
        ),
        _ => format!("count to {target}: complete (1..={last} {how})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic() -> DemoTraffic {
        DemoTraffic {
            channels: vec![1, 2, 3],
            every: Duration::from_secs(1),
            max_count: 10,
            rounds: None,
            user: 42,
            alerts_channel: None,
        }
    }

    #[test]
    fn the_script_counts_in_turn_and_brings_its_trouble_within_four_rounds() {
        let t = traffic();
        let rounds: Vec<_> = (0..12).map(|r| t.script(r)).collect();
        let channels: Vec<u64> = rounds[..6].iter().map(|(a, _)| a.channel).collect();
        assert_eq!(channels, [1, 2, 3, 1, 2, 3]);
        let twists: Vec<Twist> = rounds[..6].iter().map(|(a, _)| a.twist).collect();
        assert_eq!(twists, CYCLE);
        // Counting, a status, a failure and a stop within the first minute
        // of the default 15 s rounds.
        assert!(CYCLE[..4].contains(&Twist::LosesPermission));
        assert!(CYCLE[..4].contains(&Twist::Stopped));
        for (asked, says) in &rounds {
            let count = format!("count to {}", asked.target);
            assert!(says.iter().any(|(_, s)| *s == count), "{says:?}");
            let target = asked.target;
            match asked.twist {
                Twist::Plain => assert!((SHORT_COUNT + 1..=10).contains(&target)),
                // Past the number after which the permission goes.
                Twist::LosesPermission => assert!(target > PERMISSION_LOST_AFTER + 1),
                Twist::Stopped => assert_eq!(says[1].1, "stop"),
                Twist::Status => assert_eq!(says[1].1, "status"),
                Twist::Hiccup => assert_eq!(target, HICCUP_COUNT),
                Twist::Refusals => {
                    assert_eq!(says[0].1, "count to ten");
                    assert_eq!(says[2].1, "count to 5");
                }
            }
        }
    }

    /// What a round posts in a channel within 5 s, its retries included,
    /// is at most Discord's 5: no number waits for room.
    #[test]
    fn every_round_fits_its_channels_limit() {
        let t = traffic();
        for (asked, says) in (0..6).map(|r| t.script(r)) {
            // Everything said but the countdown itself is answered.
            let replies = says.len() - 1;
            assert!(says.iter().all(|(at, _)| *at < Duration::from_secs(5)));
            let (numbers, retries) = match asked.twist {
                // 1 at 0 s … 4 at 3 s, the stop's answer at 3.5 s.
                Twist::Stopped => (4, 0),
                Twist::Hiccup => (asked.target, HICCUP_POSTS as u32),
                // Nothing but their numbers (the one losing its permission
                // fails at its third).
                Twist::Plain | Twist::LosesPermission => continue,
                Twist::Status | Twist::Refusals => (asked.target, 0),
            };
            assert!(
                numbers + retries + replies as u32 <= 5,
                "{asked:?}: {says:?}"
            );
        }
    }

    #[test]
    fn the_alerts_webhook_url_is_the_fakes_own() {
        assert_eq!(
            alerts_webhook_url("http://fake-discord:3000/"),
            "http://fake-discord:3000/api/webhooks/900000000000000100/demo-alerts"
        );
    }

    #[test]
    fn an_alertmanager_message_shows_its_title_and_description() {
        let m = crate::WebhookMessage {
            webhook_id: ALERTS_WEBHOOK_ID,
            channel_id: 7,
            content: String::new(),
            body: serde_json::json!({
                "embeds": [{
                    "title": "[FIRING:1]\n CountdownSendErrors",
                    "description": "**warning**: Posting to Discord fails\nRunbook: docs/alerts.md#countdownsenderrors\n\n",
                }]
            }),
            at: std::time::Instant::now(),
        };
        assert_eq!(
            alert_lines(&m),
            [
                "[FIRING:1] CountdownSendErrors",
                "  **warning**: Posting to Discord fails",
                "  Runbook: docs/alerts.md#countdownsenderrors",
            ]
        );
    }
}
