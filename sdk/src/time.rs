//! Runtime-agnostic waiting for plugins.
//!
//! A plugin must not depend on the host's async runtime (a native plugin cannot even reach it),
//! yet a built-in that emulates latency must not block the runtime's threads. [`sleep`] parks a
//! helper thread instead, and wakes the task from there; fine for the occasional wait, not for
//! thousands of timers a second.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Default)]
struct Shared {
    done: bool,
    waker: Option<Waker>,
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
            let (shared, deadline) = (Arc::clone(&self.shared), self.deadline);
            std::thread::spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                let mut shared = shared.lock().unwrap_or_else(|e| e.into_inner());
                shared.done = true;
                if let Some(waker) = shared.waker.take() {
                    waker.wake();
                }
            });
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test(flavor = "current_thread")]
    async fn waits_without_blocking_the_executor() {
        let start = std::time::Instant::now();
        let (a, b) = tokio::join!(
            super::sleep(super::Duration::from_millis(60)),
            super::sleep(super::Duration::from_millis(60))
        );
        let _ = (a, b);
        let took = start.elapsed();
        assert!(took >= super::Duration::from_millis(60), "{took:?}");
        // Both ran concurrently on one thread: nowhere near 120 ms plus slack.
        assert!(took < super::Duration::from_millis(115), "{took:?}");
    }
}
