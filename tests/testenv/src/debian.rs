//! Root filesystems from Debian packages for fixtures: the packages and their dependencies
//! downloaded with apt-get (never installed) and unpacked with dpkg-deb, once per cache.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `packages` and everything they depend on (no recommends), as apt sees them.
fn closure(packages: &[&str]) -> Result<BTreeSet<String>> {
    let text = run(Command::new("apt-cache")
        .args([
            "depends",
            "--recurse",
            "--no-recommends",
            "--no-suggests",
            "--no-conflicts",
            "--no-breaks",
            "--no-replaces",
            "--no-enhances",
        ])
        .args(packages))?;
    // With foreign architectures configured apt lists every architecture's variant of a
    // dependency; keep those of the architecture asked for (the host's unless `:ARCH` is given).
    let arch = packages
        .first()
        .and_then(|p| p.split_once(':'))
        .map(|(_, a)| a.to_string());
    Ok(text
        .lines()
        .filter(|l| !l.starts_with(' ') && !l.starts_with('<'))
        .map(|l| l.trim().to_string())
        .filter(|l| match (&arch, l.split_once(':')) {
            (None, None) => true,
            (Some(want), Some((_, a))) => a == want,
            (Some(_), None) | (None, Some(_)) => false,
        })
        .collect())
}

/// A directory holding `packages` (with dependencies) unpacked, made once under `cache`.
pub fn unpacked(cache: &Path, name: &str, packages: &[&str]) -> Result<PathBuf> {
    fs::create_dir_all(cache)?;
    let root = cache.join(format!("debian-{name}"));
    let lock = fs::File::create(cache.join(format!(".debian-{name}.lock")))?;
    lock.lock()?;
    if root.join(".complete").exists() {
        return Ok(root);
    }
    if root.exists() {
        fs::remove_dir_all(&root)?;
    }
    let debs = cache.join(format!("debs-{name}"));
    fs::create_dir_all(&debs)?;
    let wanted: Vec<String> = closure(packages)?.into_iter().collect();
    run(Command::new("apt-get")
        .args(["download", "-q"])
        .args(&wanted)
        .current_dir(&debs))?;
    fs::create_dir_all(&root)?;
    for deb in fs::read_dir(&debs)? {
        let deb = deb?.path();
        run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root))?;
    }
    fs::remove_dir_all(&debs)?;
    fs::write(root.join(".complete"), b"")?;
    Ok(root)
}
