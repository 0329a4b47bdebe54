//! The in-memory filesystem tree: the one type that layers are flattened into, the root
//! filesystem is assembled in, and output writers read from.
//!
//! The tree holds metadata only. File bodies stay where they came from (an uncompressed layer
//! tar in the cache, or a small inline buffer), so a tree for a 400 MB image costs a few MB.
//! Hardlinks are leaves shared through [`Arc`]: two names pointing at the same [`Leaf`].

mod content;
mod dump;
mod from_host;
mod overlay;
mod path;

use std::collections::{BTreeMap, btree_map};
use std::ffi::{OsStr, OsString};
use std::sync::Arc;

pub use content::{BlobFile, Content};
pub use dump::dump;
pub use from_host::{
    FromHostError, HostImport, HostSource, import_host_path, import_host_path_at, resolve_source,
};
pub use overlay::overlay_dir;
pub use path::{TreePath, TreePathError, abbreviate};

/// Ownership, permissions, time and extended attributes of a tree entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits including setuid, setgid and sticky (`0o7777` mask; no file type bits).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time in seconds since the epoch.
    pub mtime: i64,
    /// Extended attributes, sorted by name.
    pub xattrs: BTreeMap<String, Vec<u8>>,
}

impl Meta {
    /// Metadata owned by root with the given permission bits and mtime.
    pub fn root(mode: u32, mtime: i64) -> Self {
        Meta {
            mode: mode & 0o7777,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: BTreeMap::new(),
        }
    }
}

/// What a non-directory entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafKind {
    /// A regular file and where its bytes are.
    File(Content),
    /// A symbolic link and its target, kept verbatim.
    Symlink(OsString),
    /// A character device.
    CharDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A block device.
    BlockDevice {
        /// Device major number.
        major: u32,
        /// Device minor number.
        minor: u32,
    },
    /// A named pipe.
    Fifo,
}

/// A non-directory entry. Several names may share one leaf: that is a hardlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Metadata shared by every name of this leaf.
    pub meta: Meta,
    /// The kind of entry and its payload.
    pub kind: LeafKind,
}

/// A directory and its entries, sorted by name (byte order).
///
/// Cloning and dropping do not recurse (a tree may be thousands of directories deep, and
/// builds run on threads with small stacks); [`Tree::walk`] does not either.
#[derive(Debug, PartialEq, Eq)]
pub struct Directory {
    /// The directory's own metadata.
    pub meta: Meta,
    /// Entries by name.
    pub entries: BTreeMap<OsString, Inode>,
}

/// One entry of a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inode {
    /// A subdirectory.
    Directory(Box<Directory>),
    /// Anything else; shared between names when hardlinked.
    Leaf(Arc<Leaf>),
}

impl Directory {
    /// An empty directory with the given metadata.
    pub fn new(meta: Meta) -> Self {
        Directory {
            meta,
            entries: BTreeMap::new(),
        }
    }

    /// The entry called `name`, if any.
    pub fn get(&self, name: &OsStr) -> Option<&Inode> {
        self.entries.get(name)
    }

    /// The subdirectory called `name`, if it exists and is a directory.
    pub fn get_dir(&self, name: &OsStr) -> Option<&Directory> {
        match self.entries.get(name) {
            Some(Inode::Directory(d)) => Some(d),
            _ => None,
        }
    }

    /// The subdirectory called `name` for changing, if it exists and is a directory.
    pub fn get_dir_mut(&mut self, name: &OsStr) -> Option<&mut Directory> {
        match self.entries.get_mut(name) {
            Some(Inode::Directory(d)) => Some(d),
            _ => None,
        }
    }
}

/// A whole filesystem tree rooted at `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// The root directory.
    pub root: Directory,
}

/// Why a tree operation could not be done.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    /// A path component that must be a directory is something else.
    #[error("{path}: a parent is not a directory")]
    NotADirectory {
        /// The path being looked up or created.
        path: String,
    },
    /// The path does not exist.
    #[error("{path}: no such file or directory")]
    NotFound {
        /// The path being looked up.
        path: String,
    },
    /// The root itself cannot be replaced or removed.
    #[error("the root directory cannot be replaced")]
    Root,
}

/// One entry met by [`Tree::walk`], parents before children, names in byte order.
#[derive(Debug)]
pub enum WalkEntry<'a> {
    /// A directory (the root included, with an empty path).
    Directory {
        /// Path relative to the root, without a leading slash.
        path: &'a TreePath,
        /// The directory.
        dir: &'a Directory,
    },
    /// A non-directory entry.
    Leaf {
        /// Path relative to the root, without a leading slash.
        path: &'a TreePath,
        /// The leaf, shared with its other names when hardlinked.
        leaf: &'a Arc<Leaf>,
    },
}

impl Tree {
    /// An empty tree whose root is `0755 root:root` with the given mtime.
    pub fn new(mtime: i64) -> Self {
        Tree {
            root: Directory::new(Meta::root(0o755, mtime)),
        }
    }

