//! streamOptimized VMDK (VMware Virtual Disk Format 1.1): a sparse extent whose grains are
//! compressed one by one and framed by markers, written in one pass with no seeking, the form
//! vSphere imports in an OVA and AWS VM Import accepts.
//!
//! Layout, in 512-byte sectors, little-endian:
//! - sector 0: the `SparseExtentHeader` ("KDMV", version 3, flags: valid newline detection,
//!   compressed grains, markers; capacity; grainSize 128; the embedded descriptor's place;
//!   numGTEsPerGT 512; gdOffset = GD_AT_END, since the directory is not known yet;
//!   compressAlgorithm 1 = deflate), then the text descriptor, padded to the first grain
//!   boundary (`overHead`);
//! - one grain marker per 64 KiB grain holding data, in order: the grain's first sector (u64),
//!   the compressed length (u32), then the grain as a zlib stream, padded to a sector. Grains of
//!   zeros are not stored;
//! - after the grains of each 32 MiB span (one grain table, 512 entries), a GT marker (a
//!   metadata marker: sectors that follow as u64, size 0, type 1) and the table, whose entries
//!   are the sectors of the grain markers (0 = not stored). Tables with no grain are omitted
//!   and their directory entry is 0;
//! - a GD marker (type 2) and the grain directory (the tables' sectors);
//! - a footer marker (type 3), the header again with the real gdOffset, and an end-of-stream
//!   marker (a zero sector).
//!
//! Grains are compressed on every core in batches whose order is kept, so memory stays bounded
//! and the output is the same whatever the number of cores.

use std::io::{self, Write};

use uuid::Uuid;

use super::{BATCH, RawDisk, map_parallel, threads};
use crate::disk::{DiskError, SECTOR, round_up};

/// The largest virtual size written: 2 TiB. VMware caps hosted sparse extents there, and the
/// grain tables and directory locate everything by a 32-bit sector number, which also limits
/// the file itself to 2 TiB.
pub const MAX_SIZE: u64 = 2 << 40;

/// Bytes in a grain (128 sectors), the unit stored and compressed.
const GRAIN: u64 = 64 << 10;
const GRAIN_SECTORS: u64 = GRAIN / SECTOR;
/// Entries in a grain table.
const GTES: u64 = 512;
/// The leading header's grain directory offset: the directory is at the end of the stream.
const GD_AT_END: u64 = u64::MAX;
const FLAGS: u32 = 1 | 1 << 16 | 1 << 17;

const MARKER_EOS: u32 = 0;
const MARKER_GT: u32 = 1;
const MARKER_GD: u32 = 2;
const MARKER_FOOTER: u32 = 3;

/// The disk controller the descriptor names (`ddb.adapterType`), which also sets the geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Adapter {
    /// LSI Logic parallel SCSI: vSphere's default for Linux guests, and what LinuxKit writes.
    #[default]
    Lsilogic,
    /// BusLogic parallel SCSI.
    Buslogic,
    /// IDE (VirtualBox and desktop hypervisors boot from it everywhere).
    Ide,
}

impl Adapter {
    /// The `ddb.adapterType` value.
    pub fn name(self) -> &'static str {
        match self {
            Adapter::Lsilogic => "lsilogic",
            Adapter::Buslogic => "buslogic",
            Adapter::Ide => "ide",
        }
    }

    /// Heads, sectors per track and the most cylinders of the BIOS geometry.
    fn geometry(self) -> (u64, u64, u64) {
        match self {
            Adapter::Ide => (16, 63, 16383),
            Adapter::Lsilogic | Adapter::Buslogic => (255, 63, 65535),
        }
    }
}

/// What the VMDK descriptor says beyond the disk.
#[derive(Debug, Clone)]
pub struct VmdkOptions {
    /// The content ID (`CID`), which changes whenever the content does: derive it from the
    /// content.
    pub cid: u32,
    /// The disk's UUID (`ddb.uuid`, and `ddb.longContentID`).
    pub uuid: Uuid,
    /// The controller the disk is attached to.
    pub adapter: Adapter,
    /// The extent's file name in the descriptor (`disk.vmdk`, the name it has in an OVA).
    pub file_name: String,
    /// Threads that compress grains; 0 for one per core. The bytes do not depend on it.
    pub threads: usize,
}

