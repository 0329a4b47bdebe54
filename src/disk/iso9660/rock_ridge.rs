//! Rock Ridge (RRIP 1.10, "RRIP_1991A") over SUSP: the system use entries of primary directory
//! records (`SP`, `ER`, `PX`, `TF`, `NM`) and their split between the record and a
//! continuation area (`CE`).

use super::volume::{both32, record_date};

/// File type bits of a POSIX mode.
pub(crate) const S_IFDIR: u32 = 0o040_000;
/// Regular file type bits of a POSIX mode.
pub(crate) const S_IFREG: u32 = 0o100_000;
/// Length of a `CE` entry.
pub(crate) const CE_LEN: usize = 28;

/// The identifier, description and source of the `ER` entry, as RRIP 1.10 gives them.
const ER_ID: &[u8] = b"RRIP_1991A";
const ER_DESCRIPTION: &[u8] =
    b"THE ROCK RIDGE INTERCHANGE PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS";
const ER_SOURCE: &[u8] = b"PLEASE CONTACT DISC PUBLISHER FOR SPECIFICATION SOURCE.  \
SEE PUBLISHER IDENTIFIER IN PRIMARY VOLUME DESCRIPTOR FOR CONTACT INFORMATION.";

fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let mut e = Vec::with_capacity(4 + body.len());
    e.extend_from_slice(sig);
    e.push((4 + body.len()) as u8);
    e.push(1);
    e.extend_from_slice(body);
    e
}

/// `SP`: SUSP is in use, no bytes skipped; first entry of the root's "." record.
pub(crate) fn sp() -> Vec<u8> {
    entry(b"SP", &[0xBE, 0xEF, 0])
}

/// `ER`: the Rock Ridge extension reference, in the root's "." record (continuation area).
pub(crate) fn er() -> Vec<u8> {
    let mut body = vec![
        ER_ID.len() as u8,
        ER_DESCRIPTION.len() as u8,
        ER_SOURCE.len() as u8,
        1,
    ];
    body.extend_from_slice(ER_ID);
    body.extend_from_slice(ER_DESCRIPTION);
    body.extend_from_slice(ER_SOURCE);
    entry(b"ER", &body)
}

/// `PX`: mode (type and permission bits), link count, uid 0, gid 0.
pub(crate) fn px(mode: u32, links: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    body.extend_from_slice(&both32(mode));
    body.extend_from_slice(&both32(links));
    body.extend_from_slice(&both32(0));
    body.extend_from_slice(&both32(0));
    entry(b"PX", &body)
}

/// `TF`: modification, access and attribute-change times, all `mtime`.
pub(crate) fn tf(mtime: i64) -> Vec<u8> {
    let mut body = vec![0x0E];
    for _ in 0..3 {
        body.extend_from_slice(&record_date(mtime));
    }
    entry(b"TF", &body)
}

/// `NM` entries holding `name` (several, flagged CONTINUE, when longer than one entry holds).
pub(crate) fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = name.chunks(250).collect();
    let last = chunks.len().saturating_sub(1);
    chunks
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let mut body = vec![u8::from(i < last)];
            body.extend_from_slice(part);
            entry(b"NM", &body)
        })
        .collect()
}

/// `CE`: the rest of the system use entries are `len` bytes at `offset` in sector `lba`.
pub(crate) fn ce(lba: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&both32(lba));
    body.extend_from_slice(&both32(offset));
    body.extend_from_slice(&both32(len));
    entry(b"CE", &body)
}

/// System use entries split between a directory record and its continuation area.
#[derive(Debug, Default, Clone)]
pub(crate) struct Split {
    /// Entries that stay in the record (without the `CE` entry).
    pub inline: Vec<u8>,
    /// Entries for the continuation area; when not empty the record ends with a `CE`.
    pub continued: Vec<u8>,
}

impl Split {
    /// Bytes of the record's system use area, `CE` included.
    pub fn inline_len(&self) -> usize {
        self.inline.len() + if self.continued.is_empty() { 0 } else { CE_LEN }
    }
}

/// Place `entries` (in order) in a record with `room` bytes of system use area: all of them
/// when they fit, otherwise as many leading ones as fit beside a `CE` entry. Entries in
/// `continued_only` always go to the continuation area.
pub(crate) fn split(entries: Vec<Vec<u8>>, continued_only: Vec<Vec<u8>>, room: usize) -> Split {
    let total: usize = entries.iter().map(Vec::len).sum();
    let mut s = Split::default();
    if continued_only.is_empty() && total <= room {
        s.inline = entries.concat();
        return s;
    }
    let mut spill = false;
    for e in entries {
        if !spill && s.inline.len() + e.len() + CE_LEN <= room {
            s.inline.extend_from_slice(&e);
        } else {
            spill = true;
            s.continued.extend_from_slice(&e);
        }
    }
    for e in continued_only {
        s.continued.extend_from_slice(&e);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_lengths() {
        assert_eq!(sp(), [b'S', b'P', 7, 1, 0xBE, 0xEF, 0]);
        assert_eq!(px(0o100644, 1).len(), 36);
        assert_eq!(tf(0).len(), 26);
        assert_eq!(ce(1, 2, 3).len(), CE_LEN);
        let er = er();
        assert_eq!(er.len(), 8 + 10 + 84 + 135);
        assert_eq!(er[2] as usize, er.len());
        assert_eq!(&er[8..18], b"RRIP_1991A");
    }

    #[test]
    fn long_names_take_several_nm_entries() {
        let name = vec![b'a'; 255];
        let v = nm(&name);
        assert_eq!(v.len(), 2);
        assert_eq!((v[0][2], v[0][4]), (255, 1));
        assert_eq!((v[1][2], v[1][4]), (10, 0));
        assert_eq!(nm(b"x"), [vec![b'N', b'M', 6, 1, 0, b'x']]);
    }

    #[test]
    fn split_spills_into_a_continuation_area() {
        let s = split(vec![vec![0; 36], vec![1; 26]], vec![], 100);
        assert_eq!(
            (s.inline.len(), s.continued.len(), s.inline_len()),
            (62, 0, 62)
        );
        let s = split(vec![vec![0; 36], vec![1; 26], vec![2; 60]], vec![], 100);
        assert_eq!(
            (s.inline.len(), s.continued.len(), s.inline_len()),
            (62, 60, 90)
        );
        let s = split(vec![vec![0; 7]], vec![vec![3; 237]], 200);
        assert_eq!((s.inline.len(), s.continued.len()), (7, 237));
    }
}
