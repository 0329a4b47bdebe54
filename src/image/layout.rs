//! Making images: layers written from trees (tar, gzip) into the cache with their manifest and
//! config, multi-platform indexes over them, and pushing what the cache holds to a registry.

use std::collections::BTreeMap;
use std::io::BufWriter;

use oci_spec::image::{
    ConfigBuilder, Descriptor, DescriptorBuilder, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, PlatformBuilder, RootFsBuilder,
};

use super::cache::{Cache, HashingWriter};
use super::registry::Puller;
use super::{Arch, ImageError, Reference};
use crate::archive::compress::{Compression, Compressor};
use crate::archive::tar::{TarOptions, write_tar};
use crate::tree::Tree;

/// What an image to be written consists of.
#[derive(Debug, Clone, Default)]
pub struct ImageSpec<'a> {
    /// Layers, bottom first.
    pub layers: Vec<&'a Tree>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env` (`KEY=value`).
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// Labels (e.g. `org.mobyproject.config`).
    pub labels: BTreeMap<String, String>,
}

fn invalid(what: &str, e: impl std::fmt::Display) -> ImageError {
    ImageError::Invalid {
        reference: what.into(),
        reason: e.to_string(),
    }
}

fn descriptor(
    media_type: MediaType,
    digest: &str,
    size: u64,
    arch: Option<Arch>,
) -> Result<Descriptor, ImageError> {
    let mut b = DescriptorBuilder::default()
        .media_type(media_type)
        .digest(
            digest
                .parse::<oci_spec::image::Digest>()
                .map_err(|e| invalid(digest, e))?,
        )
        .size(size);
    if let Some(arch) = arch {
        b = b.platform(
            PlatformBuilder::default()
                .os(oci_spec::image::Os::Linux)
                .architecture(oci_spec::image::Arch::from(arch.oci()))
                .build()
                .map_err(|e| invalid("platform", e))?,
        );
    }
    b.build().map_err(|e| invalid("descriptor", e))
}

/// Write one layer: (compressed descriptor, diff_id). Both blobs land in the cache.
fn write_layer(cache: &Cache, tree: &Tree) -> Result<(Descriptor, String), ImageError> {
    let io = |source| ImageError::Cache {
        path: cache.root().to_owned(),
        source,
    };
    // Uncompressed first (it is what builds read), then the gzip blob from it.
    let tmp = cache.temp_file()?;
    let mut tar_out = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
    write_tar(tree, &mut tar_out, &TarOptions::default()).map_err(|e| invalid("layer", e))?;
    let (w, diff_id, _) = tar_out.finish();
    let tmp = w.into_inner().map_err(|e| io(e.into_error()))?;
    let tar_path = cache.commit_blob(tmp, &diff_id)?;
    let gz = cache.temp_file()?;
    let mut compressor =
        Compressor::new(Compression::Gzip, HashingWriter::new(BufWriter::new(gz))).map_err(io)?;
    let mut src = std::fs::File::open(&tar_path).map_err(io)?;
    std::io::copy(&mut src, &mut compressor).map_err(io)?;
    let hashing = compressor.finish().map_err(io)?;
    let (w, digest, size) = hashing.finish();
    let gz = w.into_inner().map_err(|e| io(e.into_error()))?;
    cache.commit_blob(gz, &digest)?;
    Ok((
        descriptor(MediaType::ImageLayerGzip, &digest, size, None)?,
        diff_id,
    ))
}

/// Write an image for `arch` into the cache; returns its manifest descriptor (with platform).
pub fn write_image(
    cache: &Cache,
    spec: &ImageSpec<'_>,
    arch: Arch,
) -> Result<Descriptor, ImageError> {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for tree in &spec.layers {
        let (desc, diff_id) = write_layer(cache, tree)?;
        layers.push(desc);
        diff_ids.push(diff_id);
    }
    let mut config = ConfigBuilder::default()
        .entrypoint(spec.entrypoint.clone())
        .cmd(spec.cmd.clone())
        .env(spec.env.clone())
        .labels(
            spec.labels
                .clone()
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    if let Some(wd) = &spec.working_dir {
        config = config.working_dir(wd.clone());
    }
    let config = config.build().map_err(|e| invalid("config", e))?;
    let image_config = ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::from(arch.oci()))
        .os(oci_spec::image::Os::Linux)
        .config(config)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .map_err(|e| invalid("rootfs", e))?,
        )
        .build()
        .map_err(|e| invalid("config", e))?;
    let config_bytes = serde_json::to_vec(&image_config).map_err(|e| invalid("config", e))?;
    let config_digest = cache.put_blob(&config_bytes)?;
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(descriptor(
            MediaType::ImageConfig,
            &config_digest,
            config_bytes.len() as u64,
            None,
        )?)
        .layers(layers)
        .build()
        .map_err(|e| invalid("manifest", e))?;
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|e| invalid("manifest", e))?;
    let digest = cache.put_blob(&manifest_bytes)?;
    descriptor(
        MediaType::ImageManifest,
        &digest,
        manifest_bytes.len() as u64,
        Some(arch),
    )
}

