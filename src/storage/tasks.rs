//! The queries, one function each, all parameterised. Batch writes take
//! arrays (`unnest`) so a flush is one round trip per kind of row, however
//! many countdowns are running.

use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio_postgres::error::SqlState;
use tokio_postgres::GenericClient;
use tokio_postgres::Row;

use super::{db_id, StorageError};

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

impl TaskRow {
    fn from_row(row: &Row) -> Result<Self, tokio_postgres::Error> {
        Ok(TaskRow {
            id: row.try_get("id")?,
            channel_id: row.try_get::<_, i64>("channel_id")? as u64,
            guild_id: row.try_get::<_, Option<i64>>("guild_id")?.map(|g| g as u64),
            user_id: row.try_get::<_, i64>("user_id")? as u64,
            // The table's CHECKs keep both within 0..=9999.
            target: row.try_get::<_, i32>("target")?.clamp(0, 9999) as u16,
            last_sent: row.try_get::<_, i32>("last_sent")?.clamp(0, 9999) as u16,
            last_message_id: row
                .try_get::<_, Option<i64>>("last_message_id")?
                .map(|m| m as u64),
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
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

const COLUMNS: &str =
    "id, channel_id, guild_id, user_id, target, last_sent, last_message_id, created_at, updated_at";

/// Writes the row that admits a countdown. A countdown already `running` in
/// the channel makes this [`StorageError::ChannelBusy`].
pub async fn insert(pool: &Pool, task: &NewTask) -> Result<TaskRow, StorageError> {
    let client = pool.get().await?;
    let sql = format!(
        "INSERT INTO tasks (channel_id, guild_id, user_id, target, source) \
         VALUES ($1, $2, $3, $4, $5) RETURNING {COLUMNS}"
    );
    let row = client
        .query_one(
            &sql,
            &[
                &db_id(task.channel_id),
                &task.guild_id.map(db_id),
                &db_id(task.user_id),
                &i32::from(task.target),
                &task.source,
            ],
        )
        .await
        .map_err(|e| {
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                StorageError::ChannelBusy
            } else {
                StorageError::Query(e)
            }
        })?;
    Ok(TaskRow::from_row(&row)?)
}

/// Marks `running` rows idle for longer than `max_age` as `expired`; returns them.
pub async fn expire_idle(pool: &Pool, max_age: Duration) -> Result<Vec<TaskRow>, StorageError> {
    let client = pool.get().await?;
    let sql = format!(
        "UPDATE tasks SET status = 'expired', finished_at = now(), updated_at = now() \
         WHERE status = 'running' AND updated_at < now() - make_interval(secs => $1) \
         RETURNING {COLUMNS}"
    );
    let rows = client.query(&sql, &[&max_age.as_secs_f64()]).await?;
    Ok(rows
        .iter()
        .map(TaskRow::from_row)
        .collect::<Result<_, _>>()?)
}

/// Every countdown still `running`.
pub async fn running(pool: &Pool) -> Result<Vec<TaskRow>, StorageError> {
    let client = pool.get().await?;
    let sql = format!("SELECT {COLUMNS} FROM tasks WHERE status = 'running' ORDER BY id");
    let rows = client.query(&sql, &[]).await?;
    Ok(rows
        .iter()
        .map(TaskRow::from_row)
        .collect::<Result<_, _>>()?)
}

/// Holds when `$n` (the writer's leader epoch) is still the current one, or
/// the writer is not fenced (`NULL`).
macro_rules! fenced {
    ($n:literal) => {
        concat!(
            "($",
            $n,
            "::bigint IS NULL OR $",
            $n,
            " = (SELECT epoch FROM leader_state WHERE id))"
        )
    };
}

/// Progress of running countdowns. Never moves `last_sent` backwards.
/// Prepared once per connection: the journal runs it four times a second,
/// and a prepare and a close each cost a round trip.
pub async fn write_progress(
    client: &deadpool_postgres::Client,
    epoch: Option<i64>,
    ids: &[i64],
    last_sent: &[i32],
    message_ids: &[Option<i64>],
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(concat!(
            "UPDATE tasks SET last_sent = GREATEST(tasks.last_sent, p.k), \
                 last_message_id = CASE WHEN p.k >= tasks.last_sent \
                     THEN COALESCE(p.m, tasks.last_message_id) ELSE tasks.last_message_id END, \
                 updated_at = now() \
                 FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS p(id, k, m) \
                 WHERE tasks.id = p.id AND tasks.status = 'running' AND ",
            fenced!(4)
        ))
        .await?;
    client
        .execute(&statement, &[&ids, &last_sent, &message_ids, &epoch])
        .await?;
    Ok(())
}

/// Final states of countdowns that ended (prepared once per connection).
pub async fn write_ends(
    client: &deadpool_postgres::Client,
    epoch: Option<i64>,
    ids: &[i64],
    statuses: &[&str],
    last_sent: &[i32],
) -> Result<(), tokio_postgres::Error> {
    let statement = client
        .prepare_cached(concat!(
            "UPDATE tasks SET status = e.status, last_sent = GREATEST(tasks.last_sent, e.k), \
                        finished_at = now(), updated_at = now() \
                 FROM unnest($1::bigint[], $2::text[], $3::int[]) AS e(id, status, k) \
                 WHERE tasks.id = e.id AND tasks.status = 'running' AND ",
            fenced!(4)
        ))
        .await?;
    client
        .execute(&statement, &[&ids, &statuses, &last_sent, &epoch])
        .await?;
    Ok(())
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

/// Longest command text kept in `command_errors.content`, in characters.
pub const CONTENT_LIMIT: usize = 200;

/// Text PostgreSQL accepts: `text` cannot hold a NUL character, and a user
/// can put one in a message (`count to 5\u{0}`). Without this the journal's
/// batch of error rows would be refused at every retry (tested in
/// `tests/faults_input.rs`).
pub fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

pub async fn insert_command_errors(
    client: &impl GenericClient,
    rows: &[CommandError],
) -> Result<(), tokio_postgres::Error> {
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind).collect();
    let channels: Vec<i64> = rows.iter().map(|r| db_id(r.channel_id)).collect();
    let guilds: Vec<Option<i64>> = rows.iter().map(|r| r.guild_id.map(db_id)).collect();
    let users: Vec<Option<i64>> = rows.iter().map(|r| r.user_id.map(db_id)).collect();
    let contents: Vec<Option<String>> = rows
        .iter()
        .map(|r| {
            r.content
                .as_ref()
                .map(|c| pg_text(c).chars().take(CONTENT_LIMIT).collect())
        })
        .collect();
    let errors: Vec<String> = rows.iter().map(|r| pg_text(&r.error)).collect();
    let task_ids: Vec<Option<i64>> = rows.iter().map(|r| r.task_id).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    client
        .execute(
            "INSERT INTO command_errors \
                 (kind, channel_id, guild_id, user_id, content, error, task_id, created_at) \
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], \
                                  $5::text[], $6::text[], $7::bigint[], $8::timestamptz[])",
            &[
                &kinds, &channels, &guilds, &users, &contents, &errors, &task_ids, &ats,
            ],
        )
        .await?;
    Ok(())
}

/// A `general_errors` row.
#[derive(Debug, Clone)]
pub struct GeneralError {
    pub context: &'static str,
    pub error: String,
    pub at: DateTime<Utc>,
}

pub async fn insert_general_errors(
    client: &impl GenericClient,
    rows: &[GeneralError],
) -> Result<(), tokio_postgres::Error> {
    let contexts: Vec<&str> = rows.iter().map(|r| r.context).collect();
    let errors: Vec<String> = rows.iter().map(|r| pg_text(&r.error)).collect();
    let ats: Vec<DateTime<Utc>> = rows.iter().map(|r| r.at).collect();
    client
        .execute(
            "INSERT INTO general_errors (context, error, created_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[])",
            &[&contexts, &errors, &ats],
        )
        .await?;
    Ok(())
}
