//! `raw-bios` of `examples/redis-os.yml`: an MBR disk whose GRUB osbuild assembles and installs
//! itself, checked with the tools people use (`sfdisk -d`, `fdisk -l`, `fsck.vfat -n` on the
//! partition, `mdir`), byte-reproducible with another cache, described by the manifest, booted
//! by `osbuild run qemu` through SeaBIOS until redis answers PONG; and `--size` too small is
//! refused on one line.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{boot_until_pong, build_shared, sh};

/// Check the image's partition table and filesystem with the reference tools.
fn check_raw_bios(image: &Path, scratch: &Path) {
    let dump = sh(Command::new("sfdisk").arg("-d").arg(image));
    assert!(dump.contains("label: dos"), "{dump}");
    let parts: Vec<&str> = dump.lines().filter(|l| l.contains(" : start=")).collect();
    assert_eq!(parts.len(), 1, "one partition: {dump}");
    let p = parts[0];
    assert!(
        p.contains("start=        2048") || p.contains("start=2048"),
        "{p}"
    );
    assert!(p.contains("bootable"), "active: {p}");
    assert!(
        ["type=c", "type=e", "type=1"]
            .iter()
            .any(|t| p.contains(&format!("{t},")) || p.ends_with(t)),
        "a FAT type: {p}"
    );
    let sectors: u64 = p
        .split("size=")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no size in {p}"));
    let fdisk = sh(Command::new("fdisk").arg("-l").arg(image));
    assert!(fdisk.contains("Disklabel type: dos"), "{fdisk}");
    assert!(
        fdisk
            .lines()
            .any(|l| l.contains("-bios.img1") && l.contains(" * ") && l.contains(" 2048 ")),
        "{fdisk}"
    );
    let bytes = std::fs::read(image).unwrap();
    assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
    assert_eq!(
        bytes.len() as u64,
        (2048 + sectors) * 512,
        "the partition runs to the end"
    );
    let part = scratch.join("part.img");
    std::fs::write(&part, &bytes[2048 * 512..]).unwrap();
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&part)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(
        fsck.status.success() && text.lines().count() == 2,
        "fsck.vfat -n: {text}{}",
        String::from_utf8_lossy(&fsck.stderr)
    );
    let listing = sh(Command::new("mdir")
        .args(["-b", "-i"])
        .arg(&part)
        .arg("::/"));
    for f in ["::/kernel", "::/initrd.img", "::/cmdline"] {
        assert!(listing.lines().any(|l| l == f), "{f} missing: {listing}");
    }
    // GRUB's boot.img in the MBR and its core.img (diskboot.img first) in the sectors after.
    assert!(bytes[..440].iter().any(|&b| b != 0), "no boot code");
    assert!(
        bytes[512..1024].iter().any(|&b| b != 0),
        "no core.img in sector 1"
    );
}

#[test]
fn raw_bios_is_valid_reproducible_and_boots_through_seabios() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let spec = support::redis_os();
    let started = std::time::Instant::now();
    let base = build_shared("amd64", "redis-os", &[&spec], &out, &["-f", "raw-bios"]);
    eprintln!("raw-bios build: {:.1} s", started.elapsed().as_secs_f64());
    let image = PathBuf::from(format!("{}-bios.img", base.display()));
    check_raw_bios(&image, dir.path());

    let entry = support::manifest_entry(&out, "redis-os", &image);
    assert_eq!(entry["format"], "raw-bios");
    assert_eq!(entry["arch"], "amd64");
    assert_eq!(entry["boot"]["method"], "disk");
    assert_eq!(entry["boot"]["firmware"], "bios");
    assert_eq!(entry["files"][0]["path"], "redis-os-bios.img");
    support::assert_same_bytes_through_another_cache(
        dir.path(),
        &spec,
        "raw-bios",
        "redis-os-bios.img",
        &image,
    );

    let (console, secs) = boot_until_pong(&image, "amd64", &dir.path().join("state"));
    // GRUB's linux command puts BOOT_IMAGE= in front of the spec's command line.
    assert!(
        console.contains("Command line: BOOT_IMAGE=/kernel console=ttyS0"),
        "{console}"
    );
    assert!(console.contains("init: osbuild init"), "{console}");
    eprintln!("raw-bios amd64: PONG after {secs:.0} s");
}

#[test]
fn size_sets_the_disk_and_too_small_is_refused_with_what_it_needs() {
    support::assert_size_is_honoured("raw-bios", "-bios.img", check_raw_bios);
}
