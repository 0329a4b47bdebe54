//! The system inside the image: `examples/redis-os.yml` (pkg/init as PID 1 and supervisor,
//! pkg/dhcpcd, pkg/getty, pkg/redis) booted under QEMU. From the host, `redis-cli` through a
//! published port gets PONG; redis killed in the guest is restarted; an onboot container
//! that hangs is killed at its timeout, a failing one is reported with its output; a probe
//! container prints its capabilities, namespaces, ids, limits and cgroup; device rules, a
//! user namespace with a veth pair, restart policies, `dependsOn` and the `svc` commands are
//! checked; QEMU's `system_powerdown` runs the onshutdown container and powers off.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::guest::{Guest, redis_cli, wait_for_pong};
use support::{Scratch, env, repo};

/// Extra containers merged into redis-os.yml for the x86_64 boot. The probe prints what the
/// container sees as `probe: ...` lines (the console names a container once).
const EXTRA: &str = r#"
onboot:
  - name: hang
    image: osbuild/busybox:1
    command: ["/bin/sleep", "3600"]
    timeout: 3s
  - name: fail
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "echo probe-fail: about to fail; exit 3"]
  - name: probe
    image: osbuild/busybox:1
    command: ["/bin/sh", "/probe.sh"]
    capabilities: [CAP_NET_ADMIN, CAP_SYS_TIME]
    ambient: [CAP_NET_ADMIN]
    net: new
    uts: new
    uid: 1000
    gid: 1001
    additionalGids: [5, 7]
    hostname: probe-host
    readonly: true
    noNewPrivileges: true
    oomScoreAdj: 500
    sysctl:
      net.ipv4.ip_forward: "1"
    rlimits: ["nofile,123,456"]
    resources:
      memory:
        limit: 67108864
      pids:
        limit: 42
    binds:
      - /etc/probe.sh:/probe.sh
    runtime:
      cgroups: [osbuild-test/extra]
  - name: devices
    image: osbuild/busybox:1
    command: ["/bin/sh", "/probe-dev.sh"]
    binds:
      - /etc/probe-dev.sh:/probe-dev.sh
      - /dev/ttyS0:/dev/ttyS0
    devices:
      - path: /dev/kmsg
        type: c
        major: 1
        minor: 11
        mode: "0222"
services:
  - name: userns
    image: osbuild/busybox:1
    command: ["/bin/sh", "/probe-userns.sh"]
    userns: new
    net: new
    uidMappings: [{containerID: 0, hostID: 100000, size: 65536}]
    gidMappings: [{containerID: 0, hostID: 100000, size: 65536}]
    capabilities: [CAP_SYS_ADMIN, CAP_NET_ADMIN]
    binds:
      - /etc/probe-userns.sh:/probe-userns.sh
    runtime:
      interfaces:
        - name: vethc
          peer: vethh
  - name: once
    image: osbuild/busybox:1
    command: ["/bin/echo", "once-ran"]
    restart: "no"
  - name: flaky
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "if [ -e /run/flaky ]; then echo flaky-second-run; exit 0; fi; : > /run/flaky; echo flaky-first-run; exit 1"]
    restart: on-failure
    binds:
      - /run:/run
  - name: later
    image: osbuild/busybox:1
    command: ["/bin/sleep", "3600"]
    dependsOn: [sooner]
  - name: sooner
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "sleep 2; exec sleep 3600"]
onshutdown:
  - name: bye
    image: osbuild/busybox:1
    command: ["/bin/echo", "osbuild-shutdown-marker"]
files:
  - path: etc/probe.sh
    mode: "0644"
    contents: |
      grep -E '^(CapBnd|CapEff|CapAmb|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/^/probe: /'
      echo "probe: uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ,)"
      echo "probe: pid=$$ hostname=$(hostname)"
      touch /probe-file 2>/dev/null && echo "probe: root=rw" || echo "probe: root=ro"
      echo "probe: nofile=$(ulimit -n)/$(ulimit -Hn) oom=$(cat /proc/self/oom_score_adj)"
      echo "probe: ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
      cg=/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)
      echo "probe: cgroup=$cg memory.max=$(cat $cg/memory.max) pids.max=$(cat $cg/pids.max)"
      echo "probe: links=$(ls /sys/class/net | tr '\n' ,)"
      [ -d /sys/fs/cgroup/osbuild-test/extra ] && echo "probe: runtime cgroup made"
  - path: etc/probe-dev.sh
    mode: "0644"
    contents: |
      echo "<5>devices-probe-kmsg-allowed" > /dev/kmsg || echo "probe-dev: kmsg write failed"
      echo x > /dev/ttyS0 && echo "probe-dev: ttyS0=allowed" || echo "probe-dev: ttyS0=denied"
      echo x > /dev/null && echo "probe-dev: null=allowed"
  - path: etc/probe-userns.sh
    mode: "0644"
    contents: |
      echo "userns: map=$(tr -s ' ' < /proc/self/uid_map | sed 's/^ //')"
      echo "userns: id=$(id -u):$(id -g)"
      mkdir /dev/scratch && mount -t tmpfs scratch /dev/scratch && echo "userns: mounted a tmpfs"
      ip link set vethc up && echo "userns: links=$(ls /sys/class/net | tr '\n' ,)"
      exec sleep 3600
