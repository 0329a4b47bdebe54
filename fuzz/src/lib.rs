//! What the fuzz targets share: trees described by fuzz input, a sparse in-memory disk, small
//! readers for newc cpio and PAX tar that check what the writers promise.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStringExt;
use std::sync::Arc;

use arbitrary::Arbitrary;
use osbuild::tree::{Content, Directory, Inode, Leaf, LeafKind, Meta, Tree, TreePath, WalkEntry};

/// Names the fuzzer picks by number, so that paths collide and reach the writers' limits.
const NAMES: &[&str] = &[
    "a",
    "b",
    "dd",
    "e.f",
    "TRAILER!!!",
    "PaxHeaders",
    ".wh.a",
    "x23456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345",
    "\u{e9}t\u{e9}",
    " ",
];

/// One component of a path: a name from [`NAMES`] or raw bytes.
#[derive(Arbitrary, Debug)]
pub enum Component {
    /// `NAMES[n % len]`.
    Pick(u8),
    /// These bytes (slashes split them, a NUL makes the path invalid).
    Raw(Vec<u8>),
    /// A long name: `n` times `x` (up to 255 and a bit past).
    Long(u8),
}

impl Component {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Component::Pick(n) => NAMES[*n as usize % NAMES.len()].as_bytes().to_vec(),
            Component::Raw(b) => b.clone(),
            Component::Long(n) => vec![b'x'; usize::from(*n) + 40],
        }
    }
}

/// A path made of components.
pub fn join(components: &[Component]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in components.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(&c.bytes());
    }
    out
}

/// Metadata chosen by the fuzzer.
#[derive(Arbitrary, Debug)]
pub struct FuzzMeta {
    /// Permission bits (masked to 0o7777).
    pub mode: u16,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: i64,
    /// Extended attributes (name picked short).
    pub xattrs: Vec<(u8, Vec<u8>)>,
}

impl FuzzMeta {
    fn meta(&self) -> Meta {
        let mut m = Meta {
            mode: u32::from(self.mode) & 0o7777,
            uid: self.uid,
            gid: self.gid,
            mtime: self.mtime,
            xattrs: BTreeMap::new(),
        };
        for (n, v) in self.xattrs.iter().take(3) {
            let name = ["user.a", "security.capability", "trusted.x"][*n as usize % 3];
            m.xattrs.insert(name.to_string(), v.clone());
        }
        m
    }
}

/// What an entry of a fuzzed tree is.
#[derive(Arbitrary, Debug)]
pub enum FuzzKind {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// A directory.
    Dir,
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// Another name for the `n`-th leaf made so far.
    Hardlink(u8),
    /// A character device.
    Char(u32, u32),
    /// A block device.
    Block(u32, u32),
    /// A named pipe.
    Fifo,
}

/// One entry of a fuzzed tree.
#[derive(Arbitrary, Debug)]
pub struct FuzzEntry {
    /// Its path.
    pub path: Vec<Component>,
    /// Its metadata.
    pub meta: FuzzMeta,
    /// What it is.
    pub kind: FuzzKind,
}

/// A tree described by fuzz input.
#[derive(Arbitrary, Debug)]
pub struct FuzzTree {
    /// Entries, inserted in order (later ones replace earlier ones at the same path).
    pub entries: Vec<FuzzEntry>,
    /// `SOURCE_DATE_EPOCH`, when set.
    pub clamp: Option<i64>,
}

