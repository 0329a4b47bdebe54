//! qcow2 version 3 (QEMU's `docs/interop/qcow2.txt`), written in one pass over the raw disk.
//!
//! ```text
//! cluster 0          header (104 bytes, no extensions, no backing file)
//! clusters 1..       the data clusters holding a byte other than zero, in guest order;
//!                    compressed ones (raw deflate) are packed byte after byte
//! then               L2 tables (one per 512 MiB of guest space that holds data), the L1
//!                    table, the refcount blocks (16-bit refcounts) and the refcount table
//! ```
//!
//! Clusters of zeros are not stored: an L2 entry of 0 reads as zeros. Every stored cluster
//! has refcount 1 and the COPIED flag, as QEMU's own writes leave them; a host cluster
//! holding compressed data counts each compressed cluster that touches it. The metadata
//! follows the data, so nothing about the data needs to be known before it is written.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use flate2::Compression;
use flate2::write::DeflateEncoder;

use super::{BATCH, RawDisk, map_parallel, threads};
use crate::disk::DiskError;

/// The cluster size: 64 KiB, QEMU's default.
const CLUSTER_BITS: u32 = 16;
const CLUSTER: u64 = 1 << CLUSTER_BITS;
/// 8-byte entries per L2 table.
const L2_ENTRIES: u64 = CLUSTER / 8;
/// 16-bit refcounts (refcount_order 4) per refcount block.
const REFCOUNTS_PER_BLOCK: u64 = CLUSTER / 2;
/// The table entry flag saying the cluster's refcount is exactly one.
const COPIED: u64 = 1 << 63;
/// The L2 entry flag of a compressed cluster.
const COMPRESSED: u64 = 1 << 62;
/// Where a compressed cluster's sector count starts in its L2 entry: 62 - (cluster_bits - 8).
const CSECTORS_SHIFT: u32 = 62 - (CLUSTER_BITS - 8);

/// The largest virtual size written: 64 TiB (the L1 table then stays within 1 MiB).
pub const MAX_SIZE: u64 = 64 << 40;

/// How the clusters are stored.
#[derive(Debug, Clone, Copy, Default)]
pub struct Qcow2Options {
    /// Store clusters deflate-compressed where that makes them smaller.
    pub compress: bool,
    /// Threads that compress clusters; 0 for one per core. The bytes do not depend on it.
    pub threads: usize,
}

/// Where each guest cluster holding data went: its L2 entry.
struct Mapping {
    guest: u64,
    entry: u64,
}

/// Host clusters written and how often each is referenced (a compressed cluster's data
/// can share a host cluster with others).
#[derive(Default)]
struct Refcounts {
    counts: Vec<u16>,
}

impl Refcounts {
    fn add(&mut self, cluster: u64) -> Result<(), DiskError> {
        let i = usize::try_from(cluster)
            .map_err(|_| DiskError::Unrepresentable("qcow2: the image is too large".into()))?;
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] = self.counts[i].checked_add(1).ok_or_else(|| {
            DiskError::Unrepresentable("qcow2: a cluster's refcount overflowed".into())
        })?;
        Ok(())
    }
}

/// A byte-position-tracking writer over the output file.
struct Out<'a> {
    file: BufWriter<&'a mut File>,
    pos: u64,
}

impl Out<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Pad with zeros to the next cluster boundary.
    fn align(&mut self) -> io::Result<()> {
        let pad = self.pos.next_multiple_of(CLUSTER) - self.pos;
        self.write(&vec![0u8; pad as usize])
    }
}

fn io_err(e: io::Error) -> DiskError {
    DiskError::io("writing the qcow2 image", e)
}

/// The number of clusters `bytes` take.
fn clusters(bytes: u64) -> u64 {
    bytes.div_ceil(CLUSTER)
}

/// Deflate `data` (raw, as qcow2's zlib compression type stores it); `None` when it does
/// not end at least one sector smaller than the cluster.
fn deflate(data: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut enc = DeflateEncoder::new(Vec::with_capacity(data.len() / 2), Compression::new(6));
    enc.write_all(data)?;
    let out = enc.finish()?;
    Ok((out.len() as u64 + 512 <= CLUSTER).then_some(out))
}