/// The bytes of `file` as a stream of chunks, so a push holds one chunk in memory, not a layer.
fn file_chunks(
    file: tokio::fs::File,
) -> impl futures_util::Stream<Item = oci_client::errors::Result<bytes::Bytes>> + Send + 'static {
    const CHUNK: usize = 4 << 20;
    futures_util::stream::try_unfold(file, |mut file| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        while filled < CHUNK {
            let n = file.read(&mut buf[filled..]).await?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            return Ok(None);
        }
        buf.truncate(filled);
        Ok(Some((bytes::Bytes::from(buf), file)))
    })
}

/// Write an index over platform manifests into the cache; returns its descriptor.
pub fn write_index(cache: &Cache, manifests: Vec<Descriptor>) -> Result<Descriptor, ImageError> {
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|e| invalid("index", e))?;
    let bytes = serde_json::to_vec(&index).map_err(|e| invalid("index", e))?;
    let digest = cache.put_blob(&bytes)?;
    descriptor(MediaType::ImageIndex, &digest, bytes.len() as u64, None)
}

impl Puller {
    /// Push the image or index `descriptor` (held in the cache) to `target`.
    pub async fn push(
        &self,
        descriptor: &Descriptor,
        target: &Reference,
    ) -> Result<(), ImageError> {
        let name = target.to_string();
        let client = self.client(&target.registry);
        let oci = target.to_oci();
        let auth = self.auth(target)?;
        client
            .store_auth_if_needed(oci.resolve_registry(), &auth)
            .await;
        let err = |e: oci_client::errors::OciDistributionError| ImageError::Invalid {
            reference: name.clone(),
            reason: format!("push failed: {e}"),
        };
        let top = self
            .cache()
            .read_blob(descriptor.digest().as_ref())?
            .ok_or_else(|| ImageError::NotCached {
                reference: name.clone(),
            })?;
        let value: serde_json::Value =
            serde_json::from_slice(&top).map_err(|e| invalid(&name, e))?;
        let mut manifests = Vec::new();
        if let Some(list) = value.get("manifests").and_then(|m| m.as_array()) {
            for m in list {
                let d = m
                    .get("digest")
                    .and_then(|d| d.as_str())
                    .unwrap_or_default()
                    .to_string();
                let bytes = self
                    .cache()
                    .read_blob(&d)?
                    .ok_or_else(|| ImageError::NotCached {
                        reference: name.clone(),
                    })?;
                manifests.push((d, bytes));
            }
        } else {
            manifests.push((descriptor.digest().to_string(), top.clone()));
        }
        for (digest, bytes) in &manifests {
            let manifest: oci_spec::image::ImageManifest =
                serde_json::from_slice(bytes).map_err(|e| invalid(&name, e))?;
            let blobs = std::iter::once(manifest.config().digest().to_string())
                .chain(manifest.layers().iter().map(|l| l.digest().to_string()));
            for blob in blobs {
                // Blobs the registry holds already (layers shared between images or
                // architectures, earlier pushes) are not sent again.
                if client.blob_exists(&oci, &blob).await.unwrap_or(false) {
                    continue;
                }
                let path = self.cache().blob_path(&blob);
                let file =
                    tokio::fs::File::open(&path)
                        .await
                        .map_err(|source| ImageError::Cache {
                            path: path.clone(),
                            source,
                        })?;
                let size = file.metadata().await.ok().map(|m| m.len());
                client
                    .push_blob_stream(&oci, file_chunks(file), &blob, size)
                    .await
                    .map_err(err)?;
            }
            let by_digest = target.pinned(digest).to_oci();
            let ct = http::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json");
            client
                .push_manifest_raw(&by_digest, bytes.clone(), ct)
                .await
                .map_err(err)?;
        }
        let ct = if value.get("manifests").is_some() {
            http::HeaderValue::from_static("application/vnd.oci.image.index.v1+json")
        } else {
            http::HeaderValue::from_static("application/vnd.oci.image.manifest.v1+json")
        };
        client.push_manifest_raw(&oci, top, ct).await.map_err(err)?;
        Ok(())
    }
}
