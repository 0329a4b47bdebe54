//! Tests reading images with the tools people use (xorriso/osirrox, isoinfo, fdisk); each
//! check is skipped, with a note, when its tool is not installed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// Run `tool args`, or `None` (with a note) when it is not installed.
fn run(tool: &str, args: &[&str]) -> Option<String> {
    match Command::new(tool).args(args).output() {
        Ok(out) => {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{tool} {args:?} failed:\n{text}");
            Some(text)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            osbuild_test_skip::skip(&format!("{tool} is not installed"));
            None
        }
        Err(e) => panic!("{tool}: {e}"),
    }
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("iso9660-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Every regular file under `dir`, by relative path.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn reference_tools_read_the_image() {
    let dir = scratch("tools");
    // A real isolinux.bin when installed (so xorriso sees a hybrid-capable boot file).
    let isolinux = std::fs::read("/usr/lib/ISOLINUX/isolinux.bin").unwrap_or_else(|_| {
        let mut v = vec![0x90u8; 4096];
        v[64..68].copy_from_slice(&el_torito::ISOLINUX_SIGNATURE);
        v
    });
    let mbr = std::fs::read("/usr/lib/ISOLINUX/isohdpfx.bin").unwrap_or_else(|_| vec![0; 432]);
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let fat = vec![0xF6u8; 1_474_560];
    let long = "a file name that is much longer than sixty-four characters, for Joliet.txt";
    let bodies: Vec<(String, Vec<u8>)> = vec![
        ("isolinux/isolinux.bin".into(), isolinux),
        ("boot/efi.img".into(), fat),
        ("boot/kernel".into(), big),
        ("empty".into(), vec![]),
        ("EFI/BOOT/BOOTX64.EFI".into(), b"MZ not really".to_vec()),
        ("deep/a/b/c/d/e/f/g/h/i/file".into(), b"deep".to_vec()),
        ("Ünïcödé näme €.txt".into(), b"unicode".to_vec()),
        (long.into(), b"long".to_vec()),
        ("config".into(), b"1".to_vec()),
        ("CONFIG".into(), b"2".to_vec()),
        ("x.tar.gz".into(), b"3".to_vec()),
    ];
    let empty: Vec<u8> = vec![];
    let mut files: Vec<IsoFile<'_>> = bodies
        .iter()
        .map(|(p, b)| IsoFile {
            path: p.clone(),
            source: b,
            mode: 0o644,
        })
        .collect();
    files.push(IsoFile {
        path: "emptydir".into(),
        source: &empty,
        mode: 0o040_700,
    });
    let image = IsoImage {
        volume_id: "OSBUILD_TEST".into(),
        mtime: 1_492_533_000,
        files,
        boot: Some(ElTorito {
            bios: Some(BiosBoot {
                path: "isolinux/isolinux.bin".into(),
                load_sectors: 4,
                boot_info_table: true,
            }),
            efi: Some(EfiBoot {
                path: "boot/efi.img".into(),
            }),
        }),
        hybrid: Some(Hybrid {
            mbr_code: Some(mbr),
            efi_partition: true,
        }),
    };
    let iso = dir.join("test.iso");
    let mut out = std::fs::File::create(&iso).unwrap();
    write_iso(&mut out, &image).unwrap();
    drop(out);
    let f = iso.to_str().unwrap();

    if let Some(report) = run(
        "xorriso",
        &[
            "-indev",
            f,
            "-report_el_torito",
            "plain",
            "-report_system_area",
            "plain",
        ],
    ) {
        println!("{report}");
        assert!(
            !report.contains("FAILURE") && !report.contains("SORRY"),
            "{report}"
        );
        assert!(
            report.contains("El Torito boot img :   1  BIOS  y   none  0x0000  0x00      4"),
            "{report}"
        );
        assert!(
            report.contains("El Torito boot img :   2  UEFI  y   none  0x0000  0x00   2880"),
            "{report}"
        );
        assert!(report.contains("/isolinux/isolinux.bin"), "{report}");
        assert!(report.contains("/boot/efi.img"), "{report}");
        assert!(report.contains("MBR partition table:"), "{report}");
    }
    let extracted = dir.join("x");
    if run(
        "osirrox",
        &["-indev", f, "-extract", "/", extracted.to_str().unwrap()],
    )
    .is_some()
    {
        let got = files_under(&extracted);
        let mut want: BTreeMap<String, Vec<u8>> = bodies.iter().cloned().collect();
        // The boot info table is part of the image's copy of isolinux.bin.
        let patched = got
            .get("isolinux/isolinux.bin")
            .cloned()
            .unwrap_or_default();
        want.insert("isolinux/isolinux.bin".into(), patched.clone());
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>()
        );
        assert_eq!(got, want);
        assert_eq!(&patched[64..], &bodies[0].1[64..]);
        assert!(extracted.join("emptydir").is_dir());
    }
    if let Some(d) = run("isoinfo", &["-d", "-i", f]) {
        println!("{d}");
        assert!(d.contains("Volume id: OSBUILD_TEST"), "{d}");
        assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
        assert!(d.contains("Joliet with UCS level 3 found"), "{d}");
        assert!(d.contains("El Torito VD version 1 found"), "{d}");
        let r = run("isoinfo", &["-R", "-l", "-i", f]).unwrap();
        assert!(r.contains("Ünïcödé näme €.txt"), "{r}");
        assert!(r.contains("-rw-r--r--"), "{r}");
        assert!(r.contains("drwx------"), "{r}");
        let j = run("isoinfo", &["-J", "-l", "-i", f]).unwrap();
        assert!(j.contains("BOOTX64.EFI"), "{j}");
        // isoinfo converts Joliet names to an 8-bit charset: check the 64-unit cut instead.
        assert!(j.contains(&long[..64]), "{j}");
        assert!(!j.contains(long), "{j}");
        let p = run("isoinfo", &["-l", "-i", f]).unwrap();
        assert!(
            p.contains("CONFIG.;1") && p.contains("ISOLINUX.BIN;1"),
            "{p}"
        );
    }
    if let Some(t) = run("fdisk", &["-l", f]) {
        println!("{t}");
        assert!(t.contains("test.iso1 *"), "{t}");
        assert!(t.contains("ef EFI (FAT-12/16/32)"), "{t}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
