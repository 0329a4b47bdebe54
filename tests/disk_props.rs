//! Property tests of the disk writers, each read back by an implementation that is not ours:
//! random file sets written as FAT volumes of random sizes come back byte for byte through the
//! `fatfs` crate's reader (and `fsck.vfat -n` finds nothing wrong with a sample of them), and
//! random partition tables written as GPT read back through the `gpt` crate's reader and pass
//! `sgdisk -v`.

use std::collections::BTreeMap;
use std::io::{Cursor, Read};
use std::process::Command;

use osbuild::disk::fat::{FatFile, FatOptions, Geometry, min_size, write_fat};
use osbuild::disk::gpt::{Partition, usable, write_gpt};
use osbuild::disk::source::Source;
use proptest::prelude::*;

/// A short 8.3 path of one to three components, in one case per component.
fn fat_path() -> impl Strategy<Value = String> {
    let name = prop::sample::select(vec![
        "a",
        "B",
        "efi",
        "BOOT",
        "kernel",
        "INITRD.IMG",
        "x.cfg",
        "SYSLINUX.CFG",
        "ldlinux.c32",
        "z_9",
    ]);
    prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"))
}

/// File sets whose paths do not clash (a file is never also a directory, names ignore case).
fn file_set() -> impl Strategy<Value = BTreeMap<String, Vec<u8>>> {
    prop::collection::vec((fat_path(), 0usize..20_000, any::<u8>()), 1..8).prop_map(|entries| {
        let mut out: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        for (path, len, seed) in entries {
            let key = path.to_ascii_uppercase();
            let clashes = out.keys().any(|k| {
                let k = k.to_ascii_uppercase();
                k == key || key.starts_with(&format!("{k}/")) || k.starts_with(&format!("{key}/"))
            });
            if !clashes {
                let body = (0..len)
                    .map(|i| (i as u8).wrapping_mul(31) ^ seed)
                    .collect();
                out.insert(path, body);
            }
        }
        out
    })
}

/// Every file of `volume`, read through the `fatfs` crate.
fn read_back(volume: &mut [u8], paths: &[&String]) -> Vec<Vec<u8>> {
    let fs = fatfs::FileSystem::new(Cursor::new(volume), fatfs::FsOptions::new()).unwrap();
    paths
        .iter()
        .map(|path| {
            let mut body = Vec::new();
            fs.root_dir()
                .open_file(path)
                .unwrap()
                .read_to_end(&mut body)
                .unwrap();
            body
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn fat_volumes_read_back(files in file_set(), extra_mib in 0u64..300) {
        let list: Vec<FatFile<'_>> = files
            .iter()
            .map(|(p, b)| FatFile { path: p.as_str(), source: b as &dyn Source })
            .collect();
        let size = (min_size(&list) + (extra_mib << 20)).div_ceil(1 << 20) << 20;
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        let written = write_fat(
            &mut dev,
            &list,
            &FatOptions { volume_id: 7, label: "PROP".into(), mtime: 1_500_000_000, hidden_sectors: 0 },
        )
        .unwrap();
        let g = Geometry::of(size).unwrap();
        prop_assert_eq!(written.geometry, g);
        let mut bytes = dev.into_inner();
        let paths: Vec<&String> = files.keys().collect();
        for (back, (path, body)) in read_back(&mut bytes, &paths).iter().zip(&files) {
            prop_assert_eq!(back, body, "{}", path);
        }
        // Every file lies in one contiguous run where the writer says.
        for placed in &written.files {
            let body = files
                .iter()
                .find(|(p, _)| p.to_ascii_uppercase() == placed.path)
                .map(|(_, b)| b)
                .unwrap();
            let at = placed.offset as usize;
            if !body.is_empty() {
                prop_assert_eq!(&bytes[at..at + body.len()], &body[..]);
            }
        }
    }

    #[test]
    fn gpt_tables_read_back(sizes in prop::collection::vec(1u64..40, 1..8), spare in 0u64..20) {
        let disk = (sizes.iter().sum::<u64>() + spare + 2) << 20;
        let (first, last) = usable(disk).unwrap();
        let mut parts = Vec::new();
        let mut at = first;
        for (i, mib) in sizes.iter().enumerate() {
            let end = at + (mib << 11) - 1;
            prop_assert!(end <= last);
            parts.push(Partition {
                type_guid: osbuild::disk::gpt::ESP_TYPE,
                guid: uuid::Uuid::from_u128(0x1000 + i as u128),
                first_lba: at,
                last_lba: end,
                name: format!("part{i}"),
                attributes: 0,
            });
            at = end + 1;
        }
        let mut dev = Cursor::new(vec![0u8; disk as usize]);
        write_gpt(&mut dev, uuid::Uuid::from_u128(42), &parts).unwrap();
        let back = gpt::GptConfig::new().writable(false).open_from_device(Cursor::new(dev.into_inner())).unwrap();
        prop_assert_eq!(back.partitions().len(), parts.len());
        for (i, p) in parts.iter().enumerate() {
            let q = &back.partitions()[&(i as u32 + 1)];
            prop_assert_eq!((q.first_lba, q.last_lba, q.part_guid, &q.name), (p.first_lba, p.last_lba, p.guid, &p.name));
        }
    }
}

/// A sample of both checked by the tools people use (skipped with a note where they are not
/// installed: `apt-get install dosfstools gdisk`).
#[test]
fn fsck_and_sgdisk_agree() {
    let dir = tempfile::tempdir().unwrap();
    let have = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let body: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
    let files = [
        FatFile {
            path: "EFI/BOOT/BOOTX64.EFI",
            source: &body,
        },
        FatFile {
            path: "loader/x.cfg",
            source: &body,
        },
    ];
    if have("fsck.vfat") {
        for mib in [2u64, 33, 270] {
            let path = dir.path().join(format!("fat{mib}"));
            let file = std::fs::File::create(&path).unwrap();
            file.set_len(mib << 20).unwrap();
            write_fat(
                &file,
                &files,
                &FatOptions {
                    volume_id: 1,
                    label: "X".into(),
                    mtime: 0,
                    hidden_sectors: 0,
                },
            )
            .unwrap();
            let o = Command::new("fsck.vfat")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success() && text.lines().count() == 2,
                "{mib} MiB: {text}"
            );
        }
    } else {
        osbuild_test_skip::skip("fsck.vfat is not installed: apt-get install dosfstools");
    }
    if have("sgdisk") {
        let path = dir.path().join("disk");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        file.set_len(64 << 20).unwrap();
        let (first, last) = usable(64 << 20).unwrap();
        let p = Partition {
            type_guid: osbuild::disk::gpt::ESP_TYPE,
            guid: uuid::Uuid::from_u128(7),
            first_lba: first,
            last_lba: last,
            name: "ESP".into(),
            attributes: 0,
        };
        let mut f = &file;
        write_gpt(&mut f, uuid::Uuid::from_u128(9), &[p]).unwrap();
        let o = Command::new("sgdisk")
            .arg("-v")
            .arg(&path)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.contains("No problems found"), "{text}");
    } else {
        osbuild_test_skip::skip("sgdisk is not installed: apt-get install gdisk");
    }
}
