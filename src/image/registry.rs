//! Pulling images through the OCI distribution API into the cache: tag resolution, platform
//! selection from indexes, blob download with digest verification, retries with backoff for
//! transient failures and none for 401/403/404, and layers decompressed once.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageConfiguration, ImageManifest, MediaType,
};

use super::auth::{Credentials, credentials_for, default_config_path};
use super::cache::{Cache, HashingWriter, sha256_digest};
use super::layer::{
    ChunkReader, ExpansionBudget, LayerCodec, codec_for, decompress_into_cache, expand,
};
use super::reference::is_sha256_digest;
use super::{Arch, ImageError, Reference};
use crate::limits::Limits;
use crate::progress::{Reporter, human_bytes};

/// Media types accepted for manifests and indexes.
const MANIFEST_TYPES: [&str; 4] = [
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Hosts reached over plain HTTP (loopback hosts always are).
    pub insecure: Vec<String>,
    /// Registry host -> mirror URL (`http://` or `https://`).
    pub mirrors: BTreeMap<String, String>,
    /// Docker config with credentials (`None`: the default location).
    pub docker_config: Option<PathBuf>,
    /// Attempts for transient failures.
    pub attempts: u32,
    /// First backoff delay (doubled each retry).
    pub backoff: Duration,
    /// Layers fetched at once.
    pub concurrency: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            mirrors: BTreeMap::new(),
            docker_config: None,
            attempts: 4,
            backoff: Duration::from_millis(250),
            concurrency: 4,
        }
    }
}

/// When to ask the registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct PullPolicy {
    /// Re-resolve tags with the registry even when cached (`--pull`).
    pub pull_always: bool,
    /// Never ask the registry (`--offline`).
    pub offline: bool,
}

/// An image ready to flatten.
#[derive(Debug, Clone)]
pub struct PulledImage {
    /// The reference as asked.
    pub reference: Reference,
    /// The reference pinned by the digest the registry resolved (index digest when the image is
    /// multi-platform, else the manifest digest).
    pub pinned: Reference,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// The image config.
    pub config: ImageConfiguration,
    /// Uncompressed layer tars in the cache, bottom first, verified against the diff_ids.
    pub layers: Vec<PathBuf>,
}

/// A failure and whether trying again may help.
struct Failure {
    error: ImageError,
    transient: bool,
}

/// Where a blob is fetched from: the registry client, the reference as it knows it, and the
/// label its progress is shown under.
struct BlobSource {
    client: oci_client::Client,
    oci: oci_client::Reference,
    label: String,
}

