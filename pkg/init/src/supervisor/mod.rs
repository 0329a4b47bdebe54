//! The supervisor: PID 1's main loop. It runs the onboot containers one at a time (each
//! within its timeout), then keeps the services running (restart policy with back-off,
//! `dependsOn` ordering), answers the control socket, and on poweroff or reboot stops the
//! services, runs the onshutdown containers and hands over to [`crate::pid1::power`].

pub mod api;
pub mod container;
pub mod logs;

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

use crate::log;
use crate::runtime::exit_code;
use container::{Container, Restart, Section, State, backoff, describe_exit};

/// How the system ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Power off.
    Poweroff,
    /// Reboot.
    Reboot,
}

/// Something for the main loop from another thread.
pub enum Event {
    /// Shut down.
    Shutdown(Action),
    /// A control request, the pid of the process that sent it, and where to answer.
    Api(api::Request, Option<i32>, Sender<api::Reply>),
}

/// Wakes the main loop from other threads.
#[derive(Clone)]
pub struct Waker {
    events: Sender<Event>,
    pipe: Arc<std::io::PipeWriter>,
}

impl Waker {
    /// Hand `event` to the main loop.
    pub fn send(&self, event: Event) {
        if self.events.send(event).is_ok() {
            let _ = std::io::Write::write(&mut &*self.pipe, &[1]);
        }
    }
}

/// Signals PID 1 handles (blocked and read from a signalfd).
pub fn handled_signals() -> SigSet {
    let mut s = SigSet::empty();
    for sig in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGINT,
        Signal::SIGPWR,
        Signal::SIGHUP,
    ] {
        s.add(sig);
    }
    s
}

/// Settings from the kernel command line.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Time services get between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// The supervisor's state.
pub struct Supervisor {
    containers: Vec<Container>,
    signals: SignalFd,
    wake: std::io::PipeReader,
    events: Receiver<Event>,
    waker: Waker,
    shutdown: Option<Action>,
    settings: Settings,
    /// Cgroups of exited containers still to remove, and until when to try.
    stale_cgroups: Vec<(std::path::PathBuf, Instant)>,
}

/// How long the cgroup of an exited container is retried for removal.
const CGROUP_REMOVAL: Duration = Duration::from_secs(30);

/// Read the bundles of `section` in name order.
fn bundles(section: Section) -> Vec<Container> {
    let dir = Path::new("/containers").join(section.dir());
    let mut dirs: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    dirs.sort();
    dirs.iter()
        .filter_map(|d| match Container::open(d, section) {
            Ok(c) => Some(c),
            Err(e) => {
                log!("{}: {e}", d.display());
                None
            }
        })
        .collect()
}

impl Supervisor {
    /// Load the bundles and take over the signals (already blocked by the caller).
    pub fn new(settings: Settings) -> Result<Supervisor, String> {
        let signals = SignalFd::with_flags(
            &handled_signals(),
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
        )
        .map_err(|e| format!("signalfd: {e}"))?;
        let (wake, pipe) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
        let (tx, events) = std::sync::mpsc::channel();
        let mut containers = bundles(Section::Onboot);
        containers.extend(bundles(Section::Service));
        containers.extend(bundles(Section::Onshutdown));
        Ok(Supervisor {
            containers,
            signals,
            wake,
            events,
            waker: Waker {
                events: tx,
                pipe: Arc::new(pipe),
            },
            shutdown: None,
            settings,
            stale_cgroups: Vec::new(),
        })
    }

