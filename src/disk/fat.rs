//! FAT filesystems written once, in one pass, sized for the files they hold. The cluster size
//! is 4 KiB (smaller only for volumes too small to reach FAT16's 4,085 clusters), and the FAT
//! type follows the cluster count as the specification says (FAT12 below 4,085 clusters,
//! FAT16 below 65,525, FAT32 from there), so `fsck.vfat` and firmware agree with it at every
//! size. Directories come first, then each file's clusters in one contiguous run, so a file's
//! place on disk is known before anything is written (BIOS loaders need that). Names are 8.3
//! (stored upper case; an all-lower-case name gets the case flags Linux and Windows honour),
//! timestamps and the volume id come from the caller: the same files give the same bytes.
//!
//! Why not the `fatfs` crate: its last release (0.3.6) writes long-name entries in front of
//! every directory's `.` and `..` entries, which `fsck.vfat` reports as damage, and it
//! allocates cluster by cluster through the table, where a write-once layout needs neither.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};

use super::source::{Source, copy_source};
use super::{DiskError, SECTOR, civil, round_up};

/// The cluster size of every volume big enough for it.
const CLUSTER: u64 = 4096;
/// The fewest clusters a FAT16 volume has.
const FAT16_MIN_CLUSTERS: u64 = 4085;
/// The fewest clusters a FAT32 volume has.
const FAT32_MIN_CLUSTERS: u64 = 65_525;
/// Root directory entries of a FAT12/16 volume.
const ROOT_ENTRIES: u64 = 512;

/// One file to put into a volume.
#[derive(Clone, Copy)]
pub struct FatFile<'a> {
    /// Its path in the volume, `/`-separated (`EFI/BOOT/BOOTX64.EFI`); parents are created.
    pub path: &'a str,
    /// Its bytes.
    pub source: &'a dyn Source,
}

/// How a volume is labelled and dated.
#[derive(Debug, Clone)]
pub struct FatOptions {
    /// The volume serial number.
    pub volume_id: u32,
    /// The volume label (up to 11 characters).
    pub label: String,
    /// The time every entry carries (seconds since the epoch; FAT cannot go before 1980).
    pub mtime: i64,
    /// Sectors before the volume on its disk (the partition's first LBA), for BIOS loaders.
    pub hidden_sectors: u32,
}

/// The FAT type of a volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FatKind {
    /// FAT12.
    Fat12,
    /// FAT16.
    Fat16,
    /// FAT32.
    Fat32,
}

/// The cluster size for a volume of `size` bytes.
pub fn cluster_size(size: u64) -> u64 {
    let mut cluster = CLUSTER;
    while cluster > SECTOR && size / cluster < FAT16_MIN_CLUSTERS + 64 {
        cluster /= 2;
    }
    cluster
}

/// The smallest volume that holds `files` (with their directories), in bytes: the files'
/// clusters, a cluster per directory, the tables and the reserved area, plus 1 MiB of slack.
pub fn min_size(files: &[FatFile<'_>]) -> u64 {
    let mut dirs: Vec<&str> = Vec::new();
    for f in files {
        let mut p = f.path;
        while let Some((parent, _)) = p.rsplit_once('/') {
            if !dirs.contains(&parent) {
                dirs.push(parent);
            }
            p = parent;
        }
    }
    let data: u64 = files
        .iter()
        .map(|f| round_up(f.source.len().max(1), CLUSTER))
        .sum::<u64>()
        + (dirs.len() as u64 + 1) * CLUSTER;
    // FAT32 tables: 4 bytes a cluster, two copies; reserved area and root directory: 64 KiB.
    let tables = 2 * round_up(data / CLUSTER * 4, SECTOR) + (64 << 10);
    data + tables + (1 << 20)
}

/// The geometry of a volume: where the tables, the root directory and the data are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// The FAT type.
    pub kind: FatKind,
    /// Sectors in the volume.
    pub total_sectors: u64,
    /// Sectors per cluster.
    pub sectors_per_cluster: u64,
    /// Reserved sectors before the first table.
    pub reserved: u64,
    /// Sectors of one table.
    pub fat_sectors: u64,
    /// Sectors of the FAT12/16 root directory (0 on FAT32).
    pub root_sectors: u64,
    /// Data clusters (numbered from 2).
    pub clusters: u64,
}

