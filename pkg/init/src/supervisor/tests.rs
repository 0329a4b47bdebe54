//! The supervisor's decisions against a fake [`World`]: a manual clock, recorded spawns and
//! signals, exits and requests delivered by the test. The loop runs on a thread of its own
//! and stops at each [`World::wait`]; the test then looks at what it did and answers.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::unistd::Pid;
use serde_json::Value;

use super::api::{Reply, Request};
use super::logs::Logs;
use super::world::{Input, Output, World};
use super::{Action, Event, Settings, Supervisor, Waker};

const GRACE: Duration = Duration::from_secs(10);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the fake world did, shared by the loop's thread and the test.
struct Shared {
    now: Instant,
    log: Vec<String>,
    spawned: Vec<(String, Pid)>,
    terminated: Vec<Pid>,
    killed: Vec<String>,
    next_pid: i32,
    /// Bundles whose start fails.
    broken: HashSet<String>,
    /// Output the next start of a bundle gets.
    outputs: HashMap<String, std::io::PipeReader>,
}

/// The world the loop sees.
struct Fake {
    shared: Arc<Mutex<Shared>>,
    dir: PathBuf,
    turns: Sender<Option<Instant>>,
    answers: Receiver<Vec<Input>>,
}

/// End the loop's thread quietly once its test has gone.
fn test_over() -> ! {
    std::panic::resume_unwind(Box::new("the test is over"))
}

impl World for Fake {
    fn now(&self) -> Instant {
        self.shared.lock().unwrap().now
    }
    fn log(&self, message: &str) {
        self.shared.lock().unwrap().log.push(message.to_string());
    }
    fn containers_dir(&self) -> PathBuf {
        self.dir.clone()
    }
    fn logs(&self, name: &str, file: &str) -> Logs {
        Logs::new(name, file, None, false)
    }
    fn spawn(&self, dir: &Path) -> Result<(Pid, Option<Output>), String> {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let mut s = self.shared.lock().unwrap();
        if s.broken.contains(&name) {
            return Err("starting: no such file".into());
        }
        s.next_pid += 1;
        let pid = Pid::from_raw(s.next_pid);
        s.spawned.push((name.clone(), pid));
        let output = s.outputs.remove(&name).map(|r| Box::new(r) as Output);
        Ok((pid, output))
    }
    fn terminate(&self, pid: Pid) {
        self.shared.lock().unwrap().terminated.push(pid);
    }
    fn kill(&self, cgroup: &Path, _pid: Option<Pid>) {
        let name = cgroup.file_name().unwrap().to_string_lossy().into_owned();
        self.shared.lock().unwrap().killed.push(name);
    }
    fn remove_cgroup(&self, _cgroup: &Path) -> bool {
        true
    }
    fn wait(&self, until: Option<Instant>) -> Vec<Input> {
        if self.turns.send(until).is_err() {
            test_over();
        }
        self.answers.recv().unwrap_or_else(|_| test_over())
    }
}

/// The test's side: the loop is stopped in [`World::wait`] between calls.
struct Harness {
    shared: Arc<Mutex<Shared>>,
    turns: Receiver<Option<Instant>>,
    answers: Sender<Vec<Input>>,
    run: Option<JoinHandle<Action>>,
    /// When the waiting loop wants to wake up.
    until: Option<Instant>,
    waiting: bool,
    /// How the loop ended.
    ended: Option<Action>,
    t0: Instant,
    _dir: tempfile::TempDir,
}

/// Start a supervisor over `bundles` (`SECTION/NAME` and its `supervise.json`) and wait for
/// its first wait.
fn boot(bundles: &[(&str, &str)]) -> Harness {
    boot_with(bundles, |_| {})
}