    /// A handle other threads use to reach the loop.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn indexes(&self, section: Section) -> Vec<usize> {
        (0..self.containers.len())
            .filter(|i| self.containers[*i].section == section)
            .collect()
    }

    /// Run the system: onboot, services until a shutdown, then the shutdown sequence.
    pub fn run(mut self) -> Action {
        let t0 = Instant::now();
        for i in self.indexes(Section::Onboot) {
            if self.shutdown.is_some() {
                break;
            }
            self.run_once(i);
        }
        log!("onboot done in {:.3}s", t0.elapsed().as_secs_f64());
        if self.shutdown.is_none() {
            self.services();
        }
        let action = self.shutdown.unwrap_or(Action::Poweroff);
        self.shut_down();
        action
    }

    /// Run an onboot or onshutdown container to its end or its timeout.
    fn run_once(&mut self, i: usize) {
        let c = &mut self.containers[i];
        let label = format!("{} {}", c.section.dir(), c.name);
        if let Err(e) = c.start() {
            log!("{label}: {e}");
            return;
        }
        let deadline = c.timeout.map(|t| Instant::now() + t);
        let mut timed_out = false;
        while self.containers[i].state == State::Running {
            let c = &self.containers[i];
            let wake_at = if timed_out { c.kill_at } else { deadline };
            self.step(wake_at);
            let c = &mut self.containers[i];
            if c.state == State::Running
                && !timed_out
                && deadline.is_some_and(|d| Instant::now() >= d)
            {
                log!(
                    "{label}: still running after its timeout of {:?}; killing it and going on",
                    c.timeout.unwrap_or_default()
                );
                timed_out = true;
                c.kill_now();
                c.kill_at = Some(Instant::now() + Duration::from_secs(5));
            } else if timed_out
                && c.state == State::Running
                && c.kill_at.is_some_and(|k| Instant::now() >= k)
            {
                log!("{label}: does not die; leaving it");
                c.state = State::Failed;
                c.pid = None;
                let cgroup = c.cgroup.clone();
                self.stale_cgroups
                    .push((cgroup, Instant::now() + CGROUP_REMOVAL));
            }
        }
        let c = &mut self.containers[i];
        if timed_out {
            c.state = State::Failed;
            return;
        }
        let took = c
            .started
            .map(|s| s.elapsed().as_secs_f64())
            .unwrap_or_default();
        match c.last_exit {
            Some(0) => log!("{label}: done in {took:.3}s"),
            Some(code) => {
                c.logs.drain(Duration::from_millis(500));
                log!("{label}: {}; its last output:", describe_exit(code));
                for line in c.logs.tail(10) {
                    log!("  | {line}");
                }
            }
            None => {}
        }
    }

    fn services(&mut self) {
        let services = self.indexes(Section::Service);
        log!("starting {} services", services.len());
        let t0 = Instant::now();
        let mut all_started = false;
        while self.shutdown.is_none() {
            let now = Instant::now();
            for &i in &services {
                let ready = self.deps_running(i);
                let c = &mut self.containers[i];
                let due = match c.state {
                    State::Waiting => ready,
                    State::Backoff => c.next_start.is_some_and(|t| now >= t) && ready,
                    _ => false,
                };
                if due {
                    if c.state == State::Backoff {
                        c.restarts += 1;
                    }
                    match c.start() {
                        Ok(()) => {
                            if c.restarts > 0 {
                                log!("{}: started (restart {})", c.name, c.restarts)
                            } else {
                                log!("{}: started", c.name)
                            }
                            c.answer_up(api::done);
                        }
                        Err(e) => {
                            log!("{e}");
                            c.answer_up(|| api::failed(e.clone()));
                        }
                    }
                }
                if c.state == State::Running && c.kill_at.is_some_and(|k| now >= k) {
                    log!(
                        "{}: did not stop within {:?}; killing it",
                        c.name,
                        self.settings.grace
                    );
                    c.kill_now();
                }
            }
            if !all_started
                && services
                    .iter()
                    .all(|i| self.containers[*i].state != State::Waiting)
            {
                all_started = true;
                log!("all services started in {:.3}s", t0.elapsed().as_secs_f64());
            }
            let next = services
                .iter()
                .filter_map(|i| {
                    let c = &self.containers[*i];
                    [c.next_start, c.kill_at].into_iter().flatten().min()
                })
                .min();
            self.step(next);
        }
    }

    fn deps_running(&self, i: usize) -> bool {
        self.containers[i].depends_on.iter().all(|d| {
            self.containers
                .iter()
                .any(|c| c.section == Section::Service && &c.name == d && c.state == State::Running)
        })
    }

    /// Wait for something to happen (or `until`), then handle signals, exits and requests.
    fn step(&mut self, until: Option<Instant>) {
        // Stale cgroups are retried a few times a second while there are any.
        let until = if self.stale_cgroups.is_empty() {
            until
        } else {
            let soon = Instant::now() + Duration::from_millis(200);
            Some(until.map_or(soon, |u| u.min(soon)))
        };
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
        {
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
                let _ = self.wake.read(&mut buf);
            }
        }
        while let Ok(Some(info)) = self.signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGTERM | Signal::SIGINT) => self.request_shutdown(Action::Reboot),
                Ok(Signal::SIGUSR2 | Signal::SIGPWR | Signal::SIGUSR1) => {
                    self.request_shutdown(Action::Poweroff)
                }
                _ => {}
            }
        }
        self.reap();
        self.remove_stale_cgroups();
        while let Ok(event) = self.events.try_recv() {
            match event {
                Event::Shutdown(a) => self.request_shutdown(a),
                Event::Api(req, peer, reply) => {
                    let grace = self.settings.grace;
                    match api::answer(&mut self.containers, req, grace, peer) {
                        api::Answer::Now(r) => {
                            let _ = reply.send(r);
                        }
                        api::Answer::WhenDown(i) => self.containers[i].down_waiters.push(reply),
                        api::Answer::WhenUp(i) => self.containers[i].up_waiters.push(reply),
                    }
                }
            }
        }
    }

    fn remove_stale_cgroups(&mut self) {
        let now = Instant::now();
        self.stale_cgroups.retain(|(cgroup, until)| {
            if crate::runtime::cgroups::remove(cgroup) {
                return false;
            }
            if now >= *until {
                log!(
                    "{}: still has processes {:?} after its container exited; left in place",
                    cgroup.display(),
                    CGROUP_REMOVAL
                );
                return false;
            }
            true
        });
    }

    fn request_shutdown(&mut self, action: Action) {
        if self.shutdown.is_none() {
            log!(
                "{} requested",
                if action == Action::Poweroff {
                    "poweroff"
                } else {
                    "reboot"
                }
            );
            self.shutdown = Some(action);
        }
    }

    /// Collect every exited child: containers get their new state, orphans are just reaped.
    fn reap(&mut self) {
        loop {
            let status = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(s) => s,
                Err(_) => return,
            };
            let Some(pid) = status.pid() else { return };
            let Some(code) = exit_code(status) else {
                continue;
            };
            if let Some(c) = self.containers.iter_mut().find(|c| c.pid == Some(pid)) {
                exited(c, code);
                if !crate::runtime::cgroups::remove(&c.cgroup) {
                    self.stale_cgroups
                        .push((c.cgroup.clone(), Instant::now() + CGROUP_REMOVAL));
                }
            }
        }
    }

    /// Stop the services, run the onshutdown containers.
    fn shut_down(&mut self) {
        log!("stopping services");
        let grace = self.settings.grace;
        for c in self
            .containers
            .iter_mut()
            .filter(|c| c.section == Section::Service)
        {
            c.next_start = None;
            if c.state == State::Running {
                c.stop(grace);
            } else if c.state == State::Backoff || c.state == State::Waiting {
                c.state = State::Stopped;
            }
        }
        let deadline = Instant::now() + grace;
        while self
            .containers
            .iter()
            .any(|c| c.section == Section::Service && c.state == State::Running)
        {
            if Instant::now() >= deadline {
                for c in self
                    .containers
                    .iter_mut()
                    .filter(|c| c.state == State::Running)
                {
                    log!("{}: did not stop within {grace:?}; killing it", c.name);
                    c.kill_now();
                }
                let hard = Instant::now() + Duration::from_secs(3);
                while Instant::now() < hard
                    && self
                        .containers
                        .iter()
                        .any(|c| c.section == Section::Service && c.state == State::Running)
                {
                    self.step(Some(hard));
                }
                break;
            }
            self.step(Some(deadline));
        }
        for i in self.indexes(Section::Onshutdown) {
            self.run_once(i);
        }
    }
}

