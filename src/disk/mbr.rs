//! The MBR partition table: four 16-byte entries at byte 446, the disk signature at 440 and
//! 0x55AA at 510. The boot code (bytes 0..440) is the caller's: the table is written around
//! it. CHS fields follow a geometry (255 heads and 63 sectors a track for disks, as
//! partitioning tools use; 64 and 32 for hybrid ISOs, as isohybrid does), with the
//! conventional maximum beyond cylinder 1023; BIOS loaders read by LBA.

/// Bytes of boot code before the disk signature.
pub const CODE_LEN: usize = 440;
/// Where the partition table starts.
const TABLE: usize = 446;

/// The CHS geometry the entries' CHS fields are computed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Heads per cylinder.
    pub heads: u64,
    /// Sectors per track.
    pub sectors: u64,
}

/// The geometry partitioning tools give disks: 255 heads, 63 sectors a track.
pub const DISK: Geometry = Geometry {
    heads: 255,
    sectors: 63,
};

/// Partition type of a FAT12 volume.
pub const FAT12: u8 = 0x01;
/// Partition type of a FAT16 volume reached by LBA.
pub const FAT16_LBA: u8 = 0x0E;
/// Partition type of a FAT32 volume reached by LBA.
pub const FAT32_LBA: u8 = 0x0C;

/// The partition type of a FAT volume of `kind`.
pub fn fat_type(kind: super::fat::FatKind) -> u8 {
    match kind {
        super::fat::FatKind::Fat12 => FAT12,
        super::fat::FatKind::Fat16 => FAT16_LBA,
        super::fat::FatKind::Fat32 => FAT32_LBA,
    }
}

/// One primary partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MbrPartition {
    /// The boot flag (0x80).
    pub active: bool,
    /// The partition type byte.
    pub kind: u8,
    /// Its first 512-byte sector.
    pub first_lba: u32,
    /// Its length in sectors.
    pub sectors: u32,
}

/// The CHS bytes (head, sector | cylinder high bits, cylinder low bits) of sector `lba`.
pub fn chs(lba: u64, g: Geometry) -> [u8; 3] {
    let c = lba / (g.heads * g.sectors);
    if c > 1023 {
        return [0xFE, 0xFF, 0xFF];
    }
    let h = (lba / g.sectors) % g.heads;
    let s = lba % g.sectors + 1;
    [h as u8, (s as u8) | ((c >> 2) as u8 & 0xC0), c as u8]
}

fn entry(p: &MbrPartition, g: Geometry) -> [u8; 16] {
    let mut e = [0u8; 16];
    let first = u64::from(p.first_lba);
    let last = first + u64::from(p.sectors.max(1)) - 1;
    e[0] = if p.active { 0x80 } else { 0 };
    e[1..4].copy_from_slice(&chs(first, g));
    e[4] = p.kind;
    e[5..8].copy_from_slice(&chs(last, g));
    e[8..12].copy_from_slice(&p.first_lba.to_le_bytes());
    e[12..16].copy_from_slice(&p.sectors.to_le_bytes());
    e
}

/// Write the disk signature, the partitions (the first four) and the boot signature into
/// `sector`, keeping its boot code (bytes 0..440); CHS fields in geometry `g`.
pub fn write_table(
    sector: &mut [u8; 512],
    signature: u32,
    partitions: &[MbrPartition],
    g: Geometry,
) {
    sector[CODE_LEN..CODE_LEN + 4].copy_from_slice(&signature.to_le_bytes());
    sector[CODE_LEN + 4..CODE_LEN + 6].fill(0);
    sector[TABLE..510].fill(0);
    for (i, p) in partitions.iter().take(4).enumerate() {
        sector[TABLE + 16 * i..TABLE + 16 * (i + 1)].copy_from_slice(&entry(p, g));
    }
    sector[510] = 0x55;
    sector[511] = 0xAA;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chs_fields() {
        assert_eq!(chs(0, DISK), [0, 1, 0]);
        assert_eq!(chs(2048, DISK), [32, 33, 0]);
        // The last sector of cylinder 0 and the first of cylinder 1.
        assert_eq!(chs(255 * 63 - 1, DISK), [254, 63, 0]);
        assert_eq!(chs(255 * 63, DISK), [0, 1, 1]);
        // Cylinder 256: its ninth bit goes into the sector byte's top bits.
        assert_eq!(chs(255 * 63 * 256, DISK), [0, 1 | 0x40, 0]);
        assert_eq!(chs(255 * 63 * 1024, DISK), [0xFE, 0xFF, 0xFF]);
    }

    #[test]
    fn layout_of_the_table() {
        let mut s = [0xABu8; 512];
        write_table(
            &mut s,
            0x1234_5678,
            &[MbrPartition {
                active: true,
                kind: FAT16_LBA,
                first_lba: 2048,
                sectors: 62_464,
            }],
            DISK,
        );
        assert!(s[..CODE_LEN].iter().all(|&b| b == 0xAB), "boot code kept");
        assert_eq!(&s[440..446], &[0x78, 0x56, 0x34, 0x12, 0, 0]);
        assert_eq!(s[446], 0x80, "active");
        assert_eq!(&s[447..450], &chs(2048, DISK));
        assert_eq!(s[450], 0x0E);
        assert_eq!(&s[451..454], &chs(2048 + 62_464 - 1, DISK));
        assert_eq!(&s[454..458], &2048u32.to_le_bytes());
        assert_eq!(&s[458..462], &62_464u32.to_le_bytes());
        assert!(s[462..510].iter().all(|&b| b == 0), "other entries empty");
        assert_eq!(&s[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn fat_types() {
        use crate::disk::fat::FatKind;
        assert_eq!(fat_type(FatKind::Fat12), 0x01);
        assert_eq!(fat_type(FatKind::Fat16), 0x0E);
        assert_eq!(fat_type(FatKind::Fat32), 0x0C);
    }
}