impl FuzzTree {
    /// The tree: entries whose path does not parse, or that cannot be placed, are skipped.
    pub fn build(&self) -> Tree {
        let mut tree = Tree::new(0);
        let parent = Meta::root(0o755, 0);
        let mut leaves: Vec<Arc<Leaf>> = Vec::new();
        for e in self.entries.iter().take(64) {
            let Ok(path) = TreePath::parse(OsString::from_vec(join(&e.path))) else {
                continue;
            };
            if path.is_root() {
                continue;
            }
            let meta = e.meta.meta();
            let kind = match &e.kind {
                FuzzKind::File(b) => LeafKind::File(Content::inline(b.clone())),
                FuzzKind::Dir => {
                    let _ = tree.insert(
                        &path,
                        Inode::Directory(Box::new(Directory::new(meta))),
                        &parent,
                    );
                    continue;
                }
                FuzzKind::Hardlink(n) => {
                    if leaves.is_empty() {
                        continue;
                    }
                    let leaf = leaves[*n as usize % leaves.len()].clone();
                    let _ = tree.insert(&path, Inode::Leaf(leaf), &parent);
                    continue;
                }
                FuzzKind::Symlink(t) => LeafKind::Symlink(OsString::from_vec(t.clone())),
                FuzzKind::Char(major, minor) => LeafKind::CharDevice {
                    major: *major,
                    minor: *minor,
                },
                FuzzKind::Block(major, minor) => LeafKind::BlockDevice {
                    major: *major,
                    minor: *minor,
                },
                FuzzKind::Fifo => LeafKind::Fifo,
            };
            let leaf = Arc::new(Leaf { meta, kind });
            leaves.push(leaf.clone());
            let _ = tree.insert(&path, Inode::Leaf(leaf), &parent);
        }
        tree
    }
}

/// What the tree holds, entry by entry in walk order (the root left out).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// The path.
    pub path: Vec<u8>,
    /// The metadata.
    pub meta: Meta,
    /// `None` for a directory.
    pub leaf: Option<Arc<Leaf>>,
    /// Subdirectories of a directory.
    pub subdirs: u32,
}

/// Every entry of `tree` but its root, in walk order.
pub fn expected(tree: &Tree) -> Vec<Expected> {
    let mut out = Vec::new();
    let _ = tree.walk::<()>(|e| {
        match e {
            WalkEntry::Directory { path, dir } if !path.is_root() => out.push(Expected {
                path: path.to_bytes(),
                meta: dir.meta.clone(),
                leaf: None,
                subdirs: dir
                    .entries
                    .values()
                    .filter(|i| matches!(i, Inode::Directory(_)))
                    .count() as u32,
            }),
            WalkEntry::Directory { .. } => {}
            WalkEntry::Leaf { path, leaf } => out.push(Expected {
                path: path.to_bytes(),
                meta: leaf.meta.clone(),
                leaf: Some(leaf.clone()),
                subdirs: 0,
            }),
        }
        Ok(())
    });
    out
}

/// The bytes of a file's content (inline in fuzzed trees).
pub fn body(content: &Content) -> Vec<u8> {
    content.read_to_vec().expect("inline content reads")
}

/// The name a leaf group is known by: the leaf's address.
pub fn leaf_key(leaf: &Arc<Leaf>) -> *const Leaf {
    Arc::as_ptr(leaf)
}

/// How many names each leaf has among `entries`.
pub fn names_per_leaf(entries: &[Expected]) -> HashMap<*const Leaf, u32> {
    let mut names = HashMap::new();
    for e in entries {
        if let Some(l) = &e.leaf {
            *names.entry(leaf_key(l)).or_insert(0) += 1;
        }
    }
    names
}

/// One entry of a newc archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewcEntry {
    /// Inode number.
    pub ino: u32,
    /// Type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Modification time.
    pub mtime: u32,
    /// Device of a device node.
    pub rdev: (u32, u32),
    /// The name (no NUL).
    pub name: Vec<u8>,
    /// The body (file bytes or symlink target).
    pub body: Vec<u8>,
}

