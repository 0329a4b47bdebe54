//! VHD (Microsoft "Virtual Hard Disk Image Format Specification" 1.0), fixed and dynamic.
//!
//! Every VHD ends with a 512-byte big-endian footer: the cookie `conectix`, the disk's size
//! (original and current), a CHS geometry, the disk type, a unique id and a checksum.
//!
//! - **Fixed** (disk type 2, what Azure takes): the raw disk's bytes as they are, then the
//!   footer. Blocks of zeros are left as holes, so the file is sparse on disk.
//! - **Dynamic** (disk type 3): a copy of the footer at offset 0, the 1024-byte dynamic disk
//!   header (`cxsparse`) at 512, the block allocation table (BAT) at 1536 with one big-endian
//!   `u32` sector offset per 2 MiB block (`0xFFFFFFFF`: not stored, reads as zeros) padded to a
//!   sector, then each block holding data (a 512-byte sector bitmap of all ones and its 2 MiB),
//!   in disk order, and the footer last.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use uuid::Uuid;

use super::RawDisk;
use crate::disk::{DiskError, SECTOR, round_up};

/// The largest virtual size a VHD holds (2040 GiB).
pub const MAX_SIZE: u64 = 2040 << 30;

const MIB: u64 = 1 << 20;
/// Bytes in the footer.
const FOOTER_LEN: u64 = 512;
/// Bytes in the dynamic disk header.
const DYNAMIC_HEADER_LEN: u64 = 1024;
/// Where the BAT of a dynamic VHD starts: after the footer copy and the dynamic header.
const BAT_OFFSET: u64 = FOOTER_LEN + DYNAMIC_HEADER_LEN;
/// Bytes of disk a dynamic VHD block holds.
const BLOCK: u64 = 2 << 20;
/// A block's sector bitmap: one bit per sector of the block, padded to a sector.
const BITMAP_LEN: u64 = 512;
/// A BAT entry for a block that is not stored.
const UNALLOCATED: u32 = 0xFFFF_FFFF;
/// The granularity at which a fixed VHD skips blocks of zeros.
const FIXED_CHUNK: u64 = 64 << 10;
/// 2000-01-01T00:00:00Z, the VHD timestamps' epoch, as a Unix time.
const VHD_EPOCH: i64 = 946_684_800;

/// The footer's creator application. qemu (`block/vpc.c`) takes a VHD's size from the CHS
/// geometry, which rounds most sizes down, when the creator application is "vpc " or "qemu";
/// since qemu 10.0 every other creator application gets the footer's current size, which is
/// exact. Before 10.0 only a fixed list did ("win ", "qem2", "d2v ", "tap\0", "CTXS"), so an
/// older qemu reads these images a little short unless it is given
/// `force_size_calc=current_size`. We write our own name rather than pretend to be Hyper-V or
/// qemu; Azure, Hyper-V and AWS use the current size whatever the creator application says.
const CREATOR_APP: &[u8; 4] = b"osbd";
/// The creator application's version (major.minor in two big-endian `u16`s): 0.1.
const CREATOR_VERSION: u32 = 0x0000_0001;
/// The creator host OS: the specification names only "Wi2k" (Windows) and "Mac "; every
/// writer on other systems uses "Wi2k", as readers expect.
const CREATOR_HOST_OS: &[u8; 4] = b"Wi2k";

/// The footer's disk type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DiskType {
    Fixed = 2,
    Dynamic = 3,
}

/// Refuse a size Azure would reject or a VHD cannot hold: not a whole number of MiB, zero, or
/// above [`MAX_SIZE`]. The message is one line that says what to use instead.
pub fn check_size(size: u64) -> Result<(), String> {
    if size == 0 {
        return Err("a VHD cannot be empty: use a size of at least 1M".into());
    }
    if size > MAX_SIZE {
        return Err(format!(
            "a VHD holds at most 2040G ({MAX_SIZE} bytes) and {size} bytes is more: \
             use 2040G or less, or a VHDX (up to 64T)"
        ));
    }
    if !size.is_multiple_of(MIB) {
        let down = size / MIB;
        let up = size.div_ceil(MIB);
        let choice = if down == 0 {
            format!("{up}M")
        } else {
            format!("{down}M or {up}M")
        };
        return Err(format!(
            "a VHD's size must be a whole number of MiB (Azure rejects any other) and \
             {size} bytes is not: use {choice}"
        ));
    }
    Ok(())
}

