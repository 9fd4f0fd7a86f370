//! Several instances on one database: exactly one leader sends; when it
//! dies, is stopped or is cut from the database, a standby takes over and
//! every number still appears exactly once, in order.

mod common;

use std::time::{Duration, Instant};

use common::*;
use nix::sys::signal::Signal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_hands_over_within_3_s_with_no_gap_and_no_duplicate() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut a = Bot::start_ready(&fake, &db, &[]).await;
    let b = Bot::start(&fake, &db, &[]);
    b.wait_standby().await;
    assert_eq!(a.metric("countdown_leader").await, 1.0);
    assert_eq!(fake.identify_count(), 1, "only the leader connects");
    let ch = channel(&fake, 0, 0);

    say(&fake, ch, &mention(&fake, "count to 8")).await;
    wait_messages(&fake, ch, 3).await;
    let killed = Instant::now();
    a.kill9();

    let msgs = wait_messages(&fake, ch, 8).await;
    assert_eq!(numbers(&msgs), one_to(8), "no gap, no duplicate");
    let resumed_at = msgs.iter().find(|m| m.at > killed).unwrap().at;
    let takeover = resumed_at.duration_since(killed);
    eprintln!("takeover after kill -9: {takeover:?}");
    assert!(
        takeover <= Duration::from_secs(3),
        "takeover took {takeover:?}"
    );
    assert_eq!(b.metric("countdown_leader").await, 1.0);
    assert_eq!(b.metric("countdown_resumed_total").await, 1.0);
    db.wait_tasks("finished row", |t| t == [("finished".into(), 8, 8)])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_of_the_leader_hands_over_within_1_s() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut a = Bot::start_ready(&fake, &db, &[]).await;
    let b = Bot::start(&fake, &db, &[]);
    b.wait_standby().await;
    let ch = channel(&fake, 0, 1);

    say(&fake, ch, &mention(&fake, "count to 6")).await;
    wait_messages(&fake, ch, 2).await;
    let (status, _) = a.signal_and_wait(Signal::SIGTERM, Duration::from_secs(5));
    assert!(status.success());
    let exited = Instant::now();
    fake.wait_identify_count(2, Duration::from_secs(5))
        .await
        .unwrap();
    let handover = exited.elapsed();
    eprintln!("hand-over after SIGTERM: {handover:?}");
    assert!(
        handover <= Duration::from_secs(1),
        "hand-over took {handover:?}"
    );

    let msgs = wait_messages(&fake, ch, 6).await;
    assert_eq!(numbers(&msgs), one_to(6));
    assert!(
        !b.logs().contains("did not step down cleanly"),
        "a clean hand-over waits for nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_from_the_database_steps_down_and_the_standby_takes_over() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let a = Bot::start_ready(&fake, &db, &[]).await;
    let b = Bot::start(&fake, &db, &[]);
    b.wait_standby().await;
    let ch = channel(&fake, 0, 2);

    say(&fake, ch, &mention(&fake, "count to 8")).await;
    wait_messages(&fake, ch, 2).await;
    // The leader's lock connection is idle between pings; the standby's is
    // blocked in pg_advisory_lock.
    let terminated: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = current_database() AND application_name = 'countdown-leader' \
               AND query NOT LIKE '%pg_advisory_lock%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1);

    a.wait_metric("countdown_leader", |v| v == 0.0).await;
    b.wait_metric("countdown_leader", |v| v == 1.0).await;
    let msgs = wait_messages(&fake, ch, 8).await;
    assert_eq!(numbers(&msgs), one_to(8), "still exactly once");
    assert!(a.logs().contains("stepping down"));
    db.wait_tasks("finished row", |t| t == [("finished".into(), 8, 8)])
        .await;
    // The deposed instance campaigns again and waits as a standby.
    a.wait_standby().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_and_repeated_kills_always_have_exactly_one_leader() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut bots = vec![Bot::start_ready(&fake, &db, &[]).await];
    for _ in 0..2 {
        let standby = Bot::start(&fake, &db, &[]);
        standby.wait_standby().await;
        bots.push(standby);
    }
    let ch = channel(&fake, 1, 0);
    say(&fake, ch, &mention(&fake, "count to 14")).await;
    wait_messages(&fake, ch, 1).await;

    for round in 0..3 {
        let mut leaders = Vec::new();
        for (i, bot) in bots.iter().enumerate() {
            if bot.metric("countdown_leader").await == 1.0 {
                leaders.push(i);
            }
        }
        assert_eq!(leaders.len(), 1, "round {round}: leaders {leaders:?}");
        let identified = fake.identify_count();
        bots[leaders[0]].kill9();
        bots.remove(leaders[0]);
        fake.wait_identify_count(identified + 1, Duration::from_secs(10))
            .await
            .unwrap();
        // A replacement joins as a standby.
        let standby = Bot::start(&fake, &db, &[]);
        standby.wait_standby().await;
        bots.push(standby);
    }
    let msgs = wait_messages(&fake, ch, 14).await;
    assert_eq!(numbers(&msgs), one_to(14));
    let mut leaders = 0;
    for bot in &bots {
        leaders += bot.metric("countdown_leader").await as usize;
    }
    assert_eq!(leaders, 1);
}

/// The failover benchmark of BENCHMARKS.md (not a timed test: it prints).
/// `cargo test --release --test e2e_failover failover_time -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run explicitly, see BENCHMARKS.md"]
async fn failover_time_over_10_kills() {
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut leader = Bot::start_ready(&fake, &db, &[]).await;
    let mut standby = Bot::start(&fake, &db, &[]);
    standby.wait_standby().await;
    let ch = channel(&fake, 4, 0);
    say(&fake, ch, &mention(&fake, "count to 300")).await;
    wait_messages(&fake, ch, 2).await;

    let (mut to_send, mut to_number) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        let before = fake.messages(ch).len();
        let killed = Instant::now();
        leader.kill9();
        // First message POST of the new leader (a re-sent number counts).
        let msgs = wait_messages(&fake, ch, before + 1).await;
        let first_post = fake
            .requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/messages") && r.at > killed)
            .map(|r| r.at)
            .min()
            .unwrap();
        to_send.push(first_post.duration_since(killed));
        to_number.push(msgs[before].at.duration_since(killed));
        leader = standby;
        standby = Bot::start(&fake, &db, &[]);
        standby.wait_standby().await;
        wait_messages(&fake, ch, fake.messages(ch).len() + 1).await;
    }
    let msgs = fake.messages(ch);
    assert_eq!(
        numbers(&msgs),
        one_to(msgs.len() as u32),
        "exactly once throughout"
    );
    for (name, mut v) in [
        ("kill -9 -> new leader's first send", to_send),
        ("kill -9 -> next number in the channel", to_number),
    ] {
        v.sort();
        println!(
            "failover {name}: median {:?}, max {:?}, min {:?} over {} kills",
            v[v.len() / 2],
            v[v.len() - 1],
            v[0],
            v.len()
        );
    }
}
