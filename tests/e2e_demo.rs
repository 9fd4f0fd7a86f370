//! The demo of the compose profile `demo` (`fake-discord --demo-traffic`):
//! its traffic generator, `fake_discord::demo::run`, against the real bot
//! shows complete countdowns, a `status` answered and a `stop` obeyed.

mod common;

use std::time::Duration;

use common::*;
use fake_discord::demo::{self, DemoTraffic, LONG_COUNT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_traffic_shows_the_bot_counting() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    // One channel per round, so no countdown is asked for where one runs.
    let traffic = DemoTraffic {
        channels: (0..5).map(|g| channel(&fake, g, 0)).collect(),
        every: Duration::from_millis(300),
        max_count: 6,
        rounds: Some(5),
        user: USER,
    };

    let mut lines = Vec::new();
    let asked = tokio::time::timeout(
        Duration::from_secs(15),
        demo::run(&fake, &traffic, |line| lines.push(line.to_owned())),
    )
    .await
    .unwrap_or_else(|_| panic!("the demo never saw its countdowns end\n{}", bot.logs()));

    assert_eq!(asked.len(), 5);
    for (round, a) in asked.iter().enumerate() {
        let msgs = fake.messages(a.channel);
        let nums = numbers(&msgs);
        if a.stopped {
            assert_eq!(a.target, LONG_COUNT);
            let last = *nums.last().expect("numbers before the stop");
            assert!(last < LONG_COUNT, "round {round}: not stopped: {nums:?}");
            assert_eq!(nums, one_to(last), "round {round}");
            assert!(contents(&msgs).iter().any(|c| c.starts_with("Stopped at")));
            let line = format!(
                "#{} count to {LONG_COUNT}: stopped at {last} (1..={last} in order, once each)",
                a.channel
            );
            assert!(lines.contains(&line), "no line {line:?} in {lines:#?}");
        } else {
            assert!((3..=6).contains(&a.target));
            assert_eq!(nums, one_to(a.target), "round {round}");
            let (ch, n) = (a.channel, a.target);
            let line = format!("#{ch} count to {n}: complete (1..={n} in order, once each)");
            assert!(lines.contains(&line), "no line {line:?} in {lines:#?}");
        }
        for m in &msgs {
            let shown = match m.message_reference {
                Some(_) => format!("#{} bot (reply): {}", a.channel, m.content),
                None => format!("#{} bot: {}", a.channel, m.content),
            };
            assert!(lines.contains(&shown), "{shown:?} not printed");
        }
    }
    // Round 1 asked for its status: a reply besides the numbers.
    let status = fake.messages(asked[1].channel);
    assert!(
        status.iter().any(|m| m.message_reference.is_some()),
        "no answer to status: {:?}",
        contents(&status)
    );
    assert_no_pings(&fake);
}
