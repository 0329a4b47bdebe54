//! A raw disk as one GNU sparse file in an old-GNU tar archive, the form Google Compute Engine
//! imports (`disk.raw` in a gzipped tar, as `tar --format=oldgnu -S` writes it).
//!
//! Layout: one 512-byte header with typeflag `S` and magic `"ustar  \0"`. Its `size` field holds
//! the bytes stored, `realsize` (offset 483) the file's full size, and a map of up to four
//! (offset, length) data regions (offset 386, 24 bytes each); `isextended` (offset 482) says
//! that extension blocks follow, each with 21 more regions and its own `isextended` at byte
//! 504. Then the regions' bytes back to back, padded to 512, and two zero blocks. Holes are not
//! stored. A file that ends in a hole gets a last region of length zero at its end, which is how
//! GNU tar learns to extend the file to its full size. Numbers that do not fit the octal fields
//! use GNU's base-256 form (a first byte of 0x80, then big-endian binary).

use std::io::{self, Write};

use super::ArchiveError;
use crate::disk::vm::RawDisk;

const BLOCK: usize = 512;
/// Granularity of the data map: runs of 64 KiB blocks holding data are stored, others are holes.
pub const MAP_BLOCK: u64 = 64 << 10;
/// Regions in the main header.
const IN_HEADER: usize = 4;
/// Regions in an extension block.
const IN_EXTENSION: usize = 21;

/// A stored run of bytes: (offset, length).
type Region = (u64, u64);

/// Write `raw` as one GNU sparse file entry named `name` (old GNU format), followed by the
/// end-of-archive blocks, with `mtime` as its modification time. Reads the disk twice: once to
/// map its data, once to copy it. Returns the bytes written.
pub fn write_sparse_disk<W: Write>(
    out: &mut W,
    name: &str,
    raw: &RawDisk<'_>,
    mtime: i64,
) -> Result<u64, ArchiveError> {
    let err = |source| ArchiveError::Write {
        path: name.to_string(),
        source,
    };
    if name.len() > 100 || name.is_empty() {
        return Err(ArchiveError::Unrepresentable {
            path: name.to_string(),
            reason: "an old GNU tar name has 1 to 100 bytes".into(),
        });
    }
    let regions = map(raw).map_err(err)?;
    let stored: u64 = regions.iter().map(|r| r.1).sum();
    let mut written = 0u64;
    let mut put = |out: &mut W, bytes: &[u8]| -> Result<(), ArchiveError> {
        out.write_all(bytes).map_err(err)?;
        written += bytes.len() as u64;
        Ok(())
    };
    let blocks = headers(name, raw.size(), stored, mtime.max(0) as u64, &regions);
    for block in &blocks {
        put(out, block)?;
    }
    let mut buf = vec![0u8; 1 << 20];
    for &(offset, len) in &regions {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            raw.read_at(offset + done, &mut buf[..n]).map_err(err)?;
            put(out, &buf[..n])?;
            done += n as u64;
        }
    }
    let rem = (stored % BLOCK as u64) as usize;
    if rem != 0 {
        put(out, &[0u8; BLOCK][..BLOCK - rem])?;
    }
    put(out, &[0u8; 2 * BLOCK])?;
    Ok(written)
}

/// The data regions of `raw`: runs of [`MAP_BLOCK`] blocks holding data, merged, clipped to the
/// disk's end, plus an empty region at the end when the disk ends in a hole (or is empty).
fn map(raw: &RawDisk<'_>) -> io::Result<Vec<Region>> {
    let size = raw.size();
    let mut regions: Vec<Region> = Vec::new();
    raw.for_each_block(MAP_BLOCK, |index, _| {
        let start = index * MAP_BLOCK;
        let len = MAP_BLOCK.min(size - start);
        match regions.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += len,
            _ => regions.push((start, len)),
        }
        Ok(())
    })?;
    if regions.last().is_none_or(|last| last.0 + last.1 < size) {
        regions.push((size, 0));
    }
    Ok(regions)
}

/// The header block and its extension blocks.
fn headers(name: &str, size: u64, stored: u64, mtime: u64, regions: &[Region]) -> Vec<[u8; BLOCK]> {
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_number(&mut h[100..108], 0o644);
    put_number(&mut h[108..116], 0);
    put_number(&mut h[116..124], 0);
    put_number(&mut h[124..136], stored);
    put_number(&mut h[136..148], mtime);
    h[156] = b'S';
    // Old GNU magic and version: "ustar " then " \0".
    h[257..265].copy_from_slice(b"ustar  \0");
    let (first, rest) = regions.split_at(regions.len().min(IN_HEADER));
    for (i, &(offset, len)) in first.iter().enumerate() {
        let at = 386 + i * 24;
        put_number(&mut h[at..at + 12], offset);
        put_number(&mut h[at + 12..at + 24], len);
    }
    h[482] = u8::from(!rest.is_empty());
    put_number(&mut h[483..495], size);
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut blocks = vec![h];
    let mut chunks = rest.chunks(IN_EXTENSION).peekable();
    while let Some(chunk) = chunks.next() {
        let mut e = [0u8; BLOCK];
        for (i, &(offset, len)) in chunk.iter().enumerate() {
            let at = i * 24;
            put_number(&mut e[at..at + 12], offset);
            put_number(&mut e[at + 12..at + 24], len);
        }
        e[504] = u8::from(chunks.peek().is_some());
        blocks.push(e);
    }
    blocks
}

