//! The `cargo` builder: the Rust crate in the package folder built as static executables for
//! the target architecture and placed at declared paths. The host's architecture is built with
//! the toolchain on `PATH` (rustup's); others with Debian's rustc and its std sources
//! (`-Zbuild-std`) and the Debian cross linker, so no emulation and no container are needed.
//! With `debian:` the image starts from Debian packages of the target architecture (the
//! `debian` builder's layer) and the binaries, files and links are laid over them.

use std::collections::BTreeMap;
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

/// A package's crate as cargo sees it.
#[derive(Debug, Clone)]
pub struct Crate {
    /// The crate's `Cargo.toml`.
    pub manifest: PathBuf,
    /// The root of its workspace (paths in the binaries are made relative to it).
    pub workspace_root: PathBuf,
    /// Where package builds go: `osbuild-pkg` in the workspace's target folder.
    pub target_dir: PathBuf,
    /// Cargo's package ID (what `-p` takes).
    pub id: String,
    /// The names of its binary targets.
    pub bins: Vec<String>,
}

/// The crate in `package`'s folder, its workspace and target folder, asked of `cargo metadata`.
pub fn locate(package: &Package) -> Result<Crate, PkgError> {
    let file = package.dir.join("build.yml");
    let manifest = package.dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(PkgError::Usage(format!(
            "{}: cargo builder: no Cargo.toml in {}",
            file.display(),
            package.dir.display()
        )));
    }
    let output = Command::new("cargo")
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .map_err(|e| PkgError::io(&manifest, e))?;
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
    let (Some(target_dir), Some(workspace_root)) =
        (field("target_directory"), field("workspace_root"))
    else {
        return Err(PkgError::Usage(
            "cargo metadata: no target_directory or workspace_root".into(),
        ));
    };
    let canonical = std::fs::canonicalize(&manifest).map_err(|e| PkgError::io(&manifest, e))?;
    let member = v
        .get("packages")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .find(|p| {
            p.get("manifest_path")
                .and_then(|m| m.as_str())
                .is_some_and(|m| Path::new(m) == canonical)
        })
        .ok_or_else(|| {
            PkgError::Usage(format!(
                "{}: cargo builder: {} is not a package of its workspace",
                file.display(),
                manifest.display()
            ))
        })?;
    let id = member
        .get("id")
        .and_then(|i| i.as_str())
        .ok_or_else(|| PkgError::Usage("cargo metadata: a package without an id".into()))?;
    let bins = member
        .get("targets")
        .and_then(|t| t.as_array())
        .into_iter()
        .flatten()
        .filter(|t| {
            t.get("kind")
                .and_then(|k| k.as_array())
                .is_some_and(|k| k.iter().any(|k| k == "bin"))
        })
        .filter_map(|t| t.get("name")?.as_str().map(str::to_string))
        .collect();
    Ok(Crate {
        manifest,
        workspace_root,
        target_dir: target_dir.join("osbuild-pkg"),
        id: id.to_string(),
        bins,
    })
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

/// One package of a compile: its folder and manifest, its builder, its crate.
#[derive(Debug, Clone, Copy)]
pub struct Unit<'a> {
    /// The package.
    pub package: &'a Package,
    /// Its `cargo` builder.
    pub spec: &'a CargoBuilder,
    /// Its crate.
    pub krate: &'a Crate,
}

impl Unit<'_> {
    /// Whether the two can be compiled by one cargo invocation with the same binaries as each
    /// alone: the same workspace, target folder and profile (cargo's `lto` cannot differ
    /// between the packages of one build), and no binary name in common (several packages
    /// are built with `--bins`, every binary of their crates: with per-package feature
    /// unification, `--bin NAME` must name a binary of each package). A package that
    /// declares no binary builds every target of its crate, and so goes alone.
    pub fn fits_with(&self, other: &Unit<'_>) -> bool {
        fn names<'a>(u: &Unit<'a>) -> Vec<&'a str> {
            u.spec
                .binaries
                .iter()
                .map(|b| b.name.value.as_str())
                .collect()
        }
        let (mine, theirs) = (names(self), names(other));
        !mine.is_empty()
            && !theirs.is_empty()
            && self.krate.workspace_root == other.krate.workspace_root
            && self.krate.target_dir == other.krate.target_dir
            && self.spec.profile.env() == other.spec.profile.env()
            && !self.krate.bins.iter().any(|n| other.krate.bins.contains(n))
            && !mine.iter().any(|n| theirs.contains(n))
    }
}

