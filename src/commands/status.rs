//! `status` (mention, DM or `/status`): what is counting in a channel, as
//! text. Pure: the caller takes a snapshot of the running countdown and the
//! wall clock; this turns them into the answer.

/// A running countdown as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub task_id: i64,
    /// Who started it.
    pub starter: u64,
    pub target: u16,
    /// The last number delivered (0 before the first).
    pub last_sent: u16,
}

impl Snapshot {
    /// When the last number is expected, in Unix seconds: one number a
    /// second from now on (the next one is due within a second).
    pub fn expected_end(&self, now_unix: i64) -> i64 {
        now_unix + i64::from(self.target.saturating_sub(self.last_sent))
    }
}

/// The answer to `status`. `<@id>` renders as the user's name; it pings
/// nobody, since every message goes out with `allowed_mentions` empty.
/// `<t:…:R>` is a Discord timestamp ("in 13 seconds"), shown in each
/// reader's own time zone.
pub fn text(snapshot: Option<Snapshot>, now_unix: i64) -> String {
    match snapshot {
        None => super::replies::not_counting(),
        Some(s) => format!(
            "<@{}> started a countdown to {} here: at {} of {}, done <t:{}:R>.",
            s.starter,
            s.target,
            s.last_sent,
            s.target,
            s.expected_end(now_unix)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_channel() {
        assert_eq!(text(None, 1_000), "Nothing is counting here.");
    }

    #[test]
    fn running_countdown_names_starter_progress_and_end() {
        let s = Snapshot {
            task_id: 3,
            starter: 42,
            target: 20,
            last_sent: 7,
        };
        assert_eq!(
            text(Some(s), 1_000),
            "<@42> started a countdown to 20 here: at 7 of 20, done <t:1013:R>."
        );
    }

    #[test]
    fn the_end_never_lies_in_the_past() {
        let s = Snapshot {
            task_id: 3,
            starter: 42,
            target: 5,
            last_sent: 5,
        };
        assert_eq!(s.expected_end(1_000), 1_000);
    }
}