/// [`boot`], with the fake set up by `setup` first.
fn boot_with(bundles: &[(&str, &str)], setup: impl FnOnce(&mut Shared)) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    for (path, supervise) in bundles {
        let b = dir.path().join(path);
        std::fs::create_dir_all(&b).unwrap();
        std::fs::write(b.join("config.json"), "{}").unwrap();
        std::fs::write(b.join("supervise.json"), supervise).unwrap();
    }
    let t0 = Instant::now();
    let mut shared = Shared {
        now: t0,
        log: Vec::new(),
        spawned: Vec::new(),
        terminated: Vec::new(),
        killed: Vec::new(),
        next_pid: 4_000_000,
        broken: HashSet::new(),
        outputs: HashMap::new(),
    };
    setup(&mut shared);
    let shared = Arc::new(Mutex::new(shared));
    let (turns_tx, turns) = channel();
    let (answers, answers_rx) = channel();
    let fake_shared = shared.clone();
    let fake_dir = dir.path().to_path_buf();
    let run = std::thread::spawn(move || {
        let fake = Fake {
            shared: fake_shared,
            dir: fake_dir,
            turns: turns_tx,
            answers: answers_rx,
        };
        let waker = Waker {
            events: channel().0,
            pipe: None,
        };
        Supervisor::with_world(Rc::new(fake), waker, Settings { grace: GRACE }).run()
    });
    let mut h = Harness {
        shared,
        turns,
        answers,
        run: Some(run),
        until: None,
        waiting: false,
        ended: None,
        t0,
        _dir: dir,
    };
    h.next_turn();
    h
}

impl Harness {
    /// Wait for the loop to wait again (or end).
    fn next_turn(&mut self) {
        match self.turns.recv_timeout(Duration::from_secs(10)) {
            Ok(until) => {
                self.until = until;
                self.waiting = true;
            }
            Err(RecvTimeoutError::Timeout) => panic!("the loop did not come back to wait"),
            Err(RecvTimeoutError::Disconnected) => {
                self.waiting = false;
                self.until = None;
                match self.run.take().map(JoinHandle::join) {
                    Some(Ok(action)) => self.ended = Some(action),
                    Some(Err(panic)) => std::panic::resume_unwind(panic),
                    None => {}
                }
            }
        }
    }

    /// Let the waiting loop go on with `inputs`, and wait for its next wait.
    fn answer(&mut self, inputs: Vec<Input>) {
        assert!(self.waiting, "the loop has ended");
        self.answers.send(inputs).unwrap();
        self.next_turn();
    }

    fn now(&self) -> Instant {
        self.shared.lock().unwrap().now
    }

    /// Move the clock on by `d` while the loop waits.
    fn advance(&self, d: Duration) {
        self.shared.lock().unwrap().now += d;
    }

    /// Move the clock to `t` and wake the loop with nothing new (its poll timed out).
    fn sleep_until(&mut self, t: Instant) {
        self.shared.lock().unwrap().now = t;
        self.answer(Vec::new());
    }

    /// Wake the loop when it asked to be woken.
    fn wake(&mut self) {
        let until = self.until.expect("the loop waits for no time");
        self.sleep_until(until);
    }

    /// How long the loop means to sleep from now.
    fn sleep(&self) -> Option<Duration> {
        self.until.map(|u| u - self.now())
    }

    /// The last process started for `name`.
    fn pid(&self, name: &str) -> Pid {
        let s = self.shared.lock().unwrap();
        s.spawned.iter().rev().find(|(n, _)| n == name).unwrap().1
    }

    /// Starts of `name` so far.
    fn spawns(&self, name: &str) -> usize {
        let s = self.shared.lock().unwrap();
        s.spawned.iter().filter(|(n, _)| n == name).count()
    }

    fn spawn_order(&self) -> Vec<String> {
        let s = self.shared.lock().unwrap();
        s.spawned.iter().map(|(n, _)| n.clone()).collect()
    }

    fn killed(&self) -> Vec<String> {
        self.shared.lock().unwrap().killed.clone()
    }

    fn terminated(&self) -> Vec<Pid> {
        self.shared.lock().unwrap().terminated.clone()
    }

