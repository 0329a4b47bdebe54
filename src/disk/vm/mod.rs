//! VM disk image containers written over a raw disk: qcow2 ([`qcow2`]), fixed and dynamic VHD
//! ([`vhd`]), VHDX ([`vhdx`]) and streamOptimized VMDK ([`vmdk`]). Each writer reads the raw
//! disk once or twice through [`RawDisk`], which skips holes and blocks of zeros, so what a
//! container stores follows the data and not the disk's size.

pub mod ovf;
pub mod qcow2;
pub mod vhd;
pub mod vhdx;
pub mod vmdk;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// A raw disk image in a (usually sparse) file: `size` bytes from offset 0.
#[derive(Debug, Clone, Copy)]
pub struct RawDisk<'a> {
    file: &'a File,
    size: u64,
}

impl<'a> RawDisk<'a> {
    /// The first `size` bytes of `file`.
    pub fn new(file: &'a File, size: u64) -> RawDisk<'a> {
        RawDisk { file, size }
    }

    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Fill `buf` from `offset`; bytes past the end of the disk read as zeros.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let inside = usize::try_from(self.size.saturating_sub(offset))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let (head, tail) = buf.split_at_mut(inside);
        self.file.read_exact_at(head, offset)?;
        tail.fill(0);
        Ok(())
    }

    /// The start of the next region at or after `offset` the file may hold data in (holes are
    /// skipped with `SEEK_DATA`), or `None` past the last data.
    fn next_data(&self, offset: u64) -> io::Result<Option<u64>> {
        if offset >= self.size {
            return Ok(None);
        }
        match rustix::fs::seek(self.file, rustix::fs::SeekFrom::Data(offset)) {
            Ok(at) => Ok(Some(at).filter(|at| *at < self.size)),
            // No data at or after `offset`.
            Err(rustix::io::Errno::NXIO) => Ok(None),
            // A filesystem without SEEK_DATA: every byte may be data.
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => Ok(Some(offset)),
            Err(e) => Err(e.into()),
        }
    }

    /// The end of the data region that holds `offset` (the next hole, or the disk's end).
    fn data_end(&self, offset: u64) -> io::Result<u64> {
        match rustix::fs::seek(self.file, rustix::fs::SeekFrom::Hole(offset)) {
            Ok(at) => Ok(at.min(self.size)),
            Err(rustix::io::Errno::INVAL | rustix::io::Errno::OPNOTSUPP) => Ok(self.size),
            Err(e) => Err(e.into()),
        }
    }

    /// Call `each` with the index and bytes of every `block`-byte block holding a byte other
    /// than zero, in order. The last block is padded with zeros. Holes are never read, so a
    /// mostly empty disk of any size costs only its data.
    pub fn for_each_block(
        &self,
        block: u64,
        mut each: impl FnMut(u64, &[u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let len = usize::try_from(block).map_err(|_| io::Error::other("block too large"))?;
        let mut buf = vec![0u8; len];
        let mut index = 0u64;
        while let Some(data) = self.next_data(index * block)? {
            index = data / block;
            let end = self.data_end(data)?;
            while index * block < end {
                self.read_at(index * block, &mut buf)?;
                if buf.iter().any(|b| *b != 0) {
                    each(index, &buf)?;
                }
                index += 1;
            }
        }
        Ok(())
    }

    /// The indices of the `block`-byte blocks holding a byte other than zero, in order.
    pub fn allocated(&self, block: u64) -> io::Result<Vec<u64>> {
        let mut out = Vec::new();
        self.for_each_block(block, |i, _| {
            out.push(i);
            Ok(())
        })?;
        Ok(out)
    }

    /// The number of `block`-byte blocks the disk spans.
    pub fn blocks(&self, block: u64) -> u64 {
        self.size.div_ceil(block)
    }
}

/// Blocks that compressing writers gather before compressing them on every core: 256 blocks
/// of 64 KiB, 16 MiB in flight.
pub(crate) const BATCH: usize = 256;

/// `each` applied to `items` cut into one run per thread (at most `threads`), the results
/// in the order of `items`. The output does not depend on the number of threads.
pub(crate) fn map_parallel<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    each: impl Fn(&[T]) -> io::Result<Vec<R>> + Sync,
) -> io::Result<Vec<R>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let per_thread = items.len().div_ceil(threads.max(1));
    let each = &each;
    let parts: Vec<io::Result<Vec<R>>> = std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per_thread)
            .map(|part| s.spawn(move || each(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(io::Error::other("a compression thread failed")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(items.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// The number of threads a compressing writer uses: `requested`, or one per core for 0.
pub(crate) fn threads(requested: usize) -> usize {
    match requested {
        0 => crate::archive::compress::available_threads(),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom, Write};

    #[test]
    fn finds_only_blocks_with_data() {
        let mut file = tempfile::tempfile().unwrap();
        let size = 64 << 20;
        file.set_len(size).unwrap();
        // Data in block 0, a written block of zeros at 10, data at the very end.
        file.write_all(b"x").unwrap();
        file.seek(SeekFrom::Start(10 << 16)).unwrap();
        file.write_all(&[0u8; 1 << 16]).unwrap();
        file.seek(SeekFrom::Start(size - 1)).unwrap();
        file.write_all(b"y").unwrap();
        let raw = RawDisk::new(&file, size);
        assert_eq!(raw.allocated(1 << 16).unwrap(), vec![0, (size >> 16) - 1]);
        let mut last = Vec::new();
        raw.for_each_block(1 << 20, |i, b| {
            last = vec![i as u8, b[0], b[b.len() - 1]];
            Ok(())
        })
        .unwrap();
        assert_eq!(last, vec![63, 0, b'y']);
    }

    #[test]
    fn parallel_results_keep_their_order_whatever_the_threads() {
        let items: Vec<u32> = (0..1000).collect();
        let double = |part: &[u32]| Ok(part.iter().map(|x| x * 2).collect());
        let one = map_parallel(&items, 1, double).unwrap();
        for threads in [2, 3, 7, 64] {
            assert_eq!(map_parallel(&items, threads, double).unwrap(), one);
        }
        assert_eq!(one[999], 1998);
        let failing = map_parallel(&items, 4, |part: &[u32]| {
            if part.contains(&600) {
                Err(io::Error::other("no"))
            } else {
                Ok(part.to_vec())
            }
        });
        assert!(failing.is_err());
    }

    #[test]
    fn a_short_last_block_reads_as_zeros_past_the_end() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(&[7u8; 1000]).unwrap();
        let raw = RawDisk::new(&file, 1000);
        let mut seen = Vec::new();
        raw.for_each_block(512, |i, b| {
            seen.push((i, b.iter().filter(|x| **x == 7).count()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![(0, 512), (1, 488)]);
        assert_eq!(raw.blocks(512), 2);
    }
}
