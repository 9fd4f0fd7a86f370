//! The journal: everything the bot must record but must not wait for.
//!
//! Countdowns note their progress here (a map write, no I/O) and a
//! background loop writes it in batches, so a slow or absent database never
//! delays a number. While the database is down, rows wait here (bounded) and
//! are written once it is back; the outage itself is logged once when it
//! starts, once when it ends, and recorded in `general_errors`.

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::tasks::{self, CommandError, GeneralError, TaskStatus};
use super::StorageError;
use crate::metrics::Metrics;

/// Error rows kept while the database is down; beyond this the oldest go
/// (they are in the log as well).
const MAX_PENDING_ERRORS: usize = 10_000;

#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    /// The leader epoch progress is written under (see `leader`).
    epoch: Option<i64>,
    metrics: Metrics,
    store: Arc<Store>,
}

/// What is not written yet, and what is known of an ongoing outage. It
/// outlives a leader term ([`Journal::for_epoch`]): a database outage ends
/// the term (the leader loses its lock connection), and the term's last
/// flush fails by definition. Were the store dropped along with the term,
/// what it holds would be lost: command rows, the outage's own
/// `general_errors` row (tested in `tests/faults_database.rs`), and a
/// `stop` whose row was not written yet, which would then come back as a
/// resumed countdown.
struct Store {
    pending: Mutex<Pending>,
    /// One flush at a time; it also holds what we know of an ongoing outage.
    flushing: tokio::sync::Mutex<Outage>,
    wake: Notify,
}

#[derive(Default)]
struct Pending {
    /// task → (last number delivered, its message id if known).
    progress: HashMap<i64, (i32, Option<u64>)>,
    ends: HashMap<i64, (TaskStatus, i32)>,
    command_errors: Vec<CommandError>,
    general_errors: Vec<GeneralError>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.progress.is_empty()
            && self.ends.is_empty()
            && self.command_errors.is_empty()
            && self.general_errors.is_empty()
    }

    /// Puts back what a failed flush took, under anything newer.
    fn restore(&mut self, old: Pending) {
        for (id, progress) in old.progress {
            if !self.ends.contains_key(&id) {
                let entry = self.progress.entry(id).or_insert(progress);
                *entry = (*entry).max(progress);
            }
        }
        for (id, end) in old.ends {
            self.ends.entry(id).or_insert(end);
        }
        let mut errors = old.command_errors;
        errors.append(&mut self.command_errors);
        self.command_errors = errors;
        let mut general = old.general_errors;
        general.append(&mut self.general_errors);
        self.general_errors = general;
        self.trim();
    }

    fn trim(&mut self) {
        for len in [self.command_errors.len(), self.general_errors.len()] {
            if len > MAX_PENDING_ERRORS {
                tracing::warn!(
                    dropped = len - MAX_PENDING_ERRORS,
                    "database down too long: dropping the oldest unwritten error rows"
                );
            }
        }
        let excess = self.command_errors.len().saturating_sub(MAX_PENDING_ERRORS);
        self.command_errors.drain(..excess);
        let excess = self.general_errors.len().saturating_sub(MAX_PENDING_ERRORS);
        self.general_errors.drain(..excess);
    }
}

#[derive(Default)]
struct Outage {
    since: Option<(DateTime<Utc>, String)>,
}

impl Journal {
    /// A journal whose task writes only land while `epoch` is the current
    /// leader epoch (`None`: unfenced).
    pub fn new(pool: Pool, metrics: Metrics, epoch: Option<i64>) -> Self {
        Journal {
            inner: Arc::new(Inner {
                pool,
                epoch,
                metrics,
                store: Arc::new(Store {
                    pending: Mutex::new(Pending::default()),
                    flushing: tokio::sync::Mutex::new(Outage::default()),
                    wake: Notify::new(),
                }),
            }),
        }
    }

    /// This journal for a new leader term: the same rows waiting to be
    /// written (a previous term's included), written under `epoch`.
    pub fn for_epoch(&self, epoch: i64) -> Journal {
        Journal {
            inner: Arc::new(Inner {
                pool: self.inner.pool.clone(),
                epoch: Some(epoch),
                metrics: self.inner.metrics.clone(),
                store: self.inner.store.clone(),
            }),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.inner
            .store
            .pending
            .lock()
            .expect("journal state poisoned")
    }

    /// Number `k` of countdown `task_id` was delivered, as message `message_id`.
    pub fn progress(&self, task_id: i64, k: u16, message_id: Option<u64>) {
        let mut pending = self.pending();
        let entry = pending.progress.entry(task_id).or_insert((0, None));
        *entry = (*entry).max((i32::from(k), message_id));
    }

    /// Countdown `task_id` ended with `status` after delivering `last_sent`.
    pub fn end(&self, task_id: i64, status: TaskStatus, last_sent: u16) {
        let mut pending = self.pending();
        pending.progress.remove(&task_id);
        pending.ends.insert(task_id, (status, i32::from(last_sent)));
        drop(pending);
        self.inner.store.wake.notify_one();
    }

    pub fn command_error(&self, row: CommandError) {
        let mut pending = self.pending();
        pending.command_errors.push(row);
        pending.trim();
    }

    pub fn general_error(&self, context: &'static str, error: impl Display) {
        let mut pending = self.pending();
        pending.general_errors.push(GeneralError {
            context,
            error: error.to_string(),
            at: Utc::now(),
        });
        pending.trim();
    }

    /// Writes everything pending now. On failure it stays pending.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let mut outage = self.inner.store.flushing.lock().await;
        let mut batch = std::mem::take(&mut *self.pending());
        // The outage's row goes with the first write after it, written
        // first: progress that made it to the database after an outage
        // always has the outage's row beside it, even if the process dies
        // right after.
        let outage_row = outage.since.as_ref().map(|(since, first_error)| {
            let lasted = round_to_ms((Utc::now() - *since).to_std().unwrap_or_default());
            GeneralError {
                context: "database",
                error: format!(
                    "database unavailable from {} for {}: {first_error}",
                    since.to_rfc3339(),
                    humantime::format_duration(lasted)
                ),
                at: Utc::now(),
            }
        });
        if let Some(row) = &outage_row {
            batch.general_errors.insert(0, row.clone());
        }
        if batch.is_empty() {
            return Ok(());
        }
        match self.write(&batch).await {
            Ok(()) => {
                if let Some((since, _)) = outage.since.take() {
                    let lasted = (Utc::now() - since).to_std().unwrap_or_default();
                    tracing::info!(
                        outage = %humantime::format_duration(round_to_ms(lasted)),
                        "database is back; pending progress written"
                    );
                }
                Ok(())
            }
            Err(error) => {
                if outage_row.is_some() {
                    batch.general_errors.remove(0);
                }
                self.inner.metrics.db_errors.inc();
                if outage.since.is_none() {
                    tracing::error!(%error, "cannot write to the database; keeping progress in memory and retrying");
                    outage.since = Some((Utc::now(), error.to_string()));
                } else {
                    tracing::debug!(%error, "database still unavailable");
                }
                self.pending().restore(batch);
                Err(error)
            }
        }
    }

