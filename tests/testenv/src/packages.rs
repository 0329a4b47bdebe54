//! Packages of this repository (`pkg/NAME`) built once into a cache shared by every test of a
//! run (guarded by a file lock), so the kernel is unpacked and cut down once, not per test.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use osbuild::image::{Cache, Reference};
use osbuild::pkg::Package;

/// The mtime package builds stamp on every entry (LinuxKit's generated-file time).
pub const MTIME: i64 = 1_492_533_000;

/// The folder of the repository's package `name` (`pkg/NAME`).
pub fn package_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../pkg")
        .join(name)
}

/// The cache the shared package builds live in.
pub fn shared_cache() -> Result<Cache> {
    let dir = crate::fixtures_dir().join("pkg-cache");
    fs::create_dir_all(&dir)?;
    Ok(Cache::open(&dir)?)
}

/// The shared cache's directory and the lock that serialises its package builds across the
/// test binaries of a run (held until the returned file is dropped).
pub fn locked_cache_dir() -> Result<(PathBuf, fs::File)> {
    let dir = crate::fixtures_dir().join("pkg-cache");
    fs::create_dir_all(&dir)?;
    let lock = fs::File::create(crate::fixtures_dir().join(".pkg-cache.lock"))?;
    lock.lock()?;
    Ok((dir, lock))
}

/// Build the package in `dir` into the shared cache (once per run and per content); returns
/// the cache and the reference pinned by the index digest.
pub fn build(dir: &Path) -> Result<(Cache, Reference)> {
    let cache = shared_cache()?;
    let lock = fs::File::create(crate::fixtures_dir().join(".pkg-cache.lock"))?;
    lock.lock()?;
    let package = Package::load(dir).with_context(|| format!("loading {}", dir.display()))?;
    let reference = osbuild::pkg::build(&package, &cache, MTIME)
        .with_context(|| format!("building {}", dir.display()))?;
    Ok((cache, reference))
}
