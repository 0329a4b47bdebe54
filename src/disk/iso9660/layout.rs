//! The plan of an image: names and record order of both directory trees, the sector of every
//! descriptor, path table, directory, continuation area and file, and the bytes of everything
//! before the first file body.

use sha2::{Digest, Sha256};

use super::el_torito::{self, PLATFORM_BIOS, PLATFORM_EFI};
use super::names::{Named, joliet_ids, primary_ids, primary_order};
use super::rock_ridge::{self as rr, S_IFDIR, S_IFREG, Split};
use super::tree::{Entry, Tree};
use super::volume::{self, Hierarchy, PVD_SECTOR, SECTOR, both16, both32, record_date};
use super::{IsoError, IsoImage, hybrid};

/// Everything needed to write an image.
pub(crate) struct Plan {
    /// Sectors 16 up to the first file body.
    pub metadata: Vec<u8>,
    /// Files with a body, in the order written: (index in the image's files, first sector).
    pub data: Vec<(usize, u32)>,
    /// The image's size in sectors.
    pub total_sectors: u32,
    /// The BIOS boot file: (index, sector).
    pub bios: Option<(usize, u32)>,
    /// The EFI boot image: (index, sector).
    pub efi: Option<(usize, u32)>,
    /// The hybrid MBR's disk signature: from a hash of the metadata.
    pub signature: u32,
}

/// One directory record to write.
struct Record {
    /// File identifier (`[0]` for ".", `[1]` for "..").
    id: Vec<u8>,
    /// What it describes.
    target: Entry,
    /// Rock Ridge entries (primary tree only).
    su: Split,
    /// Where the continuation area went: (sector, offset).
    ce: (u32, u32),
}

impl Record {
    fn len(&self) -> usize {
        let n = 33 + self.id.len() + (1 - self.id.len() % 2) + self.su.inline_len();
        n + n % 2
    }
}

/// One of the two directory hierarchies (primary with Rock Ridge, or Joliet).
struct Hier {
    /// Per directory: its records, ".", ".." and the entries in ISO 9660 order.
    records: Vec<Vec<Record>>,
    /// Per directory: its identifier in its parent (root: `[0]`).
    ids: Vec<Vec<u8>>,
    /// Directories in path table order (breadth first, siblings in record order).
    order: Vec<usize>,
    /// Per directory: its extent size in bytes.
    sizes: Vec<u32>,
    /// Per directory: its first sector.
    lbas: Vec<u32>,
    /// The path table's size in bytes.
    path_table_len: u32,
}

/// Largest system use area a record keeps (records are at most 255 bytes, even length).
fn su_room(id_len: usize) -> usize {
    254usize.saturating_sub(33 + id_len + (1 - id_len % 2))
}

/// Rock Ridge entries of a record describing `target`.
fn rock_ridge(
    tree: &Tree,
    image: &IsoImage<'_>,
    target: Entry,
    name: Option<&str>,
    root_dot: bool,
    id_len: usize,
) -> Split {
    let (mode, links) = match target {
        Entry::Dir(d) => (S_IFDIR | tree.dirs[d].mode, 2 + tree.dirs[d].subdirs()),
        Entry::File(i) => (S_IFREG | (image.files[i].mode & 0o7777), 1),
    };
    let mut entries = Vec::new();
    if root_dot {
        entries.push(rr::sp());
    }
    entries.push(rr::px(mode, links));
    entries.push(rr::tf(image.mtime));
    if let Some(name) = name {
        entries.extend(rr::nm(name.as_bytes()));
    }
    let continued = if root_dot { vec![rr::er()] } else { vec![] };
    rr::split(entries, continued, su_room(id_len))
}

