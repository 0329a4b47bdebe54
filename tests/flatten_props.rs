//! Property tests of flattening and the writers: random trees survive tar -> flatten, random
//! layer stacks agree with a simple model of the OCI rules, cpio/tar output is a function of
//! the tree, and random bytes never panic the layer reader.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

use osbuild::archive::cpio::{CpioOptions, write_cpio};
use osbuild::archive::tar::{TarOptions, write_tar};
use osbuild::flatten::flatten;
use osbuild::tree::{Content, Directory, Inode, Leaf, LeafKind, Meta, Tree, TreePath, dump};
use proptest::prelude::*;

/// A short path of one to three components from a small alphabet, so collisions happen.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "dd", "e.f"]), 1..4)
        .prop_map(|v| v.join("/"))
}

#[derive(Debug, Clone)]
enum Op {
    File(String, Vec<u8>, u32),
    Dir(String, u32),
    Symlink(String, String),
    Whiteout(String),
    Opaque(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (path(), prop::collection::vec(any::<u8>(), 0..64), prop::sample::select(vec![0o644u32, 0o600, 0o755, 0o4755])).prop_map(|(p, b, m)| Op::File(p, b, m)),
        2 => (path(), prop::sample::select(vec![0o755u32, 0o700])).prop_map(|(p, m)| Op::Dir(p, m)),
        1 => (path(), path()).prop_map(|(p, t)| Op::Symlink(p, t)),
        2 => path().prop_map(Op::Whiteout),
        1 => path().prop_map(Op::Opaque),
    ]
}

fn leaf(meta: Meta, kind: LeafKind) -> Inode {
    Inode::Leaf(Arc::new(Leaf { meta, kind }))
}

/// Build one layer's tree from ops, skipping ops that cannot coexist in one tree.
fn layer_tree(ops: &[Op]) -> Tree {
    let mut t = Tree::new(0);
    let parent = Meta::root(0o755, 0);
    for op in ops {
        let (p, inode) = match op {
            Op::File(p, body, mode) => (
                p.clone(),
                leaf(
                    Meta::root(*mode, 0),
                    LeafKind::File(Content::inline(body.clone())),
                ),
            ),
            Op::Dir(p, mode) => (
                p.clone(),
                Inode::Directory(Box::new(Directory::new(Meta::root(*mode, 0)))),
            ),
            Op::Symlink(p, target) => (
                p.clone(),
                leaf(Meta::root(0o777, 0), LeafKind::Symlink(target.into())),
            ),
            Op::Whiteout(p) => {
                let tp = TreePath::parse(p).unwrap();
                let (dir, name) = tp.split_last().unwrap();
                (
                    format!("{dir}/.wh.{}", name.to_string_lossy()),
                    leaf(
                        Meta::root(0o644, 0),
                        LeafKind::File(Content::inline(vec![])),
                    ),
                )
            }
            Op::Opaque(p) => (
                format!("{p}/.wh..wh..opq"),
                leaf(
                    Meta::root(0o644, 0),
                    LeafKind::File(Content::inline(vec![])),
                ),
            ),
        };
        let tp = TreePath::parse(&p).unwrap();
        // Keep existing directories (their children are in this layer too).
        if matches!(inode, Inode::Directory(_)) && t.get_dir(&tp).is_some() {
            continue;
        }
        let _ = t.insert(&tp, inode, &parent);
    }
    t
}

/// How a leaf shows in the model.
fn describe(leaf: &Leaf) -> String {
    match &leaf.kind {
        LeafKind::File(c) => format!("file {:o} {:?}", leaf.meta.mode, c.read_to_vec().unwrap()),
        LeafKind::Symlink(t) => format!("link {}", t.to_string_lossy()),
        other => format!("{other:?}"),
    }
}

/// The model: a map from path to a description; applies one layer's tree with OCI rules.
fn model_apply(model: &mut BTreeMap<String, String>, layer: &Tree) {
    let mut entries = Vec::new();
    let _ = layer.walk::<()>(|e| {
        match e {
            osbuild::tree::WalkEntry::Directory { path, dir } if !path.is_root() => {
                entries.push((path.to_string(), format!("dir {:o}", dir.meta.mode)))
            }
            osbuild::tree::WalkEntry::Leaf { path, leaf } => {
                entries.push((path.to_string(), describe(leaf)))
            }
            _ => {}
        }
        Ok(())
    });
    let under = |p: &str, dir: &str| dir.is_empty() || p.starts_with(&format!("{dir}/"));
    // Whiteouts and opaque markers hide lower entries first.
    for (p, _) in &entries {
        let (dir, name) = p.rsplit_once('/').map_or(("", p.as_str()), |(d, n)| (d, n));
        if name == ".wh..wh..opq" {
            model.retain(|k, _| !under(k, dir));
        } else if let Some(hidden) = name.strip_prefix(".wh.") {
            let target = if dir.is_empty() {
                hidden.to_string()
            } else {
                format!("{dir}/{hidden}")
            };
            model.retain(|k, _| k != &target && !under(k, &target));
        }
    }
    for (p, desc) in entries {
        let name = p.rsplit('/').next().unwrap_or(&p);
        if name.starts_with(".wh.") {
            continue;
        }
        // Parents become directories; a non-directory at a parent is replaced.
        let parts: Vec<&str> = p.split('/').collect();
        for i in 1..parts.len() {
            let parent = parts[..i].join("/");
            let is_dir = model.get(&parent).is_some_and(|d| d.starts_with("dir"));
            if !is_dir {
                model.insert(parent, "dir 755".into());
            }
        }
        let is_dir = desc.starts_with("dir");
        if is_dir && model.get(&p).is_some_and(|d| d.starts_with("dir")) {
            model.insert(p, desc);
        } else {
            if !is_dir {
                model.retain(|k, _| !under(k, &p));
            } else if model.get(&p).is_some_and(|d| !d.starts_with("dir")) {
                model.remove(&p);
            }
            model.insert(p, desc);
        }
    }
}