/// What a VMDK holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmdkWritten {
    /// Bytes written.
    pub bytes: u64,
    /// Bytes of the disk its grains hold (whole grains holding data, at most the disk).
    pub populated: u64,
}

/// A streamOptimized (compressed, markers) VMDK of the raw disk, written sequentially to `out`
/// (no seeking), grains compressed on every core.
pub fn write_stream_optimized<W: Write>(
    raw: &RawDisk<'_>,
    out: W,
    opts: &VmdkOptions,
) -> Result<VmdkWritten, DiskError> {
    let size = raw.size();
    if size == 0 || !size.is_multiple_of(SECTOR) {
        return Err(DiskError::Unrepresentable(format!(
            "a VMDK holds one or more whole 512-byte sectors; the disk has {size} bytes"
        )));
    }
    if size > MAX_SIZE {
        return Err(DiskError::Unrepresentable(format!(
            "a streamOptimized VMDK holds at most {MAX_SIZE} bytes (2 TiB); the disk has {size}"
        )));
    }
    let capacity = size / SECTOR;
    let descriptor = descriptor(capacity, opts);
    let desc_sectors = (descriptor.len() as u64 + 1).div_ceil(SECTOR);
    let overhead = round_up(1 + desc_sectors, GRAIN_SECTORS);
    let tables = size.div_ceil(GRAIN).div_ceil(GTES);
    let header = Header {
        capacity,
        desc_sectors,
        overhead,
    };

    let mut w = Sectors { out, sector: 0 };
    let io = |e| DiskError::io("writing the VMDK", e);
    w.put(&header.bytes(GD_AT_END)).map_err(io)?;
    let mut text = descriptor.into_bytes();
    text.resize(((overhead - 1) * SECTOR) as usize, 0);
    w.put(&text).map_err(io)?;

    let mut body = Body {
        w,
        directory: vec![0u32; tables as usize],
        table: None,
        threads: threads(opts.threads),
        failed: None,
        grains: 0,
    };
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
    let read = raw.for_each_block(GRAIN, |index, bytes| {
        batch.push((index, bytes.to_vec()));
        if batch.len() == BATCH
            && let Err(e) = body.grains(std::mem::take(&mut batch))
        {
            body.failed = Some(e);
            return Err(io::Error::other("stopped"));
        }
        Ok(())
    });
    if let Some(e) = body.failed.take() {
        return Err(e);
    }
    read.map_err(|e| DiskError::io("reading the raw disk", e))?;
    body.grains(batch)?;
    body.end_table()?;

    let Body {
        mut w,
        directory,
        grains,
        ..
    } = body;
    let gd_bytes = directory.len() as u64 * 4;
    let gd_sectors = gd_bytes.div_ceil(SECTOR);
    w.put(&marker(gd_sectors, MARKER_GD)).map_err(io)?;
    let gd_offset = w.sector;
    let mut gd = Vec::with_capacity((gd_sectors * SECTOR) as usize);
    for entry in &directory {
        gd.extend_from_slice(&entry.to_le_bytes());
    }
    gd.resize((gd_sectors * SECTOR) as usize, 0);
    w.put(&gd).map_err(io)?;
    w.put(&marker(1, MARKER_FOOTER)).map_err(io)?;
    w.put(&header.bytes(gd_offset)).map_err(io)?;
    w.put(&marker(0, MARKER_EOS)).map_err(io)?;
    w.out.flush().map_err(io)?;
    if w.sector > u64::from(u32::MAX) {
        return Err(too_large());
    }
    Ok(VmdkWritten {
        bytes: w.sector * SECTOR,
        populated: (grains * GRAIN).min(size),
    })
}

fn too_large() -> DiskError {
    DiskError::Unrepresentable(
        "the VMDK would pass 2 TiB, past what its 32-bit sector numbers reach".into(),
    )
}

/// The fields of the sparse extent header that vary.
struct Header {
    capacity: u64,
    desc_sectors: u64,
    overhead: u64,
}

