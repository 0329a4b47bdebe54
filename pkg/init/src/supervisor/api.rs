//! The control socket, `/run/osbuild/svc.sock`: one JSON request a connection, one JSON
//! reply line (followed by log lines for `logs`). The protocol is documented in
//! `docs/init.md`; the `svc` command is its client.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
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

fn error(message: String) -> Reply {
    Reply::Json(json!({"ok": false, "error": message}))
}

fn find<'a>(containers: &'a mut [Container], name: &str) -> Result<&'a mut Container, String> {
    let (section, name) = match name.split_once('/') {
        Some(("onboot", n)) => (Section::Onboot, n),
        Some(("onshutdown", n)) => (Section::Onshutdown, n),
        Some(("services", n)) => (Section::Service, n),
        _ => (Section::Service, name),
    };
    containers
        .iter_mut()
        .find(|c| c.section == section && c.name == name)
        .ok_or_else(|| format!("no {} named {name:?}", section.dir()))
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

/// Answer `req` (on the main loop, which owns the containers).
pub fn answer(containers: &mut [Container], req: Request, grace: Duration) -> Reply {
    if req.op == "ls" {
        let list: Vec<Value> = containers.iter().map(describe).collect();
        return Reply::Json(json!({"ok": true, "containers": list}));
    }
    let c = match find(containers, &req.name) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    match req.op.as_str() {
        "status" | "exec" => Reply::Json(json!({"ok": true, "container": describe(c)})),
        "logs" => Reply::Logs(c.logs.clone()),
        "stop" => {
            c.start_after_stop = false;
            if c.state == State::Running {
                c.stop(grace);
            } else {
                c.state = State::Stopped;
                c.next_start = None;
            }
            Reply::Json(json!({"ok": true}))
        }
        "start" | "restart" if c.section != Section::Service => {
            error(format!("{} is not a service", req.name))
        }
        "start" => {
            if c.state != State::Running {
                c.failures = 0;
                if let Err(e) = c.start() {
                    return error(e);
                }
            }
            Reply::Json(json!({"ok": true}))
        }
        "restart" => {
            c.failures = 0;
            if c.state == State::Running {
                // The loop starts it again once it has exited, whatever its policy.
                c.stop(grace);
                c.start_after_stop = true;
            } else if let Err(e) = c.start() {
                return error(e);
            }
            Reply::Json(json!({"ok": true}))
        }
        other => error(format!("unknown operation {other:?}")),
    }
}

/// Listen on [`SOCKET`] on a thread of its own, a thread per connection.
pub fn serve(waker: Waker) -> Result<(), String> {
    let _ = std::fs::remove_file(SOCKET);
    let listener = UnixListener::bind(SOCKET).map_err(|e| format!("{SOCKET}: {e}"))?;
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let waker = waker.clone();
            std::thread::spawn(move || {
                let _ = handle(conn, &waker);
            });
        }
    });
    Ok(())
}

fn handle(conn: UnixStream, waker: &Waker) -> std::io::Result<()> {
    let mut line = String::new();
    BufReader::new(&conn).read_line(&mut line)?;
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
    waker.send(Event::Api(req, tx));
    match rx.recv_timeout(Duration::from_secs(10)) {
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
                if !follow {
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