/// Name and order the entries of every directory for one hierarchy.
fn hierarchy(tree: &Tree, image: &IsoImage<'_>, joliet: bool) -> Result<Hier, IsoError> {
    let n = tree.dirs.len();
    let mut records: Vec<Vec<Record>> = Vec::with_capacity(n);
    let mut ids: Vec<Vec<u8>> = vec![vec![0]; n];
    for (d, dir) in tree.dirs.iter().enumerate() {
        let entries: Vec<(&String, Entry)> = dir.entries.iter().map(|(k, v)| (k, *v)).collect();
        let named: Vec<Named<'_>> = entries
            .iter()
            .map(|(name, e)| Named {
                name,
                dir: matches!(e, Entry::Dir(_)),
            })
            .collect();
        let names = if joliet {
            joliet_ids(&named)
        } else {
            primary_ids(&named)
        }
        .ok_or_else(|| IsoError::NameCollisions(dir.path.clone()))?;
        let mut recs: Vec<Record> = Vec::with_capacity(entries.len() + 2);
        for (i, target) in [(0u8, Entry::Dir(d)), (1u8, Entry::Dir(dir.parent))] {
            let su = if joliet {
                Split::default()
            } else {
                rock_ridge(tree, image, target, None, d == 0 && i == 0, 1)
            };
            recs.push(Record {
                id: vec![i],
                target,
                su,
                ce: (0, 0),
            });
        }
        let mut children: Vec<Record> = entries
            .iter()
            .zip(names)
            .map(|((name, target), id)| {
                let su = if joliet {
                    Split::default()
                } else {
                    rock_ridge(tree, image, *target, Some(name), false, id.len())
                };
                Record {
                    id,
                    target: *target,
                    su,
                    ce: (0, 0),
                }
            })
            .collect();
        if joliet {
            children.sort_by(|a, b| a.id.cmp(&b.id));
        } else {
            children.sort_by(|a, b| primary_order(&a.id).cmp(&primary_order(&b.id)));
        }
        for r in &children {
            if let Entry::Dir(c) = r.target {
                ids[c] = r.id.clone();
            }
        }
        recs.extend(children);
        records.push(recs);
    }
    // Breadth first from the root, each directory's subdirectories in record order.
    let mut order = vec![0usize];
    let mut next = 0;
    while next < order.len() {
        let d = order[next];
        next += 1;
        order.extend(records[d][2..].iter().filter_map(|r| match r.target {
            Entry::Dir(c) => Some(c),
            Entry::File(_) => None,
        }));
    }
    if order.len() > usize::from(u16::MAX) {
        return Err(IsoError::TooManyDirectories(order.len()));
    }
    let sizes = records
        .iter()
        .map(|recs| {
            let (mut sectors, mut used) = (1u64, 0usize);
            for r in recs {
                if used + r.len() > SECTOR {
                    sectors += 1;
                    used = 0;
                }
                used += r.len();
            }
            (sectors * SECTOR as u64).min(u64::from(u32::MAX)) as u32
        })
        .collect();
    // At most 65535 records of at most 8 + 128 + 1 bytes: well within u32.
    let path_table_len = order
        .iter()
        .map(|&d| 8 + ids[d].len() + ids[d].len() % 2)
        .sum::<usize>() as u32;
    Ok(Hier {
        records,
        ids,
        order,
        sizes,
        lbas: vec![0; n],
        path_table_len,
    })
}

/// Sectors needed for `bytes`.
fn sectors(bytes: u64) -> u64 {
    bytes.div_ceil(SECTOR as u64)
}

/// Hands out consecutive sectors, failing past 32-bit sector numbers.
struct Allocator(u64);

impl Allocator {
    fn take(&mut self, count: u64) -> Result<u32, IsoError> {
        let at = self.0;
        self.0 += count;
        if self.0 > u64::from(u32::MAX) {
            return Err(IsoError::TooLarge(self.0));
        }
        Ok(at as u32)
    }
}

/// The path table of `h`, little (type L) or big (type M) endian.
fn path_table(h: &Hier, big_endian: bool) -> Vec<u8> {
    let mut number = vec![0u16; h.ids.len()];
    for (i, &d) in h.order.iter().enumerate() {
        number[d] = (i + 1) as u16;
    }
    let mut t = Vec::with_capacity(h.path_table_len as usize);
    for &d in &h.order {
        let id = &h.ids[d];
        let parent = match &h.records[d][1].target {
            Entry::Dir(p) => number[*p],
            Entry::File(_) => 1,
        };
        t.push(id.len() as u8);
        t.push(0);
        let (lba, parent) = if big_endian {
            (h.lbas[d].to_be_bytes(), parent.to_be_bytes())
        } else {
            (h.lbas[d].to_le_bytes(), parent.to_le_bytes())
        };
        t.extend_from_slice(&lba);
        t.extend_from_slice(&parent);
        t.extend_from_slice(id);
        if id.len() % 2 == 1 {
            t.push(0);
        }
    }
    t
}

