//! The supervisor: PID 1's main loop. It runs the onboot containers one at a time (each
//! within its timeout), then keeps the services running (restart policy with back-off,
//! `dependsOn` ordering), answers the control socket, and on poweroff or reboot stops the
//! services, runs the onshutdown containers and hands over to [`crate::pid1::power`].

pub mod api;
pub mod container;
pub mod logs;
#[cfg(test)]
mod tests;
pub mod world;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::unistd::Pid;

use container::{Container, Restart, Section, State, backoff, describe_exit};
use world::{Input, System, World};

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
    /// Written to wake a loop that polls (the real [`World`]).
    pipe: Option<Arc<std::io::PipeWriter>>,
}

impl Waker {
    /// Hand `event` to the main loop.
    pub fn send(&self, event: Event) {
        if self.events.send(event).is_ok()
            && let Some(pipe) = &self.pipe
        {
            let _ = std::io::Write::write(&mut &**pipe, &[1]);
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
    world: Rc<dyn World>,
    waker: Waker,
    shutdown: Option<Action>,
    settings: Settings,
    /// Cgroups of exited containers still to remove, and until when to try.
    stale_cgroups: Vec<(PathBuf, Instant)>,
}

/// How long the cgroup of an exited container is retried for removal.
const CGROUP_REMOVAL: Duration = Duration::from_secs(30);

/// A service that ran longer than this starts again with the shortest back-off.
const LONG_RUN: Duration = Duration::from_secs(10);

/// How long a container killed at its timeout gets to die before it is left.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// How long services killed at shutdown get to die.
const HARD_WAIT: Duration = Duration::from_secs(3);

/// Read the bundles of `section` in name order.
fn bundles(world: &Rc<dyn World>, section: Section) -> Vec<Container> {
    let dir = world.containers_dir().join(section.dir());
    let mut dirs: Vec<_> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join(osbuild_bundle::CONFIG_JSON).exists())
        .collect();
    dirs.sort();
    dirs.iter()
        .filter_map(|d| match Container::open(d, section, world.clone()) {
            Ok(c) => Some(c),
            Err(e) => {
                world.log(&format!("{}: {e}", d.display()));
                None
            }
        })
        .collect()
}

/// What follows an exit with `code` after a run of `ran`, under policy `restart` with
/// `failures` quick failures so far: the back-off and the new count, or None for no restart.
fn next_restart(
    restart: Restart,
    code: i32,
    ran: Duration,
    failures: u32,
) -> Option<(Duration, u32)> {
    let again = match restart {
        Restart::Always => true,
        Restart::OnFailure => code != 0,
        Restart::No => false,
    };
    if !again {
        return None;
    }
    let failures = if ran > LONG_RUN { 0 } else { failures };
    Some((backoff(failures), failures.saturating_add(1)))
}

impl Supervisor {
    /// Load the bundles and take over the signals (already blocked by the caller).
    pub fn new(settings: Settings) -> Result<Supervisor, String> {
        let (world, waker) = System::new()?;
        Ok(Supervisor::with_world(Rc::new(world), waker, settings))
    }

    /// The supervisor of the bundles of `world`, which `waker` reaches from other threads.
    pub fn with_world(world: Rc<dyn World>, waker: Waker, settings: Settings) -> Supervisor {
        let mut containers = bundles(&world, Section::Onboot);
        containers.extend(bundles(&world, Section::Service));
        containers.extend(bundles(&world, Section::Onshutdown));
        Supervisor {
            containers,
            world,
            waker,
            shutdown: None,
            settings,
            stale_cgroups: Vec::new(),
        }
    }

    /// A handle other threads use to reach the loop.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    fn say(&self, message: &str) {
        self.world.log(message);
    }

    /// Seconds from `t` to now.
    fn since(&self, t: Instant) -> f64 {
        self.world.now().saturating_duration_since(t).as_secs_f64()
    }

