//! Just enough ISO 9660 to read a metadata volume: the primary volume descriptor (label and
//! root directory), directory records, Rock Ridge names (`NM` entries, followed through `CE`
//! continuation areas), and file extents. Read straight from the block device, so nothing
//! needs mounting (and no mount privilege is needed).
//!
//! Names are matched as Linux shows them: the Rock Ridge name when the volume has Rock Ridge
//! (case kept), otherwise the ISO 9660 name without its `;1` version and bare dot, in lower
//! case (as `mount -t iso9660` does by default).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const SECTOR: u64 = 2048;
/// A metadata file or directory larger than this is refused.
const MAX_DATA: u32 = 16 << 20;
/// Continuation areas followed per record, at most.
const MAX_CONTINUATIONS: usize = 16;
/// Directories descended, at most.
const MAX_DEPTH: usize = 16;

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The name of a directory record as a guest sees it: version and a bare dot dropped, lower case.
fn plain_name(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let base = text.split(';').next().unwrap_or("");
    base.strip_suffix('.').unwrap_or(base).to_ascii_lowercase()
}

fn read_at(dev: &mut File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    dev.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    dev.read_exact(&mut buf)?;
    Ok(buf)
}

/// One directory record.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    name: String,
    extent: u32,
    size: u32,
    dir: bool,
}

/// An ISO 9660 volume open for reading.
pub struct Volume {
    dev: File,
    /// The volume identifier, white space trimmed.
    pub label: String,
    root: Entry,
    /// Bytes skipped at the start of every system use area (`SP`'s LEN_SKP); `None` without
    /// Rock Ridge.
    susp_skip: Option<usize>,
}

impl Volume {
    /// Open `device`; `None` when it holds no ISO 9660 volume (or is an empty drive or a
    /// device node that is not there).
    pub fn open(device: &Path) -> io::Result<Option<Volume>> {
        let mut dev = match File::open(device) {
            Ok(f) => f,
            // ENOMEDIUM, ENXIO, ENOENT: nothing to read.
            Err(e) if matches!(e.raw_os_error(), Some(123) | Some(6) | Some(2)) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let pvd = match read_at(&mut dev, 16 * SECTOR, SECTOR as usize) {
            Ok(p) => p,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        };
        if &pvd[..6] != b"\x01CD001" {
            return Ok(None);
        }
        let label = String::from_utf8_lossy(&pvd[40..72]).trim().to_string();
        let root = &pvd[156..190];
        let root = Entry {
            name: String::new(),
            extent: le32(root, 2),
            size: le32(root, 10),
            dir: true,
        };
        let mut volume = Volume {
            dev,
            label,
            root,
            susp_skip: None,
        };
        volume.susp_skip = volume.rock_ridge()?;
        Ok(Some(volume))
    }

    /// Whether the label is `label` (case ignored).
    pub fn labelled(&self, label: &str) -> bool {
        self.label.eq_ignore_ascii_case(label)
    }

    /// The `SP` entry of the root's "." record says the volume uses SUSP (Rock Ridge).
    fn rock_ridge(&mut self) -> io::Result<Option<usize>> {
        let dir = self.read_extent(self.root.extent, self.root.size.min(SECTOR as u32))?;
        let len = dir.first().copied().unwrap_or(0) as usize;
        if len < 34 || len > dir.len() {
            return Err(invalid("malformed root directory"));
        }
        let rec = &dir[..len];
        let su = system_use(rec, 0);
        Ok(
            (su.len() >= 7 && &su[..2] == b"SP" && su[4..6] == [0xBE, 0xEF])
                .then(|| su[6] as usize),
        )
    }

    fn read_extent(&mut self, extent: u32, size: u32) -> io::Result<Vec<u8>> {
        if size > MAX_DATA {
            return Err(invalid("metadata file or directory too large"));
        }
        read_at(&mut self.dev, u64::from(extent) * SECTOR, size as usize)
    }

    /// The records of directory `dir`, "." and ".." left out.
    fn list(&mut self, dir: &Entry) -> io::Result<Vec<Entry>> {
        let data = self.read_extent(dir.extent, dir.size)?;
        let mut entries = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            let len = data[at] as usize;
            if len == 0 {
                // Records do not cross sectors: go on at the next one.
                at = (at / SECTOR as usize + 1) * SECTOR as usize;
                continue;
            }
            if len < 34 || at + len > data.len() {
                return Err(invalid("malformed directory record"));
            }
            let rec = &data[at..at + len];
            at += len;
            let name_len = rec[32] as usize;
            if 33 + name_len > len {
                return Err(invalid("malformed directory record"));
            }
            let raw = &rec[33..33 + name_len];
            if raw == [0] || raw == [1] {
                continue;
            }
            let rr_name = match self.susp_skip {
                Some(skip) => self.rock_ridge_name(rec, skip)?,
                None => None,
            };
            entries.push(Entry {
                name: rr_name.unwrap_or_else(|| plain_name(raw)),
                extent: le32(rec, 2),
                size: le32(rec, 10),
                dir: rec[25] & 2 != 0,
            });
        }
        Ok(entries)
    }