impl Header {
    /// The 512-byte `SparseExtentHeader` with the directory at `gd_offset`.
    fn bytes(&self, gd_offset: u64) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[0..4].copy_from_slice(b"KDMV");
        h[4..8].copy_from_slice(&3u32.to_le_bytes());
        h[8..12].copy_from_slice(&FLAGS.to_le_bytes());
        h[12..20].copy_from_slice(&self.capacity.to_le_bytes());
        h[20..28].copy_from_slice(&GRAIN_SECTORS.to_le_bytes());
        h[28..36].copy_from_slice(&1u64.to_le_bytes());
        h[36..44].copy_from_slice(&self.desc_sectors.to_le_bytes());
        h[44..48].copy_from_slice(&(GTES as u32).to_le_bytes());
        // rgdOffset (48..56) stays 0: no redundant directory in a stream.
        h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
        h[64..72].copy_from_slice(&self.overhead.to_le_bytes());
        // uncleanShutdown (72) is 0; then the newline detection characters.
        h[73..77].copy_from_slice(b"\n \r\n");
        h[77..79].copy_from_slice(&1u16.to_le_bytes());
        h
    }
}

/// A metadata marker sector: `sectors` of metadata of `kind` follow.
fn marker(sectors: u64, kind: u32) -> [u8; 512] {
    let mut m = [0u8; 512];
    m[0..8].copy_from_slice(&sectors.to_le_bytes());
    m[12..16].copy_from_slice(&kind.to_le_bytes());
    m
}

/// The embedded text descriptor.
fn descriptor(capacity: u64, opts: &VmdkOptions) -> String {
    let (heads, sectors, max_cylinders) = opts.adapter.geometry();
    let cylinders = (capacity / (heads * sectors)).clamp(1, max_cylinders);
    let u = opts.uuid.as_bytes();
    let hex = |bytes: &[u8]| {
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let name = opts.file_name.replace(['"', '\n', '\r'], "_");
    format!(
        "# Disk DescriptorFile\n\
         version=1\n\
         encoding=\"UTF-8\"\n\
         CID={cid:08x}\n\
         parentCID=ffffffff\n\
         createType=\"streamOptimized\"\n\
         \n\
         # Extent description\n\
         RW {capacity} SPARSE \"{name}\"\n\
         \n\
         # The Disk Data Base\n\
         #DDB\n\
         \n\
         ddb.adapterType = \"{adapter}\"\n\
         ddb.geometry.cylinders = \"{cylinders}\"\n\
         ddb.geometry.heads = \"{heads}\"\n\
         ddb.geometry.sectors = \"{sectors}\"\n\
         ddb.longContentID = \"{long}\"\n\
         ddb.uuid = \"{u1}-{u2}\"\n\
         ddb.virtualHWVersion = \"4\"\n",
        cid = opts.cid,
        adapter = opts.adapter.name(),
        long = opts.uuid.simple(),
        u1 = hex(&u[..8]),
        u2 = hex(&u[8..]),
    )
}

/// The output, counted in sectors (everything written is whole sectors).
struct Sectors<W> {
    out: W,
    sector: u64,
}

impl<W: Write> Sectors<W> {
    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        debug_assert_eq!(bytes.len() as u64 % SECTOR, 0);
        self.out.write_all(bytes)?;
        self.sector += bytes.len() as u64 / SECTOR;
        Ok(())
    }
}

/// The grains and grain tables being written.
struct Body<W> {
    w: Sectors<W>,
    directory: Vec<u32>,
    /// The grain table being filled: its index and entries.
    table: Option<(u64, Vec<u32>)>,
    threads: usize,
    /// Why writing stopped inside the raw disk's callback.
    failed: Option<DiskError>,
    /// Grains written.
    grains: u64,
}