    async fn write(&self, batch: &Pending) -> Result<(), StorageError> {
        let client = self.inner.pool.get().await?;
        if !batch.general_errors.is_empty() {
            let written = tasks::insert_general_errors(&**client, &batch.general_errors).await;
            self.unless_refused(written, "general_errors", batch.general_errors.len())?;
        }
        if !batch.ends.is_empty() {
            let ids: Vec<i64> = batch.ends.keys().copied().collect();
            let statuses: Vec<&str> = ids.iter().map(|id| batch.ends[id].0.as_str()).collect();
            let last: Vec<i32> = ids.iter().map(|id| batch.ends[id].1).collect();
            tasks::write_ends(&client, self.inner.epoch, &ids, &statuses, &last).await?;
        }
        if !batch.progress.is_empty() {
            let ids: Vec<i64> = batch.progress.keys().copied().collect();
            let last: Vec<i32> = ids.iter().map(|id| batch.progress[id].0).collect();
            let messages: Vec<Option<i64>> = ids
                .iter()
                .map(|id| batch.progress[id].1.map(super::db_id))
                .collect();
            tasks::write_progress(&client, self.inner.epoch, &ids, &last, &messages).await?;
        }
        if !batch.command_errors.is_empty() {
            let written = tasks::insert_command_errors(&**client, &batch.command_errors).await;
            self.unless_refused(written, "command_errors", batch.command_errors.len())?;
        }
        Ok(())
    }

    /// Error rows the database refuses for their content (a data exception
    /// or a broken constraint, e.g. a `task_id` whose task an operator
    /// deleted, or a NUL byte in text that bypassed `tasks::pg_text`) would
    /// be refused again at every retry, and keep the journal in an "outage"
    /// forever (tested in `tests/faults_input.rs`). They are dropped with
    /// one error line; they are in the log already. Anything else is an
    /// outage: retried.
    fn unless_refused(
        &self,
        written: Result<(), tokio_postgres::Error>,
        table: &'static str,
        rows: usize,
    ) -> Result<(), StorageError> {
        let Err(error) = written else {
            return Ok(());
        };
        let refused = error
            .code()
            .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"));
        if !refused {
            return Err(error.into());
        }
        self.inner.metrics.db_errors.inc();
        let reason = error
            .as_db_error()
            .map_or_else(|| error.to_string(), |e| e.message().to_owned());
        tracing::error!(table, rows, %reason, "the database refused these rows; dropping them");
        Ok(())
    }

    /// Flushes every `interval` (at once when a countdown ends) until
    /// `shutdown`, then makes a last attempt.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                _ = self.inner.store.wake.notified() => {}
            }
            let _ = self.flush().await;
        }
        if let Err(error) = self.flush().await {
            tracing::error!(%error, "could not write the last progress before exit; resume will re-send (nonces prevent duplicates)");
        }
    }
}

fn round_to_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_new_term_writes_what_the_last_one_could_not() {
        // Never connected: every flush fails, as in an outage.
        let pool = crate::storage::pool(&crate::config::DatabaseSettings::Url(
            "postgres://nobody@127.0.0.1:1/none".to_owned().into(),
        ))
        .unwrap();
        let journal = Journal::new(pool, Metrics::new().unwrap(), None);
        let term = journal.for_epoch(1);
        term.progress(6, 4, Some(60));
        term.end(7, TaskStatus::Stopped, 3);
        term.general_error("test", "something");
        assert!(term.flush().await.is_err());
        drop(term);

        let next = journal.for_epoch(2);
        assert_eq!(next.inner.epoch, Some(2));
        {
            let pending = next.pending();
            assert_eq!(pending.progress.get(&6), Some(&(4, Some(60))));
            assert_eq!(pending.ends.get(&7), Some(&(TaskStatus::Stopped, 3)));
            assert_eq!(pending.general_errors.len(), 1);
        }
        // And the outage it saw is still known, for its row once written.
        assert!(next.inner.store.flushing.lock().await.since.is_some());
    }
}