impl Geometry {
    /// The geometry of a volume of `size` bytes.
    pub fn of(size: u64) -> Result<Geometry, DiskError> {
        let mut cluster = cluster_size(size);
        loop {
            let g = Geometry::with(size, cluster, false);
            if g.clusters < FAT32_MIN_CLUSTERS {
                return if g.clusters < 16 {
                    Err(DiskError::TooSmall {
                        what: "a FAT volume".into(),
                        needed: 2 << 20,
                        available: size,
                    })
                } else {
                    Ok(g)
                };
            }
            let g32 = Geometry::with(size, cluster, true);
            if g32.clusters >= FAT32_MIN_CLUSTERS {
                return Ok(g32);
            }
            // Too many clusters for FAT16 and too few for FAT32: smaller clusters make it FAT32.
            cluster /= 2;
        }
    }

    fn with(size: u64, cluster: u64, fat32: bool) -> Geometry {
        let total = size / SECTOR;
        let spc = cluster / SECTOR;
        let (reserved, root) = if fat32 {
            (32, 0)
        } else {
            (1, ROOT_ENTRIES * 32 / SECTOR)
        };
        let bits = |clusters: u64| -> u64 {
            if fat32 {
                32
            } else if clusters < FAT16_MIN_CLUSTERS {
                12
            } else {
                16
            }
        };
        let mut fat = 1;
        let clusters = loop {
            let data = total.saturating_sub(reserved + root + 2 * fat);
            let clusters = data / spc;
            let need = ((clusters + 2) * bits(clusters))
                .div_ceil(8)
                .div_ceil(SECTOR);
            if need <= fat {
                break clusters;
            }
            fat = need;
        };
        let kind = match bits(clusters) {
            32 => FatKind::Fat32,
            16 => FatKind::Fat16,
            _ => FatKind::Fat12,
        };
        Geometry {
            kind,
            total_sectors: total,
            sectors_per_cluster: spc,
            reserved,
            fat_sectors: fat,
            root_sectors: root,
            clusters,
        }
    }

    /// Bytes in a cluster.
    pub fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * SECTOR
    }

    /// Where cluster `n` starts, in bytes from the volume's start.
    pub fn cluster_offset(&self, n: u64) -> u64 {
        (self.reserved + 2 * self.fat_sectors + self.root_sectors) * SECTOR
            + (n - 2) * self.cluster_bytes()
    }
}

/// The DOS (time, date) of `t`, clamped to FAT's 1980-2107 range.
fn dos_time(t: i64) -> (u16, u16) {
    let (y, mo, d, h, mi, s) = civil(t);
    let (y, mo, d, h, mi, s) = if y < 1980 {
        (1980, 1, 1, 0, 0, 0)
    } else if y > 2107 {
        (2107, 12, 31, 23, 59, 58)
    } else {
        (y, mo, d, h, mi, s)
    };
    let time = ((h << 11) | (mi << 5) | (s / 2)) as u16;
    let date = ((((y - 1980) as u32) << 9) | (mo << 5) | d) as u16;
    (time, date)
}

