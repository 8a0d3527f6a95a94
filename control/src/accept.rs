//! The accept loop shared by the control plane's small servers (metrics over TCP,
//! the control socket over Unix): a thread polling a non-blocking listener until
//! stopped, serving one connection at a time. Dropping the `AcceptLoop` stops and
//! joins it.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How long an idle loop sleeps between polls, and after a failed accept.
const IDLE_POLL: Duration = Duration::from_millis(20);
const ERROR_BACKOFF: Duration = Duration::from_millis(100);

pub struct AcceptLoop {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptLoop {
    /// Spawns thread `name`. `accept` must be non-blocking (return `WouldBlock` when no
    /// client waits); `serve` handles one connection, and its errors are logged, never fatal.
    pub fn spawn<S: 'static>(
        name: &'static str,
        mut accept: impl FnMut() -> io::Result<S> + Send + 'static,
        mut serve: impl FnMut(S) -> io::Result<()> + Send + 'static,
    ) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new().name(name.into()).spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                match accept() {
                    Ok(stream) => {
                        if let Err(e) = serve(stream) {
                            tracing::debug!("{name}: client error: {e}");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(IDLE_POLL),
                    Err(e) => {
                        tracing::warn!("{name}: accept failed: {e}");
                        std::thread::sleep(ERROR_BACKOFF);
                    }
                }
            }
        })?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
