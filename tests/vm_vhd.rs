//! The VHD and VHDX writers judged by qemu-img: random sparse raw disks written as fixed VHD,
//! dynamic VHD and VHDX read back bit for bit (`qemu-img compare`) at the raw disk's size
//! (`qemu-img info`), the VHDX passes `qemu-img check`, and a mostly empty 10 GiB disk gives
//! files that follow its data, not its size.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use osbuild::disk::vm::vhdx::VhdxIds;
use osbuild::disk::vm::{RawDisk, vhd, vhdx};
use proptest::prelude::*;
use uuid::Uuid;

mod support;

use support::sparse::{assert_holds, sparse_disk};

const MIB: u64 = 1 << 20;
const IDS: VhdxIds = VhdxIds {
    file_write: Uuid::from_u128(0x1111),
    data_write: Uuid::from_u128(0x2222),
    disk: Uuid::from_u128(0x3333),
};
const ID: Uuid = Uuid::from_u128(0x4444);
/// 2024-06-01T00:00:00Z.
const MTIME: i64 = 1_717_200_000;

/// The three containers written from one raw disk.
struct Written {
    fixed: PathBuf,
    dynamic: PathBuf,
    vhdx: PathBuf,
}

/// Write the raw disk at `raw` as the three containers next to it, named with `tag`.
fn write_all(raw: &Path, size: u64, tag: &str) -> Written {
    let dir = raw.parent().unwrap();
    let input = File::open(raw).unwrap();
    let disk = RawDisk::new(&input, size);
    let out = Written {
        fixed: dir.join(format!("fixed{tag}.vhd")),
        dynamic: dir.join(format!("dynamic{tag}.vhd")),
        vhdx: dir.join(format!("disk{tag}.vhdx")),
    };
    let mut file = File::create(&out.fixed).unwrap();
    let len = vhd::write_fixed(&disk, &mut file, ID, MTIME).unwrap();
    assert_eq!(len, file.metadata().unwrap().len());
    let mut file = File::create(&out.dynamic).unwrap();
    let len = vhd::write_dynamic(&disk, &mut file, ID, MTIME).unwrap();
    assert_eq!(len, file.metadata().unwrap().len());
    let mut file = File::create(&out.vhdx).unwrap();
    let len = vhdx::write(&disk, &mut file, &IDS).unwrap();
    assert_eq!(len, file.metadata().unwrap().len());
    out
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img runs (install qemu-utils)")
}

