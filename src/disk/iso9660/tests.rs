//! Tests of whole images: layout facts, the metadata-disk compatibility, boot structures,
//! errors, streaming, and a property test reading random trees back.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicU32, Ordering};

use proptest::prelude::*;

use super::reader::{read_tree, records};
use super::*;

const MTIME: i64 = 1_492_533_000;

fn write(image: &IsoImage<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    let n = write_iso(&mut v, image).unwrap();
    assert_eq!(n, v.len() as u64);
    assert_eq!(iso_size(image).unwrap(), n);
    v
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// What `pkg/metadata/src/iso.rs` does: root records of the PVD, files only, names lower
/// case without version and bare dot.
fn metadata_reader(image: &[u8], wanted: &str) -> Option<Vec<u8>> {
    let pvd = &image[16 * 2048..17 * 2048];
    assert_eq!(&pvd[..6], b"\x01CD001");
    let root = &pvd[156..190];
    for rec in records(image, le32(root, 2) as usize, le32(root, 10) as usize) {
        let text = String::from_utf8_lossy(&rec.id).to_string();
        let base = text.split(';').next().unwrap_or("");
        let name = base.strip_suffix('.').unwrap_or(base).to_ascii_lowercase();
        if !rec.dir && name == wanted {
            return Some(image[rec.extent * 2048..rec.extent * 2048 + rec.len].to_vec());
        }
    }
    None
}

#[test]
fn metadata_disk_stays_readable() {
    let data = br#"{"hello":"world"}"#.to_vec();
    let image = IsoImage::plain("CIDATA", MTIME, &[("config", &data)]);
    let v = write(&image);
    assert_eq!(&v[16 * 2048 + 40..16 * 2048 + 46], b"CIDATA");
    assert_eq!(metadata_reader(&v, "config").as_deref(), Some(&data[..]));
    assert!(v.windows(9).any(|w| w == b"CONFIG.;1"));
    assert!(v[..16 * 2048].iter().all(|&b| b == 0));
    assert_eq!(le32(&v, 16 * 2048 + 80) as usize * 2048, v.len());
}

#[test]
fn descriptors_in_order() {
    let bin = vec![7u8; 3000];
    let image = IsoImage {
        boot: Some(ElTorito {
            bios: Some(BiosBoot {
                path: "b/boot.bin".into(),
                load_sectors: 4,
                boot_info_table: false,
            }),
            efi: None,
        }),
        ..IsoImage::plain("X", MTIME, &[("b/boot.bin", &bin)])
    };
    let v = write(&image);
    let kind = |s: usize| (v[s * 2048], &v[s * 2048 + 1..s * 2048 + 6]);
    assert_eq!(kind(16), (1, &b"CD001"[..]));
    assert_eq!(kind(17), (0, &b"CD001"[..]));
    assert_eq!(
        &v[17 * 2048 + 7..17 * 2048 + 30],
        b"EL TORITO SPECIFICATION"
    );
    assert_eq!(kind(18), (2, &b"CD001"[..]));
    assert_eq!(&v[18 * 2048 + 88..18 * 2048 + 91], b"%/E");
    assert_eq!(kind(19), (255, &b"CD001"[..]));
    let cat = le32(&v, 17 * 2048 + 71) as usize * 2048;
    assert_eq!(cat, 20 * 2048);
    let lba = le32(&v, cat + 40) as usize;
    assert_eq!(&v[lba * 2048..lba * 2048 + 3000], &bin[..]);
    // Without a boot info table the file is copied unchanged.
    let plain = IsoImage::plain("X", MTIME, &[("b/boot.bin", &bin)]);
    assert_eq!(write(&plain)[17 * 2048], 2);
}

#[test]
fn rock_ridge_root_and_names() {
    let long = format!("{}.tar.gz", "n".repeat(240));
    let a = b"a".to_vec();
    let image = IsoImage::plain("X", MTIME, &[(&long, &a), ("Mixed Case.txt", &a)]);
    let v = write(&image);
    let pvd = &v[16 * 2048..];
    let root = records(
        &v,
        le32(pvd, 156 + 2) as usize,
        le32(pvd, 156 + 10) as usize,
    );
    let dot = &root[0];
    let sigs: Vec<&[u8; 2]> = dot.susp.iter().map(|(s, _)| s).collect();
    assert_eq!(sigs, [b"SP", b"PX", b"TF", b"ER"]);
    assert_eq!(&dot.susp[3].1[4..14], b"RRIP_1991A");
    let tree = read_tree(&v, false);
    assert_eq!(
        tree.keys().collect::<Vec<_>>(),
        ["Mixed Case.txt", long.as_str()]
    );
    assert_eq!(tree["Mixed Case.txt"].mode, 0o100644);
    let joliet = read_tree(&v, true);
    assert!(joliet.contains_key("Mixed Case.txt"));
    assert!(joliet.keys().any(|k| k.len() == 64));
}

#[test]
fn boot_info_table_and_hybrid_mbr() {
    let mut isolinux = vec![0u8; 5000];
    isolinux[64..68].copy_from_slice(&el_torito::ISOLINUX_SIGNATURE);
    for (i, b) in isolinux.iter_mut().enumerate().skip(68) {
        *b = i as u8;
    }
    let original = isolinux.clone();
    let fat = vec![0xF0u8; 70_000];
    let code = vec![0x33u8; 432];
    let image = IsoImage {
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
            mbr_code: Some(code.clone()),
            efi_partition: true,
        }),
        ..IsoImage::plain(
            "BOOT",
            MTIME,
            &[("isolinux/isolinux.bin", &isolinux), ("boot/efi.img", &fat)],
        )
    };
    let v = write(&image);
    assert_eq!(isolinux, original);
    assert_eq!(v.len() % (1 << 20), 0);
    let cat = le32(&v, 17 * 2048 + 71) as usize * 2048;
    let (bios_lba, efi_lba) = (le32(&v, cat + 40), le32(&v, cat + 96 + 8));
    assert_eq!(&v[cat + 64..cat + 66], &[0x91, 0xEF]);
    assert_eq!(u16::from_le_bytes([v[cat + 96 + 6], v[cat + 96 + 7]]), 137);
    let f = &v[bios_lba as usize * 2048..][..5000];
    assert_eq!(le32(f, 8), 16);
    assert_eq!(le32(f, 12), bios_lba);
    assert_eq!(le32(f, 16), 5000);
    let sum = original[64..].chunks(4).fold(0u32, |s, w| {
        let mut x = [0u8; 4];
        x[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(x))
    });
    assert_eq!(le32(f, 20), sum);
    assert_eq!(&f[64..], &original[64..]);
    // The MBR.
    assert_eq!(&v[..432], &code[..]);
    assert_eq!(le32(&v, 432), bios_lba * 4);
    assert_ne!(le32(&v, 440), 0);
    assert_eq!(&v[446..447], &[0x80]);
    assert_eq!(le32(&v, 446 + 12) as usize, v.len() / 512);
    assert_eq!(v[462 + 4], 0xEF);
    assert_eq!(le32(&v, 462 + 8), efi_lba * 4);
    assert_eq!(le32(&v, 462 + 12), 70_000u32.div_ceil(512));
    assert_eq!(&v[510..512], &[0x55, 0xAA]);
    // Deterministic, and the signature follows the content.
    assert_eq!(write(&image), v);
    let other = IsoImage {
        volume_id: "BOOT2".into(),
        ..image
    };
    assert_ne!(le32(&write(&other), 440), le32(&v, 440));
}

