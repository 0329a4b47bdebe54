//! Laying one tree over another: how init images stack at `/` and how image trees are placed
//! at a bundle path. Later entries win; directories present on both sides merge, taking the
//! upper directory's metadata.

use std::collections::btree_map;
use std::ffi::OsString;

use super::{Directory, Inode};

/// Merge `upper` into `lower`: entries of `upper` replace those of `lower` with the same name,
/// except that two directories merge recursively (the upper one's metadata wins). The merge
/// keeps its own stack, so a deep tree does not deepen the thread's.
pub fn overlay_dir(lower: &mut Directory, mut upper: Directory) {
    /// Two directories being merged: the lower one, taken out of its parent, and what is left
    /// of the upper one.
    struct Merging {
        name: Option<OsString>,
        lower: Directory,
        left: btree_map::IntoIter<OsString, Inode>,
    }
    let mut root = std::mem::replace(lower, Directory::new(upper.meta.clone()));
    root.meta = upper.meta.clone();
    let mut open = vec![Merging {
        name: None,
        lower: root,
        left: std::mem::take(&mut upper.entries).into_iter(),
    }];
    while let Some(top) = open.last_mut() {
        match top.left.next() {
            Some((name, Inode::Directory(mut up))) => match top.lower.entries.remove(&name) {
                Some(Inode::Directory(mut low)) => {
                    low.meta = up.meta.clone();
                    open.push(Merging {
                        name: Some(name),
                        lower: *low,
                        left: std::mem::take(&mut up.entries).into_iter(),
                    });
                }
                _ => {
                    top.lower.entries.insert(name, Inode::Directory(up));
                }
            },
            Some((name, inode)) => {
                top.lower.entries.insert(name, inode);
            }
            None => {
                let Some(done) = open.pop() else { break };
                match (open.last_mut(), done.name) {
                    (Some(parent), Some(name)) => {
                        parent
                            .lower
                            .entries
                            .insert(name, Inode::Directory(Box::new(done.lower)));
                    }
                    _ => {
                        *lower = done.lower;
                        return;
                    }
                }
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

    #[test]
    fn deep_directories_merge_on_a_small_stack() {
        let worker = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let meta = Meta::root(0o755, 0);
                let mut deep = TreePath::root();
                for _ in 0..50_000 {
                    deep.push("d");
                }
                let mut lower = Tree::new(0);
                let mut upper = Tree::new(0);
                let (mut low_file, mut up_file) = (deep.clone(), deep.clone());
                low_file.push("low");
                up_file.push("up");
                lower.insert(&low_file, leaf("l"), &meta).unwrap();
                upper.insert(&up_file, leaf("u"), &meta).unwrap();
                upper.get_dir_mut(&deep).unwrap().meta.mode = 0o700;
                overlay_dir(&mut lower.root, upper.root.clone());
                let bottom = lower.get_dir(&deep).unwrap();
                (
                    bottom.entries.keys().cloned().collect::<Vec<_>>(),
                    bottom.meta.mode,
                )
            })
            .unwrap();
        let (names, mode) = worker.join().unwrap();
        assert_eq!(names, ["low", "up"]);
        assert_eq!(mode, 0o700);
    }
}