/// `qemu-img info --output json` of `path` read as `format`.
fn info(format: &str, path: &Path) -> serde_json::Value {
    let out = qemu_img(&[
        "info",
        "-f",
        format,
        "--output",
        "json",
        path.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "qemu-img info -f {format} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every check qemu-img can make of the three containers of a raw disk of `size` bytes.
fn check_with_qemu(raw: &Path, size: u64, out: &Written) {
    for path in [&out.fixed, &out.dynamic] {
        let info = info("vpc", path);
        assert_eq!(info["virtual-size"], size, "{}: {info}", path.display());
        assert_holds(raw, "vpc", path);
    }
    // qemu 10 does not show a VHD's subformat (no "format-specific"): read the disk type in
    // the footer that ends each file (2 fixed, 3 dynamic).
    for (path, subformat, disk_type) in [(&out.fixed, "fixed", 2), (&out.dynamic, "dynamic", 3)] {
        let info = info("vpc", path);
        if let Some(shown) = info["format-specific"]["data"]["subformat"].as_str() {
            assert_eq!(shown, subformat);
        }
        let file = File::open(path).unwrap();
        let mut footer = [0u8; 512];
        file.read_exact_at(&mut footer, file.metadata().unwrap().len() - 512)
            .unwrap();
        assert_eq!(&footer[..8], b"conectix");
        assert_eq!(footer[60..64], [0, 0, 0, disk_type], "{}", path.display());
    }
    let info = info("vhdx", &out.vhdx);
    assert_eq!(info["virtual-size"], size, "{info}");
    assert_eq!(info["cluster-size"], MIB, "{info}");
    let check = qemu_img(&["check", "-f", "vhdx", out.vhdx.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success() && report.contains("No errors were found"),
        "qemu-img check: {report}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_holds(raw, "vhdx", &out.vhdx);
}

/// Writes for a raw disk of `size` bytes: each at a fraction of the disk, of up to 300 KB of
/// a pattern from a seed (seed 0 writes zeros: allocated but empty).
fn writes(size: u64, picks: Vec<(u64, usize, u8)>) -> Vec<(u64, Vec<u8>)> {
    picks
        .into_iter()
        .map(|(at, len, seed)| {
            let at = at % size;
            let len = len.min((size - at) as usize);
            let bytes = (0..len)
                .map(|i| (i as u8).wrapping_mul(seed).wrapping_add(seed))
                .collect();
            (at, bytes)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn random_sparse_disks_read_back(
        mib in 1u64..=64,
        picks in prop::collection::vec((any::<u64>(), 1usize..300_000, any::<u8>()), 0..12),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("disk.raw");
        let size = mib * MIB;
        sparse_disk(&raw, size, &writes(size, picks));
        let out = write_all(&raw, size, "");
        check_with_qemu(&raw, size, &out);
    }
}

/// The data a mostly empty 10 GiB disk holds: a partition table's worth at the start, a few
/// MiB in the middle, the backup table at the end.
fn ten_gib_writes() -> (u64, Vec<(u64, Vec<u8>)>) {
    let size = 10 << 30;
    let pattern = |n: usize, seed: u8| -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
            .collect()
    };
    let writes = vec![
        (0, pattern(34 * 512, 1)),
        (MIB, pattern(3 * MIB as usize, 2)),
        (5 << 30, pattern(2 * MIB as usize + 4096, 3)),
        (size - 33 * 512, pattern(33 * 512, 4)),
    ];
    (size, writes)
}

#[test]
fn a_mostly_empty_ten_gib_disk_gives_small_files() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let (size, writes) = ten_gib_writes();
    sparse_disk(&raw, size, &writes);
    let data: u64 = writes.iter().map(|(_, b)| b.len() as u64).sum();
    let out = write_all(&raw, size, "");
    check_with_qemu(&raw, size, &out);

    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    let on_disk = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
    eprintln!(
        "10 GiB disk, {data} bytes of data: fixed VHD {} bytes ({} on disk), dynamic VHD {}, VHDX {}",
        len(&out.fixed),
        on_disk(&out.fixed),
        len(&out.dynamic),
        len(&out.vhdx)
    );
    // Data touches blocks: 1 + 3 MiB, 2 MiB + 4 KiB at 5 GiB, 16.5 KiB at the end.
    assert!(
        len(&out.dynamic) <= data + 16 * MIB,
        "{}",
        len(&out.dynamic)
    );
    assert!(len(&out.vhdx) <= data + 16 * MIB, "{}", len(&out.vhdx));
    assert_eq!(len(&out.fixed), size + 512);
    assert!(
        on_disk(&out.fixed) <= data + 4 * MIB,
        "{}",
        on_disk(&out.fixed)
    );
    let mut footer = [0u8; 512];
    File::open(&out.fixed)
        .unwrap()
        .read_exact_at(&mut footer, size)
        .unwrap();
    assert_eq!(&footer[..8], b"conectix");
}

#[test]
fn the_same_disk_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let size = 48 * MIB;
    sparse_disk(
        &raw,
        size,
        &writes(
            size,
            vec![(0, 70_000, 7), (20 * MIB + 3, 250_000, 9), (u64::MAX, 1, 1)],
        ),
    );
    let first = write_all(&raw, size, "1");
    let second = write_all(&raw, size, "2");
    for (a, b) in [
        (&first.fixed, &second.fixed),
        (&first.dynamic, &second.dynamic),
        (&first.vhdx, &second.vhdx),
    ] {
        assert!(
            std::fs::read(a).unwrap() == std::fs::read(b).unwrap(),
            "{}",
            a.display()
        );
    }
}

#[test]
fn sizes_azure_rejects_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    let size = 3 * MIB + 512;
    sparse_disk(&raw, size, &[]);
    let input = File::open(&raw).unwrap();
    let disk = RawDisk::new(&input, size);
    let mut out = File::create(dir.path().join("x.vhd")).unwrap();
    let error = vhd::write_fixed(&disk, &mut out, ID, MTIME).unwrap_err();
    assert!(error.to_string().contains("use 3M or 4M"), "{error}");
    assert_eq!(out.metadata().unwrap().len(), 0);
    // A VHDX takes any whole number of sectors.
    let mut out = File::create(dir.path().join("x.vhdx")).unwrap();
    vhdx::write(&disk, &mut out, &IDS).unwrap();
    drop(out);
    let info = info("vhdx", &dir.path().join("x.vhdx"));
    assert_eq!(info["virtual-size"], size);
    assert_holds(&raw, "vhdx", &dir.path().join("x.vhdx"));
}
