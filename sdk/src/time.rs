//! Runtime-agnostic waiting for plugins.
//!
//! A plugin must not depend on the host's async runtime (a native plugin cannot even reach it),
//! yet a built-in that emulates latency, a rate limiter or a poll loop must not block the
//! runtime's threads. [`sleep`] hands its deadline to one timer thread shared by the whole
//! process, which wakes each task when its time comes: every poll interval and every
//! rate-limit wait of every plugin costs a heap entry, not a thread.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    done: bool,
    waker: Option<Waker>,
}

/// A deadline waiting in the timer's queue.
struct Entry {
    deadline: Instant,
    shared: Arc<Mutex<Shared>>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        self.deadline == other.deadline
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.deadline.cmp(&other.deadline)
    }
}

/// The process's timer: a queue of deadlines, earliest first, and the thread that serves it.
struct Timer {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer { queue: Mutex::default(), changed: Condvar::new() }));
        std::thread::Builder::new()
            .name("evolve-sdk-timer".into())
            .spawn(move || timer.serve())
            .expect("the timer thread starts");
        timer
    })
}

impl Timer {
    fn serve(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            match queue.peek().map(|Reverse(entry)| entry.deadline) {
                None => queue = self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) if deadline <= now => {
                    if let Some(Reverse(entry)) = queue.pop() {
                        let mut shared = entry.shared.lock().unwrap_or_else(|e| e.into_inner());
                        shared.done = true;
                        if let Some(waker) = shared.waker.take() {
                            waker.wake();
                        }
                    }
                }
                Some(deadline) => {
                    queue = self.changed.wait_timeout(queue, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }

    fn add(&self, entry: Entry) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(Reverse(entry));
        self.changed.notify_one();
    }
}

/// A future that completes after `duration`, on any executor.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep { deadline: Instant::now() + duration, shared: Arc::default(), started: false }
}

/// The future returned by [`sleep`].
pub struct Sleep {
    deadline: Instant,
    shared: Arc<Mutex<Shared>>,
    started: bool,
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            if shared.done {
                return Poll::Ready(());
            }
            shared.waker = Some(cx.waker().clone());
        }
        if !self.started {
            self.started = true;
            timer().add(Entry { deadline: self.deadline, shared: Arc::clone(&self.shared) });
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn waits_without_blocking_the_executor() {
        let start = Instant::now();
        let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counter = Arc::clone(&ticks);
        // Another task on the same single thread keeps running while the sleeps wait.
        let busy = tokio::spawn(async move {
            loop {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::task::yield_now().await;
            }
        });
        tokio::join!(sleep(Duration::from_millis(60)), sleep(Duration::from_millis(30)));
        busy.abort();
        assert!(start.elapsed() >= Duration::from_millis(60));
        assert!(ticks.load(std::sync::atomic::Ordering::SeqCst) > 10, "the executor was blocked");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test(flavor = "current_thread")]
    async fn many_sleeps_share_one_timer_thread() {
        let threads = || std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(0);
        sleep(Duration::from_millis(1)).await; // the timer thread exists from here on
        let before = threads();
        let waiting: Vec<_> = (0..200).map(|i| tokio::spawn(sleep(Duration::from_millis(50 + i % 7)))).collect();
        tokio::task::yield_now().await; // every sleep has been polled once, and is waiting
        // Other tests of this binary run on their own threads: allow for them, not for 200.
        assert!(threads() < before + 20, "{} threads for 200 sleeps (from {before})", threads());
        for task in waiting {
            task.await.unwrap();
        }
    }
}
