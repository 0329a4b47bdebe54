//! ISO 9660 images of fuzz-chosen trees: never a panic; an image written reads back with the
//! project's reader (Rock Ridge names and modes in the primary tree, and the Joliet tree)
//! holding exactly those entries with their bytes.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use osbuild::disk::iso9660::reader::read_tree;
use osbuild::disk::iso9660::{IsoFile, IsoImage, write_iso};

/// Names the fuzzer picks by number: collisions once mangled to 8.3, odd characters.
const NAMES: &[&str] = &[
    "config",
    "CONFIG",
    "a",
    "A",
    "a.b",
    "a.b.c",
    "Mixed Case.txt",
    "x;1",
    ";",
    "*?",
    ".a",
    "a.",
    "\u{e4}\u{f6}\u{fc}",
    "\u{1f600}",
    "boot",
    "isolinux.bin",
    "verylongname_with_many_chars",
];

#[derive(Arbitrary, Debug)]
enum Name {
    Pick(u8),
    Raw(String),
    Long(u8),
}

#[derive(Arbitrary, Debug)]
struct File {
    path: Vec<Name>,
    /// `None`: a directory.
    body: Option<Vec<u8>>,
    mode: u16,
    /// Repeat the body to this many KiB (bodies across sectors without large inputs).
    repeat: u8,
}

#[derive(Arbitrary, Debug)]
struct Input {
    volume_id: String,
    mtime: i64,
    files: Vec<File>,
}

fuzz_target!(|input: Input| {
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
                    Name::Long(k) => "n".repeat(usize::from(*k) + 30),
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let bodies: Vec<Option<Vec<u8>>> = input
        .files
        .iter()
        .take(40)
        .map(|f| {
            f.body.as_ref().map(|b| {
                let mut b = b.clone();
                if !b.is_empty() {
                    let unit = b.clone();
                    while b.len() < usize::from(f.repeat % 16) * 1024 {
                        b.extend_from_slice(&unit);
                    }
                }
                b
            })
        })
        .collect();
    let empty: Vec<u8> = Vec::new();
    let files: Vec<IsoFile<'_>> = paths
        .iter()
        .zip(&bodies)
        .zip(&input.files)
        .map(|((p, b), f)| IsoFile {
            path: p.clone(),
            source: b.as_ref().unwrap_or(&empty),
            mode: match b {
                Some(_) => u32::from(f.mode) & 0o7777,
                None => 0o040000 | (u32::from(f.mode) & 0o7777),
            },
        })
        .collect();
    let image = IsoImage {
        volume_id: input.volume_id.clone(),
        mtime: input.mtime,
        files,
        boot: None,
        hybrid: None,
    };
    let mut out = Vec::new();
    let Ok(n) = write_iso(&mut out, &image) else {
        return;
    };
    assert_eq!(n, out.len() as u64);
    // What went in: path (leading slashes dropped) -> (body or None, mode).
    let mut want: BTreeMap<String, (Option<&Vec<u8>>, u32)> = BTreeMap::new();
    for (f, b) in image.files.iter().zip(&bodies) {
        let p = f.path.trim_start_matches('/').to_string();
        assert!(
            want.insert(p.clone(), (b.as_ref(), f.mode)).is_none(),
            "{p} twice"
        );
    }
    let seen = read_tree(&out, false);
    for (p, (b, mode)) in &want {
        let s = seen.get(p).unwrap_or_else(|| panic!("{p:?} missing"));
        match b {
            Some(data) => {
                assert_eq!(&&s.data, data, "{p:?}: contents");
                assert_eq!(s.mode, 0o100000 | (mode & 0o7777), "{p:?}: mode");
                assert!(!s.dir);
            }
            None => {
                assert!(s.dir, "{p:?} is a directory");
                assert_eq!(s.mode, *mode, "{p:?}: mode");
            }
        }
    }
    for (p, s) in &seen {
        assert!(
            want.contains_key(p) || (s.dir && want.keys().any(|k| k.starts_with(&format!("{p}/")))),
            "{p:?}: not given"
        );
    }
    let joliet = read_tree(&out, true);
    assert_eq!(joliet.len(), seen.len(), "Joliet entries");
    let mut a: Vec<&Vec<u8>> = joliet.values().map(|s| &s.data).collect();
    let mut b: Vec<&Vec<u8>> = seen.values().map(|s| &s.data).collect();
    a.sort();
    b.sort();
    assert!(a == b, "Joliet bodies");
});