/// Pulls images into a cache.
#[derive(Clone)]
pub struct Puller {
    cache: Cache,
    opts: RegistryOptions,
    policy: PullPolicy,
    reporter: Reporter,
    limits: Limits,
    clients: Arc<Mutex<HashMap<String, oci_client::Client>>>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Whether `host` (with optional port) is on the loopback interface.
pub fn is_loopback(host: &str) -> bool {
    let name = if host.starts_with('[') {
        host.split(']')
            .next()
            .unwrap_or(host)
            .trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name == "localhost" || name == "::1" || name.starts_with("127.")
}

impl Puller {
    /// A puller over `cache`.
    pub fn new(
        cache: Cache,
        opts: RegistryOptions,
        policy: PullPolicy,
        reporter: Reporter,
    ) -> Self {
        Puller {
            cache,
            opts,
            policy,
            reporter,
            limits: Limits::default(),
            clients: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// This puller, bounding what each image's layers expand to by `limits` (instead of the
    /// defaults).
    pub fn with_limits(mut self, limits: &Limits) -> Self {
        self.limits = *limits;
        self
    }

    /// The cache pulled into.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Where requests for `registry` go: the mirror's host if one is set, and whether it is
    /// plain HTTP.
    fn endpoint(&self, registry: &str) -> (String, bool) {
        if let Some(url) = self.opts.mirrors.get(registry) {
            let http = url.starts_with("http://");
            let host = url
                .trim_start_matches("http://")
                .trim_start_matches("https://")
                .trim_end_matches('/')
                .to_string();
            let insecure = http || is_loopback(&host) || self.opts.insecure.contains(&host);
            return (host, insecure);
        }
        let insecure = is_loopback(registry) || self.opts.insecure.iter().any(|h| h == registry);
        (registry.to_string(), insecure)
    }

    pub(super) fn client(&self, registry: &str) -> oci_client::Client {
        let (host, insecure) = self.endpoint(registry);
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(host)
            .or_insert_with(|| {
                oci_client::Client::new(ClientConfig {
                    protocol: if insecure {
                        ClientProtocol::Http
                    } else {
                        ClientProtocol::Https
                    },
                    connect_timeout: Some(Duration::from_secs(10)),
                    read_timeout: Some(Duration::from_secs(60)),
                    platform_resolver: None,
                    ..ClientConfig::default()
                })
            })
            .clone()
    }

    fn oci_ref(&self, reference: &Reference) -> oci_client::Reference {
        let mut r = reference.to_oci();
        if self.opts.mirrors.contains_key(&reference.registry) {
            let (host, _) = self.endpoint(&reference.registry);
            r.set_mirror_registry(host);
        }
        r
    }

    pub(super) fn auth(&self, reference: &Reference) -> Result<RegistryAuth, ImageError> {
        let path = self.opts.docker_config.clone().or_else(default_config_path);
        let (host, _) = self.endpoint(&reference.registry);
        Ok(match credentials_for(path.as_deref(), &host)? {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic(u, p) => RegistryAuth::Basic(u, p),
        })
    }

    fn classify(&self, reference: &Reference, err: OciDistributionError) -> Failure {
        let registry = self.endpoint(&reference.registry).0;
        let r = reference.to_string();
        let not_found = || ImageError::NotFound {
            reference: r.clone(),
            registry: registry.clone(),
        };
        let denied = |detail: String| ImageError::Denied {
            reference: r.clone(),
            registry: registry.clone(),
            detail,
        };
        let fatal = |error| Failure {
            error,
            transient: false,
        };
        match err {
            OciDistributionError::ImageManifestNotFoundError(_) => fatal(not_found()),
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NameUnknown
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    fatal(not_found())
                } else if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    fatal(denied(envelope.to_string()))
                } else {
                    Failure {
                        error: ImageError::Invalid {
                            reference: r.clone(),
                            reason: envelope.to_string(),
                        },
                        transient: codes
                            .iter()
                            .any(|c| matches!(c, OciErrorCode::Toomanyrequests)),
                    }
                }
            }
            OciDistributionError::ServerError { code, message, .. } => match code {
                404 => fatal(not_found()),
                401 | 403 => fatal(denied(format!("HTTP {code}: {message}"))),
                _ => Failure {
                    error: ImageError::Unreachable {
                        reference: r.clone(),
                        registry: registry.clone(),
                        attempts: 1,
                        detail: format!("HTTP {code}: {message}"),
                    },
                    transient: code >= 500 || code == 429 || code == 408,
                },
            },
            OciDistributionError::UnauthorizedError { .. } => fatal(denied("HTTP 401".into())),
            OciDistributionError::AuthenticationFailure(m) => fatal(denied(m)),
            OciDistributionError::RequestError(e) => {
                let mut detail = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    detail = format!("{detail}: {s}");
                    source = s.source();
                }
                Failure {
                    error: ImageError::Unreachable {
                        reference: r.clone(),
                        registry: registry.clone(),
                        attempts: 1,
                        detail,
                    },
                    transient: true,
                }
            }
            OciDistributionError::IoError(e) => Failure {
                error: ImageError::Unreachable {
                    reference: r.clone(),
                    registry: registry.clone(),
                    attempts: 1,
                    detail: e.to_string(),
                },
                transient: true,
            },
            other => fatal(ImageError::Invalid {
                reference: r.clone(),
                reason: other.to_string(),
            }),
        }
    }

