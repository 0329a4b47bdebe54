//! PID 1's console output: one writer thread behind a queue of fixed size, so that nothing
//! PID 1 does ever waits for the console. A serial console takes a few hundred KB/s at best;
//! a service that writes faster fills the queue, and what does not fit is dropped, counted
//! and reported once the console has caught up (`init: console: dropped N lines ...`).
//!
//! The last quarter of the queue is kept for PID 1's own lines, so that what the supervisor
//! says (exits, restarts) still reaches the console while a service floods it.
//!
//! Before [`start`] (early boot) and in processes other than PID 1, lines are written
//! directly.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Bytes the queue holds at most.
pub const QUEUE_BYTES: usize = 256 * 1024;

/// A bounded queue of lines for one writer.
pub struct Queue {
    state: Mutex<Pending>,
    ready: Condvar,
    idle: Condvar,
    limit: usize,
}

#[derive(Default)]
struct Pending {
    lines: VecDeque<Vec<u8>>,
    bytes: usize,
    dropped_lines: u64,
    dropped_bytes: u64,
    /// The writer is writing a batch it took.
    busy: bool,
}

impl Queue {
    /// A queue holding at most `limit` bytes.
    pub fn new(limit: usize) -> Queue {
        Queue {
            state: Mutex::new(Pending::default()),
            ready: Condvar::new(),
            idle: Condvar::new(),
            limit,
        }
    }

    /// Queue `line`, one of PID 1's own (`own`) or a container's; drop it (and count it)
    /// when the queue is full (for a container's line, three quarters full). Never blocks on
    /// the writer.
    pub fn push(&self, line: &[u8], own: bool) {
        let limit = if own { self.limit } else { self.limit / 4 * 3 };
        let Ok(mut s) = self.state.lock() else { return };
        if s.bytes + line.len() > limit {
            s.dropped_lines += 1;
            s.dropped_bytes += line.len() as u64;
            return;
        }
        s.bytes += line.len();
        s.lines.push_back(line.to_vec());
        self.ready.notify_one();
    }

    /// What was dropped and not yet reported: (lines, bytes).
    #[cfg(test)]
    pub fn dropped(&self) -> (u64, u64) {
        self.state
            .lock()
            .map(|s| (s.dropped_lines, s.dropped_bytes))
            .unwrap_or_default()
    }

    /// Take everything queued (waiting for something), with a report of what was dropped
    /// before it was queued, as the writer writes it.
    fn take(&self) -> Vec<u8> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        s.busy = false;
        self.idle.notify_all();
        while s.lines.is_empty() && s.dropped_lines == 0 {
            s = match self.ready.wait(s) {
                Ok(g) => g,
                Err(_) => return Vec::new(),
            };
        }
        let mut out = Vec::with_capacity(s.bytes + 128);
        for line in s.lines.drain(..) {
            out.extend_from_slice(&line);
        }
        s.bytes = 0;
        if s.dropped_lines > 0 {
            let report = crate::log::stamp(&format!(
                "console: dropped {} lines ({} bytes) the console could not take in time",
                s.dropped_lines, s.dropped_bytes
            ));
            out.extend_from_slice(report.as_bytes());
            s.dropped_lines = 0;
            s.dropped_bytes = 0;
        }
        s.busy = true;
        out
    }

    /// Wait until everything queued has been written, or `limit` has passed.
    pub fn flush(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let Ok(mut s) = self.state.lock() else { return };
        while !s.lines.is_empty() || s.busy {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            s = match self.idle.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(_) => return,
            };
        }
    }

    /// Write what is queued to `out`, forever (the writer thread's loop).
    pub fn drain_into(&self, out: &mut dyn Write) -> ! {
        loop {
            let batch = self.take();
            let _ = out.write_all(&batch);
            let _ = out.flush();
        }
    }
}

static QUEUE: OnceLock<&'static Queue> = OnceLock::new();

/// Start the writer thread: from now on this process's console lines go through the queue.
pub fn start() {
    if QUEUE.get().is_some() {
        return;
    }
    let queue: &'static Queue = Box::leak(Box::new(Queue::new(QUEUE_BYTES)));
    let spawned = std::thread::Builder::new()
        .name("console".into())
        .spawn(move || queue.drain_into(&mut std::io::stderr()));
    if spawned.is_ok() {
        let _ = QUEUE.set(queue);
    }
}

/// Write PID 1's own `line` (newline included) to the console without waiting for it.
pub fn write(line: &[u8]) {
    write_line(line, true);
}

/// Write a container's `line` (newline included) to the console without waiting for it.
pub fn write_container(line: &[u8]) {
    write_line(line, false);
}

fn write_line(line: &[u8], own: bool) {
    match QUEUE.get() {
        Some(q) => q.push(line, own),
        None => {
            let _ = std::io::stderr().write_all(line);
        }
    }
}

/// Wait up to `limit` for queued lines to reach the console (before power-off).
pub fn flush(limit: Duration) {
    if let Some(q) = QUEUE.get() {
        q.flush(limit);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A console that takes nothing until it is opened.
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let (lock, cv) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cv.wait(open).unwrap();
            }
            self.seen.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_console_never_blocks_and_drops_are_reported() {
        let queue: &'static Queue = Box::leak(Box::new(Queue::new(1000)));
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut gate = Gate {
            open: open.clone(),
            seen: seen.clone(),
        };
        std::thread::spawn(move || queue.drain_into(&mut gate));
        let t0 = Instant::now();
        for i in 0..10_000 {
            queue.push(format!("line {i:05}\n").as_bytes(), false);
        }
        // PID 1's own lines still fit in the quarter kept for them.
        queue.push(b"init: own\n", true);
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        // What was dropped and not reported yet (a report may have gone with the first
        // batch the writer took).
        let (lines, bytes) = queue.dropped();
        assert_eq!(bytes, lines * 11);
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        queue.flush(Duration::from_secs(5));
        let text = String::from_utf8(seen.lock().unwrap().clone()).unwrap();
        assert!(text.starts_with("line 00000\n"), "{text}");
        assert!(text.contains("init: own\n"), "{text}");
        assert!(
            text.contains(&format!("console: dropped {lines} lines ({bytes} bytes)")),
            "{text}"
        );
        // Every line was either written or counted in a report.
        let written = text.lines().filter(|l| l.starts_with("line ")).count() as u64;
        let reported: u64 = text
            .lines()
            .filter_map(|l| {
                l.split_once("console: dropped ")?
                    .1
                    .split(' ')
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
            .sum();
        assert_eq!(written + reported, 10_000, "{text}");
        assert!(reported > 9_000, "{reported}");
        // Nothing is kept past the limit: the batch the writer held when it got stuck (at
        // most the limit), what queued behind it (at most the limit) and the reports.
        assert!(text.len() <= 2 * 1000 + 300, "{}", text.len());
        queue.push(b"after\n", false);
        queue.flush(Duration::from_secs(5));
        assert!(String::from_utf8_lossy(&seen.lock().unwrap()).ends_with("after\n"));
    }
}
