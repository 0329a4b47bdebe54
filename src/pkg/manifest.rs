//! `build.yml`: what a package is (LinuxKit's keys where they apply) and how its root
//! filesystem is made (`builder:`), read with the same one-line located errors as specs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::image::Arch;
use crate::spec::{ImageSpec, Loc, Mode, SpecError};
use crate::tree::TreePath;

/// A package's `build.yml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Image name (without org).
    pub image: Loc<String>,
    /// Organisation (default `osbuild`).
    #[serde(default)]
    pub org: Option<String>,
    /// Tag template; `{{.Hash}}` is replaced by the content hash (default: the hash).
    #[serde(default)]
    pub tag: Option<String>,
    /// Architectures built (default amd64, arm64, s390x).
    #[serde(default)]
    pub arches: Option<Vec<Loc<String>>>,
    /// The container config stored as the `org.mobyproject.config` label.
    #[serde(default)]
    pub config: Option<ImageSpec>,
    /// Other folders or files whose contents count in the tag, relative to the package.
    #[serde(default, rename = "extra-sources")]
    pub extra_sources: Vec<String>,
    /// Image config: Entrypoint.
    #[serde(default)]
    pub entrypoint: Vec<String>,
    /// Image config: Cmd.
    #[serde(default)]
    pub cmd: Vec<String>,
    /// Image config: Env.
    #[serde(default)]
    pub env: Vec<String>,
    /// How the root filesystem is made.
    pub builder: Builder,
}

/// The ways a package's root filesystem is made, without a container engine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "lowercase")]
pub enum Builder {
    /// Static files from the package folder.
    Files(Vec<FileEntry>),
    /// Debian packages of the target architecture.
    Debian(DebianBuilder),
    /// A Debian kernel in LinuxKit layout.
    Kernel(KernelBuilder),
    /// Static Rust executables from the crate in the package folder.
    Cargo(CargoBuilder),
}

/// The `cargo` builder's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CargoBuilder {
    /// The crate's binaries to build and where each goes in the image.
    pub binaries: Vec<CargoBinary>,
    /// Files from the package folder laid over the binaries.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Symbolic links to make: target (as written into the link) to the link paths.
    #[serde(default)]
    pub links: BTreeMap<String, Vec<Loc<String>>>,
    /// Release-profile settings. They live in the package folder, so its tag follows them.
    #[serde(default)]
    pub profile: CargoProfile,
    /// Debian packages the image starts from; the binaries, files and links are laid over them.
    #[serde(default)]
    pub debian: Option<DebianLayer>,
}

/// The Debian layer a `cargo` builder starts from: the `debian` builder's package keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianLayer {
    /// Packages to unpack (with their dependencies).
    pub include: Loc<Vec<String>>,
    /// Paths to keep (with everything below them); all when empty.
    #[serde(default)]
    pub keep: Vec<Loc<String>>,
    /// Debian suite (default `bookworm`).
    #[serde(default)]
    pub suite: Option<String>,
}

impl DebianLayer {
    /// The packages and paths.
    pub fn selection(&self) -> DebianSelection<'_> {
        DebianSelection {
            include: &self.include,
            keep: &self.keep,
            suite: self.suite.as_deref(),
        }
    }
}

/// The `[profile.release]` keys a `cargo` builder may set (cargo's defaults otherwise).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CargoProfile {
    /// Optimisation level.
    pub opt_level: Option<OptLevel>,
    /// Link-time optimisation.
    pub lto: Option<Lto>,
    /// Code generation units (1 gives the smallest, slowest-to-build code).
    pub codegen_units: Option<u16>,
}

impl CargoProfile {
    /// The settings as cargo's `CARGO_PROFILE_RELEASE_*` variables.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = Vec::new();
        if let Some(o) = self.opt_level {
            env.push(("CARGO_PROFILE_RELEASE_OPT_LEVEL", o.as_str().to_string()));
        }
        if let Some(l) = self.lto {
            env.push(("CARGO_PROFILE_RELEASE_LTO", l.as_str().to_string()));
        }
        if let Some(n) = self.codegen_units {
            env.push(("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", n.to_string()));
        }
        env
    }
}