    /// Run `op` with retries for transient failures.
    async fn with_retries<T, F, Fut>(
        &self,
        reference: &Reference,
        mut op: F,
    ) -> Result<T, ImageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let mut delay = self.opts.backoff;
        let attempts = self.opts.attempts.max(1);
        for attempt in 1..=attempts {
            match op().await {
                Ok(v) => return Ok(v),
                Err(f) if f.transient && attempt < attempts => {
                    self.reporter
                        .detail(format!("{reference}: {} (retrying in {delay:?})", f.error));
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(f) => {
                    return Err(match f.error {
                        ImageError::Unreachable {
                            reference,
                            registry,
                            detail,
                            ..
                        } => ImageError::Unreachable {
                            reference,
                            registry,
                            attempts: attempt,
                            detail,
                        },
                        other => other,
                    });
                }
            }
        }
        unreachable_retry(reference)
    }

    /// Fetch the manifest or index `reference` names (by tag or digest): (bytes, digest).
    async fn fetch_manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), ImageError> {
        let auth = self.auth(reference)?;
        let client = self.client(&reference.registry);
        let oci = self.oci_ref(reference);
        let (bytes, digest) = self
            .with_retries(reference, || async {
                client
                    .pull_manifest_raw(&oci, &auth, &MANIFEST_TYPES)
                    .await
                    .map_err(|e| self.classify(reference, e))
            })
            .await?;
        let actual = sha256_digest(&bytes);
        let expected = reference.digest.clone().unwrap_or(digest);
        if actual != expected {
            return Err(ImageError::DigestMismatch {
                reference: reference.to_string(),
                what: "manifest".into(),
                expected,
                actual,
            });
        }
        Ok((bytes.to_vec(), actual))
    }

    /// A manifest, index or config by digest: from the cache, else from the registry.
    async fn small_blob(
        &self,
        reference: &Reference,
        digest: &str,
        manifest: bool,
    ) -> Result<Vec<u8>, ImageError> {
        if let Some(bytes) = self.cache.read_blob(digest)? {
            return Ok(bytes);
        }
        if self.policy.offline {
            return Err(ImageError::NotCached {
                reference: reference.to_string(),
            });
        }
        let bytes = if manifest {
            self.fetch_manifest(&reference.pinned(digest)).await?.0
        } else {
            let tmp = self
                .download_blob(reference, digest, None, "config")
                .await?;
            std::fs::read(&tmp).map_err(|source| ImageError::Cache {
                path: tmp.clone(),
                source,
            })?
        };
        self.cache.put_blob(&bytes)?;
        Ok(bytes)
    }

    /// Download blob `digest` into the cache, verifying it; returns its path.
    async fn download_blob(
        &self,
        reference: &Reference,
        digest: &str,
        size: Option<u64>,
        what: &str,
    ) -> Result<PathBuf, ImageError> {
        let source = self.blob_source(reference, digest, what).await?;
        self.with_retries(reference, || {
            self.download_attempt(&source, reference, digest, size, what, None)
        })
        .await
    }

    /// Where a blob of `reference` is fetched from, and how it is shown in progress.
    async fn blob_source(
        &self,
        reference: &Reference,
        digest: &str,
        what: &str,
    ) -> Result<BlobSource, ImageError> {
        let auth = self.auth(reference)?;
        let client = self.client(&reference.registry);
        let oci = self.oci_ref(reference);
        client
            .store_auth_if_needed(oci.resolve_registry(), &auth)
            .await;
        let short = digest
            .trim_start_matches("sha256:")
            .get(..12)
            .unwrap_or(digest)
            .to_string();
        let label = format!("{} {what} {short}", reference.repository);
        Ok(BlobSource { client, oci, label })
    }

    /// One attempt at fetching blob `digest` into the cache, verified; each chunk is also
    /// sent to `tee` when given (a decompressor reading the blob as it arrives).
    async fn download_attempt(
        &self,
        source: &BlobSource,
        reference: &Reference,
        digest: &str,
        size: Option<u64>,
        what: &str,
        mut tee: Option<&tokio::sync::mpsc::Sender<bytes::Bytes>>,
    ) -> Result<PathBuf, Failure> {
        let BlobSource { client, oci, label } = source;
        let task = self.reporter.task(label.clone(), size);
        let stream = client.pull_blob_stream(oci, digest).await.map_err(|e| {
            match self.classify(reference, e) {
                Failure {
                    error:
                        ImageError::NotFound {
                            reference,
                            registry,
                        },
                    transient,
                } => Failure {
                    error: ImageError::BlobNotFound {
                        reference,
                        what: what.to_string(),
                        digest: digest.to_string(),
                        registry,
                    },
                    transient,
                },
                other => other,
            }
        })?;
        let tmp = self.cache.temp_file().map_err(|error| Failure {
            error,
            transient: false,
        })?;
        let mut out = HashingWriter::new(std::io::BufWriter::with_capacity(1 << 20, tmp));
        let mut stream = stream.stream;
        let mut stream_error = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    out.write_all(&bytes).map_err(|source| Failure {
                        error: ImageError::Cache {
                            path: self.cache.root().to_owned(),
                            source,
                        },
                        transient: false,
                    })?;
                    task.inc(bytes.len() as u64);
                    if let Some(copy) = tee
                        && copy.send(bytes).await.is_err()
                    {
                        // The decompressor stopped (it says why): the download goes on to
                        // its end, so that a damaged blob is still reported as such.
                        tee = None;
                    }
                }
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            }
        }
        let (writer, actual, len) = out.finish();
        let complete = size.is_none_or(|s| len >= s);
        if actual != digest
            && complete
            && stream_error
                .as_ref()
                .is_none_or(|e| e.to_string().contains("igest"))
        {
            return Err(Failure {
                error: ImageError::DigestMismatch {
                    reference: reference.to_string(),
                    what: what.into(),
                    expected: digest.into(),
                    actual,
                },
                transient: false,
            });
        }
        if let Some(e) = stream_error.filter(|_| actual != digest) {
            return Err(Failure {
                error: ImageError::Unreachable {
                    reference: reference.to_string(),
                    registry: self.endpoint(&reference.registry).0,
                    attempts: 1,
                    detail: e.to_string(),
                },
                transient: true,
            });
        }
        let tmp = writer.into_inner().map_err(|e| Failure {
            error: ImageError::Cache {
                path: self.cache.root().to_owned(),
                source: e.into_error(),
            },
            transient: false,
        })?;
        let path = self
            .cache
            .commit_blob(tmp, digest)
            .map_err(|error| Failure {
                error,
                transient: false,
            })?;
        task.finish(human_bytes(len));
        Ok(path)
    }

    /// The uncompressed layer for `layer` (diff_id `diff_id`), fetching and decompressing it
    /// if the cache lacks it or holds a damaged copy; what it expands to is counted against
    /// `budget`, the image's. Returns its path and the blobs this call added to the cache.
    async fn layer(
        &self,
        reference: &Reference,
        layer: &Descriptor,
        diff_id: &str,
        budget: &ExpansionBudget,
    ) -> Result<(PathBuf, Vec<PathBuf>), ImageError> {
        let cache = self.cache.clone();
        let id = diff_id.to_string();
        let intact = tokio::task::spawn_blocking(move || cache.verify_blob(&id))
            .await
            .map_err(|e| ImageError::Invalid {
                reference: reference.to_string(),
                reason: e.to_string(),
            })??;
        let digest = layer.digest().to_string();
        if intact {
            let path = self.cache.blob_path(diff_id);
            let len = std::fs::metadata(&path)
                .map_err(|source| ImageError::Cache {
                    path: path.clone(),
                    source,
                })?
                .len();
            budget
                .count_layer(len)
                .map_err(|passed| ImageError::Layer {
                    reference: reference.to_string(),
                    digest: digest.clone(),
                    reason: passed.reason(),
                })?;
            return Ok((path, Vec::new()));
        }
        let codec = codec_for(layer.media_type().as_ref()).map_err(|reason| ImageError::Layer {
            reference: reference.to_string(),
            digest: digest.clone(),
            reason,
        })?;
        let cache = self.cache.clone();
        let d = digest.clone();
        let have = tokio::task::spawn_blocking(move || cache.verify_blob(&d))
            .await
            .map_err(|e| ImageError::Invalid {
                reference: reference.to_string(),
                reason: e.to_string(),
            })??;
        if !have {
            if self.policy.offline {
                return Err(ImageError::NotCached {
                    reference: reference.to_string(),
                });
            }
            return self
                .fetch_layer(reference, layer, diff_id, codec, budget)
                .await;
        }
        let blob = self.cache.blob_path(&digest);
        let cache = self.cache.clone();
        let (r, id) = (reference.to_string(), diff_id.to_string());
        let budget = budget.clone();
        let path = tokio::task::spawn_blocking(move || {
            decompress_into_cache(&cache, &blob, codec, &id, &r, &digest, &budget)
        })
        .await
        .map_err(|e| ImageError::Invalid {
            reference: reference.to_string(),
            reason: e.to_string(),
        })??;
        Ok((path.clone(), vec![path]))
    }

    /// Fetch `layer` and decompress it as it arrives: each chunk is written to the cache's
    /// compressed blob and sent, through a bounded queue, to a decompressor on the blocking
    /// pool. The uncompressed layer is committed once both are verified. Returns its path and
    /// the blobs added. A layer that cannot be used keeps nothing, not even the compressed
    /// blob.
    async fn fetch_layer(
        &self,
        reference: &Reference,
        layer: &Descriptor,
        diff_id: &str,
        codec: LayerCodec,
        budget: &ExpansionBudget,
    ) -> Result<(PathBuf, Vec<PathBuf>), ImageError> {
        /// Chunks in flight between the download and the decompressor.
        const QUEUE: usize = 16;
        let digest = layer.digest().to_string();
        let source = self.blob_source(reference, &digest, "layer").await?;
        self.with_retries(reference, || async {
            let (tx, rx) = tokio::sync::mpsc::channel(QUEUE);
            let (cache, id, r, d) = (
                self.cache.clone(),
                diff_id.to_string(),
                reference.to_string(),
                digest.clone(),
            );
            let expand_budget = budget.clone();
            let expanding = tokio::task::spawn_blocking(move || {
                expand(
                    &cache,
                    ChunkReader::new(rx),
                    codec,
                    &id,
                    &r,
                    &d,
                    &expand_budget,
                )
            });
            let downloaded = self
                .download_attempt(
                    &source,
                    reference,
                    &digest,
                    Some(layer.size()),
                    "layer",
                    Some(&tx),
                )
                .await;
            drop(tx);
            let expanded = expanding.await.map_err(|e| Failure {
                error: ImageError::Invalid {
                    reference: reference.to_string(),
                    reason: e.to_string(),
                },
                transient: false,
            })?;
            let fatal = |error| Failure {
                error,
                transient: false,
            };
            match (downloaded, expanded) {
                (Ok(blob), Ok(expanded)) => {
                    let path = expanded.commit(&self.cache).map_err(fatal)?;
                    Ok((path.clone(), vec![blob, path]))
                }
                (Ok(blob), Err(error)) => {
                    let _ = std::fs::remove_file(blob);
                    Err(fatal(error))
                }
                // A bound passed is the reason, whatever the download met after it.
                (Err(_), Err(error)) if budget.passed() => Err(fatal(error)),
                (Err(failure), _) => Err(failure),
            }
        })
        .await
    }

    /// Pull `reference` for `arch` into the cache.
    pub async fn pull(&self, reference: &Reference, arch: Arch) -> Result<PulledImage, ImageError> {
        let name = reference.to_string();
        let invalid = |reason: String| ImageError::Invalid {
            reference: name.clone(),
            reason,
        };
        // The top-level manifest or index.
        let (top_digest, top) = match &reference.digest {
            Some(d) => (d.clone(), self.small_blob(reference, d, true).await?),
            None => {
                let cached = if self.policy.pull_always && !self.policy.offline {
                    None
                } else {
                    match self.cache.resolve(&name)? {
                        Some(desc) => {
                            let d = desc.digest().to_string();
                            self.cache.read_blob(&d)?.map(|b| (d, b))
                        }
                        None => None,
                    }
                };
                match cached {
                    Some(hit) => hit,
                    None if self.policy.offline => {
                        return Err(ImageError::NotCached {
                            reference: name.clone(),
                        });
                    }
                    None => {
                        let (bytes, digest) = self.fetch_manifest(reference).await?;
                        self.cache.put_blob(&bytes)?;
                        (digest, bytes)
                    }
                }
            }
        };
        let checked = |e: ManifestError| match e {
            ManifestError::Invalid(reason) => invalid(reason),
            ManifestError::ArchMissing { available } => ImageError::ArchMissing {
                reference: name.clone(),
                arch: arch.oci().into(),
                available,
            },
        };
        let top_level = parse_top(&top, arch).map_err(checked)?;
        let top_type = top_level.media_type.clone();
        let (manifest_digest, manifest_bytes) = match &top_level.manifest {
            Some(digest) => {
                let bytes = self.small_blob(reference, digest, true).await?;
                (digest.clone(), bytes)
            }
            None => (top_digest.clone(), top.clone()),
        };
        let manifest = parse_manifest(&manifest_bytes).map_err(checked)?;
        let config_digest = manifest.config().digest().to_string();
        let config_bytes = self.small_blob(reference, &config_digest, false).await?;
        // An index chose the architecture already; a bare manifest's config says it.
        let expect_arch = top_level.manifest.is_none().then_some(arch);
        let config = parse_config(&manifest, &config_bytes, expect_arch).map_err(checked)?;
        let diff_ids = config.rootfs().diff_ids().clone();
        let budget = ExpansionBudget::new(self.limits.layer_bytes, self.limits.image_bytes);
        let jobs = manifest
            .layers()
            .iter()
            .zip(diff_ids.iter())
            .map(|(l, id)| self.layer(reference, l, id, &budget));
        let results: Vec<Result<(PathBuf, Vec<PathBuf>), ImageError>> =
            futures_util::stream::iter(jobs)
                .buffered(self.opts.concurrency.max(1))
                .collect()
                .await;
        if budget.passed() {
            // An image past its bounds keeps nothing, not even the layers of it that fitted
            // (or a bomb split into layers would leave up to the image's bound in the cache).
            for (_, made) in results.iter().flatten() {
                for blob in made {
                    let _ = std::fs::remove_file(blob);
                }
            }
        }
        let layers = results
            .into_iter()
            .map(|r| r.map(|(path, _)| path))
            .collect::<Result<Vec<_>, _>>()?;
        // Tagged once every layer is in: a failed pull (a layer past its bound, a registry that
        // went away) leaves no name pointing at an image the cache does not hold.
        if reference.digest.is_none() {
            let desc = DescriptorBuilder::default()
                .media_type(MediaType::from(top_type.as_str()))
                .digest(
                    top_digest
                        .parse::<oci_spec::image::Digest>()
                        .map_err(|e| invalid(e.to_string()))?,
                )
                .size(top.len() as u64)
                .build()
                .map_err(|e| invalid(e.to_string()))?;
            self.cache.tag(&name, &desc)?;
        }
        Ok(PulledImage {
            reference: reference.clone(),
            pinned: reference.pinned(&top_digest),
            manifest_digest,
            config,
            layers,
        })
    }
}

