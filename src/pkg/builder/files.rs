//! The `files` builder: static files from the package folder, the same for every architecture.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use crate::pkg::manifest::FileEntry;
use crate::pkg::{Package, PkgError};
use crate::spec::{Loc, SpecError};
use crate::tree::{BlobFile, Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

/// A tree holding each entry's source at its path.
pub fn build(package: &Package, entries: &[FileEntry], mtime: i64) -> Result<Tree, PkgError> {
    let mut tree = Tree::new(mtime);
    add_files(&mut tree, package, entries, "builder.files", mtime)?;
    Ok(tree)
}

/// Put each entry's source at its path in `tree`; errors name `key[i]`.
pub fn add_files(
    tree: &mut Tree,
    package: &Package,
    entries: &[FileEntry],
    key: &str,
    mtime: i64,
) -> Result<(), PkgError> {
    let manifest = package.dir.join("build.yml");
    let dir_meta = Meta::root(0o755, mtime);
    for (i, e) in entries.iter().enumerate() {
        let source = package.dir.join(&e.source.value);
        let md = std::fs::metadata(&source).map_err(|err| {
            SpecError::at(
                &manifest,
                &e.source,
                format!("{key}[{i}].source"),
                format!("{}: {err}", source.display()),
            )
        })?;
        if !md.is_file() {
            return Err(SpecError::at(
                &manifest,
                &e.source,
                format!("{key}[{i}].source"),
                "not a regular file",
            )
            .into());
        }
        let mode = match &e.mode {
            Some(m) => m.value.0,
            None if md.permissions().mode() & 0o111 != 0 => 0o755,
            None => 0o644,
        };
        let path = TreePath::parse(&e.path.value).map_err(|err| {
            SpecError::at(
                &manifest,
                &e.path,
                format!("{key}[{i}].path"),
                err.to_string(),
            )
        })?;
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(mode, mtime),
            kind: LeafKind::File(Content::Extent {
                file: BlobFile::new(&source),
                offset: 0,
                len: md.len(),
            }),
        }));
        tree.insert(&path, leaf, &dir_meta).map_err(|err| {
            SpecError::at(
                &manifest,
                &e.path,
                format!("{key}[{i}].path"),
                err.to_string(),
            )
        })?;
    }
    Ok(())
}

/// Make a symbolic link at each path of `links` (target to link paths); errors name `key`.
pub fn add_links(
    tree: &mut Tree,
    package: &Package,
    links: &BTreeMap<String, Vec<Loc<String>>>,
    key: &str,
    mtime: i64,
) -> Result<(), PkgError> {
    let manifest = package.dir.join("build.yml");
    let dir_meta = Meta::root(0o755, mtime);
    for (target, paths) in links {
        for (i, p) in paths.iter().enumerate() {
            let at = |err: String| SpecError::at(&manifest, p, format!("{key}.{target}[{i}]"), err);
            let path = TreePath::parse(&p.value).map_err(|e| at(e.to_string()))?;
            let leaf = Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o777, mtime),
                kind: LeafKind::Symlink(target.into()),
            }));
            tree.insert(&path, leaf, &dir_meta)
                .map_err(|e| at(e.to_string()))?;
        }
    }
    Ok(())
}
