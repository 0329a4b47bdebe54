//! Layer media types and decompression into the cache's uncompressed layer blobs.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use super::ImageError;
use super::cache::{Cache, HashingWriter};

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

/// Decompress `blob` with `codec` into the cache, check it against `diff_id`, and return the
/// uncompressed layer's path.
pub fn decompress_into_cache(
    cache: &Cache,
    blob: &Path,
    codec: LayerCodec,
    diff_id: &str,
    reference: &str,
    digest: &str,
) -> Result<PathBuf, ImageError> {
    let fail = |reason: String| ImageError::Layer {
        reference: reference.into(),
        digest: digest.into(),
        reason,
    };
    let file = File::open(blob).map_err(|e| fail(e.to_string()))?;
    let input = BufReader::with_capacity(1 << 20, file);
    let mut reader: Box<dyn Read> = match codec {
        LayerCodec::Tar => Box::new(input),
        LayerCodec::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        LayerCodec::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(input).map_err(|e| fail(e.to_string()))?,
        ),
    };
    let tmp = cache.temp_file()?;
    let mut out = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, tmp));
    io::copy(&mut reader, &mut out).map_err(|e| fail(format!("decompressing: {e}")))?;
    let (writer, actual, _) = out.finish();
    let tmp = writer.into_inner().map_err(|e| fail(e.to_string()))?;
    if actual != diff_id {
        return Err(ImageError::DigestMismatch {
            reference: reference.into(),
            what: "uncompressed layer".into(),
            expected: diff_id.into(),
            actual,
        });
    }
    cache.commit_blob(tmp, diff_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

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
        let mut enc = flate2::write::GzEncoder::new(
            File::create(&gz_path).unwrap(),
            flate2::Compression::fast(),
        );
        enc.write_all(&tar).unwrap();
        enc.finish().unwrap();
        let out =
            decompress_into_cache(&cache, &gz_path, LayerCodec::Gzip, &diff_id, "r", "d").unwrap();
        assert_eq!(std::fs::read(out).unwrap(), tar);
        let wrong = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let err =
            decompress_into_cache(&cache, &gz_path, LayerCodec::Gzip, wrong, "r", "d").unwrap_err();
        assert!(err.to_string().contains("wrong content"), "{err}");
    }
}
