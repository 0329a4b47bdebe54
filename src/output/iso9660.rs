//! A small ISO 9660 writer for flat sets of files: the metadata disk `osbuild run --data`
//! gives a guest (volume `CIDATA`, file `config`, as LinuxKit's metadata package and
//! cloud-init's NoCloud look for). Level 1 names, one directory, deterministic bytes.

use std::io::{self, Write};

/// ISO 9660 logical sector size.
const SECTOR: usize = 2048;
/// Sectors 0-15 are the system area.
const PVD_SECTOR: u32 = 16;
const PATH_TABLE_L: u32 = 18;
const PATH_TABLE_M: u32 = 19;
const ROOT_SECTOR: u32 = 20;
const FIRST_FILE_SECTOR: u32 = 21;

/// Why an image could not be made from the files given.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// A name that ISO 9660 level 1 cannot hold.
    #[error(
        "{0:?}: not an ISO 9660 name (up to 8 letters, digits or _, an optional extension of up to 3)"
    )]
    Name(String),
    /// A volume label ISO 9660 cannot hold.
    #[error("{0:?}: not an ISO 9660 volume label (up to 32 letters, digits or _)")]
    Label(String),
    /// More files than one directory sector holds.
    #[error("too many files for one directory")]
    TooMany,
    /// Writing the image failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One file at the root of the image.
#[derive(Debug, Clone)]
pub struct IsoFile<'a> {
    /// Its name as the guest sees it (lower case is kept in the image as upper case, which
    /// Linux shows in lower case again).
    pub name: &'a str,
    /// Its contents.
    pub data: &'a [u8],
}

/// The on-disc name of `name`: upper case, `;1` version, a dot even without extension.
fn disc_name(name: &str) -> Result<String, IsoError> {
    let upper = name.to_ascii_uppercase();
    let (base, ext) = upper.split_once('.').unwrap_or((&upper, ""));
    let valid = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    };
    if base.is_empty() || !valid(base, 8) || !valid(ext, 3) {
        return Err(IsoError::Name(name.to_string()));
    }
    Ok(format!("{base}.{ext};1"))
}

fn both16(v: u16) -> [u8; 4] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], b[0], b[1]]
}

fn both32(v: u32) -> [u8; 8] {
    let (l, b) = (v.to_le_bytes(), v.to_be_bytes());
    [l[0], l[1], l[2], l[3], b[0], b[1], b[2], b[3]]
}

/// Calendar date and time (UTC) of a Unix time.
fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400) as u32;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs / 60 % 60, secs % 60)
}

/// The 7-byte date of a directory record.
fn record_date(t: i64) -> [u8; 7] {
    let (y, mo, d, h, mi, s) = civil(t);
    let years = (y - 1900).clamp(0, 255) as u8;
    [years, mo as u8, d as u8, h as u8, mi as u8, s as u8, 0]
}

/// The 17-byte date of the volume descriptor.
fn volume_date(t: i64) -> [u8; 17] {
    let (y, mo, d, h, mi, s) = civil(t);
    let text = format!("{:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00", y.clamp(0, 9999));
    let mut out = [0u8; 17];
    out[..16].copy_from_slice(text.as_bytes());
    out
}

/// A directory record for `id` (raw identifier bytes) at `sector` holding `len` bytes.
fn dir_record(id: &[u8], sector: u32, len: u32, directory: bool, mtime: i64) -> Vec<u8> {
    let mut r = vec![0u8; 33];
    r[2..10].copy_from_slice(&both32(sector));
    r[10..18].copy_from_slice(&both32(len));
    r[18..25].copy_from_slice(&record_date(mtime));
    r[25] = if directory { 2 } else { 0 };
    r[28..32].copy_from_slice(&both16(1));
    r[32] = id.len() as u8;
    r.extend_from_slice(id);
    if r.len() % 2 == 1 {
        r.push(0);
    }
    r[0] = r.len() as u8;
    r
}

fn padded(text: &str, len: usize) -> Vec<u8> {
    let mut v = text.as_bytes().to_vec();
    v.resize(len, b' ');
    v
}

