//! A fuzzed tree written as newc cpio and read back: names, types, modes, owners, times,
//! bodies, symlink targets, device numbers and hardlink groups must all survive; entries the
//! writer cannot hold must be refused with an error naming them.
#![no_main]

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;
use osbuild::archive::ArchiveError;
use osbuild::archive::cpio::{CpioOptions, write_cpio};
use osbuild::tree::LeafKind;
use osbuild_fuzz::{FuzzTree, body, expected, leaf_key, names_per_leaf, read_newc, show};

fuzz_target!(|input: FuzzTree| {
    let tree = input.build();
    let opts = CpioOptions {
        mtime_clamp: input.clamp,
        filter: None,
    };
    let mut out = Vec::new();
    let stats = match write_cpio(&tree, &mut out, &opts) {
        Ok(s) => s,
        Err(ArchiveError::Unrepresentable { .. }) => return,
        Err(e) => panic!("not a refusal: {e:?}"),
    };
    assert_eq!(stats.archive_bytes, out.len() as u64);
    let got = read_newc(&out).unwrap_or_else(|e| panic!("bad archive: {e}"));
    let want = expected(&tree);
    assert_eq!(got.len(), want.len(), "entry count");
    assert_eq!(stats.entries, want.len() as u64);
    let names = names_per_leaf(&want);
    let mut seen_of_group: HashMap<*const osbuild::tree::Leaf, (u32, u32)> = HashMap::new();
    let mut inos = HashMap::new();
    for (g, w) in got.iter().zip(&want) {
        let at = show(&w.path);
        assert_eq!(g.name, w.path, "name");
        assert_eq!((g.uid, g.gid), (w.meta.uid, w.meta.gid), "{at}: owner");
        let mtime = opts.mtime(w.meta.mtime);
        assert_eq!(i64::from(g.mtime), mtime, "{at}: mtime");
        let perm = w.meta.mode & 0o7777;
        match &w.leaf {
            None => {
                assert_eq!(g.mode, 0o040000 | perm, "{at}: mode");
                assert_eq!(g.nlink, 2 + w.subdirs, "{at}: nlink");
                assert!(g.body.is_empty());
                assert!(inos.insert(g.ino, None).is_none(), "{at}: inode reused");
            }
            Some(leaf) => {
                let key = leaf_key(leaf);
                let n = names[&key];
                assert_eq!(g.nlink, n, "{at}: nlink");
                let seen = seen_of_group.entry(key).or_insert((g.ino, 0));
                seen.1 += 1;
                assert_eq!(seen.0, g.ino, "{at}: a hardlink group shares its inode");
                let last = seen.1 == n;
                if seen.1 == 1 {
                    assert!(
                        inos.insert(g.ino, Some(key)).is_none(),
                        "{at}: inode reused"
                    );
                }
                let (kind, body_want, rdev) = match &leaf.kind {
                    LeafKind::File(c) => {
                        (0o100000, if last { body(c) } else { Vec::new() }, (0, 0))
                    }
                    LeafKind::Symlink(t) => {
                        assert!(
                            !t.as_bytes().is_empty() && !t.as_bytes().contains(&0),
                            "{at}: symlink target {t:?} cannot be unpacked"
                        );
                        (0o120000, t.as_bytes().to_vec(), (0, 0))
                    }
                    LeafKind::CharDevice { major, minor } => (0o020000, vec![], (*major, *minor)),
                    LeafKind::BlockDevice { major, minor } => (0o060000, vec![], (*major, *minor)),
                    LeafKind::Fifo => (0o010000, vec![], (0, 0)),
                };
                assert_eq!(g.mode, kind | perm, "{at}: mode");
                assert_eq!(g.body, body_want, "{at}: body");
                assert_eq!(g.rdev, rdev, "{at}: device");
            }
        }
    }
});
