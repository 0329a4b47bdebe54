//! The writers at their limits: a file newc cannot hold is an error and leaves no output, and
//! bodies are streamed (memory stays flat while a 1 GiB file goes through).

use std::sync::Arc;

use osbuild::archive::compress::Compression;
use osbuild::archive::cpio::{CpioOptions, write_cpio};
use osbuild::image::Arch;
use osbuild::output::{Format, Loaders, OutputRequest, write_outputs};
use osbuild::tree::{BlobFile, Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

fn sparse_file(dir: &std::path::Path, len: u64) -> std::path::PathBuf {
    let path = dir.join(format!("sparse-{len}"));
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    path
}

fn tree_with(path: &str, file: &std::path::Path, len: u64) -> Tree {
    let mut t = Tree::new(0);
    let meta = Meta::root(0o755, 0);
    for (p, content) in [
        ("boot/kernel", Content::inline(b"kernel".to_vec())),
        (
            path,
            Content::Extent {
                file: BlobFile::new(file),
                offset: 0,
                len,
            },
        ),
    ] {
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, 0),
            kind: LeafKind::File(content),
        }));
        t.insert(&TreePath::parse(p).unwrap(), leaf, &meta).unwrap();
    }
    t
}

#[test]
fn a_4_gib_file_is_refused_and_nothing_is_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let big = sparse_file(dir.path(), 4 << 30);
    let tree = tree_with("data/huge.img", &big, 4 << 30);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let request = OutputRequest {
        dir: out.clone(),
        name: "big".into(),
        output: None,
        arch: Arch::Amd64,
        compression: Compression::None,
        mtime_clamp: None,
        mtime: 0,
        disk_size: None,
        boot: None,
        compress_clusters: false,
        jobs: 1,
    };
    let format = Format::named("kernel+initrd").unwrap();
    let err = write_outputs(&tree, &[format], &request, &Loaders::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "data/huge.img: 4294967296 bytes is over the 4 GiB a newc cpio entry can hold"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "no output, no temporary file"
    );
}

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn a_1_gib_body_streams_without_growing_memory() {
    let dir = tempfile::tempdir().unwrap();
    let big = sparse_file(dir.path(), 1 << 30);
    let tree = tree_with("data/big.img", &big, 1 << 30);
    let before = peak_rss_kib();
    let stats = write_cpio(&tree, &mut std::io::sink(), &CpioOptions::default()).unwrap();
    let after = peak_rss_kib();
    assert_eq!(stats.body_bytes, (1 << 30) + 6);
    assert!(
        after - before < 64 * 1024,
        "peak RSS grew by {} KiB",
        after - before
    );
}