    /// The Rock Ridge name of record `rec`: its `NM` entries joined, in the record's system
    /// use area and the continuation areas its `CE` entries point to.
    fn rock_ridge_name(&mut self, rec: &[u8], skip: usize) -> io::Result<Option<String>> {
        let mut name: Option<Vec<u8>> = None;
        let mut area = system_use(rec, skip).to_vec();
        for _ in 0..MAX_CONTINUATIONS {
            let mut next = None;
            let mut at = 0;
            while at + 4 <= area.len() {
                let (sig, len) = (&area[at..at + 2], area[at + 2] as usize);
                if len < 4 || at + len > area.len() {
                    break;
                }
                let body = &area[at + 4..at + len];
                match sig {
                    // Flagged CURRENT or PARENT: not a name.
                    b"NM" if !body.is_empty() && body[0] & 0b110 == 0 => {
                        name.get_or_insert_with(Vec::new)
                            .extend_from_slice(&body[1..]);
                    }
                    b"CE" if body.len() >= 24 => {
                        next = Some((le32(body, 0), le32(body, 8), le32(body, 16)));
                    }
                    b"ST" => break,
                    _ => {}
                }
                at += len;
            }
            let Some((block, offset, len)) = next else {
                break;
            };
            if u64::from(offset) + u64::from(len) > SECTOR {
                return Err(invalid("Rock Ridge continuation area crosses its sector"));
            }
            let sector = read_at(&mut self.dev, u64::from(block) * SECTOR, SECTOR as usize)?;
            area = sector[offset as usize..(offset + len) as usize].to_vec();
        }
        Ok(name.map(|n| String::from_utf8_lossy(&n).into_owned()))
    }

