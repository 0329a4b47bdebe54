//! A container's output: each line goes to a bounded in-memory ring (for `svc logs`), to
//! `/var/log/NAME.log` (rotated to `NAME.log.1` at a size limit) and, optionally, to the
//! console with the container's name in front.
//!
//! Everything PID 1 holds for a container is bounded whatever the container writes: a line
//! is cut at [`MAX_LINE`] bytes (the rest, up to the next newline, is dropped and the cut is
//! marked), the ring holds at most [`RING_LINES`] lines and [`RING_BYTES`] bytes, the files
//! at most twice [`ROTATE_BYTES`], and the console queue is shared and fixed
//! ([`crate::console`]).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};

/// Lines kept in memory per container.
pub const RING_LINES: usize = 1000;
/// Bytes of lines kept in memory per container.
pub const RING_BYTES: usize = 256 * 1024;
/// Size at which a log file is rotated.
pub const ROTATE_BYTES: u64 = 1 << 20;
/// Longest line kept; longer ones are cut there.
pub const MAX_LINE: usize = 4096;
/// What marks a cut line.
pub const CUT_MARK: &str = " [line cut at 4096 bytes]";

/// Splits a byte stream into lines of at most [`MAX_LINE`] bytes: a longer line is handed on
/// when it reaches the limit, marked as cut, and its rest up to the next newline is skipped.
#[derive(Default)]
pub struct LineCutter {
    line: Vec<u8>,
    skipping: bool,
}

impl LineCutter {
    /// Feed `data`; `emit` gets each complete (or cut) line, without its newline, and
    /// whether it was cut.
    pub fn feed(&mut self, mut data: &[u8], emit: &mut dyn FnMut(&[u8], bool)) {
        while !data.is_empty() {
            let nl = data.iter().position(|b| *b == b'\n');
            let (chunk, rest, ends) = match nl {
                Some(i) => (&data[..i], &data[i + 1..], true),
                None => (data, &[][..], false),
            };
            data = rest;
            if self.skipping {
                self.skipping = !ends;
                continue;
            }
            let room = MAX_LINE - self.line.len();
            if chunk.len() > room || (chunk.len() == room && !ends) {
                self.line.extend_from_slice(&chunk[..room]);
                emit(trim_cr(&self.line), true);
                self.line.clear();
                self.skipping = !ends;
                continue;
            }
            self.line.extend_from_slice(chunk);
            if ends {
                emit(trim_cr(&self.line), false);
                self.line.clear();
            }
        }
    }

    /// The end of the stream: a last line without a newline is handed on.
    pub fn finish(&mut self, emit: &mut dyn FnMut(&[u8], bool)) {
        if !self.line.is_empty() {
            emit(trim_cr(&self.line), false);
            self.line.clear();
        }
        self.skipping = false;
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

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
    /// Bytes of the lines in `ring`.
    ring_bytes: usize,
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
                ring_bytes: 0,
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
            crate::console::write_container(console_line(&self.name, line).as_bytes());
        }
        let Ok(mut s) = self.state.lock() else { return };
        while s.ring.len() >= RING_LINES || s.ring_bytes + line.len() > RING_BYTES {
            let Some(old) = s.ring.pop_front() else { break };
            s.ring_bytes -= old.len();
            s.first += 1;
        }
        s.ring_bytes += line.len();
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

    /// Read `from` line by line into this log until end of file (on its own thread), with
    /// lines cut at [`MAX_LINE`] bytes.
    pub fn follow(self: std::sync::Arc<Self>, mut from: impl Read + Send + 'static) {
        self.readers
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let logs = self.clone();
        let spawned = std::thread::Builder::new()
            .name("logs".into())
            .stack_size(128 * 1024)
            .spawn(move || {
                let mut cutter = LineCutter::default();
                let mut emit = |line: &[u8], cut: bool| {
                    let mut text = String::from_utf8_lossy(line).into_owned();
                    if cut {
                        text.push_str(CUT_MARK);
                    }
                    logs.push(&text);
                };
                let mut buf = [0u8; 8192];
                loop {
                    match from.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => cutter.feed(&buf[..n], &mut emit),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => break,
                    }
                }
                cutter.finish(&mut emit);
                logs.readers
                    .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            });
        if spawned.is_err() {
            self.readers
                .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
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

    fn cut(chunks: &[&[u8]]) -> Vec<(String, bool)> {
        let mut c = LineCutter::default();
        let mut out = Vec::new();
        let mut emit = |l: &[u8], cut: bool| out.push((String::from_utf8_lossy(l).into(), cut));
        for chunk in chunks {
            c.feed(chunk, &mut emit);
        }
        c.finish(&mut emit);
        out
    }

    #[test]
    fn lines_split_across_reads_and_crlf() {
        assert_eq!(
            cut(&[b"ab", b"c\r\nde", b"f\n\nlast"]),
            [
                ("abc".into(), false),
                ("def".into(), false),
                ("".into(), false),
                ("last".into(), false)
            ]
        );
    }

    #[test]
    fn long_lines_are_cut_and_their_rest_skipped() {
        let big = vec![b'x'; MAX_LINE * 3 + 7];
        let out = cut(&[b"head\n", &big[..5000], &big[5000..], b"\nnext\n"]);
        assert_eq!(
            out.len(),
            3,
            "{:?}",
            out.iter().map(|l| l.0.len()).collect::<Vec<_>>()
        );
        assert_eq!(out[0], ("head".into(), false));
        assert_eq!(out[1], ("x".repeat(MAX_LINE), true));
        assert_eq!(out[2], ("next".into(), false));
        // Exactly MAX_LINE bytes and a newline is a whole line; one more byte is cut.
        let exact = [vec![b'y'; MAX_LINE], b"\nz\n".to_vec()].concat();
        assert_eq!(
            cut(&[&exact]),
            [("y".repeat(MAX_LINE), false), ("z".into(), false)]
        );
        let over = [vec![b'y'; MAX_LINE + 1], b"\nz\n".to_vec()].concat();
        assert_eq!(
            cut(&[&over]),
            [("y".repeat(MAX_LINE), true), ("z".into(), false)]
        );
        // A never-ending line is handed on once, when it reaches the limit.
        let mut c = LineCutter::default();
        let mut n = 0;
        for _ in 0..1000 {
            c.feed(&[0u8; 8192], &mut |l, cut| {
                assert!(cut && l.len() == MAX_LINE);
                n += 1;
            });
        }
        assert_eq!(n, 1);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes() {
        let l = Logs::new("t", "t", None, false);
        let line = "z".repeat(MAX_LINE);
        for _ in 0..RING_LINES {
            l.push(&line);
        }
        let (lines, next) = l.since(0, None);
        assert_eq!(lines.len(), RING_BYTES / MAX_LINE);
        assert_eq!(next, RING_LINES as u64);
        l.push("small");
        assert_eq!(l.tail(1), ["small"]);
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
