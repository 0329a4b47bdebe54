//! Arbitrary bytes as a stack of layer tars (split at `%%LAYER%%`), flattened into a tree:
//! never a panic, errors only. A tree that flattens must be writable: as tar always (every
//! entry came from a tar), as newc cpio unless an entry is refused as unrepresentable; and the
//! tar written must flatten again into the same tree.
#![no_main]

use libfuzzer_sys::fuzz_target;
use osbuild::archive::ArchiveError;
use osbuild::archive::cpio::{CpioOptions, write_cpio};
use osbuild::archive::tar::{TarOptions, write_tar};
use osbuild::flatten::flatten;
use osbuild::tree::dump;
use osbuild_fuzz::{scratch_dir, split};

fuzz_target!(|data: &[u8]| {
    let layers = split(data, b"%%LAYER%%");
    if layers.len() > 4 {
        return;
    }
    let dir = scratch_dir();
    let mut paths = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let path = dir.path().join(format!("layer{i}.tar"));
        std::fs::write(&path, layer).expect("scratch file");
        paths.push(path);
    }
    let Ok(tree) = flatten(&paths) else {
        return;
    };
    let mut tar = Vec::new();
    if let Err(e) = write_tar(&tree, &mut tar, &TarOptions::default()) {
        panic!("a flattened tree does not write as tar: {e:?}");
    }
    match write_cpio(&tree, &mut std::io::sink(), &CpioOptions::default()) {
        Ok(_) | Err(ArchiveError::Unrepresentable { .. }) => {}
        Err(e) => panic!("a flattened tree does not write as cpio: {e:?}"),
    }
    let again = dir.path().join("again.tar");
    std::fs::write(&again, &tar).expect("scratch file");
    let back =
        flatten(&[again]).unwrap_or_else(|e| panic!("the tar written does not flatten: {e}"));
    // The root's metadata is not written to the tar; every entry below it is.
    let mut back = back;
    back.root.meta = tree.root.meta.clone();
    assert_eq!(dump(&back, true), dump(&tree, true), "tar round trip");
});