/// `opt-level`: a string (`"2"`, `"3"`, `"s"`, `"z"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OptLevel {
    /// No optimisation.
    #[serde(rename = "0")]
    O0,
    /// Basic.
    #[serde(rename = "1")]
    O1,
    /// Some.
    #[serde(rename = "2")]
    O2,
    /// All (cargo's release default).
    #[serde(rename = "3")]
    O3,
    /// For size.
    #[serde(rename = "s")]
    Size,
    /// For size, loops not vectorised either.
    #[serde(rename = "z")]
    MinSize,
}

impl OptLevel {
    fn as_str(self) -> &'static str {
        match self {
            OptLevel::O0 => "0",
            OptLevel::O1 => "1",
            OptLevel::O2 => "2",
            OptLevel::O3 => "3",
            OptLevel::Size => "s",
            OptLevel::MinSize => "z",
        }
    }
}

/// `lto`: `fat`, `thin` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lto {
    /// Across the whole crate graph.
    Fat,
    /// Thin, parallel.
    Thin,
    /// None.
    Off,
}

impl Lto {
    fn as_str(self) -> &'static str {
        match self {
            Lto::Fat => "fat",
            Lto::Thin => "thin",
            Lto::Off => "off",
        }
    }
}

/// One binary of a `cargo` builder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CargoBinary {
    /// The crate's `[[bin]]` name.
    pub name: Loc<String>,
    /// Where it goes in the image.
    pub path: Loc<String>,
}

/// The `kernel` builder's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelBuilder {
    /// The Debian kernel package; `{arch}` becomes the Debian architecture
    /// (default `linux-image-{arch}`, Debian's current kernel).
    #[serde(default)]
    pub package: Option<String>,
    /// Debian suite (default `bookworm`).
    #[serde(default)]
    pub suite: Option<String>,
    /// Modules to carry, with everything they depend on; every module when absent.
    #[serde(default)]
    pub modules: Option<Vec<Loc<String>>>,
}

/// The `debian` builder's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DebianBuilder {
    /// Packages to unpack (with their dependencies).
    pub include: Loc<Vec<String>>,
    /// Paths to keep (with everything below them); all when empty. A component may hold `*`
    /// (any characters) and `?` (one character), as in `/lib/*-linux-gnu/libc.so.6`.
    #[serde(default)]
    pub keep: Vec<Loc<String>>,
    /// Debian suite (default `bookworm`).
    #[serde(default)]
    pub suite: Option<String>,
    /// Files from the package folder laid over the unpacked packages.
    #[serde(default)]
    pub files: Vec<FileEntry>,
    /// Symbolic links to make: target (as written into the link) to the link paths.
    #[serde(default)]
    pub links: BTreeMap<String, Vec<Loc<String>>>,
}

impl DebianBuilder {
    /// The packages and paths.
    pub fn selection(&self) -> DebianSelection<'_> {
        DebianSelection {
            include: &self.include,
            keep: &self.keep,
            suite: self.suite.as_deref(),
        }
    }
}

/// Which Debian packages to unpack and which of their paths to keep, wherever a builder
/// declares them.
#[derive(Debug, Clone, Copy)]
pub struct DebianSelection<'a> {
    /// Packages to unpack.
    pub include: &'a Loc<Vec<String>>,
    /// Paths (or patterns) to keep; all when empty.
    pub keep: &'a [Loc<String>],
    /// Debian suite, when not the default.
    pub suite: Option<&'a str>,
}

impl DebianSelection<'_> {
    /// Check the package names and `keep` paths; `key` is where the selection is in `file`.
    fn validate(&self, file: &Path, key: &str) -> Result<(), SpecError> {
        if self.include.value.is_empty() {
            return Err(SpecError::at(
                file,
                self.include,
                format!("{key}.include"),
                "names no package",
            ));
        }
        // They are passed to mmdebstrap as one comma-separated list (apt's `name=version`
        // and `name/suite` forms included).
        let unfit =
            |p: &String| p.is_empty() || p.contains(|c: char| c == ',' || c.is_whitespace());
        if let Some(name) = self.include.value.iter().find(|p| unfit(p)) {
            return Err(SpecError::at(
                file,
                self.include,
                format!("{key}.include"),
                format!("{name:?} is not a package name"),
            ));
        }
        for (i, k) in self.keep.iter().enumerate() {
            let at = |m: String| SpecError::at(file, k, format!("{key}.keep[{i}]"), m);
            if !k.value.starts_with('/') {
                return Err(at(format!("{:?} is not an absolute path", k.value)));
            }
            TreePath::parse(&k.value).map_err(|e| at(e.to_string()))?;
        }
        Ok(())
    }
}

