//! Timing of the scheduler, exact under paused time, with a recording sink.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::channel_check::{snowflake_at, ResumeCheck};
use super::*;
use crate::metrics::Metrics;
use crate::send::{
    Delivered, Delivery, Listed, MessageSink, Outgoing, Pacer, RetryPolicy, SendError, PAGE,
};
use crate::storage::{Journal, MemoryStore, NewTask, TaskStatus, TaskStore};

#[derive(Default)]
struct Recorder {
    /// (when the request started, channel, message) of every delivered message.
    delivered: Mutex<Vec<(Instant, u64, Outgoing)>>,
    attempts: Mutex<usize>,
    script: Mutex<VecDeque<Result<(), SendError>>>,
    /// Discord's answers to the successful posts, in order (then defaults).
    answers: Mutex<VecDeque<Delivered>>,
    latency: Mutex<Duration>,
    /// The channel's history as a listing shows it (oldest first), and
    /// what a listing answers instead, if it fails.
    history: Mutex<Vec<Listed>>,
    listing_fails: Mutex<Option<SendError>>,
}

#[async_trait]
impl MessageSink for Recorder {
    async fn post(&self, channel_id: u64, message: &Outgoing) -> Result<Delivered, SendError> {
        let start = Instant::now();
        *self.attempts.lock().unwrap() += 1;
        let latency = *self.latency.lock().unwrap();
        tokio::time::sleep(latency).await;
        if let Some(Err(e)) = self.script.lock().unwrap().pop_front() {
            return Err(e);
        }
        self.delivered
            .lock()
            .unwrap()
            .push((start, channel_id, message.clone()));
        Ok(self.answers.lock().unwrap().pop_front().unwrap_or_default())
    }

    async fn list_after(&self, _channel_id: u64, after: u64) -> Result<Vec<Listed>, SendError> {
        if let Some(e) = self.listing_fails.lock().unwrap().clone() {
            return Err(e);
        }
        let history = self.history.lock().unwrap();
        Ok(history
            .iter()
            .filter(|m| m.id > after)
            .take(PAGE)
            .cloned()
            .collect())
    }
}

/// The bot's user id in the channel histories below.
const BOT: u64 = 777;

fn listed(id: u64, author_id: u64, content: &str) -> Listed {
    Listed {
        id,
        author_id,
        content: content.into(),
        stop_button_of: None,
    }
}

struct Harness {
    recorder: Arc<Recorder>,
    scheduler: Scheduler,
    /// Where the scheduler's journal writes.
    store: Arc<MemoryStore>,
    journal: Journal,
    metrics: Metrics,
    t0: Instant,
}

/// A scheduler sending through `sink`, paced at `rate` per second, whose
/// journal writes to a store in memory.
fn scheduler(
    sink: Arc<dyn MessageSink>,
    rate: u32,
    limits: Limits,
    metrics: &Metrics,
) -> Scheduler {
    let journal = Journal::new(Arc::new(MemoryStore::new()), metrics.clone(), None);
    journalling_scheduler(sink, rate, limits, metrics, journal)
}

fn journalling_scheduler(
    sink: Arc<dyn MessageSink>,
    rate: u32,
    limits: Limits,
    metrics: &Metrics,
    journal: Journal,
) -> Scheduler {
    let delivery = Delivery::new(
        sink,
        Arc::new(Pacer::new(rate)),
        metrics.clone(),
        RetryPolicy::default(),
        crate::leader::Fence::open(),
    );
    Scheduler::new(
        limits,
        delivery,
        journal,
        metrics.clone(),
        CancellationToken::new(),
    )
}

fn harness(limits: Limits) -> Harness {
    harness_at(50, limits)
}

/// A harness whose global budget is `rate` per second.
fn harness_at(rate: u32, limits: Limits) -> Harness {
    let recorder = Arc::new(Recorder::default());
    let metrics = Metrics::new().unwrap();
    let store = Arc::new(MemoryStore::new());
    let journal = Journal::new(store.clone(), metrics.clone(), None);
    let scheduler =
        journalling_scheduler(recorder.clone(), rate, limits, &metrics, journal.clone());
    Harness {
        recorder,
        scheduler,
        store,
        journal,
        metrics,
        t0: Instant::now(),
    }
}

const LIMITS: Limits = Limits {
    max_active: 3,
    max_active_per_guild: 2,
};

