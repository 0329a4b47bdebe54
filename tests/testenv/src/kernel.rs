//! Debian kernels for fixtures: the linux-image package downloaded (never installed), unpacked,
//! with `modules.dep` made by depmod, optionally cut down to a module set and its dependencies.
//! Kept under a cache directory shared by every test of a run (guarded by a file lock).

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// An unpacked Debian kernel.
#[derive(Debug, Clone)]
pub struct DebianKernel {
    /// Kernel release, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The kernel image (bzImage / Image).
    pub image: PathBuf,
    /// `System.map`.
    pub system_map: PathBuf,
    /// The kernel configuration.
    pub config: PathBuf,
    /// The root holding `lib/modules/RELEASE` (full tree, with modules.dep).
    pub modules_root: PathBuf,
}

/// Which modules a kernel fixture carries.
#[derive(Debug, Clone)]
pub enum ModuleSet {
    /// Every module of the package (~390 MiB on amd64).
    All,
    /// These modules and everything they depend on.
    Closure(Vec<String>),
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The Debian architecture name for `arch` (amd64, arm64, s390x).
fn package_name(arch: &str) -> Result<String> {
    let meta = format!("linux-image-{arch}");
    let meta_arg = if arch == host_debian_arch()? {
        meta.clone()
    } else {
        format!("{meta}:{arch}")
    };
    let deps = run(Command::new("apt-cache").args(["depends", &meta_arg]))?;
    for line in deps.lines() {
        let line = line.trim();
        if let Some(dep) = line.strip_prefix("Depends: ")
            && dep.starts_with("linux-image-6")
        {
            return Ok(dep.split(':').next().unwrap_or(dep).to_string());
        }
    }
    bail!("apt-cache found no kernel package behind {meta_arg} (run apt-get update)")
}

fn host_debian_arch() -> Result<String> {
    Ok(run(Command::new("dpkg").arg("--print-architecture"))?
        .trim()
        .to_string())
}

/// Download and unpack the newest Debian 12 kernel for `arch` under `cache`, once per cache.
pub fn debian_kernel(cache: &Path, arch: &str) -> Result<DebianKernel> {
    fs::create_dir_all(cache)?;
    let lock = fs::File::create(cache.join(format!(".kernel-{arch}.lock")))?;
    lock.lock()?;
    let package = package_name(arch)?;
    let release = package
        .strip_prefix("linux-image-")
        .context("unexpected kernel package name")?
        .to_string();
    let root = cache.join(format!("kernel-{release}"));
    let done = root.join(".complete");
    if !done.exists() {
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        let download = cache.join(format!("download-{arch}"));
        fs::create_dir_all(&download)?;
        let spec = if arch == host_debian_arch()? {
            package.clone()
        } else {
            format!("{package}:{arch}")
        };
        run(Command::new("apt-get")
            .args(["download", "-q", &spec])
            .current_dir(&download))?;
        let deb = fs::read_dir(&download)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with(&package))
            })
            .context("apt-get download left no .deb")?;
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
        run(Command::new("depmod").arg("-b").arg(&root).arg(&release))?;
        fs::remove_dir_all(&download)?;
        fs::write(&done, b"")?;
    }
    let image = if root.join(format!("boot/vmlinuz-{release}")).exists() {
        root.join(format!("boot/vmlinuz-{release}"))
    } else {
        root.join(format!("boot/vmlinux-{release}"))
    };
    Ok(DebianKernel {
        system_map: root.join(format!("boot/System.map-{release}")),
        config: root.join(format!("boot/config-{release}")),
        modules_root: root,
        image,
        release,
    })
}

