//! Volume descriptors (primary, Joliet supplementary, terminator) and the field encodings
//! ISO 9660 uses everywhere: both-endian numbers, the 7-byte record date, the 17-byte volume date.

/// Logical sector (block) size.
pub(crate) const SECTOR: usize = 2048;
/// The primary volume descriptor's sector; sectors before it are the system area.
pub(crate) const PVD_SECTOR: u32 = 16;

/// Application identifier written in both volume descriptors.
const APPLICATION: &str = "OSBUILD";
/// System identifier written in both volume descriptors.
const SYSTEM: &str = "LINUX";

/// `v` little-endian then big-endian (ISO 9660 7.2.3).
pub(crate) fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

/// `v` little-endian then big-endian (ISO 9660 7.3.3).
pub(crate) fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

use crate::disk::civil;

/// The 7-byte date of a directory record and of Rock Ridge `TF`, UTC; times outside the
/// representable years 1900-2155 are clamped to the nearest end.
pub(crate) fn record_date(t: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil(t.clamp(-2_208_988_800, 5_869_583_999));
    [
        (y - 1900) as u8,
        mo as u8,
        d as u8,
        h as u8,
        mi as u8,
        s as u8,
        0,
    ]
}

/// The 17-byte date of a volume descriptor (digits, hundredths, UTC offset 0); times outside
/// years 1970-9999 are clamped.
pub(crate) fn volume_date(t: i64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = civil(t.clamp(0, 253_402_300_799));
    let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// Text padded with spaces to `len` bytes.
fn ascii(text: &str, len: usize) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.truncate(len);
    v.resize(len, b' ');
    v
}

/// Text as UCS-2 big endian padded with UCS-2 spaces to `len` bytes (an odd last byte is 0).
fn ucs2(text: &str, len: usize) -> Vec<u8> {
    let mut v: Vec<u8> = text.encode_utf16().flat_map(u16::to_be_bytes).collect();
    v.truncate(len / 2 * 2);
    while v.len() + 2 <= len {
        v.extend_from_slice(&[0, b' ']);
    }
    v.resize(len, 0);
    v
}

/// Where a volume descriptor finds its directory hierarchy.
pub(crate) struct Hierarchy {
    /// The root directory's extent.
    pub root_lba: u32,
    /// The root directory's size in bytes.
    pub root_len: u32,
    /// The path table's size in bytes (without padding).
    pub path_table_len: u32,
    /// The little-endian (type L) path table's first sector.
    pub path_table_l: u32,
    /// The big-endian (type M) path table's first sector.
    pub path_table_m: u32,
}

/// A primary (`joliet == false`) or Joliet supplementary volume descriptor.
pub(crate) fn descriptor(
    joliet: bool,
    volume_id: &str,
    total_sectors: u32,
    tree: &Hierarchy,
    mtime: i64,
) -> Vec<u8> {
    let text = |s: &str, len: usize| if joliet { ucs2(s, len) } else { ascii(s, len) };
    let mut d = vec![0u8; SECTOR];
    d[0] = if joliet { 2 } else { 1 };
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d[8..40].copy_from_slice(&text(SYSTEM, 32));
    d[40..72].copy_from_slice(&text(volume_id, 32));
    d[80..88].copy_from_slice(&both32(total_sectors));
    if joliet {
        // Escape sequence for UCS-2 level 3.
        d[88..91].copy_from_slice(b"%/E");
    }
    d[120..124].copy_from_slice(&both16(1));
    d[124..128].copy_from_slice(&both16(1));
    d[128..132].copy_from_slice(&both16(SECTOR as u16));
    d[132..140].copy_from_slice(&both32(tree.path_table_len));
    d[140..144].copy_from_slice(&tree.path_table_l.to_le_bytes());
    d[148..152].copy_from_slice(&tree.path_table_m.to_be_bytes());
    let root = root_record(tree.root_lba, tree.root_len, mtime);
    d[156..190].copy_from_slice(&root);
    d[190..318].copy_from_slice(&text("", 128));
    d[318..446].copy_from_slice(&text("", 128));
    d[446..574].copy_from_slice(&text("", 128));
    d[574..702].copy_from_slice(&text(APPLICATION, 128));
    d[702..739].copy_from_slice(&text("", 37));
    d[739..776].copy_from_slice(&text("", 37));
    d[776..813].copy_from_slice(&text("", 37));
    d[813..830].copy_from_slice(&volume_date(mtime));
    d[830..847].copy_from_slice(&volume_date(mtime));
    d[847..864].copy_from_slice(b"0000000000000000\0");
    d[864..881].copy_from_slice(&volume_date(mtime));
    d[881] = 1;
    d
}

/// The volume descriptor set terminator.
pub(crate) fn terminator() -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[0] = 255;
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d
}

/// The 34-byte root directory record held in a volume descriptor.
fn root_record(lba: u32, len: u32, mtime: i64) -> [u8; 34] {
    let mut r = [0u8; 34];
    r[0] = 34;
    r[2..10].copy_from_slice(&both32(lba));
    r[10..18].copy_from_slice(&both32(len));
    r[18..25].copy_from_slice(&record_date(mtime));
    r[25] = 2;
    r[28..32].copy_from_slice(&both16(1));
    r[32] = 1;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_492_533_000), (2017, 4, 18, 16, 30, 0));
        assert_eq!(record_date(1_492_533_000), [117, 4, 18, 16, 30, 0, 0]);
        assert_eq!(record_date(i64::MIN), [0, 1, 1, 0, 0, 0, 0]);
        assert_eq!(record_date(i64::MAX), [255, 12, 31, 23, 59, 59, 0]);
        assert_eq!(&volume_date(1_492_533_000)[..16], b"2017041816300000");
        assert_eq!(&volume_date(i64::MAX)[..16], b"9999123123595900");
        assert_eq!(&volume_date(-5)[..16], b"1970010100000000");
    }

    #[test]
    fn text_fields() {
        assert_eq!(ascii("AB", 4), b"AB  ");
        assert_eq!(ucs2("A", 5), [0, b'A', 0, b' ', 0]);
        assert_eq!(ucs2("ABC", 4), [0, b'A', 0, b'B']);
    }
}
