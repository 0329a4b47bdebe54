//! `examples/redis-data-os.yml` keeps redis's data on a persistent disk: the first boot
//! formats a blank raw disk (ext4, labelled, as the host's `blkid` and `dumpe2fs` read it) and
//! mounts it for redis; keys written through the published port are still there after a
//! clean power-off and a second boot, which leaves the formatted disk alone. A soak drives
//! redis with redis-benchmark and acknowledged writes for a minute while redis is killed
//! every 11 s and another service floods the console: PID 1 stays flat, every restart comes
//! on time, and every acknowledged write is there after a power-off and a new boot.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::guest::{Guest, figure, redis_cli, wait_for_pong};
use support::{build_shared, portpicker, repo, sh};

/// One guest at a time: the soak's timings must not share the machine with another boot.
static ONE_GUEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Boot with `disk` attached until redis answers; the guest.
fn boot(image: &Path, disk: &Path) -> (Guest, u16) {
    let port = portpicker();
    let disk_arg = format!("{},size=256M,format=raw", disk.display());
    let mut guest = Guest::boot_with("amd64", image, port, &["--disk", &disk_arg]);
    guest.wait_for("redis: started", 1, Duration::from_secs(300));
    wait_for_pong(&mut guest, port, Duration::from_secs(120));
    (guest, port)
}

/// Press the power button through QEMU's monitor and wait for QEMU to exit.
fn power_off(mut guest: Guest) -> String {
    guest.monitor("system_powerdown");
    let status = guest.wait_exit(Duration::from_secs(90));
    let console = guest.console();
    let status =
        status.unwrap_or_else(|| panic!("still running after system_powerdown:\n{console}"));
    assert!(status.success(), "QEMU exited with {status}:\n{console}");
    console
}

