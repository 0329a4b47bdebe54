//! Progress reporting: bars on a terminal, plain lines elsewhere (or with `CI=true`), nothing
//! when quiet. Every stage of a build reports through one [`Reporter`].

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Animated bars on standard error.
    Bars,
    /// One line per finished task on standard error.
    Lines,
    /// Nothing but errors.
    Quiet,
}

impl Mode {
    /// Bars when standard error is a terminal and `CI` is not set to true, lines otherwise.
    pub fn detect(quiet: bool) -> Mode {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() && !ci {
            Mode::Bars
        } else {
            Mode::Lines
        }
    }
}

/// The shared progress sink of one build. Cheap to clone.
#[derive(Clone)]
pub struct Reporter {
    mode: Mode,
    verbose: bool,
    multi: Arc<MultiProgress>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("mode", &self.mode)
            .finish()
    }
}

impl Reporter {
    /// A reporter in the given mode; `verbose` also prints [`Reporter::detail`] lines.
    pub fn new(mode: Mode, verbose: bool) -> Self {
        let multi = MultiProgress::with_draw_target(match mode {
            Mode::Bars => ProgressDrawTarget::stderr_with_hz(10),
            Mode::Lines | Mode::Quiet => ProgressDrawTarget::hidden(),
        });
        Reporter {
            mode,
            verbose,
            multi: Arc::new(multi),
        }
    }

    /// A reporter that shows nothing (for library callers and tests).
    pub fn quiet() -> Self {
        Reporter::new(Mode::Quiet, false)
    }

    /// A one-off informational line (shown unless quiet).
    pub fn info(&self, msg: impl AsRef<str>) {
        match self.mode {
            Mode::Quiet => {}
            Mode::Bars => {
                let _ = self.multi.println(msg.as_ref());
            }
            Mode::Lines => eprintln!("{}", msg.as_ref()),
        }
    }

    /// A line shown only with `-v`.
    pub fn detail(&self, msg: impl AsRef<str>) {
        if self.verbose {
            self.info(msg);
        }
    }

    /// A warning, shown even when quiet.
    pub fn warn(&self, msg: impl AsRef<str>) {
        match self.mode {
            Mode::Bars => {
                let _ = self.multi.println(format!("warning: {}", msg.as_ref()));
            }
            Mode::Lines | Mode::Quiet => eprintln!("warning: {}", msg.as_ref()),
        }
    }

    /// Start a task; `total` is its size in bytes when known.
    pub fn task(&self, label: impl Into<String>, total: Option<u64>) -> Task {
        let label = label.into();
        let bar = match self.mode {
            Mode::Bars => {
                let bar = match total {
                    Some(t) => ProgressBar::new(t).with_style(
                        ProgressStyle::with_template(
                            "{msg:40!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    ),
                    None => ProgressBar::new_spinner().with_style(
                        ProgressStyle::with_template("{spinner} {msg:40!} {bytes} {elapsed}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    ),
                };
                let bar = self.multi.add(bar);
                bar.set_message(label.clone());
                bar.enable_steady_tick(Duration::from_millis(200));
                Some(bar)
            }
            Mode::Lines | Mode::Quiet => None,
        };
        Task {
            label,
            bar,
            mode: self.mode,
            started: Instant::now(),
            done: 0.into(),
        }
    }
}

/// One piece of work being reported (a download, a flatten, a compression).
#[derive(Debug)]
pub struct Task {
    label: String,
    bar: Option<ProgressBar>,
    mode: Mode,
    started: Instant,
    done: std::sync::atomic::AtomicU64,
}

impl Task {
    /// Count `n` more bytes done.
    pub fn inc(&self, n: u64) {
        self.done.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Finish the task, with a short note of the result (`"12.3 MiB"`, `"cached"`).
    pub fn finish(self, note: impl AsRef<str>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        match self.mode {
            Mode::Bars => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                }
                eprintln!("{}: {} ({elapsed:.1}s)", self.label, note.as_ref());
            }
            Mode::Lines => eprintln!("{}: {} ({elapsed:.1}s)", self.label, note.as_ref()),
            Mode::Quiet => {}
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Bytes as a short human-readable size.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_picks_a_unit() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
