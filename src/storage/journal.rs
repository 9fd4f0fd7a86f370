//! The journal: everything the bot must record but must not wait for.
//!
//! Countdowns note their progress here (a map write, no I/O) and a
//! background loop writes it in batches, so a slow or absent database never
//! delays a number. While the database is down, rows wait here (bounded) and
//! are written once it is back; the outage itself is logged once when it
//! starts, once when it ends, and recorded in `general_errors`. It writes
//! through a [`TaskStore`].

use std::fmt::Display;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::store::{Batch, CommandError, End, GeneralError, Progress, TaskStatus, TaskStore};
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
    store: Arc<dyn TaskStore>,
    /// The leader epoch progress is written under (see `leader`).
    epoch: Option<i64>,
    metrics: Metrics,
    backlog: Arc<Backlog>,
}

/// What is not written yet, and what is known of an ongoing outage. It
/// outlives a leader term ([`Journal::for_epoch`]): a database outage ends
/// the term (the leader loses its lock connection), and the term's last
/// flush fails by definition. Were the backlog dropped along with the term,
/// what it holds would be lost: command rows, the outage's own
/// `general_errors` row (tested in `tests/faults_database.rs`), and a
/// `stop` whose row was not written yet, which would then come back as a
/// resumed countdown.
struct Backlog {
    pending: Mutex<Batch>,
    /// One flush at a time; it also holds what we know of an ongoing outage.
    flushing: tokio::sync::Mutex<Outage>,
    wake: Notify,
}

/// The journal's side of a batch: what a failed flush puts back, and the
/// bound on what waits.
impl Batch {
    /// Puts back what a failed flush took, under anything newer.
    fn restore(&mut self, old: Batch) {
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
    /// A journal writing to `store`, whose task writes only land while
    /// `epoch` is the current leader epoch (`None`: unfenced).
    pub fn new(store: Arc<dyn TaskStore>, metrics: Metrics, epoch: Option<i64>) -> Self {
        Journal {
            inner: Arc::new(Inner {
                store,
                epoch,
                metrics,
                backlog: Arc::new(Backlog {
                    pending: Mutex::new(Batch::default()),
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
                store: self.inner.store.clone(),
                epoch: Some(epoch),
                metrics: self.inner.metrics.clone(),
                backlog: self.inner.backlog.clone(),
            }),
        }
    }

    /// The store this journal writes to. Whoever writes a row the journal
    /// then updates (a countdown's admission, resume) goes through the same
    /// one: a flush before a retry must reach the database the retry asks.
    pub fn store(&self) -> &Arc<dyn TaskStore> {
        &self.inner.store
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.inner
            .backlog
            .pending
            .lock()
            .expect("journal state poisoned")
    }

    /// Number `k` of countdown `task_id` was delivered, as message `message_id`.
    pub fn progress(&self, task_id: i64, k: u16, message_id: Option<u64>) {
        let note = Progress {
            last_sent: k,
            message_id,
        };
        let mut pending = self.pending();
        let entry = pending.progress.entry(task_id).or_insert(note);
        *entry = (*entry).max(note);
    }

    /// Countdown `task_id` ended with `status` after delivering `last_sent`.
    pub fn end(&self, task_id: i64, status: TaskStatus, last_sent: u16) {
        let mut pending = self.pending();
        pending.progress.remove(&task_id);
        pending.ends.insert(task_id, End { status, last_sent });
        drop(pending);
        self.inner.backlog.wake.notify_one();
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
        let mut outage = self.inner.backlog.flushing.lock().await;
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
        match self.inner.store.write(self.inner.epoch, &batch).await {
            Ok(written) => {
                for refused in written.refused {
                    // Refused for their content, they would be refused again
                    // at every retry, and keep the journal in an "outage"
                    // forever (tested in `tests/faults_input.rs`). They are in
                    // the log already.
                    self.inner.metrics.db_errors.inc();
                    tracing::error!(
                        table = refused.table,
                        rows = refused.rows,
                        reason = %refused.reason,
                        "the database refused these rows; dropping them"
                    );
                }
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

    /// Flushes every `interval` (at once when a countdown ends) until
    /// `shutdown`, then makes a last attempt.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                _ = self.inner.backlog.wake.notified() => {}
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
    use crate::storage::{MemoryStore, NewTask};

    fn new_task(channel_id: u64) -> NewTask {
        NewTask {
            channel_id,
            guild_id: Some(1),
            user_id: 9,
            target: 10,
            source: "mention",
        }
    }

    #[tokio::test]
    async fn a_new_term_writes_what_the_last_one_could_not() {
        let store = Arc::new(MemoryStore::new());
        let counting = store.insert(&new_task(10)).await.unwrap().id;
        let stopping = store.insert(&new_task(11)).await.unwrap().id;
        let journal = Journal::new(store.clone(), Metrics::new().unwrap(), None);
        store.set_epoch(1);
        let term = journal.for_epoch(1);
        store.set_down(true);
        term.progress(counting, 4, Some(60));
        term.end(stopping, TaskStatus::Stopped, 3);
        term.general_error("test", "something");
        assert!(term.flush().await.is_err());
        drop(term);

        // The database is back, and a new term leads.
        store.set_down(false);
        store.set_epoch(2);
        journal.for_epoch(2).flush().await.unwrap();

        let counted = store.task(counting).unwrap();
        assert_eq!(counted.status, TaskStatus::Running);
        assert_eq!(counted.row.last_sent, 4);
        assert_eq!(counted.row.last_message_id, Some(60));
        let stopped = store.task(stopping).unwrap();
        assert_eq!(stopped.status, TaskStatus::Stopped);
        assert_eq!(stopped.row.last_sent, 3);
        // The outage it saw is a row, written before the rest.
        let general: Vec<(&str, String)> = store
            .general_errors()
            .into_iter()
            .map(|e| (e.context, e.error))
            .collect();
        assert_eq!(general.len(), 2, "{general:?}");
        assert_eq!(general[0].0, "database");
        assert!(
            general[0].1.starts_with("database unavailable from "),
            "{general:?}"
        );
        assert_eq!(general[1], ("test", "something".to_owned()));
    }

    #[tokio::test]
    async fn a_deposed_term_changes_no_row() {
        let store = Arc::new(MemoryStore::new());
        let id = store.insert(&new_task(10)).await.unwrap().id;
        let journal = Journal::new(store.clone(), Metrics::new().unwrap(), None);
        let deposed = journal.for_epoch(1);
        store.set_epoch(2);
        deposed.progress(id, 5, Some(50));
        deposed.flush().await.unwrap();
        assert_eq!(store.task(id).unwrap().row.last_sent, 0);
    }

    #[tokio::test]
    async fn error_rows_the_database_refuses_are_dropped_not_retried() {
        let store = Arc::new(MemoryStore::new());
        let metrics = Metrics::new().unwrap();
        let journal = Journal::new(store.clone(), metrics.clone(), None);
        journal.command_error(CommandError {
            kind: "not_allowed",
            channel_id: 10,
            guild_id: Some(1),
            user_id: Some(9),
            content: Some("stop".into()),
            error: "an operator deleted its task".into(),
            task_id: Some(404),
            at: Utc::now(),
        });
        journal.flush().await.unwrap();
        assert!(store.command_errors().is_empty());
        assert_eq!(metrics.db_errors.get(), 1);
        assert!(journal.pending().is_empty(), "not kept for a retry");
    }
}
