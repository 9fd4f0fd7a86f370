//! [`MemoryStore`]: a [`TaskStore`] in memory, for the unit tests.
//!
//! It keeps the rules of PostgreSQL's schema that the code relies on: one
//! `running` countdown per channel (the unique index), ends and progress
//! only on `running` rows and never backwards, writes fenced by the leader
//! epoch, and command errors naming no task refused (the foreign key). It
//! keeps everything written for the tests to read, and can be told to fail
//! as a database that is down.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::store::{
    Batch, CommandError, GeneralError, NewTask, Refused, TaskRow, TaskStatus, TaskStore, Written,
};
use super::StorageError;

#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last_id: i64,
    tasks: BTreeMap<i64, Stored>,
    command_errors: Vec<CommandError>,
    general_errors: Vec<GeneralError>,
    /// `leader_state.epoch`.
    epoch: i64,
    down: bool,
    insert_batches: usize,
}

/// A `tasks` row as the store holds it.
#[derive(Debug, Clone)]
pub struct Stored {
    pub row: TaskRow,
    pub status: TaskStatus,
    pub source: &'static str,
    pub finished_at: Option<DateTime<Utc>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("memory store poisoned")
    }

    /// Every call fails from now on, as with a database that is down, until
    /// `set_down(false)`.
    /// How many times rows were inserted (one batch each).
    pub fn insert_batches(&self) -> usize {
        self.state().insert_batches
    }

    pub fn set_down(&self, down: bool) {
        self.state().down = down;
    }

    /// A new leader's epoch: writes fenced with another one change nothing.
    pub fn set_epoch(&self, epoch: i64) {
        self.state().epoch = epoch;
    }

    /// Makes row `id` look untouched for `idle` (for `expire_idle`).
    pub fn idle_for(&self, id: i64, idle: Duration) {
        if let Some(task) = self.state().tasks.get_mut(&id) {
            task.row.updated_at = Utc::now() - idle;
        }
    }

    /// Every `tasks` row, by id.
    pub fn tasks(&self) -> Vec<Stored> {
        self.state().tasks.values().cloned().collect()
    }

    pub fn task(&self, id: i64) -> Option<Stored> {
        self.state().tasks.get(&id).cloned()
    }

    /// `command_errors`, in the order they were written.
    pub fn command_errors(&self) -> Vec<CommandError> {
        self.state().command_errors.clone()
    }

    /// `general_errors`, in the order they were written.
    pub fn general_errors(&self) -> Vec<GeneralError> {
        self.state().general_errors.clone()
    }

    /// The state, unless the store is down.
    fn up(&self) -> Result<MutexGuard<'_, State>, StorageError> {
        let state = self.state();
        if state.down {
            return Err(StorageError::Down);
        }
        Ok(state)
    }
}

impl State {
    /// Admits `task` unless its channel has a running countdown.
    fn insert(&mut self, task: &NewTask) -> Option<TaskRow> {
        if self.running().any(|t| t.row.channel_id == task.channel_id) {
            return None;
        }
        self.last_id += 1;
        let now = Utc::now();
        let row = TaskRow {
            id: self.last_id,
            channel_id: task.channel_id,
            guild_id: task.guild_id,
            user_id: task.user_id,
            target: task.target,
            last_sent: 0,
            last_message_id: None,
            created_at: now,
            updated_at: now,
        };
        self.tasks.insert(
            row.id,
            Stored {
                row: row.clone(),
                status: TaskStatus::Running,
                source: task.source,
                finished_at: None,
            },
        );
        Some(row)
    }

    fn running(&self) -> impl Iterator<Item = &Stored> {
        self.tasks
            .values()
            .filter(|t| t.status == TaskStatus::Running)
    }

    /// The row `id` if it is running.
    fn running_mut(&mut self, id: i64) -> Option<&mut Stored> {
        self.tasks
            .get_mut(&id)
            .filter(|t| t.status == TaskStatus::Running)
    }
}

#[async_trait]
impl TaskStore for MemoryStore {
    async fn insert_many(&self, tasks: &[NewTask]) -> Result<Vec<Option<TaskRow>>, StorageError> {
        let mut state = self.up()?;
        state.insert_batches += 1;
        Ok(tasks.iter().map(|task| state.insert(task)).collect())
    }

    async fn expire_idle(&self, max_age: Duration) -> Result<Vec<TaskRow>, StorageError> {
        let mut state = self.up()?;
        let now = Utc::now();
        let mut expired = Vec::new();
        for task in state.tasks.values_mut() {
            let idle = (now - task.row.updated_at).to_std().unwrap_or_default();
            if task.status == TaskStatus::Running && idle > max_age {
                task.status = TaskStatus::Expired;
                task.finished_at = Some(now);
                task.row.updated_at = now;
                expired.push(task.row.clone());
            }
        }
        Ok(expired)
    }

    async fn running(&self) -> Result<Vec<TaskRow>, StorageError> {
        let state = self.up()?;
        Ok(state.running().map(|t| t.row.clone()).collect())
    }

    async fn write(&self, epoch: Option<i64>, batch: &Batch) -> Result<Written, StorageError> {
        let mut state = self.up()?;
        let now = Utc::now();
        let mut written = Written::default();
        state
            .general_errors
            .extend(batch.general_errors.iter().cloned());
        let current = epoch.is_none_or(|e| e == state.epoch);
        if current {
            for (id, end) in &batch.ends {
                if let Some(task) = state.running_mut(*id) {
                    task.status = end.status;
                    task.row.last_sent = task.row.last_sent.max(end.last_sent);
                    task.row.updated_at = now;
                    task.finished_at = Some(now);
                }
            }
            for (id, progress) in &batch.progress {
                if let Some(task) = state.running_mut(*id) {
                    if progress.last_sent >= task.row.last_sent {
                        task.row.last_sent = progress.last_sent;
                        task.row.last_message_id = progress.message_id.or(task.row.last_message_id);
                    }
                    task.row.updated_at = now;
                }
            }
        }
        // One statement in PostgreSQL: a single row naming no task refuses
        // them all.
        let orphan = batch
            .command_errors
            .iter()
            .filter_map(|e| e.task_id)
            .find(|id| !state.tasks.contains_key(id));
        match orphan {
            Some(id) => written.refused.push(Refused {
                table: "command_errors",
                rows: batch.command_errors.len(),
                reason: format!("task {id} is not present in table \"tasks\""),
            }),
            None => state
                .command_errors
                .extend(batch.command_errors.iter().cloned()),
        }
        Ok(written)
    }

    async fn ping(&self) -> Result<(), StorageError> {
        self.up().map(drop)
    }
}
