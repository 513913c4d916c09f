//! Runs a plugin's future to completion on the calling thread.
//!
//! External plugins are synchronous from the host's side: the host calls them on a blocking
//! thread, and their futures only wait on blocking host calls ([`crate::host::http`]), so a
//! thread-parking executor is all they need — no runtime crosses the plugin boundary.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` on this thread until it is ready, parking while it waits.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(output) => return output,
            Poll::Pending => std::thread::park(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::block_on;

    #[test]
    fn runs_ready_and_yielding_futures() {
        assert_eq!(block_on(async { 7 }), 7);
        let handle = std::thread::spawn(|| 3);
        let value = block_on(async move { handle.join().unwrap_or(0) });
        assert_eq!(value, 3);
    }
}
