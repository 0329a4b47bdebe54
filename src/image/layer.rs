//! Layer media types and decompression into the cache's uncompressed layer blobs, within
//! the bounds on what one layer and one image may expand to ([`crate::limits`]).

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use super::ImageError;
use super::cache::{Cache, HashingWriter};
use crate::disk::human_size;
use crate::limits::{DEFAULT_IMAGE_BYTES, DEFAULT_LAYER_BYTES, IMAGE_BYTES_FLAG, LAYER_BYTES_FLAG};

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCodec {
    /// A plain tar.
    Tar,
    /// gzip-compressed tar.
    Gzip,
    /// zstd-compressed tar.
    Zstd,
}

/// The codec of a layer media type (OCI and Docker), or why it is refused.
pub fn codec_for(media_type: &str) -> Result<LayerCodec, String> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(LayerCodec::Tar),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip" => Ok(LayerCodec::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd" => Ok(LayerCodec::Zstd),
        t if t.contains("nondistributable") || t.contains("foreign") => Err(format!(
            "non-distributable layer ({t}) cannot be fetched from this registry"
        )),
        t => Err(format!("unsupported layer media type {t}")),
    }
}

/// How much the layers of one image may expand to: each layer, and all of them together. One
/// budget is shared by the layers of an image, which are decompressed concurrently.
#[derive(Debug, Clone)]
pub struct ExpansionBudget {
    layer_limit: u64,
    image_limit: u64,
    image_used: Arc<AtomicU64>,
    passed: Arc<AtomicBool>,
}

/// Which bound an expansion passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Passed {
    /// The bound on one layer, in bytes.
    Layer(u64),
    /// The bound on one image, in bytes.
    Image(u64),
}

impl Passed {
    /// What the error says: the bound and the flag that raises it.
    pub fn reason(self) -> String {
        match self {
            Passed::Layer(limit) => format!(
                "expands past {}, the limit for one layer (raise it with {LAYER_BYTES_FLAG})",
                human_size(limit)
            ),
            Passed::Image(limit) => format!(
                "the image's layers expand past {}, the limit for one image (raise it with {IMAGE_BYTES_FLAG})",
                human_size(limit)
            ),
        }
    }
}

impl ExpansionBudget {
    /// A budget for one image: `layer_limit` bytes per layer, `image_limit` for all.
    pub fn new(layer_limit: u64, image_limit: u64) -> Self {
        ExpansionBudget {
            layer_limit,
            image_limit,
            image_used: Arc::new(AtomicU64::new(0)),
            passed: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a layer of the image has passed a bound.
    pub fn passed(&self) -> bool {
        self.passed.load(Ordering::Relaxed)
    }

    /// Bytes counted so far for the image.
    pub fn image_used(&self) -> u64 {
        self.image_used.load(Ordering::Relaxed)
    }

    /// Count `len` more bytes of one layer that has `layer_used` bytes with them.
    fn count(&self, layer_used: u64, len: u64) -> Result<(), Passed> {
        let image = self
            .image_used
            .fetch_add(len, Ordering::Relaxed)
            .saturating_add(len);
        let passed = if layer_used > self.layer_limit {
            Passed::Layer(self.layer_limit)
        } else if image > self.image_limit {
            Passed::Image(self.image_limit)
        } else {
            return Ok(());
        };
        self.passed.store(true, Ordering::Relaxed);
        Err(passed)
    }

    /// Count an uncompressed layer of `len` bytes already in the cache.
    pub fn count_layer(&self, len: u64) -> Result<(), Passed> {
        self.count(len, len)
    }

    /// `inner` (a decompressor) with every byte it yields counted: its reads fail as soon as
    /// the layer or the image passes its bound.
    pub fn reader<R: Read>(&self, inner: R) -> BoundedReader<R> {
        BoundedReader {
            inner,
            budget: self.clone(),
            layer_used: 0,
            passed: None,
        }
    }
}

impl Default for ExpansionBudget {
    fn default() -> Self {
        ExpansionBudget::new(DEFAULT_LAYER_BYTES, DEFAULT_IMAGE_BYTES)
    }
}

/// A reader counting what it yields against an [`ExpansionBudget`].
#[derive(Debug)]
pub struct BoundedReader<R> {
    inner: R,
    budget: ExpansionBudget,
    layer_used: u64,
    passed: Option<Passed>,
}

impl<R> BoundedReader<R> {
    /// Give the bytes this layer counted back to the image's budget: the layer failed for a
    /// reason other than a bound and may be read again.
    pub fn give_back(&mut self) {
        self.budget
            .image_used
            .fetch_sub(self.layer_used, Ordering::Relaxed);
        self.layer_used = 0;
    }

    /// The bound passed, once a read has failed for it.
    pub fn passed(&self) -> Option<Passed> {
        self.passed
    }

    /// Bytes this layer has yielded.
    pub fn layer_used(&self) -> u64 {
        self.layer_used
    }
}

impl<R: Read> Read for BoundedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // Another layer of the image may have passed the image's bound meanwhile.
        let passed = self.passed.or_else(|| {
            (self.budget.image_used() > self.budget.image_limit)
                .then_some(Passed::Image(self.budget.image_limit))
        });
        if let Some(passed) = passed {
            self.passed = Some(passed);
            return Err(io::Error::other(passed.reason()));
        }
        let n = self.inner.read(buf)?;
        self.layer_used = self.layer_used.saturating_add(n as u64);
        if let Err(passed) = self.budget.count(self.layer_used, n as u64) {
            self.passed = Some(passed);
            return Err(io::Error::other(passed.reason()));
        }
        Ok(n)
    }
}

