//! [`ServerThread`]: a named thread that serves until asked to stop, for the control socket and
//! the metrics endpoint (never a worker's core: they are not pinned).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Ends the wait of a server thread that sleeps until a client comes.
type Unblock = Box<dyn Fn() + Send>;

/// A thread running `serve(&stop)` until `stop` is set; stopped and joined on drop.
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    unblock: Unblock,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for ServerThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerThread")
            .field("stop", &self.stop)
            .field("running", &self.thread.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerThread {
    /// Starts `serve` on a thread named `name`; `serve` may sleep until a client comes and
    /// returns once the flag it is given is set: stopping sets the flag, then calls `unblock`,
    /// which must end `serve`'s wait (so an idle server thread never wakes on a timer).
    pub fn spawn(
        name: &str,
        serve: impl FnOnce(&AtomicBool) + Send + 'static,
        unblock: impl Fn() + Send + 'static,
    ) -> std::io::Result<ServerThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name(name.to_owned())
                .spawn(move || serve(&stop))?
        };
        Ok(ServerThread {
            stop,
            unblock: Box::new(unblock),
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits for it (once; later calls do nothing).
    pub fn stop(&mut self) {
        // Release: pairs with the serving thread's Acquire load.
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            (self.unblock)();
            let _ = thread.join();
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;
    use std::sync::Mutex;

    #[test]
    fn test_stop_unblocks_the_wait_and_waits_for_the_thread_to_finish() {
        let state = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&state);
        // The server sleeps until a message comes, as a server sleeps until a client does:
        // only the unblock can end its wait.
        let (send, receive) = mpsc::channel::<()>();
        let send = Mutex::new(send);
        let mut thread = ServerThread::spawn(
            "test-server",
            move |stop| {
                while !stop.load(Ordering::Acquire) {
                    seen.store(1, Ordering::Relaxed);
                    if receive.recv().is_err() {
                        return;
                    }
                }
                seen.store(usize::MAX, Ordering::Relaxed);
            },
            move || {
                let _ = send.lock().unwrap().send(());
            },
        )
        .unwrap();
        thread.stop();
        assert_eq!(
            state.load(Ordering::Relaxed),
            usize::MAX,
            "returned before the thread ended, or the thread did not see the flag"
        );
        thread.stop();
    }
}
