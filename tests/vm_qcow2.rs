//! The qcow2 writer against QEMU's own reader: `qemu-img check` finds no error or leak and
//! `qemu-img compare` finds the image identical to the raw disk it was written from.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;
use std::process::Command;

use osbuild::disk::vm::RawDisk;
use osbuild::disk::vm::qcow2::{Qcow2Options, write};
use proptest::prelude::*;

mod support;

use support::sparse::{assert_holds, sparse_disk};

fn qemu_img(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-img").args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Write `raw` as qcow2 next to it and check it with qemu-img; returns the qcow2's length.
fn check(raw_path: &Path, raw: &File, size: u64, compress: bool) -> u64 {
    let out_path = raw_path.with_extension("qcow2");
    let mut out = File::create(&out_path).unwrap();
    let len = write(
        &RawDisk::new(raw, size),
        &mut out,
        &Qcow2Options {
            compress,
            threads: 0,
        },
    )
    .unwrap();
    let out_s = out_path.to_str().unwrap();
    let (ok, text) = qemu_img(&["check", "-f", "qcow2", out_s]);
    assert!(ok && text.contains("No errors were found"), "{text}");
    let (ok, text) = qemu_img(&["info", "-f", "qcow2", "--output", "json", out_s]);
    assert!(ok, "{text}");
    let info: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(info["virtual-size"], size, "{text}");
    assert_eq!(info["format-specific"]["data"]["compat"], "1.1", "{text}");
    assert_holds(raw_path, "qcow2", &out_path);
    len
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn qemu_reads_back_the_sparse_disk(
        mib in 1u64..48,
        tail in 0u64..2,
        data in proptest::collection::vec((0u64..48 << 20, proptest::collection::vec(any::<u8>(), 1..200_000)), 0..6),
        compress in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.raw");
        // Sizes that are not a whole cluster too.
        let size = (mib << 20) - tail * 4096;
        let raw = sparse_disk(&path, size, &data);
        check(&path, &raw, size, compress);
    }
}

#[test]
fn a_large_empty_disk_costs_only_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    let size = 10u64 << 30;
    let text = b"osbuild qcow2 ".repeat(300_000);
    let raw = sparse_disk(
        &path,
        size,
        &[
            (0, text.clone()),
            (5 << 30, text.clone()),
            (size - 100, vec![7; 100]),
        ],
    );
    let plain = check(&path, &raw, size, false);
    assert!(plain < 2 * text.len() as u64 + (2 << 20), "{plain} bytes");
    let packed = check(&path, &raw, size, true);
    assert!(
        packed < plain / 10,
        "compressed {packed} bytes, plain {plain}"
    );
}

#[test]
fn the_same_disk_gives_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.raw");
    let raw = sparse_disk(
        &path,
        8 << 20,
        &[(12345, vec![1, 2, 3]), (3 << 20, vec![9; 70_000])],
    );
    let mut outs = Vec::new();
    for compress in [false, false, true, true] {
        let mut out = tempfile::tempfile().unwrap();
        write(
            &RawDisk::new(&raw, 8 << 20),
            &mut out,
            &Qcow2Options {
                compress,
                threads: 0,
            },
        )
        .unwrap();
        out.seek(SeekFrom::Start(0)).unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut bytes).unwrap();
        outs.push(bytes);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[2], outs[3]);
    assert_ne!(outs[0], outs[2]);
}