impl Builder {
    /// Check what can be checked before building; errors are located in `file`.
    pub fn validate(&self, file: &Path) -> Result<(), SpecError> {
        match self {
            Builder::Debian(d) => d.selection().validate(file, "builder.debian"),
            Builder::Cargo(CargoBuilder {
                debian: Some(d), ..
            }) => d.selection().validate(file, "builder.cargo.debian"),
            Builder::Cargo(_) | Builder::Files(_) | Builder::Kernel(_) => Ok(()),
        }
    }
}

/// One file of a `files` builder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// Source, relative to the package folder.
    pub source: Loc<String>,
    /// Destination in the image.
    pub path: Loc<String>,
    /// Octal mode (default: 0755 if the source is executable, else 0644).
    #[serde(default)]
    pub mode: Option<Loc<Mode>>,
}

/// A package folder with its manifest.
#[derive(Debug, Clone)]
pub struct Package {
    /// The folder.
    pub dir: PathBuf,
    /// Its `build.yml`.
    pub manifest: Manifest,
}

impl Package {
    /// Read `dir/build.yml`.
    pub fn load(dir: &Path) -> Result<Package, SpecError> {
        let path = dir.join("build.yml");
        let text = std::fs::read_to_string(&path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let manifest: Manifest = crate::spec::parse_located(&text, &path)?;
        let package = Package {
            dir: dir.to_owned(),
            manifest,
        };
        package.arches(&path)?;
        package.manifest.builder.validate(&path)?;
        Ok(package)
    }

    /// `org/image`.
    pub fn repository(&self) -> String {
        format!(
            "{}/{}",
            self.manifest.org.as_deref().unwrap_or("osbuild"),
            self.manifest.image.value
        )
    }

    /// The architectures to build.
    pub fn arches(&self, file: &Path) -> Result<Vec<Arch>, SpecError> {
        match &self.manifest.arches {
            None => Ok(Arch::ALL.to_vec()),
            Some(list) => list
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    a.value
                        .parse::<Arch>()
                        .map_err(|e| SpecError::at(file, a, format!("arches[{i}]"), e))
                })
                .collect(),
        }
    }

    /// The tag for content hash `hash`, from the `tag` template.
    pub fn tag(&self, hash: &str) -> String {
        match &self.manifest.tag {
            Some(t) => t.replace("{{.Hash}}", hash),
            None => hash.to_string(),
        }
    }

    /// Image labels: the LinuxKit config, if any.
    pub fn labels(&self) -> Result<BTreeMap<String, String>, SpecError> {
        let mut labels = BTreeMap::new();
        if let Some(config) = &self.manifest.config {
            let json = serde_json::to_string(config).map_err(|e| {
                SpecError::in_file(&self.dir.join("build.yml"), "config", e.to_string())
            })?;
            labels.insert(crate::image::inspect::LINUXKIT_LABEL.to_string(), json);
        }
        Ok(labels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Package, String> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("build.yml"), text).unwrap();
        Package::load(dir.path()).map_err(|e| {
            e.to_string()
                .replace(&dir.path().display().to_string(), "P")
        })
    }

    #[test]
    fn reads_a_files_package() {
        let p = load("image: init\narches: [amd64]\nconfig:\n  capabilities: [CAP_SYS_ADMIN]\nbuilder:\n  files:\n    - source: init.sh\n      path: /init\n      mode: \"0755\"\n").unwrap();
        assert_eq!(p.repository(), "osbuild/init");
        assert_eq!(p.tag("abc"), "abc");
        assert_eq!(p.arches(Path::new("b")).unwrap(), [Arch::Amd64]);
        assert!(p.labels().unwrap()["org.mobyproject.config"].contains("CAP_SYS_ADMIN"));
    }

    #[test]
    fn cargo_profiles_become_cargo_variables() {
        let p = load("image: x\nbuilder:\n  cargo:\n    binaries: [{name: x, path: /x}]\n    profile: {opt-level: \"s\", lto: fat, codegen-units: 1}\n").unwrap();
        let Builder::Cargo(c) = &p.manifest.builder else {
            panic!("not a cargo builder")
        };
        assert_eq!(
            c.profile.env(),
            [
                ("CARGO_PROFILE_RELEASE_OPT_LEVEL", "s".to_string()),
                ("CARGO_PROFILE_RELEASE_LTO", "fat".into()),
                ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1".into()),
            ]
        );
        let e = load("image: x\nbuilder:\n  cargo:\n    binaries: []\n    profile: {lto: yes}\n")
            .unwrap_err();
        assert!(e.starts_with("P/build.yml:5:"), "{e}");
        assert!(e.contains("unknown variant `yes`"), "{e}");
        let e =
            load("image: x\nbuilder:\n  cargo:\n    binaries: []\n    profile: {panic: abort}\n")
                .unwrap_err();
        assert!(e.contains("unknown field `panic`"), "{e}");
    }

    #[test]
    fn errors_are_located() {
        assert_eq!(
            load("image: x\nbuilder:\n  docker: {}\n").unwrap_err(),
            "P/build.yml:3:3: builder: unknown variant `docker`, expected one of files, debian, kernel, cargo"
        );
        assert_eq!(
            load("image: x\narches: [riscv64]\nbuilder:\n  files: []\n").unwrap_err(),
            "P/build.yml:2:10: arches[0]: unknown architecture \"riscv64\": use amd64, arm64 or s390x"
        );
        assert!(
            load("image: x\ncolour: red\nbuilder:\n  files: []\n")
                .unwrap_err()
                .contains("P/build.yml:2:1: colour: unknown field")
        );
    }

    #[test]
    fn a_cargo_builder_may_start_from_debian_packages() {
        let p = load("image: x\nbuilder:\n  cargo:\n    binaries: [{name: x, path: /usr/bin/x}]\n    debian:\n      include: [e2fsprogs]\n      keep: [/sbin/mke2fs, \"/lib/*-linux-gnu/libc.so.6\"]\n").unwrap();
        let Builder::Cargo(c) = &p.manifest.builder else {
            panic!("not a cargo builder")
        };
        let d = c.debian.as_ref().expect("a debian layer").selection();
        assert_eq!(d.include.value, ["e2fsprogs"]);
        let keep: Vec<&str> = d.keep.iter().map(|k| k.value.as_str()).collect();
        assert_eq!(keep, ["/sbin/mke2fs", "/lib/*-linux-gnu/libc.so.6"]);
        assert_eq!(d.suite, None);
        let p = load("image: x\nbuilder:\n  cargo:\n    binaries: []\n").unwrap();
        let Builder::Cargo(c) = &p.manifest.builder else {
            panic!("not a cargo builder")
        };
        assert!(c.debian.is_none());
    }

    #[test]
    fn debian_layers_are_checked_where_they_are_written() {
        let cargo = |debian: &str| {
            load(&format!(
                "image: x\nbuilder:\n  cargo:\n    binaries: []\n    debian: {debian}\n"
            ))
            .unwrap_err()
        };
        assert_eq!(
            cargo("{include: [e2fsprogs], files: []}"),
            "P/build.yml:5:36: builder.cargo.debian.files: unknown field `files`, expected one of include, keep, suite"
        );
        assert_eq!(
            cargo("{include: []}"),
            "P/build.yml:5:23: builder.cargo.debian.include: names no package"
        );
        assert_eq!(
            cargo("{include: [\"a,b\"]}"),
            "P/build.yml:5:23: builder.cargo.debian.include: \"a,b\" is not a package name"
        );
        assert_eq!(
            cargo("{include: [e2fsprogs], keep: [/sbin, lib]}"),
            "P/build.yml:5:50: builder.cargo.debian.keep[1]: \"lib\" is not an absolute path"
        );
        assert_eq!(
            cargo("{include: [e2fsprogs], keep: [/a/../../b]}"),
            "P/build.yml:5:43: builder.cargo.debian.keep[0]: path \"/a/../../b\" escapes the root with '..'"
        );
        let e = cargo("{keep: [/sbin]}");
        assert!(e.starts_with("P/build.yml:5:"), "{e}");
        assert!(e.contains("missing field `include`"), "{e}");
        assert_eq!(
            load("image: x\nbuilder:\n  debian:\n    include: [redis-server]\n    keep: [usr]\n")
                .unwrap_err(),
            "P/build.yml:5:12: builder.debian.keep[0]: \"usr\" is not an absolute path"
        );
    }
}
