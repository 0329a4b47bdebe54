//! Packages: folders with a `build.yml` that become multi-arch images in the cache without a
//! container engine, tagged by a hash of their content (`osbuild pkg build|show-tag|push`, and
//! `@pkg:PATH` references in specs).

pub mod builder;
pub mod manifest;
pub mod tag;

use std::path::{Path, PathBuf};

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
    #[error("{path}: {source}")]
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
    let reference = reference(package)?;
    let name = reference.to_string();
    if let Some(desc) = cache.resolve(&name)?
        && cache.has_blob(desc.digest().as_ref())
    {
        return Ok(reference.pinned(desc.digest().as_ref()));
    }
    let file = package.dir.join("build.yml");
    let labels = package.labels()?;
    let arches = package.arches(&file)?;
    for arch in &arches {
        builder::preflight(package, *arch)?;
    }
    let mut manifests = Vec::new();
    for arch in arches {
        let rootfs = builder::root_filesystem(package, arch, mtime)?;
        let spec = ImageSpec {
            layers: vec![&rootfs.tree],
            entrypoint: package.manifest.entrypoint.clone(),
            cmd: package.manifest.cmd.clone(),
            env: package.manifest.env.clone(),
            labels: labels.clone(),
            ..ImageSpec::default()
        };
        manifests.push(write_image(cache, &spec, arch)?);
    }
    let index = write_index(cache, manifests)?;
    cache.tag(&name, &index)?;
    Ok(reference.pinned(index.digest().as_ref()))
}

/// The architectures `package` declares.
pub fn arches(package: &Package) -> Result<Vec<Arch>, PkgError> {
    Ok(package.arches(&package.dir.join("build.yml"))?)
}
