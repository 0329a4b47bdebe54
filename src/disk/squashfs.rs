//! Write a [`Tree`] as a squashfs 4.0 image, the compressed read-only filesystem the Linux
//! kernel mounts directly (`mount -t squashfs`, or as a root device).
//!
//! # Why our own writer and not `backhand`
//!
//! `backhand` (the maintained Rust squashfs crate) was checked first. Its `FilesystemWriter`
//! would do on memory (it streams each file block by block to the output and keeps only the
//! metadata) and on determinism (the time is settable, nodes are sorted), but it cannot write
//! what our trees hold:
//! - **no hardlinks**: every pushed path becomes its own inode with a link count of 1;
//! - **no extended attributes**: the writer fills every inode's xattr field with "none" and
//!   writes no xattr table (its `TODO(#32)`), so `security.capability` would be lost;
//! - its duplicate-file detection (on by default) keys files on a hash of their *first block*
//!   only (in the `v4/data.rs` read), so two files that differ after it could share data;
//! - it panics on a bad block size and in some internal states, and compresses on one thread.
//!
//! The format is small enough to write directly; the facts used are those of the kernel's
//! `Documentation/filesystems/squashfs.rst` and the checks of its `fs/squashfs` reader.
//!
//! # Layout written
//!
//! ```text
//! superblock (96 bytes)
//! data blocks of each file in walk order, fragment blocks in between
//! inode table, directory table                      (8 KiB metadata blocks)
//! fragment table: entries, then their block index   (when there are fragments)
//! id table: uids/gids, then the block index
//! xattr table: key/value blocks, id blocks, header and block index (when there are xattrs)
//! zero padding to a multiple of 4 KiB (for loop devices)
//! ```
//!
//! The tables follow one another without gaps in exactly this order: the kernel checks that
//! each index ends where the next table starts.
//!
//! # Properties
//!
//! - **Everything the tree holds**: directories, regular files, symlinks, character and block
//!   devices, fifos; hardlinks (a shared [`Leaf`]) are one inode with the right link count;
//!   uid/gid, permission bits with setuid/setgid/sticky, mtimes (clamped to
//!   [`SquashfsOptions::mtime_clamp`]), and `user.*`, `trusted.*` and `security.*` extended
//!   attributes (identical sets are stored once). Other xattr namespaces cannot be stored in
//!   squashfs (the kernel knows only these three) and are an error.
//! - **Deterministic**: entries in byte order of their names, inode numbers in walk order (the
//!   root is 1), the superblock time from the options, no clocks, no thread-order effects
//!   (blocks are compressed in parallel but written in order).
//! - **Small memory**: file bodies are streamed block by block (a bounded number of blocks are
//!   in flight between the reader, the compressing threads and the output); what stays in
//!   memory is the metadata: one record per regular file (its block sizes), and the inode,
//!   directory, fragment, id and xattr tables, compressed as they grow.
//! - Files of one block or less, and the tails of longer ones, are packed into shared
//!   fragment blocks; all-zero blocks are stored as holes (sparse), as mksquashfs does.
//!   Identical files are not deduplicated (hardlinks are).
//! - Nothing in the tree makes it panic: what squashfs cannot hold is an error naming the path.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};

use crate::tree::{Content, Directory, Inode, Leaf, LeafKind, Meta, Tree, TreePath, WalkEntry};

/// Size of the uncompressed metadata blocks the tables are cut into.
const METADATA_SIZE: usize = 8192;
/// Set in a metadata block's 16-bit header when the block is stored uncompressed.
const METADATA_UNCOMPRESSED: u16 = 1 << 15;
/// Set in a data or fragment block's 32-bit size when the block is stored uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 1 << 24;
/// "No fragment", "no xattrs", "no table".
const INVALID_FRAG: u32 = 0xffff_ffff;
const INVALID_XATTR: u32 = 0xffff_ffff;
const INVALID_TABLE: u64 = 0xffff_ffff_ffff_ffff;
/// Superblock flag: tails of files longer than a block go into fragments too.
const FLAG_ALWAYS_FRAGMENTS: u16 = 0x0020;
/// The image is padded to a multiple of this, like mksquashfs does, so that a loop device
/// (whose size is rounded down to whole sectors) sees all of it.
const PAD_TO: u64 = 4096;
/// Longest name in a directory.
const NAME_MAX: usize = 256;
/// Most entries under one directory header.
const DIR_HEADER_MAX: usize = 256;
/// Longest symlink target the kernel reads (it refuses targets longer than a page).
const SYMLINK_MAX: usize = 4096;

/// Inode types (the basic ones are also the directory entry types).
const T_DIR: u16 = 1;
const T_REG: u16 = 2;
const T_SYMLINK: u16 = 3;
const T_BLKDEV: u16 = 4;
const T_CHRDEV: u16 = 5;
const T_FIFO: u16 = 6;
/// Extended types are the basic ones plus this.
const T_EXTENDED: u16 = 7;

/// gzip level, as mksquashfs's default.
const GZIP_LEVEL: u32 = 9;
/// zstd level, as mksquashfs's default. On a 587 MiB tree of libraries and binaries,
/// 128 KiB blocks: level 15 gives 162 MB, level 9 173 MB at a tenth of the time, gzip 9 182 MB.
const ZSTD_LEVEL: i32 = 15;

/// How blocks are compressed. All are read by the Linux kernel when its squashfs driver is
/// built with the matching option (`CONFIG_SQUASHFS_ZLIB`, `CONFIG_SQUASHFS_ZSTD`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SquashfsCompression {
    /// zlib streams (squashfs calls it gzip), level 9 as mksquashfs; every kernel reads it.
    #[default]
    Gzip,
    /// zstd frames at level 15 as mksquashfs; kernels from 4.14 read it.
    Zstd,
}

impl SquashfsCompression {
    /// The superblock's compressor id.
    fn id(self) -> u16 {
        match self {
            SquashfsCompression::Gzip => 1,
            SquashfsCompression::Zstd => 6,
        }
    }
}

/// How a squashfs image is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SquashfsOptions {
    /// The compressor of data and metadata blocks.
    pub compression: SquashfsCompression,
    /// Later mtimes become this one (`SOURCE_DATE_EPOCH`).
    pub mtime_clamp: Option<i64>,
    /// The superblock's creation time (seconds since the epoch).
    pub mtime: i64,
    /// Data block size: a power of two from 4 KiB to 1 MiB.
    pub block_size: u32,
    /// Threads that compress blocks; 0 for one per core (at most 8). The bytes do not
    /// depend on it.
    pub threads: usize,
}

impl Default for SquashfsOptions {
    /// gzip, 128 KiB blocks, no clamp, time 0: mksquashfs's defaults with a fixed time.
    fn default() -> Self {
        SquashfsOptions {
            compression: SquashfsCompression::Gzip,
            mtime_clamp: None,
            mtime: 0,
            block_size: 128 * 1024,
            threads: 0,
        }
    }
}

impl SquashfsOptions {
    /// The mtime written for an entry whose mtime is `mtime`.
    fn entry_mtime(&self, mtime: i64) -> i64 {
        match self.mtime_clamp {
            Some(clamp) if mtime > clamp => clamp,
            _ => mtime,
        }
    }
}

