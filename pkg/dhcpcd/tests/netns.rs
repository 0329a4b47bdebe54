//! The built `dhcpcd` against a real DHCP server (Debian's dnsmasq), across a veth pair between
//! two network namespaces made for the test. Needs root, `ip` (iproute2) and `dnsmasq`
//! (dnsmasq-base, installed by .ci/install-deps); skipped when not root.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const DHCPCD: &str = env!("CARGO_BIN_EXE_dhcpcd");

fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (is iproute2 installed?)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ip(args: &[&str]) -> String {
    String::from_utf8(run(Command::new("ip").args(args)).stdout).unwrap()
}

/// Two network namespaces, `client` holding `eth0` and `server` holding its veth peer `srv0`
/// (10.77.0.1/24, up), and whatever runs in them: all removed on drop, even when a test fails.
struct Net {
    client: String,
    server: String,
    children: Vec<Child>,
    dir: tempfile::TempDir,
}

impl Net {
    fn new(tag: &str) -> Net {
        let id = format!("osbd-{}-{tag}", std::process::id());
        let net = Net {
            client: format!("{id}-c"),
            server: format!("{id}-s"),
            children: Vec::new(),
            dir: tempfile::tempdir().unwrap(),
        };
        // Leftovers of an earlier run with the same pid would make `add` fail.
        for ns in [&net.client, &net.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
        ip(&["netns", "add", &net.client]);
        ip(&["netns", "add", &net.server]);
        ip(&[
            "link",
            "add",
            "eth0",
            "netns",
            &net.client,
            "type",
            "veth",
            "peer",
            "name",
            "srv0",
            "netns",
            &net.server,
        ]);
        ip(&[
            "-n",
            &net.server,
            "addr",
            "add",
            "10.77.0.1/24",
            "dev",
            "srv0",
        ]);
        ip(&["-n", &net.server, "link", "set", "srv0", "up"]);
        net
    }

    /// Start dnsmasq as the DHCP server on `srv0` and wait until it listens.
    fn start_dnsmasq(&mut self) {
        let log = self.dir.path().join("dnsmasq.log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, "dnsmasq", "--no-daemon"])
            .args([
                "--conf-file=/dev/null",
                "--port=0",
                "--interface=srv0",
                "--bind-interfaces",
                // No ping of the address before offering it (3 s per lease).
                "--no-ping",
                "--user=root",
                "--group=root",
                "--dhcp-authoritative",
                "--dhcp-range=10.77.0.50,10.77.0.60,255.255.255.0,1h",
                "--dhcp-option=option:router,10.77.0.1",
                "--dhcp-option=option:dns-server,10.77.0.1",
                "--dhcp-option=option:domain-search,osbuild.test",
                "--dhcp-option=option:mtu,1400",
                "--log-dhcp",
                "--log-facility=-",
            ])
            .arg(format!(
                "--dhcp-leasefile={}",
                self.dir.path().join("leases").display()
            ))
            .arg(format!(
                "--pid-file={}",
                self.dir.path().join("dnsmasq.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("dnsmasq: install dnsmasq-base (.ci/install-deps)");
        self.children.push(child);
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("DHCP, IP range") {
                return;
            }
            if let Some(Ok(Some(status))) = self.children.last_mut().map(|c| c.try_wait()) {
                panic!("dnsmasq exited ({status}):\n{text}");
            }
            assert!(Instant::now() < until, "dnsmasq did not start:\n{text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }

    /// Run dhcpcd in the client namespace; its output and how long it took.
    fn dhcpcd(&self, args: &[&str]) -> (Output, Duration) {
        let start = Instant::now();
        let out = Command::new("timeout")
            .args([
                "-s",
                "KILL",
                "60",
                "ip",
                "netns",
                "exec",
                &self.client,
                DHCPCD,
            ])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out, start.elapsed())
    }

    fn resolv_conf(&self) -> PathBuf {
        self.dir.path().join("run/resolvconf/resolv.conf")
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.client, &self.server] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn leases_from_dnsmasq_and_configures_the_namespace() {
    if !osbuild_test_skip::is_root() {
        return osbuild_test_skip::skip("needs root (network namespaces)");
    }
    let mut net = Net::new("lease");
    net.start_dnsmasq();
    let resolv = net.resolv_conf();
    // No interface named: dhcpcd finds eth0 in the namespace's /sys/class/net itself.
    let (out, elapsed) = net.dhcpcd(&["--timeout", "20", "--resolv-conf", path(&resolv)]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dhcpcd: {} after {elapsed:?}\n{stderr}\ndnsmasq:\n{}",
        out.status,
        net.dnsmasq_log()
    );

    let leased = stderr
        .lines()
        .find_map(|l| l.strip_prefix("dhcpcd: eth0: leased "))
        .unwrap_or_else(|| panic!("no lease line:\n{stderr}"));
    let address = leased.split('/').next().unwrap().to_string();
    let last: u8 = address
        .strip_prefix("10.77.0.")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("address {address} outside 10.77.0.0/24"));
    assert!((50..=60).contains(&last), "{address} outside the range");
    assert_eq!(
        leased,
        format!(
            "{address}/24 via 10.77.0.1 dns 10.77.0.1 search osbuild.test mtu 1400 (lease 3600s)"
        )
    );
    assert!(stderr.contains("dhcpcd: lo: link up"), "{stderr}");

    let addrs = ip(&["-n", &net.client, "-4", "addr", "show", "dev", "eth0"]);
    assert!(addrs.contains(&format!("inet {address}/24 ")), "{addrs}");
    let routes = ip(&["-n", &net.client, "-4", "route", "show"]);
    assert!(
        routes.contains("default via 10.77.0.1 dev eth0 proto dhcp src "),
        "{routes}"
    );
    let link = ip(&["-n", &net.client, "link", "show", "dev", "eth0"]);
    assert!(link.contains("mtu 1400") && link.contains(",UP"), "{link}");
    let lo = ip(&["-n", &net.client, "link", "show", "dev", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    assert_eq!(
        std::fs::read_to_string(&resolv).unwrap(),
        "# Written by dhcpcd from the DHCP lease of eth0\n\
         search osbuild.test\n\
         nameserver 10.77.0.1\n"
    );

    // The server saw the whole exchange.
    let log = net.dnsmasq_log();
    for step in [
        "DHCPDISCOVER(srv0)",
        "DHCPOFFER(srv0)",
        "DHCPREQUEST(srv0)",
        "DHCPACK(srv0)",
    ] {
        assert!(log.contains(step), "{step} missing:\n{log}");
    }

    // A second run (a restarted onboot) replaces rather than fails.
    let (again, _) = net.dhcpcd(&["--timeout", "20", "--resolv-conf", path(&resolv), "eth0"]);
    assert!(
        again.status.success(),
        "second run: {}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn without_a_server_times_out_with_one_line() {
    if !osbuild_test_skip::is_root() {
        return osbuild_test_skip::skip("needs root (network namespaces)");
    }
    let net = Net::new("timeout");
    let resolv = net.resolv_conf();
    let (out, elapsed) = net.dhcpcd(&["--timeout", "3", "--resolv-conf", path(&resolv), "eth0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        elapsed >= Duration::from_secs(3) && elapsed < Duration::from_secs(8),
        "took {elapsed:?}\n{stderr}"
    );
    assert_eq!(
        stderr.lines().last(),
        Some("dhcpcd: timed out after 3s: no DHCP lease on eth0"),
        "{stderr}"
    );
    assert!(!resolv.exists());
}

#[test]
fn usage_errors_exit_2() {
    let out = Command::new(DHCPCD).arg("--bogus").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("dhcpcd: unknown option --bogus\nusage: dhcpcd "),
        "{stderr}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