/// The 11-byte short name of `name` and its case flags (byte 12 of an entry).
fn short_name(name: &str) -> Result<([u8; 11], u8), DiskError> {
    let bad = || {
        DiskError::Unrepresentable(format!(
            "{name:?} is not an 8.3 name (up to 8 letters, digits or _-~!#$%&'()@^{{}} and an extension of up to 3; one case)"
        ))
    };
    if name.ends_with('.') {
        // `A.` would be stored as `A`, colliding with it; Windows drops trailing dots too.
        return Err(DiskError::Unrepresentable(format!(
            "{name:?} ends in a dot, which FAT names cannot (it would be stored as {:?})",
            name.trim_end_matches('.')
        )));
    }
    let (base, ext) = name.split_once('.').unwrap_or((name, ""));
    let allowed =
        |s: &str, max: usize| !s.is_empty() && s.len() <= max || (max == 3 && s.is_empty());
    let chars_ok = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-~!#$%&'()@^{}".contains(&b))
    };
    if !allowed(base, 8)
        || !allowed(ext, 3)
        || !chars_ok(base)
        || !chars_ok(ext)
        || ext.contains('.')
    {
        return Err(bad());
    }
    let case = |s: &str, flag: u8| -> Result<u8, DiskError> {
        let lower = s.bytes().any(|b| b.is_ascii_lowercase());
        let upper = s.bytes().any(|b| b.is_ascii_uppercase());
        match (lower, upper) {
            (true, true) => Err(bad()),
            (true, false) => Ok(flag),
            _ => Ok(0),
        }
    };
    let flags = case(base, 0x08)? | case(ext, 0x10)?;
    let mut out = [b' '; 11];
    out[..base.len()].copy_from_slice(base.to_ascii_uppercase().as_bytes());
    out[8..8 + ext.len()].copy_from_slice(ext.to_ascii_uppercase().as_bytes());
    Ok((out, flags))
}

fn label_bytes(label: &str) -> Result<[u8; 11], DiskError> {
    let upper = label.to_ascii_uppercase();
    if upper.len() > 11
        || !upper
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b' ')
    {
        return Err(DiskError::Unrepresentable(format!(
            "{label:?} is not a FAT volume label (up to 11 letters, digits, _ or spaces)"
        )));
    }
    let mut out = [b' '; 11];
    out[..upper.len()].copy_from_slice(upper.as_bytes());
    Ok(out)
}

/// A node of the volume's tree while it is planned.
enum Node<'a> {
    Dir(BTreeMap<String, Node<'a>>),
    File(&'a dyn Source),
}

/// Where a file or directory is placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Its first cluster (0 for an empty file).
    pub cluster: u64,
    /// Its clusters.
    pub clusters: u64,
    /// Its size in bytes (0 for directories).
    pub len: u64,
}

/// The planned volume: every path's place, in the order written.
struct Plan<'a> {
    /// Directories (path, extent, entries), root first; the FAT12/16 root has cluster 0.
    dirs: Vec<(String, Extent, Vec<Entry>)>,
    /// Files (path, extent, source), in layout order.
    files: Vec<(String, Extent, &'a dyn Source)>,
    /// Clusters used.
    used: u64,
}

/// One directory entry to write.
#[derive(Debug, Clone)]
struct Entry {
    name: [u8; 11],
    case: u8,
    attr: u8,
    cluster: u64,
    len: u64,
}

fn insert<'a>(
    root: &mut BTreeMap<String, Node<'a>>,
    path: &str,
    source: &'a dyn Source,
) -> Result<(), DiskError> {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((name, parents)) = parts.split_last() else {
        return Err(DiskError::Unrepresentable(format!(
            "{path:?}: no file name"
        )));
    };
    let mut dir = root;
    for p in parents {
        short_name(p)?;
        let node = dir
            .entry(p.to_ascii_uppercase())
            .or_insert_with(|| Node::Dir(BTreeMap::new()));
        dir = match node {
            Node::Dir(d) => d,
            Node::File(_) => {
                return Err(DiskError::Unrepresentable(format!(
                    "{path:?}: {p} is a file"
                )));
            }
        };
    }
    short_name(name)?;
    if dir
        .insert(name.to_ascii_uppercase(), Node::File(source))
        .is_some()
    {
        return Err(DiskError::Unrepresentable(format!(
            "{path:?} is given twice (FAT names ignore case)"
        )));
    }
    Ok(())
}