    /// The entry at `path`, if any. The empty path is not an entry (use `root`).
    pub fn get(&self, path: &TreePath) -> Option<&Inode> {
        let (parent, name) = path.split_last()?;
        let mut dir = &self.root;
        for component in parent.components() {
            dir = dir.get_dir(component)?;
        }
        dir.get(name)
    }

    /// The directory at `path` (the root for the empty path).
    pub fn get_dir(&self, path: &TreePath) -> Option<&Directory> {
        let mut dir = &self.root;
        for component in path.components() {
            dir = dir.get_dir(component)?;
        }
        Some(dir)
    }

    /// The directory at `path` for changing (the root for the empty path).
    pub fn get_dir_mut(&mut self, path: &TreePath) -> Option<&mut Directory> {
        let mut dir = &mut self.root;
        for component in path.components() {
            dir = dir.get_dir_mut(component)?;
        }
        Some(dir)
    }

    /// The directory at `path`, created with `meta` (and its missing parents too) if absent.
    /// Fails if any component exists and is not a directory.
    pub fn mkdir_all(&mut self, path: &TreePath, meta: &Meta) -> Result<&mut Directory, TreeError> {
        let mut dir = &mut self.root;
        for component in path.components() {
            let entry = dir
                .entries
                .entry(component.to_owned())
                .or_insert_with(|| Inode::Directory(Box::new(Directory::new(meta.clone()))));
            dir = match entry {
                Inode::Directory(d) => d,
                Inode::Leaf(_) => {
                    return Err(TreeError::NotADirectory {
                        path: path.to_string(),
                    });
                }
            };
        }
        Ok(dir)
    }

    /// Put `inode` at `path`, replacing whatever was there. Missing parents are created with
    /// `parent_meta`.
    pub fn insert(
        &mut self,
        path: &TreePath,
        inode: Inode,
        parent_meta: &Meta,
    ) -> Result<Option<Inode>, TreeError> {
        let Some((parent, name)) = path.split_last() else {
            return Err(TreeError::Root);
        };
        let dir = self
            .mkdir_all(&parent, parent_meta)
            .map_err(|_| TreeError::NotADirectory {
                path: path.to_string(),
            })?;
        Ok(dir.entries.insert(name.to_owned(), inode))
    }

    /// Remove the entry at `path` and return it; `None` when there was none.
    pub fn remove(&mut self, path: &TreePath) -> Result<Option<Inode>, TreeError> {
        let Some((parent, name)) = path.split_last() else {
            return Err(TreeError::Root);
        };
        Ok(self
            .get_dir_mut(&parent)
            .and_then(|dir| dir.entries.remove(name)))
    }

    /// Visit every entry, parents before children, siblings in byte order of their names.
    pub fn walk<E>(&self, mut visit: impl FnMut(WalkEntry<'_>) -> Result<(), E>) -> Result<(), E> {
        let mut path = TreePath::root();
        visit(WalkEntry::Directory {
            path: &path,
            dir: &self.root,
        })?;
        // One iterator per directory being listed: the stack is as deep as the tree, on the
        // heap.
        let mut open: Vec<btree_map::Iter<'_, OsString, Inode>> = vec![self.root.entries.iter()];
        while let Some(listing) = open.last_mut() {
            match listing.next() {
                None => {
                    open.pop();
                    path.pop();
                }
                Some((name, Inode::Leaf(leaf))) => {
                    path.push(name);
                    let result = visit(WalkEntry::Leaf { path: &path, leaf });
                    path.pop();
                    result?;
                }
                Some((name, Inode::Directory(sub))) => {
                    path.push(name);
                    visit(WalkEntry::Directory {
                        path: &path,
                        dir: sub,
                    })?;
                    open.push(sub.entries.iter());
                }
            }
        }
        Ok(())
    }
}

impl Clone for Directory {
    fn clone(&self) -> Self {
        /// A directory being copied: the source's remaining entries and the copy so far.
        struct Copying<'a> {
            name: Option<&'a OsString>,
            left: btree_map::Iter<'a, OsString, Inode>,
            copy: Directory,
        }
        let mut open = vec![Copying {
            name: None,
            left: self.entries.iter(),
            copy: Directory::new(self.meta.clone()),
        }];
        loop {
            let Some(top) = open.last_mut() else {
                // The root's frame returns below; an empty stack is not reached.
                return Directory::new(self.meta.clone());
            };
            match top.left.next() {
                Some((name, Inode::Leaf(leaf))) => {
                    top.copy
                        .entries
                        .insert(name.clone(), Inode::Leaf(leaf.clone()));
                }
                Some((name, Inode::Directory(sub))) => open.push(Copying {
                    name: Some(name),
                    left: sub.entries.iter(),
                    copy: Directory::new(sub.meta.clone()),
                }),
                None => {
                    let Some(done) = open.pop() else {
                        continue;
                    };
                    match (open.last_mut(), done.name) {
                        (Some(parent), Some(name)) => {
                            parent
                                .copy
                                .entries
                                .insert(name.clone(), Inode::Directory(Box::new(done.copy)));
                        }
                        _ => return done.copy,
                    }
                }
            }
        }
    }
}