    fn indexes(&self, section: Section) -> Vec<usize> {
        (0..self.containers.len())
            .filter(|i| self.containers[*i].section == section)
            .collect()
    }

    /// Run the system: onboot, services until a shutdown, then the shutdown sequence.
    pub fn run(mut self) -> Action {
        let t0 = self.world.now();
        for i in self.indexes(Section::Onboot) {
            if self.shutdown.is_some() {
                break;
            }
            self.run_once(i);
        }
        self.say(&format!("onboot done in {:.3}s", self.since(t0)));
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
            self.say(&format!("{label}: {e}"));
            return;
        }
        if self.wait_for_end(i, &label) {
            self.containers[i].state = State::Failed;
            return;
        }
        self.report_end(i, &label);
    }

    /// Wait for container `i` to end, killing it at its timeout. Whether it timed out.
    fn wait_for_end(&mut self, i: usize, label: &str) -> bool {
        let deadline = self.containers[i].timeout.map(|t| self.world.now() + t);
        let mut timed_out = false;
        while self.containers[i].state == State::Running {
            let wake_at = if timed_out {
                self.containers[i].kill_at
            } else {
                deadline
            };
            self.step(wake_at);
            let now = self.world.now();
            let c = &mut self.containers[i];
            if c.state != State::Running {
                break;
            }
            if !timed_out && deadline.is_some_and(|d| now >= d) {
                let timeout = c.timeout.unwrap_or_default();
                self.say(&format!(
                    "{label}: still running after its timeout of {timeout:?}; killing it and going on"
                ));
                timed_out = true;
                let c = &mut self.containers[i];
                c.kill_now();
                c.kill_at = Some(now + KILL_WAIT);
            } else if timed_out && c.kill_at.is_some_and(|k| now >= k) {
                c.state = State::Failed;
                c.pid = None;
                let cgroup = c.cgroup.clone();
                self.say(&format!("{label}: does not die; leaving it"));
                self.stale_cgroups.push((cgroup, now + CGROUP_REMOVAL));
            }
        }
        timed_out
    }

    /// Say how container `i`, which ran once, ended: with its last output when it failed.
    fn report_end(&self, i: usize, label: &str) {
        let c = &self.containers[i];
        let took = c.ran().as_secs_f64();
        match c.last_exit {
            Some(0) => self.say(&format!("{label}: done in {took:.3}s")),
            Some(code) => {
                c.logs.drain(Duration::from_millis(500));
                self.say(&format!(
                    "{label}: {}; its last output:",
                    describe_exit(code)
                ));
                for line in c.logs.tail(10) {
                    self.say(&format!("  | {line}"));
                }
            }
            None => {}
        }
    }

    /// Keep the services running until a shutdown is asked for.
    fn services(&mut self) {
        let services = self.indexes(Section::Service);
        self.say(&format!("starting {} services", services.len()));
        for &i in &services {
            let c = &self.containers[i];
            for d in &c.depends_on {
                if !services.iter().any(|&j| &self.containers[j].name == d) {
                    self.say(&format!(
                        "{}: dependsOn {d:?}, which is not a service; it will not start",
                        c.name
                    ));
                }
            }
        }
        let t0 = self.world.now();
        let mut all_started = false;
        while self.shutdown.is_none() {
            self.start_due(&services);
            self.kill_overdue(&services);
            if !all_started
                && services
                    .iter()
                    .all(|i| self.containers[*i].state != State::Waiting)
            {
                all_started = true;
                self.say(&format!("all services started in {:.3}s", self.since(t0)));
            }
            let next = self.next_wake(&services);
            self.step(next);
        }
    }

    /// Start every service that is due, again until none is: a service that starts may be
    /// the one another waits for.
    fn start_due(&mut self, services: &[usize]) {
        let mut started = true;
        while started {
            started = false;
            for &i in services {
                if self.is_due(i) {
                    self.start_service(i);
                    started = true;
                }
            }
        }
    }

    /// Whether service `i` is to start now: waiting or at the end of its back-off, with
    /// its dependencies running.
    fn is_due(&self, i: usize) -> bool {
        let c = &self.containers[i];
        let now = self.world.now();
        let time = match c.state {
            State::Waiting => true,
            State::Backoff => c.next_start.is_some_and(|t| now >= t),
            _ => false,
        };
        time && self.deps_running(i)
    }

    /// Start service `i` (a restart when it was in back-off) and answer `svc restart`.
    fn start_service(&mut self, i: usize) {
        let world = self.world.clone();
        let c = &mut self.containers[i];
        if c.state == State::Backoff {
            c.restarts += 1;
        }
        match c.start() {
            Ok(()) => {
                if c.restarts > 0 {
                    world.log(&format!("{}: started (restart {})", c.name, c.restarts));
                } else {
                    world.log(&format!("{}: started", c.name));
                }
                c.answer_up(api::done);
            }
            Err(e) => {
                world.log(&e);
                c.answer_up(|| api::failed(e.clone()));
            }
        }
    }

    /// Kill the services still running after the grace of a stop.
    fn kill_overdue(&mut self, services: &[usize]) {
        let world = self.world.clone();
        let now = world.now();
        let grace = self.settings.grace;
        for &i in services {
            let c = &mut self.containers[i];
            if c.state == State::Running && c.kill_at.is_some_and(|k| now >= k) {
                world.log(&format!(
                    "{}: did not stop within {grace:?}; killing it",
                    c.name
                ));
                c.kill_now();
            }
        }
    }

    /// When the services loop has something to do: a back-off ends (for a service whose
    /// dependencies run) or a grace ends.
    fn next_wake(&self, services: &[usize]) -> Option<Instant> {
        services
            .iter()
            .filter_map(|&i| {
                let c = &self.containers[i];
                match c.state {
                    State::Backoff if self.deps_running(i) => c.next_start,
                    State::Running => c.kill_at,
                    _ => None,
                }
            })
            .min()
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
            let soon = self.world.now() + Duration::from_millis(200);
            Some(until.map_or(soon, |u| u.min(soon)))
        };
        let mut events = Vec::new();
        for input in self.world.wait(until) {
            match input {
                Input::Signal(action) => self.request_shutdown(action),
                Input::Exit(pid, code) => self.reaped(pid, code),
                Input::Event(event) => events.push(event),
            }
        }
        self.remove_stale_cgroups();
        for event in events {
            self.handle(event);
        }
    }

    /// Handle a shutdown or a control request from another thread.
    fn handle(&mut self, event: Event) {
        match event {
            Event::Shutdown(a) => self.request_shutdown(a),
            Event::Api(req, _, reply)
                if self.shutdown.is_some() && matches!(req.op.as_str(), "start" | "restart") =>
            {
                let _ = reply.send(api::failed("the system is shutting down".into()));
            }
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

    fn remove_stale_cgroups(&mut self) {
        let now = self.world.now();
        let world = self.world.clone();
        let containers = &self.containers;
        self.stale_cgroups.retain(|(cgroup, until)| {
            // A container that started again owns its cgroup once more.
            if containers
                .iter()
                .any(|c| c.state == State::Running && &c.cgroup == cgroup)
            {
                return false;
            }
            if world.remove_cgroup(cgroup) {
                return false;
            }
            if now >= *until {
                world.log(&format!(
                    "{}: still has processes {:?} after its container exited; left in place",
                    cgroup.display(),
                    CGROUP_REMOVAL
                ));
                return false;
            }
            true
        });
    }

    fn request_shutdown(&mut self, action: Action) {
        if self.shutdown.is_none() {
            self.say(&format!(
                "{} requested",
                if action == Action::Poweroff {
                    "poweroff"
                } else {
                    "reboot"
                }
            ));
            self.shutdown = Some(action);
        }
    }

    /// Child `pid` exited with `code`: a container's gets its new state and its cgroup
    /// removed, an orphan was just reaped.
    fn reaped(&mut self, pid: Pid, code: i32) {
        let Some(i) = self.containers.iter().position(|c| c.pid == Some(pid)) else {
            return;
        };
        self.exited(i, code);
        let cgroup = self.containers[i].cgroup.clone();
        if !self.world.remove_cgroup(&cgroup) {
            let until = self.world.now() + CGROUP_REMOVAL;
            self.stale_cgroups.push((cgroup, until));
        }
    }

    /// Record that container `i` exited with `code` and decide what comes next.
    fn exited(&mut self, i: usize, code: i32) {
        let c = &mut self.containers[i];
        let ran = c.ran();
        c.pid = None;
        c.last_exit = Some(code);
        c.kill_at = None;
        if c.section != Section::Service {
            c.state = State::Exited;
            return;
        }
        // Its last output first, then what became of it (the pipe ends as its processes die).
        c.logs.drain(Duration::from_millis(100));
        if c.stopping {
            self.stopped(i, code);
            return;
        }
        c.answer_down(api::done);
        let Some((wait, failures)) = next_restart(c.restart, code, ran, c.failures) else {
            c.state = State::Exited;
            let message = format!(
                "{}: {}; not restarting (restart: {})",
                c.name,
                describe_exit(code),
                c.restart.as_str()
            );
            self.say(&message);
            return;
        };
        c.failures = failures;
        c.state = State::Backoff;
        c.next_start = Some(self.world.now() + wait);
        let message = format!(
            "{}: {}; restarting in {:.2}s",
            c.name,
            describe_exit(code),
            wait.as_secs_f64()
        );
        self.say(&message);
    }

    /// Service `i`, asked to stop, exited with `code`: it stays stopped, or starts again
    /// right away for a `svc restart`.
    fn stopped(&mut self, i: usize, code: i32) {
        let now = self.world.now();
        let c = &mut self.containers[i];
        let message = format!("{}: stopped ({})", c.name, describe_exit(code));
        self.world.log(&message);
        c.stopping = false;
        c.answer_down(api::done);
        if std::mem::take(&mut c.start_after_stop) {
            // Due right away: the loop starts it on its next turn.
            c.state = State::Backoff;
            c.next_start = Some(now);
        } else {
            c.state = State::Stopped;
            let label = c.name.clone();
            c.answer_up(|| api::failed(format!("{label} was stopped")));
        }
    }

    fn services_running(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.section == Section::Service && c.state == State::Running)
    }

    /// Stop the services, run the onshutdown containers.
    fn shut_down(&mut self) {
        self.say("stopping services");
        let grace = self.settings.grace;
        for c in self
            .containers
            .iter_mut()
            .filter(|c| c.section == Section::Service)
        {
            c.next_start = None;
            c.start_after_stop = false;
            if c.state == State::Running {
                c.stop(grace);
            } else if c.state == State::Backoff || c.state == State::Waiting {
                c.state = State::Stopped;
                let label = c.name.clone();
                c.answer_up(|| api::failed(format!("{label} was stopped")));
            }
        }
        let deadline = self.world.now() + grace;
        self.wait_services_down(deadline);
        for i in self.indexes(Section::Onshutdown) {
            self.run_once(i);
        }
    }

    /// Wait for the services to end until `deadline`, then kill them and wait a little more.
    fn wait_services_down(&mut self, deadline: Instant) {
        let grace = self.settings.grace;
        while self.services_running() {
            if self.world.now() < deadline {
                self.step(Some(deadline));
                continue;
            }
            let world = self.world.clone();
            for c in self
                .containers
                .iter_mut()
                .filter(|c| c.state == State::Running)
            {
                world.log(&format!(
                    "{}: did not stop within {grace:?}; killing it",
                    c.name
                ));
                c.kill_now();
            }
            let hard = self.world.now() + HARD_WAIT;
            while self.world.now() < hard && self.services_running() {
                self.step(Some(hard));
            }
            return;
        }
    }
}