/// The data clusters being written: where they went and the host clusters they take.
struct Data<'a> {
    w: Out<'a>,
    refs: Refcounts,
    map: Vec<Mapping>,
}

impl Data<'_> {
    /// Store guest cluster `guest` holding `bytes`, as `packed` (its deflated form) when given.
    fn store(&mut self, guest: u64, bytes: &[u8], packed: Option<&[u8]>) -> io::Result<()> {
        let w = &mut self.w;
        let entry = match packed {
            Some(packed) => {
                let start = w.pos;
                let end = start + packed.len() as u64;
                for c in start / CLUSTER..=(end - 1) / CLUSTER {
                    self.refs.add(c).map_err(io::Error::other)?;
                }
                let extra_sectors = (end - 1) / 512 - start / 512;
                w.write(packed)?;
                COMPRESSED | (extra_sectors << CSECTORS_SHIFT) | start
            }
            None => {
                w.align()?;
                let start = w.pos;
                self.refs.add(start / CLUSTER).map_err(io::Error::other)?;
                w.write(bytes)?;
                COPIED | start
            }
        };
        self.map.push(Mapping { guest, entry });
        Ok(())
    }
}

/// Write `raw` as a qcow2 image into `out` (an empty file). Returns the file's length.
pub fn write(raw: &RawDisk<'_>, out: &mut File, opts: &Qcow2Options) -> Result<u64, DiskError> {
    if raw.size() > MAX_SIZE {
        return Err(DiskError::Unrepresentable(format!(
            "qcow2: a virtual size of {} bytes is more than the {} bytes written",
            raw.size(),
            MAX_SIZE
        )));
    }
    let mut data = Data {
        w: Out {
            file: BufWriter::with_capacity(1 << 20, out),
            pos: 0,
        },
        refs: Refcounts::default(),
        map: Vec::new(),
    };
    // Cluster 0 is the header, written last.
    data.w.write(&[0u8; CLUSTER as usize]).map_err(io_err)?;
    data.refs.add(0)?;

    if opts.compress {
        // Clusters are deflated a batch at a time on every core, and stored in order.
        let mut batch: Vec<(u64, Vec<u8>)> = Vec::with_capacity(BATCH);
        let threads = threads(opts.threads);
        let flush = |data: &mut Data<'_>, batch: &mut Vec<(u64, Vec<u8>)>| {
            let packed = map_parallel(batch, threads, |part| {
                part.iter().map(|(_, bytes)| deflate(bytes)).collect()
            })?;
            for ((guest, bytes), packed) in batch.drain(..).zip(packed) {
                data.store(guest, &bytes, packed.as_deref())?;
            }
            Ok::<(), io::Error>(())
        };
        raw.for_each_block(CLUSTER, |guest, bytes| {
            batch.push((guest, bytes.to_vec()));
            if batch.len() == BATCH {
                flush(&mut data, &mut batch)?;
            }
            Ok(())
        })
        .map_err(io_err)?;
        flush(&mut data, &mut batch).map_err(io_err)?;
    } else {
        raw.for_each_block(CLUSTER, |guest, bytes| data.store(guest, bytes, None))
            .map_err(io_err)?;
    }
    let Data {
        mut w,
        mut refs,
        map,
    } = data;
    w.align().map_err(io_err)?;

    // L2 tables: one for each L1 entry that maps data, written in guest order.
    let l1_size = raw.size().div_ceil(CLUSTER * L2_ENTRIES);
    let mut l1 = vec![0u64; l1_size as usize];
    let mut table = vec![0u64; L2_ENTRIES as usize];
    let mut i = 0;
    while i < map.len() {
        let l1_index = map[i].guest / L2_ENTRIES;
        table.fill(0);
        while i < map.len() && map[i].guest / L2_ENTRIES == l1_index {
            table[(map[i].guest % L2_ENTRIES) as usize] = map[i].entry;
            i += 1;
        }
        l1[l1_index as usize] = COPIED | w.pos;
        refs.add(w.pos / CLUSTER)?;
        w.write(&be_u64s(&table)).map_err(io_err)?;
    }

    // The L1 table.
    let l1_offset = w.pos;
    for c in 0..clusters(l1_size * 8).max(1) {
        refs.add(l1_offset / CLUSTER + c)?;
    }
    w.write(&be_u64s(&l1)).map_err(io_err)?;
    w.align().map_err(io_err)?;

    // Refcount blocks and table: they count themselves, so size them to a fixed point.
    let first = w.pos / CLUSTER;
    let (mut blocks, mut table_clusters) = (0u64, 0u64);
    loop {
        let total = first + blocks + table_clusters;
        let b = total.div_ceil(REFCOUNTS_PER_BLOCK);
        let t = clusters(b * 8);
        if (b, t) == (blocks, table_clusters) {
            break;
        }
        (blocks, table_clusters) = (b, t);
    }
    for c in first..first + blocks + table_clusters {
        refs.add(c)?;
    }
    let blocks_offset = w.pos;
    for b in 0..blocks {
        let from = (b * REFCOUNTS_PER_BLOCK) as usize;
        let mut block = vec![0u8; CLUSTER as usize];
        for (k, count) in refs
            .counts
            .iter()
            .skip(from)
            .take(REFCOUNTS_PER_BLOCK as usize)
            .enumerate()
        {
            block[k * 2..k * 2 + 2].copy_from_slice(&count.to_be_bytes());
        }
        w.write(&block).map_err(io_err)?;
    }
    let table_offset = w.pos;
    let entries: Vec<u64> = (0..blocks).map(|b| blocks_offset + b * CLUSTER).collect();
    w.write(&be_u64s(&entries)).map_err(io_err)?;
    w.align().map_err(io_err)?;
    let len = w.pos;

    let header = header(raw.size(), l1_size, l1_offset, table_offset, table_clusters);
    let file = w.file.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    file.write_all(&header).map_err(io_err)?;
    file.flush().map_err(io_err)?;
    Ok(len)
}