/// Lay out `files` on `geometry`: directories breadth-first, then files in path order.
fn plan<'a>(files: &[FatFile<'a>], g: &Geometry) -> Result<Plan<'a>, DiskError> {
    let mut root = BTreeMap::new();
    for f in files {
        insert(&mut root, f.path, f.source)?;
    }
    // The original spelling of each name, for case flags: keep the first path's spelling.
    let mut spelled: BTreeMap<String, String> = BTreeMap::new();
    for f in files {
        for part in f.path.split('/').filter(|p| !p.is_empty()) {
            spelled
                .entry(part.to_ascii_uppercase())
                .or_insert_with(|| part.to_string());
        }
    }
    let cb = g.cluster_bytes();
    let dir_clusters = |n_entries: u64| (n_entries * 32).div_ceil(cb).max(1);
    // Breadth-first: (path, node) in order; directory clusters first.
    let mut queue: Vec<(String, &BTreeMap<String, Node<'a>>)> = vec![(String::new(), &root)];
    let mut next = 2u64;
    let mut dir_at: BTreeMap<String, Extent> = BTreeMap::new();
    let mut i = 0;
    while i < queue.len() {
        let (path, children) = queue[i].clone();
        let is_root = path.is_empty();
        let fixed_root = is_root && g.kind != FatKind::Fat32;
        let entries = children.len() as u64 + if is_root { 1 } else { 2 };
        let extent = if fixed_root {
            if entries > ROOT_ENTRIES {
                return Err(DiskError::Unrepresentable(format!(
                    "more than {} entries in the root directory",
                    ROOT_ENTRIES - 1
                )));
            }
            Extent {
                cluster: 0,
                clusters: 0,
                len: 0,
            }
        } else {
            let n = dir_clusters(entries);
            let e = Extent {
                cluster: next,
                clusters: n,
                len: 0,
            };
            next += n;
            e
        };
        dir_at.insert(path.clone(), extent);
        for (name, node) in children {
            if let Node::Dir(d) = node {
                let child = if is_root {
                    name.clone()
                } else {
                    format!("{path}/{name}")
                };
                queue.push((child, d));
            }
        }
        i += 1;
    }
    let mut file_list = Vec::new();
    fn walk<'a>(
        prefix: &str,
        dir: &BTreeMap<String, Node<'a>>,
        out: &mut Vec<(String, &'a dyn Source)>,
    ) {
        for (name, node) in dir {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match node {
                Node::File(s) => out.push((path, *s)),
                Node::Dir(d) => walk(&path, d, out),
            }
        }
    }
    let mut sources = Vec::new();
    walk("", &root, &mut sources);
    let mut file_at: BTreeMap<String, Extent> = BTreeMap::new();
    for (path, source) in sources {
        let len = source.len();
        if len > u64::from(u32::MAX) {
            return Err(DiskError::Unrepresentable(format!(
                "{path}: {len} bytes is over the 4 GiB a FAT file can hold"
            )));
        }
        let n = len.div_ceil(cb);
        let e = Extent {
            cluster: if n == 0 { 0 } else { next },
            clusters: n,
            len,
        };
        next += n;
        file_at.insert(path.clone(), e);
        file_list.push((path, e, source));
    }
    let used = next - 2;
    // Directory entries, now that every place is known.
    let mut dirs = Vec::new();
    for (path, children) in &queue {
        let me = dir_at[path];
        let mut entries = Vec::new();
        if !path.is_empty() {
            let parent = path.rsplit_once('/').map_or("", |(p, _)| p);
            let parent_cluster = if parent.is_empty() {
                0
            } else {
                dir_at[parent].cluster
            };
            let mut dot = [b' '; 11];
            dot[0] = b'.';
            let mut dotdot = dot;
            dotdot[1] = b'.';
            entries.push(Entry {
                name: dot,
                case: 0,
                attr: 0x10,
                cluster: me.cluster,
                len: 0,
            });
            entries.push(Entry {
                name: dotdot,
                case: 0,
                attr: 0x10,
                cluster: parent_cluster,
                len: 0,
            });
        }
        for (name, node) in children.iter() {
            let full = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}/{name}")
            };
            let spelling = spelled.get(name).map_or(name.as_str(), String::as_str);
            let (short, case) = short_name(spelling)?;
            let (attr, at) = match node {
                Node::Dir(_) => (0x10, dir_at[&full]),
                Node::File(_) => (0x20, file_at[&full]),
            };
            entries.push(Entry {
                name: short,
                case,
                attr,
                cluster: at.cluster,
                len: at.len,
            });
        }
        dirs.push((path.clone(), me, entries));
    }
    Ok(Plan {
        dirs,
        files: file_list,
        used,
    })
}

