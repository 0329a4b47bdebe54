//! One supervised container: its bundle, policy, state and the stage-1 process running it.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::api::Reply;
use super::logs::Logs;
use super::world::World;
use crate::runtime::{self, cgroups, config};

/// The spec section a container comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    /// Run once at boot, in order.
    Onboot,
    /// Kept running.
    Service,
    /// Run once at shutdown, in order.
    Onshutdown,
}

impl Section {
    /// The folder under `/containers`.
    pub fn dir(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Service => "services",
            Section::Onshutdown => "onshutdown",
        }
    }
}

/// Restart policy of a service: the bundle contract's (`always`, `on-failure`, `no`).
pub use osbuild_bundle::Restart;

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not started yet (waiting for its turn or its dependencies).
    Waiting,
    /// Its process runs.
    Running,
    /// Waiting out the back-off before a restart.
    Backoff,
    /// Exited and not to be restarted.
    Exited,
    /// Stopped on request.
    Stopped,
    /// Could not be started or was killed at its timeout.
    Failed,
}

impl State {
    /// Lower-case name, as the API reports it.
    pub fn name(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Running => "running",
            State::Backoff => "backoff",
            State::Exited => "exited",
            State::Stopped => "stopped",
            State::Failed => "failed",
        }
    }
}

/// A container and its supervision state.
pub struct Container {
    /// Its name (the bundle folder's name).
    pub name: String,
    /// Its section.
    pub section: Section,
    /// The bundle.
    pub dir: PathBuf,
    /// Its cgroup.
    pub cgroup: PathBuf,
    /// Time allowed (onboot, onshutdown).
    pub timeout: Option<Duration>,
    /// Restart policy (services).
    pub restart: Restart,
    /// Services to start first.
    pub depends_on: Vec<String>,
    /// Current state.
    pub state: State,
    /// The stage-1 process while running.
    pub pid: Option<Pid>,
    /// When it was last started.
    pub started: Option<Instant>,
    /// When to start it again (in back-off).
    pub next_start: Option<Instant>,
    /// When to kill it for good (a stop or timeout in progress).
    pub kill_at: Option<Instant>,
    /// Restarts so far.
    pub restarts: u32,
    /// Consecutive quick failures, for the back-off.
    pub failures: u32,
    /// The last exit status (128+N for signal N).
    pub last_exit: Option<i32>,
    /// Set while a stop was asked for.
    pub stopping: bool,
    /// Start it again once the stop in progress is done (`svc restart`).
    pub start_after_stop: bool,
    /// Its output.
    pub logs: Arc<Logs>,
    /// Its name in the spec (`dhcpcd` for `000-dhcpcd`).
    short: String,
    /// `svc stop` requests answered once it is down.
    pub down_waiters: Vec<Sender<Reply>>,
    /// `svc restart` requests answered once it runs again.
    pub up_waiters: Vec<Sender<Reply>>,
    /// What starts, signals and times it.
    world: Rc<dyn World>,
}

/// A problem with a bundle's `supervise.json`.
fn policy(
    dir: &Path,
    section: Section,
) -> Result<(Option<Duration>, Restart, Vec<String>), String> {
    let s: config::Supervise = config::read(&dir.join(osbuild_bundle::SUPERVISE_JSON))?;
    let timeout = match s.timeout {
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
        Some(t) => {
            return Err(format!(
                "{}: timeout {t} is not a positive duration",
                dir.display()
            ));
        }
        None if section == Section::Onshutdown => Some(Duration::from_secs(60)),
        None => None,
    };
    Ok((timeout, s.restart.unwrap_or_default(), s.depends_on))
}

