//! What the supervisor does to the world outside it, behind [`World`]: the clock, its own
//! console lines, the containers' processes, output and cgroups, and what it waits for
//! (signals, exits, requests). [`System`] is the real one; the unit tests drive the
//! supervisor's decisions with a fake.

use std::io::{PipeReader, Read};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use super::logs::Logs;
use super::{Action, Event, Waker, handled_signals};
use crate::runtime::{self, cgroups, exit_code};

/// What woke the supervisor.
pub enum Input {
    /// A signal asking for a shutdown.
    Signal(Action),
    /// A child process ended with this status (128+N for signal N).
    Exit(Pid, i32),
    /// Something from another thread: a power button, a control request.
    Event(Event),
}

/// A container's output, read to its end by its log.
pub type Output = Box<dyn Read + Send>;

/// Everything the supervisor does outside its own state.
pub trait World {
    /// The time now.
    fn now(&self) -> Instant;
    /// Print one of the supervisor's own lines on the console.
    fn log(&self, message: &str);
    /// The folder holding the bundles, as `SECTION/NAME/config.json`.
    fn containers_dir(&self) -> PathBuf;
    /// The log of a container: `name` on the console, `file` on disk.
    fn logs(&self, name: &str, file: &str) -> Logs;
    /// Start the stage-1 process of the bundle in `dir`: its pid and its output.
    fn spawn(&self, dir: &Path) -> Result<(Pid, Option<Output>), String>;
    /// Ask process `pid` to end (SIGTERM).
    fn terminate(&self, pid: Pid);
    /// Kill every process of `cgroup`, and `pid`.
    fn kill(&self, cgroup: &Path, pid: Option<Pid>);
    /// Remove `cgroup`: false while it still has processes.
    fn remove_cgroup(&self, cgroup: &Path) -> bool;
    /// Wait until something happens or until `until` (a minute at most), then say what.
    fn wait(&self, until: Option<Instant>) -> Vec<Input>;
}

/// The machine PID 1 runs: signals from a signalfd, children reaped with waitpid, events
/// from other threads through a [`Waker`].
pub struct System {
    signals: SignalFd,
    wake: PipeReader,
    events: Receiver<Event>,
}

impl System {
    /// Take over the handled signals (already blocked by the caller); the waker reaches
    /// [`World::wait`] from other threads.
    pub fn new() -> Result<(System, Waker), String> {
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| format!("signalfd: {e}"))?;
        let (wake, pipe) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (tx, events) = std::sync::mpsc::channel();
        let waker = Waker {
            events: tx,
            pipe: Some(Arc::new(pipe)),
        };
        Ok((
            System {
                signals,
                wake,
                events,
            },
            waker,
        ))
    }

    /// Poll the signalfd and the wake pipe until one is ready or `until`.
    fn poll(&self, until: Option<Instant>) {
        let timeout = match until {
            Some(t) => {
                let ms = t
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as u16;
                PollTimeout::from(ms.max(1))
            }
            None => PollTimeout::from(60_000u16),
        };
        let mut fds = [
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.wake.as_fd(), PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, timeout);
        if fds[1]
            .revents()
            .is_some_and(|r| r.contains(PollFlags::POLLIN))
        {
            let mut buf = [0u8; 64];
            let _ = (&self.wake).read(&mut buf);
        }
    }
}

/// The shutdown a signal asks for, if it asks for one.
fn shutdown_for(signo: u32) -> Option<Action> {
    match Signal::try_from(signo as i32) {
        Ok(Signal::SIGTERM | Signal::SIGINT) => Some(Action::Reboot),
        Ok(Signal::SIGUSR2 | Signal::SIGPWR | Signal::SIGUSR1) => Some(Action::Poweroff),
        _ => None,
    }
}

impl World for System {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn log(&self, message: &str) {
        crate::log::log(message);
    }

    fn containers_dir(&self) -> PathBuf {
        PathBuf::from("/containers")
    }

    fn logs(&self, name: &str, file: &str) -> Logs {
        Logs::new(name, file, Some(PathBuf::from("/var/log")), true)
    }

    fn spawn(&self, dir: &Path) -> Result<(Pid, Option<Output>), String> {
        let (reader, writer) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let err_writer = writer.try_clone().map_err(|e| format!("pipe: {e}"))?;
        let child = Command::new("/proc/self/exe")
            .arg(runtime::STAGE1)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(writer)
            .stderr(err_writer)
            .spawn()
            .map_err(|e| format!("starting: {e}"))?;
        Ok((Pid::from_raw(child.id() as i32), Some(Box::new(reader))))
    }

    fn terminate(&self, pid: Pid) {
        let _ = kill(pid, Signal::SIGTERM);
    }

    fn kill(&self, cgroup: &Path, pid: Option<Pid>) {
        cgroups::kill(cgroup);
        if let Some(pid) = pid {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }

    fn remove_cgroup(&self, cgroup: &Path) -> bool {
        cgroups::remove(cgroup)
    }

    fn wait(&self, until: Option<Instant>) -> Vec<Input> {
        self.poll(until);
        let mut inputs = Vec::new();
        while let Ok(Some(info)) = self.signals.read_signal() {
            inputs.extend(shutdown_for(info.ssi_signo).map(Input::Signal));
        }
        // Every exited child: containers' and orphans' alike.
        while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            let Some(pid) = status.pid() else { break };
            if let Some(code) = exit_code(status) {
                inputs.push(Input::Exit(pid, code));
            }
        }
        inputs.extend(self.events.try_iter().map(Input::Event));
        inputs
    }
}