fn unreachable_retry<T>(reference: &Reference) -> Result<T, ImageError> {
    Err(ImageError::Invalid {
        reference: reference.to_string(),
        reason: "no attempt was made".into(),
    })
}

/// Why a manifest, an index or an image config fetched for a pull cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The document is malformed or names something it may not.
    #[error("{0}")]
    Invalid(String),
    /// The image has no manifest for the architecture asked for.
    #[error("no image for the architecture (it has {available})")]
    ArchMissing {
        /// The platforms it has.
        available: String,
    },
}

/// What the top-level document of a pull (fetched by tag or digest) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopLevel {
    /// Its media type (as stated, or inferred from its shape).
    pub media_type: String,
    /// For an index: the digest of the manifest for the architecture asked for (a checked
    /// sha256 digest); `None` when the document is a manifest itself.
    pub manifest: Option<String>,
}

/// Parse the top-level document of a pull: an index (the manifest for `arch` is picked) or a
/// manifest. Every digest it returns is `sha256:` and 64 hex digits, since digests name
/// files of the cache.
pub fn parse_top(bytes: &[u8], arch: Arch) -> Result<TopLevel, ManifestError> {
    let json: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Invalid(format!("manifest is not JSON: {e}")))?;
    let media_type = media_type_of(&json);
    let manifest = match json.get("manifests").and_then(|m| m.as_array()) {
        Some(list) => {
            let digest = pick_platform(list, arch)
                .map_err(|available| ManifestError::ArchMissing { available })?;
            if !is_sha256_digest(&digest) {
                return Err(ManifestError::Invalid(format!(
                    "the index names manifest {:?}, which is not a sha256 digest",
                    crate::tree::abbreviate(digest.as_bytes())
                )));
            }
            Some(digest)
        }
        None => None,
    };
    Ok(TopLevel {
        media_type,
        manifest,
    })
}

