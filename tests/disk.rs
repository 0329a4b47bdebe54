//! Disk images written natively: `raw-efi` of `examples/redis-os.yml` for amd64 and arm64,
//! checked with the tools people use (`sgdisk -v`, `fsck.vfat -n` on the ESP, `mdir`,
//! `objdump -h` on the UKI), byte-reproducible with another cache, described by the manifest,
//! and booted by `osbuild run qemu` through OVMF and AAVMF until redis answers PONG.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{boot_until_pong, build_shared, sh};

/// The ESP of a raw-efi image cut out into `dest`, from the partition table `sgdisk` reads.
fn cut_esp(image: &Path, dest: &Path) {
    let info = sh(Command::new("sgdisk").args(["-i", "1"]).arg(image));
    let sector = |key: &str| -> u64 {
        info.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {info}"))
    };
    assert!(
        info.contains("C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
        "partition 1 is an ESP: {info}"
    );
    let (first, last) = (sector("First sector: "), sector("Last sector: "));
    let bytes = std::fs::read(image).unwrap();
    std::fs::write(
        dest,
        &bytes[(first * 512) as usize..((last + 1) * 512) as usize],
    )
    .unwrap();
}

/// Check the image's table, filesystem and UKI with the reference tools.
fn check_raw_efi(image: &Path, boot_file: &str, scratch: &Path) {
    let verify = sh(Command::new("sgdisk").arg("-v").arg(image));
    assert!(verify.contains("No problems found"), "{verify}");
    let esp = scratch.join("esp.img");
    cut_esp(image, &esp);
    let fsck = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&esp)
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
        .arg(&esp)
        .arg("::/EFI/BOOT"));
    assert!(
        listing.contains(&format!("::/EFI/BOOT/{boot_file}")),
        "{listing}"
    );
    let uki = scratch.join("uki.efi");
    sh(Command::new("mcopy")
        .arg("-i")
        .arg(&esp)
        .arg(format!("::/EFI/BOOT/{boot_file}"))
        .arg(&uki));
    // objdump on x86_64 reads x86_64 PE files only; the arm64 UKI's sections are read by hand.
    if boot_file == "BOOTX64.EFI" {
        let sections = sh(Command::new("objdump").arg("-h").arg(&uki));
        for s in [".osrel", ".cmdline", ".linux", ".initrd"] {
            assert!(sections.contains(s), "{s} missing: {sections}");
        }
    } else {
        let bytes = std::fs::read(&uki).unwrap();
        for s in [".osrel", ".cmdline", ".linux", ".initrd"] {
            assert!(
                bytes[..4096].windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} missing from the UKI's section table"
            );
        }
    }
}

#[test]
fn raw_efi_amd64_is_valid_reproducible_and_boots_through_ovmf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let spec = support::redis_os();
    let base = build_shared("amd64", "redis-os", &[&spec], &out, &["-f", "raw-efi"]);
    let image = PathBuf::from(format!("{}-efi.img", base.display()));
    check_raw_efi(&image, "BOOTX64.EFI", dir.path());

    let entry = support::manifest_entry(&out, "redis-os", &image);
    assert_eq!(entry["format"], "raw-efi");
    assert_eq!(entry["arch"], "amd64");
    assert_eq!(entry["boot"]["method"], "disk");
    assert_eq!(entry["boot"]["firmware"], "uefi");
    assert_eq!(entry["files"][0]["path"], "redis-os-efi.img");
    support::assert_same_bytes_through_another_cache(
        dir.path(),
        &spec,
        "raw-efi",
        "redis-os-efi.img",
        &image,
    );

    let (console, secs) = boot_until_pong(&image, "amd64", &dir.path().join("state"));
    assert!(console.contains("EFI stub: Loaded initrd"), "{console}");
    assert!(console.contains("init: osbuild init"), "{console}");
    eprintln!("raw-efi amd64: PONG after {secs:.0} s");
}

#[test]
fn raw_efi_arm64_boots_through_aavmf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let base = build_shared(
        "arm64",
        "redis-os",
        &[&support::redis_os()],
        &out,
        &["-f", "raw-efi"],
    );
    let image = PathBuf::from(format!("{}-efi.img", base.display()));
    check_raw_efi(&image, "BOOTAA64.EFI", dir.path());
    let (console, secs) = boot_until_pong(&image, "arm64", &dir.path().join("state"));
    assert!(console.contains("init: osbuild init"), "{console}");
    assert!(console.contains("on aarch64"), "{console}");
    eprintln!("raw-efi arm64: PONG after {secs:.0} s");
}

#[test]
fn size_sets_the_disk_and_too_small_is_refused_with_what_it_needs() {
    support::assert_size_is_honoured("raw-efi", "-efi.img", |image, scratch| {
        check_raw_efi(image, "BOOTX64.EFI", scratch)
    });
}
