//! What the disk formats share: the `--size` rule, identifiers derived from a digest of the
//! content, and layout errors said in one line.

use std::path::Path;

use super::{Job, OutputError};
use crate::disk::DiskError;
use crate::disk::ids::Seed;
use crate::disk::source::Source;

/// A raw disk layout written into a file: its size and the digest its identifiers came
/// from (containers derive theirs from it too).
pub(super) struct RawLayout {
    /// The disk's size in bytes.
    pub size: u64,
    /// The content digest.
    pub seed: Seed,
}

/// `n` bytes as whole MiB, rounded up (`45M`).
pub(super) fn mib(n: u64) -> String {
    format!("{}M", n.div_ceil(1 << 20))
}

/// A disk layout error as one line: a disk too small says what its content needs.
pub(super) fn layout_err(what: &str) -> impl Fn(DiskError) -> OutputError + '_ {
    move |e| match e {
        DiskError::TooSmall {
            needed, available, ..
        } => OutputError::Usage(format!(
            "{what}: the disk is too small: its content needs {} but only {} is there",
            mib(needed),
            mib(available)
        )),
        other => OutputError::Layout {
            what: what.to_string(),
            reason: other.to_string(),
        },
    }
}

/// The size of `job`'s disk when its content needs `needed` bytes: the format's rule
/// ([`super::Format::disk_size`]) applied to `--size`, or the content plus its margin.
pub(super) fn disk_size(job: &Job<'_>, needed: u64) -> Result<u64, OutputError> {
    job.format
        .disk_size(needed, job.request.disk_size)
        .map_err(OutputError::Usage)
}

/// A digest of `sources`' bytes, read in order, that a disk's identifiers come from.
pub(super) fn digest(sources: &[&dyn Source]) -> Result<Seed, OutputError> {
    let io = |e| OutputError::io(Path::new("a boot file"), e);
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for s in sources {
        let (digest, _) = crate::image::cache::hash_reader(s.open().map_err(io)?).map_err(io)?;
        // The seed is made of the raw 32-byte hashes.
        let raw = hex::decode(digest.trim_start_matches("sha256:"))
            .map_err(|e| io(std::io::Error::other(e)))?;
        parts.push(raw);
    }
    let refs: Vec<&[u8]> = parts.iter().map(|p| p.as_slice()).collect();
    Ok(Seed::of(&refs))
}