    fn log(&self) -> Vec<String> {
        self.shared.lock().unwrap().log.clone()
    }

    /// Whether the loop has said `line`.
    fn said(&self, line: &str) -> bool {
        self.log().iter().any(|l| l == line)
    }

    fn assert_said(&self, line: &str) {
        assert!(self.said(line), "no {line:?} in {:#?}", self.log());
    }

    /// `name`'s current process exits with `code`.
    fn exit(&mut self, name: &str, code: i32) {
        let pid = self.pid(name);
        self.answer(vec![Input::Exit(pid, code)]);
    }

    /// Send a control request; its reply comes on the receiver.
    fn request(&mut self, op: &str, name: &str) -> Receiver<Reply> {
        let (tx, rx) = channel();
        let req = Request {
            op: op.into(),
            name: name.into(),
            follow: false,
            lines: None,
        };
        self.answer(vec![Input::Event(Event::Api(req, None, tx))]);
        rx
    }

    /// The state `svc status` reports for `name`.
    fn state(&mut self, name: &str) -> String {
        let reply = reply(&self.request("status", name)).unwrap();
        reply["container"]["state"].as_str().unwrap().to_string()
    }

    /// A poweroff is asked for.
    fn power_off(&mut self) {
        self.answer(vec![Input::Signal(Action::Poweroff)]);
    }

    /// The loop has ended: how.
    fn finish(self) -> Action {
        assert!(!self.waiting, "the loop still waits");
        self.ended.unwrap()
    }
}

/// The JSON reply received so far, if any.
fn reply(rx: &Receiver<Reply>) -> Option<Value> {
    match rx.try_recv().ok()? {
        Reply::Json(v) => Some(v),
        Reply::Logs(_) => panic!("a log stream"),
    }
}

#[test]
fn always_restarts_after_any_exit() {
    let mut h = boot(&[("services/a", "{}")]);
    h.assert_said("a: started");
    assert_eq!(h.until, None);
    h.exit("a", 0);
    h.assert_said("a: exited with status 0; restarting in 0.25s");
    h.wake();
    h.assert_said("a: started (restart 1)");
    h.exit("a", 3);
    h.assert_said("a: exited with status 3; restarting in 0.50s");
    h.wake();
    h.assert_said("a: started (restart 2)");
    assert_eq!(h.spawns("a"), 3);
}