/// Decompress `blob` with `codec` into the cache, counting what comes out against `budget`,
/// check it against `diff_id`, and return the uncompressed layer's path. On any failure the
/// partial uncompressed blob is removed.
pub fn decompress_into_cache(
    cache: &Cache,
    blob: &Path,
    codec: LayerCodec,
    diff_id: &str,
    reference: &str,
    digest: &str,
    budget: &ExpansionBudget,
) -> Result<PathBuf, ImageError> {
    let file = File::open(blob).map_err(|e| ImageError::Layer {
        reference: reference.into(),
        digest: digest.into(),
        reason: e.to_string(),
    })?;
    let expanded = expand(cache, file, codec, diff_id, reference, digest, budget)?;
    expanded.commit(cache)
}

/// An uncompressed layer in a temporary file of the cache, its digest checked, not yet
/// committed: dropping it removes the file.
#[derive(Debug)]
pub struct Expanded {
    file: tempfile::NamedTempFile,
    diff_id: String,
}

impl Expanded {
    /// Move the layer to its place in the cache; returns its path.
    pub fn commit(self, cache: &Cache) -> Result<PathBuf, ImageError> {
        cache.commit_blob(self.file, &self.diff_id)
    }
}

/// Decompress the compressed layer read from `input` with `codec` into a temporary file of the
/// cache, counting what comes out against `budget`, and check it against `diff_id`. On any
/// failure the temporary file is removed; unless a bound was passed, the bytes this layer
/// counted are given back to the image's budget, so that a retried download counts them once.
pub fn expand(
    cache: &Cache,
    input: impl Read,
    codec: LayerCodec,
    diff_id: &str,
    reference: &str,
    digest: &str,
    budget: &ExpansionBudget,
) -> Result<Expanded, ImageError> {
    let fail = |reason: String| ImageError::Layer {
        reference: reference.into(),
        digest: digest.into(),
        reason,
    };
    let input = BufReader::with_capacity(1 << 20, input);
    let decoder: Box<dyn Read> = match codec {
        LayerCodec::Tar => Box::new(input),
        LayerCodec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        LayerCodec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input).map_err(|e| fail(e.to_string()))?,
        ),
    };
    let mut reader = budget.reader(decoder);
    let tmp = cache.temp_file()?;
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
    if let Err(e) = io::copy(&mut reader, &mut out) {
        // Dropping the writer removes the temporary file.
        return Err(match reader.passed() {
            Some(passed) => fail(passed.reason()),
            None => {
                reader.give_back();
                fail(format!("decompressing: {e}"))
            }
        });
    }
    let (writer, actual, _) = out.finish();
    let file = writer.into_inner().map_err(|e| fail(e.to_string()))?;
    if actual != diff_id {
        reader.give_back();
        return Err(ImageError::DigestMismatch {
            reference: reference.into(),
            what: "uncompressed layer".into(),
            expected: diff_id.into(),
            actual,
        });
    }
    Ok(Expanded {
        file,
        diff_id: diff_id.into(),
    })
}

