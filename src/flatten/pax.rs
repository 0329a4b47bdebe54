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

/// Refuse a tar of `len` bytes whose extension headers (PAX `x`/`g`, GNU `L`/`K`) are larger
/// than [`MAX_EXTENSION_HEADER`], before the tar reader reads one whole into memory. Walks the
/// headers only, skipping bodies; a PAX `size` record resizes the entry it precedes. Stops
/// without error at the end-of-archive blocks, at a header it cannot read and at a GNU sparse
/// entry: the tar reader reports those (it refuses sparse entries) before it reads further.
///
/// [`MAX_EXTENSION_HEADER`]: crate::limits::MAX_EXTENSION_HEADER
pub(super) fn check_extension_headers(read_at: &ReadAt<'_>, len: u64) -> io::Result<()> {
    let limit = crate::limits::MAX_EXTENSION_HEADER;
    let mut header = [0u8; BLOCK as usize];
    let mut pos = 0u64;
    let mut next_size: Option<u64> = None;
    while pos.saturating_add(BLOCK) <= len {
        read_at(pos, &mut header)?;
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let Some(stated) = parse_numeric(&header[124..136]) else {
            break;
        };
        let kind = header[156];
        let size = match kind {
            b'x' | b'g' | b'L' | b'K' => {
                if stated > limit {
                    return Err(invalid(&format!(
                        "the {} header at offset {pos} holds {stated} bytes, more than the {} an \
                         extension header may",
                        match kind {
                            b'x' => "PAX",
                            b'g' => "PAX global",
                            b'L' => "GNU long name",
                            _ => "GNU long link",
                        },
                        crate::disk::human_size(limit)
                    )));
                }
                if kind == b'x' {
                    let mut data = vec![0u8; usize::try_from(stated).unwrap_or(0)];
                    if read_at(pos + BLOCK, &mut data).is_err() {
                        break;
                    }
                    let Ok(records) = parse_records(&data) else {
                        break;
                    };
                    next_size = records
                        .get(&b"size"[..])
                        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok());
                }
                stated
            }
            b'S' => break,
            _ => next_size.take().unwrap_or(stated),
        };
        let Some(next) = size
            .div_ceil(BLOCK)
            .checked_mul(BLOCK)
            .and_then(|body| (pos + BLOCK).checked_add(body))
        else {
            break;
        };
        pos = next;
    }
    Ok(())
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
    /// A ustar header block of `kind` with a body of `size` bytes (checksum unset: the scan
    /// does not read it).
    fn header(kind: u8, size: u64, name: &str) -> [u8; 512] {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let field = format!("{size:011o}\0");
        h[124..136].copy_from_slice(field.as_bytes());
        h[156] = kind;
        h
    }

    fn scan(tar: &[u8]) -> std::io::Result<()> {
        let read_at = |offset: u64, buf: &mut [u8]| -> std::io::Result<()> {
            let start = usize::try_from(offset).unwrap();
            let src = tar
                .get(start..start + buf.len())
                .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        };
        super::check_extension_headers(&read_at, tar.len() as u64)
    }

    #[test]
    fn extension_headers_past_the_limit_are_refused_before_being_read() {
        let limit = crate::limits::MAX_EXTENSION_HEADER;
        for kind in [b'L', b'K', b'x', b'g'] {
            // Only the header is there: the scan must refuse it by its stated size alone.
            let mut tar = header(b'0', 3, "a").to_vec();
            tar.extend_from_slice(&[b'x'; 512]);
            tar.extend_from_slice(&header(kind, limit + 1, "././@LongLink"));
            tar.extend_from_slice(&[0u8; 1024]);
            let e = scan(&tar).unwrap_err().to_string();
            assert!(e.contains("at offset 1024 holds 1048577 bytes"), "{e}");
            // At the limit it passes.
            let mut tar = header(kind, 1024, "././@LongLink").to_vec();
            tar.extend_from_slice(&[b'n'; 1024]);
            tar.extend_from_slice(&header(b'0', 0, "f"));
            tar.extend_from_slice(&[0u8; 1024]);
            scan(&tar).unwrap();
        }
    }

    #[test]
    fn a_pax_size_record_moves_the_scan_past_the_body_it_sizes() {
        // A PAX header says the next entry holds 1024 bytes although its header says 0; a
        // second, oversized long name follows that body.
        let record = b"13 size=1024\n";
        let mut tar = header(b'x', record.len() as u64, "pax").to_vec();
        let mut body = record.to_vec();
        body.resize(512, 0);
        tar.extend_from_slice(&body);
        tar.extend_from_slice(&header(b'0', 0, "big"));
        tar.extend_from_slice(&[b'y'; 1024]);
        tar.extend_from_slice(&header(b'L', 2 << 20, "././@LongLink"));
        let e = scan(&tar).unwrap_err().to_string();
        assert!(e.contains("GNU long name header at offset 2560"), "{e}");
    }

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
