//! GUID partition tables, through the `gpt` crate: the protective MBR, the primary and backup
//! headers and entry arrays with their CRCs, partitions aligned to 1 MiB, and GUIDs chosen by
//! the caller (derived from content, see [`super::ids`]) so the table is reproducible.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};

use gpt::GptConfig;
use gpt::disk::LogicalBlockSize;
use gpt::mbr::ProtectiveMBR;
use gpt::partition_types::{OperatingSystem, Type};

use super::{ALIGN, DiskError, SECTOR};

/// The EFI system partition type.
pub const ESP_TYPE: uuid::Uuid = uuid::uuid!("C12A7328-F81F-11D2-BA4B-00A0C93EC93B");

/// Sectors at the end of a disk taken by the backup entry array (16 KiB) and header.
const BACKUP_SECTORS: u64 = 33;

/// One partition of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// Its type.
    pub type_guid: uuid::Uuid,
    /// Its own GUID (PARTUUID).
    pub guid: uuid::Uuid,
    /// First sector.
    pub first_lba: u64,
    /// Last sector (inclusive).
    pub last_lba: u64,
    /// Its label.
    pub name: String,
    /// Attribute bits.
    pub attributes: u64,
}

impl Partition {
    /// Its start in bytes.
    pub fn start(&self) -> u64 {
        self.first_lba * SECTOR
    }

    /// Its size in bytes.
    pub fn len(&self) -> u64 {
        (self.last_lba + 1 - self.first_lba) * SECTOR
    }

    /// Whether it has no sectors (never true of a valid partition).
    pub fn is_empty(&self) -> bool {
        self.last_lba < self.first_lba
    }
}

/// The bytes a disk needs around partitions of `partitions_bytes` in total, each aligned: the
/// first MiB (protective MBR, header, entries, alignment) and the last MiB (backup).
pub const OVERHEAD: u64 = 2 * ALIGN;

/// The aligned region partitions may use on a disk of `disk_size` bytes: (first LBA, last
/// LBA), leaving the first MiB and the backup table at the end.
pub fn usable(disk_size: u64) -> Option<(u64, u64)> {
    let first = ALIGN / SECTOR;
    let last_usable = (disk_size / SECTOR).checked_sub(BACKUP_SECTORS + 2)?;
    let last = (last_usable + 1) / (ALIGN / SECTOR) * (ALIGN / SECTOR);
    (last > first).then(|| (first, last - 1))
}

/// Partition entries in a table (its 16 KiB entry array).
const MAX_PARTITIONS: usize = 128;

/// UTF-16 code units in a partition name.
const NAME_UNITS: usize = 36;

/// Check that `partitions` fit a table on a disk of `total` sectors: each inside the usable
/// area (after the primary entry array, before the backup), none empty, none overlapping,
/// names that the entry holds whole, types that do not mark an entry unused.
fn check_partitions(total: u64, partitions: &[Partition]) -> Result<(), DiskError> {
    let bad = |i: usize, why: String| {
        DiskError::Unrepresentable(format!("GPT partition {}: {why}", i + 1))
    };
    // LBA 0 is the protective MBR, 1 the header, 2..34 the entries; the backup mirrors it.
    let first_usable = 2 + BACKUP_SECTORS - 1;
    let last_usable = total.saturating_sub(BACKUP_SECTORS + 1);
    if last_usable < first_usable {
        return Err(DiskError::TooSmall {
            what: "a GPT disk".into(),
            needed: (2 * BACKUP_SECTORS + 2) * SECTOR,
            available: total * SECTOR,
        });
    }
    if partitions.len() > MAX_PARTITIONS {
        return Err(DiskError::Unrepresentable(format!(
            "{} partitions; a GPT holds {MAX_PARTITIONS}",
            partitions.len()
        )));
    }
    let mut ranges = Vec::new();
    for (i, p) in partitions.iter().enumerate() {
        if p.first_lba > p.last_lba {
            return Err(bad(
                i,
                format!("first sector {} after its last {}", p.first_lba, p.last_lba),
            ));
        }
        if p.first_lba < first_usable || p.last_lba > last_usable {
            return Err(bad(
                i,
                format!(
                    "sectors {}..={} outside the usable {first_usable}..={last_usable}",
                    p.first_lba, p.last_lba
                ),
            ));
        }
        if p.type_guid.is_nil() {
            return Err(bad(i, "the nil type GUID marks an entry unused".into()));
        }
        if p.name.encode_utf16().count() > NAME_UNITS || p.name.contains('\0') {
            return Err(bad(
                i,
                format!(
                    "name {:?} is not up to {NAME_UNITS} UTF-16 units without NUL",
                    p.name
                ),
            ));
        }
        ranges.push((p.first_lba, p.last_lba, i));
    }
    ranges.sort_unstable();
    for w in ranges.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(bad(w[1].2, format!("overlaps partition {}", w[0].2 + 1)));
        }
    }
    Ok(())
}

