//! Demo traffic: a user who talks to the bot connected to the fake, and a
//! Discord that lets the bot down now and then, so that a demo without
//! Discord (`fake-discord --demo-traffic`, the compose profile `demo`) shows
//! the bot counting, stopping and failing, and the stack's panels, tables
//! and alerts moving with it.
//!
//! Once a bot is connected, every [`DemoTraffic::every`] it starts the next
//! round in the next of its channels. The rounds follow [`CYCLE`]: a plain
//! countdown; one asked for its `status`, whose answer Discord first
//! refuses with a 502 (the bot retries it); one in a channel where the bot
//! loses Send Messages (Discord refuses its next number with 403, the
//! countdown fails); a long one that a `stop` ends, the confirmation again
//! through a 502; another plain one; and an invalid command and a second
//! `count to` in a counting channel (both answered, both refused). With the
//! default 15 s, the first minute has shown counting, a status, a failure
//! and a stop.
//!
//! Every post of a round fits its channel's limit (5 per 5 s, which the bot
//! keeps to, counting its failed attempts): a countdown that gets an answer
//! while it counts is short enough to leave room for it and its retry, so
//! no number ever waits, and Discord's 502s fall on answers, not on
//! numbers: the numbers stay on time while the send errors pile up.
//!
//! It prints what the user says, every message the bot posts in those
//! channels, what the fake does to the bot, a line per round once it is
//! over (complete, stopped or failed, whether the numbers came in order,
//! once each, and what the user said answered), and every alert posted
//! through the demo's incoming webhook ([`ALERTS_WEBHOOK_ID`],
//! [`alerts_webhook_url`]).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Author, FakeDiscord, PostedMessage};

/// The target of the countdowns that a `stop` ends.
pub const LONG_COUNT: u32 = 60;
/// The target of a countdown that gets answers while it counts: its numbers,
/// the answers and one failed attempt are the channel's 5 posts per 5 s.
pub const SHORT_COUNT: u32 = 3;
/// Numbers a countdown posts before the bot loses Send Messages.
pub const PERMISSION_LOST_AFTER: u32 = 2;
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
    /// A count to [`SHORT_COUNT`], asked for its `status` 1.5 s in; Discord
    /// answers the first attempt of the bot's answer 502 Bad Gateway.
    Status,
    /// After [`PERMISSION_LOST_AFTER`] numbers the bot loses Send Messages
    /// in the channel: Discord refuses its next number (403 Missing
    /// Permissions), which the bot does not retry, and the countdown fails.
    /// The permission comes back once the refusal is seen.
    LosesPermission,
    /// A count to [`LONG_COUNT`] that a `stop` ends 2.5 s in; Discord
    /// answers the first attempt of the confirmation 502 Bad Gateway.
    Stopped,
    /// `count to ten` (invalid: the bot answers with its usage), a count to
    /// [`SHORT_COUNT`] a second later, and a `count to 5` while it counts
    /// (refused: the channel is counting).
    Refusals,
}

/// The rounds, in turn. The failed attempts of one cycle (one refused post,
/// two 502s) are about a tenth of the bot's attempts, as steady as the cycle:
/// what the stack's CountdownSendErrors (over 5 % for 5 minutes) and
/// CountdownFailed (a failed countdown in every 15 minutes) need.
pub const CYCLE: [Twist; 6] = [
    Twist::Plain,
    Twist::Status,
    Twist::LosesPermission,
    Twist::Stopped,
    Twist::Plain,
    Twist::Refusals,
];

/// Something the user says in a round.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Say {
    /// After the round's start.
    pub after: Duration,
    pub text: String,
    /// Discord answers the next post, the bot's answer to this, 502 Bad
    /// Gateway (the bot retries it).
    pub answer_fails: bool,
}

impl Say {
    fn at(ms: u64, text: impl Into<String>) -> Say {
        Say {
            after: Duration::from_millis(ms),
            text: text.into(),
            answer_fails: false,
        }
    }

    fn answer_failing(self) -> Say {
        Say {
            answer_fails: true,
            ..self
        }
    }
}

/// How the demo user talks to the bot.
#[derive(Clone, Debug)]
pub struct DemoTraffic {
    /// The channels to talk in, in turn.
    pub channels: Vec<u64>,
    /// Time between two rounds.
    pub every: Duration,
    /// The largest N of a plain countdown, or of one that loses its
    /// permission (they range from 5 to this).
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