fn tree_as_model(t: &Tree) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let _ = t.walk::<()>(|e| {
        match e {
            osbuild::tree::WalkEntry::Directory { path, dir } if !path.is_root() => {
                m.insert(path.to_string(), format!("dir {:o}", dir.meta.mode));
            }
            osbuild::tree::WalkEntry::Leaf { path, leaf } => {
                m.insert(path.to_string(), describe(leaf));
            }
            _ => {}
        }
        Ok(())
    });
    m
}

fn write_layers(dir: &std::path::Path, layers: &[Tree]) -> Vec<std::path::PathBuf> {
    layers
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let p = dir.join(format!("l{i}.tar"));
            let mut f = std::fs::File::create(&p).unwrap();
            write_tar(t, &mut f, &TarOptions::default()).unwrap();
            f.flush().unwrap();
            p
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_tree_survives_tar_and_flatten(ops in prop::collection::vec(op().prop_filter("no whiteouts", |o| !matches!(o, Op::Whiteout(_) | Op::Opaque(_))), 0..24)) {
        let tree = layer_tree(&ops);
        let dir = tempfile::tempdir().unwrap();
        let layers = write_layers(dir.path(), std::slice::from_ref(&tree));
        let back = flatten(&layers).unwrap();
        prop_assert_eq!(dump(&back, true), dump(&tree, true));
    }

    #[test]
    fn layer_stacks_follow_the_oci_rules(stack in prop::collection::vec(prop::collection::vec(op(), 0..12), 1..4)) {
        let trees: Vec<Tree> = stack.iter().map(|ops| layer_tree(ops)).collect();
        let dir = tempfile::tempdir().unwrap();
        let layers = write_layers(dir.path(), &trees);
        let got = flatten(&layers).unwrap();
        let mut model = BTreeMap::new();
        for t in &trees {
            model_apply(&mut model, t);
        }
        prop_assert_eq!(tree_as_model(&got), model);
    }

    #[test]
    fn archives_are_a_function_of_the_tree(ops in prop::collection::vec(op(), 0..24)) {
        let tree = layer_tree(&ops);
        let twin = layer_tree(&ops);
        let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        write_cpio(&tree, &mut a, &CpioOptions::default()).unwrap();
        write_cpio(&twin, &mut b, &CpioOptions::default()).unwrap();
        write_tar(&tree, &mut c, &TarOptions::default()).unwrap();
        write_tar(&twin, &mut d, &TarOptions::default()).unwrap();
        prop_assert_eq!(a, b);
        prop_assert_eq!(c, d);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096), header_like in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("junk.tar");
        let mut data = bytes;
        if header_like && data.len() > 263 {
            data[257..263].copy_from_slice(b"ustar\0");
        }
        std::fs::write(&p, &data).unwrap();
        let _ = flatten(&[p]);
    }
}

#[test]
fn cpio_listing_matches_tar_listing() {
    // Both writers emit the same entries in the same order.
    let ops = vec![
        Op::File("a/b".into(), b"x".to_vec(), 0o644),
        Op::Dir("c".into(), 0o700),
        Op::Symlink("c/l".into(), "a/b".into()),
    ];
    let tree = layer_tree(&ops);
    let dir = tempfile::tempdir().unwrap();
    let cpio_path = dir.path().join("x.cpio");
    let mut f = std::fs::File::create(&cpio_path).unwrap();
    write_cpio(&tree, &mut f, &CpioOptions::default()).unwrap();
    let tar_path = dir.path().join("x.tar");
    let mut f = std::fs::File::create(&tar_path).unwrap();
    write_tar(&tree, &mut f, &TarOptions::default()).unwrap();
    let cpio = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cpio -it --quiet < '{}'", cpio_path.display()))
        .output()
        .unwrap();
    let tar = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&tar_path)
        .output()
        .unwrap();
    let cpio: Vec<String> = String::from_utf8_lossy(&cpio.stdout)
        .lines()
        .map(String::from)
        .collect();
    let tar: Vec<String> = String::from_utf8_lossy(&tar.stdout)
        .lines()
        .map(|l| l.trim_end_matches('/').to_string())
        .collect();
    assert_eq!(cpio, ["a", "a/b", "c", "c/l"]);
    assert_eq!(cpio, tar);
}
