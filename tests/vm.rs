//! VM and cloud images of `examples/redis-os.yml`: every container holds exactly the raw disk
//! of its layout (`qemu-img compare` against raw-efi or raw-bios built alongside), passes
//! `qemu-img check` and says what it is in `qemu-img info`; the OVA's manifest digests hold,
//! GCE's tar has a sparse `disk.raw` of a whole GiB; qcow2-efi, vhd, vhdx and vmdk boot under
//! `osbuild run qemu` (UEFI) on amd64 and arm64 until redis answers PONG, and the aws image of
//! `examples/cloud-os.yml` boots through both SeaBIOS and OVMF. Sizes and layouts that a platform would reject are
//! refused before anything is pulled.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::sparse::assert_holds;
use support::{boot_until_pong, boot_until_pong_with, build_shared, sh, stderr};

/// `qemu-img ARGS`, which must succeed; its standard output.
fn qemu_img(args: &[&str], image: &Path) -> String {
    sh(Command::new("qemu-img").args(args).arg(image))
}

/// `qemu-img info` of `image` read as `format`, as JSON.
fn info(format: &str, image: &Path) -> serde_json::Value {
    let text = qemu_img(&["info", "--output", "json", "-f", format], image);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// `NAME{suffix}` next to the build's prefix.
fn file(base: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", base.display()))
}

/// Check every container of a build against the raw disks built with it.
fn check_containers(base: &Path, scratch: &Path, bios: bool) {
    let raw_efi = file(base, "-efi.img");
    let disk_size = std::fs::metadata(&raw_efi).unwrap().len();

    let qcow2 = file(base, "-efi.qcow2");
    let check = qemu_img(&["check", "-f", "qcow2"], &qcow2);
    assert!(check.contains("No errors were found"), "{check}");
    assert_eq!(
        info("qcow2", &qcow2)["format-specific"]["data"]["compat"],
        "1.1"
    );
    assert_holds(&raw_efi, "qcow2", &qcow2);

    let vhd = file(base, ".vhd");
    let bytes = std::fs::read(&vhd).unwrap();
    assert_eq!(bytes.len() as u64, disk_size + 512, "a fixed VHD");
    assert_eq!(disk_size % (1 << 20), 0, "Azure: a whole number of MiB");
    assert_eq!(&bytes[bytes.len() - 512..][..8], b"conectix");
    assert_eq!(info("vpc", &vhd)["virtual-size"], disk_size);
    assert_holds(&raw_efi, "vpc", &vhd);

    let dynamic = file(base, "-dynamic.vhd");
    assert_eq!(info("vpc", &dynamic)["virtual-size"], disk_size);
    assert_holds(&raw_efi, "vpc", &dynamic);

    let vhdx = file(base, ".vhdx");
    let check = qemu_img(&["check", "-f", "vhdx"], &vhdx);
    assert!(check.contains("No errors were found"), "{check}");
    assert_eq!(info("vhdx", &vhdx)["virtual-size"], disk_size);
    assert_holds(&raw_efi, "vhdx", &vhdx);

    let vmdk = file(base, ".vmdk");
    let check = qemu_img(&["check", "-f", "vmdk"], &vmdk);
    assert!(check.contains("No errors were found"), "{check}");
    let vmdk_info = info("vmdk", &vmdk);
    assert_eq!(
        vmdk_info["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    assert_holds(&raw_efi, "vmdk", &vmdk);

    check_ova(&file(base, ".ova"), &raw_efi, scratch);
    check_gcp(&file(base, ".img.tar.gz"), scratch);

    if bios {
        let qcow2 = file(base, ".qcow2");
        let check = qemu_img(&["check", "-f", "qcow2"], &qcow2);
        assert!(check.contains("No errors were found"), "{check}");
        assert_holds(&file(base, "-bios.img"), "qcow2", &qcow2);
    }
}

/// The OVA: a tar of the descriptor, the manifest and the disk, in that order, every digest
/// in the manifest right, and the disk holding raw-efi's.
fn check_ova(ova: &Path, raw_efi: &Path, scratch: &Path) {
    let listing = sh(Command::new("tar").arg("-tf").arg(ova));
    let names: Vec<&str> = listing.lines().collect();
    assert_eq!(names.len(), 3, "{listing}");
    assert!(
        names[0].ends_with(".ovf") && names[1].ends_with(".mf"),
        "{listing}"
    );
    assert!(names[2].ends_with(".vmdk"), "{listing}");
    let dir = scratch.join("ova");
    std::fs::create_dir_all(&dir).unwrap();
    sh(Command::new("tar").arg("-xf").arg(ova).arg("-C").arg(&dir));
    let manifest = std::fs::read_to_string(dir.join(names[1])).unwrap();
    let mut checked = 0;
    for line in manifest.lines() {
        let (name, digest) = line
            .strip_prefix("SHA256(")
            .and_then(|l| l.split_once(")= "))
            .unwrap_or_else(|| panic!("manifest line {line:?}"));
        assert_eq!(support::sha256(&dir.join(name)), digest, "{name}");
        checked += 1;
    }
    assert_eq!(checked, 2, "{manifest}");
    let ovf = std::fs::read_to_string(dir.join(names[0])).unwrap();
    assert!(ovf.contains("streamOptimized"), "{ovf}");
    sh(Command::new("xmllint")
        .arg("--noout")
        .arg(dir.join(names[0])));
    assert_holds(raw_efi, "vmdk", &dir.join(names[2]));
}

/// GCE's image: `disk.raw` alone in a gzip'd tar, a whole GiB, stored sparse, a valid GPT.
fn check_gcp(tgz: &Path, scratch: &Path) {
    let listing = sh(Command::new("tar").arg("-tzvf").arg(tgz));
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.trim_end().ends_with(" disk.raw"), "{listing}");
    let dir = scratch.join("gcp");
    std::fs::create_dir_all(&dir).unwrap();
    sh(Command::new("tar")
        .arg("-xzSf")
        .arg(tgz)
        .arg("-C")
        .arg(&dir));
    let disk = dir.join("disk.raw");
    let meta = std::fs::metadata(&disk).unwrap();
    assert_eq!(meta.len() % (1 << 30), 0, "a whole GiB: {}", meta.len());
    use std::os::unix::fs::MetadataExt;
    assert!(meta.blocks() * 512 < meta.len() / 4, "extracted sparse");
    let verify = sh(Command::new("sgdisk").arg("-v").arg(&disk));
    assert!(verify.contains("No problems found"), "{verify}");
    assert!(
        std::fs::metadata(tgz).unwrap().len() < 64 << 20,
        "the archive stores the data, not the disk"
    );
}

/// Boot each container format of a build through UEFI until redis answers.
fn boot_each(base: &Path, arch: &str, scratch: &Path) {
    for suffix in ["-efi.qcow2", ".vhd", ".vhdx", ".vmdk"] {
        let image = file(base, suffix);
        let state = scratch.join(format!("state{suffix}"));
        let (console, secs) = boot_until_pong(&image, arch, &state);
        assert!(console.contains("init: osbuild init"), "{console}");
        eprintln!("{arch} {suffix}: PONG after {secs:.0} s");
    }
}

const ALL_EFI: &[&str] = &[
    "-f",
    "raw-efi",
    "-f",
    "qcow2-efi",
    "-f",
    "vhd",
    "-f",
    "dynamic-vhd",
    "-f",
    "vhdx",
    "-f",
    "vmdk",
    "-f",
    "ova",
    "-f",
    "gcp",
];

#[test]
fn amd64_containers_hold_the_raw_disk_and_boot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut args = ALL_EFI.to_vec();
    args.extend(["-f", "raw-bios", "-f", "qcow2-bios"]);
    let base = build_shared("amd64", "redis-os", &[&support::redis_os()], &out, &args);
    check_containers(&base, dir.path(), true);

    let entry = |format: &str| support::manifest_output(&out, "redis-os", format);
    let vhdx = entry("vhdx");
    assert_eq!(vhdx["boot"]["firmware"], "uefi");
    assert_eq!(vhdx["files"][0]["image_format"], "vhdx");
    assert_eq!(entry("qcow2-bios")["boot"]["firmware"], "bios");
    assert_eq!(entry("ova")["files"][0]["role"], "archive");
    support::assert_same_bytes_through_another_cache(
        dir.path(),
        &support::redis_os(),
        "ova",
        "redis-os.ova",
        &file(&base, ".ova"),
    );
    boot_each(&base, "amd64", dir.path());
}

#[test]
fn arm64_containers_hold_the_raw_disk_and_boot() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let mut args = ALL_EFI.to_vec();
    args.extend(["-f", "aws"]);
    let base = build_shared("arm64", "redis-os", &[&support::redis_os()], &out, &args);
    check_containers(&base, dir.path(), false);
    // Graviton boots through UEFI only: arm64's aws disk is raw-efi's.
    assert_holds(&file(&base, "-efi.img"), "raw", &file(&base, ".raw"));
    boot_each(&base, "arm64", dir.path());
}

