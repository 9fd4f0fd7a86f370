//! Fault suite: a flaky Discord. 5xx bursts (JSON and
//! Cloudflare's HTML 502), 429s with and without the global flag, requests
//! that hang until the bot's timeout, 2 s of latency, a gateway that keeps
//! dropping, RESUME refused. Nothing is lost or doubled, every failed
//! attempt is counted by kind, and a run of failures is logged once (when
//! it starts and when it ends), not once per retry.

mod common;

use std::time::Duration;

use common::*;

/// Waits until `ch` shows `n` messages.
async fn after(fake: &fake_discord::FakeDiscord, ch: u64, n: usize) {
    wait_messages(fake, ch, n).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_is_retried_counted_by_kind_and_logged_once_per_run() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("DISCORD_HTTP_TIMEOUT", "1s")]).await;
    let ch = channel(&fake, 0, 0);

    say(&fake, ch, &mention(&fake, "count to 12")).await;
    // One channel, so each armed fault hits the next number of this channel:
    // five runs of failures.
    after(&fake, ch, 1).await;
    fake.fail_next(3, 503); // run 1: three 503s
    after(&fake, ch, 3).await;
    fake.fail_next(2, 502); // run 2: two Cloudflare HTML 502s
    after(&fake, ch, 5).await;
    fake.rate_limit_next(2, 0.3, false); // run 3: two bucket 429s
    after(&fake, ch, 7).await;
    fake.rate_limit_next(1, 0.5, true); // run 4: one global 429
    after(&fake, ch, 9).await;
    fake.hang_next(1); // run 5: one request that never answers
    let msgs = wait_messages(&fake, ch, 12).await;

    assert_eq!(numbers(&msgs), one_to(12), "nothing lost, nothing doubled");
    assert_eq!(msgs.len(), 12);
    db.wait_tasks("finished row", |t| t == [("finished".into(), 12, 12)])
        .await;
    let kind = |k: &str| format!("countdown_send_errors_total{{kind=\"{k}\"}}");
    assert_eq!(bot.metric(&kind("server_error")).await, 5.0);
    assert_eq!(bot.metric(&kind("rate_limited")).await, 3.0);
    assert_eq!(bot.metric(&kind("timeout")).await, 1.0);
    for other in ["network", "rejected", "invalid_response"] {
        assert_eq!(bot.metric(&kind(other)).await, 0.0, "{other}");
    }
    assert_eq!(bot.metric("countdown_messages_sent_total").await, 12.0);

    // Logged once when a run starts and once when it ends: five runs, not
    // nine failed attempts. (Further retries are at debug level only.)
    let logs = bot.logs();
    assert_eq!(
        count_lines(&logs, "send failed; retrying"),
        5,
        "one warning per run of failures:\n{logs}"
    );
    assert_eq!(count_lines(&logs, "delivered after"), 5, "{logs}");
    let warn_or_error = logs
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .count();
    assert_eq!(warn_or_error, 5, "no other warning or error:\n{logs}");
    // The hung request was retried after the timeout; the 429s waited
    // their retry_after; nothing gave up.
    assert_eq!(count_lines(&logs, "giving up"), 0);
    assert_eq!(fake.stats().hung, 1);
    bot.assert_logs_clean();
    assert_no_pings(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_faults_over_three_channels_lose_and_double_nothing() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[("DISCORD_HTTP_TIMEOUT", "1s")]).await;
    let chans: Vec<u64> = (0..3).map(|i| channel(&fake, 1, i)).collect();
    for &ch in &chans {
        say(&fake, ch, &mention(&fake, "count to 10")).await;
    }
    // Faults apply to whichever message POSTs come next, in any channel.
    after(&fake, chans[2], 2).await;
    fake.fail_next(4, 500);
    after(&fake, chans[0], 4).await;
    fake.rate_limit_next(3, 0.4, false);
    after(&fake, chans[1], 5).await;
    fake.hang_next(2);
    after(&fake, chans[2], 7).await;
    fake.rate_limit_next(2, 0.25, true);
    after(&fake, chans[0], 8).await;
    fake.fail_next(2, 502);

    for &ch in &chans {
        let msgs = wait_messages(&fake, ch, 10).await;
        assert_eq!(numbers(&msgs), one_to(10), "channel {ch}");
    }
    db.wait_tasks("three finished rows", |t| {
        t.len() == 3 && t.iter().all(|r| r == &("finished".to_owned(), 10, 10))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for &ch in &chans {
        assert_eq!(fake.messages(ch).len(), 10, "no late duplicate in {ch}");
    }
    // Every injected failure shows up in the metric, under its kind.
    let s = fake.stats();
    let kind = |k: &str| format!("countdown_send_errors_total{{kind=\"{k}\"}}");
    assert_eq!(
        bot.metric(&kind("server_error")).await,
        (s.injected_errors - s.hung) as f64
    );
    assert_eq!(bot.metric(&kind("timeout")).await, s.hung as f64);
    assert_eq!(
        bot.metric(&kind("rate_limited")).await,
        s.rate_limited as f64
    );
    assert_eq!(s.created, 30);
    let logs = bot.logs();
    assert_eq!(
        count_lines(&logs, "send failed; retrying"),
        count_lines(&logs, "delivered after"),
        "each run of failures ends with one line:\n{logs}"
    );
    assert!(count_lines(&logs, "send failed; retrying") <= 5 * 3);
    bot.assert_logs_clean();
    assert_no_pings(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_seconds_of_latency_slow_nothing_into_a_burst_or_a_double() {
    let fake = fake().await;
    fake.set_latency(Duration::from_secs(2));
    let db = TestDb::create().await;
    // The harness's 3 s request timeout is above the latency.
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let chans: Vec<u64> = (0..2).map(|i| channel(&fake, 2, i)).collect();
    for &ch in &chans {
        say(&fake, ch, &mention(&fake, "count to 5")).await;
    }
    for &ch in &chans {
        let msgs = wait_messages(&fake, ch, 5).await;
        assert_eq!(numbers(&msgs), one_to(5), "channel {ch}");
        // Sends of a channel are sequential: with 2 s answers the numbers
        // come 2 to 3 s apart (re-anchored on the late answer), never in a
        // burst and never more than latency + 1 s + noise apart.
        for gap in gaps_ms(&msgs) {
            assert!((1900..=3600).contains(&gap), "gap {gap} ms in {ch}");
        }
    }
    db.wait_tasks("finished rows", |t| {
        t.len() == 2 && t.iter().all(|r| r.0 == "finished")
    })
    .await;
    assert_eq!(fake.stats().nonce_duplicates, 0);
    let kind = |k: &str| format!("countdown_send_errors_total{{kind=\"{k}\"}}");
    assert_eq!(bot.metric(&kind("timeout")).await, 0.0);
    bot.assert_logs_clean();
}

/// The case is a gateway dropping every 20 s. serenity reconnects
/// and resumes in about a second, so what matters is several drops during
/// one countdown; a drop every 3 s gives five of them in a 20 s countdown
/// instead of a 100 s test.
const DROP_EVERY: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_keeps_dropping_and_a_refused_resume_lose_nothing() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let bot = Bot::start_ready(&fake, &db, &[]).await;
    let a = channel(&fake, 3, 0);
    let b = channel(&fake, 3, 1);
    say(&fake, a, &mention(&fake, "count to 20")).await;
    wait_messages(&fake, a, 1).await;

    let mut late_commands = Vec::new();
    for drop_no in 1..=5 {
        tokio::time::sleep(DROP_EVERY).await;
        if drop_no == 3 {
            // RESUME refused: INVALID_SESSION, a fresh IDENTIFY and READY.
            fake.set_resume_allowed(false);
        }
        fake.drop_gateway();
        if drop_no == 2 {
            // Sent while the bot is disconnected: replayed on RESUME, once.
            say(&fake, b, &mention(&fake, "count to 4")).await;
            late_commands.push(b);
        }
        if drop_no == 3 {
            fake.wait_identify_count(2, Duration::from_secs(20))
                .await
                .unwrap();
            fake.set_resume_allowed(true);
        } else {
            fake.wait_ready(Duration::from_secs(20)).await.unwrap();
        }
    }

    let msgs = wait_messages(&fake, a, 20).await;
    assert_eq!(numbers(&msgs), one_to(20), "nothing lost or doubled");
    let msgs_b = wait_messages(&fake, b, 4).await;
    assert_eq!(numbers(&msgs_b), one_to(4), "the replayed command ran once");
    db.wait_tasks("two finished rows", |t| {
        t.len() == 2 && t.iter().all(|r| r.0 == "finished" && r.1 == r.2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.messages(a).len(), 20);
    assert_eq!(fake.messages(b).len(), 4);
    // Counting never paused for the gateway: the numbers stay about one
    // second apart through five drops.
    for gap in gaps_ms(&msgs) {
        assert!((700..=1400).contains(&gap), "gap {gap} ms");
    }
    assert!(fake.resume_count() >= 4, "{:?}", fake.stats());
    assert!(fake.identify_count() >= 2, "{:?}", fake.stats());
    assert_eq!(
        bot.metric("countdown_resumed_total").await,
        0.0,
        "a second READY started nothing twice"
    );
    assert_eq!(
        bot.metric("countdown_commands_total{command=\"count\"}")
            .await,
        2.0
    );
    bot.wait_readyz().await;
    assert_eq!(bot.metric("countdown_gateway_ready").await, 1.0);
    assert!(late_commands.len() == 1);
    bot.assert_logs_clean();
    assert_no_pings(&fake);
}