impl Drop for Directory {
    fn drop(&mut self) {
        // Children's entries are taken out before the children drop, so no drop recurses.
        let mut pending = vec![std::mem::take(&mut self.entries)];
        while let Some(entries) = pending.pop() {
            for (_, inode) in entries {
                if let Inode::Directory(mut sub) = inode
                    && !sub.entries.is_empty()
                {
                    pending.push(std::mem::take(&mut sub.entries));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(bytes: &[u8]) -> Inode {
        Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::File(Content::inline(bytes.to_vec())),
        }))
    }

    fn p(s: &str) -> TreePath {
        TreePath::parse(s).expect("valid test path")
    }

    #[test]
    fn insert_creates_parents_and_walk_is_sorted() {
        let mut tree = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        tree.insert(&p("b/z"), file(b"z"), &meta).unwrap();
        tree.insert(&p("a"), file(b"a"), &meta).unwrap();
        tree.insert(&p("b/c/d"), file(b"d"), &meta).unwrap();
        let mut seen = Vec::new();
        tree.walk::<()>(|e| {
            seen.push(match e {
                WalkEntry::Directory { path, .. } => format!("{path}/"),
                WalkEntry::Leaf { path, .. } => path.to_string(),
            });
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, ["/", "a", "b/", "b/c/", "b/c/d", "b/z"]);
    }

    #[test]
    fn insert_below_a_file_fails() {
        let mut tree = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        tree.insert(&p("f"), file(b""), &meta).unwrap();
        assert_eq!(
            tree.insert(&p("f/g"), file(b""), &meta),
            Err(TreeError::NotADirectory { path: "f/g".into() })
        );
    }

    #[test]
    fn remove_returns_the_entry() {
        let mut tree = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        tree.insert(&p("x/y"), file(b"y"), &meta).unwrap();
        assert!(tree.remove(&p("x/y")).unwrap().is_some());
        assert!(tree.remove(&p("x/y")).unwrap().is_none());
        assert!(tree.get_dir(&p("x")).unwrap().entries.is_empty());
    }

    /// A chain of `depth` directories `d/d/.../d` with a file at the bottom, built without
    /// [`TreePath::parse`] (which refuses paths longer than PATH_MAX).
    fn chain(depth: usize) -> Tree {
        let mut tree = Tree::new(0);
        let mut path = TreePath::root();
        for _ in 0..depth {
            path.push("d");
        }
        let meta = Meta::root(0o755, 0);
        tree.mkdir_all(&path, &meta).unwrap();
        path.push("f");
        tree.insert(&path, file(b"bottom"), &meta).unwrap();
        tree
    }

    #[test]
    fn deep_trees_walk_clone_and_drop_on_a_small_stack() {
        // 100,000 levels on a 256 KiB stack: recursion needs about 100 bytes a level at the
        // very least, so any recursive walk, clone or drop would overflow here.
        let worker = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(|| {
                let tree = chain(100_000);
                let mut dirs = 0;
                let mut deepest = 0;
                tree.walk::<()>(|e| {
                    match e {
                        WalkEntry::Directory { .. } => dirs += 1,
                        WalkEntry::Leaf { path, .. } => deepest = path.depth(),
                    }
                    Ok(())
                })
                .unwrap();
                let copy = tree.clone();
                drop(tree);
                let mut leaves = 0;
                copy.walk::<()>(|e| {
                    if let WalkEntry::Leaf { .. } = e {
                        leaves += 1;
                    }
                    Ok(())
                })
                .unwrap();
                drop(copy);
                (dirs, deepest, leaves)
            })
            .unwrap();
        assert_eq!(worker.join().unwrap(), (100_001, 100_001, 1));
    }

    #[test]
    fn clones_are_equal_and_share_leaves() {
        let mut tree = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        tree.insert(&p("a/b/c"), file(b"c"), &meta).unwrap();
        tree.insert(&p("a/z"), file(b"z"), &meta).unwrap();
        tree.insert(&p("top"), file(b"t"), &meta).unwrap();
        tree.get_dir_mut(&p("a/b")).unwrap().meta.mode = 0o700;
        let copy = tree.clone();
        assert_eq!(copy, tree);
        let (Some(Inode::Leaf(x)), Some(Inode::Leaf(y))) =
            (tree.get(&p("a/b/c")), copy.get(&p("a/b/c")))
        else {
            panic!("not leaves");
        };
        assert!(Arc::ptr_eq(x, y));
        assert_eq!(copy.get_dir(&p("a/b")).unwrap().meta.mode, 0o700);
    }
}
