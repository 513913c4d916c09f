//! Concurrent tasks whose results are handed on in the order the tasks were started.
//!
//! Purchases and judgments run concurrently and finish in whatever order the network allows,
//! but what they write down — a sample's id, its place in the training set, which prompts a
//! round buys — must not depend on that order, or a run could not be replayed from its seed.
//! [`OrderedTasks`] spawns each task on the runtime (so a panic is contained to its task and
//! tasks run on every worker) and holds each result back until every task started before it
//! has finished.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use tokio::task::{Id, JoinError, JoinSet};

/// Tasks numbered in the order they were spawned, their results released in that order.
pub struct OrderedTasks<T> {
    tasks: JoinSet<T>,
    numbers: HashMap<Id, usize>,
    waiting: BTreeMap<usize, Result<T, JoinError>>,
    next: usize,
}

impl<T: Send + 'static> Default for OrderedTasks<T> {
    fn default() -> Self {
        OrderedTasks { tasks: JoinSet::new(), numbers: HashMap::new(), waiting: BTreeMap::new(), next: 0 }
    }
}

impl<T: Send + 'static> OrderedTasks<T> {
    /// Starts `task` on the runtime, after every task spawned before it.
    pub fn spawn(&mut self, task: impl Future<Output = T> + Send + 'static) {
        let handle = self.tasks.spawn(task);
        self.numbers.insert(handle.id(), self.numbers.len());
    }

    /// Waits for a task to finish; returns the results now due, in spawn order (empty while an
    /// earlier task is still running; a task that panicked gives its `JoinError`), or `None`
    /// once every result has been handed on.
    pub async fn next_due(&mut self) -> Option<Vec<Result<T, JoinError>>> {
        let joined = self.tasks.join_next_with_id().await?;
        let (id, result) = match joined {
            Ok((id, value)) => (id, Ok(value)),
            Err(error) => (error.id(), Err(error)),
        };
        // Every task in the set was numbered when it was spawned.
        let number = self.numbers.get(&id).copied().unwrap_or(self.next);
        self.waiting.insert(number, result);
        let mut due = vec![];
        while let Some(result) = self.waiting.remove(&self.next) {
            due.push(result);
            self.next += 1;
        }
        Some(due)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn results_come_in_spawn_order_whichever_task_finishes_first() {
        let mut tasks = OrderedTasks::default();
        for (i, delay) in [30u64, 0, 20, 5, 0].into_iter().enumerate() {
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                assert_ne!(i, 3, "a task that panics");
                i
            });
        }
        let mut seen = vec![];
        while let Some(due) = tasks.next_due().await {
            seen.extend(due.into_iter().map(|r| r.ok()));
        }
        assert_eq!(seen, [Some(0), Some(1), Some(2), None, Some(4)]);
    }
}