impl DebianKernel {
    /// A root holding `lib/modules/RELEASE` with just `set` (made once under `cache`).
    pub fn modules(&self, cache: &Path, set: &ModuleSet) -> Result<PathBuf> {
        let ModuleSet::Closure(wanted) = set else {
            return Ok(self.modules_root.clone());
        };
        let key = wanted.join("+");
        let root = cache.join(format!("modules-{}-{}", self.release, short_hash(&key)));
        let lock = fs::File::create(cache.join(format!(".modules-{}.lock", self.release)))?;
        lock.lock()?;
        if root.join(".complete").exists() {
            return Ok(root);
        }
        if root.exists() {
            fs::remove_dir_all(&root)?;
        }
        let src = self.modules_root.join("lib/modules").join(&self.release);
        let dst = root.join("lib/modules").join(&self.release);
        fs::create_dir_all(&dst)?;
        for file in closure(&src, wanted)? {
            let to = dst.join(&file);
            if let Some(parent) = to.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::copy(src.join(&file), &to)?;
        }
        for meta in [
            "modules.builtin",
            "modules.builtin.modinfo",
            "modules.order",
        ] {
            if src.join(meta).exists() {
                fs::copy(src.join(meta), dst.join(meta))?;
            }
        }
        run(Command::new("depmod")
            .arg("-b")
            .arg(&root)
            .arg(&self.release))?;
        fs::write(root.join(".complete"), b"")?;
        Ok(root)
    }
}

/// Relative paths of the modules named in `wanted` and of all they depend on.
fn closure(modules_dir: &Path, wanted: &[String]) -> Result<BTreeSet<String>> {
    let dep = fs::read_to_string(modules_dir.join("modules.dep"))
        .with_context(|| format!("{}: reading modules.dep", modules_dir.display()))?;
    let mut deps = std::collections::BTreeMap::new();
    let mut by_name = std::collections::BTreeMap::new();
    for line in dep.lines() {
        let Some((module, rest)) = line.split_once(':') else {
            continue;
        };
        let name = Path::new(module)
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .replace('-', "_")
            })
            .unwrap_or_default();
        by_name.insert(name, module.to_string());
        deps.insert(
            module.to_string(),
            rest.split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        );
    }
    let builtin = fs::read_to_string(modules_dir.join("modules.builtin")).unwrap_or_default();
    let is_builtin = |key: &str| {
        builtin.lines().any(|l| {
            Path::new(l).file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .split('.')
                    .next()
                    .unwrap_or("")
                    .replace('-', "_")
                    == key
            })
        })
    };
    let mut out = BTreeSet::new();
    let mut queue = VecDeque::new();
    for w in wanted {
        let key = w.replace('-', "_");
        match by_name.get(&key) {
            Some(path) => queue.push_back(path.clone()),
            // Built into this architecture's kernel: nothing to carry.
            None if is_builtin(&key) => {}
            None => bail!("module {w} is not in {}", modules_dir.display()),
        }
    }
    while let Some(m) = queue.pop_front() {
        if out.insert(m.clone()) {
            queue.extend(deps.get(&m).into_iter().flatten().cloned());
        }
    }
    Ok(out)
}

fn short_hash(s: &str) -> String {
    // FNV-1a: a stable, dependency-free name for a module set.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closure_follows_dependencies_and_normalises_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("modules.dep"),
            "kernel/a/virtio_net.ko: kernel/b/net_failover.ko kernel/c/failover.ko\n\
             kernel/b/net_failover.ko: kernel/c/failover.ko\n\
             kernel/c/failover.ko:\n\
             kernel/d/crc32c-generic.ko:\n\
             kernel/e/unused.ko:\n",
        )
        .unwrap();
        let got = closure(dir.path(), &["virtio-net".into(), "crc32c_generic".into()]).unwrap();
        let want: BTreeSet<String> = [
            "kernel/a/virtio_net.ko",
            "kernel/b/net_failover.ko",
            "kernel/c/failover.ko",
            "kernel/d/crc32c-generic.ko",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(got, want);
        let err = closure(dir.path(), &["nope".into()]).unwrap_err();
        assert!(err.to_string().contains("module nope"), "{err}");
    }
}
