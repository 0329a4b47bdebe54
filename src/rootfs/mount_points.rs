//! Mount points made ahead of time, for root filesystems that are read-only from the first
//! moment (a squashfs root): the system's own (`/proc`, `/sys`, `/dev`, `/run`, `/tmp`,
//! `/var`, which PID 1 mounts on), and those every read-only container's `config.json` mounts
//! on inside its `rootfs/`. On a tmpfs root the init and the runtime make them as they go; on
//! a read-only one they must already be there.

use std::sync::Arc;

use crate::tree::{Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

/// The directories PID 1 mounts the system's filesystems on, with their modes.
const SYSTEM: [(&str, u32); 6] = [
    ("proc", 0o555),
    ("sys", 0o555),
    ("dev", 0o755),
    ("run", 0o755),
    ("tmp", 0o1777),
    ("var", 0o755),
];

/// Whether some component of `path` in `tree` exists and is not a directory (a symlink, a
/// file): a mount point there is the runtime's business, not ours.
fn blocked(tree: &Tree, path: &TreePath) -> bool {
    let mut at = TreePath::default();
    for c in path.components() {
        at = at.join(&TreePath::parse(c).unwrap_or_default());
        match tree.get(&at) {
            None => return false,
            Some(Inode::Leaf(_)) => return true,
            Some(Inode::Directory(_)) => {}
        }
    }
    false
}

/// Make an empty directory (or, with `file`, an empty file) at `path` unless something is
/// there; returns whether it made one.
fn make(tree: &mut Tree, path: &TreePath, file: bool, mode: u32, mtime: i64) -> bool {
    if tree.get(path).is_some() || blocked(tree, path) {
        return false;
    }
    let dir = Meta::root(0o755, mtime);
    if file {
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, mtime),
            kind: LeafKind::File(Content::inline(Vec::new())),
        }));
        tree.insert(path, leaf, &dir).is_ok()
    } else {
        tree.mkdir_all(path, &Meta::root(mode, mtime)).is_ok()
    }
}

/// The bundle directories of `tree`: `containers/{onboot,onshutdown,services}/NAME`.
fn bundles(tree: &Tree) -> Vec<TreePath> {
    let mut out = Vec::new();
    for section in ["onboot", "onshutdown", "services"] {
        let Ok(dir) = TreePath::parse(format!("containers/{section}")) else {
            continue;
        };
        if let Some(d) = tree.get_dir(&dir) {
            for name in d.entries.keys() {
                if let Ok(n) = TreePath::parse(name) {
                    out.push(dir.join(&n));
                }
            }
        }
    }
    out
}

/// Add the system's and every read-only container's mount points to `tree`; returns how many
/// it made.
pub fn add_mount_points(tree: &mut Tree, mtime: i64) -> usize {
    let mut made = 0;
    for (dir, mode) in SYSTEM {
        if let Ok(p) = TreePath::parse(dir) {
            made += usize::from(make(tree, &p, false, mode, mtime));
        }
    }
    for bundle in bundles(tree) {
        let Ok(config_path) = TreePath::parse(format!("{bundle}/config.json")) else {
            continue;
        };
        let Some(Inode::Leaf(leaf)) = tree.get(&config_path) else {
            continue;
        };
        let LeafKind::File(content) = &leaf.kind else {
            continue;
        };
        let Ok(bytes) = content.read_to_vec() else {
            continue;
        };
        let Ok(config) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let readonly = config["root"]["readonly"].as_bool().unwrap_or(false);
        let root = config["root"]["path"].as_str().unwrap_or("rootfs");
        if !readonly || root != "rootfs" {
            continue;
        }
        let mounts = config["mounts"].as_array().cloned().unwrap_or_default();
        for m in mounts {
            let Some(dest) = m["destination"].as_str() else {
                continue;
            };
            let Ok(target) = TreePath::parse(format!("{bundle}/rootfs/{dest}")) else {
                continue;
            };
            let is_bind = m["type"].as_str() == Some("bind")
                || m["options"]
                    .as_array()
                    .is_some_and(|o| o.iter().any(|v| v == "bind" || v == "rbind"));
            // A bind of a file mounts on a file.
            let file = is_bind
                && m["source"]
                    .as_str()
                    .and_then(|s| TreePath::parse(s).ok())
                    .is_some_and(|s| matches!(tree.get(&s), Some(Inode::Leaf(_))));
            made += usize::from(make(tree, &target, file, 0o755, mtime));
        }
    }
    made
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(tree: &mut Tree, path: &str, body: &str) {
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::File(Content::inline(body.as_bytes().to_vec())),
        }));
        tree.insert(&TreePath::parse(path).unwrap(), leaf, &Meta::root(0o755, 0))
            .unwrap();
    }

    #[test]
    fn system_and_read_only_container_mount_points_are_made() {
        let mut t = Tree::new(0);
        file(&mut t, "etc/resolv.conf", "");
        file(
            &mut t,
            "containers/services/redis/config.json",
            r#"{"root":{"path":"rootfs","readonly":true},"mounts":[
                {"destination":"/proc","type":"proc"},
                {"destination":"/tmp","type":"tmpfs"},
                {"destination":"/etc/resolv.conf","type":"bind","source":"/etc/resolv.conf","options":["rbind"]},
                {"destination":"/data/x","source":"/run/x","options":["rbind"]}]}"#,
        );
        file(&mut t, "containers/services/redis/rootfs/bin/sh", "");
        file(
            &mut t,
            "containers/services/getty/config.json",
            r#"{"root":{"path":"rootfs","readonly":false},"mounts":[{"destination":"/tmp","type":"tmpfs"}]}"#,
        );
        let made = add_mount_points(&mut t, 0);
        assert_eq!(made, 6 + 4);
        let is_dir = |p: &str| t.get_dir(&TreePath::parse(p).unwrap()).is_some();
        assert!(is_dir("run") && is_dir("tmp") && is_dir("var"));
        assert_eq!(
            t.get_dir(&TreePath::parse("tmp").unwrap())
                .unwrap()
                .meta
                .mode,
            0o1777
        );
        assert!(is_dir("containers/services/redis/rootfs/tmp"));
        assert!(is_dir("containers/services/redis/rootfs/data/x"));
        assert!(matches!(
            t.get(&TreePath::parse("containers/services/redis/rootfs/etc/resolv.conf").unwrap()),
            Some(Inode::Leaf(_))
        ));
        assert!(
            t.get(&TreePath::parse("containers/services/getty/rootfs/tmp").unwrap())
                .is_none()
        );
        assert_eq!(add_mount_points(&mut t, 0), 0, "nothing twice");
    }
}
