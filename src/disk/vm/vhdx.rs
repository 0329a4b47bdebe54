//! VHDX (Microsoft "[MS-VHDX]: Virtual Hard Disk v2 (VHDX) File Format"), dynamic, as Hyper-V
//! Generation 2 VMs take it.
//!
//! Little-endian throughout; GUIDs in Microsoft's mixed-endian layout; every region 1 MiB
//! aligned. The file as written:
//!
//! | offset      | what |
//! |-------------|------|
//! | 0           | file type identifier: `vhdxfile` and the creator, "osbuild" in UTF-16LE |
//! | 64, 128 KiB | the two headers (`head`, CRC-32C over 4 KiB), sequence numbers 1 and 2, the log empty (log GUID zero) |
//! | 192, 256 KiB| the two identical region tables (`regi`, CRC-32C over 64 KiB): BAT and metadata, both required |
//! | 1 MiB       | the log: 1 MiB, empty |
//! | 2 MiB       | the metadata region: table (`metadata`) and items: file parameters (1 MiB blocks), virtual disk size, virtual disk id (page 83), logical sector size 512, physical sector size 4096 |
//! | 3 MiB       | the BAT: one `u64` per 1 MiB payload block, with a sector bitmap entry after every chunk ratio (4096) payload entries |
//! | then        | the payload blocks holding data, 1 MiB each, in disk order |
//!
//! A payload block holding data is `PAYLOAD_BLOCK_FULLY_PRESENT` at its offset. One without
//! is `PAYLOAD_BLOCK_ZERO`: the specification (2.5.1.1) defines that state's contents as
//! zeros, whereas `PAYLOAD_BLOCK_NOT_PRESENT` in a dynamic VHDX leaves them undefined (a
//! reader may return any data). Sector bitmap entries of a non-differencing VHDX are
//! `SB_BLOCK_NOT_PRESENT`.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use uuid::Uuid;

use super::RawDisk;
use super::vhd::copy_blocks;
use crate::disk::{DiskError, SECTOR, round_up};

/// The largest virtual size a VHDX holds (64 TiB).
pub const MAX_SIZE: u64 = 64 << 40;

/// The identifiers a VHDX carries (from the caller, derived from the content).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VhdxIds {
    /// The headers' FileWriteGuid: changes whenever the file is written.
    pub file_write: Uuid,
    /// The headers' DataWriteGuid: changes whenever the disk's content is written.
    pub data_write: Uuid,
    /// The virtual disk id (the metadata's page 83 data).
    pub disk: Uuid,
}

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;
/// Bytes of disk in a payload block.
const BLOCK: u64 = MIB;
const LOGICAL_SECTOR: u32 = SECTOR as u32;
const PHYSICAL_SECTOR: u32 = 4096;
/// Payload blocks per sector bitmap block: 2^23 sectors of a bitmap block over the sectors of
/// a payload block.
const CHUNK_RATIO: u64 = (1 << 23) * SECTOR / BLOCK;

const HEADER_1: u64 = 64 * KIB;
const HEADER_2: u64 = 128 * KIB;
const HEADER_LEN: usize = 4096;
const REGION_TABLE_1: u64 = 192 * KIB;
const REGION_TABLE_2: u64 = 256 * KIB;
const REGION_TABLE_LEN: usize = 64 * 1024;
const LOG_OFFSET: u64 = MIB;
const LOG_LEN: u64 = MIB;
const METADATA_OFFSET: u64 = 2 * MIB;
const METADATA_LEN: u64 = MIB;
/// Bytes of the metadata table at the start of the metadata region; items follow it.
const METADATA_TABLE_LEN: usize = 64 * 1024;
const BAT_OFFSET: u64 = 3 * MIB;

const PAYLOAD_BLOCK_ZERO: u64 = 2;
const PAYLOAD_BLOCK_FULLY_PRESENT: u64 = 6;
const SB_BLOCK_NOT_PRESENT: u64 = 0;

