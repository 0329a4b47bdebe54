//! Packages: folders with a `build.yml` that become multi-arch images in the cache without a
//! container engine, tagged by a hash of their content (`osbuild pkg build|show-tag|push`, and
//! `@pkg:PATH` references in specs).

pub mod batch;
pub mod builder;
pub mod manifest;
pub mod tag;

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use crate::image::layout::{ImageSpec, write_image, write_index};
use crate::image::{Arch, Cache, ImageError, Reference};
use crate::spec::SpecError;
pub use manifest::Package;

/// Why a package could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PkgError {
    /// `build.yml` is invalid.
    #[error(transparent)]
    Manifest(#[from] SpecError),
    /// A source file could not be read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// Writing the image into the cache failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The request does not fit the package.
    #[error("{0}")]
    Usage(String),
}

impl PkgError {
    fn io(path: &Path, source: std::io::Error) -> PkgError {
        PkgError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// A package's reference: `docker.io/ORG/IMAGE:TAG`.
pub fn reference(package: &Package) -> Result<Reference, PkgError> {
    let mut roots = vec![package.dir.clone()];
    roots.extend(
        package
            .manifest
            .extra_sources
            .iter()
            .map(|s| package.dir.join(s)),
    );
    let hash = tag::source_hash(&roots)?;
    let text = format!("{}:{}", package.repository(), package.tag(&hash));
    Ok(Reference::parse(&text).map_err(ImageError::from)?)
}

/// Build `package` for its architectures into `cache` (unless already there) and name it;
/// returns its reference pinned by the index digest.
pub fn build(package: &Package, cache: &Cache, mtime: i64) -> Result<Reference, PkgError> {
    build_for(package, cache, mtime, None)
}

/// The platforms (architectures) an index in the cache has images for.
fn indexed_arches(cache: &Cache, index: &Descriptor) -> Result<Vec<(Arch, Descriptor)>, PkgError> {
    let Some(bytes) = cache.read_blob(index.digest().as_ref())? else {
        return Ok(Vec::new());
    };
    let Ok(parsed) = serde_json::from_slice::<ImageIndex>(&bytes) else {
        return Ok(Vec::new());
    };
    Ok(parsed
        .manifests()
        .iter()
        .filter(|m| cache.has_blob(m.digest().as_ref()))
        .filter_map(|m| {
            let arch = m.platform().as_ref()?.architecture().to_string();
            Some((Arch::ALL.into_iter().find(|a| a.oci() == arch)?, m.clone()))
        })
        .collect())
}

/// What a package lacks in the cache for the architectures wanted.
#[derive(Debug)]
pub(crate) struct Pending {
    reference: Reference,
    declared: Vec<Arch>,
    existing: Vec<(Arch, Descriptor)>,
    /// The architectures to build.
    pub(crate) missing: Vec<Arch>,
}

/// Where a package stands in the cache: complete for the architectures wanted (its
/// reference pinned by the index digest), or lacking some.
#[derive(Debug)]
pub(crate) enum Status {
    Complete(Reference),
    Pending(Pending),
}

/// Whether `cache` holds `package` for `only` that architecture (every architecture it
/// declares when `None`), and what it lacks.
pub(crate) fn status(
    package: &Package,
    cache: &Cache,
    only: Option<Arch>,
) -> Result<Status, PkgError> {
    let reference = reference(package)?;
    let name = reference.to_string();
    let file = package.dir.join("build.yml");
    let declared = package.arches(&file)?;
    let wanted: Vec<Arch> = match only {
        Some(arch) if declared.contains(&arch) => vec![arch],
        Some(arch) => {
            let list: Vec<String> = declared.iter().map(|a| a.to_string()).collect();
            return Err(PkgError::Usage(format!(
                "{}: the package is not built for {arch} (its arches: {})",
                file.display(),
                list.join(", ")
            )));
        }
        None => declared.clone(),
    };
    let existing = match cache.resolve(&name)? {
        Some(desc) if cache.has_blob(desc.digest().as_ref()) => {
            let have = indexed_arches(cache, &desc)?;
            if wanted.iter().all(|a| have.iter().any(|(h, _)| h == a)) {
                return Ok(Status::Complete(reference.pinned(desc.digest().as_ref())));
            }
            have
        }
        _ => Vec::new(),
    };
    let missing: Vec<Arch> = wanted
        .into_iter()
        .filter(|a| !existing.iter().any(|(h, _)| h == a))
        .collect();
    Ok(Status::Pending(Pending {
        reference,
        declared,
        existing,
        missing,
    }))
}

/// Write an image of `package` for each missing architecture, its root filesystem made by
/// `rootfs`, and the index of every architecture's image, and name it in `cache`; returns the
/// reference pinned by the index digest. The same root filesystems give the same digests
/// however they were built.
pub(crate) fn complete(
    package: &Package,
    cache: &Cache,
    pending: Pending,
    mut rootfs: impl FnMut(Arch) -> Result<builder::RootFs, PkgError>,
) -> Result<Reference, PkgError> {
    let labels = package.labels()?;
    let Pending {
        reference,
        declared,
        existing,
        missing,
    } = pending;
    let mut manifests: Vec<(Arch, Descriptor)> = existing;
    for arch in missing {
        let rootfs = rootfs(arch)?;
        let spec = ImageSpec {
            layers: vec![&rootfs.tree],
            entrypoint: package.manifest.entrypoint.clone(),
            cmd: package.manifest.cmd.clone(),
            env: package.manifest.env.clone(),
            labels: labels.clone(),
            ..ImageSpec::default()
        };
        manifests.push((arch, write_image(cache, &spec, arch)?));
    }
    // The index lists its images in the order build.yml declares the architectures, whatever
    // order they were built in.
    manifests.sort_by_key(|(a, _)| declared.iter().position(|d| d == a));
    let index = write_index(cache, manifests.into_iter().map(|(_, d)| d).collect())?;
    cache.tag(&reference.to_string(), &index)?;
    Ok(reference.pinned(index.digest().as_ref()))
}

/// Build `package` into `cache` for `only` that architecture (every architecture it declares
/// when `None`), reusing the images already there, and name it; returns its reference pinned
/// by the index digest.
pub fn build_for(
    package: &Package,
    cache: &Cache,
    mtime: i64,
    only: Option<Arch>,
) -> Result<Reference, PkgError> {
    let pending = match status(package, cache, only)? {
        Status::Complete(reference) => return Ok(reference),
        Status::Pending(pending) => pending,
    };
    for arch in &pending.missing {
        builder::preflight(package, *arch)?;
    }
    complete(package, cache, pending, |arch| {
        builder::root_filesystem(package, arch, mtime)
    })
}

/// The architectures `package` declares.
pub fn arches(package: &Package) -> Result<Vec<Arch>, PkgError> {
    Ok(package.arches(&package.dir.join("build.yml"))?)
}