impl<W: Write> Body<W> {
    /// Compress a batch of (grain index, bytes) on every core and write them in order.
    fn grains(&mut self, batch: Vec<(u64, Vec<u8>)>) -> Result<(), DiskError> {
        let io = |e| DiskError::io("writing the VMDK", e);
        if batch.is_empty() {
            return Ok(());
        }
        let records = map_parallel(&batch, self.threads, compress_grains)
            .map_err(|e| DiskError::io("compressing the VMDK's grains", e))?;
        for ((index, _), record) in batch.iter().zip(records) {
            let table = index / GTES;
            if self.table.as_ref().is_some_and(|(t, _)| *t != table) {
                self.end_table()?;
            }
            let at = u32::try_from(self.w.sector).map_err(|_| too_large())?;
            let (_, entries) = self
                .table
                .get_or_insert_with(|| (table, vec![0u32; GTES as usize]));
            entries[(index % GTES) as usize] = at;
            self.w.put(&record).map_err(io)?;
            self.grains += 1;
        }
        Ok(())
    }

    /// Write the grain table being filled, if any, and enter it in the directory.
    fn end_table(&mut self) -> Result<(), DiskError> {
        let io = |e| DiskError::io("writing the VMDK", e);
        let Some((index, entries)) = self.table.take() else {
            return Ok(());
        };
        let sectors = GTES * 4 / SECTOR;
        self.w.put(&marker(sectors, MARKER_GT)).map_err(io)?;
        let at = u32::try_from(self.w.sector).map_err(|_| too_large())?;
        let mut bytes = Vec::with_capacity((sectors * SECTOR) as usize);
        for entry in &entries {
            bytes.extend_from_slice(&entry.to_le_bytes());
        }
        self.w.put(&bytes).map_err(io)?;
        if let Some(slot) = self.directory.get_mut(index as usize) {
            *slot = at;
        }
        Ok(())
    }
}

