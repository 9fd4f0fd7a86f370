//! Admission in batches: the rows of `count to` commands that arrive
//! together are written together, one `INSERT` for all of them
//! ([`TaskStore::insert_many`]), the way a database groups commits.
//!
//! One writer takes every admission waiting when it is free, writes them in
//! one round trip, and answers each command on its own; what arrives
//! meanwhile waits for the next round trip. Alone, a command costs what it
//! did (one round trip, no timer); in a burst of hundreds, a few round
//! trips admit all of them, instead of hundreds queueing for the pool's
//! connections one insert at a time. The guarantees are each command's:
//! its countdown starts only once its row is written, the store still
//! decides "one per channel", and a failed batch fails each of its commands
//! with the error.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{NewTask, StorageError, TaskRow, TaskStore};

/// At most this many rows in one `INSERT` (its arrays are five parameters
/// whatever their length; this bounds one statement's time).
pub const MAX_BATCH: usize = 1000;

/// A waiting admission: the row to write and where its answer goes.
struct Pending {
    task: NewTask,
    answer: oneshot::Sender<Result<TaskRow, StorageError>>,
}

/// The handle commands admit through. The writer ends when the last handle
/// is dropped.
#[derive(Clone)]
pub struct Admissions {
    queue: mpsc::UnboundedSender<Pending>,
}

impl Admissions {
    /// Starts the writer over `store`.
    pub fn start(store: Arc<dyn TaskStore>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(write_batches(store, waiting));
        Admissions { queue }
    }

    /// Writes the row that admits `task`, with whatever else is waiting.
    /// [`StorageError::ChannelBusy`] when a countdown is already running in
    /// its channel.
    pub async fn admit(&self, task: NewTask) -> Result<TaskRow, StorageError> {
        let (answer, answered) = oneshot::channel();
        self.queue
            .send(Pending { task, answer })
            .map_err(|_| StorageError::Stopped)?;
        answered.await.map_err(|_| StorageError::Stopped)?
    }
}

async fn write_batches(store: Arc<dyn TaskStore>, mut waiting: mpsc::UnboundedReceiver<Pending>) {
    let mut batch = Vec::new();
    while waiting.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let tasks: Vec<NewTask> = batch.iter().map(|p| p.task.clone()).collect();
        match store.insert_many(&tasks).await {
            Ok(rows) => {
                for (pending, row) in batch.drain(..).zip(rows) {
                    // A command that gave up waiting has no one to answer.
                    let _ = pending.answer.send(row.ok_or(StorageError::ChannelBusy));
                }
            }
            Err(error) => {
                if batch.len() > 1 {
                    tracing::warn!(%error, commands = batch.len(), "a batch of admissions failed");
                }
                let error = Arc::new(error);
                for pending in batch.drain(..) {
                    let _ = pending.answer.send(Err(StorageError::Batch(error.clone())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStore;
    use futures::future::join_all;

    fn task(channel_id: u64) -> NewTask {
        NewTask {
            channel_id,
            guild_id: Some(1),
            user_id: 7,
            target: 5,
            source: "mention",
        }
    }

    #[tokio::test]
    async fn commands_arriving_together_are_written_together_and_answered_each() {
        let store = Arc::new(MemoryStore::default());
        let admissions = Admissions::start(store.clone());
        // Ten at once, two of them in channel 3: the first of those wins.
        let answers = join_all(
            [1, 2, 3, 3, 4, 5, 6, 7, 8, 9]
                .into_iter()
                .map(|c| admissions.admit(task(c))),
        )
        .await;
        let busy = answers
            .iter()
            .filter(|a| matches!(a, Err(StorageError::ChannelBusy)))
            .count();
        assert_eq!(busy, 1, "{answers:?}");
        assert!(matches!(&answers[2], Ok(row) if row.channel_id == 3));
        assert!(answers[3].is_err());
        assert!(
            store.insert_batches() < 10,
            "{} inserts",
            store.insert_batches()
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_each_of_its_commands() {
        let store = Arc::new(MemoryStore::default());
        store.set_down(true);
        let admissions = Admissions::start(store.clone());
        let answers = join_all((1..=3).map(|c| admissions.admit(task(c)))).await;
        for answer in &answers {
            assert!(
                matches!(answer, Err(e) if e.to_string().contains("database unavailable")),
                "{answer:?}"
            );
        }
        store.set_down(false);
        assert!(
            admissions.admit(task(1)).await.is_ok(),
            "admits again once up"
        );
    }
}