/// Region table entry: the BAT.
const BAT_REGION: Uuid = Uuid::from_u128(0x2DC27766_F623_4200_9D64_115E9BFD4A08);
/// Region table entry: the metadata region.
const METADATA_REGION: Uuid = Uuid::from_u128(0x8B7CA206_4790_4B9A_B8FE_575F050F886E);
/// Metadata item: block size and flags.
const FILE_PARAMETERS: Uuid = Uuid::from_u128(0xCAA16737_FA36_4D43_B3B6_33F0AA44E76B);
/// Metadata item: the virtual disk's size in bytes.
const VIRTUAL_DISK_SIZE: Uuid = Uuid::from_u128(0x2FA54224_CD1B_4876_B211_5DBED83BF4B8);
/// Metadata item: the virtual disk id (SCSI page 83).
const PAGE_83_DATA: Uuid = Uuid::from_u128(0xBECA12AB_B2E6_4523_93EF_C309E000C746);
/// Metadata item: the logical sector size.
const LOGICAL_SECTOR_SIZE: Uuid = Uuid::from_u128(0x8141BF1D_A96F_4709_BA47_F233A8FAAB5F);
/// Metadata item: the physical sector size.
const PHYSICAL_SECTOR_SIZE: Uuid = Uuid::from_u128(0xCDA348C7_445D_4471_9CC9_E9885251C556);

/// Metadata entry flags.
const IS_VIRTUAL_DISK: u32 = 1 << 1;
const IS_REQUIRED: u32 = 1 << 2;

/// The CRC-32C (Castagnoli) table: reflected polynomial 0x82F63B78.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

/// CRC-32C of `bytes`, as the VHDX headers and region tables carry it.
fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |crc, b| {
        CRC32C_TABLE[usize::from((crc as u8) ^ b)] ^ (crc >> 8)
    })
}

