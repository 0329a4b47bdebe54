//! Tests that need what this machine lacks (root, a tool, a cgroup2 mount) say so instead of
//! passing green.
//!
//! [`skip`] writes `SKIPPED test-name: why` straight to the terminal (libtest's capture takes
//! only `print!`/`eprint!`, so the line shows even for a passing test) and appends it to
//! `$OSBUILD_SKIP_LOG` when that is set, where a run's skips are counted. With `CI=true` a
//! skip fails the test instead: the CI machine is set up to run every test.

use std::io::Write;

/// Report the calling test as skipped because of `why`; the caller returns right after.
///
/// # Panics
/// Under `CI=true`, where a skipped test would hide a missing piece of the setup.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let line = format!("SKIPPED {test}: {why}\n");
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run here ({why}), and CI=true runs every test");
    }
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("OSBUILD_SKIP_LOG") {
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            let _ = writeln!(std::io::stderr(), "OSBUILD_SKIP_LOG: {e}");
        }
    }
}

/// Whether this process runs as root (effective uid 0), read from /proc.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_read_from_proc() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let effective = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            .unwrap()
            .to_string();
        assert_eq!(is_root(), effective == "0");
    }
}