/// A source that is long but must never be read.
struct Huge;
impl crate::disk::source::Source for Huge {
    fn len(&self) -> u64 {
        5 << 30
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Err(io::Error::other("not to be read"))
    }
}

/// A source that lies about its length, counting opens.
struct Liar(AtomicU32);
impl crate::disk::source::Source for Liar {
    fn len(&self) -> u64 {
        10
    }
    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Box::new(&b"12345"[..]))
    }
}

fn err_of(image: &IsoImage<'_>) -> String {
    let e = write_iso(&mut Vec::new(), image).unwrap_err();
    format!("{e:?}: {e}")
}

#[test]
fn errors_name_what_is_wrong() {
    let a = b"a".to_vec();
    let e = |img: IsoImage<'_>| err_of(&img);
    assert!(e(IsoImage::plain("bad-id", 0, &[])).starts_with("VolumeId"));
    assert!(e(IsoImage::plain("", 0, &[])).starts_with("VolumeId"));
    assert!(e(IsoImage::plain("X", 0, &[("a", &a), ("a", &a)])).contains("\"a\": given twice"));
    assert!(e(IsoImage::plain("X", 0, &[("big", &Huge)])).contains("\"big\": 5368709120 bytes"));
    let missing = IsoImage {
        boot: Some(ElTorito {
            bios: None,
            efi: Some(EfiBoot {
                path: "efi.img".into(),
            }),
        }),
        ..IsoImage::plain("X", 0, &[("a", &a)])
    };
    assert!(e(missing).contains("boot file \"efi.img\" is not a file"));
    let nothing = IsoImage {
        boot: Some(ElTorito {
            bios: None,
            efi: None,
        }),
        ..IsoImage::plain("X", 0, &[("a", &a)])
    };
    assert!(e(nothing).starts_with("NoBootEntry"));
    let not_isolinux = IsoImage {
        boot: Some(ElTorito {
            bios: Some(BiosBoot {
                path: "a".into(),
                load_sectors: 4,
                boot_info_table: false,
            }),
            efi: None,
        }),
        hybrid: Some(Hybrid {
            mbr_code: Some(vec![0; 432]),
            efi_partition: false,
        }),
        ..IsoImage::plain("X", 0, &[("a", &a)])
    };
    assert!(e(not_isolinux).starts_with("NotHybridIsolinux"));
    let no_efi = IsoImage {
        hybrid: Some(Hybrid {
            mbr_code: None,
            efi_partition: true,
        }),
        ..IsoImage::plain("X", 0, &[("a", &a)])
    };
    assert!(e(no_efi).starts_with("HybridWithoutEfi"));
    let liar = Liar(AtomicU32::new(0));
    let msg = e(IsoImage::plain("X", 0, &[("dir/liar", &liar)]));
    assert!(
        msg.starts_with("Read") && msg.contains("\"dir/liar\""),
        "{msg}"
    );
    assert_eq!(liar.0.load(Ordering::Relaxed), 1);
}

