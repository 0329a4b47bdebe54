//! PID 1 under hostile services, in `examples/redis-os.yml` booted under QEMU (x86_64): one
//! service writes 300 MB without a newline, another floods the console with lines, a third
//! crash-loops. PID 1's memory and threads stay flat, its restarts stay on time (the console
//! drops what it cannot take and says so), and the `svc` commands do what they say: `exec`
//! runs in the service's cgroup, abandoned `logs -f` followers end, `stop` returns once the
//! service is down, onboot containers are named as `svc ls` shows them, Ctrl-C reaches the
//! console shell's commands, and `svc` is ours in scripts too.

mod support;

use std::time::{Duration, Instant};

use support::guest::{Guest, figure, redis_cli, restart_delays, wait_for_pong};
use support::{Scratch, env, repo};

const EXTRA: &str = r#"
onboot:
  - name: hang
    image: osbuild/busybox:1
    command: ["/bin/sleep", "3600"]
    timeout: 2s
  - name: before
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "grep -E '^(VmRSS|Threads):' /proc/1/status | tr -s '\\t ' ' ' | sed 's/^/pid1-before: /'"]
    pid: host
services:
  - name: zeros
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "sleep 5; dd if=/dev/zero bs=1M count=300 2>/dev/null; echo; echo zeros-done; exec sleep 3600"]
  - name: flood
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "sleep 5; timeout 25 yes 'a line of output that comes faster than any serial console takes it'; echo flood-done"]
    restart: "no"
  - name: crashy
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "echo crashy-ran; exit 1"]
  - name: limited
    image: osbuild/busybox:1
    command: ["/bin/sleep", "3600"]
    resources:
      memory:
        limit: 33554432
"#;

