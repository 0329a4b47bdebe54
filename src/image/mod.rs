//! Images: references, the platform to pick, registry access (pull, push, auth) and the local
//! content-addressed cache every build reads from.

pub mod archive;
pub mod auth;
pub mod cache;
pub mod inspect;
pub mod layer;
pub mod layout;
pub mod platform;
pub mod reference;
pub mod registry;

use std::path::PathBuf;

pub use cache::Cache;
pub use platform::Arch;
pub use reference::{Reference, ReferenceError};
pub use registry::{PullPolicy, PulledImage, Puller, RegistryOptions};

/// Why an image could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The reference is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The registry does not have it.
    #[error("{reference}: not found in registry {registry}")]
    NotFound {
        /// The image.
        reference: String,
        /// The registry asked.
        registry: String,
    },
    /// The registry refused our credentials (or their absence).
    #[error("{reference}: access denied by registry {registry} ({detail})")]
    Denied {
        /// The image.
        reference: String,
        /// The registry.
        registry: String,
        /// What the registry said.
        detail: String,
    },
    /// The registry has the image's manifest but not one of the blobs it names.
    #[error("{reference}: {what} {digest} not found in registry {registry}")]
    BlobNotFound {
        /// The image.
        reference: String,
        /// What the blob is to the image ("layer", "config").
        what: String,
        /// The blob's digest.
        digest: String,
        /// The registry asked.
        registry: String,
    },
    /// The registry could not be reached or kept failing.
    #[error("{reference}: registry {registry} failed after {attempts} attempts: {detail}")]
    Unreachable {
        /// The image.
        reference: String,
        /// The registry.
        registry: String,
        /// How many tries were made.
        attempts: u32,
        /// The last error.
        detail: String,
    },
    /// A blob's content does not match its digest.
    #[error("{reference}: {what} {expected} has the wrong content (sha256 {actual}): refusing it")]
    DigestMismatch {
        /// The image.
        reference: String,
        /// What the blob is (layer, config, manifest).
        what: String,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },
    /// The image has no manifest for the architecture asked for.
    #[error("{reference}: no image for linux/{arch} (the image has: {available})")]
    ArchMissing {
        /// The image.
        reference: String,
        /// The architecture asked for.
        arch: String,
        /// The platforms it has.
        available: String,
    },
    /// `--offline` and the image is not in the cache.
    #[error("{reference}: not in the cache, and --offline forbids pulling it")]
    NotCached {
        /// The image.
        reference: String,
    },
    /// A manifest, index or config could not be understood.
    #[error("{reference}: {reason}")]
    Invalid {
        /// The image.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer could not be decompressed or has an unsupported media type.
    #[error("{reference}: layer {digest}: {reason}")]
    Layer {
        /// The image.
        reference: String,
        /// The layer's digest.
        digest: String,
        /// What is wrong.
        reason: String,
    },
    /// Credentials could not be read.
    #[error("credentials for {registry}: {reason}")]
    Auth {
        /// The registry.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// The cache directory could not be read or written.
    #[error("cache {path}")]
    Cache {
        /// The path concerned.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The cache's index.json is unreadable.
    #[error("cache {path}: {reason}")]
    CacheIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An OCI layout tarball could not be imported or exported.
    #[error("{path}: {reason}")]
    Archive {
        /// The tarball.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}
