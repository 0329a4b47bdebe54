//! The `kernel` builder: a kernel image in LinuxKit layout (`kernel`, `kernel.tar` holding
//! `lib/modules/RELEASE` with `modules.dep` made by depmod, `System.map`, `config`) from a
//! Debian linux-image package of the target architecture, optionally cut down to a module list
//! and everything those modules depend on.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use super::debian::{DEFAULT_SUITE, unpack};
use crate::archive::tar::{TarOptions, write_tar};
use crate::image::Arch;
use crate::pkg::manifest::KernelBuilder;
use crate::pkg::{Package, PkgError};
use crate::spec::SpecError;
use crate::tree::{HostImport, Inode, Meta, Tree, TreePath, import_host_path};

/// The kernel package used when the builder names none; `{arch}` is the Debian architecture.
pub const DEFAULT_PACKAGE: &str = "linux-image-{arch}";

/// The image tree, and the scratch directory its file bodies live in.
pub struct Built {
    /// `kernel`, `kernel.tar`, `System.map`, `config`.
    pub tree: Tree,
    /// Holds the unpacked kernel and the written `kernel.tar`.
    pub scratch: tempfile::TempDir,
}

/// Build the kernel image of `package` for `arch`.
pub fn build(
    package: &Package,
    spec: &KernelBuilder,
    arch: Arch,
    mtime: i64,
) -> Result<Built, PkgError> {
    let manifest = package.dir.join("build.yml");
    let scratch = tempfile::Builder::new()
        .prefix("osbuild-kernel-")
        .tempdir()
        .map_err(|e| PkgError::io(&std::env::temp_dir(), e))?;
    let unpacked = scratch.path().join("unpacked");
    let name = spec
        .package
        .as_deref()
        .unwrap_or(DEFAULT_PACKAGE)
        .replace("{arch}", arch.oci());
    let suite = spec.suite.as_deref().unwrap_or(DEFAULT_SUITE);
    unpack(
        package,
        "kernel",
        std::slice::from_ref(&name),
        arch,
        suite,
        &unpacked,
        mtime,
    )?;
    let release = release(&unpacked).ok_or_else(|| {
        PkgError::Usage(format!(
            "{}: kernel builder for {arch}: {name} holds no kernel (no boot/vmlinuz-*)",
            manifest.display()
        ))
    })?;
    depmod(&unpacked, &release)?;
    let modules_root = match &spec.modules {
        None => unpacked.clone(),
        Some(list) => {
            let src = unpacked.join("lib/modules").join(&release);
            let mut wanted = Vec::new();
            for (i, m) in list.iter().enumerate() {
                // "name?": wanted where the architecture's kernel has it (ACPI's button is
                // x86 and arm64 only).
                let (module, optional) = match m.value.strip_suffix('?') {
                    Some(name) => (name, true),
                    None => (m.value.as_str(), false),
                };
                match resolve(&src, module)? {
                    Resolved::Module(path) => wanted.push(path),
                    Resolved::BuiltIn => {}
                    Resolved::Missing if optional => {}
                    Resolved::Missing => {
                        return Err(SpecError::at(
                            &manifest,
                            m,
                            format!("builder.kernel.modules[{i}]"),
                            format!("no module {:?} in {name} ({release}) for {arch}", m.value),
                        )
                        .into());
                    }
                }
            }
            let root = scratch.path().join("modules");
            copy_closure(&src, &root.join("lib/modules").join(&release), &wanted)?;
            depmod(&root, &release)?;
            root
        }
    };
    let kernel_tar = scratch.path().join("kernel.tar");
    write_kernel_tar(&modules_root, &kernel_tar, mtime)?;
    let boot = unpacked.join("boot");
    let image = ["vmlinuz", "vmlinux"]
        .iter()
        .map(|p| boot.join(format!("{p}-{release}")))
        .find(|p| p.exists())
        .unwrap_or_else(|| boot.join(format!("vmlinuz-{release}")));
    let mut tree = Tree::new(mtime);
    for (path, source) in [
        ("kernel", image),
        ("kernel.tar", kernel_tar),
        ("System.map", boot.join(format!("System.map-{release}"))),
        ("config", boot.join(format!("config-{release}"))),
    ] {
        let mut inode = import(&source, mtime)?;
        if let Inode::Leaf(leaf) = &mut inode {
            Arc::make_mut(leaf).meta.mode = 0o644;
        }
        let at = TreePath::parse(path).map_err(|e| PkgError::Usage(e.to_string()))?;
        tree.insert(&at, inode, &Meta::root(0o755, mtime))
            .map_err(|e| PkgError::Usage(e.to_string()))?;
    }
    Ok(Built { tree, scratch })
}