#[test]
fn pid1_survives_floods_and_svc_does_what_it_says() {
    env();
    let s = Scratch::new();
    let extra = s.spec("extra.yml", EXTRA);
    let example = repo().join("examples/redis-os.yml");
    let image = support::build_shared("amd64", "pid1", &[&example, &extra], &s.out(), &[]);
    let port = support::portpicker();
    let mut guest = Guest::boot("amd64", &image, port);
    wait_for_pong(&mut guest, port, Duration::from_secs(300));
    guest.wait_for("pid1-before: ", 1, Duration::from_secs(10));
    // Both floods run; the crash-looping service keeps being restarted meanwhile.
    // (PID 1's own lines reach the console during a flood; the services' may be dropped.)
    guest.wait_for(
        "init: flood: exited with status 0; not restarting",
        1,
        Duration::from_secs(240),
    );
    let t_flood_over = Instant::now();
    // redis answered throughout.
    assert_eq!(redis_cli(port, &["PING"]), "PONG");
    let console = guest.console();

    // The console dropped what it could not take, and said so.
    assert!(
        console.contains("init: console: dropped "),
        "no report of dropped console lines:\n{}",
        tail(&console)
    );
    // Every restart of the crash-looping service during the floods came on time.
    let delays = restart_delays(&console, "crashy");
    assert!(delays.len() >= 4, "too few restarts seen: {delays:?}");
    for (announced, actual) in &delays {
        assert!(
            actual - announced < 1.5,
            "a restart came {:.2}s late: {delays:?}",
            actual - announced
        );
    }
    eprintln!("crashy restarts (announced s, actual s): {delays:?}");

    // PID 1 after the floods: memory and threads as before them.
    let console = guest.run(
        "grep -E '^(VmRSS|Threads):' /proc/1/status | tr -s '\\t ' ' ' | sed 's/^/pid1-af''ter: /'; ls -l /var/log/zeros.log /var/log/flood.log | awk '{print \"log-si\"\"ze: \" $5}'; echo \"zeros-l\"\"og: $(grep -c 'line cut at 4096 bytes' /var/log/zeros.log) $(grep -c zeros-done /var/log/zeros.log)\"",
        "zeros-log: ",
    );
    // The 300 MB line was cut once at 4096 bytes, and the line after it kept.
    assert!(console.contains("zeros-log: 1 1"), "{}", tail(&console));
    let rss_before = figure(&console, "pid1-before: ", "VmRSS:");
    let rss_after = figure(&console, "pid1-after: ", "VmRSS:");
    let threads_before = figure(&console, "pid1-before: ", "Threads:");
    let threads_after = figure(&console, "pid1-after: ", "Threads:");
    eprintln!(
        "PID 1: VmRSS {rss_before} kB -> {rss_after} kB, threads {threads_before} -> {threads_after} (floods over {:?} ago)",
        t_flood_over.elapsed()
    );
    assert!(
        rss_after < rss_before + 4096,
        "PID 1 grew from {rss_before} kB to {rss_after} kB"
    );
    for size in console
        .lines()
        .filter_map(|l| l.strip_prefix("log-size: "))
        .map(|s| s.trim().parse::<u64>().unwrap())
    {
        assert!(size <= (1 << 20) + 4200, "a log file of {size} bytes");
    }

    // Abandoned followers end: ten `svc logs -f` killed at once leave no thread behind.
    let console = guest.run(
        "for i in 1 2 3 4 5 6 7 8 9 10; do svc logs -f getty > /dev/null & sleep 0.2; kill -9 $!; done; sleep 3; grep Threads: /proc/1/status | tr -s '\\t ' ' ' | sed 's/^/pid1-follow''ers: /'",
        "pid1-followers: Threads",
    );
    let threads_followers = figure(&console, "pid1-followers: ", "Threads:");
    assert!(
        threads_followers <= threads_after + 1,
        "PID 1 has {threads_followers} threads after abandoned followers, {threads_after} before"
    );

    // `svc exec` runs in the service's cgroup, under its memory limit.
    let console = guest.run(
        "svc exec limited -- sh -c 'echo \"exec-cg\"\"roup: $(cat /proc/self/cgroup) $(cat /sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/memory.max)\"'",
        "exec-cgroup: ",
    );
    assert!(
        console.contains("exec-cgroup: 0::/osbuild/services/limited 33554432"),
        "{}",
        tail(&console)
    );

    // `svc stop` returns once the service is down; `svc start` says it started it.
    let console = guest.run(
        "svc stop redis; svc ls | grep '^redis ' | awk '{print \"after-st\"\"op: \" $3}'",
        "after-stop: ",
    );
    assert!(
        console.contains("after-stop: stopped"),
        "{}",
        tail(&console)
    );
    assert!(console.contains("init: redis: stopping (svc stop)"));
    guest.type_line("svc start redis");
    guest.wait_for(
        "init: redis: started (svc start)",
        1,
        Duration::from_secs(30),
    );
    wait_for_pong(&mut guest, port, Duration::from_secs(60));

    // Onboot containers go by the name `svc ls` shows, or their spec name; they cannot be
    // stopped; their timed-out cgroup is gone. `svc` in a script is ours, not busybox's.
    let console = guest.run(
        "svc logs -n 1 000-dhcpcd | sed 's/^/by-num''ber: /'; svc logs -n 1 dhcpcd | sed 's/^/by-na''me: /'; svc stop 000-dhcpcd 2>&1 | sed 's/^/stop-onb''oot: /'; [ -d /sys/fs/cgroup/osbuild/onboot/001-hang ] || echo 'hang-cgroup''-removed'; sh -c 'svc ls' | head -1 | sed 's/^/scr''ipt: /'",
        "script: ",
    );
    for expected in [
        "by-number: dhcpcd: ",
        "by-name: dhcpcd: ",
        "stop-onboot: svc: onboot/000-dhcpcd is not a service",
        "hang-cgroup-removed",
        "script: NAME ",
    ] {
        assert!(
            console.contains(expected),
            "no {expected:?}:\n{}",
            tail(&console)
        );
    }

    // Ctrl-C stops the console shell's foreground command.
    guest.type_line("sleep 120; echo 'slept-thr''ough'");
    std::thread::sleep(Duration::from_secs(2));
    guest.type_line("\x03");
    let console = guest.run("echo 'ctrl-c-w''orked'", "ctrl-c-worked");
    assert!(!console.contains("slept-through"), "{}", tail(&console));
}

/// The end of the console, enough to see what went wrong.
fn tail(console: &str) -> String {
    let lines: Vec<&str> = console.lines().collect();
    lines[lines.len().saturating_sub(80)..].join("\n")
}