impl Container {
    /// The container in bundle `dir`, run in `world`.
    pub fn open(dir: &Path, section: Section, world: Rc<dyn World>) -> Result<Container, String> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bundle = runtime::Bundle::open(dir)?;
        let (timeout, restart, depends_on) = policy(dir, section)?;
        // Console lines carry the spec's name ("dhcpcd", not "000-dhcpcd"); files keep the
        // section and order ("onboot.000-dhcpcd.log").
        let short = match name.split_once('-') {
            Some((n, rest))
                if section != Section::Service && n.bytes().all(|b| b.is_ascii_digit()) =>
            {
                rest
            }
            _ => &name,
        };
        let file = match section {
            Section::Service => name.clone(),
            Section::Onboot => format!("onboot.{name}"),
            Section::Onshutdown => format!("onshutdown.{name}"),
        };
        let short = short.to_string();
        Ok(Container {
            short: short.clone(),
            down_waiters: Vec::new(),
            up_waiters: Vec::new(),
            cgroup: cgroups::path_for(dir, &bundle.config),
            logs: Arc::new(world.logs(&short, &file)),
            name,
            section,
            dir: dir.to_path_buf(),
            timeout,
            restart,
            depends_on,
            state: State::Waiting,
            pid: None,
            started: None,
            next_start: None,
            kill_at: None,
            restarts: 0,
            failures: 0,
            last_exit: None,
            stopping: false,
            start_after_stop: false,
            world,
        })
    }

    /// Its name in the spec (`dhcpcd` for the onboot container `000-dhcpcd`).
    pub fn short_name(&self) -> &str {
        &self.short
    }

    /// How `svc` names it: a service by its name, others as `SECTION/NAME`.
    pub fn label(&self) -> String {
        match self.section {
            Section::Service => self.name.clone(),
            other => format!("{}/{}", other.dir(), self.name),
        }
    }

    /// Answer the requests waiting for it to stop (`svc stop`).
    pub fn answer_down(&mut self, reply: impl Fn() -> Reply) {
        for w in self.down_waiters.drain(..) {
            let _ = w.send(reply());
        }
    }

    /// Answer the requests waiting for it to run again (`svc restart`).
    pub fn answer_up(&mut self, reply: impl Fn() -> Reply) {
        for w in self.up_waiters.drain(..) {
            let _ = w.send(reply());
        }
    }

    /// Start its stage-1 process, output going to its log. A container that cannot be
    /// started is failed.
    pub fn start(&mut self) -> Result<(), String> {
        let (pid, output) = match self.world.spawn(&self.dir) {
            Ok(spawned) => spawned,
            Err(e) => {
                self.state = State::Failed;
                return Err(format!("{}: {e}", self.name));
            }
        };
        if let Some(output) = output {
            self.logs.clone().follow(output);
        }
        self.pid = Some(pid);
        self.state = State::Running;
        self.started = Some(self.world.now());
        self.next_start = None;
        self.kill_at = None;
        self.stopping = false;
        Ok(())
    }

    /// How long it has run since it was last started.
    pub fn ran(&self) -> Duration {
        let now = self.world.now();
        self.started
            .map(|s| now.saturating_duration_since(s))
            .unwrap_or_default()
    }

    /// Ask it to stop: SIGTERM now, everything in its cgroup killed after `grace`.
    pub fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.pid {
            self.stopping = true;
            self.world.terminate(pid);
            self.kill_at = Some(self.world.now() + grace);
        }
    }

    /// Kill every process of the container now.
    pub fn kill_now(&mut self) {
        self.world.kill(&self.cgroup, self.pid);
        self.kill_at = None;
    }

    /// The container's main process (the child of stage 1), found in /proc.
    pub fn main_pid(&self) -> Option<i32> {
        let parent = self.pid?.as_raw();
        std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 2..];
            let ppid: i32 = after.split(' ').nth(1)?.parse().ok()?;
            (ppid == parent).then_some(pid)
        })
    }
}

/// Describe an exit status for people.
pub fn describe_exit(code: i32) -> String {
    if code > 128 {
        let sig = Signal::try_from(code - 128).map_or("?", |s| s.as_str());
        format!("killed by signal {} ({sig})", code - 128)
    } else {
        format!("exited with status {code}")
    }
}

/// Back-off before restart number `failures` (doubling from 250 ms up to 30 s).
pub fn backoff(failures: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << failures.min(7))).min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(20), Duration::from_secs(30));
    }

    #[test]
    fn exits_are_described() {
        assert_eq!(describe_exit(0), "exited with status 0");
        assert_eq!(describe_exit(137), "killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn policy_comes_from_supervise_json() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("supervise.json"),
            r#"{"timeout":1.5,"restart":"on-failure","dependsOn":["db"]}"#,
        )
        .unwrap();
        let (t, r, deps) = policy(d.path(), Section::Service).unwrap();
        assert_eq!(
            (t, r, deps),
            (
                Some(Duration::from_millis(1500)),
                Restart::OnFailure,
                vec!["db".to_string()]
            )
        );
        std::fs::remove_file(d.path().join("supervise.json")).unwrap();
        assert_eq!(
            policy(d.path(), Section::Onshutdown).unwrap().0,
            Some(Duration::from_secs(60))
        );
        std::fs::write(
            d.path().join("supervise.json"),
            r#"{"restart":"sometimes"}"#,
        )
        .unwrap();
        assert!(
            policy(d.path(), Section::Service)
                .unwrap_err()
                .contains("sometimes")
        );
    }
}
