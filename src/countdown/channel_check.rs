//! Past the nonce window: what a resumed countdown finds in its channel.
//!
//! Discord deduplicates an enforced nonce only for a few minutes. A
//! countdown resumed later than that (a long downtime, a late failover)
//! cannot rely on it for the number that was in flight when the bot went
//! away, nor for numbers whose progress was never written. So before it
//! sends anything it lists its channel's messages after its last known
//! message and skips every number of its own already there.
//!
//! Its own numbers are the bot's messages whose content is exactly the next
//! number expected, in order, after the anchor. Messages of people, other
//! bots, the bot's replies, and numbers out of sequence are not. When no
//! message of the countdown is known yet (nothing confirmed), the anchor is
//! a moment before the countdown was created, and its number `1` must carry
//! the countdown's own Stop button: an older countdown's `1` in the same
//! channel carries another task id.
//!
//! One request per resumed countdown (a page of 100 messages); a channel
//! busier than that since the anchor takes a page more per 100 messages.

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::send::{Delivery, DeliveryError, Listed, PAGE};

/// Discord's epoch (2015-01-01T00:00:00Z) in Unix milliseconds.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// Pages read at most: 100 pages are 10,000 messages in the channel since
/// the countdown's last known number. Beyond that the countdown goes on
/// from what it found, and says so in the log.
const MAX_PAGES: usize = 100;

/// What the check needs to know (see [`super::CountdownSpec::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeCheck {
    /// List the messages after this one: the countdown's last known message,
    /// or a snowflake of a moment before any of its numbers.
    pub after: u64,
    /// The bot's own user id: only its messages can be numbers.
    pub bot_user_id: u64,
}

/// The last of the countdown's numbers found in the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub k: u16,
    pub message_id: u64,
}

impl Found {
    /// When Discord created the message.
    pub fn posted_at(&self) -> DateTime<Utc> {
        time_of(self.message_id)
    }
}

/// Walks a channel's history, oldest first, matching the countdown's numbers.
#[derive(Debug, Clone)]
pub struct Scan {
    bot_user_id: u64,
    task_id: i64,
    expect: u16,
    target: u16,
    found: Option<Found>,
}

impl Scan {
    /// A scan for countdown `task_id`, whose next number would be `next`.
    pub fn new(bot_user_id: u64, task_id: i64, next: u16, target: u16) -> Self {
        Scan {
            bot_user_id,
            task_id,
            expect: next,
            target,
            found: None,
        }
    }

    /// Reads the next messages (oldest first).
    pub fn feed(&mut self, page: &[Listed]) {
        for m in page {
            if self.is_complete() {
                return;
            }
            if m.author_id != self.bot_user_id || m.content != self.expect.to_string() {
                continue;
            }
            if self.expect == 1 && m.stop_button_of != Some(self.task_id) {
                continue;
            }
            self.found = Some(Found {
                k: self.expect,
                message_id: m.id,
            });
            self.expect += 1;
        }
    }

    /// Every number up to the target is there.
    pub fn is_complete(&self) -> bool {
        self.expect > self.target
    }

    pub fn found(&self) -> Option<Found> {
        self.found
    }
}

/// Lists the channel after `check.after` and returns the last of the
/// countdown's numbers already posted there, if any.
pub async fn run(
    delivery: &Delivery,
    channel_id: u64,
    check: ResumeCheck,
    mut scan: Scan,
    cancel: &CancellationToken,
) -> Result<Option<Found>, DeliveryError> {
    let mut after = check.after;
    for _ in 0..MAX_PAGES {
        let page = delivery.list_after(channel_id, after, cancel).await?;
        scan.feed(&page);
        match page.last() {
            Some(last) if page.len() >= PAGE && !scan.is_complete() => after = last.id,
            _ => return Ok(scan.found()),
        }
    }
    tracing::warn!(
        pages = MAX_PAGES,
        "the channel holds more messages since the countdown's last known number than a resume reads; going on from what was found"
    );
    Ok(scan.found())
}

/// The smallest snowflake of a message created at `at` or later.
pub fn snowflake_at(at: DateTime<Utc>) -> u64 {
    let ms = (at.timestamp_millis() - DISCORD_EPOCH_MS).max(0);
    (ms as u64) << 22
}

/// When the message with snowflake `id` was created.
pub fn time_of(id: u64) -> DateTime<Utc> {
    let ms = (id >> 22) as i64 + DISCORD_EPOCH_MS;
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOT: u64 = 7;
    const TASK: i64 = 42;

    fn bot(id: u64, content: &str) -> Listed {
        Listed {
            id,
            author_id: BOT,
            content: content.into(),
            stop_button_of: None,
        }
    }

    fn person(id: u64, content: &str) -> Listed {
        Listed {
            author_id: 99,
            ..bot(id, content)
        }
    }

    fn one_of(id: u64, task: i64) -> Listed {
        Listed {
            stop_button_of: Some(task),
            ..bot(id, "1")
        }
    }

    fn scan(next: u16, target: u16, pages: &[&[Listed]]) -> Option<Found> {
        let mut s = Scan::new(BOT, TASK, next, target);
        for p in pages {
            s.feed(p);
        }
        s.found()
    }

    #[test]
    fn the_numbers_after_the_last_known_one_are_found_in_order() {
        let page = [bot(10, "8"), person(11, "hi"), bot(12, "9")];
        assert_eq!(
            scan(8, 20, &[&page]),
            Some(Found {
                k: 9,
                message_id: 12
            })
        );
    }

    #[test]
    fn a_number_typed_by_a_person_is_not_the_countdowns() {
        let page = [person(10, "8"), person(11, "9")];
        assert_eq!(scan(8, 20, &[&page]), None);
        let page = [person(10, "8"), bot(11, "8")];
        assert_eq!(scan(8, 20, &[&page]).map(|f| f.message_id), Some(11));
    }

    #[test]
    fn numbers_out_of_sequence_and_replies_are_skipped() {
        let page = [bot(10, "3"), bot(11, "Stopped at 7 of 20."), bot(12, "8")];
        assert_eq!(scan(8, 20, &[&page]).map(|f| f.k), Some(8));
    }

    #[test]
    fn number_one_counts_only_with_the_countdowns_own_button() {
        // An older countdown's 1, 2, 3 in the same channel, then ours.
        let page = [
            one_of(10, 41),
            bot(11, "2"),
            bot(12, "3"),
            one_of(20, TASK),
            bot(21, "2"),
        ];
        assert_eq!(
            scan(1, 5, &[&page]),
            Some(Found {
                k: 2,
                message_id: 21
            })
        );
        assert_eq!(scan(1, 5, &[&[bot(10, "1"), bot(11, "2")]]), None);
    }

    #[test]
    fn the_scan_stops_at_the_target_and_carries_over_pages() {
        let first = [bot(10, "4")];
        let second = [bot(20, "5"), bot(21, "6")];
        let mut s = Scan::new(BOT, TASK, 4, 5);
        s.feed(&first);
        assert!(!s.is_complete());
        s.feed(&second);
        assert!(s.is_complete());
        assert_eq!(s.found().map(|f| f.k), Some(5));
    }

    #[test]
    fn snowflakes_and_times_agree() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T12:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = snowflake_at(at);
        assert_eq!(time_of(id), at);
        assert_eq!(time_of(id | 0x3f_ffff), at, "the low 22 bits are not time");
        // Discord's documented example: 175928847299117063 is 2016-04-30 11:18:25.796 UTC.
        assert_eq!(
            time_of(175_928_847_299_117_063).timestamp_millis(),
            1_462_015_105_796
        );
    }
}
