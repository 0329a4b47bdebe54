//! `kernel+squashfs` of `examples/redis-os.yml` on every architecture: the root filesystem is
//! a squashfs osbuild writes itself, read back with `unsquashfs` (superblock, the mount points
//! a read-only root needs, the container bundles, no boot files), the small initrd holds only
//! `/init` and the kernel's modules, two builds give the same bytes, and `osbuild run qemu`
//! boots it: the init mounts the squashfs from `/dev/vda`, starts again from it, and redis
//! answers PONG through a published port.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{boot_until_pong, build_shared, repo, sh};

fn build(arch: &str, out: &Path) -> PathBuf {
    std::fs::create_dir_all(out).unwrap();
    let spec = repo().join("examples/redis-os.yml");
    build_shared(arch, "redis-os", &[&spec], out, &["-f", "kernel+squashfs"])
}

fn file(prefix: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", prefix.display()))
}

fn boots(arch: &str, uname: &str) {
    let dir = tempfile::tempdir().unwrap();
    let prefix = build(arch, &dir.path().join("out"));
    let image = file(&prefix, "-squashfs.img");
    let superblock = sh(Command::new("unsquashfs").arg("-s").arg(&image));
    assert!(superblock.contains("Compression gzip"), "{superblock}");
    let listing = sh(Command::new("unsquashfs")
        .args(["-l", "-d", ""])
        .arg(&image));
    for want in [
        "/init",
        "/run",
        "/tmp",
        "/var",
        "/containers/services/redis/config.json",
        "/containers/services/redis/rootfs/tmp",
        "/containers/onboot/000-dhcpcd/rootfs/run",
    ] {
        assert!(listing.lines().any(|l| l == want), "{arch}: {want} missing");
    }
    assert!(
        !listing.contains("/boot/kernel"),
        "{arch}: the kernel is beside the root"
    );
    let cmdline = std::fs::read_to_string(file(&prefix, "-squashfs-cmdline")).unwrap();
    assert!(
        cmdline.ends_with(" root=/dev/vda rootfstype=squashfs"),
        "{cmdline}"
    );
    let initrd = sh(Command::new("sh").arg("-c").arg(format!(
        "zcat '{}' | cpio -t --quiet",
        file(&prefix, "-squashfs-initrd.img").display()
    )));
    assert!(
        initrd
            .lines()
            .all(|l| l == "init" || l == "lib" || l.starts_with("lib/modules")),
        "{arch}: the initrd holds more than the init and the modules:\n{initrd}"
    );
    let (console, secs) = boot_until_pong(&image, arch, &dir.path().join("state"));
    assert!(
        console.contains("init: mounted /dev/vda (squashfs) read-only"),
        "{console}"
    );
    assert!(
        console.contains(&format!("init: osbuild init 0.1.0 on {uname}")),
        "{console}"
    );
    eprintln!("kernel+squashfs {arch}: PONG after {secs:.0} s");
}

#[test]
fn kernel_squashfs_boots_on_x86_64_and_is_reproducible() {
    boots("amd64", "x86_64");
    let dir = tempfile::tempdir().unwrap();
    let a = build("amd64", &dir.path().join("a"));
    let b = build("amd64", &dir.path().join("b"));
    assert_eq!(
        support::sha256(&file(&a, "-squashfs.img")),
        support::sha256(&file(&b, "-squashfs.img"))
    );
}

#[test]
fn kernel_squashfs_boots_on_arm64() {
    boots("arm64", "aarch64");
}

#[test]
fn kernel_squashfs_boots_on_s390x() {
    boots("s390x", "s390x");
}