#[test]
fn aws_amd64_of_the_cloud_example_boots_through_bios_and_uefi() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let spec = support::repo().join("examples/cloud-os.yml");
    let base = build_shared(
        "amd64",
        "cloud-os",
        &[&spec],
        &out,
        &["-f", "aws", "-f", "vhdx", "--boot", "both"],
    );
    let raw = file(&base, ".raw");
    let verify = sh(Command::new("sgdisk").arg("-v").arg(&raw));
    assert!(verify.contains("No problems found"), "{verify}");
    let table = sh(Command::new("sgdisk").arg("-p").arg(&raw));
    assert!(table.contains("EF02") && table.contains("EF00"), "{table}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&raw).unwrap();
    assert_eq!(meta.len() % (1 << 20), 0);
    assert_holds(&raw, "vhdx", &file(&base, ".vhdx"));
    support::assert_same_bytes_through_another_cache(
        dir.path(),
        &spec,
        "aws",
        "cloud-os.raw",
        &raw,
    );

    let (console, secs) =
        boot_until_pong_with(&raw, "amd64", &dir.path().join("bios"), &["--bios"]);
    assert!(console.contains("init: osbuild init"), "{console}");
    assert!(
        !console.contains("EFI stub"),
        "booted through GRUB: {console}"
    );
    // QEMU has no metadata service: the reader says so and the boot goes on.
    assert!(console.contains("metadata: "), "{console}");
    eprintln!("aws amd64 through SeaBIOS: PONG after {secs:.0} s");
    let (console, secs) = boot_until_pong(&raw, "amd64", &dir.path().join("uefi"));
    assert!(console.contains("EFI stub: Loaded initrd"), "{console}");
    eprintln!(
        "aws amd64 through OVMF: PONG after {secs:.0} s ({} blocks)",
        meta.blocks()
    );
}

