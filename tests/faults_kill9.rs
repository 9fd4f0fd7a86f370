//! Fault suite: kill -9 at seeded random moments.
//!
//! Ten runs (two tests of five, so they use both cores). Each run starts
//! three countdowns (to 6..=8) in fresh channels, kills the bot with
//! SIGKILL at a seeded moment, restarts it, sometimes kills it again during
//! start-up or resume, and restarts it until everything has finished. The
//! kill moments are of three kinds:
//!
//! - `AfterSend`: right after the fake created a number. The bot has not
//!   even read the answer yet, so the number's progress is certainly not
//!   written (the journal writes every 250 ms): the "between a send and its
//!   progress write" window. The resume re-sends that number with the same
//!   nonce and Discord (the fake) drops it.
//! - `At(ms)`: a random moment after the rows were written.
//! - `StartUp(ms)`: 0..1.5 s after the restarted process was spawned: before
//!   the schema, during IDENTIFY, in the middle of the resume.
//!
//! At the end every channel shows each number exactly once, in order, and
//! every row is `finished`. The seed is printed; `FAULT_SEED=n` replays a
//! failure.

mod common;

use std::time::Duration;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DEFAULT_SEED: u64 = 0x00c0_ffee;
const RUNS_PER_TEST: u64 = 5;
const CHANNELS_PER_RUN: usize = 3;

fn seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED)
}

#[derive(Debug, Clone, Copy)]
enum Kill {
    /// Right after number `k` of the run's channel `c` was created.
    AfterSend { c: usize, k: usize },
    /// `ms` after the rows were written.
    At(u64),
}

async fn kill_runs(first_run: u64) {
    let seed = seed();
    let fake = fake().await;
    let db = TestDb::create().await;
    let mut expected_created = 0usize;
    let mut all_channels: Vec<(u64, u32)> = Vec::new();

    for run in first_run..first_run + RUNS_PER_TEST {
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1000).wrapping_add(run));
        // Fresh channels each run: guild `run % 8`, three channels per run.
        let channels: Vec<(u64, u32)> = (0..CHANNELS_PER_RUN)
            .map(|j| {
                let g = (run % 8) as usize;
                let i = (run / 8) as usize * CHANNELS_PER_RUN + j;
                (channel(&fake, g, i), rng.gen_range(6..=8))
            })
            .collect();
        let kills: Vec<Kill> = (0..rng.gen_range(1..=2))
            .map(|i| {
                // The first run of each test certainly hits the send/progress window.
                if (run == first_run && i == 0) || rng.gen_bool(0.5) {
                    Kill::AfterSend {
                        c: rng.gen_range(0..CHANNELS_PER_RUN),
                        k: rng.gen_range(1..=5),
                    }
                } else {
                    Kill::At(rng.gen_range(0..6000))
                }
            })
            .collect();
        let start_up_kill: Option<u64> = rng.gen_bool(0.6).then(|| rng.gen_range(0..1500));
        eprintln!(
            "kill -9 run {run} (FAULT_SEED={seed}): channels {channels:?}, kills {kills:?}, \
             start-up kill after {start_up_kill:?} ms"
        );

        let mut bot = Bot::start_ready(&fake, &db, &[]).await;
        let rows_before = db.tasks().await.len();
        for &(ch, target) in &channels {
            say(&fake, ch, &mention(&fake, &format!("count to {target}"))).await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        }
        db.wait_tasks("the run's rows", |t| {
            t.len() == rows_before + CHANNELS_PER_RUN
        })
        .await;

        for (i, kill) in kills.iter().enumerate() {
            match *kill {
                Kill::AfterSend { c, k } => {
                    let (ch, target) = channels[c];
                    let k = k.min(target as usize);
                    if fake.messages(ch).len() < k {
                        // `wait_for_messages` wakes on the creation itself.
                        fake.wait_for_messages(ch, k, Duration::from_secs(30))
                            .await
                            .unwrap();
                    }
                }
                Kill::At(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            }
            bot.kill9();
            if i == 0 {
                if let Some(ms) = start_up_kill {
                    let mut early = Bot::start_unready(&fake, &db, &[]).await;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    early.kill9();
                }
            }
            bot = Bot::start_ready(&fake, &db, &[]).await;
        }

        for &(ch, target) in &channels {
            let msgs = wait_messages(&fake, ch, target as usize).await;
            // Any late duplicate would arrive within a second of the last number.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let msgs = if fake.messages(ch).len() > msgs.len() {
                fake.messages(ch)
            } else {
                msgs
            };
            assert_eq!(
                numbers(&msgs),
                one_to(target),
                "run {run} (FAULT_SEED={seed}), channel {ch}: each number exactly once, in order"
            );
            assert_eq!(msgs.len(), target as usize, "no reply, no extra message");
        }
        all_channels.extend(&channels);
        expected_created += channels.iter().map(|c| c.1 as usize).sum::<usize>();
        db.wait_tasks("every row finished", |t| {
            t.len() == all_channels.len() && t.iter().all(|r| r.0 == "finished" && r.1 == r.2)
        })
        .await;
        bot.assert_logs_clean();
        drop(bot);
    }

    let stats = fake.stats();
    assert_eq!(stats.created as usize, expected_created, "nothing doubled");
    for (ch, target) in all_channels {
        assert_eq!(numbers(&fake.messages(ch)), one_to(target));
    }
    assert!(
        stats.nonce_duplicates > 0,
        "no kill landed between a send and its progress write: {stats:?}"
    );
    assert_no_pings(&fake);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_seeded_moments_runs_0_to_4() {
    kill_runs(0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_seeded_moments_runs_5_to_9() {
    kill_runs(RUNS_PER_TEST).await;
}
