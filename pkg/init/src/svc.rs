//! `svc`: the control command inside the image (this program run as `svc`, or `init svc`).
//!
//! `svc ls`, `svc status NAME`, `svc logs [-f] [-n LINES] NAME`, `svc start|stop|restart NAME`,
//! `svc exec NAME -- CMD [ARGS]` (runs CMD in the container's namespaces and cgroup).
//! `svc stop` returns once the service is down, `svc restart` once it runs again.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

use nix::sched::{CloneFlags, setns};
use serde_json::Value;

use crate::supervisor::api::{Request, SOCKET};

const USAGE: &str = "usage: svc ls | status NAME | logs [-f] [-n LINES] NAME | start NAME | stop NAME | restart NAME | exec NAME -- CMD [ARG...]";

/// Run the command with `args` (after `svc`); returns the exit status.
pub fn main(args: &[String]) -> i32 {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("svc: {e}");
            1
        }
    }
}

fn request(req: &Request) -> Result<(Value, BufReader<UnixStream>), String> {
    let mut conn = UnixStream::connect(SOCKET).map_err(|e| format!("{SOCKET}: {e}"))?;
    let line = serde_json::to_string(req).map_err(|e| e.to_string())?;
    writeln!(conn, "{line}").map_err(|e| format!("{SOCKET}: {e}"))?;
    let mut reader = BufReader::new(conn);
    let mut reply = String::new();
    reader
        .read_line(&mut reply)
        .map_err(|e| format!("{SOCKET}: {e}"))?;
    let v: Value = serde_json::from_str(&reply).map_err(|e| format!("bad reply {reply:?}: {e}"))?;
    if v["ok"] != Value::Bool(true) {
        return Err(v["error"].as_str().unwrap_or("failed").to_string());
    }
    Ok((v, reader))
}

/// Print a line; a closed pipe (`svc ls | head -1`) ends the command quietly.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
        std::process::exit(0);
    }
}

fn req(op: &str, name: &str) -> Request {
    Request {
        op: op.into(),
        name: name.into(),
        follow: false,
        lines: None,
    }
}

fn row(c: &Value) -> String {
    let pid = c["pid"].as_i64().map_or("-".into(), |p| p.to_string());
    let exit = c["lastExit"].as_i64().map_or("-".into(), |p| p.to_string());
    format!(
        "{:<24} {:<11} {:<9} {:>7} {:>8} {:>4}",
        c["name"].as_str().unwrap_or("?"),
        c["section"].as_str().unwrap_or("?"),
        c["state"].as_str().unwrap_or("?"),
        pid,
        c["restarts"].as_u64().unwrap_or(0),
        exit
    )
}

fn run(args: &[String]) -> Result<i32, String> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["ls"] => {
            let (v, _) = request(&req("ls", ""))?;
            say(&format!(
                "{:<24} {:<11} {:<9} {:>7} {:>8} {:>4}",
                "NAME", "SECTION", "STATE", "PID", "RESTARTS", "EXIT"
            ));
            for c in v["containers"].as_array().into_iter().flatten() {
                say(&row(c));
            }
            Ok(0)
        }
        ["status", name] => {
            let (v, _) = request(&req("status", name))?;
            say(&serde_json::to_string_pretty(&v["container"]).map_err(|e| e.to_string())?);
            Ok(0)
        }
        ["start" | "stop" | "restart", name] => {
            request(&req(args[0], name))?;
            Ok(0)
        }
        ["logs", rest @ ..] => {
            let mut r = req("logs", "");
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match *a {
                    "-f" => r.follow = true,
                    "-n" => r.lines = Some(it.next().and_then(|n| n.parse().ok()).ok_or(USAGE)?),
                    name if r.name.is_empty() => r.name = name.into(),
                    _ => return Err(USAGE.into()),
                }
            }
            if r.name.is_empty() {
                return Err(USAGE.into());
            }
            let (_, mut reader) = request(&r)?;
            let mut line = String::new();
            while reader.read_line(&mut line).map_err(|e| e.to_string())? > 0 {
                say(line.trim_end_matches('\n'));
                line.clear();
            }
            Ok(0)
        }
        ["exec", name, "--", cmd @ ..] if !cmd.is_empty() => exec(name, cmd),
        _ => Err(USAGE.into()),
    }
}

/// Run `cmd` in the container's cgroup (PID 1 moves this process there before it answers,
/// or refuses) and in the namespaces of its main process.
fn exec(name: &str, cmd: &[&str]) -> Result<i32, String> {
    let (v, _) = request(&req("exec", name))?;
    let c = &v["container"];
    let pid = c["pid"]
        .as_i64()
        .ok_or_else(|| format!("{name} is not running"))?;
    let env: Vec<(String, String)> = std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv);
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    // The mount namespace last: the others are opened through this one's /proc.
    let mut files = Vec::new();
    for (ns, flag) in [
        ("ipc", CloneFlags::CLONE_NEWIPC),
        ("uts", CloneFlags::CLONE_NEWUTS),
        ("net", CloneFlags::CLONE_NEWNET),
        ("pid", CloneFlags::CLONE_NEWPID),
        ("cgroup", CloneFlags::CLONE_NEWCGROUP),
        ("mnt", CloneFlags::CLONE_NEWNS),
    ] {
        let path = format!("/proc/{pid}/ns/{ns}");
        let f = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        files.push((f, flag, path));
    }
    for (f, flag, path) in files {
        // Joining one's own namespace is an error for some types; skip what we share.
        let mine = std::fs::read_link(format!(
            "/proc/self/ns/{}",
            path.rsplit('/').next().unwrap_or("")
        ));
        let theirs = std::fs::read_link(&path);
        if mine.is_ok() && mine.ok() == theirs.ok() {
            continue;
        }
        setns(f, flag).map_err(|e| format!("joining {path}: {e}"))?;
    }
    let status = Command::new(cmd[0])
        .args(&cmd[1..])
        .env_clear()
        .envs(env)
        .current_dir("/")
        .status()
        .map_err(|e| format!("{}: {e}", cmd[0]))?;
    Ok(status.code().unwrap_or_else(|| {
        128 + std::os::unix::process::ExitStatusExt::signal(&status).unwrap_or(0)
    }))
}