"#;

/// Build `specs` for `arch` into `out/NAME-*` with the cache shared by the run's tests, so
/// the packages (`@pkg:`) are built once.
fn build(arch: &str, name: &str, specs: &[&Path], out: &Path) -> PathBuf {
    support::build_shared(arch, name, specs, out, &[])
}

fn probe_lines(console: &str) -> Vec<&str> {
    console
        .lines()
        .filter_map(|l| l.strip_prefix("probe: "))
        .collect()
}

#[test]
fn redis_os_serves_restarts_and_powers_down_on_x86_64() {
    env();
    let s = Scratch::new();
    let extra = s.spec("extra.yml", EXTRA);
    let example = repo().join("examples/redis-os.yml");
    let image = build("amd64", "redis-os", &[&example, &extra], &s.out());
    let port = osbuild_testenv::registry::free_port().unwrap();
    let mut guest = Guest::boot("amd64", &image, port);
    wait_for_pong(&mut guest, port, Duration::from_secs(300));
    assert_eq!(redis_cli(port, &["SET", "osbuild", "works"]), "OK");
    assert_eq!(redis_cli(port, &["GET", "osbuild"]), "works");

    let console = guest.console();
    // Onboot: DHCP configured the network, the hung step was killed at its timeout, the
    // failing one was reported with its output, and the boot went on.
    assert!(
        console.contains("dhcpcd: eth0: leased 10.0.2.15/24"),
        "{console}"
    );
    assert!(
        console.contains("onboot 001-hang: still running after its timeout"),
        "{console}"
    );
    assert!(
        console.contains("onboot 002-fail: exited with status 3; its last output:"),
        "{console}"
    );
    assert!(
        console.contains("  | probe-fail: about to fail"),
        "{console}"
    );
    // The probe container saw what its config asked for.
    let probe = probe_lines(&console);
    for expected in [
        // CAP_NET_ADMIN (12) and CAP_SYS_TIME (25) bound; as uid 1000 only the ambient
        // CAP_NET_ADMIN stays effective across the exec.
        "CapBnd:0000000002001000",
        "CapAmb:0000000000001000",
        "CapEff:0000000000001000",
        "NoNewPrivs:1",
        "uid=1000 gid=1001 groups=1001,5,7",
        "pid=1 hostname=probe-host",
        "root=ro",
        "nofile=123/456 oom=500",
        "ip_forward=1",
        "cgroup=/sys/fs/cgroup/osbuild/onboot/003-probe memory.max=67108864 pids.max=42",
        "links=lo,",
        "runtime cgroup made",
    ] {
        assert!(
            probe.contains(&expected),
            "probe did not print {expected:?}: {probe:#?}\n{console}"
        );
    }

    // Device rules: the configured device is usable, a bound host device without a rule is
    // not (the shell on the console, allowed every device, can write that same one).
    assert!(
        console.contains("devices-probe-kmsg-allowed"),
        "kmsg write did not reach the kernel:\n{console}"
    );
    assert!(
        console.contains("devices: probe-dev: ttyS0=denied")
            && console.contains("/dev/ttyS0: Operation not permitted")
            && console.contains("devices: probe-dev: null=allowed"),
        "{console}"
    );
    // Supervision: dependsOn holds `later` until `sooner` runs; `restart: no` leaves a
    // finished service alone; `on-failure` restarts after a failure only.
    guest.wait_for(
        "flaky: exited with status 0; not restarting",
        1,
        Duration::from_secs(60),
    );
    let console = guest.console();
    let at = |what: &str| {
        console
            .find(what)
            .unwrap_or_else(|| panic!("{what:?} not on the console:\n{console}"))
    };
    assert!(at("sooner: started") < at("later: started"), "{console}");
    assert!(at("once: exited with status 0; not restarting (restart: no)") > 0);
    assert!(at("flaky: flaky-first-run") > 0 && at("flaky: flaky-second-run") > 0);
    assert!(
        at("flaky: exited with status 1; restarting") < at("flaky: started (restart 1)"),
        "{console}"
    );
    assert_eq!(console.matches("once: started").count(), 1, "{console}");
    assert_eq!(console.matches("flaky: started").count(), 2, "{console}");

    // The user namespace service: root inside, mapped to 100000 outside; it mounted a tmpfs
    // and brought up its end of the veth pair, whose peer is in the host's namespace.
    guest.type_line("svc logs userns | sed 's/^/svc-u''serns: /'; ls /sys/class/net | tr '\\n' , | sed 's/^/host-l''inks: /'; echo");
    guest.wait_for("host-links: ", 1, Duration::from_secs(30));
    let console = guest.console();
    for expected in [
        "svc-userns: userns: map=0 100000 65536",
        "svc-userns: userns: id=0:0",
        "svc-userns: userns: mounted a tmpfs",
        "svc-userns: userns: links=lo,vethc,",
    ] {
        assert!(console.contains(expected), "no {expected:?}:\n{console}");
    }
    let host_links = console
        .lines()
        .find_map(|l| l.strip_prefix("host-links: "))
        .unwrap_or_default();
    assert!(
        host_links.contains("vethh,") && !host_links.contains("vethc"),
        "{console}"
    );

    // svc stop, start and restart from the console shell, seen from the host through redis.
    guest.type_line("svc stop redis");
    guest.wait_for("redis: stopped", 1, Duration::from_secs(60));
    assert_ne!(redis_cli(port, &["PING"]), "PONG");
    guest.type_line("svc start redis");
    wait_for_pong(&mut guest, port, Duration::from_secs(60));
    // `svc logs -f` prints what is kept, then follows: the restart's lines arrive live.
    // (The quotes split the marker so the echoed command line cannot match it.)
    // (busybox sed holds a line back to know the last one: the shell's read does not.)
    guest.type_line("svc logs -f redis | while read -r l; do echo \"fol\"\"low: $l\"; done &");
    let ready = |g: &Guest| {
        g.console()
            .lines()
            .filter(|l| l.contains("follow: ") && l.contains("Ready to accept"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(&guest) < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let before = ready(&guest);
    assert_eq!(
        before,
        2,
        "svc logs -f did not print both starts:\n{}",
        guest.console()
    );
    guest.type_line("svc restart redis");
    guest.wait_for("redis: stopped", 2, Duration::from_secs(60));
    wait_for_pong(&mut guest, port, Duration::from_secs(60));
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(&guest) < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        ready(&guest),
        3,
        "svc logs -f did not follow:\n{}",
        guest.console()
    );
    guest.type_line("kill %1");

    // Kill redis from the console shell: the supervisor starts it again.
    guest.type_line("kill -9 $(pidof redis-server)");
    guest.wait_for(
        "redis: killed by signal 9 (SIGKILL); restarting",
        1,
        Duration::from_secs(60),
    );
    wait_for_pong(&mut guest, port, Duration::from_secs(60));
    // The control command sees the restart.
    guest.type_line("svc ls | sed 's/^/svc-ls: /'");
    guest.wait_for("svc-ls: redis", 1, Duration::from_secs(30));
    let ls = guest.console();
    let row = ls
        .lines()
        .find(|l| l.starts_with("svc-ls: redis "))
        .unwrap_or_default()
        .to_string();
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols.get(3), Some(&"running"), "{row}\n{ls}");
    let restarts: u32 = cols.get(5).and_then(|r| r.parse().ok()).unwrap_or(0);
    assert!(restarts >= 1, "restarts: {row}\n{ls}");
    // Its output is kept for `svc logs`, and `svc exec` runs a command inside it (the
    // redis image has no shell: its own binary answers).
    // (The quotes split the marker so the echoed command line cannot match it.)
    guest.type_line("svc logs redis | grep -c 'Ready to accept' | sed 's/^/svc-l''ogs=/'");
    guest.wait_for("svc-logs=", 1, Duration::from_secs(30));
    guest.type_line("svc exec redis -- /usr/bin/redis-server --version | sed 's/^/svc-exec: /'");
    guest.wait_for("svc-exec: Redis server v=", 1, Duration::from_secs(30));
    let console = guest.console();
    let ready: u32 = console
        .lines()
        .find_map(|l| l.strip_prefix("svc-logs=")?.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        ready >= 2,
        "svc logs should hold both starts of redis:\n{console}"
    );

    // system_powerdown: the ACPI power button; onshutdown runs and QEMU exits 0.
    let t0 = Instant::now();
    guest.monitor("system_powerdown");
    let status = guest.wait_exit(Duration::from_secs(90));
    let console = guest.console();
    assert!(
        console.contains("power button pressed"),
        "no power button event:\n{console}"
    );
    assert!(
        console.contains("bye: osbuild-shutdown-marker"),
        "onshutdown did not run:\n{console}"
    );
    let status = status
        .unwrap_or_else(|| panic!("QEMU still running 90 s after system_powerdown:\n{console}"));
    assert!(status.success(), "QEMU exited with {status}:\n{console}");
    eprintln!(
        "powered off {:.1}s after system_powerdown",
        t0.elapsed().as_secs_f64()
    );
}

fn redis_os_answers_pong_on(arch: &str) {
    env();
    let s = Scratch::new();
    let example = repo().join("examples/redis-os.yml");
    let image = build(arch, "redis-os", &[&example], &s.out());
    let port = osbuild_testenv::registry::free_port().unwrap();
    let mut guest = Guest::boot(arch, &image, port);
    wait_for_pong(&mut guest, port, Duration::from_secs(600));
    assert_eq!(redis_cli(port, &["SET", "arch", arch]), "OK");
    assert_eq!(redis_cli(port, &["GET", "arch"]), arch);
}

#[test]
fn redis_os_answers_pong_on_arm64() {
    redis_os_answers_pong_on("arm64");
}

#[test]
fn redis_os_answers_pong_on_s390x() {
    redis_os_answers_pong_on("s390x");
}