fn entry_bytes(e: &Entry, time: u16, date: u16) -> [u8; 32] {
    let mut b = [0u8; 32];
    b[..11].copy_from_slice(&e.name);
    b[11] = e.attr;
    b[12] = e.case;
    b[14..16].copy_from_slice(&time.to_le_bytes());
    b[16..18].copy_from_slice(&date.to_le_bytes());
    b[18..20].copy_from_slice(&date.to_le_bytes());
    b[20..22].copy_from_slice(&((e.cluster >> 16) as u16).to_le_bytes());
    b[22..24].copy_from_slice(&time.to_le_bytes());
    b[24..26].copy_from_slice(&date.to_le_bytes());
    b[26..28].copy_from_slice(&(e.cluster as u16).to_le_bytes());
    b[28..32].copy_from_slice(&(e.len as u32).to_le_bytes());
    b
}

/// The boot sector of a volume with geometry `g`.
fn boot_sector(g: &Geometry, opts: &FatOptions, label: [u8; 11]) -> [u8; 512] {
    let mut b = [0u8; 512];
    let fat32 = g.kind == FatKind::Fat32;
    let code = if fat32 { 0x5A } else { 0x3E };
    b[0] = 0xEB;
    b[1] = code as u8 - 2;
    b[2] = 0x90;
    b[3..11].copy_from_slice(b"MSWIN4.1");
    b[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    b[13] = g.sectors_per_cluster as u8;
    b[14..16].copy_from_slice(&(g.reserved as u16).to_le_bytes());
    b[16] = 2;
    let root_entries = if fat32 { 0 } else { ROOT_ENTRIES as u16 };
    b[17..19].copy_from_slice(&root_entries.to_le_bytes());
    if g.total_sectors < 0x10000 {
        b[19..21].copy_from_slice(&(g.total_sectors as u16).to_le_bytes());
    } else {
        b[32..36].copy_from_slice(&(g.total_sectors as u32).to_le_bytes());
    }
    b[21] = 0xF8;
    if !fat32 {
        b[22..24].copy_from_slice(&(g.fat_sectors as u16).to_le_bytes());
    }
    b[24..26].copy_from_slice(&63u16.to_le_bytes());
    b[26..28].copy_from_slice(&255u16.to_le_bytes());
    b[28..32].copy_from_slice(&opts.hidden_sectors.to_le_bytes());
    let ext = if fat32 {
        b[36..40].copy_from_slice(&(g.fat_sectors as u32).to_le_bytes());
        b[44..48].copy_from_slice(&2u32.to_le_bytes());
        b[48..50].copy_from_slice(&1u16.to_le_bytes());
        b[50..52].copy_from_slice(&6u16.to_le_bytes());
        64
    } else {
        36
    };
    b[ext] = 0x80;
    b[ext + 2] = 0x29;
    b[ext + 3..ext + 7].copy_from_slice(&opts.volume_id.to_le_bytes());
    b[ext + 7..ext + 18].copy_from_slice(&label);
    b[ext + 18..ext + 26].copy_from_slice(match g.kind {
        FatKind::Fat12 => b"FAT12   ",
        FatKind::Fat16 => b"FAT16   ",
        FatKind::Fat32 => b"FAT32   ",
    });
    // Not a boot disk: halt where the jump lands.
    b[code] = 0xF4;
    b[code + 1] = 0xEB;
    b[code + 2] = 0xFD;
    b[510] = 0x55;
    b[511] = 0xAA;
    b
}

/// The file allocation table of `plan` on `g`, as bytes.
fn table(g: &Geometry, plan: &Plan<'_>) -> Vec<u8> {
    let entries = (g.clusters + 2) as usize;
    let mut values = vec![0u32; entries];
    let (eoc, media) = match g.kind {
        FatKind::Fat12 => (0xFFF, 0xFF8),
        FatKind::Fat16 => (0xFFFF, 0xFFF8),
        FatKind::Fat32 => (0x0FFF_FFFF, 0x0FFF_FFF8),
    };
    values[0] = media;
    values[1] = eoc;
    let chains = plan
        .dirs
        .iter()
        .map(|(_, e, _)| *e)
        .chain(plan.files.iter().map(|(_, e, _)| *e));
    for e in chains {
        for k in 0..e.clusters {
            let n = (e.cluster + k) as usize;
            values[n] = if k + 1 == e.clusters {
                eoc
            } else {
                (n + 1) as u32
            };
        }
    }
    let mut bytes = vec![0u8; (g.fat_sectors * SECTOR) as usize];
    for (n, v) in values.iter().enumerate() {
        match g.kind {
            FatKind::Fat12 => {
                let at = n * 3 / 2;
                if n % 2 == 0 {
                    bytes[at] = *v as u8;
                    bytes[at + 1] = (bytes[at + 1] & 0xF0) | ((*v >> 8) as u8 & 0x0F);
                } else {
                    bytes[at] = (bytes[at] & 0x0F) | ((*v << 4) as u8);
                    bytes[at + 1] = (*v >> 4) as u8;
                }
            }
            FatKind::Fat16 => bytes[n * 2..n * 2 + 2].copy_from_slice(&(*v as u16).to_le_bytes()),
            FatKind::Fat32 => bytes[n * 4..n * 4 + 4].copy_from_slice(&v.to_le_bytes()),
        }
    }
    bytes
}

/// Where a file was placed: its path (upper case) and its first byte on the volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The path as stored (upper case, `/`-separated).
    pub path: String,
    /// Its first byte, from the volume's start (0 for an empty file).
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// What a written volume looks like.
#[derive(Debug, Clone)]
pub struct Written {
    /// Its geometry (and so its FAT type).
    pub geometry: Geometry,
    /// Every file, each in one contiguous run.
    pub files: Vec<Placed>,
}

/// Write a FAT volume holding `files` onto `volume` (exactly the volume's bytes, already zero
/// or sparse); returns its geometry and where each file went.
pub fn write_fat<D: Read + Write + Seek>(
    mut volume: D,
    files: &[FatFile<'_>],
    opts: &FatOptions,
) -> Result<Written, DiskError> {
    let io = |what: &str| {
        let what = what.to_string();
        move |e| DiskError::io(what.clone(), e)
    };
    let size = volume
        .seek(SeekFrom::End(0))
        .map_err(io("measuring the FAT volume"))?;
    let g = Geometry::of(size)?;
    let label = label_bytes(&opts.label)?;
    let plan = plan(files, &g)?;
    if plan.used > g.clusters {
        return Err(DiskError::TooSmall {
            what: "the FAT volume".into(),
            needed: size + (plan.used - g.clusters) * g.cluster_bytes(),
            available: size,
        });
    }
    let (time, date) = dos_time(opts.mtime);
    let boot = boot_sector(&g, opts, label);
    let put = |v: &mut D, at: u64, bytes: &[u8], what: &str| -> Result<(), DiskError> {
        v.seek(SeekFrom::Start(at)).map_err(io(what))?;
        v.write_all(bytes).map_err(io(what))
    };
    put(&mut volume, 0, &boot, "the FAT boot sector")?;
    if g.kind == FatKind::Fat32 {
        let mut info = [0u8; 512];
        info[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
        info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
        info[488..492].copy_from_slice(&((g.clusters - plan.used) as u32).to_le_bytes());
        info[492..496].copy_from_slice(&((plan.used + 2) as u32).to_le_bytes());
        info[508..512].copy_from_slice(&0xAA55_0000u32.to_le_bytes());
        put(&mut volume, SECTOR, &info, "the FAT32 FSInfo sector")?;
        put(
            &mut volume,
            6 * SECTOR,
            &boot,
            "the FAT32 backup boot sector",
        )?;
        put(
            &mut volume,
            7 * SECTOR,
            &info,
            "the FAT32 backup FSInfo sector",
        )?;
    }
    let fat = table(&g, &plan);
    for copy in 0..2 {
        put(
            &mut volume,
            (g.reserved + copy * g.fat_sectors) * SECTOR,
            &fat,
            "the file allocation table",
        )?;
    }
    for (path, extent, entries) in &plan.dirs {
        let mut bytes = Vec::new();
        if path.is_empty() && label != [b' '; 11] {
            bytes.extend_from_slice(&entry_bytes(
                &Entry {
                    name: label,
                    case: 0,
                    attr: 0x08,
                    cluster: 0,
                    len: 0,
                },
                time,
                date,
            ));
        }
        for e in entries {
            bytes.extend_from_slice(&entry_bytes(e, time, date));
        }
        let at = if extent.cluster == 0 {
            (g.reserved + 2 * g.fat_sectors) * SECTOR
        } else {
            g.cluster_offset(extent.cluster)
        };
        put(&mut volume, at, &bytes, "a FAT directory")?;
    }
    let mut buf = vec![0u8; 1 << 20];
    let mut placed = Vec::new();
    for (path, extent, source) in &plan.files {
        let offset = if extent.cluster == 0 {
            0
        } else {
            g.cluster_offset(extent.cluster)
        };
        if extent.clusters > 0 {
            volume
                .seek(SeekFrom::Start(offset))
                .map_err(io("the FAT volume"))?;
            copy_source(*source, &mut volume, &mut buf)
                .map_err(|e| DiskError::io(format!("writing {path} into the FAT volume"), e))?;
        }
        placed.push(Placed {
            path: path.clone(),
            offset,
            len: extent.len,
        });
    }
    volume.flush().map_err(io("the FAT volume"))?;
    Ok(Written {
        geometry: g,
        files: placed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn opts() -> FatOptions {
        FatOptions {
            volume_id: 0x1234_abcd,
            label: "ESP".into(),
            mtime: 1_492_533_000,
            hidden_sectors: 2048,
        }
    }

    fn volume(size: usize, files: &[FatFile<'_>]) -> (Vec<u8>, Written) {
        let mut dev = Cursor::new(vec![0u8; size]);
        let w = write_fat(&mut dev, files, &opts()).unwrap();
        (dev.into_inner(), w)
    }

    #[test]
    fn type_follows_the_cluster_count() {
        for (size, kind, cluster) in [
            (1u64 << 20, FatKind::Fat12, 512),
            (8 << 20, FatKind::Fat16, 1024),
            (200 << 20, FatKind::Fat16, 4096),
            (255 << 20, FatKind::Fat16, 4096),
            (257 << 20, FatKind::Fat32, 4096),
            (300 << 20, FatKind::Fat32, 4096),
        ] {
            let g = Geometry::of(size).unwrap();
            assert_eq!((g.kind, g.cluster_bytes()), (kind, cluster), "{size}");
            let ok = match kind {
                FatKind::Fat12 => g.clusters < 4085,
                FatKind::Fat16 => (4085..65_525).contains(&g.clusters),
                FatKind::Fat32 => g.clusters >= 65_525,
            };
            assert!(ok, "{size}: {g:?}");
        }
    }

    #[test]
    fn names_are_short_and_keep_their_case() {
        assert_eq!(short_name("BOOTX64.EFI").unwrap(), (*b"BOOTX64 EFI", 0));
        assert_eq!(short_name("syslinux.cfg").unwrap(), (*b"SYSLINUXCFG", 0x18));
        assert_eq!(short_name("kernel").unwrap(), (*b"KERNEL     ", 0x08));
        for bad in [
            "Mixed.cfg",
            "toolongname",
            "a.long",
            "a b",
            "",
            ".x",
            "a.b.c",
            "a.",
            "A..",
            ".",
            "..",
            "...",
        ] {
            assert!(short_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            short_name("EFI.").unwrap_err().to_string(),
            "\"EFI.\" ends in a dot, which FAT names cannot (it would be stored as \"EFI\")"
        );
    }

    #[test]
    fn a_name_and_the_same_with_a_dot_do_not_share_an_entry() {
        let body = b"x".to_vec();
        for (a, b) in [("a", "a."), ("d/f", "d./g"), ("x.", "y")] {
            let files = [
                FatFile {
                    path: a,
                    source: &body,
                },
                FatFile {
                    path: b,
                    source: &body,
                },
            ];
            let mut dev = Cursor::new(vec![0u8; 2 << 20]);
            let err = write_fat(&mut dev, &files, &opts()).unwrap_err();
            assert!(err.to_string().contains("ends in a dot"), "{a} {b}: {err}");
        }
    }

    #[test]
    fn files_are_contiguous_and_bytes_repeat() {
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let small = b"hello".to_vec();
        let empty = Vec::new();
        let files = [
            FatFile {
                path: "EFI/BOOT/BOOTX64.EFI",
                source: &big,
            },
            FatFile {
                path: "loader/entries/a.cfg",
                source: &small,
            },
            FatFile {
                path: "empty",
                source: &empty,
            },
        ];
        let (bytes, w) = volume(16 << 20, &files);
        assert_eq!(bytes, volume(16 << 20, &files).0, "same input, same bytes");
        let efi = w
            .files
            .iter()
            .find(|p| p.path == "EFI/BOOT/BOOTX64.EFI")
            .unwrap();
        let at = efi.offset as usize;
        assert_eq!(&bytes[at..at + big.len()], &big[..]);
        assert_eq!(&bytes[0x1C..0x20], &2048u32.to_le_bytes());
        assert_eq!(&bytes[0x27..0x2B], &0x1234_abcdu32.to_le_bytes());
    }

    /// `fsck.vfat -n` finds nothing wrong at sizes around every FAT type's limits (skipped with
    /// a note where dosfstools is not installed).
    #[test]
    fn fsck_is_clean_at_every_size() {
        if std::process::Command::new("fsck.vfat")
            .arg("--help")
            .output()
            .is_err()
        {
            return osbuild_test_skip::skip(
                "fsck.vfat is not installed: apt-get install dosfstools",
            );
        }
        let body: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
        let files = [
            FatFile {
                path: "EFI/BOOT/BOOTX64.EFI",
                source: &body,
            },
            FatFile {
                path: "syslinux.cfg",
                source: &body,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        for mib in [1u64, 2, 3, 16, 128, 255, 256, 257, 260, 300] {
            let path = dir.path().join(format!("v{mib}"));
            let file = std::fs::File::create(&path).unwrap();
            file.set_len(mib << 20).unwrap();
            let w = write_fat(&file, &files, &opts()).unwrap();
            let out = std::process::Command::new("fsck.vfat")
                .arg("-n")
                .arg(&path)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success() && !text.contains("\n  "),
                "{mib} MiB ({:?}): {text}{}",
                w.geometry.kind,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn too_small_says_what_it_needs() {
        let data = vec![0u8; 4 << 20];
        let f = [FatFile {
            path: "a",
            source: &data,
        }];
        let mut dev = Cursor::new(vec![0u8; 2 << 20]);
        let err = write_fat(&mut dev, &f, &opts()).unwrap_err();
        assert!(matches!(err, DiskError::TooSmall { .. }), "{err}");
        let twice = [f[0], f[0]];
        let mut dev = Cursor::new(vec![0u8; 16 << 20]);
        assert!(write_fat(&mut dev, &twice, &opts()).is_err());
    }
}
