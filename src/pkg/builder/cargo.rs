//! The `cargo` builder: the Rust crate in the package folder built as static executables for
//! the target architecture and placed at declared paths. The host's architecture is built with
//! the toolchain on `PATH` (rustup's); others with Debian's rustc and its std sources
//! (`-Zbuild-std`) and the Debian cross linker, so no emulation and no container are needed.
//! With `debian:` the image starts from Debian packages of the target architecture (the
//! `debian` builder's layer) and the binaries, files and links are laid over them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::RootFs;
use crate::image::Arch;
use crate::pkg::manifest::CargoBuilder;
use crate::pkg::{Package, PkgError};
use crate::spec::SpecError;
use crate::tree::{BlobFile, Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

/// Debian's rustc, which comes with the std sources cross builds compile.
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";

/// How one architecture is compiled.
struct Target {
    /// Rust target triple.
    triple: &'static str,
    /// The cross C toolchain prefix (linker `PREFIX-gcc`).
    gnu: &'static str,
    /// Debian packages holding the cross linker and C library.
    packages: &'static str,
}

fn target(arch: Arch) -> Target {
    match arch {
        Arch::Amd64 => Target {
            triple: "x86_64-unknown-linux-gnu",
            gnu: "x86_64-linux-gnu",
            packages: "gcc-x86-64-linux-gnu libc6-dev-amd64-cross",
        },
        Arch::Arm64 => Target {
            triple: "aarch64-unknown-linux-gnu",
            gnu: "aarch64-linux-gnu",
            packages: "gcc-aarch64-linux-gnu libc6-dev-arm64-cross",
        },
        Arch::S390x => Target {
            triple: "s390x-unknown-linux-gnu",
            gnu: "s390x-linux-gnu",
            packages: "gcc-s390x-linux-gnu libc6-dev-s390x-cross",
        },
    }
}

/// Check that cargo, mmdebstrap when `spec` starts from Debian packages and, for other
/// architectures than the host's, Debian's rustc and the cross linker are there.
pub fn preflight(spec: &CargoBuilder, arch: Arch) -> Result<(), PkgError> {
    if spec.debian.is_some() {
        super::debian::preflight()?;
    }
    preflight_compiler(arch)
}

/// Check that cargo and, for other architectures than the host's, Debian's rustc and the
/// cross linker are there.
fn preflight_compiler(arch: Arch) -> Result<(), PkgError> {
    super::tools::require("cargo", "install the Rust toolchain (https://rustup.rs)")?;
    if arch == Arch::host() {
        return Ok(());
    }
    super::tools::require_file(
        Path::new(DEBIAN_RUSTC),
        &format!("Debian's rustc (for {arch} builds)"),
        "apt-get install rustc-web rust-web-src",
    )?;
    let t = target(arch);
    super::tools::require(
        &format!("{}-gcc", t.gnu),
        &format!("apt-get install {}", t.packages),
    )?;
    Ok(())
}

/// The workspace's target directory and root, as cargo sees them for `manifest`.
fn workspace(manifest: &Path) -> Result<(PathBuf, PathBuf), PkgError> {
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(manifest)
        .output()
        .map_err(|e| PkgError::io(manifest, e))?;
    if !output.status.success() {
        return Err(PkgError::Usage(format!(
            "{}: cargo metadata: {}",
            manifest.display(),
            first_error(&String::from_utf8_lossy(&output.stderr))
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| PkgError::Usage(format!("cargo metadata: {e}")))?;
    let field = |k: &str| v.get(k).and_then(|t| t.as_str()).map(PathBuf::from);
    match (field("target_directory"), field("workspace_root")) {
        (Some(t), Some(w)) => Ok((t, w)),
        _ => Err(PkgError::Usage(
            "cargo metadata: no target_directory or workspace_root".into(),
        )),
    }
}

/// The line of cargo's output that says what went wrong.
fn first_error(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("error"))
        .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("failed")
        .to_string()
}

/// The `cargo build` command for `arch`, checking the host tools it needs.
fn command(
    manifest: &Path,
    spec: &CargoBuilder,
    arch: Arch,
    target_dir: &Path,
    workspace_root: &Path,
) -> Result<Command, PkgError> {
    let t = target(arch);
    let cross = arch != Arch::host();
    let mut rustflags = vec![
        "-C target-feature=+crt-static".to_string(),
        "-C strip=symbols".to_string(),
        format!("--remap-path-prefix={}=.", workspace_root.display()),
    ];
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
    {
        rustflags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--locked", "--target", t.triple])
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir.join(if cross { "debian-rustc" } else { "host" }));
    for b in &spec.binaries {
        cmd.args(["--bin", &b.name.value]);
    }
    // Settings from the caller's environment must not change what is built: the package's
    // profile is the only one.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
    ] {
        cmd.env_remove(var);
    }
    for (var, _) in std::env::vars_os() {
        if var.to_string_lossy().starts_with("CARGO_PROFILE_") {
            cmd.env_remove(var);
        }
    }
    cmd.envs(spec.profile.env());
    if cross {
        preflight_compiler(arch)?;
        let linker = format!("{}-gcc", t.gnu);
        cmd.arg("-Zbuild-std=std,panic_abort")
            .env("RUSTC", DEBIAN_RUSTC)
            .env("RUSTC_BOOTSTRAP", "1")
            .env(
                format!(
                    "CARGO_TARGET_{}_LINKER",
                    t.triple.to_ascii_uppercase().replace('-', "_")
                ),
                linker,
            );
    } else {
        cmd.env_remove("RUSTC");
    }
    cmd.env("RUSTFLAGS", rustflags.join(" "));
    Ok(cmd)
}

/// Build the package's binaries for `arch` and put each at its path, over the Debian layer
/// when there is one.
pub fn build(
    package: &Package,
    spec: &CargoBuilder,
    arch: Arch,
    mtime: i64,
) -> Result<RootFs, PkgError> {
    let file = package.dir.join("build.yml");
    let manifest = package.dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(PkgError::Usage(format!(
            "{}: cargo builder: no Cargo.toml in {}",
            file.display(),
            package.dir.display()
        )));
    }
    preflight(spec, arch)?;
    let (target_dir, workspace_root) = workspace(&manifest)?;
    let target_dir = target_dir.join("osbuild-pkg");
    let mut cmd = command(&manifest, spec, arch, &target_dir, &workspace_root)?;
    let output = cmd.output().map_err(|e| PkgError::io(&manifest, e))?;
    if !output.status.success() {
        return Err(PkgError::Usage(format!(
            "{}: cargo builder for {arch}: {}",
            file.display(),
            first_error(&String::from_utf8_lossy(&output.stderr))
        )));
    }
    let cross = arch != Arch::host();
    let out_dir: PathBuf = [
        target_dir.as_os_str(),
        OsString::from(if cross { "debian-rustc" } else { "host" }).as_os_str(),
        OsString::from(target(arch).triple).as_os_str(),
        OsString::from("release").as_os_str(),
    ]
    .iter()
    .collect();
    let (mut tree, scratch) = match &spec.debian {
        Some(debian) => {
            let built = super::debian::layer(package, "cargo", debian.selection(), arch, mtime)?;
            (built.tree, Some(built.scratch))
        }
        None => (Tree::new(mtime), None),
    };
    let dir_meta = Meta::root(0o755, mtime);
    for (i, b) in spec.binaries.iter().enumerate() {
        let built = out_dir.join(&b.name.value);
        let len = std::fs::metadata(&built)
            .map_err(|e| PkgError::io(&built, e))?
            .len();
        let at = |e: String| {
            SpecError::at(
                &file,
                &b.path,
                format!("builder.cargo.binaries[{i}].path"),
                e,
            )
        };
        let path = TreePath::parse(&b.path.value).map_err(|e| at(e.to_string()))?;
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o755, mtime),
            kind: LeafKind::File(Content::Extent {
                file: BlobFile::new(&built),
                offset: 0,
                len,
            }),
        }));
        tree.insert(&path, leaf, &dir_meta)
            .map_err(|e| at(e.to_string()))?;
    }
    super::files::add_files(
        &mut tree,
        package,
        &spec.files,
        "builder.cargo.files",
        mtime,
    )?;
    super::files::add_links(
        &mut tree,
        package,
        &spec.links,
        "builder.cargo.links",
        mtime,
    )?;
    Ok(RootFs { tree, scratch })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_errors_are_cut_to_their_first_line() {
        let stderr = "   Compiling x v0.1.0\nerror[E0425]: cannot find value `y` in this scope\n --> src/main.rs:1:1\nerror: could not compile `x`\n";
        assert_eq!(
            first_error(stderr),
            "error[E0425]: cannot find value `y` in this scope"
        );
        assert_eq!(first_error("warning: odd\n"), "warning: odd");
    }

    #[test]
    fn targets_and_cross_tools_per_architecture() {
        assert_eq!(target(Arch::Arm64).triple, "aarch64-unknown-linux-gnu");
        assert_eq!(target(Arch::S390x).gnu, "s390x-linux-gnu");
        assert!(
            target(Arch::Amd64)
                .packages
                .contains("gcc-x86-64-linux-gnu")
        );
    }
}
