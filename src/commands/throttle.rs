//! The reply budget: how many refusals, usage answers and "try again"s the
//! bot sends, so that spam cannot turn into a reply storm.
//!
//! Without it every command got its answer: 100 commands a second in one
//! channel queued 100 replies behind that channel's bucket (5 posts per
//! 5 s), which kept posting for minutes after the spam stopped and, in a
//! counting channel, pushed the numbers back by a second per reply (tested
//! in `tests/faults_abuse.rs`).
//!
//! - A channel gets at most [`PER_CHANNEL`] answers in any [`WINDOW`].
//! - The bot sends at most half of what the running countdowns leave of
//!   `GLOBAL_RATE` (each takes one request a second) in answers a second,
//!   and at least [`MIN_PER_SECOND`]: answers never delay a number, whether
//!   one spammer or many channels at once ask for them, and the other half
//!   stays free for serenity's own requests (the gateway's URL at each
//!   reconnect) and Discord's clock. With the defaults (`GLOBAL_RATE` 50,
//!   `MAX_ACTIVE` 40) that is 5 a second at full load, 25 when idle.
//!
//! A command over the budget is carried out, counted and journalled as
//! usual; only its answer is dropped (and counted in
//! `countdown_replies_suppressed_total`). Dropping rather than queueing is
//! the point: a queue would be the storm, later. A stop confirmation is not
//! limited: there is at most one per countdown.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Answers one channel may get within [`WINDOW`].
pub const PER_CHANNEL: usize = 3;
pub const WINDOW: Duration = Duration::from_secs(10);
/// Answers the bot may always send per second, all channels together.
pub const MIN_PER_SECOND: usize = 5;

#[derive(Default)]
pub struct ReplyBudget {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    channels: HashMap<u64, VecDeque<Instant>>,
    global: VecDeque<Instant>,
    checks: u64,
}

/// Drops the entries of `recent` older than `period` before `now`.
fn expire(recent: &mut VecDeque<Instant>, now: Instant, period: Duration) {
    while recent.front().is_some_and(|&t| t + period <= now) {
        recent.pop_front();
    }
}

impl ReplyBudget {
    /// Whether an answer may go to `channel_id` now, with at most
    /// `per_second` answers a second in all; if so, it is counted.
    pub fn admit(&self, channel_id: u64, per_second: usize) -> bool {
        let per_second = per_second.max(MIN_PER_SECOND);
        let now = Instant::now();
        let mut state = self.state.lock().expect("reply budget poisoned");
        state.checks += 1;
        if state.checks % 1024 == 0 {
            state.channels.retain(|_, recent| {
                expire(recent, now, WINDOW);
                !recent.is_empty()
            });
        }
        expire(&mut state.global, now, Duration::from_secs(1));
        if state.global.len() >= per_second {
            return false;
        }
        let recent = state.channels.entry(channel_id).or_default();
        expire(recent, now, WINDOW);
        if recent.len() >= PER_CHANNEL {
            return false;
        }
        recent.push_back(now);
        state.global.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_channel_gets_three_answers_per_ten_seconds() {
        let budget = ReplyBudget::default();
        let admitted = (0..100).filter(|_| budget.admit(1, 50)).count();
        assert_eq!(admitted, PER_CHANNEL);
        assert!(budget.admit(2, 50), "other channels are not affected");
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!budget.admit(1, 50));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            (0..100).filter(|_| budget.admit(1, 50)).count(),
            PER_CHANNEL
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_bot_answers_within_what_the_countdowns_leave() {
        let budget = ReplyBudget::default();
        let admitted = (0..50u64).filter(|ch| budget.admit(*ch, 10)).count();
        assert_eq!(admitted, 10);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let admitted = (50..100u64).filter(|ch| budget.admit(*ch, 30)).count();
        assert_eq!(admitted, 30);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let admitted = (100..150u64).filter(|ch| budget.admit(*ch, 0)).count();
        assert_eq!(admitted, MIN_PER_SECOND, "never nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn idle_channels_are_forgotten() {
        let budget = ReplyBudget::default();
        for ch in 0..2000u64 {
            budget.admit(ch, 50);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let kept = budget.state.lock().unwrap().channels.len();
        assert!(kept <= 1024 + 100, "{kept} channels kept");
    }
}
