//! The content-addressed image cache: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/`) that also keeps each layer uncompressed, as the blob named by its diff_id,
//! so a warm build never decompresses. See `docs/cache.md`.
//!
//! Blobs are written to a temporary file and renamed into place, so readers never see a partial
//! blob; `index.json` is rewritten under an exclusive lock. Builds hold a shared "in use" lock
//! that `clean` and `rm` take exclusively. A blob whose content does not match its name is
//! removed when it is read, so it is fetched again.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use sha2::{Digest, Sha256};

use super::ImageError;
use crate::archive::stale;

/// The annotation naming an image in `index.json`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An opened cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

/// A held cache lock (released when dropped).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ImageError + '_ {
    move |source| ImageError::Cache {
        path: path.to_owned(),
        source,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The `sha256:` digest and length of everything `reader` yields.
pub fn hash_reader(mut reader: impl Read) -> io::Result<(String, u64)> {
    let mut hasher = HashingWriter::new(io::sink());
    io::copy(&mut reader, &mut hasher)?;
    let (_, digest, len) = hasher.finish();
    Ok((digest, len))
}

/// A writer that hashes what it writes.
#[derive(Debug)]
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Hash everything written to `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            len: 0,
        }
    }

    /// The inner writer, the `sha256:` digest and the length of what was written.
    pub fn finish(self) -> (W, String, u64) {
        (
            self.inner,
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.len,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl Cache {
    /// The default cache directory: `$XDG_CACHE_HOME/osbuild` (or `~/.cache/osbuild`).
    pub fn default_dir() -> PathBuf {
        dirs::cache_dir()
            .unwrap_or_else(|| std::env::temp_dir().join("cache"))
            .join("osbuild")
    }

    /// Open (and create if needed) the cache at `root`.
    pub fn open(root: &Path) -> Result<Cache, ImageError> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err(root))?;
        fs::create_dir_all(root.join("tmp")).map_err(io_err(root))?;
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(
                &root.join("tmp"),
                &layout,
                br#"{"imageLayoutVersion":"1.0.0"}"#,
            )?;
        }
        let cache = Cache {
            root: root.to_owned(),
        };
        // What builds killed before they could clean up left in tmp/.
        stale::sweep(&root.join("tmp"), temp_owner);
        if !root.join("index.json").exists() {
            let _lock = cache.lock_index()?;
            if !root.join("index.json").exists() {
                cache.write_index(&empty_index()?)?;
            }
        }
        Ok(cache)
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob `digest` lives (whether or not it is there).
    pub fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.root.join("blobs/sha256").join(hex)
    }

    /// Whether the blob is present (not verified).
    pub fn has_blob(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Whether the blob is present and its content matches its digest. A blob that does not
    /// match is removed (and `false` returned) so it gets fetched again.
    pub fn verify_blob(&self, digest: &str) -> Result<bool, ImageError> {
        let path = self.blob_path(digest);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut hasher = HashingWriter::new(io::sink());
        io::copy(&mut file, &mut hasher).map_err(io_err(&path))?;
        let (_, actual, _) = hasher.finish();
        if actual == digest {
            Ok(true)
        } else {
            fs::remove_file(&path).map_err(io_err(&path))?;
            Ok(false)
        }
    }

    /// A small blob (manifest, config) if present and intact; a corrupt one is removed.
    pub fn read_blob(&self, digest: &str) -> Result<Option<Vec<u8>>, ImageError> {
        let path = self.blob_path(digest);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(&path)(e)),
        };
        if sha256_digest(&bytes) == digest {
            Ok(Some(bytes))
        } else {
            fs::remove_file(&path).map_err(io_err(&path))?;
            Ok(None)
        }
    }

    /// Store `bytes` as a blob; returns its digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<String, ImageError> {
        let digest = sha256_digest(bytes);
        let path = self.blob_path(&digest);
        if !path.exists() {
            write_atomic(&self.root.join("tmp"), &path, bytes)?;
        }
        Ok(digest)
    }

    /// A temporary file inside the cache, for a blob being downloaded or decompressed.
    pub fn temp_file(&self) -> Result<tempfile::NamedTempFile, ImageError> {
        let dir = self.root.join("tmp");
        tempfile::Builder::new()
            .prefix(&format!("blob-{}-", stale::owner_tag()))
            .tempfile_in(&dir)
            .map_err(io_err(&dir))
    }

    /// Move a finished temporary file into place as the blob `digest`.
    pub fn commit_blob(
        &self,
        tmp: tempfile::NamedTempFile,
        digest: &str,
    ) -> Result<PathBuf, ImageError> {
        let path = self.blob_path(digest);
        tmp.as_file().sync_all().map_err(io_err(&path))?;
        tmp.persist(&path).map_err(|e| io_err(&path)(e.error))?;
        Ok(path)
    }

    fn lock(&self, name: &str, exclusive: bool) -> Result<CacheLock, ImageError> {
        let path = self.root.join(name);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if exclusive {
            file.lock().map_err(io_err(&path))?;
        } else {
            file.lock_shared().map_err(io_err(&path))?;
        }
        Ok(CacheLock { _file: file })
    }

    fn lock_index(&self) -> Result<CacheLock, ImageError> {
        self.lock(".index.lock", true)
    }

    /// Hold while using the cache's blobs (a build); blocks `clean` and `rm`.
    pub fn lock_in_use(&self) -> Result<CacheLock, ImageError> {
        self.lock(".use.lock", false)
    }

    /// Hold while removing blobs; waits for builds to finish.
    pub fn lock_exclusive(&self) -> Result<CacheLock, ImageError> {
        self.lock(".use.lock", true)
    }

    fn read_index(&self) -> Result<ImageIndex, ImageError> {
        let path = self.root.join("index.json");
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::CacheIndex {
            path,
            reason: e.to_string(),
        })
    }

    fn write_index(&self, index: &ImageIndex) -> Result<(), ImageError> {
        let path = self.root.join("index.json");
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| ImageError::CacheIndex {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomic(&self.root.join("tmp"), &path, &bytes)
    }

    /// The descriptor recorded for `name` (a full reference string), if any.
    pub fn resolve(&self, name: &str) -> Result<Option<Descriptor>, ImageError> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .find(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_some_and(|n| n == name)
            })
            .cloned())
    }

    /// Record `name` as pointing at `descriptor` (replacing an earlier entry of that name).
    pub fn tag(&self, name: &str, descriptor: &Descriptor) -> Result<(), ImageError> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let mut entries: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| {
                d.annotations()
                    .as_ref()
                    .and_then(|a| a.get(REF_NAME))
                    .is_none_or(|n| n != name)
            })
            .cloned()
            .collect();
        let mut annotated = descriptor.clone();
        let mut annotations = annotated.annotations().clone().unwrap_or_default();
        annotations.insert(REF_NAME.to_string(), name.to_string());
        annotated.set_annotations(Some(annotations));
        entries.push(annotated);
        entries.sort_by_key(ref_name);
        index.set_manifests(entries);
        self.write_index(&index)
    }

    /// Every named image: (name, descriptor).
    pub fn list(&self) -> Result<Vec<(String, Descriptor)>, ImageError> {
        Ok(self
            .read_index()?
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(|n| (n, d.clone())))
            .collect())
    }

    /// Forget `name`; returns whether it was there. Its blobs go at the next [`Cache::gc`].
    pub fn remove(&self, name: &str) -> Result<bool, ImageError> {
        let _lock = self.lock_index()?;
        let mut index = self.read_index()?;
        let before = index.manifests().len();
        let kept: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| ref_name(d).is_none_or(|n| n != name))
            .cloned()
            .collect();
        let removed = kept.len() != before;
        index.set_manifests(kept);
        self.write_index(&index)?;
        Ok(removed)
    }

    /// Blobs reachable from the named images: manifests, indexes, configs, layers and the
    /// uncompressed layers named by the configs' diff_ids.
    pub fn reachable(&self) -> Result<BTreeSet<String>, ImageError> {
        let mut seen = BTreeSet::new();
        let mut queue: Vec<String> = self
            .list()?
            .into_iter()
            .map(|(_, d)| d.digest().to_string())
            .collect();
        while let Some(digest) = queue.pop() {
            if !seen.insert(digest.clone()) {
                continue;
            }
            let Some(bytes) = self.read_blob(&digest)? else {
                continue;
            };
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            if let Some(manifests) = value.get("manifests").and_then(|m| m.as_array()) {
                queue.extend(
                    manifests
                        .iter()
                        .filter_map(|m| m.get("digest")?.as_str().map(String::from)),
                );
            }
            if let Ok(manifest) = serde_json::from_slice::<ImageManifest>(&bytes) {
                let config = manifest.config().digest().to_string();
                seen.extend(manifest.layers().iter().map(|l| l.digest().to_string()));
                if let Some(cfg) = self.read_blob(&config)?
                    && let Ok(cfg) = serde_json::from_slice::<serde_json::Value>(&cfg)
                    && let Some(ids) = cfg.pointer("/rootfs/diff_ids").and_then(|d| d.as_array())
                {
                    seen.extend(ids.iter().filter_map(|d| d.as_str().map(String::from)));
                }
                seen.insert(config);
            }
        }
        Ok(seen)
    }

    /// Remove every blob no named image uses; returns (blobs, bytes) removed.
    pub fn gc(&self) -> Result<Freed, ImageError> {
        let _lock = self.lock_exclusive()?;
        let keep: BTreeSet<String> = self
            .reachable()?
            .into_iter()
            .map(|d| d.trim_start_matches("sha256:").to_string())
            .collect();
        let dir = self.root.join("blobs/sha256");
        let (mut count, mut bytes) = (0, 0);
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(entry.path()).map_err(io_err(&entry.path()))?;
                count += 1;
            }
        }
        // No build is running (the lock is exclusive): every temporary file is left over.
        let tmp = self.root.join("tmp");
        let (mut temporary, mut temporary_bytes) = (0, 0);
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries.flatten() {
                let len = e.metadata().map(|m| m.len()).unwrap_or(0);
                if fs::remove_file(e.path()).is_ok() {
                    temporary += 1;
                    temporary_bytes += len;
                }
            }
        }
        Ok(Freed {
            blobs: count,
            temporary,
            bytes: bytes + temporary_bytes,
        })
    }

    /// Remove everything: every name and every blob.
    pub fn clean_all(&self) -> Result<Freed, ImageError> {
        {
            let _lock = self.lock_index()?;
            self.write_index(&empty_index()?)?;
        }
        self.gc()
    }

    /// Total size of the blobs.
    pub fn size(&self) -> Result<u64, ImageError> {
        let dir = self.root.join("blobs/sha256");
        let mut total = 0;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            total += entry
                .map_err(io_err(&dir))?
                .metadata()
                .map(|m| m.len())
                .unwrap_or(0);
        }
        Ok(total)
    }

    /// Hash a file as a stream.
    pub fn hash_file(path: &Path) -> Result<(String, u64), ImageError> {
        let file = File::open(path).map_err(io_err(path))?;
        hash_reader(file).map_err(io_err(path))
    }
}

fn ref_name(d: &Descriptor) -> Option<String> {
    d.annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .cloned()
}

fn empty_index() -> Result<ImageIndex, ImageError> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(Vec::<Descriptor>::new())
        .annotations(
            BTreeMap::<String, String>::new()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .map_err(|e| ImageError::CacheIndex {
            path: PathBuf::from("index.json"),
            reason: e.to_string(),
        })
}

/// The process that owns a temporary file of the cache's tmp/ (`blob-PID-...`,
/// `write-PID-...`).
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name
        .strip_prefix("blob-")
        .or_else(|| name.strip_prefix("write-"))?;
    stale::pid_before(rest, '-')
}

/// What a garbage collection removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freed {
    /// Blobs no name reaches.
    pub blobs: u64,
    /// Temporary files left by interrupted pulls.
    pub temporary: u64,
    /// Bytes of both.
    pub bytes: u64,
}

fn write_atomic(tmp_dir: &Path, dest: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("write-{}-", stale::owner_tag()))
        .tempfile_in(tmp_dir)
        .map_err(io_err(tmp_dir))?;
    tmp.write_all(bytes).map_err(io_err(dest))?;
    tmp.as_file().sync_all().map_err(io_err(dest))?;
    tmp.persist(dest).map_err(|e| io_err(dest)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::DescriptorBuilder;

    fn desc(digest: &str, len: u64) -> Descriptor {
        DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(digest.parse::<oci_spec::image::Digest>().unwrap())
            .size(len)
            .build()
            .unwrap()
    }

    #[test]
    fn blobs_are_content_addressed_and_self_heal() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let d = cache.put_blob(b"hello").unwrap();
        assert_eq!(d, sha256_digest(b"hello"));
        assert_eq!(cache.read_blob(&d).unwrap().unwrap(), b"hello");
        fs::write(cache.blob_path(&d), b"tampered").unwrap();
        assert!(
            cache.read_blob(&d).unwrap().is_none(),
            "a tampered blob is not served"
        );
        assert!(
            !cache.has_blob(&d),
            "and it is removed so it is fetched again"
        );
        cache.put_blob(b"hello").unwrap();
        fs::write(cache.blob_path(&d), b"x").unwrap();
        assert!(!cache.verify_blob(&d).unwrap());
    }

    #[test]
    fn tags_resolve_replace_and_collect() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:CFG","size":2},"layers":[]}"#;
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let cfg = cache.put_blob(config).unwrap();
        let manifest = String::from_utf8_lossy(manifest).replace("sha256:CFG", &cfg);
        let m = cache.put_blob(manifest.as_bytes()).unwrap();
        let orphan = cache.put_blob(b"orphan").unwrap();
        cache
            .tag("docker.io/library/a:1", &desc(&m, manifest.len() as u64))
            .unwrap();
        cache
            .tag("docker.io/library/a:1", &desc(&m, manifest.len() as u64))
            .unwrap();
        assert_eq!(cache.list().unwrap().len(), 1);
        assert_eq!(
            cache
                .resolve("docker.io/library/a:1")
                .unwrap()
                .unwrap()
                .digest()
                .to_string(),
            m
        );
        let removed = cache.gc().unwrap().blobs;
        assert_eq!(removed, 1);
        assert!(!cache.has_blob(&orphan));
        assert!(cache.has_blob(&cfg) && cache.has_blob(&m));
        assert!(cache.remove("docker.io/library/a:1").unwrap());
        cache.gc().unwrap();
        assert!(!cache.has_blob(&m));
    }

    #[test]
    fn concurrent_writers_of_one_blob_agree() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let body = vec![7u8; 1 << 20];
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let cache = cache.clone();
                let body = body.clone();
                std::thread::spawn(move || {
                    for _ in 0..10 {
                        let mut tmp = cache.temp_file().unwrap();
                        tmp.write_all(&body).unwrap();
                        let d = sha256_digest(&body);
                        cache.commit_blob(tmp, &d).unwrap();
                        assert!(cache.verify_blob(&d).unwrap());
                        cache
                            .tag(&format!("r:{}", d.len()), &desc(&d, body.len() as u64))
                            .unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(cache.list().unwrap().len(), 1);
    }

    #[test]
    fn temporary_files_of_gone_builds_are_swept_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let tmp = dir.path().join("tmp");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        // An interrupted pull's partial blob, and one a running build is writing.
        fs::write(tmp.join(format!("blob-{dead}-x1")), vec![0u8; 1000]).unwrap();
        let live = cache.temp_file().unwrap();
        drop(Cache::open(dir.path()).unwrap());
        assert!(
            !tmp.join(format!("blob-{dead}-x1")).exists(),
            "swept on open"
        );
        assert!(live.path().exists(), "a live build's file is kept");
        // cache clean (exclusive: no build runs) removes and counts what is left.
        fs::write(tmp.join(format!("blob-{dead}-x2")), vec![0u8; 10]).unwrap();
        let (_, kept) = live.keep().unwrap();
        let freed = cache.gc().unwrap();
        assert_eq!(freed.temporary, 2, "{freed:?}");
        assert!(freed.bytes >= 10, "{freed:?}");
        assert!(!kept.exists());
    }
}