/// Read a newc archive strictly: magic, hex fields, NUL-terminated names, 4-byte padding of
/// zeros, a `TRAILER!!!` entry, then zeros up to a 512-byte boundary and nothing else.
pub fn read_newc(archive: &[u8]) -> Result<Vec<NewcEntry>, String> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    let take = |pos: usize, n: usize| -> Result<&[u8], String> {
        archive
            .get(pos..pos + n)
            .ok_or_else(|| format!("truncated at {pos} (+{n})"))
    };
    let zeros = |bytes: &[u8], what: &str| -> Result<(), String> {
        if bytes.iter().all(|&b| b == 0) {
            Ok(())
        } else {
            Err(format!("non-zero {what}"))
        }
    };
    loop {
        let h = take(pos, 110)?;
        if &h[..6] != b"070701" {
            return Err(format!("bad magic at {pos}"));
        }
        let mut f = [0u32; 13];
        for (i, v) in f.iter_mut().enumerate() {
            let text = std::str::from_utf8(&h[6 + i * 8..14 + i * 8])
                .map_err(|_| format!("field {i} at {pos} is not text"))?;
            if !text.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("field {i} at {pos} is not hex: {text:?}"));
            }
            *v = u32::from_str_radix(text, 16).map_err(|e| e.to_string())?;
        }
        let [
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            size,
            _,
            _,
            rmaj,
            rmin,
            namesize,
            check,
        ] = f;
        if check != 0 {
            return Err("non-zero check field".into());
        }
        if namesize == 0 {
            return Err("name size 0".into());
        }
        let name_at = pos + 110;
        let name_full = take(name_at, namesize as usize)?;
        let (name, nul) = name_full.split_at(name_full.len() - 1);
        if nul != [0] || name.contains(&0) {
            return Err(format!("name at {pos} is not one NUL-terminated string"));
        }
        let mut at = name_at + namesize as usize;
        let pad = (4 - at % 4) % 4;
        zeros(take(at, pad)?, "name padding")?;
        at += pad;
        let body = take(at, size as usize)?.to_vec();
        at += size as usize;
        let pad = (4 - at % 4) % 4;
        zeros(take(at, pad)?, "body padding")?;
        at += pad;
        pos = at;
        if name == b"TRAILER!!!" {
            if archive.len() % 512 != 0 {
                return Err(format!(
                    "{} bytes, not whole 512-byte blocks",
                    archive.len()
                ));
            }
            zeros(&archive[pos..], "bytes after the trailer")?;
            return Ok(out);
        }
        out.push(NewcEntry {
            ino,
            mode,
            uid,
            gid,
            nlink,
            mtime,
            rdev: (rmaj, rmin),
            name: name.to_vec(),
            body,
        });
    }
}

/// One entry of a tar archive with its PAX records applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarEntry {
    /// The path (PAX `path` when given).
    pub path: Vec<u8>,
    /// The type flag.
    pub typeflag: u8,
    /// Permission bits.
    pub mode: u32,
    /// Owner (PAX `uid` when given).
    pub uid: u64,
    /// Group (PAX `gid` when given).
    pub gid: u64,
    /// Modification time (PAX `mtime` when given).
    pub mtime: i64,
    /// Link target (PAX `linkpath` when given).
    pub link: Vec<u8>,
    /// Device numbers.
    pub dev: (u32, u32),
    /// Body.
    pub body: Vec<u8>,
    /// `SCHILY.xattr.` records.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

/// PAX records by their length prefix (values may hold newlines).
pub fn pax_records(mut data: &[u8]) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, String> {
    let mut out = BTreeMap::new();
    while !data.is_empty() {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("bad record length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("record length does not match".into());
        }
        let kv = &data[space + 1..len - 1];
        let eq = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or("record without =")?;
        out.insert(kv[..eq].to_vec(), kv[eq + 1..].to_vec());
        data = &data[len..];
    }
    Ok(out)
}

