//! [`ServerThread`]: a named thread that serves until asked to stop, for the control socket and
//! the metrics endpoint (never a worker's core: they are not pinned).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// A thread running `serve(&stop)` until `stop` is set; stopped and joined on drop.
#[derive(Debug)]
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Starts `serve` on a thread named `name`; `serve` returns once the flag it is given is
    /// set (it must look at it at least every few milliseconds).
    pub fn spawn(
        name: &str,
        serve: impl FnOnce(&AtomicBool) + Send + 'static,
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
            thread: Some(thread),
        })
    }

    /// Asks the thread to stop and waits for it (once; later calls do nothing).
    pub fn stop(&mut self) {
        // Release: pairs with the serving thread's Acquire load.
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
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
    use std::time::Duration;

    #[test]
    fn test_stop_waits_for_the_thread_to_finish() {
        let rounds = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&rounds);
        let mut thread = ServerThread::spawn("test-server", move |stop| {
            while !stop.load(Ordering::Acquire) {
                seen.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
            seen.store(usize::MAX, Ordering::Relaxed);
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        thread.stop();
        assert_eq!(
            rounds.load(Ordering::Relaxed),
            usize::MAX,
            "returned before the thread ended"
        );
        thread.stop();
    }
}
