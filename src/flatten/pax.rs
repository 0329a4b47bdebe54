//! Reading an entry's PAX records straight from the layer file.
//!
//! The tar reader finds the entries, but its PAX parser splits records at newlines, which breaks
//! on binary values (a `security.capability` xattr may hold a `\n` byte). So the extension
//! headers in front of each entry — the bytes between the end of the previous entry's body and
//! the entry's own header — are read again here and their records parsed by their length prefix.

use std::collections::BTreeMap;
use std::io;

const BLOCK: u64 = 512;

/// PAX records by key.
pub(super) type PaxRecords = BTreeMap<Vec<u8>, Vec<u8>>;

/// Reads `buf.len()` bytes at an offset of the tar being read.
pub(super) type ReadAt<'a> = dyn Fn(u64, &mut [u8]) -> io::Result<()> + 'a;

/// The records of the last PAX (`x`) header among the extension headers in `start..end`.
pub(super) fn read_pax(read_at: &ReadAt<'_>, start: u64, end: u64) -> io::Result<PaxRecords> {
    let mut records = PaxRecords::new();
    let mut pos = start;
    let mut header = [0u8; BLOCK as usize];
    while pos + BLOCK <= end {
        read_at(pos, &mut header)?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = parse_numeric(&header[124..136])
            .ok_or_else(|| invalid("bad size field in an extension header"))?;
        let body = pos + BLOCK;
        if size > end.saturating_sub(body) {
            return Err(invalid("extension header larger than its space"));
        }
        if header[156] == b'x' {
            let len = usize::try_from(size).map_err(|_| invalid("PAX header too large"))?;
            let mut data = vec![0u8; len];
            read_at(body, &mut data)?;
            records = parse_records(&data)?;
        }
        pos = body + size.div_ceil(BLOCK) * BLOCK;
    }
    Ok(records)
}

/// Parses `LEN KEY=VALUE\n` records, LEN counting the whole record.
pub(super) fn parse_records(mut data: &[u8]) -> io::Result<PaxRecords> {
    let mut records = PaxRecords::new();
    while !data.is_empty() {
        if data.iter().all(|&b| b == 0) {
            break;
        }
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| invalid("PAX record without a length"))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| invalid("PAX record with a bad length"))?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(invalid("PAX record length does not match"));
        }
        let kv = &data[space + 1..len - 1];
        let equals = kv
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| invalid("PAX record without '='"))?;
        records.insert(kv[..equals].to_vec(), kv[equals + 1..].to_vec());
        data = &data[len..];
    }
    Ok(records)
}

/// A tar number field: octal digits (spaces and NULs around them), or base-256 when the first
/// byte has its high bit set.
fn parse_numeric(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&digits).ok()?, 8).ok()
}

fn invalid(message: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_may_hold_newlines() {
        let data = b"26 SCHILY.xattr.a=x\ny\nz\x00\xff\n10 uid=99\n";
        let records = parse_records(data).unwrap();
        assert_eq!(records[&b"SCHILY.xattr.a"[..]], b"x\ny\nz\x00\xff");
        assert_eq!(records[&b"uid"[..]], b"99");
        assert!(parse_records(b"31 k=v\n").is_err());
        assert!(parse_records(b"x k=v\n").is_err());
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(parse_numeric(b"00000000017\0"), Some(15));
        assert_eq!(parse_numeric(b"     17 \0\0\0\0"), Some(15));
        assert_eq!(
            parse_numeric(&[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]),
            Some(256)
        );
        assert_eq!(parse_numeric(b"9\0\0\0\0\0\0\0\0\0\0\0"), None);
    }
}