impl Harness {
    /// The row of a countdown to `target` in `channel_id`, as admission
    /// writes it; its id.
    async fn row(&self, channel_id: u64, target: u16) -> i64 {
        let task = NewTask {
            channel_id,
            guild_id: Some(1),
            user_id: 9,
            target,
            source: "mention",
        };
        self.store.insert(&task).await.unwrap().id
    }

    fn start(&self, task_id: i64, channel_id: u64, target: u16) {
        let reservation = self.scheduler.reserve(channel_id, Some(1)).unwrap();
        self.spawn(reservation, task_id, channel_id, 1, target, None);
    }

    /// Resumes countdown `task_id` at `next`, due now, with a channel check.
    fn resume(&self, task_id: i64, channel_id: u64, next: u16, target: u16, after: u64) {
        let reservation = self
            .scheduler
            .reserve_for_resume(channel_id, Some(1))
            .unwrap();
        let check = ResumeCheck {
            after,
            bot_user_id: BOT,
        };
        self.spawn(reservation, task_id, channel_id, next, target, Some(check));
    }

    fn spawn(
        &self,
        reservation: Reservation,
        task_id: i64,
        channel_id: u64,
        next: u16,
        target: u16,
        check: Option<ResumeCheck>,
    ) {
        self.scheduler.start(
            reservation,
            CountdownSpec {
                task_id,
                channel_id,
                guild_id: Some(1),
                user_id: 9,
                target,
                next,
                first_due: Instant::now(),
                check,
                asked_at: None,
            },
        );
    }

    /// Offsets from t0, in ms, of each delivered number of `channel`.
    fn send_times(&self, channel: u64) -> Vec<(u16, u128)> {
        self.recorder
            .delivered
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ch, _)| *ch == channel)
            .map(|(t, _, m)| match m {
                Outgoing::Number { k, .. } => (*k, (*t - self.t0).as_millis()),
                Outgoing::Reply { .. } => (0, (*t - self.t0).as_millis()),
            })
            .collect()
    }

    async fn until_idle(&self) {
        while self.scheduler.active() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(start_paused = true)]