/// A reader over chunks sent through a bounded queue (a download in progress): ends when the
/// sender is dropped. Its reads block, so it belongs on a blocking thread.
pub struct ChunkReader {
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl ChunkReader {
    /// A reader of what is sent through `chunks`.
    pub fn new(chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> Self {
        ChunkReader {
            chunks,
            current: bytes::Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `bytes` gzip'd at `level`.
    fn gzip(bytes: &[u8], level: flate2::Compression) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn media_types() {
        assert_eq!(
            codec_for("application/vnd.oci.image.layer.v1.tar+zstd"),
            Ok(LayerCodec::Zstd)
        );
        assert_eq!(
            codec_for("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Ok(LayerCodec::Gzip)
        );
        assert!(
            codec_for("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")
                .unwrap_err()
                .contains("non-distributable")
        );
        assert!(codec_for("text/plain").unwrap_err().contains("text/plain"));
    }

    #[test]
    fn decompresses_and_checks_the_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let tar = vec![0u8; 2048];
        let diff_id = super::super::cache::sha256_digest(&tar);
        let gz_path = dir.path().join("l.gz");
        std::fs::write(&gz_path, gzip(&tar, flate2::Compression::fast())).unwrap();
        let budget = ExpansionBudget::default();
        let out = decompress_into_cache(
            &cache,
            &gz_path,
            LayerCodec::Gzip,
            &diff_id,
            "r",
            "d",
            &budget,
        )
        .unwrap();
        assert_eq!(std::fs::read(out).unwrap(), tar);
        let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let err =
            decompress_into_cache(&cache, &gz_path, LayerCodec::Gzip, wrong, "r", "d", &budget)
                .unwrap_err();
        assert!(err.to_string().contains("wrong content"), "{err}");
    }

    /// A reader yielding `len` zero bytes without holding them, counting the bytes read, so
    /// a test can tell how far past a bound reading went.
    struct Zeros {
        left: u64,
        read: Arc<AtomicU64>,
    }

    impl Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = usize::try_from(self.left)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            buf[..n].fill(0);
            self.left -= n as u64;
            self.read.fetch_add(n as u64, Ordering::Relaxed);
            Ok(n)
        }
    }

    #[test]
    fn reading_stops_as_soon_as_a_layer_passes_its_bound() {
        let budget = ExpansionBudget::new(1 << 20, 1 << 30);
        let read = Arc::new(AtomicU64::new(0));
        let mut r = budget.reader(Zeros {
            left: 1 << 40,
            read: read.clone(),
        });
        let err = io::copy(&mut r, &mut io::sink()).unwrap_err();
        assert_eq!(r.passed(), Some(Passed::Layer(1 << 20)));
        assert!(err.to_string().contains("--max-layer-size"), "{err}");
        // One buffer past the bound at most, not the terabyte the stream holds.
        let read = read.load(Ordering::Relaxed);
        assert!(read > 1 << 20 && read <= (1 << 20) + (64 << 10), "{read}");
    }

    #[test]
    fn the_layers_of_one_image_share_its_bound() {
        let budget = ExpansionBudget::new(1 << 20, (3 << 20) / 2);
        let zeros = |len| Zeros {
            left: len,
            read: Arc::new(AtomicU64::new(0)),
        };
        let mut first = budget.reader(zeros(1 << 20));
        io::copy(&mut first, &mut io::sink()).unwrap();
        assert_eq!(first.passed(), None, "a layer exactly at its bound passes");
        let mut second = budget.reader(zeros(1 << 20));
        assert!(io::copy(&mut second, &mut io::sink()).is_err());
        assert_eq!(second.passed(), Some(Passed::Image((3 << 20) / 2)));
        assert!(budget.passed());
        // A third layer pulled alongside stops at its first read.
        let mut third = budget.reader(zeros(10));
        assert!(third.read(&mut [0u8; 10]).is_err());
        assert_eq!(third.layer_used(), 0);
        assert_eq!(
            budget.count_layer(2 << 20),
            Err(Passed::Layer(1 << 20)),
            "a cached layer counts with its size"
        );
    }

    #[test]
    fn a_gzip_bomb_is_refused_and_nothing_is_left_in_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        // 8 MiB of zeros in a tar, gzip'd to a few KiB.
        let mut raw = Vec::new();
        crate::archive::tar::write_file(&mut raw, "zeros", 0o644, 0, 8 << 20, io::repeat(0))
            .unwrap();
        crate::archive::tar::write_end(&mut raw).unwrap();
        let diff_id = super::super::cache::sha256_digest(&raw);
        let gz_path = dir.path().join("bomb.gz");
        std::fs::write(&gz_path, gzip(&raw, flate2::Compression::best())).unwrap();
        assert!(std::fs::metadata(&gz_path).unwrap().len() < 64 << 10);
        let budget = ExpansionBudget::new(1 << 20, 32 << 20);
        let err = decompress_into_cache(
            &cache,
            &gz_path,
            LayerCodec::Gzip,
            &diff_id,
            "example.org/bomb:1",
            "sha256:abc",
            &budget,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "example.org/bomb:1: layer sha256:abc: expands past 1M, the limit for one layer (raise it with --max-layer-size)"
        );
        assert!(!cache.has_blob(&diff_id));
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
        // Within a raised bound the same layer is taken.
        let raised = ExpansionBudget::new(16 << 20, 32 << 20);
        decompress_into_cache(
            &cache,
            &gz_path,
            LayerCodec::Gzip,
            &diff_id,
            "example.org/bomb:1",
            "sha256:abc",
            &raised,
        )
        .unwrap();
        assert!(cache.has_blob(&diff_id));
    }

    #[test]
    fn a_chunk_reader_reads_across_chunks_and_ends_when_the_sender_goes() {
        let (tx, rx) = tokio::sync::mpsc::channel(2);
        let sender = std::thread::spawn(move || {
            for chunk in [&b"hel"[..], b"", b"lo, ", b"world"] {
                tx.blocking_send(bytes::Bytes::copy_from_slice(chunk))
                    .unwrap();
            }
        });
        let mut text = String::new();
        ChunkReader::new(rx).read_to_string(&mut text).unwrap();
        sender.join().unwrap();
        assert_eq!(text, "hello, world");
    }

    #[test]
    fn a_layer_that_fails_for_another_reason_gives_its_bytes_back_to_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let gz = gzip(&[7u8; 300_000], flate2::Compression::fast());
        let budget = ExpansionBudget::new(1 << 20, 1 << 20);
        // A download cut short: the stream ends early and the layer is not what it should be.
        let cut = &gz[..gz.len() / 2];
        expand(
            &cache,
            cut,
            LayerCodec::Gzip,
            "sha256:x",
            "r",
            "sha256:d",
            &budget,
        )
        .unwrap_err();
        assert_eq!(budget.image_used(), 0, "a retry counts the layer once");
        // A whole stream with the wrong content gives its bytes back too.
        expand(
            &cache,
            &gz[..],
            LayerCodec::Gzip,
            "sha256:x",
            "r",
            "sha256:d",
            &budget,
        )
        .unwrap_err();
        assert_eq!(budget.image_used(), 0);
        assert!(!budget.passed());
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0,
            "no temporary file is left"
        );
        // The right digest is committed, and counted.
        let diff_id = crate::image::cache::sha256_digest(&[7u8; 300_000]);
        let expanded = expand(
            &cache,
            &gz[..],
            LayerCodec::Gzip,
            &diff_id,
            "r",
            "sha256:d",
            &budget,
        )
        .unwrap();
        assert!(
            !cache.has_blob(&diff_id),
            "not in the cache before the commit"
        );
        expanded.commit(&cache).unwrap();
        assert!(cache.has_blob(&diff_id));
        assert_eq!(budget.image_used(), 300_000);
    }
}
