//! The hybrid MBR in the system area, so that the image also boots as a disk: isolinux's
//! `isohdpfx.bin` code patched with the boot file's address, a disk signature, partition 1
//! active over the whole image and optionally an 0xEF partition over the EFI image.

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

/// CHS bytes of a 512-byte sector address; beyond cylinder 1023 the conventional maximum.
fn chs(lba: u64) -> [u8; 3] {
    let c = lba / (HEADS * SECTORS);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / SECTORS) % HEADS;
    let s = lba % SECTORS + 1;
    [h as u8, (s as u8) | ((c >> 2) as u8 & 0xC0), c as u8]
}

fn partition(active: bool, kind: u8, start: u64, count: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    let count = count.min(u64::from(u32::MAX));
    p[0] = if active { 0x80 } else { 0 };
    p[1..4].copy_from_slice(&chs(start));
    p[4] = kind;
    p[5..8].copy_from_slice(&chs(start + count.max(1) - 1));
    p[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    p[12..16].copy_from_slice(&(count as u32).to_le_bytes());
    p
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
    b[440..444].copy_from_slice(&m.signature.to_le_bytes());
    let kind = if m.efi.is_some() { 0x00 } else { 0x17 };
    b[446..462].copy_from_slice(&partition(true, kind, 0, m.total_bytes / 512));
    if let Some((lba, len)) = m.efi {
        let entry = partition(false, 0xEF, u64::from(lba) * 4, len.div_ceil(512));
        b[462..478].copy_from_slice(&entry);
    }
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_fields() {
        assert_eq!(chs(0), [0, 1, 0]);
        assert_eq!(chs(2047), [63, 32, 0]);
        assert_eq!(chs(2048 * 300 - 1), [63, 32 | 0x40, 43]);
        assert_eq!(chs(2048 * 2000), [0xFE, 0xFF, 0xFF]);
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