async fn numbers_go_out_exactly_once_per_second() {
    let h = harness(LIMITS);
    h.start(1, 10, 5);
    h.until_idle().await;
    assert_eq!(
        h.send_times(10),
        vec![(1, 0), (2, 1000), (3, 2000), (4, 3000), (5, 4000)]
    );
    assert_eq!(h.metrics.messages_sent.get(), 5);
    assert_eq!(h.metrics.active.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn latency_does_not_accumulate_into_drift() {
    let h = harness(LIMITS);
    *h.recorder.latency.lock().unwrap() = Duration::from_millis(150);
    h.start(1, 10, 30);
    h.until_idle().await;
    let times = h.send_times(10);
    assert_eq!(times.len(), 30);
    // The 150 ms of latency add nothing, and a countdown using its whole
    // channel bucket never waits for it.
    for (k, ms) in times {
        let k = u128::from(k) - 1;
        assert_eq!(ms, k * 1000, "number {} started late", k + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn a_stall_re_anchors_instead_of_bursting() {
    let h = harness(LIMITS);
    // Number 3 fails 4 times (250+500+1000+2000 ms of backoff), then goes out.
    h.recorder.script.lock().unwrap().extend([
        Ok(()),
        Ok(()),
        Err(SendError::Server { status: 503 }),
        Err(SendError::Server { status: 503 }),
        Err(SendError::Server { status: 502 }),
        Err(SendError::Timeout),
    ]);
    h.start(1, 10, 5);
    h.until_idle().await;
    let times = h.send_times(10);
    let ks: Vec<u16> = times.iter().map(|t| t.0).collect();
    assert_eq!(ks, vec![1, 2, 3, 4, 5], "nothing lost, nothing doubled");
    let late3 = times[2].1;
    // Attempts at 2000, 2250, 2750 ms; failed attempts use the channel's
    // bucket too (5 per 5 s), so the 4th waits for 5000, times out, and the
    // 5th goes 2 s of backoff later.
    assert_eq!(late3, 7000);
    assert_eq!(
        times[3].1,
        late3 + 1000,
        "4 comes a second after the late 3"
    );
    assert_eq!(times[4].1, late3 + 2000);
    assert_eq!(
        h.metrics
            .send_errors
            .with_label_values(&["server_error"])
            .get(),
        3
    );
    assert_eq!(
        h.metrics.send_errors.with_label_values(&["timeout"]).get(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_short_hiccup_keeps_the_original_schedule() {
    let h = harness(LIMITS);
    h.recorder.script.lock().unwrap().extend([
        Ok(()),
        Err(SendError::RateLimited {
            retry_after: Duration::from_millis(300),
            global: false,
        }),
    ]);
    h.start(1, 10, 4);
    h.until_idle().await;
    assert_eq!(
        h.send_times(10),
        vec![(1, 0), (2, 1300), (3, 2000), (4, 3000)]
    );
    // 300 ms is a real limit, not a race with a window's edge.
    assert_eq!(h.metrics.edge_races.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn stop_ends_the_countdown_and_reports_progress() {
    let h = harness(LIMITS);
    h.start(7, 10, 100);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let stopped = h.scheduler.stop(10).await.unwrap();
    assert_eq!(
        stopped,
        Stopped {
            task_id: 7,
            last_sent: 3,
            target: 100
        }
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(h.send_times(10).len(), 3, "nothing after stop");
    assert!(
        h.scheduler.stop(10).await.is_none(),
        "the channel is idle now"
    );
    assert!(h.scheduler.reserve(10, Some(1)).is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_rejected_message_fails_the_countdown() {
    let h = harness(LIMITS);
    h.recorder.script.lock().unwrap().extend([
        Ok(()),
        Err(SendError::Rejected {
            status: 403,
            message: "Missing Permissions".into(),
        }),
    ]);
    h.start(1, 10, 5);
    h.until_idle().await;
    assert_eq!(h.send_times(10).len(), 1);
    assert_eq!(*h.recorder.attempts.lock().unwrap(), 2, "not retried");
    assert_eq!(h.metrics.finished.with_label_values(&["failed"]).get(), 1);
}

#[tokio::test(start_paused = true)]
async fn admission_holds_the_caps() {
    let h = harness(LIMITS);
    h.start(1, 10, 50);
    assert_eq!(
        h.scheduler.reserve(10, Some(1)).err(),
        Some(Refusal::BusyChannel)
    );
    h.start(2, 11, 50);
    assert_eq!(
        h.scheduler.reserve(12, Some(1)).err(),
        Some(Refusal::BusyGuild)
    );
    let r = h.scheduler.reserve(20, Some(2)).unwrap();
    assert_eq!(
        h.scheduler.reserve(21, Some(3)).err(),
        Some(Refusal::BusyBot)
    );
    drop(r);
    assert!(
        h.scheduler.reserve(21, Some(3)).is_ok(),
        "a dropped reservation frees its slot"
    );
    assert!(
        h.scheduler.reserve_for_resume(22, Some(1)).is_ok(),
        "resumes ignore caps"
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_interrupts_without_ending_rows() {
    let h = harness(LIMITS);
    h.recorder
        .answers
        .lock()
        .unwrap()
        .extend((1..=2).map(|k| Delivered {
            message_id: Some(100 + k),
            ..Delivered::default()
        }));
    let id = h.row(10, 100).await;
    h.start(id, 10, 100);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(h.scheduler.shutdown(Duration::from_secs(3)).await);
    for status in ["finished", "stopped", "failed"] {
        assert_eq!(h.metrics.finished.with_label_values(&[status]).get(), 0);
    }
    assert_eq!(h.send_times(10).len(), 2);
    h.journal.flush().await.unwrap();
    let row = h.store.task(id).unwrap();
    assert_eq!(row.status, TaskStatus::Running, "resumed at the next start");
    assert_eq!(row.row.last_sent, 2);
    // Where a resume past the nonce window reads the channel from.
    assert_eq!(row.row.last_message_id, Some(102));
}

#[tokio::test(start_paused = true)]
async fn a_finished_countdown_ends_its_row() {
    let h = harness(LIMITS);
    let id = h.row(10, 4).await;
    h.start(id, 10, 4);
    h.until_idle().await;
    h.journal.flush().await.unwrap();
    let row = h.store.task(id).unwrap();
    assert_eq!(row.status, TaskStatus::Finished);
    assert_eq!(row.row.last_sent, 4);
    assert!(row.finished_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn many_channels_share_a_small_budget_fairly() {
    let recorder = Arc::new(Recorder::default());
    let limits = Limits {
        max_active: 100,
        max_active_per_guild: 100,
    };
    let scheduler = scheduler(recorder.clone(), 10, limits, &Metrics::new().unwrap());
    for ch in 0..40u64 {
        let r = scheduler.reserve(ch, Some(1)).unwrap();
        scheduler.start(
            r,
            CountdownSpec {
                task_id: ch as i64,
                channel_id: ch,
                guild_id: Some(1),
                user_id: 1,
                target: 1000,
                next: 1,
                first_due: Instant::now(),
                check: None,
                asked_at: None,
            },
        );
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let delivered = recorder.delivered.lock().unwrap();
    let mut per_channel = [0usize; 40];
    for (_, ch, _) in delivered.iter() {
        per_channel[*ch as usize] += 1;
    }
    let (min, max) = (
        *per_channel.iter().min().unwrap(),
        *per_channel.iter().max().unwrap(),
    );
    // 10 at once, then 10 per 1.02 s (`pacer::GLOBAL_MARGIN`) for the
    // rest of the 60 s, shared by 40 channels: 14 or 15 each.
    assert!(
        delivered.len() >= 585 && delivered.len() <= 595,
        "{}",
        delivered.len()
    );
    assert!(max - min <= 1, "unfair: min {min}, max {max}");
}

/// A sink whose first answer is Discord's copy of a message posted `age` ago.
struct AlreadyPosted {
    inner: Recorder,
    age: Duration,
    answered: Mutex<bool>,
}

#[async_trait]
impl MessageSink for AlreadyPosted {
    async fn post(&self, channel_id: u64, message: &Outgoing) -> Result<Delivered, SendError> {
        let mut delivered = self.inner.post(channel_id, message).await?;
        let mut answered = self.answered.lock().unwrap();
        if !*answered {
            *answered = true;
            delivered.age = Some(self.age);
        }
        Ok(delivered)
    }

    async fn list_after(&self, channel_id: u64, after: u64) -> Result<Vec<Listed>, SendError> {
        self.inner.list_after(channel_id, after).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_resent_number_already_posted_is_not_followed_by_a_burst() {
    let sink = Arc::new(AlreadyPosted {
        inner: Recorder::default(),
        age: Duration::from_millis(1500),
        answered: Mutex::new(false),
    });
    let scheduler = scheduler(sink.clone(), 50, LIMITS, &Metrics::new().unwrap());
    let t0 = Instant::now();
    // Resumed at 3 (behind schedule, so due now); Discord already has 3,
    // posted 1.5 s ago. Its request counted in the channel's bucket like
    // any other: 4 goes a second after it and 5 a second later, as in a
    // fresh countdown, not 4 at once and 5 half a second later.
    let r = scheduler.reserve_for_resume(10, Some(1)).unwrap();
    scheduler.start(
        r,
        CountdownSpec {
            task_id: 1,
            channel_id: 10,
            guild_id: Some(1),
            user_id: 1,
            target: 5,
            next: 3,
            first_due: Instant::now(),
            check: None,
            asked_at: None,
        },
    );
    while scheduler.active() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let times: Vec<u128> = sink
        .inner
        .delivered
        .lock()
        .unwrap()
        .iter()
        .map(|(t, _, _)| (*t - t0).as_millis())
        .collect();
    assert_eq!(times, vec![0, 1000, 2000]);
}

/// Many `stop`s at once (gateway events are handled concurrently): one
/// reports the stop, the others find nothing left to stop.
#[tokio::test(start_paused = true)]
async fn concurrent_stops_report_the_stop_once() {
    let h = harness(LIMITS);
    *h.recorder.latency.lock().unwrap() = Duration::from_millis(300);
    h.start(7, 10, 100);
    // Number 2 is in flight: the stops wait for it to finish.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stops: Vec<_> = (0..10)
        .map(|_| {
            let scheduler = h.scheduler.clone();
            tokio::spawn(async move { scheduler.stop(10).await })
        })
        .collect();
    let mut reported = Vec::new();
    for stop in stops {
        if let Some(stopped) = stop.await.unwrap() {
            reported.push(stopped);
        }
    }
    assert_eq!(
        reported,
        vec![Stopped {
            task_id: 7,
            last_sent: 2,
            target: 100
        }]
    );
    assert_eq!(h.metrics.finished.with_label_values(&["stopped"]).get(), 1);
}

/// A 429 at the edge of a channel's bucket (the request arrived a few ms
/// early at Discord) costs its few milliseconds: the refused request gives
/// its pacer slot back instead of holding a place in the bucket for 5 s.
#[tokio::test(start_paused = true)]
async fn a_429_at_the_bucket_edge_costs_milliseconds_not_a_second() {
    let h = harness(LIMITS);
    let mut script = vec![Ok(()); 5];
    script.push(Err(SendError::RateLimited {
        retry_after: Duration::from_millis(2),
        global: false,
    }));
    h.recorder.script.lock().unwrap().extend(script);
    h.start(1, 10, 7);
    h.until_idle().await;
    // The 6th goes again 2 ms later; the 7th is on time.
    assert_eq!(h.send_times(10)[5..], [(6, 5002), (7, 6000)]);
    assert_eq!(h.metrics.edge_races.get(), 1, "counted as an edge race");
}

/// Discord's answer to number 5 (`Remaining: 0`, `Reset-After`) says the
/// channel's window opened `opened_late` after number 1 left (it arrived
/// that late): number 6 waits for the window. Returns when numbers 5 to 8
/// went out, with a global budget of `rate` per second.
async fn countdown_with_a_late_window(rate: u32, opened_late: Duration) -> Vec<(u16, u128)> {
    let h = harness_at(rate, LIMITS);
    let mut answers = vec![Delivered::default(); 4];
    answers.push(Delivered {
        remaining: Some(0),
        reset_after: Some(Duration::from_secs(1) + opened_late),
        ..Delivered::default()
    });
    h.recorder.answers.lock().unwrap().extend(answers);
    h.start(1, 10, 8);
    h.until_idle().await;
    h.send_times(10)[4..].to_vec()
}

/// The window opened well after number 1's slot and the global budget is
/// busy (here: all of it is this countdown's): number 6 goes when the window
/// lets it, and the rest follow it, one second apart, instead of two numbers
/// of the channel crowding one rolling second of the budget.
#[tokio::test(start_paused = true)]
async fn a_number_the_window_held_back_moves_the_rest_when_the_budget_is_busy() {
    let sent = countdown_with_a_late_window(1, Duration::from_millis(20)).await;
    assert_eq!(sent, [(5, 4000), (6, 5020), (7, 6020), (8, 7020)]);
}

/// With room in the budget, the held number alone is late.
#[tokio::test(start_paused = true)]
async fn with_room_in_the_budget_only_the_held_number_is_late() {
    let sent = countdown_with_a_late_window(50, Duration::from_millis(20)).await;
    assert_eq!(sent, [(5, 4000), (6, 5020), (7, 6000), (8, 7000)]);
}

/// A window's edge a millisecond or two off is jitter: that number waits
/// for it, the schedule stays.
#[tokio::test(start_paused = true)]
async fn a_window_edge_a_few_ms_late_keeps_the_schedule() {
    let sent = countdown_with_a_late_window(50, Duration::from_millis(2)).await;
    assert_eq!(sent, [(5, 4000), (6, 5002), (7, 6000), (8, 7000)]);
}

/// Number 1 went out late (here: one failed attempt, retried after
/// 250 ms): the countdown counts from when 1 went, not from when it was
/// asked for, so 2 comes one second after 1, as the channel shows them.
#[tokio::test(start_paused = true)]
async fn the_schedule_counts_from_number_one() {
    let h = harness(LIMITS);
    h.recorder
        .script
        .lock()
        .unwrap()
        .push_back(Err(SendError::Server { status: 503 }));
    h.start(1, 10, 3);
    h.until_idle().await;
    assert_eq!(h.send_times(10), [(1, 250), (2, 1250), (3, 2250)]);
}

/// A stop that its caller's check refuses (the stop policy, a button of
/// another countdown) leaves the countdown running; an accepted one is
/// requested at once and waited for separately (an interaction answers
/// before the countdown's task has ended).
#[tokio::test(start_paused = true)]
async fn a_refused_stop_request_changes_nothing() {
    let h = harness(LIMITS);
    h.start(7, 10, 100);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let other_task = h.scheduler.request_stop(10, |spec| {
        if spec.task_id == 6 {
            Ok(())
        } else {
            Err("another countdown")
        }
    });
    assert!(matches!(
        other_task,
        Err(StopRefused::Check("another countdown"))
    ));
    assert!(matches!(
        h.scheduler.request_stop(11, |_| Ok::<(), ()>(())),
        Err(StopRefused::NotCounting)
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(h.send_times(10).len(), 3, "still counting");

    let pending = h
        .scheduler
        .request_stop(10, |spec| if spec.task_id == 7 { Ok(()) } else { Err(()) })
        .ok()
        .unwrap();
    assert_eq!(pending.task_id(), 7);
    assert!(
        h.scheduler.request_stop(10, |_| Ok::<(), ()>(())).is_err(),
        "a second stop finds it stopping"
    );
    let stopped = pending.wait().await;
    assert_eq!((stopped.task_id, stopped.last_sent), (7, 3));
    assert_eq!(h.metrics.finished.with_label_values(&["stopped"]).get(), 1);
}

/// Number 6 was confirmed; 7 and 8 reached the channel before the bot went
/// away, longer ago than the nonce window; a person typed "7" meanwhile.
/// The resume reads the channel, skips 7 and 8 (not the person's "7"), and
/// goes on with 9 at once (8 is long past) and one a second after it.
#[tokio::test(start_paused = true)]
async fn a_resume_past_the_nonce_window_skips_its_own_numbers_already_there() {
    let h = harness(LIMITS);
    let base = snowflake_at(chrono::Utc::now() - chrono::Duration::minutes(10));
    h.recorder.history.lock().unwrap().extend([
        listed(base, BOT, "6"),
        listed(base + 1, 4242, "7"),
        listed(base + 2, BOT, "7"),
        listed(base + 3, BOT, "8"),
    ]);
    h.resume(1, 10, 7, 11, base);
    h.until_idle().await;
    assert_eq!(h.send_times(10), vec![(9, 0), (10, 1000), (11, 2000)]);
    assert_eq!(h.metrics.finished.with_label_values(&["finished"]).get(), 1);
}

/// The number after the last one found is due one second after it was
/// posted, as a fresh countdown's would be.
#[tokio::test(start_paused = true)]
async fn after_the_numbers_found_the_next_is_due_a_second_after_the_last() {
    let h = harness(LIMITS);
    let last = snowflake_at(chrono::Utc::now() - chrono::Duration::milliseconds(300));
    h.recorder
        .history
        .lock()
        .unwrap()
        .push(listed(last, BOT, "4"));
    h.resume(1, 10, 4, 5, last - 1);
    h.until_idle().await;
    let sent = h.send_times(10);
    assert_eq!(sent.len(), 1, "{sent:?}");
    // 700 ms, less the real time the test took between the two clocks.
    assert!(
        sent[0].0 == 5 && (680..=700).contains(&sent[0].1),
        "{sent:?}"
    );
}

/// Every number is in the channel already: the countdown ends as finished
/// without sending anything.
#[tokio::test(start_paused = true)]
async fn a_resume_that_finds_every_number_sends_nothing() {
    let h = harness(LIMITS);
    let base = snowflake_at(chrono::Utc::now() - chrono::Duration::minutes(10));
    h.recorder
        .history
        .lock()
        .unwrap()
        .extend((1..=3u16).map(|k| listed(base + u64::from(k), BOT, &k.to_string())));
    h.resume(1, 10, 2, 3, base + 1);
    h.until_idle().await;
    assert!(h.send_times(10).is_empty());
    assert_eq!(h.metrics.finished.with_label_values(&["finished"]).get(), 1);
}

/// A channel the bot can no longer read fails the countdown at once: no
/// number, no retry.
#[tokio::test(start_paused = true)]
async fn a_resume_whose_channel_cannot_be_read_fails_without_sending() {
    let h = harness(LIMITS);
    *h.recorder.listing_fails.lock().unwrap() = Some(SendError::Rejected {
        status: 403,
        message: "Missing Access".into(),
    });
    h.resume(1, 10, 3, 9, 1);
    h.until_idle().await;
    assert!(h.send_times(10).is_empty());
    assert_eq!(h.metrics.finished.with_label_values(&["failed"]).get(), 1);
    assert_eq!(*h.recorder.attempts.lock().unwrap(), 0);
}

/// A window out of step with the schedule by far more than jitter (opened
/// by requests this process does not know of, such as the ones before a
/// restart) moves the schedule once, even with room in the budget: number 6
/// waits for it, and the rest follow it a second apart, so the next window
/// opens on the schedule instead of holding every fifth number back again.
#[tokio::test(start_paused = true)]
async fn a_window_out_of_step_moves_the_schedule_once() {
    let sent = countdown_with_a_late_window(50, Duration::from_millis(400)).await;
    assert_eq!(sent, [(5, 4000), (6, 5400), (7, 6400), (8, 7400)]);
}
