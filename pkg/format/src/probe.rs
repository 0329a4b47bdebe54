//! What a block device (or image file) already holds, told from on-disk signatures: the
//! filesystems, swap areas, encrypted volumes and partition tables a formatter must not
//! overwrite unasked.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

/// A kind of content recognised by its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ext2, ext3 or ext4 (one superblock format).
    Ext,
    /// XFS.
    Xfs,
    /// Btrfs.
    Btrfs,
    /// FAT12/16/32.
    Vfat,
    /// squashfs.
    Squashfs,
    /// EROFS.
    Erofs,
    /// ISO 9660.
    Iso9660,
    /// A Linux swap area.
    Swap,
    /// A LUKS encrypted volume.
    Luks,
    /// A GUID partition table.
    Gpt,
    /// An MBR (DOS) partition table.
    Mbr,
}

impl Kind {
    /// The name blkid and mount use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ext => "ext4",
            Kind::Xfs => "xfs",
            Kind::Btrfs => "btrfs",
            Kind::Vfat => "vfat",
            Kind::Squashfs => "squashfs",
            Kind::Erofs => "erofs",
            Kind::Iso9660 => "iso9660",
            Kind::Swap => "swap",
            Kind::Luks => "crypto_LUKS",
            Kind::Gpt => "gpt",
            Kind::Mbr => "dos",
        }
    }

    /// Whether this is a partition table rather than a filesystem.
    pub fn is_partition_table(self) -> bool {
        matches!(self, Kind::Gpt | Kind::Mbr)
    }
}

/// What a device holds, with the filesystem's label and UUID where it has them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// The signature found.
    pub kind: Kind,
    /// The volume label, when the format has one and it is set.
    pub label: Option<String>,
    /// The UUID (lower-case, hyphenated) when the format has one.
    pub uuid: Option<String>,
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            Kind::Gpt => f.write_str("a GPT partition table")?,
            Kind::Mbr => f.write_str("an MBR partition table")?,
            Kind::Swap => f.write_str("a swap area")?,
            Kind::Luks => f.write_str("a LUKS volume")?,
            Kind::Squashfs => f.write_str("a squashfs filesystem")?,
            Kind::Btrfs => f.write_str("a btrfs filesystem")?,
            Kind::Vfat => f.write_str("a vfat filesystem")?,
            other => write!(f, "an {} filesystem", other.name())?,
        }
        if let Some(label) = &self.label {
            write!(f, " labelled {label:?}")?;
        }
        Ok(())
    }
}

/// Bytes read from the start of a device: enough for every signature but btrfs's and swap's
/// on large pages.
const HEAD: usize = 68 * 1024;

/// Identify what `dev` holds; `None` when no known signature is there.
///
/// Filesystems are checked before partition tables: a FAT boot sector carries the same
/// 0x55AA marker as an MBR, and a hybrid ISO carries both an ISO 9660 volume and a table.
pub fn probe<R: Read + Seek>(dev: &mut R) -> io::Result<Option<Content>> {
    let mut head = vec![0u8; HEAD];
    dev.seek(SeekFrom::Start(0))?;
    let n = read_full(dev, &mut head)?;
    head.truncate(n);
    Ok(identify(&head))
}

/// Read until `buf` is full or the end; the number of bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn at(b: &[u8], off: usize, len: usize) -> Option<&[u8]> {
    b.get(off..off.checked_add(len)?)
}

fn le16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(at(b, off, 2)?.try_into().ok()?))
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(at(b, off, 4)?.try_into().ok()?))
}

/// A label stored as a NUL- or space-padded byte string; `None` when empty.
fn label(raw: &[u8], trim_spaces: bool) -> Option<String> {
    let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]);
    let s = if trim_spaces { s.trim_end() } else { &s };
    (!s.is_empty()).then(|| s.to_string())
}