/// The bytes of a directory record.
fn record_bytes(r: &Record, lba: u32, len: u32, dir: bool, mtime: i64) -> Vec<u8> {
    let total = r.len();
    let mut b = Vec::with_capacity(total);
    b.extend_from_slice(&[total as u8, 0]);
    b.extend_from_slice(&both32(lba));
    b.extend_from_slice(&both32(len));
    b.extend_from_slice(&record_date(mtime));
    b.extend_from_slice(&[if dir { 2 } else { 0 }, 0, 0]);
    b.extend_from_slice(&both16(1));
    b.push(r.id.len() as u8);
    b.extend_from_slice(&r.id);
    if r.id.len().is_multiple_of(2) {
        b.push(0);
    }
    b.extend_from_slice(&r.su.inline);
    if !r.su.continued.is_empty() {
        b.extend_from_slice(&rr::ce(r.ce.0, r.ce.1, r.su.continued.len() as u32));
    }
    b.resize(total, 0);
    b
}

/// Plan `image`: check it, lay it out, render its metadata.
pub(crate) fn plan(image: &IsoImage<'_>) -> Result<Plan, IsoError> {
    let vid = &image.volume_id;
    if vid.is_empty()
        || vid.len() > 32
        || !vid
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(IsoError::VolumeId(vid.clone()));
    }
    let tree = Tree::build(&image.files)?;
    let find = |path: &str| -> Result<usize, IsoError> {
        image
            .files
            .iter()
            .position(|f| f.path.trim_start_matches('/') == path.trim_start_matches('/'))
            .filter(|&i| image.files[i].mode & 0o170_000 != S_IFDIR)
            .ok_or_else(|| IsoError::BootFileMissing(path.to_string()))
    };
    let bios = image.boot.as_ref().and_then(|b| b.bios.as_ref());
    let efi = image.boot.as_ref().and_then(|b| b.efi.as_ref());
    if image.boot.is_some() && bios.is_none() && efi.is_none() {
        return Err(IsoError::NoBootEntry);
    }
    let bios_file = bios.map(|b| find(&b.path)).transpose()?;
    let efi_file = efi.map(|e| find(&e.path)).transpose()?;
    if let Some(b) = bios
        && b.load_sectors == 0
    {
        return Err(IsoError::ZeroLoadSectors(b.path.clone()));
    }
    if let (Some(e), Some(i)) = (efi, efi_file)
        && image.files[i].source.is_empty()
    {
        return Err(IsoError::EmptyEfiImage(e.path.clone()));
    }
    if let Some(h) = &image.hybrid {
        if let Some(code) = &h.mbr_code {
            if code.len() > hybrid::CODE_MAX {
                return Err(IsoError::MbrCodeSize(code.len()));
            }
            if bios_file.is_none() {
                return Err(IsoError::HybridWithoutBios);
            }
        }
        if h.efi_partition && efi_file.is_none() {
            return Err(IsoError::HybridWithoutEfi);
        }
    }

    let mut primary = hierarchy(&tree, image, false)?;
    let mut joliet = hierarchy(&tree, image, true)?;

    // Sectors, in the order the module documentation gives.
    let mut alloc = Allocator(u64::from(PVD_SECTOR));
    let pvd = alloc.take(1)?;
    let boot_record = image.boot.as_ref().map(|_| alloc.take(1)).transpose()?;
    let svd = alloc.take(1)?;
    let term = alloc.take(1)?;
    let catalog = image.boot.as_ref().map(|_| alloc.take(1)).transpose()?;
    let p_len = u64::from(primary.path_table_len);
    let j_len = u64::from(joliet.path_table_len);
    let tables = [
        alloc.take(sectors(p_len))?,
        alloc.take(sectors(p_len))?,
        alloc.take(sectors(j_len))?,
        alloc.take(sectors(j_len))?,
    ];
    for h in [&mut primary, &mut joliet] {
        for i in 0..h.order.len() {
            let d = h.order[i];
            h.lbas[d] = alloc.take(sectors(u64::from(h.sizes[d])))?;
        }
    }
    // Continuation areas: packed, none crossing a sector boundary.
    let (mut ce_sector, mut ce_used) = (None::<u32>, 0usize);
    for &d in &primary.order {
        for r in &mut primary.records[d] {
            let len = r.su.continued.len();
            if len == 0 {
                continue;
            }
            let sector = match ce_sector {
                Some(s) if ce_used + len <= SECTOR => s,
                _ => {
                    ce_used = 0;
                    let s = alloc.take(1)?;
                    ce_sector = Some(s);
                    s
                }
            };
            r.ce = (sector, ce_used as u32);
            ce_used += len;
        }
    }
    let data_start = alloc.0;
    let mut data = Vec::new();
    let mut file_lba = vec![0u32; image.files.len()];
    for i in tree.files_in_order() {
        let len = image.files[i].source.len();
        if len > 0 {
            file_lba[i] = alloc.take(sectors(len))?;
            data.push((i, file_lba[i]));
        }
    }
    if image.hybrid.is_some() {
        let total = alloc.0 * SECTOR as u64;
        let padded = total.next_multiple_of(hybrid::ALIGN);
        alloc.take(sectors(padded - total))?;
    }
    let total_sectors = alloc.take(0)?;

    // The bytes of sectors 16 up to the first body.
    let mut meta = vec![0u8; ((data_start - u64::from(PVD_SECTOR)) as usize) * SECTOR];
    let mut put = |lba: u32, offset: u32, bytes: &[u8]| {
        let at = (lba - PVD_SECTOR) as usize * SECTOR + offset as usize;
        meta[at..at + bytes.len()].copy_from_slice(bytes);
    };
    for (h, sector, is_joliet) in [(&primary, pvd, false), (&joliet, svd, true)] {
        let tables_at = if is_joliet {
            &tables[2..]
        } else {
            &tables[..2]
        };
        let desc = volume::descriptor(
            is_joliet,
            &image.volume_id,
            total_sectors,
            &Hierarchy {
                root_lba: h.lbas[0],
                root_len: h.sizes[0],
                path_table_len: h.path_table_len,
                path_table_l: tables_at[0],
                path_table_m: tables_at[1],
            },
            image.mtime,
        );
        put(sector, 0, &desc);
        put(tables_at[0], 0, &path_table(h, false));
        put(tables_at[1], 0, &path_table(h, true));
        for &d in &h.order {
            let mut dir = Vec::with_capacity(h.sizes[d] as usize);
            for r in &h.records[d] {
                let (lba, len, is_dir) = match r.target {
                    Entry::Dir(t) => (h.lbas[t], h.sizes[t], true),
                    Entry::File(i) => (file_lba[i], image.files[i].source.len() as u32, false),
                };
                let bytes = record_bytes(r, lba, len, is_dir, image.mtime);
                if dir.len() % SECTOR + bytes.len() > SECTOR {
                    dir.resize(dir.len().next_multiple_of(SECTOR), 0);
                }
                dir.extend_from_slice(&bytes);
                if !r.su.continued.is_empty() {
                    put(r.ce.0, r.ce.1, &r.su.continued);
                }
            }
            put(h.lbas[d], 0, &dir);
        }
    }
    put(term, 0, &volume::terminator());
    if let (Some(rec), Some(cat)) = (boot_record, catalog) {
        put(rec, 0, &el_torito::boot_record(cat));
        let mut entries = Vec::new();
        if let (Some(b), Some(i)) = (bios, bios_file) {
            entries.push(el_torito::Entry {
                platform: PLATFORM_BIOS,
                sectors: b.load_sectors,
                lba: file_lba[i],
            });
        }
        if let Some(i) = efi_file {
            entries.push(el_torito::Entry {
                platform: PLATFORM_EFI,
                sectors: el_torito::efi_sectors(image.files[i].source.len()),
                lba: file_lba[i],
            });
        }
        put(cat, 0, &el_torito::catalog(&entries));
    }
    let digest = Sha256::digest(&meta);
    let signature = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]).max(1);
    Ok(Plan {
        metadata: meta,
        data,
        total_sectors,
        bios: bios_file.map(|i| (i, file_lba[i])),
        efi: efi_file.map(|i| (i, file_lba[i])),
        signature,
    })
}
