//! [`PgStore`]: the [`TaskStore`] of PostgreSQL, over the connection pool.
//! Every query is parameterised; the journal's writes take arrays
//! (`unnest`) so a flush is one round trip per kind of row, however many
//! countdowns are running.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::{GenericClient, Row};

use super::store::{
    Batch, CommandError, GeneralError, NewTask, Refused, TaskRow, TaskStore, Written,
};
use super::{db_id, StorageError};
use crate::config::{ConfigError, DatabaseSettings};

/// How long a query may wait for a connection before the database counts as down.
const CONNECTION_WAIT: Duration = Duration::from_secs(2);

/// A pool whose connections fail fast when the database is down, so a
/// command gets its "try again" reply in seconds, not minutes.
pub fn pool(settings: &DatabaseSettings) -> Result<Pool, ConfigError> {
    let mut pg = settings.pg_config()?;
    pg.connect_timeout(CONNECTION_WAIT)
        .application_name("countdown");
    let manager = Manager::from_config(
        pg,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Verified,
        },
    );
    Pool::builder(manager)
        .max_size(8)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECTION_WAIT))
        .create_timeout(Some(CONNECTION_WAIT))
        .recycle_timeout(Some(CONNECTION_WAIT))
        .build()
        .map_err(|e| ConfigError::Invalid {
            var: "DATABASE_URL",
            reason: e.to_string(),
        })
}

/// The tasks and error tables of PostgreSQL.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

impl PgStore {
    pub fn new(pool: Pool) -> Self {
        PgStore { pool }
    }
}

const COLUMNS: &str =
    "id, channel_id, guild_id, user_id, target, last_sent, last_message_id, created_at, updated_at";