/// Read a tar archive with the `tar` crate in raw mode, applying PAX `x` records to the entry
/// that follows them. Checks header checksums (the crate does) and the end-of-archive blocks.
pub fn read_tar(archive: &[u8]) -> Result<Vec<TarEntry>, String> {
    if archive.len() % 512 != 0 || archive.len() < 1024 {
        return Err(format!("{} bytes is not a whole tar", archive.len()));
    }
    if archive[archive.len() - 1024..].iter().any(|&b| b != 0) {
        return Err("no end-of-archive blocks".into());
    }
    let mut ar = tar::Archive::new(archive);
    let entries = ar.entries().map_err(|e| e.to_string())?.raw(true);
    let mut pax: Option<BTreeMap<Vec<u8>, Vec<u8>>> = None;
    let mut out = Vec::new();
    for e in entries {
        let mut e = e.map_err(|e| e.to_string())?;
        let h = e.header().clone();
        let typeflag = h.as_bytes()[156];
        let mut body = Vec::new();
        e.read_to_end(&mut body).map_err(|e| e.to_string())?;
        if typeflag == b'x' {
            if pax.is_some() {
                return Err("two PAX headers in a row".into());
            }
            pax = Some(pax_records(&body)?);
            continue;
        }
        let ustar = h.as_ustar().ok_or("not a ustar header")?;
        let mut path = ustar.path_bytes().into_owned();
        let records = pax.take().unwrap_or_default();
        let num = |key: &[u8], field: io::Result<u64>| -> Result<u64, String> {
            match records.get(key) {
                Some(v) => std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("bad PAX {}", String::from_utf8_lossy(key))),
                None => field.map_err(|e| e.to_string()),
            }
        };
        let mtime = match records.get(&b"mtime"[..]) {
            Some(v) => std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or("bad PAX mtime")?,
            None => {
                i64::try_from(h.mtime().map_err(|e| e.to_string())?).map_err(|e| e.to_string())?
            }
        };
        let mut xattrs = BTreeMap::new();
        for (k, v) in &records {
            if let Some(name) = k.strip_prefix(b"SCHILY.xattr.") {
                xattrs.insert(String::from_utf8_lossy(name).into_owned(), v.clone());
            }
        }
        let link = match records.get(&b"linkpath"[..]) {
            Some(l) => l.clone(),
            None => h
                .link_name_bytes()
                .map(|l| l.into_owned())
                .unwrap_or_default(),
        };
        if let Some(p) = records.get(&b"path"[..]) {
            path = p.clone();
        }
        let dev = if matches!(typeflag, b'3' | b'4') {
            (
                h.device_major().map_err(|e| e.to_string())?.unwrap_or(0),
                h.device_minor().map_err(|e| e.to_string())?.unwrap_or(0),
            )
        } else {
            (0, 0)
        };
        out.push(TarEntry {
            path,
            typeflag,
            mode: h.mode().map_err(|e| e.to_string())? & 0o7777,
            uid: num(b"uid", h.uid())?,
            gid: num(b"gid", h.gid())?,
            mtime,
            link,
            dev,
            body,
            xattrs,
        });
    }
    Ok(out)
}

/// A disk of `len` bytes held as the 512-byte blocks written to it; the rest reads as zeros.
#[derive(Debug, Default)]
pub struct SparseDisk {
    len: u64,
    pos: u64,
    blocks: HashMap<u64, Box<[u8; 512]>>,
}

impl SparseDisk {
    /// An all-zero disk of `len` bytes.
    pub fn new(len: u64) -> Self {
        SparseDisk {
            len,
            pos: 0,
            blocks: HashMap::new(),
        }
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.pos < self.len {
            let block = self.pos / 512;
            let off = (self.pos % 512) as usize;
            let k = (512 - off)
                .min(buf.len() - n)
                .min((self.len - self.pos) as usize);
            match self.blocks.get(&block) {
                Some(b) => buf[n..n + k].copy_from_slice(&b[off..off + k]),
                None => buf[n..n + k].fill(0),
            }
            n += k;
            self.pos += k as u64;
        }
        Ok(n)
    }
}

impl Write for SparseDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos >= self.len && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "past the end of the disk",
            ));
        }
        let mut n = 0;
        while n < buf.len() && self.pos < self.len {
            let block = self.pos / 512;
            let off = (self.pos % 512) as usize;
            let k = (512 - off)
                .min(buf.len() - n)
                .min((self.len - self.pos) as usize);
            let b = self
                .blocks
                .entry(block)
                .or_insert_with(|| Box::new([0; 512]));
            b[off..off + k].copy_from_slice(&buf[n..n + k]);
            n += k;
            self.pos += k as u64;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        self.pos = target;
        Ok(target)
    }
}

/// `bytes` split at every `separator`.
pub fn split<'a>(mut bytes: &'a [u8], separator: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    while let Some(i) = bytes.windows(separator.len()).position(|w| w == separator) {
        out.push(&bytes[..i]);
        bytes = &bytes[i + separator.len()..];
    }
    out.push(bytes);
    out
}

/// A directory for the files a target writes: in memory when /dev/shm is there.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir()
        && let Ok(d) = tempfile::tempdir_in(shm)
    {
        return d;
    }
    tempfile::tempdir().expect("a temporary directory")
}

/// `name` as it appears in messages.
pub fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}
