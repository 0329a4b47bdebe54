//! A small ISO 9660 reader for the tests and the fuzz targets (feature `fuzzing`): walks the
//! primary tree (Rock Ridge names and modes when present) or the Joliet tree and returns every
//! file with its bytes. It panics on anything malformed: its callers check the writer.

use std::collections::BTreeMap;

const SECTOR: usize = 2048;

fn le32(b: &[u8], at: usize) -> usize {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at + 4], b[at + 5], b[at + 6], b[at + 7]]) as usize
}

/// What a reader sees of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Rock Ridge mode (0 in the Joliet tree).
    pub mode: u32,
    /// File bytes (empty for directories).
    pub data: Vec<u8>,
    /// Whether it is a directory.
    pub dir: bool,
}

/// One parsed directory record.
pub struct Rec {
    /// The file identifier as recorded.
    pub id: Vec<u8>,
    /// Its first sector.
    pub extent: usize,
    /// Its length in bytes.
    pub len: usize,
    /// Whether it is a directory.
    pub dir: bool,
    /// Rock Ridge entries (signature, body), continuation areas followed.
    pub susp: Vec<([u8; 2], Vec<u8>)>,
}

/// System use entries from `area`, following `CE` into `image`.
fn susp<'a>(image: &'a [u8], mut area: &'a [u8], out: &mut Vec<([u8; 2], Vec<u8>)>) {
    let mut hops = 0;
    loop {
        let mut next = None;
        while area.len() >= 4 {
            let len = area[2] as usize;
            assert!(len >= 4 && len <= area.len(), "bad SUSP entry length");
            let sig = [area[0], area[1]];
            let body = area[4..len].to_vec();
            if &sig == b"CE" {
                let (lba, off, n) = (le32(&body, 0), le32(&body, 8), le32(&body, 16));
                assert_eq!(be32(&body, 0), lba, "CE both-endian");
                assert!(off + n <= SECTOR, "continuation area crosses a sector");
                next = Some(&image[lba * SECTOR + off..lba * SECTOR + off + n]);
            } else {
                out.push((sig, body));
            }
            area = &area[len..];
        }
        match next {
            Some(a) if hops < 8 => {
                area = a;
                hops += 1;
            }
            _ => return,
        }
    }
}

/// The records of the directory at `extent` of `len` bytes, checking that none crosses a
/// sector and that both-endian fields agree.
pub fn records(image: &[u8], extent: usize, len: usize) -> Vec<Rec> {
    let dir = &image[extent * SECTOR..extent * SECTOR + len];
    let mut out = Vec::new();
    let mut at = 0;
    while at < dir.len() {
        let n = dir[at] as usize;
        if n == 0 {
            at = (at / SECTOR + 1) * SECTOR;
            continue;
        }
        assert!(at % SECTOR + n <= SECTOR, "record crosses a sector");
        assert_eq!(n % 2, 0, "odd record length");
        let r = &dir[at..at + n];
        assert_eq!(le32(r, 2), be32(r, 2));
        assert_eq!(le32(r, 10), be32(r, 10));
        let id_len = r[32] as usize;
        let id = r[33..33 + id_len].to_vec();
        let su_at = 33 + id_len + (1 - id_len % 2);
        let mut entries = Vec::new();
        susp(image, &r[su_at.min(n)..], &mut entries);
        out.push(Rec {
            id,
            extent: le32(r, 2),
            len: le32(r, 10),
            dir: r[25] & 2 != 0,
            susp: entries,
        });
        at += n;
    }
    out
}

/// The name a reader shows: Rock Ridge `NM` when present, else the identifier without
/// version (and UCS-2 decoded for Joliet).
fn name_of(rec: &Rec, joliet: bool) -> String {
    let nm: Vec<u8> = rec
        .susp
        .iter()
        .filter(|(s, _)| s == b"NM")
        .flat_map(|(_, b)| b[1..].to_vec())
        .collect();
    if !nm.is_empty() {
        return String::from_utf8(nm).expect("NM is UTF-8");
    }
    if joliet {
        let units: Vec<u16> = rec
            .id
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16(&units).expect("UCS-2");
    }
    let text = String::from_utf8_lossy(&rec.id).to_string();
    let base = text.split(';').next().unwrap_or("").to_string();
    base.strip_suffix('.').map(str::to_string).unwrap_or(base)
}

/// Every entry under the root of the primary (`joliet == false`) or Joliet tree, by path.
pub fn read_tree(image: &[u8], joliet: bool) -> BTreeMap<String, Seen> {
    let vd = (16..32)
        .map(|s| &image[s * SECTOR..(s + 1) * SECTOR])
        .find(|d| d[0] == if joliet { 2 } else { 1 } && &d[1..6] == b"CD001")
        .expect("volume descriptor");
    let root = &vd[156..190];
    let mut out = BTreeMap::new();
    let mut stack = vec![(String::new(), le32(root, 2), le32(root, 10))];
    while let Some((path, extent, len)) = stack.pop() {
        for rec in records(image, extent, len).into_iter().skip(2) {
            let name = name_of(&rec, joliet);
            let full = if path.is_empty() {
                name
            } else {
                format!("{path}/{name}")
            };
            let mode = rec
                .susp
                .iter()
                .find(|(s, _)| s == b"PX")
                .map(|(_, b)| le32(b, 0) as u32)
                .unwrap_or(0);
            let data = if rec.dir {
                stack.push((full.clone(), rec.extent, rec.len));
                Vec::new()
            } else {
                image[rec.extent * SECTOR..rec.extent * SECTOR + rec.len].to_vec()
            };
            assert!(
                out.insert(
                    full.clone(),
                    Seen {
                        mode,
                        data,
                        dir: rec.dir
                    }
                )
                .is_none(),
                "{full} twice"
            );
        }
    }
    out
}