/// The CHS geometry (cylinders, heads, sectors per track) of a disk of `size` bytes, by the
/// algorithm of the VHD specification (appendix "CHS Calculation"). Its product is at most the
/// number of sectors, and is capped at 65535 × 16 × 255 sectors (about 127 GiB).
pub(crate) fn geometry(size: u64) -> (u16, u8, u8) {
    let total = (size / SECTOR).min(65535 * 16 * 255);
    let (sectors, heads, cylinders_times_heads) = if total >= 65535 * 16 * 63 {
        (255, 16, total / 255)
    } else {
        let mut sectors = 17;
        let mut cylinders_times_heads = total / sectors;
        let mut heads = cylinders_times_heads.div_ceil(1024).max(4);
        if cylinders_times_heads >= heads * 1024 || heads > 16 {
            sectors = 31;
            heads = 16;
            cylinders_times_heads = total / sectors;
        }
        if cylinders_times_heads >= heads * 1024 {
            sectors = 63;
            heads = 16;
            cylinders_times_heads = total / sectors;
        }
        (sectors, heads, cylinders_times_heads)
    };
    // Every value is bounded by the cap above: cylinders ≤ 65535, heads ≤ 16, sectors ≤ 255.
    let cylinders = u16::try_from(cylinders_times_heads / heads).unwrap_or(u16::MAX);
    (cylinders, heads as u8, sectors as u8)
}

/// One's complement of the sum of `bytes` (the footer's and dynamic header's checksum, computed
/// with the checksum field zero).
fn checksum(bytes: &[u8]) -> u32 {
    !bytes
        .iter()
        .fold(0u32, |sum, b| sum.wrapping_add(u32::from(*b)))
}

/// The VHD timestamp of a Unix time: seconds since 2000-01-01, clamped to what a `u32` holds.
fn timestamp(mtime: i64) -> u32 {
    u32::try_from(
        mtime
            .saturating_sub(VHD_EPOCH)
            .clamp(0, i64::from(u32::MAX)),
    )
    .unwrap_or(u32::MAX)
}

/// The 512-byte footer of a VHD of `size` bytes.
fn footer(size: u64, kind: DiskType, id: Uuid, mtime: i64) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    // Features: bit 1 "reserved", always set.
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    let data_offset = match kind {
        DiskType::Fixed => u64::MAX,
        DiskType::Dynamic => FOOTER_LEN,
    };
    f[16..24].copy_from_slice(&data_offset.to_be_bytes());
    f[24..28].copy_from_slice(&timestamp(mtime).to_be_bytes());
    f[28..32].copy_from_slice(CREATOR_APP);
    f[32..36].copy_from_slice(&CREATOR_VERSION.to_be_bytes());
    f[36..40].copy_from_slice(CREATOR_HOST_OS);
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (cylinders, heads, sectors) = geometry(size);
    f[56..58].copy_from_slice(&cylinders.to_be_bytes());
    f[58] = heads;
    f[59] = sectors;
    f[60..64].copy_from_slice(&(kind as u32).to_be_bytes());
    f[68..84].copy_from_slice(id.as_bytes());
    // Saved state (byte 84) and the reserved rest stay zero.
    let sum = checksum(&f);
    f[64..68].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The 1024-byte dynamic disk header for a BAT of `entries` entries at [`BAT_OFFSET`].
fn dynamic_header(entries: u32) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(b"cxsparse");
    // Data offset: unused, all ones.
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&BAT_OFFSET.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    h[28..32].copy_from_slice(&entries.to_be_bytes());
    h[32..36].copy_from_slice(&(BLOCK as u32).to_be_bytes());
    // No parent: parent id, time stamp, name and locators stay zero.
    let sum = checksum(&h);
    h[36..40].copy_from_slice(&sum.to_be_bytes());
    h
}

/// Call `each` with every `block`-byte block of `raw` holding data, in order (see
/// [`RawDisk::for_each_block`]); an error says whether reading the raw disk or writing `what`
/// failed.
pub(super) fn copy_blocks(
    raw: &RawDisk<'_>,
    block: u64,
    what: &str,
    mut each: impl FnMut(u64, &[u8]) -> io::Result<()>,
) -> Result<(), DiskError> {
    let mut failed = None;
    let read = raw.for_each_block(block, |index, bytes| {
        each(index, bytes).map_err(|e| {
            let kind = e.kind();
            failed = Some(e);
            io::Error::from(kind)
        })
    });
    if let Some(e) = failed {
        return Err(DiskError::io(format!("writing {what}"), e));
    }
    read.map_err(|e| DiskError::io("reading the raw disk", e))
}