/// Record that container `c` exited with `code` and decide what comes next.
fn exited(c: &mut Container, code: i32) {
    c.pid = None;
    c.last_exit = Some(code);
    c.kill_at = None;
    let ran = c.started.map(|s| s.elapsed()).unwrap_or_default();
    if c.section != Section::Service {
        c.state = State::Exited;
        return;
    }
    let label = c.name.clone();
    // Its last output first, then what became of it (the pipe ends as its processes die).
    c.logs.drain(Duration::from_millis(100));
    if c.stopping {
        log!("{label}: stopped ({})", describe_exit(code));
        c.stopping = false;
        c.answer_down(api::done);
        if std::mem::take(&mut c.start_after_stop) {
            // Due right away: the loop starts it on its next turn.
            c.state = State::Backoff;
            c.next_start = Some(Instant::now());
        } else {
            c.state = State::Stopped;
            c.answer_up(|| api::failed(format!("{label} was stopped")));
        }
        return;
    }
    c.answer_down(api::done);
    let again = match c.restart {
        Restart::Always => true,
        Restart::OnFailure => code != 0,
        Restart::No => false,
    };
    if !again {
        log!(
            "{label}: {}; not restarting (restart: {})",
            describe_exit(code),
            c.restart.as_str()
        );
        c.state = State::Exited;
        return;
    }
    // A service that ran a while starts over with the shortest back-off.
    if ran > Duration::from_secs(10) {
        c.failures = 0;
    }
    let wait = backoff(c.failures);
    c.failures += 1;
    log!(
        "{label}: {}; restarting in {:.2}s",
        describe_exit(code),
        wait.as_secs_f64()
    );
    c.state = State::Backoff;
    c.next_start = Some(Instant::now() + wait);
}
