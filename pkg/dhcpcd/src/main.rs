//! `dhcpcd`: a one-shot DHCPv4 client for an onboot container in the host's network namespace.
//!
//! `dhcpcd [--timeout SECS] [--once] [--resolv-conf PATH] [-v] [IFACE...]` brings `lo` up and
//! the named interfaces (by default every ethernet interface in /sys/class/net, waiting a few
//! seconds for one to appear while the driver loads), takes a lease on each at the same time
//! (DISCOVER/OFFER/REQUEST/ACK, through mozim), and sets the address and prefix, the routes (the
//! default route via the router, or the classless static routes), the MTU, and the DNS servers
//! and search domains in /run/resolvconf/resolv.conf. It logs a line per step on stderr and
//! exits 0 when at least one interface is configured, 1 when none got a lease in the timeout
//! (30 s by default, counted from the start), 2 on a usage error.
//!
//! One-shot is the only mode: nothing stays to renew the lease (`--once` is accepted for
//! compatibility with dhcpcd's `-1` and changes nothing). The address is therefore set without
//! a lifetime, so the machine keeps it after the lease time; that suits the short-lived VMs and
//! the DHCP servers (QEMU's, clouds') that give a machine the same address every time.

mod ifaces;
mod lease;
mod netlink;
mod resolv;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use mozim::{DhcpV4Client, DhcpV4Config, DhcpV4State};
use tokio::time::Instant;

use crate::lease::LeaseInfo;

/// Where the interfaces are listed.
const SYS_NET: &str = "/sys/class/net";
/// The default for `--timeout`, in seconds.
const DEFAULT_TIMEOUT_SECS: u64 = 30;
/// How long to wait for interfaces to appear (the driver may still be loading).
const APPEAR_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the link to be operational after bringing it up before sending anyway.
const LINK_WAIT: Duration = Duration::from_secs(3);

const USAGE: &str = "usage: dhcpcd [--timeout SECS] [--once] [--resolv-conf PATH] [-v] [IFACE...]
Takes a DHCPv4 lease on each interface (default: every ethernet interface) and configures the
address, routes, MTU and DNS (written to /run/resolvconf/resolv.conf), then exits.
  -t, --timeout SECS     give up after SECS seconds in all (default 30)
  -1, --once             one-shot (the only mode; accepted for compatibility)
      --resolv-conf PATH write the DNS configuration to PATH instead
  -v, --verbose          show the DHCP client's own messages
  -h, --help             this text";

/// The command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    timeout: Duration,
    resolv_conf: PathBuf,
    verbose: bool,
    ifaces: Vec<String>,
}

/// What the command line asks: to run, or to print the usage.
#[derive(Debug, PartialEq, Eq)]
enum Command {
    Run(Args),
    Help,
}

fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<Command, String> {
    let mut parsed = Args {
        timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
        resolv_conf: PathBuf::from(resolv::DEFAULT_PATH),
        verbose: false,
        ifaces: Vec::new(),
    };
    let mut args = args.into_iter();
    let mut only_names = false;
    while let Some(arg) = args.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("not UTF-8: {}", a.to_string_lossy()))?;
        if only_names || !arg.starts_with('-') {
            if arg.is_empty() || arg.len() > 15 || arg.contains('/') || arg == "." || arg == ".." {
                return Err(format!("{arg:?} is not an interface name"));
            }
            parsed.ifaces.push(arg);
            continue;
        }
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag.as_str() {
            "--" => only_names = true,
            "-h" | "--help" => return Ok(Command::Help),
            "-1" | "--once" => {}
            "-v" | "--verbose" => parsed.verbose = true,
            "-t" | "--timeout" => {
                let v = value("--timeout")?;
                match v.parse::<u64>() {
                    Ok(secs) if (1..=86400).contains(&secs) => {
                        parsed.timeout = Duration::from_secs(secs);
                    }
                    _ => return Err(format!("--timeout {v:?}: a number of seconds, 1 to 86400")),
                }
            }
            "--resolv-conf" => {
                let v = value("--resolv-conf")?;
                if v.is_empty() {
                    return Err("--resolv-conf needs a path".into());
                }
                parsed.resolv_conf = PathBuf::from(v);
            }
            _ => return Err(format!("unknown option {arg}")),
        }
    }
    Ok(Command::Run(parsed))
}

/// Why an interface was not configured.
enum Failure {
    /// No lease within the timeout.
    Timeout,
    /// Anything else, with its message.
    Error(String),
}

/// mozim's messages on stderr, with `-v`.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        eprintln!(
            "dhcpcd: [{} {}] {}",
            record.target(),
            record.level(),
            record.args()
        );
    }
    fn flush(&self) {}
}

/// The host name to send (option 12), when the machine has a real one.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "(none)" && name != "localhost").then(|| name.to_string())
}