/// The kernel release whose image is under `root/boot` (the newest when there are several).
fn release(root: &Path) -> Option<String> {
    let mut releases: Vec<String> = fs::read_dir(root.join("boot"))
        .ok()?
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_prefix("vmlinuz-")
                .or_else(|| name.strip_prefix("vmlinux-"))
                .map(str::to_string)
        })
        .collect();
    releases.sort();
    releases.pop()
}

fn import(path: &Path, mtime: i64) -> Result<Inode, PkgError> {
    let opts = HostImport {
        uid: 0,
        gid: 0,
        mtime,
    };
    import_host_path(path, &opts).map_err(|e| PkgError::Usage(crate::error::chain(&e)))
}

/// Run `depmod` for `release` on the modules under `root/lib/modules`.
fn depmod(root: &Path, release: &str) -> Result<(), PkgError> {
    let depmod = super::tools::require("depmod", "apt-get install kmod")?;
    let output = Command::new(depmod)
        .arg("-b")
        .arg(root)
        .arg(release)
        .output()
        .map_err(|e| PkgError::io(root, e))?;
    if !output.status.success() {
        return Err(PkgError::Usage(format!(
            "depmod {release}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// What a module name stands for in one kernel.
#[derive(Debug, PartialEq, Eq)]
enum Resolved {
    /// A module file, relative to the modules directory.
    Module(String),
    /// Built into the kernel image: nothing to carry.
    BuiltIn,
    /// Neither.
    Missing,
}

/// The module name of a `modules.dep` or `modules.builtin` path (`-` and `_` are one).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    file.split('.').next().unwrap_or("").replace('-', "_")
}

/// Find `name` in the kernel whose modules are in `modules_dir`.
fn resolve(modules_dir: &Path, name: &str) -> Result<Resolved, PkgError> {
    let key = name.replace('-', "_");
    let dep = read(&modules_dir.join("modules.dep"))?;
    if let Some(path) = dep
        .lines()
        .filter_map(|l| l.split_once(':').map(|(m, _)| m))
        .find(|m| module_name(m) == key)
    {
        return Ok(Resolved::Module(path.to_string()));
    }
    let builtin = read(&modules_dir.join("modules.builtin")).unwrap_or_default();
    if builtin.lines().any(|l| module_name(l) == key) {
        return Ok(Resolved::BuiltIn);
    }
    Ok(Resolved::Missing)
}

fn read(path: &Path) -> Result<String, PkgError> {
    fs::read_to_string(path).map_err(|e| PkgError::io(path, e))
}

/// `wanted` (paths relative to the modules directory) and every module they depend on.
fn closure(modules_dep: &str, wanted: &[String]) -> BTreeSet<String> {
    let deps: BTreeMap<&str, Vec<&str>> = modules_dep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, rest)| (m, rest.split_whitespace().collect()))
        .collect();
    let mut out = BTreeSet::new();
    let mut queue: VecDeque<String> = wanted.iter().cloned().collect();
    while let Some(m) = queue.pop_front() {
        if let Some(more) = deps.get(m.as_str()) {
            queue.extend(more.iter().map(|d| d.to_string()));
        }
        out.insert(m);
    }
    out
}

/// Link the closure of `wanted` and the kernel's module lists from `src` into `dst`.
fn copy_closure(src: &Path, dst: &Path, wanted: &[String]) -> Result<(), PkgError> {
    let dep = read(&src.join("modules.dep"))?;
    let mut files: Vec<PathBuf> = closure(&dep, wanted)
        .into_iter()
        .map(PathBuf::from)
        .collect();
    files.extend(
        [
            "modules.builtin",
            "modules.builtin.modinfo",
            "modules.order",
        ]
        .iter()
        .map(PathBuf::from)
        .filter(|f| src.join(f).exists()),
    );
    for file in files {
        let to = dst.join(&file);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| PkgError::io(parent, e))?;
        }
        let from = src.join(&file);
        fs::hard_link(&from, &to)
            .or_else(|_| fs::copy(&from, &to).map(|_| ()))
            .map_err(|e| PkgError::io(&from, e))?;
    }
    Ok(())
}

