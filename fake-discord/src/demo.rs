//! Demo traffic: a user who talks to the bot connected to the fake, so that
//! a demo without Discord (`fake-discord --demo-traffic`, the compose
//! profile `demo`) shows the bot counting.
//!
//! Once a bot is connected, every [`DemoTraffic::every`] it says
//! `@bot count to N` in the next of its channels (N from 3 to
//! [`DemoTraffic::max_count`]); every third countdown is followed by a
//! `status`, and every fifth is a long one that a `stop` ends. It prints
//! what it says, every message the bot posts in those channels, and a line
//! when a countdown is complete (its numbers, in order, once each).

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use crate::{Author, FakeDiscord, PostedMessage};

/// The target of the countdowns that a `stop` ends.
pub const LONG_COUNT: u32 = 60;

/// How the demo user talks to the bot.
#[derive(Clone, Debug)]
pub struct DemoTraffic {
    /// The channels to talk in, in turn.
    pub channels: Vec<u64>,
    /// Time between two countdowns asked for.
    pub every: Duration,
    /// The largest N of a plain `count to N` (3 at least).
    pub max_count: u32,
    /// How many countdowns to ask for; `None`: until the process ends.
    pub rounds: Option<u64>,
    /// The user id that speaks.
    pub user: u64,
}

impl DemoTraffic {
    /// The first channel of each of the first three guilds, a countdown
    /// every 15 s, up to `count to 10`, forever.
    pub fn new(fake: &FakeDiscord) -> DemoTraffic {
        DemoTraffic {
            channels: fake
                .guilds()
                .iter()
                .take(3)
                .filter_map(|g| g.channels.first().copied())
                .collect(),
            every: Duration::from_secs(15),
            max_count: 10,
            rounds: None,
            user: 42,
        }
    }

    /// Round `round`: the countdown asked for, and what the user says when
    /// (after the round's start).
    pub fn script(&self, round: u64) -> (Asked, Vec<(Duration, String)>) {
        let channel = self.channels[(round % self.channels.len() as u64) as usize];
        if round % 5 == 4 {
            let asked = Asked {
                channel,
                target: LONG_COUNT,
                stopped: true,
            };
            return (
                asked,
                vec![
                    (Duration::ZERO, format!("count to {LONG_COUNT}")),
                    (Duration::from_millis(3_500), "stop".to_owned()),
                ],
            );
        }
        let span = u64::from(self.max_count.max(3) - 2);
        let target = 3 + ((round * 3) % span) as u32;
        let mut says = vec![(Duration::ZERO, format!("count to {target}"))];
        if round % 3 == 1 {
            says.push((Duration::from_millis(1_500), "status".to_owned()));
        }
        let asked = Asked {
            channel,
            target,
            stopped: false,
        };
        (asked, says)
    }
}

/// A countdown the demo asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Asked {
    pub channel: u64,
    pub target: u32,
    /// A `stop` ends it early.
    pub stopped: bool,
}

struct Watch {
    asked: Asked,
    /// Past it the countdown is given up on (the bot refused it, or lost it).
    deadline: Instant,
    /// The channel's message count when it was asked for.
    from: usize,
    done: bool,
}

/// Talks to the bot as [`DemoTraffic`] says and hands each line to show to
/// `out`. Returns the countdowns asked for once `rounds` are asked and each
/// of them is over (complete, or stopped); with `rounds: None` it never
/// returns. While no bot is connected it waits (the clock of the rounds
/// waits with it).
pub async fn run(
    fake: &FakeDiscord,
    traffic: &DemoTraffic,
    mut out: impl FnMut(&str),
) -> Vec<Asked> {
    assert!(!traffic.channels.is_empty(), "demo traffic needs a channel");
    let mut round = 0u64;
    let mut next_round = Instant::now();
    let mut pending: Vec<(Instant, u64, String)> = Vec::new();
    let mut watches: Vec<Watch> = Vec::new();
    let mut shown: HashMap<u64, usize> = HashMap::new();
    let mut waiting_said = false;
    loop {
        if !fake.is_ready() {
            if !waiting_said {
                out("demo: waiting for a bot to connect to the fake Discord");
                waiting_said = true;
            }
            let _ = fake.wait_ready(Duration::from_secs(1)).await;
            next_round = Instant::now() + Duration::from_secs(1);
            continue;
        }
        if waiting_said {
            out("demo: a bot is connected");
            waiting_said = false;
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
                if let Some(line) = verdict(&w.asked, &fake.messages_from(channel, w.from)) {
                    out(&format!("#{channel} {line}"));
                    w.done = true;
                } else if now >= w.deadline {
                    let target = w.asked.target;
                    out(&format!("#{channel} count to {target}: NOT over in time"));
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

/// The line for a countdown that is over, `None` while it runs.
fn verdict(asked: &Asked, since: &[PostedMessage]) -> Option<String> {
    let numbers: Vec<u32> = since
        .iter()
        .filter(|m| m.message_reference.is_none())
        .filter_map(|m| m.content.parse().ok())
        .collect();
    let last = *numbers.last().unwrap_or(&0);
    let in_order = numbers.iter().copied().eq(1..=last);
    let over = if asked.stopped {
        since.iter().any(|m| m.content.starts_with("Stopped"))
    } else {
        last >= asked.target
    };
    if !over {
        return None;
    }
    let how = if in_order {
        "in order, once each"
    } else {
        "NOT in order"
    };
    Some(if asked.stopped {
        format!(
            "count to {}: stopped at {last} (1..={last} {how})",
            asked.target
        )
    } else {
        format!("count to {}: complete (1..={last} {how})", asked.target)
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
        }
    }

    #[test]
    fn the_script_counts_in_turn_asks_status_and_stops_a_long_one() {
        let t = traffic();
        let rounds: Vec<_> = (0..5).map(|r| t.script(r)).collect();
        let channels: Vec<u64> = rounds.iter().map(|(a, _)| a.channel).collect();
        assert_eq!(channels, [1, 2, 3, 1, 2]);
        for (asked, says) in &rounds[..4] {
            assert!((3..=10).contains(&asked.target) && !asked.stopped);
            assert_eq!(says[0].1, format!("count to {}", asked.target));
        }
        assert_eq!(rounds[1].1[1].1, "status");
        assert_eq!(rounds[4].0.target, LONG_COUNT);
        assert!(rounds[4].0.stopped);
        assert_eq!(rounds[4].1[1].1, "stop");
        let small = DemoTraffic { max_count: 3, ..t };
        assert!((0..10).all(|r| r % 5 == 4 || small.script(r).0.target == 3));
    }
}
