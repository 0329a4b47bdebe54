//! A package's tag: the git tree hash of its folder (and extra sources) when they are
//! committed, with `-dirty-HASH` (a hash of the working files) when they have uncommitted
//! changes, and the content hash alone outside a git checkout. The same sources give the same
//! tag, so `@pkg:` references find the image a build made before.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::PkgError;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Hash every file under `roots` (sorted paths, kinds, executable bits and contents).
pub fn content_hash(roots: &[PathBuf]) -> Result<String, PkgError> {
    let mut hasher = Sha256::new();
    for root in roots {
        let mut files = Vec::new();
        let base = if root.is_dir() {
            collect(root, root, &mut files)?;
            root.as_path()
        } else {
            // A single file stands for itself, under its own name.
            files.push(PathBuf::from(root.file_name().unwrap_or_default()));
            root.parent().unwrap_or(Path::new("."))
        };
        files.sort();
        for rel in files {
            let path = base.join(&rel);
            let md = std::fs::symlink_metadata(&path).map_err(|e| PkgError::io(&path, e))?;
            hasher.update(rel.to_string_lossy().as_bytes());
            hasher.update([0]);
            if md.file_type().is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| PkgError::io(&path, e))?;
                hasher.update(b"l");
                hasher.update(target.to_string_lossy().as_bytes());
            } else {
                use std::os::unix::fs::PermissionsExt;
                hasher.update(if md.permissions().mode() & 0o111 != 0 {
                    b"x"
                } else {
                    b"f"
                });
                hasher.update(std::fs::read(&path).map_err(|e| PkgError::io(&path, e))?);
            }
            hasher.update([0]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), PkgError> {
    for entry in std::fs::read_dir(dir).map_err(|e| PkgError::io(dir, e))? {
        let entry = entry.map_err(|e| PkgError::io(dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| PkgError::io(&path, e))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

/// The content tag of the sources `roots` (the package folder first).
pub fn source_hash(roots: &[PathBuf]) -> Result<String, PkgError> {
    if roots.is_empty() {
        return Err(PkgError::Usage("a package needs a source folder".into()));
    }
    let mut trees = Vec::new();
    let mut dirty = false;
    for root in roots {
        // A folder is asked about from inside, a single file (a lock file, say) from its folder.
        let (dir, spec) = match (root.is_dir(), root.parent(), root.file_name()) {
            (false, Some(parent), Some(name)) => (parent, name.to_string_lossy().into_owned()),
            _ => (root.as_path(), ".".to_string()),
        };
        let tree = git(dir, &["rev-parse", &format!("HEAD:./{spec}")]);
        let status = git(
            dir,
            &[
                "status",
                "--porcelain",
                "--untracked-files=all",
                "--",
                &spec,
            ],
        );
        match (tree, status) {
            (Some(tree), Some(status)) => {
                dirty |= !status.is_empty();
                trees.push(tree);
            }
            // Not a git checkout (or never committed): the content decides alone.
            _ => return Ok(content_hash(roots)?[..40].to_string()),
        }
    }
    let tree = if trees.len() == 1 {
        trees.remove(0)
    } else {
        hex::encode(Sha256::digest(trees.join("\n").as_bytes()))[..40].to_string()
    };
    if dirty {
        Ok(format!("{tree}-dirty-{}", &content_hash(roots)?[..12]))
    } else {
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) {
        let ok = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@t",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args)
            .output()
            .unwrap()
            .status
            .success();
        assert!(ok, "git {args:?}");
    }

    #[test]
    fn clean_dirty_and_outside_git() {
        let dir = tempfile::tempdir().unwrap();
        let pkg = dir.path().join("pkg/hello");
        std::fs::create_dir_all(&pkg).unwrap();
        std::fs::write(pkg.join("build.yml"), "image: hello\n").unwrap();
        let outside = source_hash(std::slice::from_ref(&pkg)).unwrap();
        assert_eq!(outside.len(), 40);
        assert_eq!(
            outside,
            source_hash(std::slice::from_ref(&pkg)).unwrap(),
            "stable"
        );
        sh(dir.path(), &["init", "-q"]);
        sh(dir.path(), &["add", "."]);
        sh(dir.path(), &["commit", "-q", "-m", "x"]);
        let clean = source_hash(std::slice::from_ref(&pkg)).unwrap();
        assert_eq!(clean.len(), 40);
        assert!(!clean.contains("dirty"));
        std::fs::write(pkg.join("extra"), "x").unwrap();
        let dirty = source_hash(std::slice::from_ref(&pkg)).unwrap();
        assert!(dirty.starts_with(&format!("{clean}-dirty-")), "{dirty}");
        std::fs::write(pkg.join("extra"), "y").unwrap();
        let dirtier = source_hash(std::slice::from_ref(&pkg)).unwrap();
        assert_ne!(dirty, dirtier, "the dirty hash follows the content");
        std::fs::remove_file(pkg.join("extra")).unwrap();
        assert_eq!(source_hash(std::slice::from_ref(&pkg)).unwrap(), clean);
        // A single file among the sources: committed, then changed.
        let lock = dir.path().join("Cargo.lock");
        std::fs::write(&lock, "v1").unwrap();
        sh(dir.path(), &["add", "."]);
        sh(dir.path(), &["commit", "-q", "-m", "lock"]);
        let both = source_hash(&[pkg.clone(), lock.clone()]).unwrap();
        assert!(!both.contains("dirty") && both != clean, "{both}");
        std::fs::write(&lock, "v2").unwrap();
        let changed = source_hash(&[pkg, lock]).unwrap();
        assert!(changed.starts_with(&format!("{both}-dirty-")), "{changed}");
    }
}