#[test]
fn ten_gib_disks_cost_only_their_data_and_qcow2_compresses() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let base = build_shared(
        "amd64",
        "big",
        &[&support::redis_os()],
        &out,
        &[
            "-f",
            "raw-efi",
            "-f",
            "qcow2-efi",
            "-f",
            "vhdx",
            "-f",
            "vmdk",
            "-f",
            "aws",
            "--boot",
            "efi",
            "--size",
            "10G",
            "--compress-clusters",
        ],
    );
    use std::os::unix::fs::MetadataExt;
    let raw = file(&base, "-efi.img");
    let meta = std::fs::metadata(&raw).unwrap();
    assert_eq!(meta.len(), 10 << 30);
    let data = meta.blocks() * 512;
    let vhdx = std::fs::metadata(file(&base, ".vhdx")).unwrap().len();
    assert!(
        vhdx < data + (4 << 20),
        "vhdx: {vhdx} bytes for {data} of data"
    );
    // Compressed: qcow2's clusters (--compress-clusters) and the VMDK's grains.
    for suffix in ["-efi.qcow2", ".vmdk"] {
        let len = std::fs::metadata(file(&base, suffix)).unwrap().len();
        assert!(len < data, "{suffix}: {len} bytes for {data} bytes of data");
    }
    let aws = std::fs::metadata(file(&base, ".raw")).unwrap();
    assert!(
        aws.blocks() * 512 < data + (4 << 20),
        "aws is written sparse"
    );
    assert_holds(&raw, "qcow2", &file(&base, "-efi.qcow2"));
    assert_holds(&raw, "vhdx", &file(&base, ".vhdx"));
    assert_holds(&raw, "raw", &file(&base, ".raw"));
}

/// `osbuild build ARGS` with an empty cache and no registry: what a platform would reject must
/// be refused before anything is pulled, on one line, with nothing written.
fn refused(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["build", "-q", "--offline", "--dir"])
        .arg(&out)
        .arg("--cache")
        .arg(dir.path().join("cache"))
        .args(args)
        .arg(support::redis_os())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "{err}");
    err
}

#[test]
fn what_a_platform_would_reject_is_refused_before_pulling() {
    let err = refused(&["-f", "vhd", "--size", "1000000000"]);
    assert_eq!(
        err.trim_end(),
        "error: vhd: --size 1000000000: Azure needs a vhd disk to be a whole number of 1M: use 953M or 954M"
    );
    let err = refused(&["-f", "vhd", "--size", "3T"]);
    assert!(err.contains("the vhd format holds at most 2040G"), "{err}");
    let err = refused(&["-f", "gcp", "--size", "1500M"]);
    assert!(
        err.contains("GCE needs a gcp disk to be a whole number of 1G: use 1G or 2G"),
        "{err}"
    );
    let err = refused(&["-f", "vhdx", "--arch", "arm64", "--boot", "bios"]);
    assert!(err.contains("arm64 has no BIOS"), "{err}");
    let err = refused(&["-f", "qcow2-efi", "--boot", "both"]);
    assert!(err.contains("holds only the efi layout"), "{err}");
    let err = refused(&["-f", "raw-efi", "--boot", "both"]);
    assert!(
        err.contains("chooses the layout of VM disk formats"),
        "{err}"
    );
    let err = refused(&["-f", "qcow2-bios", "--arch", "arm64"]);
    assert!(err.contains("not made for arm64"), "{err}");
    let err = refused(&["-f", "vhd", "--boot", "sideways"]);
    assert!(err.contains("use efi, bios or both"), "{err}");
}