/// A 16-byte UUID in its usual text form; `None` when all zero.
pub fn uuid_text(raw: &[u8]) -> Option<String> {
    if raw.len() != 16 || raw.iter().all(|&b| b == 0) {
        return None;
    }
    let h: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

fn content(kind: Kind, label: Option<String>, uuid: Option<String>) -> Option<Content> {
    Some(Content { kind, label, uuid })
}

/// The signatures, checked in the first `HEAD` bytes of a device.
fn identify(b: &[u8]) -> Option<Content> {
    // ext2/3/4: superblock at 1024, s_magic 0xEF53 at +0x38.
    if le16(b, 1024 + 0x38) == Some(0xEF53) {
        let sb = &b[1024..];
        return content(
            Kind::Ext,
            label(at(sb, 0x78, 16)?, false),
            uuid_text(at(sb, 0x68, 16)?),
        );
    }
    if at(b, 0, 4) == Some(b"XFSB") {
        return content(
            Kind::Xfs,
            label(at(b, 108, 12)?, false),
            uuid_text(at(b, 32, 16)?),
        );
    }
    // btrfs: the primary superblock at 64 KiB, magic at +0x40.
    if at(b, 0x10040, 8) == Some(b"_BHRfS_M") {
        let sb = &b[0x10000..];
        return content(
            Kind::Btrfs,
            label(at(sb, 0x12b, 256)?, false),
            uuid_text(at(sb, 0x20, 16)?),
        );
    }
    if at(b, 0, 4) == Some(b"hsqs") {
        return content(Kind::Squashfs, None, None);
    }
    if le32(b, 1024) == Some(0xE0F5_E1E2) {
        return content(Kind::Erofs, label(at(b, 1024 + 0x30, 16)?, false), None);
    }
    if at(b, 0, 6) == Some(b"LUKS\xba\xbe") {
        return content(Kind::Luks, None, None);
    }
    // ISO 9660: the primary volume descriptor at 32 KiB.
    if at(b, 0x8001, 5) == Some(b"CD001") {
        return content(Kind::Iso9660, label(at(b, 0x8028, 32)?, true), None);
    }
    // Swap: the signature ends the first page, whatever the page size was.
    for page in [4096usize, 8192, 16384, 65536] {
        let sig = at(b, page - 10, 10);
        if sig == Some(b"SWAPSPACE2") || sig == Some(b"SWAP-SPACE") {
            return content(
                Kind::Swap,
                label(at(b, 1024 + 28, 16)?, false),
                uuid_text(at(b, 1024 + 12, 16)?),
            );
        }
    }
    let boot_signature = at(b, 510, 2) == Some(&[0x55, 0xAA]);
    if boot_signature && let Some(fat) = vfat(b) {
        return Some(fat);
    }
    // GPT: the header in the second 512-byte sector (or the second 4 KiB one).
    if at(b, 512, 8) == Some(b"EFI PART") || at(b, 4096, 8) == Some(b"EFI PART") {
        return content(Kind::Gpt, None, None);
    }
    if boot_signature {
        return content(Kind::Mbr, None, None);
    }
    None
}

/// A FAT boot sector: a jump instruction, a sane sector size and the type string where
/// FAT12/16 (offset 54) or FAT32 (offset 82) keep it.
fn vfat(b: &[u8]) -> Option<Content> {
    let jump = matches!(b.first(), Some(0xEB | 0xE9));
    let sector = le16(b, 11)?;
    if !jump || !matches!(sector, 512 | 1024 | 2048 | 4096) {
        return None;
    }
    let (label_at, id_at) = if at(b, 82, 5) == Some(b"FAT32") {
        (71, 67)
    } else if at(b, 54, 3) == Some(b"FAT") {
        (43, 39)
    } else {
        return None;
    };
    let id = le32(b, id_at)?;
    let label = label(at(b, label_at, 11)?, true).filter(|l| l != "NO NAME");
    content(
        Kind::Vfat,
        label,
        Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn probe_bytes(b: Vec<u8>) -> Option<Content> {
        probe(&mut Cursor::new(b)).unwrap()
    }

    fn blank() -> Vec<u8> {
        vec![0u8; 1 << 20]
    }

    fn put(b: &mut [u8], off: usize, bytes: &[u8]) {
        b[off..off + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn zeros_and_short_devices_are_blank() {
        assert_eq!(probe_bytes(blank()), None);
        assert_eq!(probe_bytes(vec![]), None);
        assert_eq!(probe_bytes(vec![0xff; 700]), None);
    }

    #[test]
    fn every_signature_is_recognised() {
        // (kind, [(offset, bytes)]) marks written on a blank device.
        type Marks<'a> = Vec<(usize, &'a [u8])>;
        let cases: Vec<(Kind, Marks)> = vec![
            (Kind::Ext, vec![(1024 + 0x38, &[0x53, 0xEF])]),
            (Kind::Xfs, vec![(0, b"XFSB")]),
            (Kind::Btrfs, vec![(0x10040, b"_BHRfS_M")]),
            (Kind::Squashfs, vec![(0, b"hsqs")]),
            (Kind::Erofs, vec![(1024, &[0xE2, 0xE1, 0xF5, 0xE0])]),
            (Kind::Luks, vec![(0, b"LUKS\xba\xbe")]),
            (Kind::Iso9660, vec![(0x8001, b"CD001")]),
            (Kind::Swap, vec![(4086, b"SWAPSPACE2")]),
            (Kind::Swap, vec![(65526, b"SWAP-SPACE")]),
            (Kind::Gpt, vec![(510, &[0x55, 0xAA]), (512, b"EFI PART")]),
            (Kind::Mbr, vec![(510, &[0x55, 0xAA])]),
            (
                Kind::Vfat,
                vec![
                    (0, &[0xEB, 0x58, 0x90]),
                    (11, &[0, 2]),
                    (82, b"FAT32   "),
                    (510, &[0x55, 0xAA]),
                ],
            ),
            (
                Kind::Vfat,
                vec![
                    (0, &[0xEB, 0x3C, 0x90]),
                    (11, &[0, 2]),
                    (54, b"FAT16   "),
                    (510, &[0x55, 0xAA]),
                ],
            ),
        ];
        for (kind, marks) in cases {
            let mut b = blank();
            for (off, bytes) in &marks {
                put(&mut b, *off, bytes);
            }
            assert_eq!(probe_bytes(b).map(|c| c.kind), Some(kind), "{marks:?}");
        }
    }

    #[test]
    fn a_hybrid_iso_is_an_iso_and_a_fat_boot_sector_is_not_an_mbr() {
        let mut b = blank();
        put(&mut b, 510, &[0x55, 0xAA]);
        put(&mut b, 0x8001, b"CD001");
        assert_eq!(probe_bytes(b).unwrap().kind, Kind::Iso9660);
    }

    #[test]
    fn ext_labels_and_uuids_are_read() {
        let mut b = blank();
        put(&mut b, 1024 + 0x38, &[0x53, 0xEF]);
        put(&mut b, 1024 + 0x68, &(1u8..=16).collect::<Vec<_>>());
        put(&mut b, 1024 + 0x78, b"data\0\0junk");
        let c = probe_bytes(b).unwrap();
        assert_eq!(c.label.as_deref(), Some("data"));
        assert_eq!(
            c.uuid.as_deref(),
            Some("01020304-0506-0708-090a-0b0c0d0e0f10")
        );
        assert_eq!(c.to_string(), "an ext4 filesystem labelled \"data\"");
    }

    #[test]
    fn filesystems_made_by_the_host_tools_are_recognised() {
        let tools: [(&str, &[&str], Kind); 3] = [
            ("mkfs.ext4", &["-q", "-F", "-L", "hostlabel"], Kind::Ext),
            ("mkswap", &["-L", "hostlabel"], Kind::Swap),
            ("mkfs.vfat", &["-n", "HOSTLABEL"], Kind::Vfat),
        ];
        for (tool, args, kind) in tools {
            let file = tempfile::NamedTempFile::new().unwrap();
            file.as_file().set_len(32 << 20).unwrap();
            let run = std::process::Command::new(tool)
                .args(args)
                .arg(file.path())
                .output();
            let Ok(out) = run else {
                osbuild_test_skip::skip(&format!("{tool} is not installed"));
                continue;
            };
            assert!(out.status.success(), "{tool}: {out:?}");
            let c = probe(&mut std::fs::File::open(file.path()).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(c.kind, kind, "{tool}");
            assert_eq!(
                c.label.map(|l| l.to_lowercase()).as_deref(),
                Some("hostlabel"),
                "{tool}"
            );
        }
    }
}