#[test]
fn redis_data_survives_a_reboot_on_a_formatted_disk() {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let spec = repo().join("examples/redis-data-os.yml");
    let image = build_shared("amd64", "redis-data-os", &[&spec], &out, &[]);
    let disk = dir.path().join("data.img");

    let started = Instant::now();
    let (guest, port) = boot(&image, &disk);
    let console = guest.console();
    assert!(
        console.contains("format: made an ext4 filesystem labelled \"redis-data\" on /dev/vda"),
        "the blank disk was not formatted:\n{console}"
    );
    assert!(
        console.contains("mount: /dev/vda (ext4, label \"redis-data\") on /var/lib/redis"),
        "{console}"
    );
    for i in 0..3 {
        assert_eq!(
            redis_cli(port, &["SET", &format!("key{i}"), &format!("value{i}")]),
            "OK"
        );
    }
    let console = power_off(guest);
    eprintln!(
        "first boot and power-off: {:.1}s",
        started.elapsed().as_secs_f64()
    );
    assert!(console.contains("power button pressed"), "{console}");

    // The host's tools read what the guest wrote.
    let probe = sh(Command::new("blkid")
        .args(["-p", "-o", "export"])
        .arg(&disk));
    assert!(probe.contains("TYPE=ext4"), "{probe}");
    assert!(probe.contains("LABEL=redis-data"), "{probe}");
    let header = sh(Command::new("dumpe2fs").arg("-h").arg(&disk));
    assert!(
        header.contains("Filesystem volume name:   redis-data"),
        "{header}"
    );
    assert!(header.contains("has_journal"), "{header}");
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    let started = Instant::now();
    let (guest, port) = boot(&image, &disk);
    let console = guest.console();
    assert!(
        console.contains(
            "format: /dev/vda already holds an ext4 filesystem labelled \"redis-data\": left alone"
        ),
        "the second boot did not skip the formatted disk:\n{console}"
    );
    assert!(!console.contains("format: made"), "{console}");
    for i in 0..3 {
        assert_eq!(
            redis_cli(port, &["GET", &format!("key{i}")]),
            format!("value{i}")
        );
    }
    power_off(guest);
    eprintln!(
        "second boot and power-off: {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// What the soak adds to the example: a service that floods the console for the whole soak.
const FLOOD: &str = r#"
services:
  - name: flood
    image: osbuild/busybox:1
    command: ["/bin/sh", "-c", "exec yes 'a flood of output while redis is under load and being killed'"]
"#;

/// `SET soak:N N` one after another on one connection (a new one after each kill) until
/// `until`; the numbers redis acknowledged with `+OK`.
fn write_acknowledged(port: u16, until: Instant) -> Vec<u64> {
    use std::io::{BufRead, BufReader, Write};
    let mut acked = Vec::new();
    let mut n = 0u64;
    while Instant::now() < until {
        let Ok(conn) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut conn = conn;
        while Instant::now() < until {
            let v = n.to_string();
            let cmd = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\nsoak:{v}\r\n${}\r\n{v}\r\n",
                v.len() + 5,
                v.len()
            );
            n += 1;
            let mut reply = String::new();
            if conn.write_all(cmd.as_bytes()).is_err()
                || reader.read_line(&mut reply).unwrap_or(0) == 0
            {
                break;
            }
            if reply == "+OK\r\n" {
                acked.push(n - 1);
            }
        }
        // redis was killed: the forward accepts before it listens again.
        std::thread::sleep(Duration::from_millis(100));
    }
    acked
}

/// `redis-benchmark` runs back to back until `until`; the requests the completed runs served.
fn benchmark(port: u16, until: Instant) -> (u64, u32) {
    let (mut served, mut failed) = (0, 0);
    while Instant::now() < until {
        let o = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-t", "set,get", "-n", "1000", "-c", "4", "-q"])
            .output()
            .expect("redis-benchmark (Debian package redis-tools)");
        let text = String::from_utf8_lossy(&o.stdout);
        if o.status.success() && text.contains("GET:") {
            served += 2_000;
        } else {
            failed += 1;
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    (served, failed)
}

#[test]
fn redis_data_survives_a_soak_with_kills_and_a_flood() {
    let _one = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let example = repo().join("examples/redis-data-os.yml");
    let flood = dir.path().join("flood.yml");
    std::fs::write(&flood, FLOOD).unwrap();
    let image = build_shared("amd64", "redis-data-soak", &[&example, &flood], &out, &[]);
    let disk = dir.path().join("data.img");

    let (mut guest, port) = boot(&image, &disk);
    let soak = Duration::from_secs(60);
    // PID 1's (VmRSS kB, threads), printed by the console shell as `TAG: ...` lines.
    let pid1 = |guest: &mut Guest, tag: &str| -> (u64, u64) {
        let console = guest.run(
            &format!(
                "grep -E '^(VmRSS|Threads):' /proc/1/status | tr -s '\\t ' ' ' | sed 's/^/{}''{}: /'",
                &tag[..1],
                &tag[1..]
            ),
            &format!("{tag}: Threads"),
        );
        let prefix = format!("{tag}: ");
        (
            figure(&console, &prefix, "VmRSS:"),
            figure(&console, &prefix, "Threads:"),
        )
    };
    let before = pid1(&mut guest, "soak-before");
    // redis is killed every 11 s (it ran long enough for the shortest back-off each time).
    guest.type_line("for i in 1 2 3 4 5; do sleep 11; kill -9 $(pidof redis-server); done &");
    let until = Instant::now() + soak;
    let bench = std::thread::spawn(move || benchmark(port, until));
    let acked = write_acknowledged(port, until);
    let (served, failed_runs) = bench.join().unwrap();
    wait_for_pong(&mut guest, port, Duration::from_secs(60));
    let after = pid1(&mut guest, "soak-after");
    let console = guest.console();
    let delays = support::guest::restart_delays(&console, "redis");
    eprintln!(
        "soak {soak:?}: {} SETs acknowledged, redis-benchmark served {served} requests ({failed_runs} runs cut or refused while redis restarted), redis restarts (announced s, actual s) {delays:?}, PID 1 (VmRSS kB, threads) {before:?} -> {after:?}",
        acked.len()
    );
    assert!(
        acked.len() > 100,
        "only {} writes acknowledged",
        acked.len()
    );
    assert!(served > 0, "redis-benchmark completed no run");
    assert_eq!(delays.len(), 5, "redis restarts: {delays:?}");
    for (announced, actual) in &delays {
        assert!(actual - announced < 1.5, "a restart came late: {delays:?}");
    }
    assert!(
        after.0 < before.0 + 4096,
        "PID 1 grew: {before:?} -> {after:?}"
    );
    assert!(
        after.1 <= before.1 + 1,
        "PID 1 threads: {before:?} -> {after:?}"
    );
    power_off(guest);

    // Every acknowledged write is on the disk after a power-off and a new boot.
    let (guest, port) = boot(&image, &disk);
    let keys: Vec<String> = acked.iter().map(|n| format!("soak:{n}")).collect();
    for chunk in keys.chunks(500) {
        let mut args = vec!["MGET"];
        args.extend(chunk.iter().map(String::as_str));
        let values = redis_cli(port, &args);
        let values: Vec<&str> = values.lines().collect();
        assert_eq!(values.len(), chunk.len());
        for (key, value) in chunk.iter().zip(values) {
            assert_eq!(
                Some(value),
                key.strip_prefix("soak:"),
                "{key} after the reboot"
            );
        }
    }
    eprintln!(
        "after the reboot: all {} acknowledged writes read back",
        keys.len()
    );
    power_off(guest);
}