/// Write an ISO 9660 image labelled `label` holding `files` at its root; `mtime` dates every
/// record, so the same input gives the same bytes.
pub fn write_iso<W: Write>(
    out: &mut W,
    label: &str,
    files: &[IsoFile<'_>],
    mtime: i64,
) -> Result<u64, IsoError> {
    if label.is_empty()
        || label.len() > 32
        || !label
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(IsoError::Label(label.to_string()));
    }
    let mut names: Vec<(String, &[u8])> = files
        .iter()
        .map(|f| Ok((disc_name(f.name)?, f.data)))
        .collect::<Result<_, IsoError>>()?;
    names.sort_by(|a, b| a.0.cmp(&b.0));
    // The root directory: ".", "..", then the files, in one sector.
    let mut sector = FIRST_FILE_SECTOR;
    let mut records = Vec::new();
    let mut extents = Vec::new();
    for (name, data) in &names {
        records.push(dir_record(
            name.as_bytes(),
            sector,
            data.len() as u32,
            false,
            mtime,
        ));
        extents.push(sector);
        sector += data.len().div_ceil(SECTOR) as u32;
    }
    let total_sectors = sector.max(FIRST_FILE_SECTOR);
    let root_len = SECTOR as u32;
    let mut root = dir_record(&[0], ROOT_SECTOR, root_len, true, mtime);
    root.extend(dir_record(&[1], ROOT_SECTOR, root_len, true, mtime));
    for r in &records {
        root.extend_from_slice(r);
    }
    if root.len() > SECTOR {
        return Err(IsoError::TooMany);
    }
    root.resize(SECTOR, 0);

    let mut pvd = vec![0u8; SECTOR];
    pvd[0] = 1;
    pvd[1..6].copy_from_slice(b"CD001");
    pvd[6] = 1;
    pvd[8..40].copy_from_slice(&padded("LINUX", 32));
    pvd[40..72].copy_from_slice(&padded(label, 32));
    pvd[80..88].copy_from_slice(&both32(total_sectors));
    pvd[120..124].copy_from_slice(&both16(1));
    pvd[124..128].copy_from_slice(&both16(1));
    pvd[128..132].copy_from_slice(&both16(SECTOR as u16));
    pvd[132..140].copy_from_slice(&both32(10));
    pvd[140..144].copy_from_slice(&PATH_TABLE_L.to_le_bytes());
    pvd[148..152].copy_from_slice(&PATH_TABLE_M.to_be_bytes());
    let root_record = dir_record(&[0], ROOT_SECTOR, root_len, true, mtime);
    pvd[156..190].copy_from_slice(&root_record);
    pvd[190..318].copy_from_slice(&padded("", 128));
    pvd[318..446].copy_from_slice(&padded("", 128));
    pvd[446..574].copy_from_slice(&padded("", 128));
    pvd[574..702].copy_from_slice(&padded("OSBUILD", 128));
    pvd[702..813].copy_from_slice(&padded("", 111));
    pvd[813..830].copy_from_slice(&volume_date(mtime));
    pvd[830..847].copy_from_slice(&volume_date(mtime));
    pvd[847..864].copy_from_slice(b"0000000000000000\0");
    pvd[864..881].copy_from_slice(&volume_date(mtime));
    pvd[881] = 1;

    let mut terminator = vec![0u8; SECTOR];
    terminator[0] = 255;
    terminator[1..6].copy_from_slice(b"CD001");
    terminator[6] = 1;

    let path_table = |big_endian: bool| {
        let mut t = vec![0u8; SECTOR];
        t[0] = 1;
        let loc = if big_endian {
            ROOT_SECTOR.to_be_bytes()
        } else {
            ROOT_SECTOR.to_le_bytes()
        };
        t[2..6].copy_from_slice(&loc);
        let parent = if big_endian {
            1u16.to_be_bytes()
        } else {
            1u16.to_le_bytes()
        };
        t[6..8].copy_from_slice(&parent);
        t
    };

    out.write_all(&vec![0u8; SECTOR * PVD_SECTOR as usize])?;
    out.write_all(&pvd)?;
    out.write_all(&terminator)?;
    out.write_all(&path_table(false))?;
    out.write_all(&path_table(true))?;
    out.write_all(&root)?;
    for (_, data) in &names {
        out.write_all(data)?;
        let pad = data.len().div_ceil(SECTOR) * SECTOR - data.len();
        out.write_all(&vec![0u8; pad])?;
    }
    Ok(u64::from(total_sectors) * SECTOR as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(files: &[IsoFile<'_>]) -> Vec<u8> {
        let mut v = Vec::new();
        write_iso(&mut v, "CIDATA", files, 1_492_533_000).unwrap();
        v
    }

    #[test]
    fn names_follow_level_one() {
        assert_eq!(disc_name("config").unwrap(), "CONFIG.;1");
        assert_eq!(disc_name("meta.txt").unwrap(), "META.TXT;1");
        for bad in ["user-data", "toolongname", "a.json", "", "x.y.z"] {
            assert!(
                matches!(disc_name(bad), Err(IsoError::Name(n)) if n == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn layout_descriptors_and_file_extent() {
        let data = b"{\"hello\":\"world\"}";
        let v = image(&[IsoFile {
            name: "config",
            data,
        }]);
        assert_eq!(v.len(), 22 * SECTOR);
        let pvd = &v[16 * SECTOR..17 * SECTOR];
        assert_eq!(&pvd[..7], b"\x01CD001\x01");
        assert_eq!(&pvd[40..46], b"CIDATA");
        assert_eq!(&pvd[80..84], &22u32.to_le_bytes());
        assert_eq!(&pvd[813..829], b"2017041816300000");
        assert_eq!(v[17 * SECTOR], 255);
        // The third root record names the file and points at sector 21.
        let root = &v[20 * SECTOR..21 * SECTOR];
        let third = 34 + 34;
        assert_eq!(&root[third + 33..third + 42], b"CONFIG.;1");
        assert_eq!(&root[third + 2..third + 6], &21u32.to_le_bytes());
        assert_eq!(
            &root[third + 10..third + 14],
            &(data.len() as u32).to_le_bytes()
        );
        assert_eq!(&v[21 * SECTOR..21 * SECTOR + data.len()], data);
    }

    #[test]
    fn same_input_same_bytes_and_bad_labels() {
        let f = [IsoFile {
            name: "config",
            data: b"x",
        }];
        assert_eq!(image(&f), image(&f));
        let mut v = Vec::new();
        assert!(matches!(
            write_iso(&mut v, "ci-data", &f, 0),
            Err(IsoError::Label(_))
        ));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil(1_492_533_000), (2017, 4, 18, 16, 30, 0));
    }
}