/// Store the CRC-32C of `block` (computed with its checksum field zero) in the field at 4.
fn seal(block: &mut [u8]) {
    block[4..8].fill(0);
    let crc = crc32c(block);
    block[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// `id` in the on-disk GUID layout.
fn guid(id: Uuid) -> [u8; 16] {
    id.to_bytes_le()
}

/// The file type identifier: signature and creator.
fn file_identifier() -> Vec<u8> {
    let mut f = b"vhdxfile".to_vec();
    f.extend("osbuild".encode_utf16().flat_map(u16::to_le_bytes));
    f
}

/// A header with sequence number `sequence`.
fn header(sequence: u64, ids: &VhdxIds) -> Vec<u8> {
    let mut h = vec![0u8; HEADER_LEN];
    h[0..4].copy_from_slice(b"head");
    h[8..16].copy_from_slice(&sequence.to_le_bytes());
    h[16..32].copy_from_slice(&guid(ids.file_write));
    h[32..48].copy_from_slice(&guid(ids.data_write));
    // LogGuid (48..64) zero: nothing to replay. LogVersion (64..66) zero.
    h[66..68].copy_from_slice(&1u16.to_le_bytes());
    h[68..72].copy_from_slice(&(LOG_LEN as u32).to_le_bytes());
    h[72..80].copy_from_slice(&LOG_OFFSET.to_le_bytes());
    seal(&mut h);
    h
}

/// A region table listing the BAT (`bat_len` bytes) and the metadata region, both required.
fn region_table(bat_len: u64) -> Vec<u8> {
    let mut t = vec![0u8; REGION_TABLE_LEN];
    t[0..4].copy_from_slice(b"regi");
    t[8..12].copy_from_slice(&2u32.to_le_bytes());
    let regions = [
        (BAT_REGION, BAT_OFFSET, bat_len),
        (METADATA_REGION, METADATA_OFFSET, METADATA_LEN),
    ];
    for (n, (id, offset, len)) in regions.into_iter().enumerate() {
        let e = &mut t[16 + 32 * n..][..32];
        e[0..16].copy_from_slice(&guid(id));
        e[16..24].copy_from_slice(&offset.to_le_bytes());
        // Region lengths are at most 512 MiB (the BAT of 64 TiB).
        e[24..28].copy_from_slice(&(len as u32).to_le_bytes());
        // Required.
        e[28..32].copy_from_slice(&1u32.to_le_bytes());
    }
    seal(&mut t);
    t
}

/// The metadata table and, after it, the items, for a disk of `size` bytes.
fn metadata(size: u64, disk: Uuid) -> Vec<u8> {
    // BlockSize, then the flags LeaveBlockAllocated and HasParent, both zero.
    let file_parameters = [(BLOCK as u32).to_le_bytes(), [0; 4]].concat();
    let items: [(Uuid, u32, Vec<u8>); 5] = [
        (FILE_PARAMETERS, IS_REQUIRED, file_parameters),
        (
            VIRTUAL_DISK_SIZE,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            size.to_le_bytes().to_vec(),
        ),
        (
            PAGE_83_DATA,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            guid(disk).to_vec(),
        ),
        (
            LOGICAL_SECTOR_SIZE,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            LOGICAL_SECTOR.to_le_bytes().to_vec(),
        ),
        (
            PHYSICAL_SECTOR_SIZE,
            IS_VIRTUAL_DISK | IS_REQUIRED,
            PHYSICAL_SECTOR.to_le_bytes().to_vec(),
        ),
    ];
    let mut m = vec![0u8; METADATA_TABLE_LEN];
    m[0..8].copy_from_slice(b"metadata");
    m[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
    for (n, (id, flags, value)) in items.into_iter().enumerate() {
        let offset = m.len() as u32;
        let e = &mut m[32 + 32 * n..][..32];
        e[0..16].copy_from_slice(&guid(id));
        e[16..20].copy_from_slice(&offset.to_le_bytes());
        e[20..24].copy_from_slice(&(value.len() as u32).to_le_bytes());
        e[24..28].copy_from_slice(&flags.to_le_bytes());
        m.extend(value);
    }
    m
}

/// The BAT entry of a block in `state` at file offset `offset` (a whole number of MiB, or 0).
fn bat_entry(state: u64, offset: u64) -> u64 {
    (offset & !(MIB - 1)) | state
}

/// The number of BAT entries of a dynamic VHDX of `blocks` payload blocks: one per block and
/// a sector bitmap entry after each full chunk that more blocks follow.
fn bat_entries(blocks: u64) -> u64 {
    blocks + blocks.saturating_sub(1) / CHUNK_RATIO
}

/// The BAT, written in order through a small buffer so that even the 512 MiB BAT of a 64 TiB
/// disk costs no memory.
struct BatWriter<'a> {
    out: &'a File,
    /// Payload blocks in the disk.
    blocks: u64,
    /// The next payload block to describe.
    next: u64,
    /// Bytes of the BAT written out so far.
    written: u64,
    buf: Vec<u8>,
}

impl BatWriter<'_> {
    const BUF: usize = 64 * 1024;

    /// Describe payload blocks up to (not including) `block` as holding zeros.
    fn zeros_until(&mut self, block: u64) -> io::Result<()> {
        while self.next < block {
            self.push(bat_entry(PAYLOAD_BLOCK_ZERO, 0))?;
        }
        Ok(())
    }

    /// Describe the next payload block with `entry`, and the sector bitmap block after it
    /// when it ends a chunk that more blocks follow.
    fn push(&mut self, entry: u64) -> io::Result<()> {
        self.buf.extend(entry.to_le_bytes());
        self.next += 1;
        if self.next.is_multiple_of(CHUNK_RATIO) && self.next < self.blocks {
            self.buf
                .extend(bat_entry(SB_BLOCK_NOT_PRESENT, 0).to_le_bytes());
        }
        if self.buf.len() >= Self::BUF {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out
            .write_all_at(&self.buf, BAT_OFFSET + self.written)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// A dynamic VHDX holding the raw disk: file identifier, two headers, two region tables, an
/// empty 1 MiB log, the metadata region, the BAT, and payload blocks only for blocks holding
/// data. Returns the file's length.
///
/// The size must be a whole number of 512-byte sectors, above zero and at most [`MAX_SIZE`].
/// `out` is truncated first. One pass over the raw disk; memory stays at one block and a
/// 64 KiB buffer whatever the disk's size.
pub fn write(raw: &RawDisk<'_>, out: &mut File, ids: &VhdxIds) -> Result<u64, DiskError> {
    const WHAT: &str = "the VHDX";
    let size = raw.size();
    if size == 0 || !size.is_multiple_of(SECTOR) {
        return Err(DiskError::Unrepresentable(format!(
            "a VHDX holds a whole number of 512-byte sectors and {size} bytes is not one: \
             use a whole number of MiB"
        )));
    }
    if size > MAX_SIZE {
        return Err(DiskError::Unrepresentable(format!(
            "a VHDX holds at most 64T ({MAX_SIZE} bytes) and {size} bytes is more: use 64T or less"
        )));
    }
    let fail = |e| DiskError::io(format!("writing {WHAT}"), e);
    let out: &File = out;
    let blocks = raw.blocks(BLOCK);
    let bat_len = round_up(bat_entries(blocks) * 8, MIB);
    let data = BAT_OFFSET + bat_len;

    out.set_len(0).map_err(fail)?;
    let mut bat = BatWriter {
        out,
        blocks,
        next: 0,
        written: 0,
        buf: Vec::with_capacity(BatWriter::BUF + 16),
    };
    let mut stored = 0u64;
    copy_blocks(raw, BLOCK, WHAT, |index, bytes| {
        let at = data + stored * BLOCK;
        out.write_all_at(bytes, at)?;
        stored += 1;
        bat.zeros_until(index)?;
        bat.push(bat_entry(PAYLOAD_BLOCK_FULLY_PRESENT, at))
    })?;
    bat.zeros_until(blocks).map_err(fail)?;
    bat.flush().map_err(fail)?;

    out.write_all_at(&file_identifier(), 0).map_err(fail)?;
    out.write_all_at(&header(1, ids), HEADER_1).map_err(fail)?;
    out.write_all_at(&header(2, ids), HEADER_2).map_err(fail)?;
    let regions = region_table(bat_len);
    out.write_all_at(&regions, REGION_TABLE_1).map_err(fail)?;
    out.write_all_at(&regions, REGION_TABLE_2).map_err(fail)?;
    out.write_all_at(&metadata(size, ids.disk), METADATA_OFFSET)
        .map_err(fail)?;
    let len = data + stored * BLOCK;
    out.set_len(len).map_err(fail)?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: VhdxIds = VhdxIds {
        file_write: Uuid::from_u128(1),
        data_write: Uuid::from_u128(2),
        disk: Uuid::from_u128(0x0011_2233_4455_6677_8899_aabb_ccdd_eeff),
    };

    fn le32(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn le64(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// The CRC-32C stored at 4 matches the block's, computed with the field zero.
    fn crc_verifies(block: &[u8]) -> bool {
        let mut copy = block.to_vec();
        copy[4..8].fill(0);
        crc32c(&copy) == le32(block, 4)
    }

    #[test]
    fn crc32c_check_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, and of ones.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
    }

    #[test]
    fn guids_are_written_mixed_endian() {
        assert_eq!(
            guid(BAT_REGION),
            [
                0x66, 0x77, 0xC2, 0x2D, 0x23, 0xF6, 0x00, 0x42, 0x9D, 0x64, 0x11, 0x5E, 0x9B, 0xFD,
                0x4A, 0x08
            ]
        );
        assert_eq!(
            guid(METADATA_REGION),
            [
                0x06, 0xA2, 0x7C, 0x8B, 0x90, 0x47, 0x9A, 0x4B, 0xB8, 0xFE, 0x57, 0x5F, 0x05, 0x0F,
                0x88, 0x6E
            ]
        );
        assert_eq!(
            guid(FILE_PARAMETERS).to_vec(),
            hex::decode("3767a1ca36fa434db3b633f0aa44e76b").unwrap()
        );
        assert_eq!(
            guid(VIRTUAL_DISK_SIZE).to_vec(),
            hex::decode("2442a52f1bcd7648b2115dbed83bf4b8").unwrap()
        );
        assert_eq!(
            guid(PAGE_83_DATA).to_vec(),
            hex::decode("ab12cabee6b2234593efc309e000c746").unwrap()
        );
        assert_eq!(
            guid(LOGICAL_SECTOR_SIZE).to_vec(),
            hex::decode("1dbf41816fa90947ba47f233a8faab5f").unwrap()
        );
        assert_eq!(
            guid(PHYSICAL_SECTOR_SIZE).to_vec(),
            hex::decode("c748a3cd5d447144 9cc9e9885251c556".replace(' ', "")).unwrap()
        );
    }

    #[test]
    fn file_identifier_names_the_creator() {
        let f = file_identifier();
        assert_eq!(&f[..8], b"vhdxfile");
        assert_eq!(&f[8..], b"o\0s\0b\0u\0i\0l\0d\0");
    }

    #[test]
    fn headers() {
        let h = header(7, &IDS);
        assert_eq!(h.len(), 4096);
        assert_eq!(&h[0..4], b"head");
        assert!(crc_verifies(&h));
        assert_eq!(le64(&h, 8), 7);
        assert_eq!(&h[16..32], &IDS.file_write.to_bytes_le());
        assert_eq!(&h[32..48], &IDS.data_write.to_bytes_le());
        assert!(h[48..66].iter().all(|b| *b == 0), "log GUID and version");
        assert_eq!(u16::from_le_bytes([h[66], h[67]]), 1);
        assert_eq!(le32(&h, 68), 1 << 20);
        assert_eq!(le64(&h, 72), 1 << 20);
        assert!(h[80..].iter().all(|b| *b == 0));
        let mut bad = h.clone();
        bad[4000] = 1;
        assert!(!crc_verifies(&bad));
    }

    #[test]
    fn region_tables() {
        let t = region_table(2 * MIB);
        assert_eq!(t.len(), 64 * 1024);
        assert_eq!(&t[0..4], b"regi");
        assert!(crc_verifies(&t));
        assert_eq!(le32(&t, 8), 2);
        let entry = |n: usize| {
            let e = &t[16 + 32 * n..][..32];
            (
                Uuid::from_bytes_le(e[0..16].try_into().unwrap()),
                le64(e, 16),
                le32(e, 24),
                le32(e, 28),
            )
        };
        assert_eq!(entry(0), (BAT_REGION, 3 << 20, 2 << 20, 1));
        assert_eq!(entry(1), (METADATA_REGION, 2 << 20, 1 << 20, 1));
        assert!(t[80..].iter().all(|b| *b == 0));
    }

    #[test]
    fn metadata_items() {
        let size = 10 << 30;
        let m = metadata(size, IDS.disk);
        assert_eq!(&m[0..8], b"metadata");
        assert_eq!(u16::from_le_bytes([m[10], m[11]]), 5);
        let mut seen = Vec::new();
        for n in 0..5 {
            let e = &m[32 + 32 * n..][..32];
            let id = Uuid::from_bytes_le(e[0..16].try_into().unwrap());
            let (offset, len) = (le32(e, 16) as usize, le32(e, 20) as usize);
            assert!(offset >= 64 * 1024);
            seen.push((id, le32(e, 24), m[offset..offset + len].to_vec()));
        }
        let value = |id| seen.iter().find(|(i, _, _)| *i == id).unwrap().clone();
        assert_eq!(value(FILE_PARAMETERS).1, IS_REQUIRED);
        assert_eq!(le32(&value(FILE_PARAMETERS).2, 0), 1 << 20);
        assert_eq!(
            le32(&value(FILE_PARAMETERS).2, 4),
            0,
            "no parent, not fixed"
        );
        assert_eq!(value(VIRTUAL_DISK_SIZE).1, IS_VIRTUAL_DISK | IS_REQUIRED);
        assert_eq!(le64(&value(VIRTUAL_DISK_SIZE).2, 0), size);
        assert_eq!(value(PAGE_83_DATA).2, IDS.disk.to_bytes_le());
        assert_eq!(le32(&value(LOGICAL_SECTOR_SIZE).2, 0), 512);
        assert_eq!(le32(&value(PHYSICAL_SECTOR_SIZE).2, 0), 4096);
    }

    #[test]
    fn bat_entry_encoding() {
        assert_eq!(CHUNK_RATIO, 4096);
        assert_eq!(
            bat_entry(PAYLOAD_BLOCK_FULLY_PRESENT, 5 * MIB),
            (5 << 20) | 6
        );
        assert_eq!(bat_entry(PAYLOAD_BLOCK_ZERO, 0), 2);
        // FileOffsetMB sits in bits 20..64.
        assert_eq!(
            bat_entry(PAYLOAD_BLOCK_FULLY_PRESENT, MAX_SIZE) >> 20,
            MAX_SIZE >> 20
        );
        assert_eq!(bat_entries(1), 1);
        assert_eq!(bat_entries(4096), 4096);
        assert_eq!(bat_entries(4097), 4098);
        assert_eq!(bat_entries(10240), 10242);
    }

    /// A sparse raw disk of `size` bytes with `data` written at each offset.
    fn raw_file(size: u64, data: &[(u64, &[u8])]) -> File {
        let file = tempfile::tempfile().unwrap();
        file.set_len(size).unwrap();
        for (at, bytes) in data {
            file.write_all_at(bytes, *at).unwrap();
        }
        file
    }

    #[test]
    fn bat_interleaves_sector_bitmap_entries() {
        // Two chunks and one block more: data in block 0, the first block of the second
        // chunk, and the last block.
        let size = (2 * CHUNK_RATIO + 1) * MIB;
        let file = raw_file(
            size,
            &[(10, b"a"), (CHUNK_RATIO * MIB, b"b"), (size - 1, b"c")],
        );
        let raw = RawDisk::new(&file, size);
        let mut out = tempfile::tempfile().unwrap();
        let len = write(&raw, &mut out, &IDS).unwrap();
        let bat_len = round_up((2 * CHUNK_RATIO + 1 + 2) * 8, MIB);
        let data = BAT_OFFSET + bat_len;
        assert_eq!(len, data + 3 * MIB);
        let mut bat = vec![0u8; bat_len as usize];
        out.read_exact_at(&mut bat, BAT_OFFSET).unwrap();
        let entry = |i: u64| le64(&bat, 8 * i as usize);
        let r = CHUNK_RATIO;
        assert_eq!(entry(0), data | 6);
        assert_eq!(entry(1), 2);
        assert_eq!(entry(r - 1), 2);
        assert_eq!(entry(r), 0, "sector bitmap entry after the first chunk");
        assert_eq!(entry(r + 1), (data + MIB) | 6);
        assert_eq!(entry(2 * r), 2);
        assert_eq!(
            entry(2 * r + 1),
            0,
            "sector bitmap entry after the second chunk"
        );
        assert_eq!(entry(2 * r + 2), (data + 2 * MIB) | 6);
        assert_eq!(entry(2 * r + 3), 0, "past the last entry");
        let mut block = [0u8; 1];
        out.read_exact_at(&mut block, data + 2 * MIB + MIB - 1)
            .unwrap();
        assert_eq!(&block, b"c");
    }

    #[test]
    fn the_file_starts_with_its_structures() {
        let file = raw_file(3 * MIB, &[(MIB + 5, b"x")]);
        let raw = RawDisk::new(&file, 3 * MIB);
        let mut out = tempfile::tempfile().unwrap();
        let len = write(&raw, &mut out, &IDS).unwrap();
        assert_eq!(len, 5 * MIB);
        let mut all = vec![0u8; len as usize];
        out.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(&all[..8], b"vhdxfile");
        assert_eq!(&all[64 << 10..][..4096], &header(1, &IDS)[..]);
        assert_eq!(&all[128 << 10..][..4096], &header(2, &IDS)[..]);
        assert_eq!(&all[192 << 10..][..64 << 10], &region_table(MIB)[..]);
        assert_eq!(&all[256 << 10..][..64 << 10], &region_table(MIB)[..]);
        assert!(all[MIB as usize..2 * MIB as usize].iter().all(|b| *b == 0));
        assert_eq!(&all[2 << 20..][..8], b"metadata");
        let bat: Vec<u64> = (0..4).map(|i| le64(&all, (3 << 20) + 8 * i)).collect();
        assert_eq!(bat, vec![2, (4 << 20) | 6, 2, 0]);
        assert_eq!(all[(4 << 20) + 5], b'x');
    }

    #[test]
    fn sizes_a_vhdx_cannot_hold_are_refused() {
        let file = raw_file(1000, &[]);
        for size in [0, 1000] {
            let raw = RawDisk::new(&file, size);
            let mut out = tempfile::tempfile().unwrap();
            assert!(matches!(
                write(&raw, &mut out, &IDS),
                Err(DiskError::Unrepresentable(_))
            ));
        }
    }
}
