//! The control socket, `/run/osbuild/svc.sock`: one JSON request a connection, one JSON
//! reply line (followed by log lines for `logs`). The protocol is documented in
//! `docs/init.md`; the `svc` command is its client.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::container::{Container, Section, State};
use super::logs::Logs;
use super::{Event, Waker};

/// Where the socket lives.
pub const SOCKET: &str = "/run/osbuild/svc.sock";

/// A request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// `ls`, `status`, `logs`, `start`, `stop`, `restart` or `exec`.
    pub op: String,
    /// The service (or `onboot/NAME`, `onshutdown/NAME`).
    #[serde(default)]
    pub name: String,
    /// For `logs`: keep sending new lines.
    #[serde(default)]
    pub follow: bool,
    /// For `logs`: how many past lines (default: all kept).
    #[serde(default)]
    pub lines: Option<usize>,
}

/// A reply from the main loop.
pub enum Reply {
    /// A JSON document to send.
    Json(Value),
    /// Stream this log.
    Logs(Arc<Logs>),
}

/// The container `name` names: `SECTION/NAME`, a service's name, or the name `svc ls` shows
/// for an onboot or onshutdown container (`000-dhcpcd`; its spec name `dhcpcd` too, when no
/// other container has it).
pub fn find(containers: &[Container], name: &str) -> Result<usize, String> {
    let in_section = |section: Section, n: &str| {
        containers
            .iter()
            .position(|c| c.section == section && c.name == n)
    };
    let found = match name.split_once('/') {
        Some(("onboot", n)) => in_section(Section::Onboot, n),
        Some(("onshutdown", n)) => in_section(Section::Onshutdown, n),
        Some(("services", n)) => in_section(Section::Service, n),
        _ => in_section(Section::Service, name)
            .or_else(|| containers.iter().position(|c| c.name == name))
            .or_else(|| {
                let mut short = containers
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| c.short_name() == name);
                match (short.next(), short.next()) {
                    (Some((i, _)), None) => Some(i),
                    _ => None,
                }
            }),
    };
    found.ok_or_else(|| format!("no container named {name:?} (svc ls lists them)"))
}

/// When the main loop answers a request.
pub enum Answer {
    /// Now.
    Now(Reply),
    /// Once container number N has stopped.
    WhenDown(usize),
    /// Once container number N has started again.
    WhenUp(usize),
}

/// What `ls` and `status` say about a container.
pub fn describe(c: &Container) -> Value {
    json!({
        "name": c.name,
        "section": c.section.dir(),
        "state": c.state.name(),
        "pid": c.main_pid(),
        "restarts": c.restarts,
        "lastExit": c.last_exit,
        "uptime": c.started.filter(|_| c.state == State::Running).map(|s| s.elapsed().as_secs_f64()),
        "restart": c.restart.as_str(),
        "dependsOn": c.depends_on,
        "cgroup": c.cgroup,
    })
}

/// The reply that says the request was carried out.
pub fn done() -> Reply {
    Reply::Json(json!({"ok": true}))
}

/// The reply that says it failed, and why.
pub fn failed(message: String) -> Reply {
    Reply::Json(json!({"ok": false, "error": message}))
}

/// Answer `req` (on the main loop, which owns the containers). `peer` is the pid of the
/// process that asked (from the socket's credentials), which `exec` moves into the
/// container's cgroup.
pub fn answer(
    containers: &mut [Container],
    req: Request,
    grace: Duration,
    peer: Option<i32>,
) -> Answer {
    if req.op == "ls" {
        let list: Vec<Value> = containers.iter().map(describe).collect();
        return Answer::Now(Reply::Json(json!({"ok": true, "containers": list})));
    }
    let (i, c) = match find(containers, &req.name) {
        Ok(i) => (i, &mut containers[i]),
        Err(e) => return Answer::Now(failed(e)),
    };
    let label = c.label();
    match req.op.as_str() {
        "status" => Answer::Now(Reply::Json(json!({"ok": true, "container": describe(c)}))),
        "exec" => Answer::Now(match join_cgroup(c, peer) {
            Ok(()) => Reply::Json(json!({"ok": true, "container": describe(c)})),
            Err(e) => failed(e),
        }),
        "logs" => Answer::Now(Reply::Logs(c.logs.clone())),
        "start" | "stop" | "restart" if c.section != Section::Service => {
            Answer::Now(failed(format!(
                "{label} is not a service: onboot and onshutdown containers run once, in order"
            )))
        }
        "stop" => {
            c.start_after_stop = false;
            c.next_start = None;
            if c.state == State::Running {
                if !c.stopping {
                    crate::log!("{}: stopping (svc stop)", c.name);
                    c.stop(grace);
                }
                Answer::WhenDown(i)
            } else {
                if c.state != State::Stopped {
                    crate::log!("{}: stopped (svc stop; it was {})", c.name, c.state.name());
                }
                c.state = State::Stopped;
                Answer::Now(done())
            }
        }
        "start" => {
            if c.state == State::Running {
                return Answer::Now(failed(format!("{label} is already running")));
            }
            c.failures = 0;
            match c.start() {
                Ok(()) => {
                    crate::log!("{}: started (svc start)", c.name);
                    Answer::Now(done())
                }
                Err(e) => Answer::Now(failed(e)),
            }
        }
        "restart" => {
            c.failures = 0;
            if c.state == State::Running {
                // The loop starts it again once it has exited, whatever its policy.
                crate::log!("{}: restarting (svc restart)", c.name);
                c.stop(grace);
                c.start_after_stop = true;
                Answer::WhenUp(i)
            } else {
                match c.start() {
                    Ok(()) => {
                        crate::log!("{}: started (svc restart)", c.name);
                        Answer::Now(done())
                    }
                    Err(e) => Answer::Now(failed(e)),
                }
            }
        }
        other => Answer::Now(failed(format!("unknown operation {other:?}"))),
    }
}