/// The folder a compile for `arch` puts its outputs in, under the crate's target folder.
fn target_subdir(arch: Arch) -> &'static str {
    if arch == Arch::host() {
        "host"
    } else {
        "debian-rustc"
    }
}

/// The `cargo build` command compiling `units` (which fit together) for `arch`.
fn command(units: &[Unit<'_>], first: &Unit<'_>, arch: Arch) -> Result<Command, PkgError> {
    let t = target(arch);
    let cross = arch != Arch::host();
    let mut rustflags = vec![
        "-C target-feature=+crt-static".to_string(),
        "-C strip=symbols".to_string(),
        format!(
            "--remap-path-prefix={}=.",
            first.krate.workspace_root.display()
        ),
    ];
    if let Some(home) = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")))
    {
        rustflags.push(format!("--remap-path-prefix={}=/cargo", home.display()));
    }
    let mut cmd = Command::new("cargo");
    cmd.args(["build", "--release", "--locked", "--target", t.triple])
        // Every package that can be built is, so each failure is its package's own.
        .args(["--keep-going", "--message-format=json"])
        .arg("--manifest-path")
        .arg(&first.krate.manifest)
        .arg("--target-dir")
        .arg(first.krate.target_dir.join(target_subdir(arch)));
    // Each package's dependencies get the features that package asks for, as if it were
    // built alone (cargo otherwise unifies them across the packages of one build), so a
    // binary does not depend on what it was built with.
    cmd.args([
        "-Zfeature-unification",
        "--config",
        "resolver.feature-unification=\"package\"",
    ]);
    for u in units {
        cmd.arg("-p").arg(&u.krate.id);
    }
    if let [alone] = units {
        for b in &alone.spec.binaries {
            cmd.args(["--bin", &b.name.value]);
        }
    } else {
        cmd.arg("--bins");
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
    cmd.envs(first.spec.profile.env());
    // `-Z` options (feature unification here, `-Zbuild-std` across architectures) on the
    // stable toolchains.
    cmd.env("RUSTC_BOOTSTRAP", "1");
    if cross {
        preflight_compiler(arch)?;
        let linker = format!("{}-gcc", t.gnu);
        cmd.arg("-Zbuild-std=std,panic_abort")
            .env("RUSTC", DEBIAN_RUSTC)
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

/// A package's built binaries: target name to file.
pub type Binaries = BTreeMap<String, PathBuf>;

/// What cargo's JSON messages said: the executables built and the errors, by package ID.
#[derive(Debug, Default)]
struct Messages {
    executables: BTreeMap<String, Binaries>,
    errors: Vec<(String, String)>,
}

impl Messages {
    fn parse(stdout: &str) -> Messages {
        let mut m = Messages::default();
        for line in stdout.lines() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let text = |v: &serde_json::Value, k: &str| v.get(k)?.as_str().map(str::to_string);
            let Some(id) = text(&v, "package_id") else {
                continue;
            };
            match v.get("reason").and_then(|r| r.as_str()) {
                Some("compiler-artifact") => {
                    let name = v.get("target").and_then(|t| text(t, "name"));
                    if let (Some(name), Some(exe)) = (name, text(&v, "executable")) {
                        m.executables
                            .entry(id)
                            .or_default()
                            .insert(name, PathBuf::from(exe));
                    }
                }
                Some("compiler-message") => {
                    let Some(message) = v.get("message") else {
                        continue;
                    };
                    if message.get("level").and_then(|l| l.as_str()) != Some("error") {
                        continue;
                    }
                    let line = text(message, "rendered")
                        .or_else(|| text(message, "message"))
                        .and_then(|r| r.lines().next().map(str::to_string))
                        .unwrap_or_else(|| "error".into());
                    m.errors.push((id, line));
                }
                _ => {}
            }
        }
        m
    }

    /// Why `unit` was not built: its own first error, else the first of a crate that is not
    /// one of `units` (a dependency they share), else the first of another of `units` (one
    /// it depends on), named; `None` when no compiler error was reported.
    fn error_for(&self, unit: &Unit<'_>, units: &[Unit<'_>]) -> Option<String> {
        let own = self.errors.iter().find(|(id, _)| *id == unit.krate.id);
        if let Some((_, line)) = own {
            return Some(line.clone());
        }
        let member = |id: &str| units.iter().any(|u| u.krate.id == id);
        self.errors
            .iter()
            .find(|(id, _)| !member(id))
            .or_else(|| self.errors.iter().find(|(id, _)| member(id)))
            .map(|(id, line)| format!("in {}: {line}", package_name(id)))
    }
}

/// The package name in a cargo package ID (`path+file:///p/init#osbuild-init@0.1.0`,
/// `registry+https://...#nix@0.31.3`, `path+file:///p/nix#0.31.3`, or the older
/// `nix 0.31.3 (registry+...)`).
fn package_name(id: &str) -> &str {
    match id.split_once('#') {
        Some((url, fragment)) => match fragment.split_once('@') {
            Some((name, _)) => name,
            None => url.rsplit('/').next().unwrap_or(url),
        },
        None => id.split(' ').next().unwrap_or(id),
    }
}

/// Compile the binaries of `units` for `arch` with one cargo invocation (the units must fit
/// together, [`Unit::fits_with`]); returns, for each unit in order, its binaries or why they
/// were not built. The standard library (across architectures) and the dependencies the
/// units share are compiled once.
pub fn compile(units: &[Unit<'_>], arch: Arch) -> Vec<Result<Binaries, PkgError>> {
    let fail_all = |e: &dyn Fn() -> PkgError| units.iter().map(|_| Err(e())).collect();
    let Some(first) = units.first() else {
        return Vec::new();
    };
    let cmd = units
        .iter()
        .try_for_each(|u| preflight(u.spec, arch))
        .and_then(|()| command(units, first, arch));
    let mut cmd = match cmd {
        Ok(cmd) => cmd,
        Err(e) => {
            let message = crate::error::chain(&e);
            return fail_all(&|| PkgError::Usage(message.clone()));
        }
    };
    let output = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            let message = format!("running cargo: {e}");
            return fail_all(&|| PkgError::Usage(message.clone()));
        }
    };
    let messages = Messages::parse(&String::from_utf8_lossy(&output.stdout));
    let stderr = String::from_utf8_lossy(&output.stderr);
    units
        .iter()
        .map(|u| {
            let built = messages.executables.get(&u.krate.id);
            let wanted: Option<Binaries> = u
                .spec
                .binaries
                .iter()
                .map(|b| {
                    let path = built?.get(&b.name.value)?;
                    Some((b.name.value.clone(), path.clone()))
                })
                .collect();
            match wanted {
                Some(bins) if output.status.success() || !bins.is_empty() => Ok(bins),
                _ => {
                    let reason = messages
                        .error_for(u, units)
                        .unwrap_or_else(|| first_error(&stderr));
                    Err(PkgError::Usage(format!(
                        "{}: cargo builder for {arch}: {reason}",
                        u.package.dir.join("build.yml").display()
                    )))
                }
            }
        })
        .collect()
}

/// The package's binaries for `arch` at their paths, over the Debian layer when there is one,
/// with its files and links.
pub fn assemble(
    package: &Package,
    spec: &CargoBuilder,
    arch: Arch,
    binaries: &Binaries,
    mtime: i64,
) -> Result<RootFs, PkgError> {
    let file = package.dir.join("build.yml");
    let (mut tree, scratch) = match &spec.debian {
        Some(debian) => {
            let built = super::debian::layer(package, "cargo", debian.selection(), arch, mtime)?;
            (built.tree, Some(built.scratch))
        }
        None => (Tree::new(mtime), None),
    };
    let dir_meta = Meta::root(0o755, mtime);
    for (i, b) in spec.binaries.iter().enumerate() {
        let at = |e: String| {
            SpecError::at(
                &file,
                &b.path,
                format!("builder.cargo.binaries[{i}].path"),
                e,
            )
        };
        let built = binaries.get(&b.name.value).ok_or_else(|| {
            PkgError::Usage(format!(
                "{}: cargo builder for {arch}: binary {} was not built",
                file.display(),
                b.name.value
            ))
        })?;
        let len = std::fs::metadata(built)
            .map_err(|e| PkgError::io(built, e))?
            .len();
        let path = TreePath::parse(&b.path.value).map_err(|e| at(e.to_string()))?;
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o755, mtime),
            kind: LeafKind::File(Content::Extent {
                file: BlobFile::new(built),
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

/// Build the package's binaries for `arch` alone and put each at its path, over the Debian
/// layer when there is one.
pub fn build(
    package: &Package,
    spec: &CargoBuilder,
    arch: Arch,
    mtime: i64,
) -> Result<RootFs, PkgError> {
    preflight(spec, arch)?;
    let krate = locate(package)?;
    let unit = Unit {
        package,
        spec,
        krate: &krate,
    };
    let binaries = compile(&[unit], arch).into_iter().next().ok_or_else(|| {
        PkgError::Usage(format!(
            "{}: cargo builder: nothing compiled",
            package.dir.display()
        ))
    })??;
    assemble(package, spec, arch, &binaries, mtime)
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

    const INIT: &str = "path+file:///w/pkg/init#osbuild-init@0.1.0";
    const MOUNT: &str = "path+file:///w/pkg/mount#osbuild-mount@0.1.0";
    const FORMAT: &str = "path+file:///w/pkg/format#osbuild-format@0.1.0";

    fn artifact(id: &str, name: &str) -> String {
        format!(
            r#"{{"reason":"compiler-artifact","package_id":"{id}","target":{{"kind":["bin"],"name":"{name}"}},"executable":"/t/release/{name}","fresh":false}}"#
        )
    }

    fn error(id: &str, rendered: &str) -> String {
        serde_json::json!({
            "reason": "compiler-message",
            "package_id": id,
            "message": {"level": "error", "message": "m", "rendered": rendered},
        })
        .to_string()
    }

    /// A package folder with a `cargo` build.yml declaring `bins`, and its crate with `targets`.
    fn unit_parts(dir: &Path, id: &str, bins: &[&str], targets: &[&str]) -> (Package, Crate) {
        std::fs::create_dir_all(dir).unwrap();
        let list: Vec<String> = bins
            .iter()
            .map(|b| format!("{{name: {b}, path: /{b}}}"))
            .collect();
        std::fs::write(
            dir.join("build.yml"),
            format!(
                "image: x\nbuilder:\n  cargo:\n    binaries: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let package = Package::load(dir).unwrap();
        let krate = Crate {
            manifest: dir.join("Cargo.toml"),
            workspace_root: "/w".into(),
            target_dir: "/w/target/osbuild-pkg".into(),
            id: id.into(),
            bins: targets.iter().map(|t| t.to_string()).collect(),
        };
        (package, krate)
    }

    fn cargo_spec(p: &Package) -> &CargoBuilder {
        match &p.manifest.builder {
            crate::pkg::manifest::Builder::Cargo(c) => c,
            _ => panic!("not cargo"),
        }
    }

    #[test]
    fn messages_give_each_package_its_executables_and_errors() {
        let stdout = [
            r#"{"reason":"compiler-artifact","package_id":"registry+https://github.com/rust-lang/crates.io-index#libc@0.2.1","target":{"kind":["lib"],"name":"libc"},"executable":null}"#.to_string(),
            artifact(INIT, "init"),
            error(MOUNT, "error[E0425]: cannot find value `y` in this scope\n --> src/main.rs:1:1\n"),
            r#"{"reason":"compiler-message","package_id":"x","message":{"level":"warning","rendered":"warning: unused"}}"#.to_string(),
            "not json".into(),
            r#"{"reason":"build-finished","success":false}"#.into(),
        ]
        .join("\n");
        let m = Messages::parse(&stdout);
        assert_eq!(m.executables.len(), 1);
        assert_eq!(m.executables[INIT]["init"], Path::new("/t/release/init"));
        assert_eq!(
            m.errors,
            vec![(
                MOUNT.to_string(),
                "error[E0425]: cannot find value `y` in this scope".to_string()
            )]
        );
    }

    #[test]
    fn a_failure_is_its_package_s_own_else_a_dependency_s_named() {
        let dir = tempfile::tempdir().unwrap();
        let (mount, mount_crate) =
            unit_parts(&dir.path().join("mount"), MOUNT, &["mount"], &["mount"]);
        let (format, format_crate) =
            unit_parts(&dir.path().join("format"), FORMAT, &["format"], &["format"]);
        let (init, init_crate) = unit_parts(&dir.path().join("init"), INIT, &["init"], &["init"]);
        let unit = |p, k| Unit {
            package: p,
            spec: cargo_spec(p),
            krate: k,
        };
        let units = [
            unit(&init, &init_crate),
            unit(&mount, &mount_crate),
            unit(&format, &format_crate),
        ];
        // format's library fails: format's own error; mount (which uses it) names it; a
        // dependency outside the batch would come first.
        let m = Messages::parse(&error(FORMAT, "error: format broke"));
        assert_eq!(
            m.error_for(&units[2], &units).unwrap(),
            "error: format broke"
        );
        assert_eq!(
            m.error_for(&units[1], &units).unwrap(),
            "in osbuild-format: error: format broke"
        );
        let dep = "registry+https://github.com/rust-lang/crates.io-index#nix@0.31.3";
        let m = Messages::parse(&[error(FORMAT, "error: a"), error(dep, "error: b")].join("\n"));
        assert_eq!(m.error_for(&units[1], &units).unwrap(), "in nix: error: b");
        assert_eq!(Messages::parse("").error_for(&units[0], &units), None);
    }

    #[test]
    fn package_names_from_every_id_form() {
        assert_eq!(package_name(INIT), "osbuild-init");
        assert_eq!(package_name("path+file:///w/pkg/nix#0.31.3"), "nix");
        assert_eq!(
            package_name("nix 0.31.3 (registry+https://github.com/rust-lang/crates.io-index)"),
            "nix"
        );
    }

    #[test]
    fn packages_share_an_invocation_only_when_their_binaries_stay_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (a, ka) = unit_parts(&dir.path().join("a"), "a", &["a"], &["a", "tool"]);
        let (b, kb) = unit_parts(&dir.path().join("b"), "b", &["b"], &["b"]);
        let (c, kc) = unit_parts(&dir.path().join("c"), "c", &["tool"], &["tool"]);
        let (d, kd) = unit_parts(&dir.path().join("d"), "d", &[], &["d"]);
        let u = |p, k| Unit {
            package: p,
            spec: cargo_spec(p),
            krate: k,
        };
        assert!(u(&a, &ka).fits_with(&u(&b, &kb)));
        // Built together, a's tool would be built too, over c's.
        assert!(!u(&a, &ka).fits_with(&u(&c, &kc)));
        assert!(!u(&c, &kc).fits_with(&u(&a, &ka)));
        // No binaries declared: every target of its crate, alone.
        assert!(!u(&a, &ka).fits_with(&u(&d, &kd)));
        let elsewhere = Crate {
            workspace_root: "/other".into(),
            ..kb.clone()
        };
        assert!(!u(&a, &ka).fits_with(&u(&b, &elsewhere)));
        let mut fast = b.clone();
        std::fs::write(
            dir.path().join("b/build.yml"),
            "image: x\nbuilder:\n  cargo:\n    profile: {opt-level: \"3\"}\n    binaries: [{name: b, path: /b}]\n",
        )
        .unwrap();
        fast.manifest = Package::load(&dir.path().join("b")).unwrap().manifest;
        assert!(!u(&a, &ka).fits_with(&u(&fast, &kb)));
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