/// Take a lease on `name` and apply it.
async fn configure(
    handle: &rtnetlink::Handle,
    name: &str,
    deadline: Instant,
) -> Result<LeaseInfo, Failure> {
    let index = netlink::index(handle, name).await.map_err(Failure::Error)?;
    netlink::set_up(handle, index)
        .await
        .map_err(Failure::Error)?;
    let link_until = deadline.min(Instant::now() + LINK_WAIT);
    if ifaces::wait_for_link(Path::new(SYS_NET), name, link_until).await {
        eprintln!("dhcpcd: {name}: link up, sending DHCPDISCOVER");
    } else {
        eprintln!(
            "dhcpcd: {name}: link not ready after {}s, sending DHCPDISCOVER anyway",
            LINK_WAIT.as_secs()
        );
    }

    let mut config = DhcpV4Config::new(name);
    config.set_iface_index(index);
    if let Some(host) = host_name() {
        config.set_host_name(&host);
    }
    let client = DhcpV4Client::init(config, None);
    let mut client = match tokio::time::timeout_at(deadline, client).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(Failure::Error(format!("starting DHCP: {}", e.msg()))),
        Err(_) => return Err(Failure::Timeout),
    };
    let lease = loop {
        match tokio::time::timeout_at(deadline, client.run()).await {
            Ok(Ok(DhcpV4State::Done(lease))) => break lease,
            Ok(Ok(DhcpV4State::Selecting)) => {
                eprintln!("dhcpcd: {name}: offer received, sending DHCPREQUEST");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(Failure::Error(format!("DHCP: {}", e.msg()))),
            Err(_) => return Err(Failure::Timeout),
        }
    };
    drop(client);
    let info = LeaseInfo::from_lease(&lease).map_err(Failure::Error)?;
    netlink::apply(handle, index, &info)
        .await
        .map_err(Failure::Error)?;
    eprintln!("dhcpcd: {name}: {info}");
    Ok(info)
}

async fn run(args: Args) -> Result<(), String> {
    let start = Instant::now();
    let deadline = start + args.timeout;
    let sys_net = Path::new(SYS_NET);
    let handle = netlink::connect()?;

    match netlink::index(&handle, "lo").await {
        Ok(lo) => match netlink::set_up(&handle, lo).await {
            Ok(()) => eprintln!("dhcpcd: lo: link up"),
            Err(e) => eprintln!("dhcpcd: lo: {e}"),
        },
        Err(e) => eprintln!("dhcpcd: lo: {e}"),
    }

    let appear_until = deadline.min(start + APPEAR_WAIT);
    let names = if args.ifaces.is_empty() {
        let found = ifaces::wait_for_ethernet(sys_net, appear_until).await;
        if found.is_empty() {
            return Err(format!(
                "no ethernet interface appeared in {SYS_NET} within {}s",
                (appear_until - start).as_secs()
            ));
        }
        found
    } else {
        let missing = ifaces::wait_for_names(sys_net, &args.ifaces, appear_until).await;
        for name in &missing {
            eprintln!(
                "dhcpcd: {name}: no such interface (waited {}s)",
                (appear_until - start).as_secs()
            );
        }
        let present: Vec<String> = args
            .ifaces
            .iter()
            .filter(|n| !missing.contains(n))
            .cloned()
            .collect();
        if present.is_empty() {
            return Err("none of the interfaces named exists".into());
        }
        present
    };

    let results =
        futures_util::future::join_all(names.iter().map(|name| configure(&handle, name, deadline)))
            .await;

    let mut leases = Vec::new();
    let mut timed_out = Vec::new();
    let mut failed = 0;
    for (name, result) in names.iter().zip(results) {
        match result {
            Ok(info) => leases.push((name.clone(), info)),
            Err(Failure::Timeout) => timed_out.push(name.as_str()),
            Err(Failure::Error(e)) => {
                eprintln!("dhcpcd: {name}: {e}");
                failed += 1;
            }
        }
    }
    let timeout_secs = args.timeout.as_secs();
    if leases.is_empty() {
        return Err(if failed == 0 {
            format!(
                "timed out after {timeout_secs}s: no DHCP lease on {}",
                timed_out.join(", ")
            )
        } else {
            "no interface configured".into()
        });
    }
    for name in timed_out {
        eprintln!("dhcpcd: {name}: no DHCP lease within {timeout_secs}s");
    }

    if let Some(text) = resolv::render(&leases) {
        resolv::write_atomic(&args.resolv_conf, &text)
            .map_err(|e| format!("{}: {e}", args.resolv_conf.display()))?;
        eprintln!("dhcpcd: wrote {}", args.resolv_conf.display());
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args_os().skip(1)) {
        Ok(Command::Run(args)) => args,
        Ok(Command::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("dhcpcd: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if args.verbose && log::set_logger(&StderrLog).is_ok() {
        log::set_max_level(log::LevelFilter::Debug);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dhcpcd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dhcpcd: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(OsString::from))
    }

    fn run_args(args: &[&str]) -> Args {
        match parse(args).unwrap() {
            Command::Run(a) => a,
            Command::Help => panic!("help"),
        }
    }

    #[test]
    fn defaults() {
        let a = run_args(&[]);
        assert_eq!(a.timeout, Duration::from_secs(30));
        assert_eq!(a.resolv_conf, Path::new("/run/resolvconf/resolv.conf"));
        assert!(!a.verbose);
        assert!(a.ifaces.is_empty());
    }

    #[test]
    fn flags_and_names() {
        let a = run_args(&[
            "--timeout",
            "5",
            "--once",
            "eth0",
            "-v",
            "--resolv-conf=/tmp/r",
            "--",
            "-odd",
        ]);
        assert_eq!(a.timeout, Duration::from_secs(5));
        assert_eq!(a.resolv_conf, Path::new("/tmp/r"));
        assert!(a.verbose);
        assert_eq!(a.ifaces, vec!["eth0", "-odd"]);
        assert_eq!(run_args(&["-t", "7", "-1"]).timeout, Duration::from_secs(7));
        assert_eq!(parse(&["eth0", "--help"]), Ok(Command::Help));
    }

    #[test]
    fn mistakes() {
        for (args, want) in [
            (&["--timeout"][..], "needs a value"),
            (&["--timeout", "0"][..], "1 to 86400"),
            (&["--timeout=abc"][..], "1 to 86400"),
            (&["--frobnicate"][..], "unknown option --frobnicate"),
            (&["../x"][..], "not an interface name"),
            (&["averyveryverylongname"][..], "not an interface name"),
            (&["--resolv-conf="][..], "needs a path"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }
}
