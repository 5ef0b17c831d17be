//! Where log lines go: one shared buffer, written out by a background thread every
//! [`FLUSH_INTERVAL`], or as soon as it holds [`FLUSH_AT`] bytes.
//!
//! A request only copies its line into memory: it makes no system call and wakes no
//! thread. (With a channel to a writer thread, every access line cost a futex wake-up, a
//! context switch and a `write(2)`: about a quarter of GET throughput, measured with the
//! access log on and off.) Nothing is dropped and memory stays bounded: a request that
//! finds [`BUFFER_LIMIT`] bytes waiting writes them out itself. Lines keep their order.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// The longest a line waits in memory when the service is quiet.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(50);
/// The writer thread is woken once this much is waiting.
const FLUSH_AT: usize = 64 * 1024;
/// Past this much waiting, the request that adds a line writes everything out itself.
const BUFFER_LIMIT: usize = 1024 * 1024;

struct Shared {
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// Wakes the writer thread (enough pending, or closing).
    ready: Condvar,
    /// The destination and a spare buffer to swap with `pending`. Taken before `pending`
    /// whenever both are held, so batches are written in the order they were taken.
    out: Mutex<(Box<dyn Write + Send>, Vec<u8>)>,
    closed: AtomicBool,
}

/// A poisoned lock only means another thread panicked mid-line; the buffer is still bytes.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Writes out everything pending now.
    fn flush(&self) {
        let mut out = lock(&self.out);
        let (sink, spare) = &mut *out;
        std::mem::swap(&mut *lock(&self.pending), spare);
        if !spare.is_empty() {
            // Nowhere to report a failed log write; the lines are lost, the service is not.
            let _ = sink.write_all(spare);
            let _ = sink.flush();
        }
        // Emptied whether or not the write worked; a burst's capacity is kept for the next
        // one, up to the limit.
        spare.clear();
        spare.shrink_to(BUFFER_LIMIT);
    }

    fn append(&self, line: &[u8]) {
        let waiting = {
            let mut pending = lock(&self.pending);
            let before = pending.len();
            pending.extend_from_slice(line);
            if before < FLUSH_AT && pending.len() >= FLUSH_AT {
                self.ready.notify_one();
            }
            pending.len()
        };
        if waiting >= BUFFER_LIMIT {
            self.flush();
        }
    }
}

/// The [`MakeWriter`] for the log subscriber. Cloning shares the buffer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread and writes out the last lines when dropped: keep it until exit.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl BatchedWriter {
    /// Starts the writer thread for `sink`.
    pub fn start(sink: impl Write + Send + 'static) -> std::io::Result<(Self, FlushGuard)> {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            out: Mutex::new((Box::new(sink), Vec::new())),
            closed: AtomicBool::new(false),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("log-writer".to_owned())
            .spawn(move || loop {
                let closed = {
                    let pending = lock(&worker.pending);
                    let (_pending, _) = worker
                        .ready
                        .wait_timeout_while(pending, FLUSH_INTERVAL, |pending| {
                            pending.len() < FLUSH_AT && !worker.closed.load(Ordering::Acquire)
                        })
                        .unwrap_or_else(PoisonError::into_inner);
                    worker.closed.load(Ordering::Acquire)
                };
                worker.flush();
                if closed {
                    return;
                }
            })?;
        let guard = FlushGuard {
            shared: shared.clone(),
            thread: Some(thread),
        };
        Ok((Self { shared }, guard))
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        {
            let _pending = lock(&self.shared.pending);
            self.shared.ready.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // Lines logged after the thread's last pass.
        self.shared.flush();
    }
}

/// One line's writer: appends to the shared buffer.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.shared.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink the test can read, counting the writes it received.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut inner = lock(&self.0);
            inner.0.extend_from_slice(bytes);
            inner.1 += 1;
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_arrives_in_order_in_few_writes_and_the_guard_flushes_the_rest() {
        let sink = Sink::default();
        let (writer, guard) = BatchedWriter::start(sink.clone()).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..20_000 {
                        // As the subscriber does: one formatted line, one `write_all`.
                        let line = format!("thread {t} line {i:05}\n");
                        writer.make_writer().write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        drop(guard);
        let (bytes, writes) = lock(&sink.0).clone();
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 80_000, "nothing dropped");
        for t in 0..4 {
            let prefix = format!("thread {t} ");
            let own: Vec<&str> = lines
                .iter()
                .copied()
                .filter(|line| line.starts_with(&prefix))
                .collect();
            let expected: Vec<String> = (0..20_000)
                .map(|i| format!("thread {t} line {i:05}"))
                .collect();
            assert_eq!(own, expected, "thread {t}'s lines, in order");
        }
        assert!(writes < 1_000, "batched: {writes} writes for 80 000 lines");
    }

    #[test]
    fn a_quiet_line_is_written_within_the_flush_interval() {
        let sink = Sink::default();
        let (writer, _guard) = BatchedWriter::start(sink.clone()).unwrap();
        writer.make_writer().write_all(b"one line\n").unwrap();
        // Wait for the writer thread itself, never longer than 100 intervals.
        let deadline = std::time::Instant::now() + FLUSH_INTERVAL * 100;
        while lock(&sink.0).0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(FLUSH_INTERVAL / 10);
        }
        assert_eq!(lock(&sink.0).0, b"one line\n");
    }
}
