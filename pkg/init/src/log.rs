//! The boot log: lines on the console stamped with the time since the kernel started, so they
//! line up with the kernel's own messages.

use std::io::Write;

/// Seconds since boot on the monotonic clock, the one the kernel stamps its messages with.
pub fn uptime() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// Print `message` as `[  SECONDS] init: message` on standard error (the console for PID 1).
pub fn log(message: &str) {
    let line = format!("[{:>12.6}] init: {message}\n", uptime());
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// `log!("...", args)`: [`log`] with formatting.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::log(&format!($($arg)*)) };
}