/// Write `kernel.tar`: `lib/modules/...` of `root`, owned by root, stamped with `mtime`.
fn write_kernel_tar(root: &Path, out: &Path, mtime: i64) -> Result<(), PkgError> {
    let mut tree = Tree::new(mtime);
    let lib = import(&root.join("lib"), mtime)?;
    let Inode::Directory(mut lib) = lib else {
        return Err(PkgError::Usage(format!(
            "{}: not a directory",
            root.join("lib").display()
        )));
    };
    // Debian's package also ships firmware links and such under lib/; the kernel.tar carries
    // the modules only.
    lib.entries.retain(|name, _| name == "modules");
    tree.root
        .entries
        .insert("lib".into(), Inode::Directory(lib));
    let file = fs::File::create(out).map_err(|e| PkgError::io(out, e))?;
    let mut writer = BufWriter::new(file);
    write_tar(&tree, &mut writer, &TarOptions::default())
        .map_err(|e| PkgError::Usage(e.to_string()))?;
    writer.flush().map_err(|e| PkgError::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/a/virtio_net.ko: kernel/b/net_failover.ko kernel/c/failover.ko\n\
                       kernel/b/net_failover.ko: kernel/c/failover.ko\n\
                       kernel/c/failover.ko:\n\
                       kernel/d/crc32c-generic.ko.xz:\n\
                       kernel/e/unused.ko:\n";

    #[test]
    fn names_resolve_to_modules_builtins_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.dep"), DEP).unwrap();
        fs::write(
            dir.path().join("modules.builtin"),
            "kernel/fs/ext4/ext4.ko\n",
        )
        .unwrap();
        let r = |n: &str| resolve(dir.path(), n).unwrap();
        assert_eq!(
            r("crc32c_generic"),
            Resolved::Module("kernel/d/crc32c-generic.ko.xz".into())
        );
        assert_eq!(
            r("virtio-net"),
            Resolved::Module("kernel/a/virtio_net.ko".into())
        );
        assert_eq!(r("ext4"), Resolved::BuiltIn);
        assert_eq!(r("nope"), Resolved::Missing);
    }

    #[test]
    fn the_closure_follows_dependencies() {
        let got = closure(DEP, &["kernel/a/virtio_net.ko".into()]);
        let want: BTreeSet<String> = [
            "kernel/a/virtio_net.ko",
            "kernel/b/net_failover.ko",
            "kernel/c/failover.ko",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_newest_release_is_found() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(release(dir.path()), None);
        fs::create_dir(dir.path().join("boot")).unwrap();
        for f in ["vmlinuz-6.1.0-5-amd64", "vmlinux-6.1.0-9-s390x", "config-7"] {
            fs::write(dir.path().join("boot").join(f), b"").unwrap();
        }
        assert_eq!(release(dir.path()).as_deref(), Some("6.1.0-9-s390x"));
    }
}