/// `values` as big-endian bytes.
fn be_u64s(values: &[u64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

/// The version 3 header: no backing file, no encryption, no snapshots, no features,
/// 16-bit refcounts, zlib (deflate) compression, followed by the end-of-extensions marker.
fn header(
    size: u64,
    l1_size: u64,
    l1_offset: u64,
    refcount_table: u64,
    refcount_table_clusters: u64,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(112);
    h.extend_from_slice(b"QFI\xfb");
    h.extend_from_slice(&3u32.to_be_bytes()); // version
    h.extend_from_slice(&0u64.to_be_bytes()); // backing file offset
    h.extend_from_slice(&0u32.to_be_bytes()); // backing file name size
    h.extend_from_slice(&CLUSTER_BITS.to_be_bytes());
    h.extend_from_slice(&size.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // encryption
    h.extend_from_slice(&(l1_size as u32).to_be_bytes());
    h.extend_from_slice(&l1_offset.to_be_bytes());
    h.extend_from_slice(&refcount_table.to_be_bytes());
    h.extend_from_slice(&(refcount_table_clusters as u32).to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes()); // snapshots
    h.extend_from_slice(&0u64.to_be_bytes()); // snapshots offset
    h.extend_from_slice(&0u64.to_be_bytes()); // incompatible features
    h.extend_from_slice(&0u64.to_be_bytes()); // compatible features
    h.extend_from_slice(&0u64.to_be_bytes()); // autoclear features
    h.extend_from_slice(&4u32.to_be_bytes()); // refcount order: 16 bits
    h.extend_from_slice(&104u32.to_be_bytes()); // header length
    h.extend_from_slice(&[0u8; 8]); // end of header extensions
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn be64(b: &[u8], at: usize) -> u64 {
        u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
    }

    fn image(data: &[(u64, &[u8])], size: u64, compress: bool) -> Vec<u8> {
        let mut raw = tempfile::tempfile().unwrap();
        raw.set_len(size).unwrap();
        for (at, bytes) in data {
            raw.seek(SeekFrom::Start(*at)).unwrap();
            raw.write_all(bytes).unwrap();
        }
        let mut out = tempfile::tempfile().unwrap();
        let len = write(
            &RawDisk::new(&raw, size),
            &mut out,
            &Qcow2Options {
                compress,
                threads: 0,
            },
        )
        .unwrap();
        let mut bytes = Vec::new();
        out.seek(SeekFrom::Start(0)).unwrap();
        out.read_to_end(&mut bytes).unwrap();
        assert_eq!(bytes.len() as u64, len);
        bytes
    }

    /// The L2 entry of guest cluster `c`, following the tables as a reader does.
    fn l2_entry(img: &[u8], c: u64) -> u64 {
        let l1 = be64(img, 40) as usize;
        let l2 = be64(img, l1 + (c / L2_ENTRIES) as usize * 8) & !COPIED;
        if l2 == 0 {
            return 0;
        }
        be64(img, l2 as usize + (c % L2_ENTRIES) as usize * 8)
    }

    #[test]
    fn header_says_version_3_and_the_size() {
        let img = image(&[(0, b"boot")], 3 << 30, false);
        assert_eq!(&img[..4], b"QFI\xfb");
        assert_eq!(u32::from_be_bytes(img[4..8].try_into().unwrap()), 3);
        assert_eq!(u32::from_be_bytes(img[20..24].try_into().unwrap()), 16);
        assert_eq!(be64(&img, 24), 3 << 30);
        // 3 GiB need 6 L1 entries of 512 MiB each.
        assert_eq!(u32::from_be_bytes(img[36..40].try_into().unwrap()), 6);
        assert_eq!(u32::from_be_bytes(img[100..104].try_into().unwrap()), 104);
    }

    #[test]
    fn only_clusters_with_data_are_stored() {
        let far = (1u64 << 30) + 5 * CLUSTER + 7;
        let img = image(&[(0, b"first"), (far, b"far")], 2 << 30, false);
        // Header, two data clusters, two L2 tables, L1, one refcount block, the table.
        assert_eq!(img.len() as u64, 8 * CLUSTER);
        let e = l2_entry(&img, 0);
        assert_eq!(e & COPIED, COPIED);
        assert_eq!(&img[(e & !COPIED) as usize..][..5], b"first");
        let e = l2_entry(&img, far / CLUSTER);
        assert_eq!(&img[(e & !COPIED) as usize + 7..][..3], b"far");
        assert_eq!(l2_entry(&img, 1), 0);
    }

    #[test]
    fn compressed_clusters_inflate_back() {
        let text = b"osbuild ".repeat(8192);
        let img = image(&[(CLUSTER, &text)], 16 << 20, true);
        let e = l2_entry(&img, 1);
        assert_eq!(e & COMPRESSED, COMPRESSED);
        let offset = (e & ((1 << CSECTORS_SHIFT) - 1)) as usize;
        let sectors = ((e >> CSECTORS_SHIFT) & 0xff) as usize + 1;
        let stored = &img[offset..(offset & !511) + sectors * 512];
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(stored)
            .take(CLUSTER)
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, text);
    }

    #[test]
    fn refcounts_cover_every_cluster_written() {
        let img = image(&[(0, b"a"), (9 * CLUSTER, b"b")], 64 << 20, false);
        let table = be64(&img, 48) as usize;
        let block = be64(&img, table) as usize;
        let n = img.len() / CLUSTER as usize;
        for c in 0..n {
            let count =
                u16::from_be_bytes(img[block + c * 2..block + c * 2 + 2].try_into().unwrap());
            assert_eq!(count, 1, "cluster {c}");
        }
        assert_eq!(
            u16::from_be_bytes(img[block + n * 2..block + n * 2 + 2].try_into().unwrap()),
            0
        );
    }

    #[test]
    fn too_large_is_refused() {
        let raw = tempfile::tempfile().unwrap();
        let mut out = tempfile::tempfile().unwrap();
        let err = write(
            &RawDisk::new(&raw, MAX_SIZE + 1),
            &mut out,
            &Qcow2Options::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("qcow2"), "{err}");
    }
}
