//! A guest booted by `osbuild run qemu` in the foreground, its console read as it comes,
//! and redis in it reached through a published port.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A guest under `osbuild run qemu` in the foreground: the console (and QEMU's monitor,
/// behind Ctrl-A c) on pipes.
pub struct Guest {
    pub arch: String,
    pub qemu: Child,
    stdin: ChildStdin,
    console: Arc<Mutex<String>>,
}

impl Guest {
    pub fn boot(arch: &str, image: &Path, port: u16) -> Guest {
        Guest::boot_with(arch, image, port, &[])
    }

    /// [`Guest::boot`] with more `run qemu` options (`--disk ...`).
    pub fn boot_with(arch: &str, image: &Path, port: u16, extra: &[&str]) -> Guest {
        let publish = format!("{port}:6379");
        let mut qemu = Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .args([
                "run", "qemu", "--arch", arch, "--accel", "tcg", "--mem", "1024",
            ])
            .args(["--publish", &publish])
            .args(extra)
            .arg(image)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let console = Arc::new(Mutex::new(String::new()));
        for out in [
            Box::new(qemu.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(qemu.stderr.take().unwrap()),
        ] {
            let console = console.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { break };
                    let mut c = console.lock().unwrap();
                    c.push_str(line.trim_end_matches('\r'));
                    c.push('\n');
                }
            });
        }
        let stdin = qemu.stdin.take().unwrap();
        Guest {
            arch: arch.to_string(),
            qemu,
            stdin,
            console,
        }
    }

    pub fn console(&self) -> String {
        self.console.lock().unwrap().clone()
    }

    /// Wait until the console shows `text` `times` times.
    pub fn wait_for(&mut self, text: &str, times: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.console().matches(text).count() < times {
            if Instant::now() > deadline || self.qemu.try_wait().unwrap().is_some() {
                let _ = self.qemu.kill();
                panic!(
                    "{}: {text:?} did not appear {times} time(s) on the console:\n{}",
                    self.arch,
                    self.console()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn type_line(&mut self, line: &str) {
        self.stdin.write_all(line.as_bytes()).unwrap();
        self.stdin.write_all(b"\n").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Type `command` in the console shell and wait for one more line holding `marker`; the
    /// console then. (Quotes splitting the marker in the command keep its echo from
    /// matching.)
    pub fn run(&mut self, command: &str, marker: &str) -> String {
        let seen = self.console().matches(marker).count();
        self.type_line(command);
        self.wait_for(marker, seen + 1, Duration::from_secs(60));
        self.console()
    }

    /// Send `command` to QEMU's monitor (behind Ctrl-A c on the console).
    pub fn monitor(&mut self, command: &str) {
        self.stdin.write_all(b"\x01c").unwrap();
        self.type_line(command);
    }

    /// Wait for QEMU to exit; its status, or None at the timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.qemu.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        None
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
    }
}

pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let o = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// PING until PONG comes back (the forward answers before redis listens).
pub fn wait_for_pong(guest: &mut Guest, port: u16, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if redis_cli(port, &["PING"]) == "PONG" {
            return;
        }
        if Instant::now() > deadline || guest.qemu.try_wait().unwrap().is_some() {
            panic!(
                "{}: no PONG from redis through port {port}:\n{}",
                guest.arch,
                guest.console()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `[   12.345678] init: TEXT` lines: (seconds, text).
pub fn init_lines(console: &str) -> Vec<(f64, &str)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix('[')?;
            let (t, text) = rest.split_once("] init: ")?;
            Some((t.trim().parse().ok()?, text))
        })
        .collect()
}

/// How late each restart of `name` came against the back-off it announced: (announced
/// delay, actual delay) per restart.
pub fn restart_delays(console: &str, name: &str) -> Vec<(f64, f64)> {
    let lines = init_lines(console);
    let mut out = Vec::new();
    let mut pending: Option<(f64, f64)> = None;
    for (t, text) in lines {
        let Some(rest) = text.strip_prefix(name).and_then(|r| r.strip_prefix(": ")) else {
            continue;
        };
        if let Some(d) = rest
            .split_once("; restarting in ")
            .and_then(|(_, d)| d.strip_suffix('s'))
            .and_then(|d| d.parse::<f64>().ok())
        {
            pending = Some((t, d));
        } else if rest.starts_with("started (restart")
            && let Some((at, announced)) = pending.take()
        {
            out.push((announced, t - at));
        }
    }
    out
}

/// The number after `key` on the last console line holding `prefix` (after it).
pub fn figure(console: &str, prefix: &str, key: &str) -> u64 {
    console
        .lines()
        .rev()
        .filter_map(|l| l.trim_end().split_once(prefix).map(|(_, rest)| rest))
        .find_map(|l| l.split_once(key)?.1.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix:?} line with {key:?}:\n{console}"))
}
