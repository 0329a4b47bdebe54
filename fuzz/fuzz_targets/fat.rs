//! FAT volumes of fuzz-chosen sizes holding fuzz-chosen files: never a panic; a volume
//! written reads back with the `fatfs` crate holding exactly those files (names compared
//! without case, as FAT does), with their bytes.
#![no_main]

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use osbuild::disk::fat::{FatFile, FatOptions, write_fat};
use osbuild_fuzz::SparseDisk;

/// Names the fuzzer picks by number (8.3 and not, dots, spaces, case).
const NAMES: &[&str] = &[
    "EFI",
    "BOOT",
    "BOOTX64.EFI",
    "a",
    "A",
    "a.",
    "a..",
    ".",
    "..",
    "...",
    "a.b",
    "A.B",
    "x.y.z",
    "kernel",
    "loader",
    "LONGNAME.TXT",
    "longname1",
    " ",
    "a b",
    "a.ab",
    "a.abcd",
    "~1",
    "$",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Pick(u8),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
struct File {
    path: Vec<Name>,
    body: Vec<u8>,
    /// Repeat the body this many KiB (large files without large inputs).
    repeat: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Volume size in MiB (1 to 300: FAT12, FAT16 and FAT32) plus a few sectors.
    mib: u16,
    extra_sectors: u8,
    label: String,
    mtime: i64,
    files: Vec<File>,
}

fuzz_target!(|input: Input| {
    let size = u64::from(input.mib % 301) * (1 << 20) + u64::from(input.extra_sectors) * 512;
    let paths: Vec<String> = input
        .files
        .iter()
        .take(40)
        .map(|f| {
            f.path
                .iter()
                .map(|n| match n {
                    Name::Pick(i) => NAMES[*i as usize % NAMES.len()].to_string(),
                    Name::Raw(s) => s.clone(),
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let bodies: Vec<Vec<u8>> = input
        .files
        .iter()
        .take(40)
        .map(|f| {
            let mut b = f.body.clone();
            if f.repeat > 0 && !b.is_empty() {
                let unit = b.clone();
                while b.len() < usize::from(f.repeat % 64) * 1024 {
                    b.extend_from_slice(&unit);
                }
            }
            b
        })
        .collect();
    let files: Vec<FatFile<'_>> = paths
        .iter()
        .zip(&bodies)
        .map(|(p, b)| FatFile { path: p, source: b })
        .collect();
    let opts = FatOptions {
        volume_id: 0x1234_5678,
        label: input.label.clone(),
        mtime: input.mtime,
        hidden_sectors: 0,
    };
    let mut disk = SparseDisk::new(size);
    let Ok(written) = write_fat(&mut disk, &files, &opts) else {
        return;
    };
    // What went in, by upper-case path.
    let mut want = BTreeMap::new();
    for (p, b) in paths.iter().zip(&bodies) {
        let key: Vec<String> = p
            .split('/')
            .filter(|c| !c.is_empty())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        assert!(want.insert(key.join("/"), b.clone()).is_none(), "{p} twice");
    }
    assert_eq!(written.files.len(), want.len());
    disk.seek(SeekFrom::Start(0)).expect("seek");
    let fs = fatfs::FileSystem::new(disk, fatfs::FsOptions::new())
        .unwrap_or_else(|e| panic!("the volume does not mount: {e}"));
    let mut got = BTreeMap::new();
    let mut stack = vec![(String::new(), fs.root_dir())];
    while let Some((prefix, dir)) = stack.pop() {
        for e in dir.iter() {
            let e = e.unwrap_or_else(|err| panic!("{prefix}: bad directory: {err}"));
            let name = e.file_name();
            if name == "." || name == ".." {
                continue;
            }
            let path = if prefix.is_empty() {
                name.to_ascii_uppercase()
            } else {
                format!("{prefix}/{}", name.to_ascii_uppercase())
            };
            if e.is_dir() {
                stack.push((path, e.to_dir()));
            } else {
                let mut body = Vec::new();
                e.to_file()
                    .read_to_end(&mut body)
                    .unwrap_or_else(|err| panic!("{path}: {err}"));
                assert!(
                    got.insert(path.clone(), body).is_none(),
                    "{path} twice on the volume"
                );
            }
        }
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "names"
    );
    for (p, b) in &want {
        assert!(got[p] == *b, "{p}: contents differ");
    }
});