#[test]
fn large_directories_span_sectors() {
    let bodies: Vec<Vec<u8>> = (0..300).map(|i| format!("file {i}").into_bytes()).collect();
    let names: Vec<String> = (0..300)
        .map(|i| format!("d/a rather long file name number {i}.txt"))
        .collect();
    let files: Vec<(&str, &dyn crate::disk::source::Source)> = names
        .iter()
        .zip(&bodies)
        .map(|(n, b)| (n.as_str(), b as &dyn crate::disk::source::Source))
        .collect();
    let v = write(&IsoImage::plain("X", MTIME, &files));
    for joliet in [false, true] {
        let tree = read_tree(&v, joliet);
        assert_eq!(tree.len(), 301);
        for (n, b) in names.iter().zip(&bodies) {
            assert_eq!(&tree[n.as_str()].data, b, "{n}");
        }
    }
}

/// A tree for the property test: path -> contents (None for an explicit directory).
fn arb_tree() -> impl Strategy<Value = BTreeMap<String, Option<Vec<u8>>>> {
    let name = prop_oneof![
        "[a-z]{1,8}",
        "[A-Za-z0-9._-]{1,20}",
        "[a-zA-Z0-9 äöü€😀;:*?\\\\]{1,12}",
        "[a-z]{60,70}",
        Just("config".to_string()),
        Just("CONFIG".to_string()),
    ]
    .prop_filter("not a dot name", |n| n != "." && n != "..");
    let path = prop::collection::vec(name, 1..4).prop_map(|v| v.join("/"));
    let body = prop_oneof![
        Just(None),
        prop::collection::vec(any::<u8>(), 0..5000).prop_map(Some),
        (0usize..3).prop_map(|k| Some(vec![0xA5; k * 2048])),
    ];
    prop::collection::btree_map(path, body, 0..25)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn trees_read_back(entries in arb_tree()) {
        // Drop entries that would sit below a file (a path that is a file cannot be a dir).
        let mut kept: BTreeMap<String, Option<Vec<u8>>> = BTreeMap::new();
        for (p, b) in entries {
            let blocked = kept.iter().any(|(q, qb)| {
                (qb.is_some() && p.starts_with(&format!("{q}/")))
                    || (b.is_some() && q.starts_with(&format!("{p}/")))
            });
            if !blocked {
                kept.insert(p, b);
            }
        }
        let empty: Vec<u8> = Vec::new();
        let files: Vec<IsoFile<'_>> = kept
            .iter()
            .map(|(p, b)| IsoFile {
                path: p.clone(),
                source: b.as_ref().unwrap_or(&empty),
                mode: if b.is_some() { 0o640 } else { 0o040_750 },
            })
            .collect();
        let image = IsoImage { volume_id: "PROP".into(), mtime: MTIME, files, boot: None, hybrid: None };
        let v = write(&image);
        prop_assert_eq!(&write(&image), &v);
        let seen = read_tree(&v, false);
        // Every given entry is there with its bytes and mode; parents are directories.
        for (p, b) in &kept {
            let s = seen.get(p).unwrap_or_else(|| panic!("{p} missing"));
            match b {
                Some(data) => {
                    prop_assert_eq!(&s.data, data);
                    prop_assert_eq!(s.mode, 0o100640);
                }
                None => prop_assert_eq!(s.mode, 0o040750),
            }
        }
        for (p, s) in &seen {
            prop_assert!(kept.contains_key(p) || (s.dir && kept.keys().any(|k| k.starts_with(&format!("{p}/")))), "{} extra", p);
        }
        // Joliet: the same entries and bodies; the same names when none needed mangling.
        let joliet = read_tree(&v, true);
        prop_assert_eq!(joliet.len(), seen.len());
        let mut a: Vec<&Vec<u8>> = joliet.values().map(|s| &s.data).collect();
        let mut b: Vec<&Vec<u8>> = seen.values().map(|s| &s.data).collect();
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
        let plain = seen.keys().all(|p| {
            !p.chars().any(|c| "*:;?\\".contains(c) || c as u32 > 0xFFFF)
                && p.split('/').all(|c| c.encode_utf16().count() <= 64)
        });
        if plain {
            prop_assert!(joliet.keys().eq(seen.keys()));
        }
    }
}