#[test]
fn on_failure_restarts_only_after_a_failure() {
    let mut h = boot(&[("services/a", r#"{"restart":"on-failure"}"#)]);
    h.exit("a", 137);
    h.assert_said("a: killed by signal 9 (SIGKILL); restarting in 0.25s");
    h.wake();
    h.exit("a", 1);
    h.assert_said("a: exited with status 1; restarting in 0.50s");
    h.wake();
    h.exit("a", 0);
    h.assert_said("a: exited with status 0; not restarting (restart: on-failure)");
    assert_eq!(h.until, None);
    h.sleep_until(h.now() + Duration::from_secs(60));
    assert_eq!(h.spawns("a"), 3);
    assert_eq!(h.state("a"), "exited");
}

#[test]
fn no_never_restarts() {
    let mut h = boot(&[("services/a", r#"{"restart":"no"}"#)]);
    h.exit("a", 1);
    h.assert_said("a: exited with status 1; not restarting (restart: no)");
    assert_eq!(h.until, None);
    h.sleep_until(h.now() + Duration::from_secs(60));
    assert_eq!(h.spawns("a"), 1);
    assert_eq!(h.state("a"), "exited");
}

#[test]
fn backoff_doubles_up_to_30_seconds() {
    let mut h = boot(&[("services/a", "{}")]);
    let mut waits = Vec::new();
    for _ in 0..9 {
        h.exit("a", 1);
        waits.push(h.sleep().unwrap().as_secs_f64());
        h.wake();
    }
    assert_eq!(waits, [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]);
    h.assert_said("a: exited with status 1; restarting in 16.00s");
    h.assert_said("a: exited with status 1; restarting in 30.00s");
    assert_eq!(h.spawns("a"), 10);
}

#[test]
fn backoff_starts_over_after_a_run_of_more_than_10_seconds() {
    let mut h = boot(&[("services/a", "{}")]);
    h.exit("a", 1);
    h.wake();
    h.exit("a", 1);
    assert_eq!(h.sleep(), Some(ms(500)));
    h.wake();
    // 9 s is still a quick failure.
    h.advance(Duration::from_secs(9));
    h.exit("a", 1);
    assert_eq!(h.sleep(), Some(ms(1000)));
    h.wake();
    h.advance(ms(10_500));
    h.exit("a", 1);
    assert_eq!(h.sleep(), Some(ms(250)));
    h.wake();
    h.exit("a", 1);
    assert_eq!(h.sleep(), Some(ms(500)));
}

#[test]
fn a_restart_starts_when_its_backoff_is_due_and_not_before() {
    let mut h = boot(&[("services/a", "{}")]);
    h.advance(Duration::from_secs(3));
    let exit_at = h.now();
    h.exit("a", 1);
    let due = exit_at + ms(250);
    assert_eq!(h.until, Some(due));
    h.sleep_until(due - ms(1));
    assert_eq!(h.spawns("a"), 1);
    assert_eq!(h.until, Some(due));
    h.sleep_until(due);
    assert_eq!(h.spawns("a"), 2);
    h.assert_said("a: started (restart 1)");
    assert_eq!(h.until, None);
}

#[test]
fn a_dependent_starts_right_after_its_dependency() {
    // "app" comes first in name order.
    let h = boot(&[
        ("services/app", r#"{"dependsOn":["db"]}"#),
        ("services/db", "{}"),
    ]);
    // Both started before the loop first waits.
    assert_eq!(h.spawn_order(), ["db", "app"]);
    h.assert_said("all services started in 0.000s");
    assert_eq!(h.until, None);
}

#[test]
fn a_dependent_waits_while_its_dependency_is_down() {
    let mut h = boot(&[
        ("services/app", r#"{"dependsOn":["db"]}"#),
        ("services/db", r#"{"restart":"no"}"#),
    ]);
    h.exit("db", 1);
    h.exit("app", 1);
    h.assert_said("app: exited with status 1; restarting in 0.25s");
    // No wake-up for it while db is down (no busy loop), and not started past its back-off.
    assert_eq!(h.until, None);
    h.sleep_until(h.now() + Duration::from_secs(1));
    assert_eq!(h.spawns("app"), 1);
    assert_eq!(h.until, None);
    assert_eq!(h.state("app"), "backoff");
    let started = h.request("start", "db");
    assert_eq!(reply(&started).unwrap()["ok"], true);
    assert_eq!(h.spawn_order(), ["db", "app", "db", "app"]);
    h.assert_said("app: started (restart 1)");
}

#[test]
fn a_waiting_dependent_is_stopped_at_shutdown() {
    let mut h = boot(&[("services/app", r#"{"dependsOn":["nothere"]}"#)]);
    assert_eq!(h.spawns("app"), 0);
    assert!(
        !h.log()
            .iter()
            .any(|l| l.starts_with("all services started"))
    );
    h.power_off();
    assert_eq!(h.finish(), Action::Poweroff);
}

#[test]
fn shutdown_during_a_backoff_stops_the_service() {
    let mut h = boot(&[("services/a", "{}"), ("onshutdown/000-last", "{}")]);
    h.exit("a", 1);
    let due = h.until.unwrap();
    h.power_off();
    h.assert_said("poweroff requested");
    h.assert_said("stopping services");
    // onshutdown runs (within its default timeout of 60 s); "a" is stopped.
    assert_eq!(h.spawns("000-last"), 1);
    assert_eq!(h.sleep(), Some(Duration::from_secs(60)));
    assert_eq!(h.state("a"), "stopped");
    h.sleep_until(due + Duration::from_secs(1));
    assert_eq!(h.spawns("a"), 1);
    h.exit("000-last", 0);
    h.assert_said("onshutdown 000-last: done in 1.250s");
    assert_eq!(h.spawns("a"), 1);
    assert_eq!(h.finish(), Action::Poweroff);
}

#[test]
fn shutdown_terminates_services_then_kills_them_at_the_grace() {
    let mut h = boot(&[("services/a", "{}"), ("services/b", "{}")]);
    let (a, b) = (h.pid("a"), h.pid("b"));
    let t = h.now();
    h.answer(vec![Input::Signal(Action::Reboot)]);
    h.assert_said("reboot requested");
    assert_eq!(h.terminated(), [a, b]);
    assert_eq!(h.until, Some(t + GRACE));
    // "b" ends on SIGTERM; "a" does not.
    h.exit("b", 143);
    h.assert_said("b: stopped (killed by signal 15 (SIGTERM))");
    h.sleep_until(t + GRACE - ms(1));
    assert!(h.killed().is_empty());
    h.sleep_until(t + GRACE);
    h.assert_said("a: did not stop within 10s; killing it");
    assert_eq!(h.killed(), ["a"]);
    assert_eq!(h.sleep(), Some(Duration::from_secs(3)));
    h.exit("a", 137);
    h.assert_said("a: stopped (killed by signal 9 (SIGKILL))");
    assert_eq!(h.spawns("a") + h.spawns("b"), 2);
    assert_eq!(h.finish(), Action::Reboot);
}

#[test]
fn svc_stop_is_answered_once_the_service_is_down() {
    let mut h = boot(&[("services/a", "{}")]);
    let t = h.now();
    let stop = h.request("stop", "a");
    assert!(reply(&stop).is_none());
    assert_eq!(h.terminated(), [h.pid("a")]);
    assert_eq!(h.until, Some(t + GRACE));
    // It outlives its grace: killed, and still not answered until it is gone.
    h.wake();
    h.assert_said("a: did not stop within 10s; killing it");
    assert_eq!(h.killed(), ["a"]);
    assert!(reply(&stop).is_none());
    assert_eq!(h.until, None);
    h.exit("a", 137);
    assert_eq!(reply(&stop).unwrap()["ok"], true);
    h.assert_said("a: stopped (killed by signal 9 (SIGKILL))");
    assert_eq!(h.until, None);
    assert_eq!(h.spawns("a"), 1);
    assert_eq!(h.state("a"), "stopped");
}

#[test]
fn svc_restart_is_answered_once_the_service_runs_again() {
    let mut h = boot(&[("services/a", r#"{"restart":"no"}"#)]);
    let restart = h.request("restart", "a");
    assert!(reply(&restart).is_none());
    assert_eq!(h.terminated(), [h.pid("a")]);
    h.exit("a", 143);
    h.assert_said("a: stopped (killed by signal 15 (SIGTERM))");
    // Started again in the same turn, whatever its policy.
    assert_eq!(h.spawns("a"), 2);
    h.assert_said("a: started (restart 1)");
    assert_eq!(reply(&restart).unwrap()["ok"], true);
    assert_eq!(h.state("a"), "running");
}

#[test]
fn svc_restart_cut_short_by_a_shutdown_is_answered() {
    let mut h = boot(&[
        ("services/app", r#"{"dependsOn":["db"]}"#),
        ("services/db", r#"{"restart":"no"}"#),
    ]);
    h.exit("db", 0);
    // "app" is down and waits for "db" to start it again.
    let restart = h.request("restart", "app");
    h.exit("app", 143);
    assert!(reply(&restart).is_none());
    h.power_off();
    let answer = reply(&restart).unwrap();
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"], "app was stopped");
    assert_eq!(h.finish(), Action::Poweroff);
}

#[test]
fn onboot_timeout_kills_the_container_and_the_boot_goes_on() {
    let mut h = boot(&[
        ("onboot/000-hang", r#"{"timeout":2}"#),
        ("onboot/001-next", "{}"),
        ("services/s", "{}"),
    ]);
    assert_eq!(h.spawn_order(), ["000-hang"]);
    assert_eq!(h.until, Some(h.t0 + Duration::from_secs(2)));
    h.sleep_until(h.t0 + ms(1999));
    assert!(h.killed().is_empty());
    h.wake();
    h.assert_said(
        "onboot 000-hang: still running after its timeout of 2s; killing it and going on",
    );
    assert_eq!(h.killed(), ["000-hang"]);
    h.exit("000-hang", 137);
    assert_eq!(h.spawn_order(), ["000-hang", "001-next"]);
    h.advance(ms(1500));
    h.exit("001-next", 0);
    h.assert_said("onboot 001-next: done in 1.500s");
    h.assert_said("onboot done in 3.500s");
    h.assert_said("s: started");
}

#[test]
fn an_onboot_container_that_does_not_die_is_left() {
    let mut h = boot(&[
        ("onboot/000-hang", r#"{"timeout":1}"#),
        ("onboot/001-next", "{}"),
    ]);
    h.wake();
    assert_eq!(h.sleep(), Some(Duration::from_secs(5)));
    h.wake();
    h.assert_said("onboot 000-hang: does not die; leaving it");
    assert_eq!(h.spawn_order(), ["000-hang", "001-next"]);
    assert_eq!(h.state("onboot/000-hang"), "failed");
}

#[test]
fn a_failed_onboot_container_is_reported_and_the_boot_goes_on() {
    let mut h = boot(&[("onboot/000-bad", "{}"), ("services/s", "{}")]);
    h.exit("000-bad", 2);
    h.assert_said("onboot 000-bad: exited with status 2; its last output:");
    h.assert_said("s: started");
}

#[test]
fn a_restart_that_cannot_start_fails_without_a_busy_loop() {
    let mut h = boot(&[("services/a", "{}")]);
    h.exit("a", 1);
    h.shared.lock().unwrap().broken.insert("a".into());
    h.wake();
    h.assert_said("a: starting: no such file");
    assert_eq!(h.until, None);
    assert_eq!(h.state("a"), "failed");
}

#[test]
fn exits_are_handled_on_time_while_output_backs_up() {
    let (reader, mut writer) = std::io::pipe().unwrap();
    let mut h = boot_with(&[("services/noisy", "{}")], |s| {
        s.outputs.insert("noisy".into(), reader);
    });
    // Its output never ends: a writer that stays open behind a burst of lines.
    let burst = std::thread::spawn(move || {
        use std::io::Write;
        for i in 0..20_000 {
            let _ = writeln!(writer, "line {i} of output nobody keeps up with");
        }
        writer
    });
    let exit_at = h.now();
    let real = Instant::now();
    h.exit("noisy", 1);
    // Handled in the turn it was delivered, on the loop's clock: output only ever costs
    // the bounded drain of its log.
    assert!(
        real.elapsed() < Duration::from_secs(2),
        "{:?}",
        real.elapsed()
    );
    h.assert_said("noisy: exited with status 1; restarting in 0.25s");
    assert_eq!(h.until, Some(exit_at + ms(250)));
    h.wake();
    assert_eq!(h.spawns("noisy"), 2);
    drop(burst.join().unwrap());
}

#[test]
fn svc_restart_in_progress_at_shutdown_ends_stopped() {
    let mut h = boot(&[("services/a", "{}"), ("onshutdown/000-last", "{}")]);
    let restart = h.request("restart", "a");
    h.power_off();
    h.exit("a", 143);
    h.assert_said("a: stopped (killed by signal 15 (SIGTERM))");
    let answer = reply(&restart).unwrap();
    assert_eq!(answer["error"], "a was stopped");
    assert_eq!(h.state("a"), "stopped");
    assert_eq!(h.spawns("a"), 1);
}
