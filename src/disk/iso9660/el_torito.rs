//! El Torito: the boot record volume descriptor, the boot catalog (BIOS and EFI entries,
//! no emulation) and the boot info table patched into a BIOS boot file.

use super::volume::{PVD_SECTOR, SECTOR};

/// Platform ID of x86 BIOS.
pub(crate) const PLATFORM_BIOS: u8 = 0x00;
/// Platform ID of UEFI.
pub(crate) const PLATFORM_EFI: u8 = 0xEF;
/// Offset of isolinux.bin's hybrid signature, checked before an MBR points at it.
pub(crate) const ISOLINUX_SIGNATURE_AT: usize = 64;
/// isolinux.bin's hybrid signature (isolinux-debug.bin lacks it).
pub(crate) const ISOLINUX_SIGNATURE: [u8; 4] = [0xFB, 0xC0, 0x78, 0x70];

/// One bootable image of the catalog.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Entry {
    /// Platform ID (0x00 BIOS, 0xEF EFI).
    pub platform: u8,
    /// Virtual (512-byte) sectors the firmware loads.
    pub sectors: u16,
    /// The image's first sector.
    pub lba: u32,
}

/// The boot record volume descriptor pointing at the catalog in sector `catalog_lba`.
pub(crate) fn boot_record(catalog_lba: u32) -> Vec<u8> {
    let mut d = vec![0u8; SECTOR];
    d[1..6].copy_from_slice(b"CD001");
    d[6] = 1;
    d[7..30].copy_from_slice(b"EL TORITO SPECIFICATION");
    d[71..75].copy_from_slice(&catalog_lba.to_le_bytes());
    d
}

/// A 32-byte no-emulation boot entry (initial/default or section entry).
fn boot_entry(e: &Entry) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[0] = 0x88; // bootable
    // b[1] = 0: no emulation; b[2..4] = 0: load segment 0x7C0; b[4] = 0: system type.
    b[6..8].copy_from_slice(&e.sectors.to_le_bytes());
    b[8..12].copy_from_slice(&e.lba.to_le_bytes());
    b
}

/// The boot catalog sector: validation entry for the first entry's platform, that entry as
/// initial/default entry, then one section (header + entry) per further entry, the last
/// section header marked final.
pub(crate) fn catalog(entries: &[Entry]) -> Vec<u8> {
    let mut c = vec![0u8; SECTOR];
    let Some(first) = entries.first() else {
        return c;
    };
    c[0] = 1;
    c[1] = first.platform;
    c[30] = 0x55;
    c[31] = 0xAA;
    let sum = c[..32].chunks(2).fold(0u16, |s, w| {
        s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
    });
    c[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
    c[32..64].copy_from_slice(&boot_entry(first));
    let rest = &entries[1..];
    for (i, e) in rest.iter().enumerate() {
        let at = 64 + i * 64;
        c[at] = if i + 1 == rest.len() { 0x91 } else { 0x90 };
        c[at + 1] = e.platform;
        c[at + 2..at + 4].copy_from_slice(&1u16.to_le_bytes());
        c[at + 32..at + 64].copy_from_slice(&boot_entry(e));
    }
    c
}

/// The sector count of an EFI entry: the image in 512-byte units, at most 0xFFFF (firmware
/// reads the FAT image's own size beyond that, as with xorriso).
pub(crate) fn efi_sectors(len: u64) -> u16 {
    len.div_ceil(512).min(0xFFFF) as u16
}

/// Write the boot info table (mkisofs `-boot-info-table`) into bytes 8..64 of `file`, the
/// BIOS boot file at sector `lba`: the PVD's sector, the file's sector, its length, the
/// 32-bit sum of its little-endian words from byte 64, then 40 zero bytes. `file` must be at
/// least 64 bytes long.
pub(crate) fn patch_boot_info_table(file: &mut [u8], lba: u32) {
    if file.len() < 64 {
        return;
    }
    let sum = file[64..].chunks(4).fold(0u32, |s, w| {
        let mut word = [0u8; 4];
        word[..w.len()].copy_from_slice(w);
        s.wrapping_add(u32::from_le_bytes(word))
    });
    let len = file.len() as u32;
    file[8..12].copy_from_slice(&PVD_SECTOR.to_le_bytes());
    file[12..16].copy_from_slice(&lba.to_le_bytes());
    file[16..20].copy_from_slice(&len.to_le_bytes());
    file[20..24].copy_from_slice(&sum.to_le_bytes());
    file[24..64].fill(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_validation_entry_sums_to_zero() {
        let bios = Entry {
            platform: PLATFORM_BIOS,
            sectors: 4,
            lba: 40,
        };
        let efi = Entry {
            platform: PLATFORM_EFI,
            sectors: 2880,
            lba: 50,
        };
        let c = catalog(&[bios, efi]);
        let sum = c[..32].chunks(2).fold(0u16, |s, w| {
            s.wrapping_add(u16::from_le_bytes([w[0], w[1]]))
        });
        assert_eq!(sum, 0);
        assert_eq!((c[0], c[1], c[30], c[31]), (1, 0, 0x55, 0xAA));
        assert_eq!(&c[32..44], &[0x88, 0, 0, 0, 0, 0, 4, 0, 40, 0, 0, 0]);
        assert_eq!(&c[64..68], &[0x91, 0xEF, 1, 0]);
        assert_eq!(&c[96..108], &[0x88, 0, 0, 0, 0, 0, 0x40, 0x0B, 50, 0, 0, 0]);
        assert!(c[128..].iter().all(|&b| b == 0));
        let only_efi = catalog(&[efi]);
        assert_eq!(only_efi[1], 0xEF);
        assert!(only_efi[64..].iter().all(|&b| b == 0));
    }

    #[test]
    fn efi_sector_count_caps() {
        assert_eq!(efi_sectors(1), 1);
        assert_eq!(efi_sectors(1_474_560), 2880);
        assert_eq!(efi_sectors(64 << 20), 0xFFFF);
    }

    #[test]
    fn boot_info_table() {
        let mut f: Vec<u8> = (0..70u8).collect();
        patch_boot_info_table(&mut f, 33);
        assert_eq!(&f[..8], &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(&f[8..20], &[16, 0, 0, 0, 33, 0, 0, 0, 70, 0, 0, 0]);
        let sum = u32::from_le_bytes([64, 65, 66, 67]) + u32::from_le_bytes([68, 69, 0, 0]);
        assert_eq!(&f[20..24], &sum.to_le_bytes());
        assert!(f[24..64].iter().all(|&b| b == 0));
        assert_eq!(&f[64..], &[64, 65, 66, 67, 68, 69]);
    }
}
