//! A fuzzed tree written as tar and read back (the `tar` crate, PAX records applied): names,
//! types, modes, owners, times, bodies, link targets, device numbers, xattrs and hardlinks
//! (later names link to the first) must survive; what the writer cannot hold must be refused.
#![no_main]

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

use libfuzzer_sys::fuzz_target;
use osbuild::archive::ArchiveError;
use osbuild::archive::tar::{TarOptions, write_tar};
use osbuild::tree::LeafKind;
use osbuild_fuzz::{FuzzTree, body, expected, leaf_key, read_tar, show};

fuzz_target!(|input: FuzzTree| {
    let tree = input.build();
    let opts = TarOptions {
        mtime_clamp: input.clamp,
        filter: None,
    };
    let mut out = Vec::new();
    let stats = match write_tar(&tree, &mut out, &opts) {
        Ok(s) => s,
        Err(ArchiveError::Unrepresentable { .. }) => return,
        Err(e) => panic!("not a refusal: {e:?}"),
    };
    let got = read_tar(&out).unwrap_or_else(|e| panic!("bad archive: {e}"));
    let want = expected(&tree);
    assert_eq!(got.len(), want.len(), "entry count");
    assert_eq!(stats.entries, want.len() as u64);
    let mut first_name: HashMap<*const osbuild::tree::Leaf, Vec<u8>> = HashMap::new();
    for (g, w) in got.iter().zip(&want) {
        let at = show(&w.path);
        assert_eq!(
            (g.uid, g.gid),
            (u64::from(w.meta.uid), u64::from(w.meta.gid)),
            "{at}: owner"
        );
        assert_eq!(g.mtime, opts.mtime(w.meta.mtime), "{at}: mtime");
        assert_eq!(g.mode, w.meta.mode & 0o7777, "{at}: mode");
        match &w.leaf {
            None => {
                let mut p = w.path.clone();
                p.push(b'/');
                assert_eq!(g.path, p, "name");
                assert_eq!(g.typeflag, b'5', "{at}: type");
                assert_eq!(g.xattrs, w.meta.xattrs, "{at}: xattrs");
            }
            Some(leaf) => {
                assert_eq!(g.path, w.path, "name");
                if let Some(first) = first_name.get(&leaf_key(leaf)) {
                    assert_eq!(g.typeflag, b'1', "{at}: a second name is a hardlink");
                    assert_eq!(&g.link, first, "{at}: hardlink target");
                    continue;
                }
                first_name.insert(leaf_key(leaf), w.path.clone());
                assert_eq!(g.xattrs, w.meta.xattrs, "{at}: xattrs");
                let (flag, body_want, link, dev) = match &leaf.kind {
                    LeafKind::File(c) => (b'0', body(c), vec![], (0, 0)),
                    LeafKind::Symlink(t) => {
                        assert!(
                            !t.as_bytes().is_empty() && !t.as_bytes().contains(&0),
                            "{at}: symlink target {t:?} cannot be unpacked"
                        );
                        (b'2', vec![], t.as_bytes().to_vec(), (0, 0))
                    }
                    LeafKind::CharDevice { major, minor } => {
                        (b'3', vec![], vec![], (*major, *minor))
                    }
                    LeafKind::BlockDevice { major, minor } => {
                        (b'4', vec![], vec![], (*major, *minor))
                    }
                    LeafKind::Fifo => (b'6', vec![], vec![], (0, 0)),
                };
                assert_eq!(g.typeflag, flag, "{at}: type");
                assert_eq!(g.body, body_want, "{at}: body");
                assert_eq!(g.link, link, "{at}: link target");
                assert_eq!(g.dev, dev, "{at}: device");
            }
        }
    }
});