/// The size of `raw`, refused with [`check_size`]'s message when a VHD cannot hold it.
fn vhd_size(raw: &RawDisk<'_>) -> Result<u64, DiskError> {
    check_size(raw.size()).map_err(DiskError::Unrepresentable)?;
    Ok(raw.size())
}

/// Fixed VHD: the raw disk followed by the 512-byte footer. Zero blocks are not written (the
/// output file stays sparse: seek over them, set_len at the end). `id`: the footer's unique id;
/// `mtime`: Unix time for the footer's timestamp (seconds since 2000-01-01, clamped to
/// 0..u32::MAX). Returns the file's length.
///
/// The size must pass [`check_size`]. `out` is truncated first.
pub fn write_fixed(
    raw: &RawDisk<'_>,
    out: &mut File,
    id: Uuid,
    mtime: i64,
) -> Result<u64, DiskError> {
    const WHAT: &str = "the fixed VHD";
    let size = vhd_size(raw)?;
    let fail = |e| DiskError::io(format!("writing {WHAT}"), e);
    out.set_len(0).map_err(fail)?;
    copy_blocks(raw, FIXED_CHUNK, WHAT, |index, bytes| {
        let at = index * FIXED_CHUNK;
        let len = usize::try_from((size - at).min(FIXED_CHUNK)).unwrap_or(bytes.len());
        out.write_all_at(&bytes[..len], at)
    })?;
    out.write_all_at(&footer(size, DiskType::Fixed, id, mtime), size)
        .map_err(fail)?;
    out.set_len(size + FOOTER_LEN).map_err(fail)?;
    Ok(size + FOOTER_LEN)
}