fn task_row(row: &Row) -> Result<TaskRow, tokio_postgres::Error> {
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

fn task_rows(rows: &[Row]) -> Result<Vec<TaskRow>, StorageError> {
    Ok(rows.iter().map(task_row).collect::<Result<_, _>>()?)
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

#[async_trait]
impl TaskStore for PgStore {
    async fn insert_many(&self, tasks: &[NewTask]) -> Result<Vec<Option<TaskRow>>, StorageError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.pool.get().await?;
        // `ON CONFLICT DO NOTHING` without a target: the only unique index
        // a new row can break is `tasks_one_running_per_channel`, so a task
        // left out of the answer is one whose channel is busy. Rows are
        // inserted in the arrays' order, so of two tasks of one channel the
        // first wins.
        let sql = format!(
            "INSERT INTO tasks (channel_id, guild_id, user_id, target, source) \
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::text[]) \
             ON CONFLICT DO NOTHING RETURNING {COLUMNS}"
        );
        let statement = client.prepare_cached(&sql).await?;
        let channels: Vec<i64> = tasks.iter().map(|t| db_id(t.channel_id)).collect();
        let guilds: Vec<Option<i64>> = tasks.iter().map(|t| t.guild_id.map(db_id)).collect();
        let users: Vec<i64> = tasks.iter().map(|t| db_id(t.user_id)).collect();
        let targets: Vec<i32> = tasks.iter().map(|t| i32::from(t.target)).collect();
        let sources: Vec<&str> = tasks.iter().map(|t| t.source).collect();
        let rows = client
            .query(
                &statement,
                &[&channels, &guilds, &users, &targets, &sources],
            )
            .await?;
        let mut by_channel: HashMap<u64, TaskRow> = HashMap::with_capacity(rows.len());
        for row in &rows {
            let row = task_row(row)?;
            by_channel.insert(row.channel_id, row);
        }
        // Each row goes to the first task of its channel.
        Ok(tasks
            .iter()
            .map(|t| by_channel.remove(&t.channel_id))
            .collect())
    }

    async fn expire_idle(&self, max_age: Duration) -> Result<Vec<TaskRow>, StorageError> {
        let client = self.pool.get().await?;
        let sql = format!(
            "UPDATE tasks SET status = 'expired', finished_at = now(), updated_at = now() \
             WHERE status = 'running' AND updated_at < now() - make_interval(secs => $1) \
             RETURNING {COLUMNS}"
        );
        task_rows(&client.query(&sql, &[&max_age.as_secs_f64()]).await?)
    }

    async fn running(&self) -> Result<Vec<TaskRow>, StorageError> {
        let client = self.pool.get().await?;
        let sql = format!("SELECT {COLUMNS} FROM tasks WHERE status = 'running' ORDER BY id");
        task_rows(&client.query(&sql, &[]).await?)
    }

    /// One connection for the whole batch: a pooled connection is verified
    /// with a round trip each time it is taken.
    async fn write(&self, epoch: Option<i64>, batch: &Batch) -> Result<Written, StorageError> {
        let client = self.pool.get().await?;
        let mut written = Written::default();
        if !batch.general_errors.is_empty() {
            let rows = &batch.general_errors;
            let result = insert_general_errors(&**client, rows).await;
            unless_refused(result, "general_errors", rows.len(), &mut written)?;
        }
        if !batch.ends.is_empty() {
            write_ends(&client, epoch, batch).await?;
        }
        if !batch.progress.is_empty() {
            write_progress(&client, epoch, batch).await?;
        }
        if !batch.command_errors.is_empty() {
            let rows = &batch.command_errors;
            let result = insert_command_errors(&**client, rows).await;
            unless_refused(result, "command_errors", rows.len(), &mut written)?;
        }
        Ok(written)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        let client = self.pool.get().await?;
        client.simple_query("SELECT 1").await?;
        Ok(())
    }
}

/// Progress of running countdowns. Never moves `last_sent` backwards.
/// Prepared once per connection: the journal runs it four times a second,
/// and a prepare and a close each cost a round trip.
async fn write_progress(
    client: &deadpool_postgres::Client,
    epoch: Option<i64>,
    batch: &Batch,
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<i64> = batch.progress.keys().copied().collect();
    let last_sent: Vec<i32> = ids
        .iter()
        .map(|id| i32::from(batch.progress[id].last_sent))
        .collect();
    let message_ids: Vec<Option<i64>> = ids
        .iter()
        .map(|id| batch.progress[id].message_id.map(db_id))
        .collect();
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
async fn write_ends(
    client: &deadpool_postgres::Client,
    epoch: Option<i64>,
    batch: &Batch,
) -> Result<(), tokio_postgres::Error> {
    let ids: Vec<i64> = batch.ends.keys().copied().collect();
    let statuses: Vec<&str> = ids
        .iter()
        .map(|id| batch.ends[id].status.as_str())
        .collect();
    let last_sent: Vec<i32> = ids
        .iter()
        .map(|id| i32::from(batch.ends[id].last_sent))
        .collect();
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

/// Longest command text kept in `command_errors.content`, in characters.
pub const CONTENT_LIMIT: usize = 200;

/// Text PostgreSQL accepts: `text` cannot hold a NUL character, and a user
/// can put one in a message (`count to 5\u{0}`). Without this the journal's
/// batch of error rows would be refused at every retry (tested in
/// `tests/faults_input.rs`).
pub fn pg_text(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

async fn insert_command_errors(
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

async fn insert_general_errors(
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

/// Error rows refused for their content (SQLSTATE class 22, a data
/// exception, or 23, a broken constraint; e.g. a NUL byte that bypassed
/// [`pg_text`]) go into `written.refused`: the journal drops them rather
/// than retry them forever. Anything else is an outage: the error.
fn unless_refused(
    result: Result<(), tokio_postgres::Error>,
    table: &'static str,
    rows: usize,
    written: &mut Written,
) -> Result<(), StorageError> {
    let Err(error) = result else {
        return Ok(());
    };
    let refused = error
        .code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"));
    if !refused {
        return Err(error.into());
    }
    let reason = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |e| e.message().to_owned());
    written.refused.push(Refused {
        table,
        rows,
        reason,
    });
    Ok(())
}