/// Parse an image manifest; its config and layers must be named by sha256 digests.
pub fn parse_manifest(bytes: &[u8]) -> Result<ImageManifest, ManifestError> {
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Invalid(format!("bad image manifest: {e}")))?;
    for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let digest = d.digest().to_string();
        if !is_sha256_digest(&digest) {
            return Err(ManifestError::Invalid(format!(
                "bad image manifest: {digest} is not a sha256 digest"
            )));
        }
    }
    Ok(manifest)
}

/// Parse the image config of `manifest` and check it against it: one sha256 `diff_id` per
/// layer, and the architecture `arch` when given (a manifest not chosen from an index).
pub fn parse_config(
    manifest: &ImageManifest,
    bytes: &[u8],
    arch: Option<Arch>,
) -> Result<ImageConfiguration, ManifestError> {
    let config: ImageConfiguration = serde_json::from_slice(bytes)
        .map_err(|e| ManifestError::Invalid(format!("bad image config: {e}")))?;
    if let Some(arch) = arch {
        let image_arch = config.architecture().to_string();
        if image_arch != arch.oci() {
            return Err(ManifestError::ArchMissing {
                available: format!("linux/{image_arch}"),
            });
        }
    }
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(ManifestError::Invalid(format!(
            "the manifest has {} layers but the config {} diff_ids",
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    if let Some(bad) = diff_ids.iter().find(|d| !is_sha256_digest(d)) {
        return Err(ManifestError::Invalid(format!(
            "bad image config: diff_id {:?} is not a sha256 digest",
            crate::tree::abbreviate(bad.as_bytes())
        )));
    }
    Ok(config)
}

fn media_type_of(v: &serde_json::Value) -> String {
    match v.get("mediaType").and_then(|m| m.as_str()) {
        Some(t) => t.to_string(),
        None if v.get("manifests").is_some() => "application/vnd.oci.image.index.v1+json".into(),
        None => "application/vnd.oci.image.manifest.v1+json".into(),
    }
}

/// The digest of the linux/`arch` manifest of an index's `manifests`, or the list of platforms
/// it does have.
pub fn pick_platform(list: &[serde_json::Value], arch: Arch) -> Result<String, String> {
    let mut available = Vec::new();
    for m in list {
        let os = m
            .pointer("/platform/os")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let a = m
            .pointer("/platform/architecture")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let variant = m.pointer("/platform/variant").and_then(|v| v.as_str());
        if os == "linux"
            && a == arch.oci()
            && (arch != Arch::Arm64 || variant.is_none_or(|v| v == "v8"))
            && let Some(d) = m.get("digest").and_then(|d| d.as_str())
        {
            return Ok(d.to_string());
        }
        if !os.is_empty() && os != "unknown" {
            available.push(match variant {
                Some(v) => format!("{os}/{a}/{v}"),
                None => format!("{os}/{a}"),
            });
        }
    }
    Err(if available.is_empty() {
        "no platforms".into()
    } else {
        available.join(", ")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A manifest with one layer, its config named by `config`.
    fn manifest_json(config: &str) -> Vec<u8> {
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{}", "b".repeat(64)), "size": 2}],
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn digests_that_would_leave_the_cache_are_refused() {
        let a = format!("sha256:{}", "a".repeat(64));
        // An index naming its manifest by a path.
        for bad in [
            "sha256:../../../../home/u/.bashrc",
            "sha256:/etc/passwd",
            "sha256:ab",
        ] {
            let index = json!({"manifests": [
                {"digest": bad, "platform": {"os": "linux", "architecture": "amd64"}}
            ]});
            let err = parse_top(index.to_string().as_bytes(), Arch::Amd64).unwrap_err();
            assert!(
                err.to_string().ends_with("which is not a sha256 digest"),
                "{err}"
            );
        }
        let index = json!({"manifests": [
            {"digest": a, "platform": {"os": "linux", "architecture": "amd64"}}
        ]});
        let top = parse_top(index.to_string().as_bytes(), Arch::Amd64).unwrap();
        assert_eq!(top.manifest.as_deref(), Some(a.as_str()));
        assert_eq!(top.media_type, "application/vnd.oci.image.index.v1+json");
        // A manifest whose config is not sha256.
        let err =
            parse_manifest(&manifest_json(&format!("sha512:{}", "c".repeat(128)))).unwrap_err();
        assert!(err.to_string().ends_with("is not a sha256 digest"), "{err}");
        // A config whose diff_id is a path.
        let manifest = parse_manifest(&manifest_json(&a)).unwrap();
        let config = |diff_id: &str, arch: &str| {
            json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}})
                .to_string()
                .into_bytes()
        };
        let err =
            parse_config(&manifest, &config("sha256:/etc/passwd", "amd64"), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad image config: diff_id \"sha256:/etc/passwd\" is not a sha256 digest"
        );
        parse_config(&manifest, &config(&a, "amd64"), Some(Arch::Amd64)).unwrap();
        let err = parse_config(&manifest, &config(&a, "arm64"), Some(Arch::Amd64)).unwrap_err();
        assert_eq!(
            err,
            ManifestError::ArchMissing {
                available: "linux/arm64".into()
            }
        );
    }

    #[test]
    fn picks_the_platform_or_lists_what_there_is() {
        let list = vec![
            json!({"digest": "sha256:a", "platform": {"os": "linux", "architecture": "amd64"}}),
            json!({"digest": "sha256:b", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}}),
            json!({"digest": "sha256:c", "platform": {"os": "unknown", "architecture": "unknown"}}),
        ];
        assert_eq!(pick_platform(&list, Arch::Amd64).unwrap(), "sha256:a");
        assert_eq!(pick_platform(&list, Arch::Arm64).unwrap(), "sha256:b");
        assert_eq!(
            pick_platform(&list, Arch::S390x).unwrap_err(),
            "linux/amd64, linux/arm64/v8"
        );
    }

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:5000",
            "localhost",
            "localhost:80",
            "[::1]:5000",
            "127.1.2.3",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in ["docker.io", "10.0.0.1:5000", "ghcr.io"] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn mirrors_redirect_and_pick_the_scheme() {
        let mut opts = RegistryOptions::default();
        opts.mirrors
            .insert("docker.io".into(), "http://127.0.0.1:5000/".into());
        opts.insecure.push("reg.internal:5000".into());
        let dir = tempfile::tempdir().unwrap();
        let p = Puller::new(
            Cache::open(dir.path()).unwrap(),
            opts,
            PullPolicy::default(),
            Reporter::quiet(),
        );
        assert_eq!(p.endpoint("docker.io"), ("127.0.0.1:5000".into(), true));
        assert_eq!(
            p.endpoint("reg.internal:5000"),
            ("reg.internal:5000".into(), true)
        );
        assert_eq!(p.endpoint("ghcr.io"), ("ghcr.io".into(), false));
        let r = Reference::parse("redis:7").unwrap();
        assert_eq!(p.oci_ref(&r).resolve_registry(), "127.0.0.1:5000");
    }
}
