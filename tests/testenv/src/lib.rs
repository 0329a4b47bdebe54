//! Test environment for osbuild: a real OCI registry on loopback, the repository's packages
//! (the kernel among them) built once per run, and fixture images built from real binaries and pushed to the registry.

pub mod debian;
pub mod fixtures;
pub mod packages;
pub mod qemu;
pub mod registry;
pub mod trees;

/// Where fixtures shared by all tests of a run are kept: `$OSBUILD_FIXTURES`, else
/// `target/osbuild-fixtures` next to the build output.
pub fn fixtures_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("OSBUILD_FIXTURES") {
        return dir.into();
    }
    let exe = std::env::current_exe().unwrap_or_default();
    // target/debug/deps/test-binary -> target/osbuild-fixtures
    exe.ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "target") || p.join("CACHEDIR.TAG").exists())
        .map(|t| t.join("osbuild-fixtures"))
        .unwrap_or_else(|| std::env::temp_dir().join("osbuild-fixtures"))
}
