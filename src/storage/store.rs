//! The seam between the bot and its database: [`TaskStore`], what the
//! service asks of it, and the rows that cross it. [`super::PgStore`] is the
//! real one; the unit tests use an in-memory one.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StorageError;

/// What the bot needs from its database: admitting a countdown, the resume
/// queries, the journal's batched writes, and a liveness check.
///
/// Object-safe (`Arc<dyn TaskStore>`), like `MessageSink` on the Discord
/// side: the store sits behind the journal, the scheduler, the command
/// service and the resumer, and a type parameter would run through all of
/// them for a call that costs a network round trip anyway.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Writes the rows that admit countdowns, all in one round trip (a burst
    /// of commands is admitted together, see [`super::admissions`]):
    /// `running`, `last_sent = 0`, `created_at = now`. Answers, in order,
    /// each task's row, or `None` when a countdown is already `running` in
    /// its channel: "one per channel" is the store's rule too, not only the
    /// scheduler's (of two tasks of one channel in a batch, the first
    /// wins). Any other failure fails the whole batch.
    async fn insert_many(&self, tasks: &[NewTask]) -> Result<Vec<Option<TaskRow>>, StorageError>;

    /// [`TaskStore::insert_many`] of one task; a countdown already
    /// `running` in the channel makes this [`StorageError::ChannelBusy`].
    async fn insert(&self, task: &NewTask) -> Result<TaskRow, StorageError> {
        self.insert_many(std::slice::from_ref(task))
            .await?
            .pop()
            .flatten()
            .ok_or(StorageError::ChannelBusy)
    }

    /// Marks `running` rows idle for longer than `max_age` as `expired`;
    /// returns them.
    async fn expire_idle(&self, max_age: Duration) -> Result<Vec<TaskRow>, StorageError>;

    /// Every countdown still `running`, by id.
    async fn running(&self) -> Result<Vec<TaskRow>, StorageError>;

    /// Writes one flush of the journal, in this order: general errors
    /// (an outage's row first, so progress written after an outage always
    /// has it beside it), ends, progress, command errors. Ends and progress
    /// change only `running` rows, never move `last_sent` backwards, and
    /// land only while `epoch` is the current leader epoch (`None`:
    /// unfenced).
    ///
    /// Error rows the database refuses for their content would be refused
    /// again at every retry; they are left out and reported in the answer.
    /// Any other failure stops the write and is the error: the journal
    /// keeps the batch and tries again.
    async fn write(&self, epoch: Option<i64>, batch: &Batch) -> Result<Written, StorageError>;

    /// `Ok` when the database answers.
    async fn ping(&self) -> Result<(), StorageError>;
}

/// Final state of a countdown (`running` is the only non-final one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskStatus {
    Running,
    Finished,
    Stopped,
    Failed,
    Expired,
}

impl TaskStatus {
    /// The statuses a countdown ends with.
    pub const FINAL: [TaskStatus; 4] = [
        TaskStatus::Finished,
        TaskStatus::Stopped,
        TaskStatus::Failed,
        TaskStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Running => "running",
            TaskStatus::Finished => "finished",
            TaskStatus::Stopped => "stopped",
            TaskStatus::Failed => "failed",
            TaskStatus::Expired => "expired",
        }
    }
}

/// A `count to` about to be admitted.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub user_id: u64,
    pub target: u16,
    /// `mention`, `dm` or `slash` (`tasks.source`).
    pub source: &'static str,
}

/// A countdown as stored.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: i64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub user_id: u64,
    pub target: u16,
    pub last_sent: u16,
    /// The message of number `last_sent`, when known.
    pub last_message_id: Option<u64>,
    pub created_at: DateTime<Utc>,
    /// The last progress or status change.
    pub updated_at: DateTime<Utc>,
}

/// The furthest a running countdown got. Ordered by number first, so the
/// later of two notes is the greater.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Progress {
    pub last_sent: u16,
    /// The message of number `last_sent`, if Discord said.
    pub message_id: Option<u64>,
}

/// How a countdown ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct End {
    pub status: TaskStatus,
    pub last_sent: u16,
}

/// A `command_errors` row.
#[derive(Debug, Clone)]
pub struct CommandError {
    pub kind: &'static str,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub user_id: Option<u64>,
    pub content: Option<String>,
    pub error: String,
    pub task_id: Option<i64>,
    pub at: DateTime<Utc>,
}

/// A `general_errors` row.
#[derive(Debug, Clone)]
pub struct GeneralError {
    pub context: &'static str,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// What one flush of the journal writes: per countdown its latest progress
/// or its end, and the error rows in the order they happened.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// task id → progress.
    pub progress: HashMap<i64, Progress>,
    /// task id → end.
    pub ends: HashMap<i64, End>,
    pub command_errors: Vec<CommandError>,
    pub general_errors: Vec<GeneralError>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.progress.is_empty()
            && self.ends.is_empty()
            && self.command_errors.is_empty()
            && self.general_errors.is_empty()
    }
}

/// What [`TaskStore::write`] left out: error rows the database refused for
/// their content (a data exception or a broken constraint, e.g. a
/// `task_id` whose task an operator deleted).
#[derive(Debug, Default)]
pub struct Written {
    pub refused: Vec<Refused>,
}

/// One table's rows of a batch, refused.
#[derive(Debug)]
pub struct Refused {
    pub table: &'static str,
    pub rows: usize,
    /// The database's reason.
    pub reason: String,
}
