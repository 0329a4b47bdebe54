//! The boot log: lines on the console stamped with the time since the kernel started, so they
//! line up with the kernel's own messages.

/// Seconds since boot on the monotonic clock, the one the kernel stamps its messages with.
pub fn uptime() -> f64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 / 1e9)
        .unwrap_or(0.0)
}

/// `message` as the console shows it: `[  SECONDS] init: message` and a newline.
pub fn stamp(message: &str) -> String {
    format!("[{:>12.6}] init: {message}\n", uptime())
}

/// Print `message` as [`stamp`] makes it on the console (standard error for PID 1), without
/// waiting for the console once PID 1 has started its writer ([`crate::console`]).
pub fn log(message: &str) {
    crate::console::write(stamp(message).as_bytes());
}

/// `log!("...", args)`: [`log`] with formatting.
#[macro_export]
macro_rules! log {
    ($($arg:tt)*) => { $crate::log::log(&format!($($arg)*)) };
}