    fn find(&mut self, path: &str) -> io::Result<Option<Entry>> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() > MAX_DEPTH {
            return Ok(None);
        }
        let rock_ridge = self.susp_skip.is_some();
        let mut current = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            if !current.dir {
                return Ok(None);
            }
            let wanted = if rock_ridge {
                part.to_string()
            } else {
                part.to_ascii_lowercase()
            };
            let Some(entry) = self.list(&current)?.into_iter().find(|e| e.name == wanted) else {
                return Ok(None);
            };
            if i + 1 < parts.len() && !entry.dir {
                return Ok(None);
            }
            current = entry;
        }
        Ok(Some(current))
    }

    /// The contents of the file at `path` (`/`-separated), `None` when there is none.
    pub fn read(&mut self, path: &str) -> io::Result<Option<Vec<u8>>> {
        match self.find(path)? {
            Some(e) if !e.dir => self.read_extent(e.extent, e.size).map(Some),
            _ => Ok(None),
        }
    }

    /// The contents of the first of `paths` that is a file.
    pub fn read_first(&mut self, paths: &[&str]) -> io::Result<Option<Vec<u8>>> {
        for path in paths {
            if let Some(data) = self.read(path)? {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}

/// The system use area of directory record `rec` (after the name and its padding byte), with
/// `skip` bytes left out.
fn system_use(rec: &[u8], skip: usize) -> &[u8] {
    let name_len = rec[32] as usize;
    let start = 33 + name_len + usize::from(name_len.is_multiple_of(2)) + skip;
    rec.get(start..).unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use osbuild::disk::iso9660::{IsoImage, write_iso};

    fn volume(label: &str, files: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let bodies: Vec<Vec<u8>> = files.iter().map(|(_, d)| d.to_vec()).collect();
        let files: Vec<(&str, &dyn osbuild::disk::source::Source)> = files
            .iter()
            .zip(&bodies)
            .map(|((n, _), b)| (*n, b as &dyn osbuild::disk::source::Source))
            .collect();
        write_iso(f.as_file_mut(), &IsoImage::plain(label, 0, &files)).unwrap();
        f
    }

    fn open(f: &tempfile::NamedTempFile) -> Volume {
        Volume::open(f.path()).unwrap().unwrap()
    }

    #[test]
    fn reads_what_osbuild_writes() {
        let big = vec![b'x'; 5000];
        let f = volume("CIDATA", &[("a", b"first"), ("config", &big)]);
        let mut v = open(&f);
        assert!(v.labelled("cidata"));
        assert!(v.susp_skip.is_some(), "osbuild writes Rock Ridge");
        let got = v.read_first(&["user-data", "config"]).unwrap();
        assert_eq!(got.as_deref(), Some(&big[..]));
        assert_eq!(v.read("missing").unwrap(), None);
    }

    #[test]
    fn nested_long_names_come_from_rock_ridge() {
        let long = format!("{}.json", "n".repeat(240));
        let f = volume(
            "CONFIG_2",
            &[
                ("openstack/latest/meta_data.json", b"{\"a\":1}"),
                ("openstack/latest/user_data", b"ud"),
                ("openstack/2012-08-10/meta_data.json", b"old"),
                ("ec2/latest/meta-data.json", b"ec2"),
                (&long, b"long"),
            ],
        );
        let mut v = open(&f);
        assert_eq!(
            v.read("openstack/latest/meta_data.json")
                .unwrap()
                .as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(
            v.read("/openstack/2012-08-10/meta_data.json")
                .unwrap()
                .as_deref(),
            Some(&b"old"[..])
        );
        assert_eq!(
            v.read("openstack/latest/user_data").unwrap().as_deref(),
            Some(&b"ud"[..])
        );
        // Long names spill into continuation areas.
        assert_eq!(v.read(&long).unwrap().as_deref(), Some(&b"long"[..]));
        // Rock Ridge names keep their case; directories are not files.
        assert_eq!(v.read("OPENSTACK/latest/user_data").unwrap(), None);
        assert_eq!(v.read("openstack/latest").unwrap(), None);
        assert_eq!(v.read("openstack/latest/user_data/x").unwrap(), None);
    }

    #[test]
    fn without_rock_ridge_names_are_lower_case_iso_names() {
        let f = volume("CIDATA", &[("config", b"x")]);
        let mut v = open(&f);
        v.susp_skip = None;
        assert_eq!(v.read("CONFIG").unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(v.read("config").unwrap().as_deref(), Some(&b"x"[..]));
    }

    #[test]
    fn other_data_is_passed_over() {
        let mut plain = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(plain.as_file_mut(), &vec![0u8; 40_000]).unwrap();
        assert!(Volume::open(plain.path()).unwrap().is_none());
        let small = tempfile::NamedTempFile::new().unwrap();
        assert!(Volume::open(small.path()).unwrap().is_none());
        assert!(
            Volume::open(Path::new("/nonexistent/dev"))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn corrupt_directories_are_errors_not_panics() {
        let f = volume("CIDATA", &[("dir/config", b"x")]);
        let image = std::fs::read(f.path()).unwrap();
        let root = le32(&image, 16 * 2048 + 156 + 2) as usize * 2048;
        let write = |image: &[u8]| {
            let t = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(t.path(), image).unwrap();
            t
        };
        // The root's "." record shorter than a record can be.
        let mut short = image.clone();
        short[root] = 20;
        assert!(Volume::open(write(&short).path()).is_err());
        // The third record ("dir") names more bytes than it holds.
        let mut long_name = image.clone();
        let third = root + image[root] as usize + image[root + image[root] as usize] as usize;
        long_name[third + 32] = 250;
        let t = write(&long_name);
        let mut v = Volume::open(t.path()).unwrap().unwrap();
        let e = v.read("dir/config").unwrap_err();
        assert!(e.to_string().contains("malformed directory record"), "{e}");
        // A directory claiming more than MAX_DATA bytes.
        let mut huge = image;
        huge[third + 10..third + 14].copy_from_slice(&(MAX_DATA + 1).to_le_bytes());
        let t = write(&huge);
        let mut v = Volume::open(t.path()).unwrap().unwrap();
        assert!(v.read("dir/config").is_err());
    }

    #[test]
    fn names_are_shown_as_linux_shows_them() {
        assert_eq!(plain_name(b"CONFIG.;1"), "config");
        assert_eq!(plain_name(b"META.TXT;1"), "meta.txt");
        assert_eq!(plain_name(b"USER_DAT"), "user_dat");
    }
}
