//! A readable, deterministic text rendering of a tree, one line per entry, parents first:
//! `path mode uid:gid kind details`. Tests compare dumps, so a failure shows what differs.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{Leaf, LeafKind, Meta, Tree, WalkEntry};

fn meta_text(meta: &Meta) -> String {
    let mut s = format!("{:04o} {}:{}", meta.mode, meta.uid, meta.gid);
    for (k, v) in &meta.xattrs {
        let _ = write!(s, " xattr:{k}={}", String::from_utf8_lossy(v));
    }
    s
}

/// Render `tree`. Regular files show their size and the start of their sha256; names sharing
/// a leaf show `link#N` (numbered in walk order). With `mtimes`, every line shows its mtime.
pub fn dump(tree: &Tree, mtimes: bool) -> String {
    let mut out = String::new();
    let mut groups: HashMap<*const Leaf, usize> = HashMap::new();
    let mut counts: HashMap<*const Leaf, usize> = HashMap::new();
    let _ = tree.walk::<()>(|e| {
        if let WalkEntry::Leaf { leaf, .. } = e {
            *counts.entry(Arc::as_ptr(leaf)).or_default() += 1;
        }
        Ok(())
    });
    let _ = tree.walk::<()>(|e| {
        let (path, meta) = match &e {
            WalkEntry::Directory { path, dir } => (path.to_string(), &dir.meta),
            WalkEntry::Leaf { path, leaf } => (path.to_string(), &leaf.meta),
        };
        let _ = write!(out, "/{path} {}", meta_text(meta));
        if mtimes {
            let _ = write!(out, " t={}", meta.mtime);
        }
        match e {
            WalkEntry::Directory { .. } => out.push_str(" dir"),
            WalkEntry::Leaf { leaf, .. } => {
                match &leaf.kind {
                    LeafKind::File(c) => {
                        let digest = c
                            .read_to_vec()
                            .map(|b| hex::encode(&Sha256::digest(&b)[..6]))
                            .unwrap_or_else(|e| format!("unreadable({e})"));
                        let _ = write!(out, " file {} {digest}", c.len());
                    }
                    LeafKind::Symlink(t) => {
                        let _ = write!(out, " link -> {}", t.to_string_lossy());
                    }
                    LeafKind::CharDevice { major, minor } => {
                        let _ = write!(out, " chr {major}:{minor}");
                    }
                    LeafKind::BlockDevice { major, minor } => {
                        let _ = write!(out, " blk {major}:{minor}");
                    }
                    LeafKind::Fifo => out.push_str(" fifo"),
                }
                let key = Arc::as_ptr(leaf);
                if counts.get(&key).copied().unwrap_or(0) > 1 {
                    let n = groups.len() + 1;
                    let id = *groups.entry(key).or_insert(n);
                    let _ = write!(out, " link#{id}");
                }
            }
        }
        out.push('\n');
        Ok(())
    });
    out
}
