//! The command core against a store in memory: what a command leaves in
//! the database, and how admission answers when the database says the
//! channel is busy or does not answer.

use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::commands::Source;
use crate::countdown::Refusal;
use crate::send::{
    Delivered, Delivery, Listed, MessageSink, Outgoing, Pacer, RetryPolicy, SendError,
};
use crate::storage::{MemoryStore, NewTask, TaskStatus, TaskStore};

/// Discord, answering every post.
struct Accepting;

#[async_trait]
impl MessageSink for Accepting {
    async fn post(&self, _channel_id: u64, _message: &Outgoing) -> Result<Delivered, SendError> {
        Ok(Delivered::default())
    }

    async fn list_after(&self, _channel_id: u64, _after: u64) -> Result<Vec<Listed>, SendError> {
        Ok(Vec::new())
    }
}

const LIMITS: Limits = Limits {
    max_active: 10,
    max_active_per_guild: 10,
};

struct Harness {
    store: Arc<MemoryStore>,
    journal: Journal,
    scheduler: Scheduler,
    service: CommandService,
    metrics: Metrics,
}

fn harness() -> Harness {
    let store = Arc::new(MemoryStore::new());
    let metrics = Metrics::new().unwrap();
    let journal = Journal::new(store.clone(), metrics.clone(), None);
    let delivery = || {
        Delivery::new(
            Arc::new(Accepting),
            Arc::new(Pacer::new(50)),
            metrics.clone(),
            RetryPolicy::default(),
            crate::leader::Fence::open(),
        )
    };
    let shutdown = CancellationToken::new();
    let scheduler = Scheduler::new(
        LIMITS,
        delivery(),
        journal.clone(),
        metrics.clone(),
        shutdown.child_token(),
    );
    let service = CommandService::new(
        scheduler.clone(),
        journal.clone(),
        metrics.clone(),
        delivery(),
        LIMITS,
        shutdown,
    );
    Harness {
        store,
        journal,
        scheduler,
        service,
        metrics,
    }
}

fn origin(channel_id: u64) -> Origin {
    Origin {
        source: Source::Slash,
        channel_id,
        guild_id: Some(1),
        user_id: 9,
        manages_messages: false,
        content: "/count 100".into(),
        command_id: 1,
    }
}

/// A row `running` in `channel_id` that this process does not run (its
/// end not written yet, or another instance's).
async fn running_row(store: &MemoryStore, channel_id: u64) -> i64 {
    let task = NewTask {
        channel_id,
        guild_id: Some(1),
        user_id: 8,
        target: 3,
        source: "mention",
    };
    store.insert(&task).await.unwrap().id
}

#[tokio::test(start_paused = true)]
async fn a_countdown_has_its_row_before_it_starts_and_its_end_after_a_stop() {
    let h = harness();
    let CountOutcome::Started { task_id } = h.service.count(&origin(10), 100).await else {
        panic!("not admitted");
    };
    let row = h
        .store
        .task(task_id)
        .expect("the row, written at admission");
    assert_eq!(row.status, TaskStatus::Running);
    assert_eq!((row.row.target, row.row.channel_id), (100, 10));
    assert_eq!(row.source, "slash");
    assert!(h.scheduler.is_running(task_id));

    let StopOutcome::Stopping(pending) = h.service.stop(&origin(10), None) else {
        panic!("not stopping");
    };
    let stopped = pending.wait().await;
    h.journal.flush().await.unwrap();
    let row = h.store.task(task_id).unwrap();
    assert_eq!(row.status, TaskStatus::Stopped);
    assert_eq!(row.row.last_sent, stopped.last_sent);
    assert!(row.finished_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_busy_channel_refusal_is_a_row_naming_the_countdown_there() {
    let h = harness();
    let CountOutcome::Started { task_id } = h.service.count(&origin(10), 100).await else {
        panic!("not admitted");
    };
    let outcome = h.service.count(&origin(10), 5).await;
    assert!(
        matches!(
            outcome,
            CountOutcome::Refused {
                refusal: Refusal::BusyChannel,
                running: Some((_, 100)),
            }
        ),
        "{outcome:?}"
    );
    h.journal.flush().await.unwrap();
    let errors = h.store.command_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].kind, "busy_channel");
    assert_eq!(errors[0].task_id, Some(task_id));
    assert_eq!(h.store.tasks().len(), 1, "no second row");
}

#[tokio::test(start_paused = true)]
async fn an_end_not_yet_written_is_written_and_the_count_admitted() {
    let h = harness();
    let ended = running_row(&h.store, 10).await;
    h.journal.end(ended, TaskStatus::Finished, 3);

    let outcome = h.service.count(&origin(10), 5).await;
    let CountOutcome::Started { task_id } = outcome else {
        panic!("{outcome:?}");
    };
    assert_ne!(task_id, ended);
    assert_eq!(h.store.task(ended).unwrap().status, TaskStatus::Finished);
    assert_eq!(h.store.task(task_id).unwrap().status, TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn a_channel_running_in_the_database_only_is_refused_and_left_free_here() {
    let h = harness();
    let elsewhere = running_row(&h.store, 10).await;

    let outcome = h.service.count(&origin(10), 5).await;
    assert_eq!(
        outcome,
        CountOutcome::Refused {
            refusal: Refusal::BusyChannel,
            running: None,
        }
    );
    assert_eq!(h.scheduler.active(), 0);
    assert!(
        h.scheduler.reserve(10, Some(1)).is_ok(),
        "reservation freed"
    );
    assert_eq!(h.store.tasks().len(), 1);
    assert_eq!(h.store.task(elsewhere).unwrap().status, TaskStatus::Running);
}

#[tokio::test(start_paused = true)]
async fn without_its_database_a_count_starts_nothing_and_is_recorded_later() {
    let h = harness();
    h.store.set_down(true);
    assert_eq!(
        h.service.count(&origin(10), 5).await,
        CountOutcome::DatabaseDown
    );
    assert_eq!(h.scheduler.active(), 0);
    assert!(
        h.scheduler.reserve(10, Some(1)).is_ok(),
        "reservation freed"
    );
    assert_eq!(h.metrics.db_errors.get(), 1);

    h.store.set_down(false);
    h.journal.flush().await.unwrap();
    let kinds: Vec<&str> = h.store.command_errors().iter().map(|e| e.kind).collect();
    assert_eq!(kinds, ["db_unavailable"]);
    assert!(h.store.tasks().is_empty());
}
