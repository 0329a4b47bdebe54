//! Disk layouts and filesystems written straight into image files, without privileges, loop
//! devices or host tools: GPT ([`gpt`]), FAT ([`fat`]), ISO 9660 with El Torito and Rock Ridge
//! ([`iso9660`]), squashfs ([`squashfs`]). Each writer is pure: it writes only into the
//! `Write + Seek` it is given, from inputs whose sizes are known before anything is written.

pub mod fat;
pub mod gpt;
pub mod ids;
pub mod iso9660;
pub mod mbr;
pub mod slice;
pub mod source;
pub mod squashfs;
pub mod vm;

/// Bytes in a logical sector of the disk images osbuild writes.
pub const SECTOR: u64 = 512;
/// Partitions start and end on this boundary (1 MiB), as partitioning tools align them.
pub const ALIGN: u64 = 1 << 20;

/// `n` rounded up to a multiple of `to` (a power of two or any positive number).
pub fn round_up(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

/// Calendar date and time (UTC) of a Unix time: (year, month, day, hour, minute, second).
pub fn civil(t: i64) -> (i64, u32, u32, u32, u32, u32) {
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

/// A size as people write it: bytes, or a number with K, M, G or T (powers of 1024; `512M`,
/// `10G`, `1.5G` is not accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || {
        format!(
            "{text:?} is not a size: use a number of bytes or one ending in K, M, G or T (512M, 10G)"
        )
    };
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    n.checked_mul(1u64 << shift)
        .filter(|v| *v > 0)
        .ok_or_else(bad)
}

/// A size in the largest unit that holds it exactly: `2040G`, `512M`, `1000000000` (bytes).
pub fn human_size(n: u64) -> String {
    for (shift, unit) in [(40, 'T'), (30, 'G'), (20, 'M'), (10, 'K')] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// Why a disk layout or filesystem could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The content does not fit the space given.
    #[error("{what} needs {needed} bytes but has {available}")]
    TooSmall {
        /// The partition or filesystem.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A value the format cannot hold.
    #[error("{0}")]
    Unrepresentable(String),
    /// Reading an input or writing the image failed.
    #[error("{what}")]
    Io {
        /// What was being read or written.
        what: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

impl DiskError {
    /// An I/O error while doing `what`.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> DiskError {
        DiskError::Io {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        for bad in ["", "M", "1.5G", "10X", "0", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        for text in ["2040G", "512M", "3K", "1000000000", "5T"] {
            assert_eq!(human_size(parse_size(text).unwrap()), text);
        }
    }
}