    /// Round `round`: the countdown asked for, and what the user says when.
    pub fn script(&self, round: u64) -> (Asked, Vec<Say>) {
        let channel = self.channels[(round % self.channels.len() as u64) as usize];
        let twist = CYCLE[(round % CYCLE.len() as u64) as usize];
        let lowest = 5;
        let span = u64::from(self.max_count.max(lowest) - lowest + 1);
        let target = match twist {
            // Another N each round and each cycle.
            Twist::Plain | Twist::LosesPermission => {
                lowest + ((round / 2 + round / CYCLE.len() as u64) % span) as u32
            }
            Twist::Status | Twist::Refusals => SHORT_COUNT,
            Twist::Stopped => LONG_COUNT,
        };
        let count = format!("count to {target}");
        let says = match twist {
            Twist::Plain | Twist::LosesPermission => vec![Say::at(0, count)],
            Twist::Status => vec![Say::at(0, count), Say::at(1_500, "status").answer_failing()],
            Twist::Stopped => vec![Say::at(0, count), Say::at(2_500, "stop").answer_failing()],
            Twist::Refusals => vec![
                Say::at(0, "count to ten"),
                Say::at(1_000, count),
                Say::at(2_500, "count to 5"),
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
    /// Past it the round is given up on (the bot refused it, or lost it).
    deadline: Instant,
    /// The channel's message count when it was asked for.
    from: usize,
    /// The permission is taken (a [`Twist::LosesPermission`] round).
    denied: bool,
    done: bool,
}

/// Talks to the bot as [`DemoTraffic`] says and hands each line to show to
/// `out`. Returns the countdowns asked for once `rounds` are asked and each
/// of them is over (complete, stopped or failed, what the user said
/// answered); with `rounds: None` it never returns. While no bot is
/// connected it waits (the clock of the rounds waits with it).
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
    let mut pending: Vec<(Instant, u64, Say)> = Vec::new();
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
                    "demo: no bot has connected for a minute; in the compose demo the \
                     stack's bot comes only when it has no token (no config.env, or an empty \
                     DISCORD_TOKEN): `docker compose logs setup bot` says what it did",
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
            for say in says {
                pending.push((now + say.after, asked.channel, say));
            }
            watches.push(Watch {
                deadline: now + Duration::from_secs(u64::from(asked.target) + 30),
                from: fake.message_count(asked.channel),
                asked,
                denied: false,
                done: false,
            });
            round += 1;
            // On the round's schedule, not from when this loop came round:
            // a steady cadence, and what is said lands half a second off
            // the numbers' whole seconds (the 502s find the answers).
            next_round = (next_round + traffic.every).max(now);
        }

        let (due, later): (Vec<_>, Vec<_>) = pending.into_iter().partition(|(at, _, _)| *at <= now);
        pending = later;
        for (_, channel, say) in due {
            let text = &say.text;
            if say.answer_fails {
                fake.fail_next(1, 502);
                out(&format!(
                    "#{channel} demo: Discord answers the next post 502 Bad Gateway"
                ));
            }
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
                if w.asked.twist == Twist::LosesPermission
                    && !w.denied
                    && numbers(&since).len() as u32 >= PERMISSION_LOST_AFTER
                {
                    fake.deny_send(channel, true);
                    out(&format!(
                        "#{channel} demo: a moderator takes away the bot's Send Messages here"
                    ));
                    w.denied = true;
                }
                let refused = fake.send_refusals(channel).unwrap_or(0) > 0;
                if let Some(line) = verdict(&w.asked, &since, refused) {
                    out(&format!("#{channel} {line}"));
                    if w.denied {
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

/// The line for a round that is over, `None` while it runs. `refused`:
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
        Twist::Plain => last >= asked.target,
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
            assert!(says.iter().any(|s| s.text == count), "{says:?}");
            let texts: Vec<&str> = says.iter().map(|s| s.text.as_str()).collect();
            match asked.twist {
                Twist::Plain => assert!((5..=10).contains(&asked.target)),
                // Past the number after which the permission goes.
                Twist::LosesPermission => assert!(asked.target > PERMISSION_LOST_AFTER + 1),
                Twist::Stopped => assert_eq!(texts[1], "stop"),
                Twist::Status => assert_eq!(texts[1], "status"),
                Twist::Refusals => assert_eq!(texts, ["count to ten", "count to 3", "count to 5"]),
            }
        }
        let plain: std::collections::BTreeSet<u32> = rounds
            .iter()
            .filter(|(a, _)| a.twist == Twist::Plain)
            .map(|(a, _)| a.target)
            .collect();
        assert!(plain.len() > 2, "the plain countdowns vary: {plain:?}");
        // Two answers a cycle go through a 502.
        let failing = rounds[..6]
            .iter()
            .flat_map(|(_, says)| says)
            .filter(|s| s.answer_fails)
            .count();
        assert_eq!(failing, 2);
    }

    /// What a round posts in its channel within 5 s, the failed attempts
    /// included, is at most Discord's 5: no number waits for room, and the
    /// failed attempts fall on answers, never on numbers.
    #[test]
    fn every_round_fits_its_channels_limit() {
        let t = traffic();
        for (asked, says) in (0..6).map(|r| t.script(r)) {
            assert!(says.iter().all(|s| s.after < Duration::from_secs(5)));
            // Everything said but the countdown itself is answered.
            let answers = says.len() as u32 - 1;
            let failed = says.iter().filter(|s| s.answer_fails).count() as u32;
            let numbers = match asked.twist {
                // 1 at 0 s, 2 at 1 s, 3 at 2 s, the stop at 2.5 s.
                Twist::Stopped => 3,
                // Nothing but their numbers (the one losing its permission
                // fails at its third).
                Twist::Plain | Twist::LosesPermission => continue,
                Twist::Status | Twist::Refusals => asked.target,
            };
            assert!(numbers + answers + failed <= 5, "{asked:?}: {says:?}");
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
