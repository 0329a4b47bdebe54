//! Laying one tree over another: how init images stack at `/` and how image trees are placed
//! at a bundle path. Later entries win; directories present on both sides merge, taking the
//! upper directory's metadata.

use super::{Directory, Inode};

/// Merge `upper` into `lower`: entries of `upper` replace those of `lower` with the same name,
/// except that two directories merge recursively (the upper one's metadata wins).
pub fn overlay_dir(lower: &mut Directory, upper: Directory) {
    lower.meta = upper.meta;
    for (name, inode) in upper.entries {
        match (lower.entries.get_mut(&name), inode) {
            (Some(Inode::Directory(low)), Inode::Directory(up)) => overlay_dir(low, *up),
            (_, inode) => {
                lower.entries.insert(name, inode);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Content, Leaf, LeafKind, Meta, Tree, TreePath};
    use super::*;
    use std::sync::Arc;

    fn leaf(text: &str) -> Inode {
        Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::File(Content::inline(text.as_bytes().to_vec())),
        }))
    }

    fn text_at(tree: &Tree, path: &str) -> String {
        match tree.get(&TreePath::parse(path).unwrap()) {
            Some(Inode::Leaf(l)) => match &l.kind {
                LeafKind::File(c) => String::from_utf8(c.read_to_vec().unwrap()).unwrap(),
                other => format!("{other:?}"),
            },
            Some(Inode::Directory(_)) => "dir".into(),
            None => "absent".into(),
        }
    }

    #[test]
    fn later_files_win_and_directories_merge() {
        let meta = Meta::root(0o755, 0);
        let mut lower = Tree::new(0);
        lower
            .insert(&TreePath::parse("etc/a").unwrap(), leaf("low-a"), &meta)
            .unwrap();
        lower
            .insert(&TreePath::parse("etc/b").unwrap(), leaf("low-b"), &meta)
            .unwrap();
        lower
            .insert(&TreePath::parse("x/y").unwrap(), leaf("dir-child"), &meta)
            .unwrap();
        let mut upper = Tree::new(0);
        upper
            .insert(&TreePath::parse("etc/b").unwrap(), leaf("up-b"), &meta)
            .unwrap();
        upper
            .insert(&TreePath::parse("x").unwrap(), leaf("file-x"), &meta)
            .unwrap();
        upper.root.meta.mode = 0o700;
        overlay_dir(&mut lower.root, upper.root);
        assert_eq!(text_at(&lower, "etc/a"), "low-a");
        assert_eq!(text_at(&lower, "etc/b"), "up-b");
        assert_eq!(text_at(&lower, "x"), "file-x");
        assert_eq!(lower.root.meta.mode, 0o700);
    }
}