/// Move process `peer` (the `svc exec` client) into the container's cgroup, from PID 1's
/// side: inside its own container the client sees a read-only cgroup mount.
fn join_cgroup(c: &Container, peer: Option<i32>) -> Result<(), String> {
    if c.state != State::Running {
        return Err(format!("{} is not running", c.label()));
    }
    let pid = peer.ok_or("the socket did not say which process asked")?;
    let procs = c.cgroup.join("cgroup.procs");
    std::fs::write(&procs, pid.to_string())
        .map_err(|e| format!("moving the caller into {}: {e}", procs.display()))
}

/// Connections served at once; more are refused until one ends.
pub const MAX_CONNECTIONS: usize = 32;

/// Listen on [`SOCKET`] on a thread of its own, a thread per connection (at most
/// [`MAX_CONNECTIONS`]).
pub fn serve(waker: Waker) -> Result<(), String> {
    let _ = std::fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET).map_err(|e| format!("{SOCKET}: {e}"))?;
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::Builder::new()
        .name("svc-socket".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if open.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                    let reply = json!({"ok": false, "error": "too many connections; try again"});
                    let _ = writeln!(&conn, "{reply}");
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let waker = waker.clone();
                let mine = open.clone();
                let spawned = std::thread::Builder::new()
                    .name("svc-conn".into())
                    .stack_size(128 * 1024)
                    .spawn(move || {
                        let _ = handle(conn, &waker);
                        mine.fetch_sub(1, Ordering::SeqCst);
                    });
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::SeqCst);
                }
            }
        })
        .map_err(|e| format!("control socket thread: {e}"))?;
    Ok(())
}

/// The pid of the process at the other end of `conn`, in PID 1's namespace.
fn peer_pid(conn: &UnixStream) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    getsockopt(conn, PeerCredentials).ok().map(|c| c.pid())
}

/// Whether the client of `conn` has gone (closed or shut down its end).
fn client_gone(conn: &UnixStream) -> bool {
    use nix::sys::socket::{MsgFlags, recv};
    let mut byte = [0u8; 1];
    match recv(
        conn.as_raw_fd(),
        &mut byte,
        MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(0) => true,
        Ok(_) => false,
        Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => false,
        Err(_) => true,
    }
}

/// How long a request may wait for the main loop: stops wait for the service to end.
fn reply_timeout(op: &str) -> Duration {
    match op {
        "stop" | "restart" => Duration::from_secs(600),
        _ => Duration::from_secs(10),
    }
}

fn handle(conn: UnixStream, waker: &Waker) -> std::io::Result<()> {
    // A client that stops reading cannot hold this thread for long.
    conn.set_write_timeout(Some(Duration::from_secs(10)))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut line = String::new();
    BufReader::new((&conn).take(64 * 1024)).read_line(&mut line)?;
    let mut out = &conn;
    let req: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            let reply = json!({"ok": false, "error": format!("bad request: {e}")});
            return writeln!(out, "{reply}");
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let follow = req.follow;
    let lines = req.lines;
    let timeout = reply_timeout(&req.op);
    waker.send(Event::Api(req, peer_pid(&conn), tx));
    match rx.recv_timeout(timeout) {
        Ok(Reply::Json(v)) => writeln!(out, "{v}"),
        Ok(Reply::Logs(logs)) => {
            writeln!(out, "{}", json!({"ok": true}))?;
            let (mut batch, mut next) = logs.since(0, None);
            if let Some(n) = lines {
                batch.drain(..batch.len().saturating_sub(n));
            }
            loop {
                for l in &batch {
                    writeln!(out, "{l}")?;
                }
                // A follower ends when its client goes away, even with nothing new to send.
                if !follow || client_gone(&conn) {
                    return Ok(());
                }
                (batch, next) = logs.since(next, Some(Duration::from_secs(1)));
            }
        }
        Err(_) => writeln!(
            out,
            "{}",
            json!({"ok": false, "error": "the supervisor did not answer"})
        ),
    }
}