/// A number in a tar field: octal digits and a NUL when it fits, GNU base-256 otherwise.
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if value < 1u64 << (3 * digits) {
        field[..digits].copy_from_slice(format!("{value:0digits$o}").as_bytes());
        field[digits] = 0;
    } else {
        field.fill(0);
        let len = field.len();
        field[len - 8..].copy_from_slice(&value.to_be_bytes());
        field[0] = 0x80;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    fn disk(size: u64, writes: &[(u64, &[u8])]) -> std::fs::File {
        let mut f = tempfile::tempfile().unwrap();
        f.set_len(size).unwrap();
        for (at, bytes) in writes {
            f.seek(SeekFrom::Start(*at)).unwrap();
            f.write_all(bytes).unwrap();
        }
        f
    }

    /// Parse one field back: octal, or base-256.
    fn number(field: &[u8]) -> u64 {
        if field[0] & 0x80 != 0 {
            field[1..].iter().fold(0, |n, &b| n << 8 | u64::from(b))
        } else {
            let text = std::str::from_utf8(field).unwrap();
            u64::from_str_radix(text.trim_end_matches('\0').trim(), 8).unwrap()
        }
    }

    #[test]
    fn numbers_switch_to_base_256() {
        let mut f = [0u8; 12];
        put_number(&mut f, 0o77_777_777_777);
        assert_eq!(&f, b"77777777777\0");
        put_number(&mut f, 10 << 30);
        assert_eq!(f[0], 0x80);
        assert_eq!(number(&f), 10 << 30);
    }

    #[test]
    fn regions_merge_and_a_trailing_hole_gets_an_empty_region() {
        let f = disk(
            1 << 20,
            &[
                (0, b"a"),
                (70_000, b"b"),
                (200_000, b"c"),
                (900_000, &[0u8; 4]),
            ],
        );
        let raw = RawDisk::new(&f, 1 << 20);
        assert_eq!(
            map(&raw).unwrap(),
            vec![(0, 2 * MAP_BLOCK), (3 * MAP_BLOCK, MAP_BLOCK), (1 << 20, 0)]
        );
        // Data up to the end, in a size that is not a whole block: no empty region.
        let f = disk(100_000, &[(99_999, b"z")]);
        let raw = RawDisk::new(&f, 100_000);
        assert_eq!(map(&raw).unwrap(), vec![(MAP_BLOCK, 100_000 - MAP_BLOCK)]);
        let f = disk(5000, &[]);
        assert_eq!(map(&RawDisk::new(&f, 5000)).unwrap(), vec![(5000, 0)]);
    }

    #[test]
    fn the_tar_crate_reads_the_header_and_the_extension_blocks() {
        // Seven data regions: four in the header, three in one extension block.
        let size = 2 << 20;
        let marks: Vec<(u64, [u8; 3])> = (0..7)
            .map(|i| (i * 4 * MAP_BLOCK + 10, [b'0' + i as u8; 3]))
            .collect();
        let writes: Vec<(u64, &[u8])> = marks.iter().map(|(at, b)| (*at, &b[..])).collect();
        let f = disk(size, &writes);
        let raw = RawDisk::new(&f, size);
        let mut out = Vec::new();
        let n = write_sparse_disk(&mut out, "disk.raw", &raw, 1_700_000_000).unwrap();
        assert_eq!(n as usize, out.len());
        assert_eq!(out.len() % BLOCK, 0);
        assert_eq!(out[482], 1, "isextended");
        assert_eq!(out[BLOCK + 504], 0, "one extension block");
        assert_eq!(number(&out[483..495]), size);
        assert_eq!(number(&out[124..136]), 7 * MAP_BLOCK);
        let mut archive = tar::Archive::new(&out[..]);
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_str(), Some("disk.raw"));
        assert_eq!(entry.header().entry_type(), tar::EntryType::GNUSparse);
        assert_eq!(entry.header().mtime().unwrap(), 1_700_000_000);
        let mut body = Vec::new();
        entry.read_to_end(&mut body).unwrap();
        assert_eq!(body.len() as u64, size);
        let mut expected = vec![0u8; size as usize];
        for (at, bytes) in &marks {
            expected[*at as usize..*at as usize + 3].copy_from_slice(bytes);
        }
        assert!(body == expected);
        drop(entry);
        assert!(entries.next().is_none());
    }
}