/// Why a squashfs image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum SquashfsError {
    /// The options cannot make an image.
    #[error("squashfs options: {0}")]
    Options(String),
    /// Reading an entry's body failed.
    #[error("{path}")]
    Read {
        /// The entry concerned.
        path: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// A file body was shorter or longer than the tree says (its source changed under us).
    #[error("{path}: expected {expected} bytes, read {read}")]
    SizeChanged {
        /// The entry.
        path: String,
        /// The size the tree holds.
        expected: u64,
        /// The bytes read (at least).
        read: u64,
    },
    /// Squashfs cannot hold this entry.
    #[error("{path}: {reason}")]
    Unrepresentable {
        /// The entry (`/` for the root).
        path: String,
        /// Which limit it exceeds.
        reason: String,
    },
    /// Writing the image (or compressing into it) failed.
    #[error("writing the squashfs image")]
    Write(#[source] io::Error),
}

fn unrepresentable(path: &TreePath, reason: impl Into<String>) -> SquashfsError {
    SquashfsError::Unrepresentable {
        path: display(path),
        reason: reason.into(),
    }
}

fn display(path: &TreePath) -> String {
    if path.is_root() {
        "/".to_string()
    } else {
        path.to_string()
    }
}

/// Write `tree` to `out` as a squashfs 4.0 image starting at `out`'s current position.
/// Returns the bytes written, padding included (the image's size on disk).
pub fn write_squashfs<W: Write + Seek>(
    tree: &Tree,
    out: &mut W,
    opts: &SquashfsOptions,
) -> Result<u64, SquashfsError> {
    let bs = opts.block_size;
    if !bs.is_power_of_two() || !(4096..=1 << 20).contains(&bs) {
        return Err(SquashfsError::Options(format!(
            "block size {bs} is not a power of two from 4096 to 1048576"
        )));
    }
    let mkfs_time = u32::try_from(opts.mtime).map_err(|_| {
        SquashfsError::Options(format!(
            "time {} does not fit squashfs's unsigned 32-bit seconds",
            opts.mtime
        ))
    })?;

    // Pass 1: check every entry, count the names of shared leaves, collect the ids.
    let survey = survey(tree, opts)?;

    let base = out.stream_position().map_err(SquashfsError::Write)?;
    let mut sink = Sink { out, pos: 0 };
    sink.write(&[0u8; SUPERBLOCK_SIZE])?;

    // Pass 2: file bodies, in walk order, compressed in parallel, written in order.
    let data = write_data(tree, &survey, opts, &mut sink)?;

    // Pass 3: inodes and directories, bottom up, into tables kept in memory.
    let codec = Codec::new(opts.compression)?;
    let mut meta = MetaPass {
        opts,
        survey: &survey,
        files: &data.files,
        next_file: 0,
        next_ino: 1,
        written: HashMap::new(),
        inodes: MetadataWriter::new(),
        dirs: MetadataWriter::new(),
        xattrs: XattrWriter::default(),
        codec,
    };
    let root_ino = meta.take_ino(&TreePath::root())?;
    let mut path = TreePath::root();
    let root = meta.write_dir(&tree.root, &mut path, root_ino, None)?;
    let inode_count = meta.next_ino - 1;

    // The tables, each one right after the other.
    let MetaPass {
        inodes,
        dirs,
        xattrs,
        mut codec,
        ..
    } = meta;
    let inode_table_start = sink.pos;
    let (inode_bytes, _) = inodes.finish(&mut codec)?;
    sink.write(&inode_bytes)?;
    let directory_table_start = sink.pos;
    let (mut dir_bytes, _) = dirs.finish(&mut codec)?;
    if dir_bytes.is_empty() {
        // Only an empty root has no listing. The kernel wants the directory table to start
        // before the next table, so give it one empty metadata block.
        dir_bytes.extend_from_slice(&METADATA_UNCOMPRESSED.to_le_bytes());
    }
    sink.write(&dir_bytes)?;

    let fragment_table_start = if data.fragments.is_empty() {
        INVALID_TABLE
    } else {
        let mut entries = Vec::with_capacity(data.fragments.len() * 16);
        for (start, size) in &data.fragments {
            entries.extend_from_slice(&start.to_le_bytes());
            entries.extend_from_slice(&size.to_le_bytes());
            entries.extend_from_slice(&0u32.to_le_bytes());
        }
        write_lookup_table(&mut sink, &entries, &mut codec)?
    };

    let mut id_entries = Vec::with_capacity(survey.ids.len() * 4);
    for id in survey.ids.keys() {
        id_entries.extend_from_slice(&id.to_le_bytes());
    }
    let id_table_start = write_lookup_table(&mut sink, &id_entries, &mut codec)?;

    let xattr_id_table_start = if xattrs.ids.is_empty() {
        INVALID_TABLE
    } else {
        let kv_start = sink.pos;
        let (kv_bytes, _) = xattrs.kv.finish(&mut codec)?;
        sink.write(&kv_bytes)?;
        let mut entries = Vec::with_capacity(xattrs.ids.len() * 16);
        for (reference, count, size) in &xattrs.ids {
            entries.extend_from_slice(&reference.to_le_bytes());
            entries.extend_from_slice(&count.to_le_bytes());
            entries.extend_from_slice(&size.to_le_bytes());
        }
        let ids_start = sink.pos;
        let (id_bytes, blocks) = metadata_blocks(&entries, &mut codec)?;
        sink.write(&id_bytes)?;
        let header_start = sink.pos;
        let count = u32::try_from(xattrs.ids.len())
            .map_err(|_| unrepresentable(&TreePath::root(), "more than 2^32 xattr sets"))?;
        let mut header = Vec::with_capacity(16 + blocks.len() * 8);
        header.extend_from_slice(&kv_start.to_le_bytes());
        header.extend_from_slice(&count.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        for block in blocks {
            header.extend_from_slice(&(ids_start + block).to_le_bytes());
        }
        sink.write(&header)?;
        header_start
    };

    let bytes_used = sink.pos;
    let padded = bytes_used.div_ceil(PAD_TO) * PAD_TO;
    let padding = (padded - bytes_used) as usize;
    sink.write(&[0u8; PAD_TO as usize][..padding])?;

    let fragments = u32::try_from(data.fragments.len())
        .map_err(|_| unrepresentable(&TreePath::root(), "more than 2^32 fragment blocks"))?;
    let no_ids = u16::try_from(survey.ids.len()).map_err(|_| {
        unrepresentable(&TreePath::root(), "more than 65535 distinct uids and gids")
    })?;
    let sb = Superblock {
        inodes: inode_count,
        mkfs_time,
        block_size: bs,
        fragments,
        compression: opts.compression.id(),
        block_log: bs.trailing_zeros() as u16,
        flags: FLAG_ALWAYS_FRAGMENTS,
        no_ids,
        root_inode: root.reference,
        bytes_used,
        id_table_start,
        xattr_id_table_start,
        inode_table_start,
        directory_table_start,
        fragment_table_start,
        lookup_table_start: INVALID_TABLE,
    };
    let end = base + sink.pos;
    let out = sink.out;
    out.seek(SeekFrom::Start(base))
        .map_err(SquashfsError::Write)?;
    out.write_all(&sb.to_bytes())
        .map_err(SquashfsError::Write)?;
    out.seek(SeekFrom::Start(end))
        .map_err(SquashfsError::Write)?;
    Ok(padded)
}

/// Counts what is written to the output.
struct Sink<'a, W: Write> {
    out: &'a mut W,
    pos: u64,
}

impl<W: Write> Sink<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), SquashfsError> {
        self.out.write_all(bytes).map_err(SquashfsError::Write)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

const SUPERBLOCK_SIZE: usize = 96;

struct Superblock {
    inodes: u32,
    mkfs_time: u32,
    block_size: u32,
    fragments: u32,
    compression: u16,
    block_log: u16,
    flags: u16,
    no_ids: u16,
    root_inode: u64,
    bytes_used: u64,
    id_table_start: u64,
    xattr_id_table_start: u64,
    inode_table_start: u64,
    directory_table_start: u64,
    fragment_table_start: u64,
    lookup_table_start: u64,
}

impl Superblock {
    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(SUPERBLOCK_SIZE);
        b.extend_from_slice(b"hsqs");
        for v in [self.inodes, self.mkfs_time, self.block_size, self.fragments] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.compression,
            self.block_log,
            self.flags,
            self.no_ids,
            4,
            0,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        for v in [
            self.root_inode,
            self.bytes_used,
            self.id_table_start,
            self.xattr_id_table_start,
            self.inode_table_start,
            self.directory_table_start,
            self.fragment_table_start,
            self.lookup_table_start,
        ] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b
    }
}

// ---------------------------------------------------------------------------------------------
// Compression

/// One compressor, reused block after block.
enum Codec {
    Zlib(flate2::Compress),
    Zstd(Box<zstd::bulk::Compressor<'static>>),
}

impl Codec {
    fn new(compression: SquashfsCompression) -> Result<Self, SquashfsError> {
        Ok(match compression {
            SquashfsCompression::Gzip => Codec::Zlib(flate2::Compress::new(
                flate2::Compression::new(GZIP_LEVEL),
                true,
            )),
            SquashfsCompression::Zstd => Codec::Zstd(Box::new(
                zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(SquashfsError::Write)?,
            )),
        })
    }

