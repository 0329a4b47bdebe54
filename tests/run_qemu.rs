//! `osbuild run qemu` boots what `osbuild build` wrote: in the foreground with the console on
//! stdio, through UEFI firmware, and detached with a port forwarded to a listener in the guest,
//! on x86_64, arm64 and s390x with the kernels of `pkg/kernel`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Scratch, env, ok, repo, stderr};

/// An init that brings up virtio networking (slirp's 10.0.2.15) and serves /www on port 8080.
const NET_INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
modprobe virtio_pci
modprobe virtio_net
ip link set lo up
ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0
httpd -p 8080 -h /www
echo "osbuild-net: ready"
sleep 600
poweroff -f
"#;

fn build(s: &Scratch, example: &str) -> String {
    let out = s.out();
    let spec = repo().join("examples").join(example);
    ok(&s.osbuild(&[
        "build",
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    out.join(example.trim_end_matches(".yml"))
        .display()
        .to_string()
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["run", "qemu"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn boots_in_the_foreground_and_through_uefi() {
    env();
    let s = Scratch::new();
    let name = build(&s, "hello.yml");
    for extra in [&[][..], &["--uefi"][..]] {
        let args = [
            &["--accel", "tcg", "--mem", "512", "--no-network"][..],
            extra,
            &[name.as_str()][..],
        ]
        .concat();
        let o = run(&args);
        let console = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{extra:?}: {}\n{console}", stderr(&o));
        assert!(
            console.contains("osbuild-init: hello from x86_64"),
            "{extra:?}:\n{console}"
        );
        assert!(
            console.contains("osbuild-init: done"),
            "{extra:?}:\n{console}"
        );
    }
}

/// Build an image for `arch` whose init serves HTTP, boot it detached with a port published,
/// and fetch a page from the guest through that port.
fn published_port_reaches_a_listener_on(arch: &str) {
    env();
    let s = Scratch::new();
    let spec = s.init_spec("net", &[], NET_INIT);
    let image = s.build_for(arch, "net", &spec);
    let port = osbuild_testenv::registry::free_port().unwrap();
    let state = s.dir.path().join("state");
    let name = image.display().to_string();
    let publish = format!("{port}:8080");
    let o = run(&[
        "--arch",
        arch,
        "--accel",
        "tcg",
        "--mem",
        "512",
        "--detached",
        "--state",
        state.to_str().unwrap(),
        "--publish",
        &publish,
        &name,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let pid = std::fs::read_to_string(state.join("qemu.pid"))
        .unwrap()
        .trim()
        .to_string();
    let stop = || {
        let _ = Command::new("kill").arg(&pid).status();
    };
    // Wait for the guest to say it listens, then ask it over the forwarded port.
    let deadline = Instant::now() + Duration::from_secs(300);
    let log = state.join("console.log");
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("osbuild-net: ready")
    {
        if Instant::now() > deadline {
            stop();
            panic!(
                "{arch}: the guest never got ready:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut reply = String::new();
    let fetched = (|| -> std::io::Result<()> {
        let mut conn = TcpStream::connect(("127.0.0.1", port))?;
        conn.set_read_timeout(Some(Duration::from_secs(30)))?;
        conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: guest\r\n\r\n")?;
        conn.read_to_string(&mut reply)?;
        Ok(())
    })();
    stop();
    fetched.unwrap();
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains("osbuild fixture"),
        "{arch}: {reply}"
    );
}

#[test]
fn published_port_reaches_a_listener_in_an_x86_64_guest() {
    published_port_reaches_a_listener_on("amd64");
}

#[test]
fn published_port_reaches_a_listener_in_an_arm64_guest() {
    published_port_reaches_a_listener_on("arm64");
}

#[test]
fn published_port_reaches_a_listener_in_an_s390x_guest() {
    published_port_reaches_a_listener_on("s390x");
}

#[test]
fn missing_outputs_and_bad_options_are_named() {
    let o = run(&["--accel", "tcg", "/nonexistent/hello"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("/nonexistent/hello: no build found"),
        "{}",
        stderr(&o)
    );
    let o = run(&["--publish", "80", "/nonexistent/hello"]);
    assert!(
        stderr(&o).contains("--publish \"80\": expected HOST:GUEST"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_same_spec_boots_on_arm64_and_s390x() {
    env();
    let s = Scratch::new();
    let spec = repo().join("examples/hello.yml");
    for (arch, uname) in [("arm64", "aarch64"), ("s390x", "s390x")] {
        let name = s.build_for(arch, arch, &spec).display().to_string();
        let o = run(&[
            "--arch",
            arch,
            "--accel",
            "tcg",
            "--mem",
            "512",
            "--no-network",
            &name,
        ]);
        let console = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{arch}: {}\n{console}", stderr(&o));
        assert!(
            console.contains(&format!("osbuild-init: hello from {uname} kernel 6.1")),
            "{arch}:\n{console}"
        );
        assert!(console.contains("osbuild-init: done"), "{arch}:\n{console}");
    }
}

/// An init that mounts the metadata disk (the ISO 9660 volume among the virtio disks) and
/// prints its `config`.
const DATA_INIT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
modprobe virtio_pci 2>/dev/null
modprobe virtio_blk
modprobe isofs
mkdir -p /mnt
for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/vda ] && break; sleep 1; done
for d in /dev/vd?; do mount -t iso9660 -o ro "$d" /mnt 2>/dev/null && break; done
echo "osbuild-data: $(cat /mnt/config)"
poweroff -f
"#;

/// Boot an image for `arch` with `data_args` and return what the guest read as `config`.
fn metadata_seen_by(arch: &str, data_args: &[&str]) -> (String, std::path::PathBuf, Scratch) {
    env();
    let s = Scratch::new();
    let spec = s.init_spec("data", &[], DATA_INIT);
    let image = s.build_for(arch, "data", &spec);
    let name = image.display().to_string();
    let args = [
        &[
            "--arch",
            arch,
            "--accel",
            "tcg",
            "--mem",
            "512",
            "--no-network",
        ][..],
        data_args,
        &[name.as_str()][..],
    ]
    .concat();
    let o = run(&args);
    let console = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{arch}: {}\n{console}", stderr(&o));
    let seen = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("osbuild-data: "))
        .unwrap_or_else(|| panic!("{arch}: the guest printed no metadata:\n{console}"))
        .to_string();
    let iso = std::path::PathBuf::from(format!("{name}-state/data.iso"));
    (seen, iso, s)
}

#[test]
fn data_reaches_an_x86_64_guest_on_a_cidata_disk() {
    let (seen, iso, s) = metadata_seen_by("amd64", &["--data", "hostname: osbuild-test"]);
    assert_eq!(seen, "hostname: osbuild-test");
    // The disk is what other tools see too: an ISO 9660 volume CIDATA holding `config` (its
    // Rock Ridge name).
    let extracted = s.dir.path().join("config");
    let o = Command::new("xorriso")
        .args(["-osirrox", "on", "-indev"])
        .arg(&iso)
        .args(["-extract", "/config"])
        .arg(&extracted)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&extracted).unwrap(),
        "hostname: osbuild-test"
    );
    let o = Command::new("xorriso")
        .args(["-indev"])
        .arg(&iso)
        .arg("-pvd_info")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Volume Id    : CIDATA"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
}

#[test]
fn data_file_reaches_arm64_and_s390x_guests() {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), "{\"ssh\":{\"port\":\"22\"}}").unwrap();
    let path = file.path().to_str().unwrap();
    for arch in ["arm64", "s390x"] {
        let (seen, _, _s) = metadata_seen_by(arch, &["--data-file", path]);
        assert_eq!(seen, "{\"ssh\":{\"port\":\"22\"}}", "{arch}");
    }
}

#[test]
fn data_and_data_file_conflict_and_a_missing_file_is_named() {
    let o = run(&["--data", "x", "--data-file", "/y", "/nonexistent/hello"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let o = run(&[
        "--data-file",
        "/nonexistent/meta.json",
        "/nonexistent/hello",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("--data-file /nonexistent/meta.json"),
        "{}",
        stderr(&o)
    );
}