/// Grain markers with their compressed grains, padded to whole sectors.
fn compress_grains(grains: &[(u64, Vec<u8>)]) -> io::Result<Vec<Vec<u8>>> {
    let mut z = flate2::Compress::new(flate2::Compression::default(), true);
    grains
        .iter()
        .map(|(index, bytes)| {
            z.reset();
            let mut record = Vec::with_capacity(bytes.len() + bytes.len() / 8 + 1024);
            record.extend_from_slice(&(index * GRAIN_SECTORS).to_le_bytes());
            record.extend_from_slice(&[0u8; 4]);
            loop {
                if record.capacity() - record.len() < 256 {
                    record.reserve(record.capacity());
                }
                let consumed = z.total_in() as usize;
                let status = z
                    .compress_vec(
                        &bytes[consumed.min(bytes.len())..],
                        &mut record,
                        flate2::FlushCompress::Finish,
                    )
                    .map_err(|e| io::Error::other(format!("compressing a grain: {e}")))?;
                if status == flate2::Status::StreamEnd {
                    break;
                }
            }
            let len = u32::try_from(record.len() - 12)
                .map_err(|_| io::Error::other("a compressed grain over 4 GiB"))?;
            record[8..12].copy_from_slice(&len.to_le_bytes());
            record.resize(round_up(record.len() as u64, SECTOR) as usize, 0);
            Ok(record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    fn opts() -> VmdkOptions {
        VmdkOptions {
            cid: 0x1234_abcd,
            uuid: Uuid::from_bytes([7; 16]),
            adapter: Adapter::Lsilogic,
            file_name: "disk.vmdk".into(),
            threads: 0,
        }
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// Read a stream back through its footer, directory, tables and grain markers.
    fn read_back(v: &[u8]) -> Vec<u8> {
        let footer = &v[v.len() - 1024..v.len() - 512];
        assert_eq!(&footer[..4], b"KDMV");
        assert_eq!(u32_at(&v[v.len() - 1536..], 12), MARKER_FOOTER);
        assert!(v[v.len() - 512..].iter().all(|b| *b == 0), "EOS marker");
        let capacity = u64_at(footer, 12);
        let gd = u64_at(footer, 56) as usize * 512;
        assert_eq!(u32_at(&v[gd - 512..], 12), MARKER_GD);
        let tables = (capacity * 512).div_ceil(GRAIN).div_ceil(GTES) as usize;
        let mut disk = vec![0u8; capacity as usize * 512];
        for t in 0..tables {
            let gt = u32_at(v, gd + 4 * t) as usize * 512;
            if gt == 0 {
                continue;
            }
            assert_eq!(u32_at(&v[gt - 512..], 12), MARKER_GT);
            for e in 0..GTES as usize {
                let m = u32_at(v, gt + 4 * e) as usize * 512;
                if m == 0 {
                    continue;
                }
                let lba = u64_at(v, m);
                let len = u32_at(v, m + 8) as usize;
                assert_eq!(lba, (t * 512 + e) as u64 * GRAIN_SECTORS);
                let mut grain = Vec::new();
                flate2::read::ZlibDecoder::new(&v[m + 12..m + 12 + len])
                    .read_to_end(&mut grain)
                    .unwrap();
                let at = lba as usize * 512;
                let end = (at + grain.len()).min(disk.len());
                disk[at..end].copy_from_slice(&grain[..end - at]);
            }
        }
        disk
    }

    #[test]
    fn header_descriptor_and_stream_read_back() {
        let mut f = tempfile::tempfile().unwrap();
        let size = 70u64 << 20; // three grain tables, the middle one empty
        f.set_len(size).unwrap();
        for at in [0, 100_000, (69 << 20) + 7] {
            f.seek(SeekFrom::Start(at)).unwrap();
            f.write_all(b"grain data").unwrap();
        }
        let raw = RawDisk::new(&f, size);
        let mut v = Vec::new();
        let written = write_stream_optimized(&raw, &mut v, &opts()).unwrap();
        assert_eq!(written.bytes as usize, v.len());
        // Grains 0, 1 (100,000 is in the second 64 KiB) and one in the last MiB hold data.
        assert_eq!(written.populated, 3 * GRAIN);
        assert_eq!(&v[..4], b"KDMV");
        assert_eq!(u32_at(&v, 4), 3);
        assert_eq!(u32_at(&v, 8), 0x30001);
        assert_eq!(u64_at(&v, 12), size / 512);
        assert_eq!(u64_at(&v, 56), u64::MAX);
        assert_eq!(u64_at(&v, 64) % GRAIN_SECTORS, 0);
        let text = String::from_utf8_lossy(&v[512..2048]);
        assert!(text.contains("createType=\"streamOptimized\""), "{text}");
        assert!(text.contains(&format!("RW {} SPARSE \"disk.vmdk\"", size / 512)));
        assert!(text.contains("CID=1234abcd"));
        assert!(text.contains("ddb.uuid = \"07 07 07 07 07 07 07 07-07 07 07 07 07 07 07 07\""));
        assert!(text.contains("ddb.adapterType = \"lsilogic\""));
        let back = read_back(&v);
        let mut want = vec![0u8; size as usize];
        f.seek(SeekFrom::Start(0)).unwrap();
        f.read_exact(&mut want).unwrap();
        assert!(back == want);
        // The empty middle table is not written.
        let gd = u64_at(&v[v.len() - 1024..], 56) as usize * 512;
        assert_eq!(u32_at(&v, gd + 4), 0);
        assert!(v.len() < 80 << 10, "{} bytes", v.len());
    }

    #[test]
    fn same_disk_same_bytes_and_limits() {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(1 << 20).unwrap();
        f.write_all(&[9u8; 3000]).unwrap();
        let raw = RawDisk::new(&f, 1 << 20);
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_stream_optimized(&raw, &mut a, &opts()).unwrap();
        write_stream_optimized(&raw, &mut b, &opts()).unwrap();
        assert_eq!(a, b);
        for bad in [1000, 0] {
            let raw = RawDisk::new(&f, bad);
            assert!(matches!(
                write_stream_optimized(&raw, Vec::new(), &opts()),
                Err(DiskError::Unrepresentable(_))
            ));
        }
    }

    #[test]
    fn geometry_follows_the_adapter() {
        let mut o = opts();
        o.adapter = Adapter::Ide;
        let text = descriptor(1 << 21, &o);
        assert!(text.contains("ddb.geometry.heads = \"16\""));
        assert!(text.contains("ddb.geometry.cylinders = \"2080\""));
        let text = descriptor(1 << 40, &opts());
        assert!(text.contains("ddb.geometry.cylinders = \"65535\""));
    }
}