    /// Compress `data` into `out` (cleared first). True when the result is smaller than
    /// `data`; otherwise the block is to be stored as it is and `out` means nothing.
    fn compress(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        out.clear();
        out.reserve(data.len());
        match self {
            Codec::Zlib(c) => {
                c.reset();
                // Output space is capped at the input's size: a stream that does not end
                // within it is not worth compressing.
                matches!(
                    c.compress_vec(data, out, flate2::FlushCompress::Finish),
                    Ok(flate2::Status::StreamEnd)
                ) && out.len() < data.len()
            }
            // An error (the output would not fit) means: store it as it is.
            Codec::Zstd(c) => c.compress_to_buffer(data, out).is_ok() && out.len() < data.len(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata blocks

/// A table cut into 8 KiB metadata blocks, each compressed when full. Positions in it are
/// "references": the compressed offset of the block (from the table's start) shifted left by
/// 16, plus the offset inside the uncompressed block.
struct MetadataWriter {
    table: Vec<u8>,
    block: Vec<u8>,
    block_starts: Vec<u64>,
    scratch: Vec<u8>,
}

impl MetadataWriter {
    fn new() -> Self {
        MetadataWriter {
            table: Vec::new(),
            block: Vec::with_capacity(METADATA_SIZE),
            block_starts: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// The compressed offset of the current block and the offset inside it.
    fn position(&self) -> (u64, u16) {
        // The block is flushed as soon as it is full, so the offset is below 8192.
        (self.table.len() as u64, self.block.len() as u16)
    }

    /// The reference of the current position.
    fn reference(&self) -> u64 {
        let (block, offset) = self.position();
        (block << 16) | u64::from(offset)
    }

    fn write(&mut self, mut bytes: &[u8], codec: &mut Codec) {
        while !bytes.is_empty() {
            let room = METADATA_SIZE - self.block.len();
            let n = room.min(bytes.len());
            self.block.extend_from_slice(&bytes[..n]);
            bytes = &bytes[n..];
            if self.block.len() == METADATA_SIZE {
                self.flush(codec);
            }
        }
    }

    fn flush(&mut self, codec: &mut Codec) {
        self.block_starts.push(self.table.len() as u64);
        if codec.compress(&self.block, &mut self.scratch) {
            // Smaller than the 8 KiB block, so it fits the 15-bit length.
            self.table
                .extend_from_slice(&(self.scratch.len() as u16).to_le_bytes());
            self.table.extend_from_slice(&self.scratch);
        } else {
            let header = self.block.len() as u16 | METADATA_UNCOMPRESSED;
            self.table.extend_from_slice(&header.to_le_bytes());
            self.table.extend_from_slice(&self.block);
        }
        self.block.clear();
    }

    /// The table's bytes and the offsets of its blocks.
    fn finish(mut self, codec: &mut Codec) -> Result<(Vec<u8>, Vec<u64>), SquashfsError> {
        if !self.block.is_empty() {
            self.flush(codec);
        }
        Ok((self.table, self.block_starts))
    }
}

/// `entries` as metadata blocks, and the offsets of the blocks.
fn metadata_blocks(
    entries: &[u8],
    codec: &mut Codec,
) -> Result<(Vec<u8>, Vec<u64>), SquashfsError> {
    let mut w = MetadataWriter::new();
    w.write(entries, codec);
    w.finish(codec)
}

/// Write `entries` as metadata blocks followed by the index of those blocks (absolute u64
/// offsets); return where the index starts (what the superblock points at).
fn write_lookup_table<W: Write>(
    sink: &mut Sink<'_, W>,
    entries: &[u8],
    codec: &mut Codec,
) -> Result<u64, SquashfsError> {
    let start = sink.pos;
    let (bytes, blocks) = metadata_blocks(entries, codec)?;
    sink.write(&bytes)?;
    let index_start = sink.pos;
    let mut index = Vec::with_capacity(blocks.len() * 8);
    for block in blocks {
        index.extend_from_slice(&(start + block).to_le_bytes());
    }
    sink.write(&index)?;
    Ok(index_start)
}

// ---------------------------------------------------------------------------------------------
// Pass 1: survey

struct Survey {
    /// uid/gid → index in the id table (sorted by id).
    ids: BTreeMap<u32, u16>,
    /// Names of each leaf that has more than one (a hardlink group).
    links: HashMap<*const Leaf, u32>,
}

impl Survey {
    fn id_index(&self, id: u32, path: &TreePath) -> Result<u16, SquashfsError> {
        self.ids
            .get(&id)
            .copied()
            .ok_or_else(|| unrepresentable(path, format!("id {id} missing from the id table")))
    }

    /// How many names `leaf` has.
    fn names(&self, leaf: &Arc<Leaf>) -> u32 {
        self.links.get(&Arc::as_ptr(leaf)).copied().unwrap_or(1)
    }
}

fn survey(tree: &Tree, opts: &SquashfsOptions) -> Result<Survey, SquashfsError> {
    let mut ids = BTreeSet::new();
    let mut links: HashMap<*const Leaf, u32> = HashMap::new();
    tree.walk(|entry| {
        let (path, meta) = match &entry {
            WalkEntry::Directory { path, dir } => (*path, &dir.meta),
            WalkEntry::Leaf { path, leaf } => (*path, &leaf.meta),
        };
        if let Some(name) = path.file_name() {
            check_name(name, path)?;
        }
        ids.insert(meta.uid);
        ids.insert(meta.gid);
        mtime(meta, opts, path)?;
        for (name, value) in &meta.xattrs {
            xattr_key(name, path)?;
            u32::try_from(value.len())
                .map_err(|_| unrepresentable(path, format!("xattr {name}: value too long")))?;
        }
        if let WalkEntry::Leaf { leaf, .. } = entry {
            if Arc::strong_count(leaf) > 1 {
                *links.entry(Arc::as_ptr(leaf)).or_insert(0) += 1;
            }
            match &leaf.kind {
                LeafKind::Symlink(target) if target.len() > SYMLINK_MAX => {
                    return Err(unrepresentable(
                        path,
                        format!(
                            "symlink target of {} bytes (the kernel reads up to {SYMLINK_MAX})",
                            target.len()
                        ),
                    ));
                }
                LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                    rdev(*major, *minor, path)?;
                }
                _ => {}
            }
        }
        Ok::<(), SquashfsError>(())
    })?;
    links.retain(|_, names| *names > 1);
    if ids.len() > usize::from(u16::MAX) {
        return Err(unrepresentable(
            &TreePath::root(),
            format!(
                "{} distinct uids and gids (squashfs holds 65535)",
                ids.len()
            ),
        ));
    }
    let ids = ids.into_iter().zip(0u16..).collect::<BTreeMap<u32, u16>>();
    Ok(Survey { ids, links })
}

fn check_name(name: &OsStr, path: &TreePath) -> Result<(), SquashfsError> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(unrepresentable(path, "not a valid file name"));
    }
    if b.len() > NAME_MAX {
        return Err(unrepresentable(
            path,
            format!("name of {} bytes (squashfs holds {NAME_MAX})", b.len()),
        ));
    }
    Ok(())
}

fn mtime(meta: &Meta, opts: &SquashfsOptions, path: &TreePath) -> Result<u32, SquashfsError> {
    let t = opts.entry_mtime(meta.mtime);
    u32::try_from(t).map_err(|_| {
        unrepresentable(
            path,
            format!("mtime {t} does not fit squashfs's unsigned 32-bit seconds"),
        )
    })
}

/// The kernel's encoding of a device number (`new_encode_dev`): 12 bits of major, 20 of minor.
fn rdev(major: u32, minor: u32, path: &TreePath) -> Result<u32, SquashfsError> {
    if major > 0xfff || minor > 0xf_ffff {
        return Err(unrepresentable(
            path,
            format!(
                "device {major}:{minor} (squashfs holds majors up to 4095, minors up to 1048575)"
            ),
        ));
    }
    Ok((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12))
}

/// An xattr name as squashfs stores it: the namespace's type and the rest of the name.
fn xattr_key<'a>(name: &'a str, path: &TreePath) -> Result<(u16, &'a [u8]), SquashfsError> {
    let (kind, rest) = if let Some(rest) = name.strip_prefix("user.") {
        (0, rest)
    } else if let Some(rest) = name.strip_prefix("trusted.") {
        (1, rest)
    } else if let Some(rest) = name.strip_prefix("security.") {
        (2, rest)
    } else {
        return Err(unrepresentable(
            path,
            format!("xattr {name}: squashfs holds only user.*, trusted.* and security.*"),
        ));
    };
    if rest.is_empty() || rest.len() > usize::from(u16::MAX) {
        return Err(unrepresentable(path, format!("xattr {name}: invalid name")));
    }
    Ok((kind, rest.as_bytes()))
}

// ---------------------------------------------------------------------------------------------
// Pass 2: file data

/// Where one regular file's bytes went.
struct FileRecord {
    len: u64,
    /// Offset of its first block in the image (0 without blocks).
    start: u64,
    /// Size word of each full block (0 for a hole); the tail is in a fragment.
    sizes: Vec<u32>,
    fragment: u32,
    fragment_offset: u32,
    /// Bytes of holes.
    sparse: u64,
}

struct DataPass {
    files: Vec<FileRecord>,
    /// (offset, size word) of each fragment block.
    fragments: Vec<(u64, u32)>,
}

enum Tag {
    Block { file: usize },
    Fragment,
}

struct Job {
    seq: u64,
    tag: Tag,
    data: Vec<u8>,
}

struct Done {
    seq: u64,
    tag: Tag,
    /// What goes to the image.
    bytes: Vec<u8>,
    /// The block's size word (0 for a hole).
    word: u32,
    /// Uncompressed length.
    len: usize,
}

fn compress_job(job: Job, codec: &mut Codec) -> Done {
    let len = job.data.len();
    if matches!(job.tag, Tag::Block { .. }) && job.data.iter().all(|&b| b == 0) {
        return Done {
            seq: job.seq,
            tag: job.tag,
            bytes: Vec::new(),
            word: 0,
            len,
        };
    }
    let mut out = Vec::new();
    // Block sizes are at most 1 MiB, so lengths fit the 24 bits below the flag.
    let (bytes, word) = if codec.compress(&job.data, &mut out) {
        let word = out.len() as u32;
        (out, word)
    } else {
        (job.data, len as u32 | BLOCK_UNCOMPRESSED)
    };
    Done {
        seq: job.seq,
        tag: job.tag,
        bytes,
        word,
        len,
    }
}

/// Blocks go out to compressing threads and come back in any order; they are written in the
/// order they were sent, with at most `max_in_flight` of them held at a time.
struct Pipeline<'s, 'w, W: Write> {
    jobs: Option<Sender<Job>>,
    results: Receiver<Done>,
    next_seq: u64,
    next_write: u64,
    waiting: BTreeMap<u64, Done>,
    in_flight: usize,
    max_in_flight: usize,
    sink: &'s mut Sink<'w, W>,
    files: Vec<FileRecord>,
    fragments: Vec<(u64, u32)>,
}

impl<W: Write> Pipeline<'_, '_, W> {
    fn submit(&mut self, tag: Tag, data: Vec<u8>) -> Result<(), SquashfsError> {
        while self.in_flight >= self.max_in_flight {
            self.receive_one()?;
        }
        let job = Job {
            seq: self.next_seq,
            tag,
            data,
        };
        self.next_seq += 1;
        self.in_flight += 1;
        self.jobs
            .as_ref()
            .ok_or_else(worker_gone)?
            .send(job)
            .map_err(|_| worker_gone())
    }

    fn receive_one(&mut self) -> Result<(), SquashfsError> {
        let done = self.results.recv().map_err(|_| worker_gone())?;
        self.in_flight -= 1;
        self.waiting.insert(done.seq, done);
        while let Some(done) = self.waiting.remove(&self.next_write) {
            self.next_write += 1;
            self.emit(done)?;
        }
        Ok(())
    }

    fn emit(&mut self, done: Done) -> Result<(), SquashfsError> {
        match done.tag {
            Tag::Block { file } => {
                let pos = self.sink.pos;
                let record = self
                    .files
                    .get_mut(file)
                    .ok_or_else(|| SquashfsError::Write(io::Error::other("lost a file record")))?;
                if record.sizes.is_empty() {
                    record.start = pos;
                }
                record.sizes.push(done.word);
                if done.word == 0 {
                    record.sparse += done.len as u64;
                }
            }
            Tag::Fragment => self.fragments.push((self.sink.pos, done.word)),
        }
        self.sink.write(&done.bytes)
    }

    fn finish(&mut self) -> Result<(), SquashfsError> {
        self.jobs = None;
        while self.in_flight > 0 {
            self.receive_one()?;
        }
        Ok(())
    }
}

fn worker_gone() -> SquashfsError {
    SquashfsError::Write(io::Error::other("a compressing thread stopped"))
}

fn write_data<W: Write>(
    tree: &Tree,
    survey: &Survey,
    opts: &SquashfsOptions,
    sink: &mut Sink<'_, W>,
) -> Result<DataPass, SquashfsError> {
    let threads = match opts.threads {
        0 => crate::archive::compress::available_threads().clamp(1, 8),
        n => n,
    };
    let mut codecs = Vec::with_capacity(threads);
    for _ in 0..threads {
        codecs.push(Codec::new(opts.compression)?);
    }
    let bs = opts.block_size as usize;
    std::thread::scope(|scope| {
        let (job_tx, job_rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        let job_rx = Arc::new(Mutex::new(job_rx));
        for mut codec in codecs {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                loop {
                    let job = match job_rx.lock() {
                        Ok(rx) => match rx.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    if done_tx.send(compress_job(job, &mut codec)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        let mut pipe = Pipeline {
            jobs: Some(job_tx),
            results: done_rx,
            next_seq: 0,
            next_write: 0,
            waiting: BTreeMap::new(),
            in_flight: 0,
            max_in_flight: 2 * threads + 2,
            sink,
            files: Vec::new(),
            fragments: Vec::new(),
        };
        let result = feed(tree, survey, bs, &mut pipe);
        // Close the job channel whatever happened, so the threads end.
        let finished = pipe.finish();
        result?;
        finished?;
        Ok(DataPass {
            files: pipe.files,
            fragments: pipe.fragments,
        })
    })
}

/// Read every regular file once, in walk order, and send its blocks to `pipe`.
fn feed<W: Write>(
    tree: &Tree,
    survey: &Survey,
    bs: usize,
    pipe: &mut Pipeline<'_, '_, W>,
) -> Result<(), SquashfsError> {
    let mut seen: HashSet<*const Leaf> = HashSet::new();
    let mut fragment = Vec::with_capacity(bs);
    let mut fragment_index: u32 = 0;
    tree.walk(|entry| {
        let WalkEntry::Leaf { path, leaf } = entry else {
            return Ok(());
        };
        let LeafKind::File(content) = &leaf.kind else {
            return Ok(());
        };
        if survey.names(leaf) > 1 && !seen.insert(Arc::as_ptr(leaf)) {
            return Ok(());
        }
        let file = pipe.files.len();
        pipe.files.push(FileRecord {
            len: content.len(),
            start: 0,
            sizes: Vec::new(),
            fragment: INVALID_FRAG,
            fragment_offset: 0,
            sparse: 0,
        });
        if content.is_empty() {
            return Ok(());
        }
        let read_err = |source| SquashfsError::Read {
            path: path.to_string(),
            source,
        };
        let len = content.len();
        let mut reader = content.open().map_err(read_err)?;
        let mut done: u64 = 0;
        let short = |read: u64| SquashfsError::SizeChanged {
            path: path.to_string(),
            expected: len,
            read,
        };
        while len - done >= bs as u64 {
            let mut block = vec![0u8; bs];
            let n = read_full(&mut reader, &mut block).map_err(read_err)?;
            if n < bs {
                return Err(short(done + n as u64));
            }
            done += bs as u64;
            pipe.submit(Tag::Block { file }, block)?;
        }
        let tail = (len - done) as usize;
        if tail > 0 {
            if fragment.len() + tail > bs {
                let full = std::mem::replace(&mut fragment, Vec::with_capacity(bs));
                pipe.submit(Tag::Fragment, full)?;
                fragment_index = fragment_index.checked_add(1).ok_or_else(|| {
                    unrepresentable(&TreePath::root(), "more than 2^32 fragment blocks")
                })?;
            }
            let offset = fragment.len();
            fragment.resize(offset + tail, 0);
            let n = read_full(&mut reader, &mut fragment[offset..]).map_err(read_err)?;
            if n < tail {
                return Err(short(done + n as u64));
            }
            if let Some(record) = pipe.files.get_mut(file) {
                record.fragment = fragment_index;
                // Below the block size, which is at most 1 MiB.
                record.fragment_offset = offset as u32;
            }
        }
        // The body must end here.
        let mut extra = [0u8; 1];
        if read_full(&mut reader, &mut extra).map_err(read_err)? > 0 {
            return Err(short(len + 1));
        }
        Ok(())
    })?;
    if !fragment.is_empty() {
        pipe.submit(Tag::Fragment, fragment)?;
    }
    Ok(())
}

/// Read until `buf` is full or the reader ends; the bytes read.
fn read_full(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

// ---------------------------------------------------------------------------------------------
// Pass 3: inodes and directories

/// The key/value blocks of the xattr table and the (reference, count, size) of each set.
#[derive(Default)]
struct XattrWriter {
    kv: MetadataWriterOpt,
    ids: Vec<(u64, u32, u32)>,
    by_set: HashMap<Vec<u8>, u32>,
}

/// A [`MetadataWriter`] created on first use (most trees have no xattrs).
#[derive(Default)]
struct MetadataWriterOpt(Option<MetadataWriter>);

impl MetadataWriterOpt {
    fn get(&mut self) -> &mut MetadataWriter {
        self.0.get_or_insert_with(MetadataWriter::new)
    }

    fn finish(self, codec: &mut Codec) -> Result<(Vec<u8>, Vec<u64>), SquashfsError> {
        match self.0 {
            Some(w) => w.finish(codec),
            None => Ok((Vec::new(), Vec::new())),
        }
    }
}

impl XattrWriter {
    /// The xattr id of `meta`'s attributes, stored on first sight; `None` without any.
    fn id(
        &mut self,
        meta: &Meta,
        path: &TreePath,
        codec: &mut Codec,
    ) -> Result<Option<u32>, SquashfsError> {
        if meta.xattrs.is_empty() {
            return Ok(None);
        }
        // The set as it is stored, which also identifies it.
        let mut entries = Vec::new();
        let mut size: u64 = 0;
        for (name, value) in &meta.xattrs {
            let (kind, rest) = xattr_key(name, path)?;
            let vsize = u32::try_from(value.len())
                .map_err(|_| unrepresentable(path, format!("xattr {name}: value too long")))?;
            entries.extend_from_slice(&kind.to_le_bytes());
            entries.extend_from_slice(&(rest.len() as u16).to_le_bytes());
            entries.extend_from_slice(rest);
            entries.extend_from_slice(&vsize.to_le_bytes());
            entries.extend_from_slice(value);
            // What listxattr and getxattr return: NUL-terminated full names and the values.
            size += name.len() as u64 + 1 + u64::from(vsize);
        }
        if let Some(id) = self.by_set.get(&entries) {
            return Ok(Some(*id));
        }
        let id = u32::try_from(self.ids.len())
            .ok()
            .filter(|id| *id != INVALID_XATTR)
            .ok_or_else(|| unrepresentable(path, "too many distinct xattr sets"))?;
        let kv = self.kv.get();
        let reference = kv.reference();
        kv.write(&entries, codec);
        let count = meta.xattrs.len() as u32;
        let size =
            u32::try_from(size).map_err(|_| unrepresentable(path, "xattrs larger than 4 GiB"))?;
        self.ids.push((reference, count, size));
        self.by_set.insert(entries, id);
        Ok(Some(id))
    }
}

/// An inode as a directory entry points at it.
#[derive(Clone, Copy)]
struct Written {
    ino: u32,
    reference: u64,
    /// Basic type, for the directory entry.
    kind: u16,
}

struct MetaPass<'a> {
    opts: &'a SquashfsOptions,
    survey: &'a Survey,
    files: &'a [FileRecord],
    next_file: usize,
    next_ino: u32,
    /// Hardlinked leaves already written.
    written: HashMap<*const Leaf, Written>,
    inodes: MetadataWriter,
    dirs: MetadataWriter,
    xattrs: XattrWriter,
    codec: Codec,
}

/// Little-endian field appender.
struct Bytes(Vec<u8>);

impl Bytes {
    fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

impl MetaPass<'_> {
    fn take_ino(&mut self, path: &TreePath) -> Result<u32, SquashfsError> {
        let ino = self.next_ino;
        self.next_ino = ino
            .checked_add(1)
            .ok_or_else(|| unrepresentable(path, "more than 2^32 inodes"))?;
        Ok(ino)
    }

    /// The common inode header.
    fn header(
        &self,
        kind: u16,
        meta: &Meta,
        ino: u32,
        path: &TreePath,
    ) -> Result<Bytes, SquashfsError> {
        let mut b = Bytes(Vec::with_capacity(64));
        b.u16(kind)
            .u16((meta.mode & 0o7777) as u16)
            .u16(self.survey.id_index(meta.uid, path)?)
            .u16(self.survey.id_index(meta.gid, path)?)
            .u32(mtime(meta, self.opts, path)?)
            .u32(ino);
        Ok(b)
    }

    /// Append an inode to the inode table; its reference.
    fn put_inode(&mut self, b: &Bytes, path: &TreePath) -> Result<u64, SquashfsError> {
        let reference = self.inodes.reference();
        if reference >> 16 > u64::from(u32::MAX) {
            return Err(unrepresentable(path, "inode table larger than 4 GiB"));
        }
        self.inodes.write(&b.0, &mut self.codec);
        Ok(reference)
    }

    /// Write `dir`'s children, its listing and its inode; return its reference.
    fn write_dir(
        &mut self,
        dir: &Directory,
        path: &mut TreePath,
        ino: u32,
        parent: Option<u32>,
    ) -> Result<Written, SquashfsError> {
        let mut entries: Vec<(&OsStr, Written)> = Vec::with_capacity(dir.entries.len());
        let mut subdirs: u32 = 0;
        for (name, child) in &dir.entries {
            path.push(name);
            let written = match child {
                Inode::Directory(sub) => {
                    subdirs = subdirs.saturating_add(1);
                    let child_ino = self.take_ino(path)?;
                    self.write_dir(sub, path, child_ino, Some(ino))
                }
                Inode::Leaf(leaf) => self.write_leaf(leaf, path),
            };
            path.pop();
            entries.push((name.as_os_str(), written?));
        }

        // The listing: runs of entries under headers. One header covers up to 256 entries
        // whose inodes sit in the same metadata block and whose numbers are within a signed
        // 16-bit distance of the header's; a run also ends where the directory table's
        // metadata block does, so that each block of a long listing starts with a header the
        // directory index can point at.
        let (listing_block, listing_offset) = self.dirs.position();
        if listing_block > u64::from(u32::MAX) {
            return Err(unrepresentable(path, "directory table larger than 4 GiB"));
        }
        // (offset in the listing, metadata block, first name) of each header that starts a
        // new metadata block.
        let mut index: Vec<(u32, u32, &OsStr)> = Vec::new();
        let mut listing_size: u64 = 0;
        let mut i = 0;
        while i < entries.len() {
            let first = entries[i].1;
            let block = first.reference >> 16;
            let (dir_block, dir_offset) = self.dirs.position();
            if dir_block != index.last().map_or(listing_block, |x| u64::from(x.1)) {
                let (Ok(at), Ok(dir_block)) =
                    (u32::try_from(listing_size), u32::try_from(dir_block))
                else {
                    return Err(unrepresentable(path, "directory listing larger than 4 GiB"));
                };
                index.push((at, dir_block, entries[i].0));
            }
            let mut used = usize::from(dir_offset) + 12;
            let mut j = i;
            while let Some((name, w)) = entries.get(j) {
                let fits = j == i || used + 8 + name.len() <= METADATA_SIZE;
                if !fits
                    || j - i >= DIR_HEADER_MAX
                    || w.reference >> 16 != block
                    || i16::try_from(i64::from(w.ino) - i64::from(first.ino)).is_err()
                {
                    break;
                }
                used += 8 + name.len();
                j += 1;
            }
            let mut run = Bytes(Vec::with_capacity(used - usize::from(dir_offset)));
            run.u32((j - i - 1) as u32).u32(block as u32).u32(first.ino);
            for (name, w) in &entries[i..j] {
                let delta = (i64::from(w.ino) - i64::from(first.ino)) as i16;
                run.u16((w.reference & 0xffff) as u16)
                    .u16(delta as u16)
                    .u16(w.kind)
                    .u16((name.len() - 1) as u16)
                    .raw(name.as_bytes());
            }
            self.dirs.write(&run.0, &mut self.codec);
            listing_size += run.0.len() as u64;
            i = j;
        }
        if index.len() > usize::from(u16::MAX) {
            // Lookups work without an index, only slower.
            index.clear();
        }

        // "." and ".." count for 3 bytes in the size the kernel reads.
        let file_size = listing_size + 3;
        let nlink = subdirs.saturating_add(2);
        let xattr = self.xattrs.id(&dir.meta, path, &mut self.codec)?;
        // The root's parent is one past the last inode, as mksquashfs writes it.
        let parent = match parent {
            Some(p) => p,
            None => self.next_ino,
        };
        let b = match (u16::try_from(file_size), xattr) {
            (Ok(size), None) if index.is_empty() => {
                let mut b = self.header(T_DIR, &dir.meta, ino, path)?;
                b.u32(listing_block as u32)
                    .u32(nlink)
                    .u16(size)
                    .u16(listing_offset)
                    .u32(parent);
                b
            }
            _ => {
                let size = u32::try_from(file_size)
                    .map_err(|_| unrepresentable(path, "directory listing larger than 4 GiB"))?;
                let mut b = self.header(T_DIR + T_EXTENDED, &dir.meta, ino, path)?;
                b.u32(nlink)
                    .u32(size)
                    .u32(listing_block as u32)
                    .u32(parent)
                    .u16(index.len() as u16)
                    .u16(listing_offset)
                    .u32(xattr.unwrap_or(INVALID_XATTR));
                for (at, block, name) in &index {
                    b.u32(*at)
                        .u32(*block)
                        .u32((name.len() - 1) as u32)
                        .raw(name.as_bytes());
                }
                b
            }
        };
        let reference = self.put_inode(&b, path)?;
        Ok(Written {
            ino,
            reference,
            kind: T_DIR,
        })
    }

    fn write_leaf(&mut self, leaf: &Arc<Leaf>, path: &TreePath) -> Result<Written, SquashfsError> {
        let names = self.survey.names(leaf);
        if names > 1
            && let Some(w) = self.written.get(&Arc::as_ptr(leaf))
        {
            return Ok(*w);
        }
        let ino = self.take_ino(path)?;
        let meta = &leaf.meta;
        let xattr = self.xattrs.id(meta, path, &mut self.codec)?;
        let (kind, b) = match &leaf.kind {
            LeafKind::File(content) => (
                T_REG,
                self.file_inode(content, meta, ino, names, xattr, path)?,
            ),
            LeafKind::Symlink(target) => {
                let mut b = self.header(T_SYMLINK + ext(xattr), meta, ino, path)?;
                // Checked in the survey: at most a page.
                b.u32(names).u32(target.len() as u32).raw(target.as_bytes());
                if let Some(x) = xattr {
                    b.u32(x);
                }
                (T_SYMLINK, b)
            }
            LeafKind::CharDevice { major, minor } | LeafKind::BlockDevice { major, minor } => {
                let kind = if matches!(leaf.kind, LeafKind::CharDevice { .. }) {
                    T_CHRDEV
                } else {
                    T_BLKDEV
                };
                let mut b = self.header(kind + ext(xattr), meta, ino, path)?;
                b.u32(names).u32(rdev(*major, *minor, path)?);
                if let Some(x) = xattr {
                    b.u32(x);
                }
                (kind, b)
            }
            LeafKind::Fifo => {
                let mut b = self.header(T_FIFO + ext(xattr), meta, ino, path)?;
                b.u32(names);
                if let Some(x) = xattr {
                    b.u32(x);
                }
                (T_FIFO, b)
            }
        };
        let reference = self.put_inode(&b, path)?;
        let w = Written {
            ino,
            reference,
            kind,
        };
        if names > 1 {
            self.written.insert(Arc::as_ptr(leaf), w);
        }
        Ok(w)
    }

    fn file_inode(
        &mut self,
        content: &Content,
        meta: &Meta,
        ino: u32,
        names: u32,
        xattr: Option<u32>,
        path: &TreePath,
    ) -> Result<Bytes, SquashfsError> {
        let record = self
            .files
            .get(self.next_file)
            .filter(|r| r.len == content.len())
            .ok_or_else(|| unrepresentable(path, "internal error: file records out of step"))?;
        self.next_file += 1;
        let basic_start = u32::try_from(record.start).ok();
        let basic_len = u32::try_from(record.len).ok();
        let mut b = match (basic_start, basic_len) {
            (Some(start), Some(len)) if names == 1 && xattr.is_none() && record.sparse == 0 => {
                let mut b = self.header(T_REG, meta, ino, path)?;
                b.u32(start)
                    .u32(record.fragment)
                    .u32(record.fragment_offset)
                    .u32(len);
                b
            }
            _ => {
                let mut b = self.header(T_REG + T_EXTENDED, meta, ino, path)?;
                b.u64(record.start)
                    .u64(record.len)
                    .u64(record.sparse)
                    .u32(names)
                    .u32(record.fragment)
                    .u32(record.fragment_offset)
                    .u32(xattr.unwrap_or(INVALID_XATTR));
                b
            }
        };
        for size in &record.sizes {
            b.u32(*size);
        }
        Ok(b)
    }
}

/// The offset from a basic inode type to the extended one when there are xattrs.
fn ext(xattr: Option<u32>) -> u16 {
    if xattr.is_some() { T_EXTENDED } else { 0 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::fs;
    use std::io::Cursor;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::path::Path;
    use std::process::Command;

    use crate::tree::{HostImport, import_host_path};

    fn p(s: &str) -> TreePath {
        TreePath::parse(s).expect("valid test path")
    }

    fn meta(mode: u32, uid: u32, gid: u32, mtime: i64) -> Meta {
        Meta {
            mode,
            uid,
            gid,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }

    fn leaf(meta: Meta, kind: LeafKind) -> Arc<Leaf> {
        Arc::new(Leaf { meta, kind })
    }

    fn file(bytes: &[u8]) -> LeafKind {
        LeafKind::File(Content::inline(bytes.to_vec()))
    }

    /// Bytes that do not compress much, from a seed.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    fn put(tree: &mut Tree, path: &str, inode: Inode) {
        tree.insert(&p(path), inode, &Meta::root(0o755, 1_000_000))
            .expect("insert");
    }

    fn put_leaf(tree: &mut Tree, path: &str, l: &Arc<Leaf>) {
        put(tree, path, Inode::Leaf(Arc::clone(l)));
    }

    /// A tree with every kind of entry, hardlinks, xattrs, odd modes and owners.
    fn every_kind() -> Tree {
        let mut tree = Tree::new(1_000_000);
        tree.root
            .meta
            .xattrs
            .insert("user.root".into(), b"top".to_vec());
        let mut m = meta(0o4755, 0, 0, 1_000_001);
        m.xattrs.insert(
            "security.capability".into(),
            vec![1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        m.xattrs.insert("user.note".into(), b"x".to_vec());
        put_leaf(&mut tree, "bin/tool", &leaf(m, file(&noise(10_000, 1))));
        put_leaf(
            &mut tree,
            "etc/motd",
            &leaf(meta(0o644, 0, 0, 1_000_002), file(b"hello\n")),
        );
        put_leaf(
            &mut tree,
            "big",
            &leaf(meta(0o600, 5, 6, 1_000_003), file(&noise(8192, 2))),
        );
        put_leaf(
            &mut tree,
            "zero",
            &leaf(meta(0o644, 0, 0, 1_000_004), file(&vec![0u8; 3 * 4096 + 5])),
        );
        let mut holes = vec![0u8; 4 * 4096];
        holes[4096..8192].copy_from_slice(&noise(4096, 3));
        put_leaf(
            &mut tree,
            "holes",
            &leaf(meta(0o644, 0, 0, 1_000_004), file(&holes)),
        );
        put_leaf(
            &mut tree,
            "empty",
            &leaf(meta(0o640, 0, 42, 1_000_005), file(b"")),
        );
        put_leaf(
            &mut tree,
            "link",
            &leaf(
                meta(0o777, 0, 0, 1_000_006),
                LeafKind::Symlink("etc/motd".into()),
            ),
        );
        put_leaf(
            &mut tree,
            "dev/null",
            &leaf(
                meta(0o666, 0, 0, 1_000_007),
                LeafKind::CharDevice { major: 1, minor: 3 },
            ),
        );
        put_leaf(
            &mut tree,
            "dev/sda",
            &leaf(
                meta(0o660, 0, 6, 1_000_008),
                LeafKind::BlockDevice { major: 8, minor: 0 },
            ),
        );
        put_leaf(
            &mut tree,
            "dev/wide",
            &leaf(
                meta(0o600, 0, 0, 1_000_008),
                LeafKind::CharDevice {
                    major: 4095,
                    minor: 1_048_575,
                },
            ),
        );
        put_leaf(
            &mut tree,
            "run/fifo",
            &leaf(meta(0o620, 1000, 1000, 1_000_009), LeafKind::Fifo),
        );
        let mut hm = meta(0o2755, 7, 8, 1_000_010);
        hm.xattrs.insert("user.shared".into(), b"yes".to_vec());
        let hard = leaf(hm, file(&noise(5000, 4)));
        put_leaf(&mut tree, "a/h1", &hard);
        put_leaf(&mut tree, "b/h2", &hard);
        put_leaf(&mut tree, "h3", &hard);
        let sym = leaf(meta(0o777, 0, 0, 1_000_011), LeafKind::Symlink("h3".into()));
        put_leaf(&mut tree, "a/s1", &sym);
        put_leaf(&mut tree, "b/s2", &sym);
        let mut home = Directory::new(meta(0o700, 1000, 100, 1_000_012));
        home.meta
            .xattrs
            .insert("trusted.overlay.opaque".into(), b"y".to_vec());
        put(&mut tree, "home/user", Inode::Directory(Box::new(home)));
        put(
            &mut tree,
            "tmp",
            Inode::Directory(Box::new(Directory::new(meta(0o1777, 0, 0, 1_000_013)))),
        );
        tree
    }

    fn opts(compression: SquashfsCompression) -> SquashfsOptions {
        SquashfsOptions {
            compression,
            mtime_clamp: None,
            mtime: 1_234_567,
            block_size: 4096,
            threads: 0,
        }
    }

    fn image(tree: &Tree, opts: &SquashfsOptions) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        let n = write_squashfs(tree, &mut out, opts).expect("write squashfs");
        let bytes = out.into_inner();
        assert_eq!(n, bytes.len() as u64);
        assert_eq!(n % 4096, 0);
        bytes
    }

    /// Whether `tool` runs; prints a note when it does not (the test then checks less).
    fn have(tool: &str) -> bool {
        let ok = Command::new(tool)
            .arg("--help")
            .output()
            .is_ok_and(|o| !o.stdout.is_empty() || !o.stderr.is_empty());
        if !ok {
            osbuild_test_skip::skip(&format!("{tool} is not installed"));
        }
        ok
    }

    fn run(cmd: &mut Command) -> String {
        let out = cmd.output().expect("run command");
        assert!(
            out.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// The xattrs of `path` (not following symlinks), read with getfattr.
    fn xattrs_of(path: &Path) -> BTreeMap<String, Vec<u8>> {
        let out = Command::new("getfattr")
            .args(["--absolute-names", "-h", "-d", "-m", "-", "-e", "hex"])
            .arg(path)
            .output()
            .expect("run getfattr");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut map = BTreeMap::new();
        for line in text.lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, value) = line.split_once('=').expect("name=value");
            let hex = value.strip_prefix("0x").expect("hex value");
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
                .collect();
            map.insert(name.to_string(), bytes);
        }
        map
    }

    /// Compare what unsquashfs extracted to `root` with `tree`, entry by entry.
    fn check_extracted(tree: &Tree, root: &Path, opts: &SquashfsOptions, xattrs: bool) {
        let mut inos: HashMap<*const Leaf, (u64, u64)> = HashMap::new();
        let mut count = 0usize;
        tree.walk::<()>(|entry| {
            let (path, m) = match &entry {
                WalkEntry::Directory { path, dir } => (*path, &dir.meta),
                WalkEntry::Leaf { path, leaf } => (*path, &leaf.meta),
            };
            let host = root.join(path.to_string());
            let md =
                fs::symlink_metadata(&host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
            count += 1;
            let is_symlink = md.file_type().is_symlink();
            if !is_symlink {
                assert_eq!(md.mode() & 0o7777, m.mode & 0o7777, "{path}: mode");
            }
            assert_eq!((md.uid(), md.gid()), (m.uid, m.gid), "{path}: owner");
            assert_eq!(md.mtime(), opts.entry_mtime(m.mtime), "{path}: mtime");
            if xattrs && !is_symlink {
                assert_eq!(&xattrs_of(&host), &m.xattrs, "{path}: xattrs");
            }
            match entry {
                WalkEntry::Directory { dir, .. } => {
                    assert!(md.is_dir(), "{path}: not a directory");
                    let names: Vec<_> = fs::read_dir(&host)
                        .expect("read_dir")
                        .map(|e| e.expect("entry").file_name())
                        .collect();
                    assert_eq!(names.len(), dir.entries.len(), "{path}: entry count");
                }
                WalkEntry::Leaf { leaf, .. } => {
                    match &leaf.kind {
                        LeafKind::File(c) => {
                            assert!(md.is_file(), "{path}: not a file");
                            let got = fs::read(&host).expect("read extracted file");
                            assert!(
                                got == c.read_to_vec().expect("read content"),
                                "{path}: body"
                            );
                        }
                        LeafKind::Symlink(t) => {
                            assert_eq!(&fs::read_link(&host).expect("readlink"), Path::new(t));
                        }
                        LeafKind::CharDevice { major, minor } => {
                            assert!(md.file_type().is_char_device(), "{path}: not chr");
                            assert_eq!(split(md.rdev()), (*major, *minor), "{path}: rdev");
                        }
                        LeafKind::BlockDevice { major, minor } => {
                            assert!(md.file_type().is_block_device(), "{path}: not blk");
                            assert_eq!(split(md.rdev()), (*major, *minor), "{path}: rdev");
                        }
                        LeafKind::Fifo => assert!(md.file_type().is_fifo(), "{path}: not fifo"),
                    }
                    // Names of one leaf are one inode on disk, and nothing else is.
                    if !md.file_type().is_symlink() || Arc::strong_count(leaf) > 1 {
                        let id = (md.dev(), md.ino());
                        let prev = inos.entry(Arc::as_ptr(leaf)).or_insert(id);
                        assert_eq!(*prev, id, "{path}: hardlink to another inode");
                    }
                }
            }
            Ok(())
        })
        .unwrap();
        let mut distinct: Vec<_> = inos.values().collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            inos.len(),
            "two leaves extracted as one inode"
        );
        assert!(count > 0);
    }

    fn split(dev: u64) -> (u32, u32) {
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        (major as u32, minor as u32)
    }

    fn extract(img: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("img.sqfs");
        fs::write(&file, img).expect("write image");
        let root = dir.path().join("root");
        run(Command::new("unsquashfs")
            .args(["-no-progress", "-quiet", "-d"])
            .arg(&root)
            .arg(&file));
        (dir, root)
    }

    #[test]
    fn every_kind_round_trips_through_unsquashfs() {
        if !have("unsquashfs") {
            return;
        }
        let tree = every_kind();
        for compression in [SquashfsCompression::Gzip, SquashfsCompression::Zstd] {
            let opts = opts(compression);
            let img = image(&tree, &opts);
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("img.sqfs");
            fs::write(&file, &img).unwrap();

            let s = run(Command::new("unsquashfs").arg("-s").arg(&file));
            let name = match compression {
                SquashfsCompression::Gzip => "gzip",
                SquashfsCompression::Zstd => "zstd",
            };
            assert!(s.contains(&format!("Compression {name}")), "{s}");
            assert!(s.contains("Block size 4096"), "{s}");
            // 6 directories + root... counted: /, a, b, bin, dev, etc, home, home/user, run,
            // tmp = 10 directories; bin/tool, etc/motd, big, zero, holes, empty, link,
            // dev/null, dev/sda, dev/wide, run/fifo, hard (1), sym (1) = 13 leaves.
            assert!(s.contains("Number of inodes 23"), "{s}");
            // 0, 5, 6, 7, 8, 42, 100, 1000
            assert!(s.contains("Number of ids 8"), "{s}");
            assert!(s.contains("Number of xattr ids 4"), "{s}");

            let listing = run(Command::new("unsquashfs").arg("-lln").arg(&file));
            for want in [
                "-rwsr-xr-x 0/0",
                "drwxrwxrwt 0/0",
                "drwx------ 1000/100",
                "prw--w---- 1000/1000",
                "-rwxr-sr-x 7/8",
                "crw-rw-rw- 0/0",
                "brw-rw---- 0/6",
                "squashfs-root/link -> etc/motd",
            ] {
                assert!(listing.contains(want), "{want:?} not in\n{listing}");
            }

            let (_tmp, root) = extract(&img);
            let xattrs = have("getfattr");
            check_extracted(&tree, &root, &opts, xattrs);
            let h1 = fs::metadata(root.join("a/h1")).unwrap();
            assert_eq!(h1.nlink(), 3);
            assert_eq!(fs::symlink_metadata(root.join("a/s1")).unwrap().nlink(), 2);
            assert_eq!(fs::metadata(root.join("a")).unwrap().nlink(), 2);
            assert_eq!(fs::metadata(&root).unwrap().nlink(), 2 + 8);
        }
    }

    #[test]
    fn same_tree_same_bytes() {
        let tree = every_kind();
        for compression in [SquashfsCompression::Gzip, SquashfsCompression::Zstd] {
            let opts = opts(compression);
            assert!(image(&tree, &opts) == image(&tree, &opts.clone()));
        }
        // And the superblock time is the one given, nothing else.
        let o = opts(SquashfsCompression::Gzip);
        let img = image(&tree, &o);
        assert_eq!(&img[0..4], b"hsqs");
        assert_eq!(
            u32::from_le_bytes(img[8..12].try_into().unwrap()),
            1_234_567
        );
    }

    #[test]
    fn mtimes_are_clamped() {
        if !have("unsquashfs") {
            return;
        }
        let tree = every_kind();
        let opts = SquashfsOptions {
            mtime_clamp: Some(1_000_005),
            ..opts(SquashfsCompression::Gzip)
        };
        let (_tmp, root) = extract(&image(&tree, &opts));
        assert_eq!(fs::metadata(root.join("big")).unwrap().mtime(), 1_000_003);
        assert_eq!(fs::metadata(root.join("tmp")).unwrap().mtime(), 1_000_005);
        check_extracted(&tree, &root, &opts, false);
    }

    #[test]
    fn empty_tree() {
        let tree = Tree::new(0);
        let img = image(&tree, &SquashfsOptions::default());
        if have("unsquashfs") {
            let (_tmp, root) = extract(&img);
            assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
        }
    }

    #[test]
    fn big_directory_and_host_files() {
        // A directory whose listing is over 64 KiB (an extended directory inode, many
        // headers), files on disk (extents), and 1 MiB blocks.
        let host = tempfile::tempdir().unwrap();
        let many = host.path().join("many");
        fs::create_dir(&many).unwrap();
        for i in 0..3000 {
            fs::write(
                many.join(format!("module-{i:05}.ko")),
                noise(i % 700, i as u64),
            )
            .unwrap();
        }
        fs::write(host.path().join("large"), noise(3 << 20, 9)).unwrap();
        let imported = import_host_path(
            host.path(),
            &HostImport {
                uid: 0,
                gid: 0,
                mtime: 1,
            },
        )
        .unwrap();
        let Inode::Directory(root) = imported else {
            panic!("not a directory")
        };
        let tree = Tree { root: *root };
        let opts = SquashfsOptions {
            block_size: 1 << 20,
            ..SquashfsOptions::default()
        };
        let img = image(&tree, &opts);
        if have("unsquashfs") {
            let (_tmp, root) = extract(&img);
            check_extracted(&tree, &root, &opts, false);
        }
    }

    #[test]
    fn what_squashfs_cannot_hold_is_an_error_naming_the_path() {
        let o = opts(SquashfsCompression::Gzip);
        let write = |tree: &Tree, o: &SquashfsOptions| {
            write_squashfs(tree, &mut Cursor::new(Vec::new()), o)
                .unwrap_err()
                .to_string()
        };
        let mut tree = Tree::new(0);
        let mut m = meta(0o644, 0, 0, 0);
        m.xattrs
            .insert("system.posix_acl_access".into(), vec![2, 0, 0, 0]);
        put_leaf(&mut tree, "etc/acl", &leaf(m, file(b"")));
        assert!(write(&tree, &o).starts_with("etc/acl: xattr system.posix_acl_access"));

        let mut tree = Tree::new(0);
        put_leaf(
            &mut tree,
            "dev/x",
            &leaf(
                meta(0o600, 0, 0, 0),
                LeafKind::CharDevice {
                    major: 4096,
                    minor: 0,
                },
            ),
        );
        assert!(write(&tree, &o).starts_with("dev/x: device 4096:0"));

        let mut tree = Tree::new(0);
        put_leaf(&mut tree, "old", &leaf(meta(0o644, 0, 0, -1), file(b"")));
        assert!(write(&tree, &o).starts_with("old: mtime -1"));

        // Paths from layers and specs cannot hold such a name (NAME_MAX); trees built in code
        // can.
        let mut tree = Tree::new(0);
        let mut long = TreePath::root();
        long.push(std::ffi::OsStr::new(&"n".repeat(257)));
        tree.insert(
            &long,
            Inode::Leaf(leaf(meta(0o644, 0, 0, 0), file(b""))),
            &meta(0o755, 0, 0, 0),
        )
        .unwrap();
        assert!(write(&tree, &o).contains("name of 257 bytes"));

        let mut tree = Tree::new(0);
        put_leaf(
            &mut tree,
            "l",
            &leaf(
                meta(0o777, 0, 0, 0),
                LeafKind::Symlink("x".repeat(5000).into()),
            ),
        );
        assert!(write(&tree, &o).starts_with("l: symlink target of 5000 bytes"));

        let tree = Tree::new(0);
        for bs in [0, 1000, 2048, 2 << 20] {
            let bad = SquashfsOptions {
                block_size: bs,
                ..o
            };
            assert!(write(&tree, &bad).contains("block size"));
        }
        let bad = SquashfsOptions { mtime: -5, ..o };
        assert!(write(&tree, &bad).contains("time -5"));
    }

    #[test]
    fn a_short_body_is_an_error_naming_the_path() {
        let blob = tempfile::NamedTempFile::new().unwrap();
        fs::write(blob.path(), b"0123456789").unwrap();
        let file = crate::tree::BlobFile::new(blob.path());
        let mut tree = Tree::new(0);
        put_leaf(
            &mut tree,
            "f",
            &leaf(
                meta(0o644, 0, 0, 0),
                LeafKind::File(Content::Extent {
                    file,
                    offset: 0,
                    len: 10,
                }),
            ),
        );
        fs::write(blob.path(), b"01234").unwrap();
        let err = write_squashfs(
            &tree,
            &mut Cursor::new(Vec::new()),
            &opts(SquashfsCompression::Zstd),
        )
        .unwrap_err();
        assert!(crate::error::chain(&err).starts_with("f: "), "{err}");
    }

    mod generated {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Gen {
            File(Vec<u8>, usize),
            Symlink(String),
            Fifo,
            Dir(Vec<(String, Gen)>),
            /// Another name for the n-th file made so far, if any.
            Hardlink(usize),
        }

        fn gen_entry() -> impl Strategy<Value = Gen> {
            let leaf = prop_oneof![
                4 => (prop::collection::vec(any::<u8>(), 0..64), 0usize..12_000)
                    .prop_map(|(b, n)| Gen::File(b, n)),
                1 => "[a-z/.]{1,40}".prop_map(Gen::Symlink),
                1 => Just(Gen::Fifo),
                1 => (0usize..8).prop_map(Gen::Hardlink),
            ];
            leaf.prop_recursive(3, 40, 8, |inner| {
                prop::collection::vec(("[a-zA-Z0-9._-]{1,12}", inner), 0..8).prop_map(Gen::Dir)
            })
        }

        fn build(
            dir: &mut Directory,
            entries: &[(String, Gen)],
            files: &mut Vec<Arc<Leaf>>,
            salt: &mut u32,
        ) {
            for (name, g) in entries {
                if name == "." || name == ".." {
                    continue;
                }
                *salt = salt.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let s = *salt;
                let mut m = meta(
                    [0o644, 0o755, 0o4711, 0o1777, 0o600, 0o2750][s as usize % 6],
                    s % 3 * 1000,
                    s % 5,
                    i64::from(s % 100_000),
                );
                if s.is_multiple_of(4) {
                    m.xattrs
                        .insert(format!("user.k{}", s % 3), noise((s % 40) as usize, 1));
                }
                let inode = match g {
                    Gen::File(bytes, extra) => {
                        let mut body = bytes.clone();
                        // Long runs of one byte, noise and zeros, in blocks and tails.
                        body.extend(std::iter::repeat_n((s % 3) as u8 * 7, *extra));
                        if s.is_multiple_of(2) {
                            body.extend(noise(*extra / 2, u64::from(s)));
                        }
                        if s.is_multiple_of(7) {
                            // The kernel checks capabilities: revision 2, effective bit, and
                            // a few permitted ones.
                            let mut cap = vec![1, 0, 0, 2];
                            cap.extend((s % 64).to_le_bytes());
                            cap.extend([0; 12]);
                            m.xattrs.insert("security.capability".into(), cap);
                        }
                        let l = leaf(m, file(&body));
                        files.push(Arc::clone(&l));
                        Inode::Leaf(l)
                    }
                    Gen::Symlink(t) => {
                        m.xattrs.clear();
                        Inode::Leaf(leaf(m, LeafKind::Symlink(t.into())))
                    }
                    Gen::Fifo => {
                        // Linux takes user.* xattrs on files and directories only.
                        m.xattrs.clear();
                        Inode::Leaf(leaf(m, LeafKind::Fifo))
                    }
                    Gen::Hardlink(n) => match files.get(*n) {
                        Some(l) => Inode::Leaf(Arc::clone(l)),
                        None => Inode::Leaf(leaf(m, file(b"lonely"))),
                    },
                    Gen::Dir(children) => {
                        let mut d = Directory::new(m);
                        build(&mut d, children, files, salt);
                        Inode::Directory(Box::new(d))
                    }
                };
                dir.entries.insert(name.into(), inode);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]

            #[test]
            fn generated_trees_round_trip(
                top in prop::collection::vec(("[a-zA-Z0-9._-]{1,12}", gen_entry()), 0..10),
                zstd in any::<bool>(),
                clamp in prop::option::of(0i64..100_000),
            ) {
                if !have("unsquashfs") {
                    return Ok(());
                }
                let mut tree = Tree::new(7);
                let mut files = Vec::new();
                let mut salt = 1;
                build(&mut tree.root, &top, &mut files, &mut salt);
                let opts = SquashfsOptions {
                    compression: if zstd { SquashfsCompression::Zstd } else { SquashfsCompression::Gzip },
                    mtime_clamp: clamp,
                    mtime: 0,
                    block_size: 4096,
                    threads: 0,
                };
                let img = image(&tree, &opts);
                prop_assert!(img == image(&tree, &opts));
                let (_tmp, root) = extract(&img);
                check_extracted(&tree, &root, &opts, have("getfattr"));
            }
        }
    }
}