/// Dynamic VHD: footer copy, dynamic header, BAT, 2 MiB blocks (sector bitmap + data) only for
/// blocks holding data, footer. Returns the file's length.
///
/// The size must pass [`check_size`]. `out` is truncated first. The BAT is kept in memory
/// (at most 4 MiB, for 2040 GiB).
pub fn write_dynamic(
    raw: &RawDisk<'_>,
    out: &mut File,
    id: Uuid,
    mtime: i64,
) -> Result<u64, DiskError> {
    const WHAT: &str = "the dynamic VHD";
    let size = vhd_size(raw)?;
    let fail = |e| DiskError::io(format!("writing {WHAT}"), e);
    let blocks = raw.blocks(BLOCK);
    let entries = u32::try_from(blocks)
        .map_err(|_| DiskError::Unrepresentable(format!("{blocks} VHD blocks")))?;
    let bat_len = round_up(blocks * 4, SECTOR);
    let mut bat = vec![0u8; usize::try_from(bat_len).unwrap_or(usize::MAX)];
    for entry in bat.chunks_exact_mut(4) {
        entry.copy_from_slice(&UNALLOCATED.to_be_bytes());
    }
    out.set_len(0).map_err(fail)?;
    let bitmap = [0xFFu8; BITMAP_LEN as usize];
    let mut next = BAT_OFFSET + bat_len;
    copy_blocks(raw, BLOCK, WHAT, |index, bytes| {
        let sector = u32::try_from(next / SECTOR)
            .map_err(|_| io::Error::other(format!("block {index} lies past 2 TiB")))?;
        let at = usize::try_from(index * 4).unwrap_or(usize::MAX);
        bat[at..at + 4].copy_from_slice(&sector.to_be_bytes());
        out.write_all_at(&bitmap, next)?;
        out.write_all_at(bytes, next + BITMAP_LEN)?;
        next += BITMAP_LEN + BLOCK;
        Ok(())
    })?;
    let foot = footer(size, DiskType::Dynamic, id, mtime);
    out.write_all_at(&foot, 0).map_err(fail)?;
    out.write_all_at(&dynamic_header(entries), FOOTER_LEN)
        .map_err(fail)?;
    out.write_all_at(&bat, BAT_OFFSET).map_err(fail)?;
    out.write_all_at(&foot, next).map_err(fail)?;
    Ok(next + FOOTER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const ID: Uuid = Uuid::from_u128(0x0123_4567_89ab_cdef_0011_2233_4455_6677);

    fn be32(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The footer's checksum, recomputed with its field zero, matches the stored one.
    fn checksum_verifies(block: &[u8], field: usize) -> bool {
        let mut copy = block.to_vec();
        copy[field..field + 4].fill(0);
        checksum(&copy) == be32(block, field)
    }

    #[test]
    fn geometry_follows_the_specification() {
        // Worked by hand through the specification's algorithm, one case per branch.
        assert_eq!(geometry(MIB), (30, 4, 17));
        assert_eq!(geometry(64 * MIB), (963, 8, 17));
        assert_eq!(geometry(512 * MIB), (1040, 16, 63));
        assert_eq!(geometry(10 << 30), (20805, 16, 63));
        assert_eq!(geometry(40 << 30), (20560, 16, 255));
        // Past about 127 GiB the geometry stays at its maximum.
        assert_eq!(geometry(MAX_SIZE), (65535, 16, 255));
        assert_eq!(geometry(200 << 30), (65535, 16, 255));
        // A 31-sector case: 20 MiB = 40960 sectors, 2409 cylinders × heads at 17 sectors
        // needs 3 heads (raised to 4), and 2409 < 4 × 1024 keeps 17 sectors.
        assert_eq!(geometry(20 * MIB), (602, 4, 17));
        // 100 MiB = 204800 sectors: 12047 at 17 sectors needs 12 heads, 12047 < 12288.
        assert_eq!(geometry(100 * MIB), (1003, 12, 17));
        // 200 MiB = 409600: 24094 at 17 sectors needs 24 heads (> 16), so 31 sectors and 16
        // heads: 13212 < 16384.
        assert_eq!(geometry(200 * MIB), (825, 16, 31));
        for mib in [1u64, 3, 17, 100, 1000, 5000, 60000] {
            let (c, h, s) = geometry(mib * MIB);
            assert!(u64::from(c) * u64::from(h) * u64::from(s) <= mib * MIB / SECTOR);
        }
    }

    #[test]
    fn footer_fields() {
        let size = 64 * MIB;
        // 2025-01-01T00:00:00Z.
        let mtime = 1_735_689_600;
        for (kind, data_offset) in [(DiskType::Fixed, u64::MAX), (DiskType::Dynamic, 512)] {
            let f = footer(size, kind, ID, mtime);
            assert_eq!(&f[0..8], b"conectix");
            assert_eq!(be32(&f, 8), 2);
            assert_eq!(be32(&f, 12), 0x0001_0000);
            assert_eq!(be64(&f, 16), data_offset);
            assert_eq!(be32(&f, 24), (mtime - VHD_EPOCH) as u32);
            assert_eq!(&f[28..32], b"osbd");
            assert_eq!(&f[36..40], b"Wi2k");
            assert_eq!(be64(&f, 40), size);
            assert_eq!(be64(&f, 48), size);
            assert_eq!(u16::from_be_bytes([f[56], f[57]]), 963);
            assert_eq!((f[58], f[59]), (8, 17));
            assert_eq!(be32(&f, 60), kind as u32);
            assert!(checksum_verifies(&f, 64));
            assert_eq!(&f[68..84], ID.as_bytes());
            assert!(f[84..].iter().all(|b| *b == 0));
        }
    }

    #[test]
    fn checksum_is_the_complement_of_the_byte_sum() {
        assert_eq!(checksum(&[]), 0xFFFF_FFFF);
        assert_eq!(checksum(&[1, 2, 3]), !6);
        assert_eq!(checksum(&[0xFF; 512]), !(255 * 512));
        let mut f = footer(MIB, DiskType::Fixed, ID, 0);
        f[100] ^= 1;
        assert!(!checksum_verifies(&f, 64));
    }

    #[test]
    fn timestamps_are_clamped() {
        assert_eq!(timestamp(0), 0);
        assert_eq!(timestamp(VHD_EPOCH), 0);
        assert_eq!(timestamp(VHD_EPOCH + 86_400), 86_400);
        assert_eq!(timestamp(i64::MIN), 0);
        assert_eq!(timestamp(i64::MAX), u32::MAX);
    }

    #[test]
    fn dynamic_header_fields() {
        let h = dynamic_header(5120);
        assert_eq!(&h[0..8], b"cxsparse");
        assert_eq!(be64(&h, 8), u64::MAX);
        assert_eq!(be64(&h, 16), 1536);
        assert_eq!(be32(&h, 24), 0x0001_0000);
        assert_eq!(be32(&h, 28), 5120);
        assert_eq!(be32(&h, 32), 2 << 20);
        assert!(checksum_verifies(&h, 36));
        assert!(h[40..].iter().all(|b| *b == 0));
    }

    #[test]
    fn sizes_azure_takes() {
        assert_eq!(check_size(MIB), Ok(()));
        assert_eq!(check_size(30 << 30), Ok(()));
        assert_eq!(check_size(MAX_SIZE), Ok(()));
        let zero = check_size(0).unwrap_err();
        assert!(zero.contains("at least 1M"), "{zero}");
        let small = check_size(1000).unwrap_err();
        assert!(small.contains("use 1M") && small.contains("whole number of MiB"));
        let odd = check_size(10 * MIB + 512).unwrap_err();
        assert!(odd.contains("use 10M or 11M"), "{odd}");
        let big = check_size(MAX_SIZE + MIB).unwrap_err();
        assert!(
            big.contains("at most 2040G") && big.contains("VHDX"),
            "{big}"
        );
        for message in [zero, small, odd, big] {
            assert!(!message.contains('\n'));
        }
    }

    /// A sparse raw disk of `size` bytes with `data` written at each offset.
    fn raw_file(size: u64, data: &[(u64, &[u8])]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        file.set_len(size).unwrap();
        for (at, bytes) in data {
            file.write_all_at(bytes, *at).unwrap();
        }
        file.flush().unwrap();
        file
    }

    #[test]
    fn fixed_is_the_disk_then_the_footer() {
        let size = 4 * MIB;
        let file = raw_file(size, &[(0, b"first"), (3 * MIB + 7, b"later")]);
        let raw = RawDisk::new(&file, size);
        let mut out = tempfile::tempfile().unwrap();
        // Stale content must not survive.
        out.write_all(&[9u8; 8 << 20]).unwrap();
        assert_eq!(write_fixed(&raw, &mut out, ID, 0).unwrap(), size + 512);
        let mut all = vec![0u8; (size + 512) as usize];
        out.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all[..5], b"first");
        assert_eq!(&all[(3 * MIB + 7) as usize..][..5], b"later");
        assert_eq!(all[..size as usize].iter().filter(|b| **b != 0).count(), 10);
        assert_eq!(&all[size as usize..], &footer(size, DiskType::Fixed, ID, 0));
    }

    #[test]
    fn dynamic_stores_only_blocks_with_data() {
        let size = 9 * MIB;
        let file = raw_file(size, &[(3 * MIB, b"block one"), (9 * MIB - 1, b"z")]);
        let raw = RawDisk::new(&file, size);
        let mut out = tempfile::tempfile().unwrap();
        let len = write_dynamic(&raw, &mut out, ID, 0).unwrap();
        // Footer, header, one sector of BAT (5 entries), two blocks, footer.
        assert_eq!(len, 512 + 1024 + 512 + 2 * (512 + BLOCK) + 512);
        let mut all = vec![0u8; len as usize];
        out.read_exact_at(&mut all, 0).unwrap();
        let foot = footer(size, DiskType::Dynamic, ID, 0);
        assert_eq!(&all[..512], &foot);
        assert_eq!(&all[len as usize - 512..], &foot);
        let bat: Vec<u32> = (0..5).map(|i| be32(&all, 1536 + 4 * i)).collect();
        let first = (2048 / 512) as u32;
        let second = first + ((512 + BLOCK) / 512) as u32;
        assert_eq!(
            bat,
            vec![UNALLOCATED, first, UNALLOCATED, UNALLOCATED, second]
        );
        assert!(all[1536 + 20..2048].iter().all(|b| *b == 0xFF));
        let block = |n: u32| &all[(n as usize) * 512..][..(512 + BLOCK) as usize];
        assert!(block(first)[..512].iter().all(|b| *b == 0xFF));
        assert_eq!(&block(first)[512 + MIB as usize..][..9], b"block one");
        assert_eq!(block(second)[512 + MIB as usize - 1], b'z');
    }

    #[test]
    fn sizes_a_vhd_cannot_hold_are_refused() {
        let file = raw_file(MIB + 512, &[]);
        let raw = RawDisk::new(&file, MIB + 512);
        let mut out = tempfile::tempfile().unwrap();
        for result in [
            write_fixed(&raw, &mut out, ID, 0),
            write_dynamic(&raw, &mut out, ID, 0),
        ] {
            assert!(matches!(result, Err(DiskError::Unrepresentable(_))));
        }
    }
}
