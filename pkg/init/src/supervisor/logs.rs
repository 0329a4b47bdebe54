//! A container's output: each line goes to a bounded in-memory ring (for `svc logs`), to
//! `/var/log/NAME.log` (rotated to `NAME.log.1` at a size limit) and, optionally, to the
//! console with the container's name in front.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

/// Lines kept in memory per container.
pub const RING_LINES: usize = 1000;
/// Size at which a log file is rotated.
pub const ROTATE_BYTES: u64 = 1 << 20;

/// One container's log.
pub struct Logs {
    name: String,
    console: bool,
    file: PathBuf,
    state: Mutex<State>,
    more: Condvar,
    readers: std::sync::atomic::AtomicUsize,
}

struct State {
    /// Number of the first line in `ring`.
    first: u64,
    ring: VecDeque<String>,
    out: Option<File>,
    written: u64,
}

impl Logs {
    /// The log of container `name`, kept in `dir/FILE.log` (no file when `dir` is None).
    pub fn new(name: &str, file: &str, dir: Option<PathBuf>, console: bool) -> Logs {
        let file = dir.unwrap_or_default().join(format!("{file}.log"));
        Logs {
            name: name.to_string(),
            console,
            file,
            state: Mutex::new(State {
                first: 0,
                ring: VecDeque::new(),
                out: None,
                written: 0,
            }),
            more: Condvar::new(),
            readers: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Record one line of output.
    pub fn push(&self, line: &str) {
        if self.console {
            let _ = std::io::stderr().write_all(console_line(&self.name, line).as_bytes());
        }
        let Ok(mut s) = self.state.lock() else { return };
        if s.ring.len() == RING_LINES {
            s.ring.pop_front();
            s.first += 1;
        }
        s.ring.push_back(line.to_string());
        if self
            .file
            .parent()
            .is_some_and(|p| !p.as_os_str().is_empty())
        {
            self.write_file(&mut s, line);
        }
        self.more.notify_all();
    }

    fn write_file(&self, s: &mut State, line: &str) {
        if s.written >= ROTATE_BYTES {
            s.out = None;
            let _ = std::fs::rename(&self.file, self.file.with_extension("log.1"));
            s.written = 0;
        }
        if s.out.is_none() {
            s.out = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.file)
                .ok();
            s.written = s
                .out
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map_or(0, |m| m.len());
        }
        if let Some(f) = s.out.as_mut()
            && f.write_all(format!("{line}\n").as_bytes()).is_ok()
        {
            s.written += line.len() as u64 + 1;
        }
    }

    /// Lines numbered from `from` on (the oldest kept when `from` is older), and the number
    /// of the next line. Waits up to `wait` for one when there is none yet.
    pub fn since(&self, from: u64, wait: Option<std::time::Duration>) -> (Vec<String>, u64) {
        let Ok(mut s) = self.state.lock() else {
            return (Vec::new(), from);
        };
        let end = s.first + s.ring.len() as u64;
        if from >= end
            && let Some(w) = wait
        {
            s = match self.more.wait_timeout(s, w) {
                Ok((g, _)) => g,
                Err(_) => return (Vec::new(), from),
            };
        }
        let end = s.first + s.ring.len() as u64;
        let start = from.max(s.first);
        let lines = s
            .ring
            .iter()
            .skip((start - s.first) as usize)
            .cloned()
            .collect();
        (lines, end)
    }

    /// The last `n` lines.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let Ok(s) = self.state.lock() else {
            return Vec::new();
        };
        s.ring
            .iter()
            .skip(s.ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// Read `from` line by line into this log until end of file (on its own thread).
    pub fn follow(self: std::sync::Arc<Self>, from: impl Read + Send + 'static) {
        self.readers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::spawn(move || {
            let mut r = BufReader::new(from);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        self.push(line.trim_end_matches(['\n', '\r']));
                    }
                }
            }
            self.readers
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        });
    }

    /// Wait up to `limit` for the output of exited processes to be read to its end.
    pub fn drain(&self, limit: std::time::Duration) {
        let end = std::time::Instant::now() + limit;
        while self.readers.load(std::sync::atomic::Ordering::SeqCst) > 0
            && std::time::Instant::now() < end
        {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
}

/// `line` as the console shows it: behind the container's name, unless the program already
/// names itself that way (`dhcpcd: eth0: leased ...`).
fn console_line(name: &str, line: &str) -> String {
    match line.strip_prefix(name) {
        Some(rest) if rest.starts_with(": ") => format!("{line}\n"),
        _ => format!("{name}: {line}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_are_named_once() {
        assert_eq!(console_line("redis", "ready"), "redis: ready\n");
        assert_eq!(
            console_line("dhcpcd", "dhcpcd: eth0: up"),
            "dhcpcd: eth0: up\n"
        );
        assert_eq!(console_line("dhcp", "dhcpcd: x"), "dhcp: dhcpcd: x\n");
    }

    #[test]
    fn ring_keeps_the_last_lines_and_numbers_them() {
        let l = Logs::new("t", "t", None, false);
        for i in 0..RING_LINES + 5 {
            l.push(&format!("line {i}"));
        }
        assert_eq!(l.tail(2), ["line 1003", "line 1004"]);
        let (lines, next) = l.since(0, None);
        assert_eq!(lines.len(), RING_LINES);
        assert_eq!(lines[0], "line 5");
        assert_eq!(next, RING_LINES as u64 + 5);
        assert!(l.since(next, None).0.is_empty());
    }

    #[test]
    fn files_rotate_at_the_limit() {
        let d = tempfile::tempdir().unwrap();
        let l = Logs::new("svc", "svc", Some(d.path().to_path_buf()), false);
        let line = "x".repeat(1023);
        for _ in 0..(ROTATE_BYTES / 1024 + 10) {
            l.push(&line);
        }
        let old = std::fs::metadata(d.path().join("svc.log.1")).unwrap().len();
        let new = std::fs::metadata(d.path().join("svc.log")).unwrap().len();
        assert_eq!(old, ROTATE_BYTES);
        assert_eq!(new, 10 * 1024);
    }
}
