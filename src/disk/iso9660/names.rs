//! File identifiers: level-1 8.3 names for the primary tree and UCS-2 names for the Joliet
//! tree, each made unique within its directory by deterministic mangling, in the order ISO
//! 9660 sorts directory records.

use std::collections::HashSet;

/// Longest Joliet name, in UCS-2 units.
pub(crate) const JOLIET_MAX: usize = 64;

/// One entry of a directory to name: its real name and whether it is a directory.
pub(crate) struct Named<'a> {
    pub name: &'a str,
    pub dir: bool,
}

/// Level-1 d-characters: `A-Z`, `0-9`, `_`; anything else becomes `_`.
fn d_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect()
}

/// The natural (unmangled) 8.3 name of an entry: (base, extension), both d-characters.
fn natural(e: &Named<'_>) -> (String, String) {
    let (base, ext) = match e.name.rfind('.') {
        Some(i) if i > 0 && !e.dir => (&e.name[..i], &e.name[i + 1..]),
        _ => (e.name, ""),
    };
    let mut base = d_chars(base);
    let mut ext = d_chars(ext);
    base.truncate(8);
    ext.truncate(3);
    if base.is_empty() && ext.is_empty() {
        base.push('_');
    }
    (base, ext)
}

/// Level-1 identifiers for `entries` (one directory), in the same order: `NAME.EXT;1` for files,
/// `NAME` for directories. When names collide, later entries (in the order given) get the end
/// of their base replaced by a number. `None` when a directory has too many collisions.
pub(crate) fn primary_ids(entries: &[Named<'_>]) -> Option<Vec<Vec<u8>>> {
    let mut used: HashSet<(String, String)> = HashSet::new();
    let mut next = 1u32;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let (base, ext) = natural(e);
        let mut key = (base.clone(), ext.clone());
        while used.contains(&key) {
            if next > 99_999_999 {
                return None;
            }
            let n = next.to_string();
            next += 1;
            let keep = base.len().min(8 - n.len());
            key = (format!("{}{n}", &base[..keep]), ext.clone());
        }
        let id = if e.dir {
            key.0.clone()
        } else {
            format!("{}.{};1", key.0, key.1)
        };
        used.insert(key);
        out.push(id.into_bytes());
    }
    Some(out)
}

/// The sort key of a level-1 identifier: ISO 9660 9.3 compares the name, then the extension
/// (shorter padded with spaces, which sort below every d-character), then the version.
pub(crate) fn primary_order(id: &[u8]) -> (&[u8], &[u8]) {
    let id = id.split(|&b| b == b';').next().unwrap_or(id);
    match id.iter().position(|&b| b == b'.') {
        Some(i) => (&id[..i], &id[i + 1..]),
        None => (id, &[]),
    }
}

/// Joliet identifiers (UCS-2 big endian, no version) for `entries`, in the same order: the
/// real name with characters Joliet forbids replaced by `_`, cut to 64 units; collisions get
/// the end replaced by `~` and a number. `None` when a directory has too many collisions.
pub(crate) fn joliet_ids(entries: &[Named<'_>]) -> Option<Vec<Vec<u8>>> {
    let mut used: HashSet<Vec<u16>> = HashSet::new();
    let mut next = 1u32;
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let mut units: Vec<u16> = e
            .name
            .chars()
            .map(|c| match c {
                '\0'..='\x1f' | '*' | '/' | ':' | ';' | '?' | '\\' => b'_' as u16,
                c if (c as u32) > 0xFFFF => b'_' as u16,
                c => c as u16,
            })
            .collect();
        units.truncate(JOLIET_MAX);
        let base = units.clone();
        while used.contains(&units) {
            if next > 99_999_999 {
                return None;
            }
            let n: Vec<u16> = format!("~{next}").encode_utf16().collect();
            next += 1;
            let keep = base.len().min(JOLIET_MAX - n.len());
            units = base[..keep].iter().chain(&n).copied().collect();
        }
        out.push(units.iter().flat_map(|u| u.to_be_bytes()).collect());
        used.insert(units);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[(&str, bool)]) -> Vec<String> {
        let e: Vec<Named<'_>> = names
            .iter()
            .map(|&(name, dir)| Named { name, dir })
            .collect();
        primary_ids(&e)
            .unwrap()
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap())
            .collect()
    }

    #[test]
    fn level_one_names() {
        assert_eq!(
            ids(&[
                ("config", false),
                ("isolinux.bin", false),
                ("BOOTX64.EFI", false),
                ("vmlinuz-6.1.0-amd64", false),
                (".bashrc", false),
                ("archive.tar.gz", false),
                ("EFI", true),
                ("dir.d", true),
                ("ünï cödé", false),
            ]),
            [
                "CONFIG.;1",
                "ISOLINUX.BIN;1",
                "BOOTX64.EFI;1",
                "VMLINUZ_.0_A;1",
                "_BASHRC.;1",
                "ARCHIVE_.GZ;1",
                "EFI",
                "DIR_D",
                "_N__C_D_.;1",
            ]
        );
    }

    #[test]
    fn collisions_are_mangled_deterministically() {
        assert_eq!(
            ids(&[
                ("longname1", false),
                ("longname2", false),
                ("LONGNAM1", false),
                ("config", false),
                ("CONFIG", false),
                ("config", true),
                ("a.txt", false),
                ("A.TXT", false),
            ]),
            [
                "LONGNAME.;1",
                "LONGNAM1.;1",
                "LONGNAM2.;1",
                "CONFIG.;1",
                "CONFIG3.;1",
                "CONFIG4",
                "A.TXT;1",
                "A5.TXT;1",
            ]
        );
    }

    #[test]
    fn sort_keys() {
        let mut v: Vec<&[u8]> = vec![b"AB.C;1", b"A.TXT;1", b"AB", b"A_B.;1", b"A.;1"];
        v.sort_by(|a, b| primary_order(a).cmp(&primary_order(b)));
        assert_eq!(v, [&b"A.;1"[..], b"A.TXT;1", b"AB", b"AB.C;1", b"A_B.;1"]);
    }

    #[test]
    fn joliet_names() {
        let long = "x".repeat(70);
        let e = [
            Named {
                name: "a:b?c",
                dir: false,
            },
            Named {
                name: &long,
                dir: false,
            },
            Named {
                name: &long[..65],
                dir: false,
            },
            Named {
                name: "😀",
                dir: false,
            },
        ];
        let got: Vec<String> = joliet_ids(&e)
            .unwrap()
            .into_iter()
            .map(|v| {
                let u: Vec<u16> = v
                    .chunks(2)
                    .map(|c| u16::from_be_bytes([c[0], c[1]]))
                    .collect();
                String::from_utf16(&u).unwrap()
            })
            .collect();
        assert_eq!(got[0], "a_b_c");
        assert_eq!(got[1], "x".repeat(64));
        assert_eq!(got[2], format!("{}~1", "x".repeat(62)));
        assert_eq!(got[3], "_");
    }
}