/// Write a GPT with `partitions` onto `device` (already as large as the disk), identified by
/// `disk_guid`. Partitions outside the usable area, overlapping, or with names or types an
/// entry cannot hold are refused.
pub fn write_gpt<D: Read + Write + Seek + std::fmt::Debug>(
    device: &mut D,
    disk_guid: uuid::Uuid,
    partitions: &[Partition],
) -> Result<(), DiskError> {
    let gpt_err = |e: gpt::GptError| DiskError::Unrepresentable(format!("GPT: {e}"));
    let total = device
        .seek(std::io::SeekFrom::End(0))
        .map_err(|e| DiskError::io("measuring the disk", e))?
        / SECTOR;
    check_partitions(total, partitions)?;
    let mbr = ProtectiveMBR::with_lb_size(u32::try_from(total - 1).unwrap_or(u32::MAX));
    mbr.overwrite_lba0(device)
        .map_err(|e| DiskError::Unrepresentable(format!("protective MBR: {e}")))?;
    let mut disk = GptConfig::new()
        .writable(true)
        .logical_block_size(LogicalBlockSize::Lb512)
        .create_from_device(&mut *device, Some(disk_guid))
        .map_err(gpt_err)?;
    let mut table = BTreeMap::new();
    for (i, p) in partitions.iter().enumerate() {
        table.insert(
            i as u32 + 1,
            gpt::partition::Partition {
                part_type_guid: Type {
                    guid: p.type_guid,
                    os: OperatingSystem::None,
                },
                part_guid: p.guid,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                flags: p.attributes,
                name: p.name.clone(),
            },
        );
    }
    disk.update_partitions(table).map_err(gpt_err)?;
    disk.write().map_err(gpt_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn round_trips_through_the_reader() {
        let size = 8 << 20;
        let (first, last) = usable(size).unwrap();
        assert_eq!((first, last), (2048, 14335));
        let part = Partition {
            type_guid: ESP_TYPE,
            guid: uuid::uuid!("11111111-2222-8333-9444-555555555555"),
            first_lba: first,
            last_lba: last,
            name: "ESP".into(),
            attributes: 0,
        };
        let mut dev = Cursor::new(vec![0u8; size as usize]);
        let guid = uuid::uuid!("aaaaaaaa-bbbb-8ccc-9ddd-eeeeeeeeeeee");
        write_gpt(&mut dev, guid, std::slice::from_ref(&part)).unwrap();
        let bytes = dev.get_ref().clone();
        assert_eq!(&bytes[510..512], &[0x55, 0xAA]);
        assert_eq!(bytes[450], 0xEE);
        assert_eq!(&bytes[512..520], b"EFI PART");
        let back = GptConfig::new()
            .writable(false)
            .open_from_device(Cursor::new(bytes))
            .unwrap();
        assert_eq!(*back.guid(), guid);
        let p = &back.partitions()[&1];
        assert_eq!(
            (p.first_lba, p.last_lba, p.part_guid),
            (first, last, part.guid)
        );
        assert_eq!(p.part_type_guid.guid, ESP_TYPE);
        assert_eq!(back.primary_header().unwrap().num_parts, 128);
    }

    #[test]
    fn partitions_an_entry_cannot_hold_are_refused() {
        let size = 8u64 << 20;
        let total = size / SECTOR;
        let ok = Partition {
            type_guid: ESP_TYPE,
            guid: uuid::uuid!("11111111-2222-8333-9444-555555555555"),
            first_lba: 34,
            last_lba: total - 34,
            name: "x".repeat(36),
            attributes: 0,
        };
        let write = |parts: &[Partition], size: u64| {
            write_gpt(
                &mut Cursor::new(vec![0u8; size as usize]),
                uuid::Uuid::nil(),
                parts,
            )
        };
        write(std::slice::from_ref(&ok), size).unwrap();
        let with = |f: &dyn Fn(&mut Partition)| {
            let mut p = ok.clone();
            f(&mut p);
            write(&[p], size).unwrap_err().to_string()
        };
        assert!(with(&|p| p.first_lba = 33).contains("outside the usable 34..="));
        assert!(with(&|p| p.last_lba = total - 33).contains("outside the usable"));
        assert!(with(&|p| p.first_lba = p.last_lba + 1).contains("after its last"));
        assert!(with(&|p| p.name.push('y')).contains("is not up to 36 UTF-16 units"));
        assert!(with(&|p| p.name = "a\0b".into()).contains("without NUL"));
        assert!(with(&|p| p.type_guid = uuid::Uuid::nil()).contains("nil type"));
        // Two partitions sharing one sector, then side by side.
        let mut first = ok.clone();
        first.last_lba = total - 35;
        let mut second = ok.clone();
        second.first_lba = total - 35;
        let err = write(&[first.clone(), second.clone()], size).unwrap_err();
        assert_eq!(err.to_string(), "GPT partition 2: overlaps partition 1");
        second.first_lba = total - 34;
        write(&[first, second], size).unwrap();
        assert!(write(&vec![ok.clone(); 129], size).is_err());
        // Disks too small for the two tables, down to none at all: an error, not a panic.
        for bytes in [0, 511, 512, 34 * 512, 67 * 512] {
            let err = write(&[], bytes).unwrap_err();
            assert!(matches!(err, DiskError::TooSmall { .. }), "{bytes}: {err}");
        }
    }

    #[test]
    fn tiny_disks_have_no_room() {
        assert!(usable(1 << 20).is_none());
        assert!(usable(0).is_none());
    }
}
