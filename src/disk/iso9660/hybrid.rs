//! The hybrid MBR in the system area, so that the image also boots as a disk: isolinux's
//! `isohdpfx.bin` code patched with the boot file's address, a disk signature, partition 1
//! active over the whole image and optionally an 0xEF partition over the EFI image.

use crate::disk::mbr::{Geometry, MbrPartition, write_table};

/// Disk geometry of the partition entries' CHS fields (as isohybrid's defaults).
const HEADS: u64 = 64;
const SECTORS: u64 = 32;
/// A hybrid image is padded to whole cylinders of that geometry: 64 * 32 * 512 bytes = 1 MiB,
/// which is what isohybrid does and what USB sticks and partitioning tools expect.
pub(crate) const ALIGN: u64 = HEADS * SECTORS * 512;
/// Bytes of boot code before the boot file address and the disk signature.
pub(crate) const CODE_MAX: usize = 432;

/// What goes in the MBR.
pub(crate) struct Mbr<'a> {
    /// Boot code (isohdpfx.bin), at most [`CODE_MAX`] bytes.
    pub code: Option<&'a [u8]>,
    /// Sector (2048 bytes) of the BIOS boot file (isolinux.bin) the code loads.
    pub bios_lba: Option<u32>,
    /// The whole image's size in bytes (a multiple of [`ALIGN`]).
    pub total_bytes: u64,
    /// The EFI image's first sector (2048 bytes) and length in bytes, for an 0xEF partition.
    pub efi: Option<(u32, u64)>,
    /// The disk signature.
    pub signature: u32,
}

/// The geometry of the entries' CHS fields.
const GEOMETRY: Geometry = Geometry {
    heads: HEADS,
    sectors: SECTORS,
};

/// A partition from `start` over `count` 512-byte sectors.
fn partition(active: bool, kind: u8, start: u64, count: u64) -> MbrPartition {
    MbrPartition {
        active,
        kind,
        first_lba: u32::try_from(start).unwrap_or(u32::MAX),
        sectors: u32::try_from(count).unwrap_or(u32::MAX),
    }
}

/// The 512-byte MBR. Partition 1 is active and starts at 0, as isohybrid writes it: type 0x17
/// normally, type 0x00 when an EFI partition follows (UEFI firmware rejects an MBR whose
/// partitions overlap, and skips type-0 entries), which is what `isohybrid --uefi` does.
pub(crate) fn mbr(m: &Mbr<'_>) -> [u8; 512] {
    let mut b = [0u8; 512];
    if let Some(code) = m.code {
        let n = code.len().min(CODE_MAX);
        b[..n].copy_from_slice(&code[..n]);
    }
    if let Some(lba) = m.bios_lba {
        // The code reads isolinux.bin from this 512-byte sector address.
        b[432..436].copy_from_slice(&(lba.saturating_mul(4)).to_le_bytes());
    }
    let kind = if m.efi.is_some() { 0x00 } else { 0x17 };
    let mut parts = vec![partition(true, kind, 0, m.total_bytes / 512)];
    if let Some((lba, len)) = m.efi {
        parts.push(partition(
            false,
            0xEF,
            u64::from(lba) * 4,
            len.div_ceil(512),
        ));
    }
    write_table(&mut b, m.signature, &parts, GEOMETRY);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::mbr::chs;

    #[test]
    fn chs_fields() {
        assert_eq!(chs(0, GEOMETRY), [0, 1, 0]);
        assert_eq!(chs(2047, GEOMETRY), [63, 32, 0]);
        assert_eq!(chs(2048 * 300 - 1, GEOMETRY), [63, 32 | 0x40, 43]);
        assert_eq!(chs(2048 * 2000, GEOMETRY), [0xFE, 0xFF, 0xFF]);
    }

    #[test]
    fn layout_of_the_mbr() {
        let code = vec![0xAB; CODE_MAX];
        let b = mbr(&Mbr {
            code: Some(&code),
            bios_lba: Some(35),
            total_bytes: 4 << 20,
            efi: Some((40, 1_474_560)),
            signature: 0x1234_5678,
        });
        assert!(b[..432].iter().all(|&x| x == 0xAB));
        assert_eq!(&b[432..436], &140u32.to_le_bytes());
        assert_eq!(&b[440..444], &0x1234_5678u32.to_le_bytes());
        assert_eq!(&b[446..450], &[0x80, 0, 1, 0]);
        assert_eq!(b[450], 0x00);
        assert_eq!(&b[454..462], &[0, 0, 0, 0, 0, 0x20, 0, 0]);
        assert_eq!(&b[462..467], &[0, 5, 1, 0, 0xEF]);
        assert_eq!(&b[470..478], &[160, 0, 0, 0, 0x40, 0x0B, 0, 0]);
        assert_eq!(&b[510..], &[0x55, 0xAA]);
        let plain = mbr(&Mbr {
            code: None,
            bios_lba: None,
            total_bytes: 1 << 20,
            efi: None,
            signature: 1,
        });
        assert_eq!(plain[450], 0x17);
        assert!(plain[462..510].iter().all(|&x| x == 0));
    }
}
