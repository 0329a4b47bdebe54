//! Just enough ISO 9660 to find a file at the root of a volume: the primary volume descriptor,
//! the root directory's records, and the file's extent. Read straight from the block device,
//! so nothing needs mounting (and no mount privilege is needed).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

const SECTOR: u64 = 2048;
/// A metadata file larger than this is refused.
const MAX_DATA: u32 = 16 << 20;

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
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

/// The contents of the first of `names` at the root of the ISO 9660 volume on `device`, when
/// the device holds such a volume labelled CIDATA (any device) or is a CD-ROM (`sr*`).
pub fn read_data(device: &Path, names: &[&str]) -> io::Result<Option<Vec<u8>>> {
    let mut dev = match File::open(device) {
        Ok(f) => f,
        // An empty CD-ROM drive or a device node that is not there: nothing to read.
        Err(e) if matches!(e.raw_os_error(), Some(123) | Some(6) | Some(2)) => return Ok(None),
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
    let label = String::from_utf8_lossy(&pvd[40..72])
        .trim()
        .to_ascii_uppercase();
    let is_cdrom = device
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("sr"));
    if label != "CIDATA" && !is_cdrom {
        return Ok(None);
    }
    let root = &pvd[156..190];
    let (extent, size) = (le32(root, 2), le32(root, 10));
    if size > MAX_DATA {
        return Err(invalid("root directory too large"));
    }
    let dir = read_at(&mut dev, u64::from(extent) * SECTOR, size as usize)?;
    let mut files = Vec::new();
    let mut at = 0usize;
    while at < dir.len() {
        let len = dir[at] as usize;
        if len == 0 {
            // Records do not cross sectors: go on at the next one.
            at = (at / SECTOR as usize + 1) * SECTOR as usize;
            continue;
        }
        if len < 34 || at + len > dir.len() {
            return Err(invalid("malformed directory record"));
        }
        let rec = &dir[at..at + len];
        let name_len = rec[32] as usize;
        if 33 + name_len > len {
            return Err(invalid("malformed directory record"));
        }
        if rec[25] & 2 == 0 {
            files.push((
                plain_name(&rec[33..33 + name_len]),
                le32(rec, 2),
                le32(rec, 10),
            ));
        }
        at += len;
    }
    for wanted in names {
        if let Some((_, extent, size)) = files.iter().find(|(n, _, _)| n == wanted) {
            if *size > MAX_DATA {
                return Err(invalid("metadata file too large"));
            }
            return read_at(&mut dev, u64::from(*extent) * SECTOR, *size as usize).map(Some);
        }
    }
    Ok(None)
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

    #[test]
    fn reads_what_osbuild_writes() {
        let big = vec![b'x'; 5000];
        let f = volume("CIDATA", &[("a", b"first"), ("config", &big)]);
        let got = read_data(f.path(), &["user-data", "config"]).unwrap();
        assert_eq!(got.as_deref(), Some(&big[..]));
        assert_eq!(read_data(f.path(), &["missing"]).unwrap(), None);
    }

    #[test]
    fn other_volumes_and_other_data_are_passed_over() {
        let f = volume("SOMETHING", &[("config", b"x")]);
        assert_eq!(read_data(f.path(), &["config"]).unwrap(), None);
        let mut plain = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(plain.as_file_mut(), &vec![0u8; 40_000]).unwrap();
        assert_eq!(read_data(plain.path(), &["config"]).unwrap(), None);
        let small = tempfile::NamedTempFile::new().unwrap();
        assert_eq!(read_data(small.path(), &["config"]).unwrap(), None);
    }

    #[test]
    fn names_are_shown_as_linux_shows_them() {
        assert_eq!(plain_name(b"CONFIG.;1"), "config");
        assert_eq!(plain_name(b"META.TXT;1"), "meta.txt");
        assert_eq!(plain_name(b"USER_DAT"), "user_dat");
    }
}
