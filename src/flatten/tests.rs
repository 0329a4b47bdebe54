//! Unit tests of the layer rules, each with the expected tree as a dump.

use std::path::PathBuf;
use std::sync::Arc;

use super::*;
use crate::archive::tar::{TarOptions, write_tar};
use crate::tree::{Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath, dump};

/// Builds layers as real tar files (written by our tar writer) in a temp dir.
struct Layers {
    dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
}

impl Layers {
    fn new() -> Self {
        Layers {
            dir: tempfile::tempdir().unwrap(),
            paths: Vec::new(),
        }
    }

    fn add(&mut self, entries: &[(&str, Inode)]) -> &mut Self {
        let mut t = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        for (p, inode) in entries {
            t.insert(&TreePath::parse(p).unwrap(), inode.clone(), &meta)
                .unwrap();
        }
        self.add_tree(&t)
    }

    fn add_tree(&mut self, t: &Tree) -> &mut Self {
        let path = self
            .dir
            .path()
            .join(format!("layer{}.tar", self.paths.len()));
        let mut f = std::fs::File::create(&path).unwrap();
        write_tar(t, &mut f, &TarOptions::default()).unwrap();
        self.paths.push(path);
        self
    }

    fn add_raw(&mut self, bytes: &[u8]) -> &mut Self {
        let path = self
            .dir
            .path()
            .join(format!("layer{}.tar", self.paths.len()));
        std::fs::write(&path, bytes).unwrap();
        self.paths.push(path);
        self
    }

    fn flatten(&self) -> Result<Tree, FlattenError> {
        flatten(&self.paths)
    }
}

fn file(body: &str) -> Inode {
    file_mode(body, 0o644)
}

fn file_mode(body: &str, mode: u32) -> Inode {
    Inode::Leaf(Arc::new(Leaf {
        meta: Meta::root(mode, 0),
        kind: LeafKind::File(Content::inline(body.as_bytes().to_vec())),
    }))
}

fn dir(mode: u32) -> Inode {
    Inode::Directory(Box::new(crate::tree::Directory::new(Meta::root(mode, 0))))
}

fn lines(tree: &Tree) -> Vec<String> {
    dump(tree, false).lines().map(|l| l.to_string()).collect()
}

#[test]
fn later_layers_replace_files_and_whiteouts_remove() {
    let t = Layers::new()
        .add(&[("etc/keep", file("v1")), ("etc/gone", file("x"))])
        .add(&[
            ("etc/.wh.gone", file("")),
            ("etc/keep", file_mode("v2", 0o600)),
        ])
        .flatten()
        .unwrap();
    let d = lines(&t);
    assert_eq!(d.len(), 3, "{d:#?}");
    assert_eq!(d[1], "/etc 0755 0:0 dir");
    assert!(d[2].starts_with("/etc/keep 0600 0:0 file 2 "), "{d:#?}");
}

#[test]
fn whiteouts_do_not_hide_entries_of_their_own_layer() {
    // The whiteout hides only the lower `a`, not the one of its own layer.
    let mut layers = Layers::new();
    layers.add(&[("etc/a", file("low"))]);
    layers.add(&[("etc/a", file("same layer")), ("etc/.wh.a", file(""))]);
    let t = layers.flatten().unwrap();
    let a = t
        .get(&TreePath::parse("etc/a").unwrap())
        .expect("etc/a survives");
    let Inode::Leaf(l) = a else { panic!() };
    let LeafKind::File(c) = &l.kind else { panic!() };
    assert_eq!(c.read_to_vec().unwrap(), b"same layer");
}

#[test]
fn opaque_directory_hides_lower_children_only() {
    let t = Layers::new()
        .add(&[("o/a", file("a")), ("o/sub/b", file("b"))])
        .add(&[("o/.wh..wh..opq", file("")), ("o/c", file("c"))])
        .flatten()
        .unwrap();
    let names: Vec<_> = lines(&t)
        .iter()
        .map(|l| l.split(' ').next().unwrap().to_string())
        .collect();
    assert_eq!(names, ["/", "/o", "/o/c"]);
}

#[test]
fn directory_whiteout_then_recreated_directory_is_fresh() {
    let t = Layers::new()
        .add(&[("redo/old", file("old"))])
        .add(&[(".wh.redo", file(""))])
        .add(&[("redo", dir(0o700)), ("redo/new", file("new"))])
        .flatten()
        .unwrap();
    let d = lines(&t);
    assert_eq!(d[1], "/redo 0700 0:0 dir");
    assert_eq!(d.len(), 3, "old is gone: {d:#?}");
    assert!(d[2].starts_with("/redo/new "));
}

#[test]
fn directory_metadata_is_replaced_children_kept() {
    let t = Layers::new()
        .add(&[("d", dir(0o755)), ("d/x", file("x"))])
        .add(&[("d", dir(0o711))])
        .flatten()
        .unwrap();
    let d = lines(&t);
    assert_eq!(d[1], "/d 0711 0:0 dir");
    assert!(d[2].starts_with("/d/x "));
}

#[test]
fn file_replaces_directory_and_directory_replaces_file() {
    let t = Layers::new()
        .add(&[("a/child", file("c")), ("b", file("b"))])
        .add(&[("a", file("now a file")), ("b/inner", file("i"))])
        .flatten()
        .unwrap();
    let d = lines(&t);
    assert!(d[1].starts_with("/a 0644 0:0 file 10 "), "{d:#?}");
    assert_eq!(d[2], "/b 0755 0:0 dir");
    assert!(d[3].starts_with("/b/inner "));
}

#[test]
fn hardlinks_share_leaves_across_layers() {
    let shared = file("shared");
    let mut layers = Layers::new();
    layers.add(&[("x/orig", shared.clone()), ("x/same", shared)]);
    // A hardlink in a higher layer to a file of a lower one.
    let mut raw = Vec::new();
    raw.extend_from_slice(&ustar_link("y/link", "x/orig"));
    raw.extend_from_slice(&[0u8; 1024]);
    layers.add_raw(&raw);
    let t = layers.flatten().unwrap();
    let d = lines(&t);
    let linked: Vec<_> = d.iter().filter(|l| l.ends_with("link#1")).collect();
    assert_eq!(linked.len(), 3, "{d:#?}");
}

#[test]
fn hardlink_to_missing_target_is_an_error() {
    let mut raw = ustar_link("y/link", "nowhere").to_vec();
    raw.extend_from_slice(&[0u8; 1024]);
    let err = Layers::new().add_raw(&raw).flatten().unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("y/link: hardlink to nowhere, which does not exist"),
        "{msg}"
    );
}

#[test]
fn parent_escape_is_rejected() {
    let mut raw = ustar_file("../../etc/passwd", b"owned").to_vec();
    raw.extend_from_slice(&[0u8; 1024]);
    let err = Layers::new().add_raw(&raw).flatten().unwrap_err();
    assert!(err.to_string().contains("../../etc/passwd: path"), "{err}");
}

#[test]
fn prefixes_are_normalised_and_bodies_point_into_the_layer() {
    let mut raw = ustar_file("./a/b", b"hello").to_vec();
    raw.extend_from_slice(&ustar_file("/c", b"world"));
    raw.extend_from_slice(&[0u8; 1024]);
    let mut layers = Layers::new();
    layers.add_raw(&raw);
    let t = layers.flatten().unwrap();
    let Some(Inode::Leaf(l)) = t.get(&TreePath::parse("a/b").unwrap()) else {
        panic!()
    };
    let LeafKind::File(Content::Extent { file, offset, len }) = &l.kind else {
        panic!("not an extent")
    };
    assert_eq!((*offset, *len), (512, 5));
    assert_eq!(file.path(), layers.paths[0]);
    assert!(t.get(&TreePath::parse("c").unwrap()).is_some());
}

#[test]
fn devices_fifos_symlinks_setuid_and_xattrs_survive() {
    let mut x = Leaf {
        meta: Meta::root(0o4755, 0),
        kind: LeafKind::File(Content::inline(b"su".to_vec())),
    };
    x.meta.xattrs.insert("user.k".into(), b"v".to_vec());
    x.meta.uid = 3_000_000;
    let t = Layers::new()
        .add(&[
            (
                "dev/null",
                Inode::Leaf(Arc::new(Leaf {
                    meta: Meta::root(0o666, 0),
                    kind: LeafKind::CharDevice { major: 1, minor: 3 },
                })),
            ),
            (
                "dev/sda",
                Inode::Leaf(Arc::new(Leaf {
                    meta: Meta::root(0o660, 0),
                    kind: LeafKind::BlockDevice { major: 8, minor: 0 },
                })),
            ),
            (
                "run/p",
                Inode::Leaf(Arc::new(Leaf {
                    meta: Meta::root(0o600, 0),
                    kind: LeafKind::Fifo,
                })),
            ),
            (
                "s",
                Inode::Leaf(Arc::new(Leaf {
                    meta: Meta::root(0o777, 0),
                    kind: LeafKind::Symlink("../x".into()),
                })),
            ),
            ("bin/su", Inode::Leaf(Arc::new(x))),
        ])
        .flatten()
        .unwrap();
    let d = lines(&t).join("\n");
    for want in [
        "/bin/su 4755 3000000:0 xattr:user.k=v file 2 ",
        "/dev/null 0666 0:0 chr 1:3",
        "/dev/sda 0660 0:0 blk 8:0",
        "/run/p 0600 0:0 fifo",
        "/s 0777 0:0 link -> ../x",
    ] {
        assert!(d.contains(want), "missing {want:?} in\n{d}");
    }
}

#[test]
fn kernel_tar_inside_a_file_is_applied_in_place() {
    // A layer holding `kernel.tar`, itself a tar of lib/modules.
    let mut inner = Tree::new(0);
    let meta = Meta::root(0o755, 0);
    inner
        .insert(
            &TreePath::parse("lib/modules/6.1/a.ko").unwrap(),
            file("module"),
            &meta,
        )
        .unwrap();
    let mut inner_tar = Vec::new();
    write_tar(&inner, &mut inner_tar, &TarOptions::default()).unwrap();
    let mut layers = Layers::new();
    layers.add(&[
        ("kernel", file("bz")),
        (
            "kernel.tar",
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, 0),
                kind: LeafKind::File(Content::inline(inner_tar)),
            })),
        ),
    ]);
    let image = layers.flatten().unwrap();
    let Some(Inode::Leaf(l)) = image.get(&TreePath::parse("kernel.tar").unwrap()) else {
        panic!()
    };
    let LeafKind::File(c) = &l.kind else { panic!() };
    let mut root = Tree::new(0);
    apply_tar_content(&mut root, c).unwrap();
    let Some(Inode::Leaf(m)) = root.get(&TreePath::parse("lib/modules/6.1/a.ko").unwrap()) else {
        panic!()
    };
    let LeafKind::File(mc) = &m.kind else {
        panic!()
    };
    assert_eq!(mc.read_to_vec().unwrap(), b"module");
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let err = Layers::new().add_raw(&[0x42; 700]).flatten().unwrap_err();
    assert!(err.to_string().starts_with("layer "), "{err}");
}

/// A ustar header block for a hardlink `name` -> `target`.
fn ustar_link(name: &str, target: &str) -> [u8; 512] {
    header(name, b'1', 0, target)
}

/// A ustar regular file with its body, padded.
fn ustar_file(name: &str, body: &[u8]) -> Vec<u8> {
    let mut v = header(name, b'0', body.len(), "").to_vec();
    v.extend_from_slice(body);
    v.resize(512 + body.len().div_ceil(512) * 512, 0);
    v
}

fn header(name: &str, typeflag: u8, size: usize, link: &str) -> [u8; 512] {
    let mut b = [0u8; 512];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..107].copy_from_slice(b"0000644");
    b[108..115].copy_from_slice(b"0000000");
    b[116..123].copy_from_slice(b"0000000");
    b[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
    b[136..147].copy_from_slice(b"00000000000");
    b[156] = typeflag;
    b[157..157 + link.len()].copy_from_slice(link.as_bytes());
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&x| u32::from(x)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

#[test]
fn binary_xattrs_with_newlines_do_not_break_later_pax_records() {
    let mut leaf = Leaf {
        meta: Meta::root(0o755, 0),
        kind: LeafKind::File(Content::inline(b"ping".to_vec())),
    };
    leaf.meta
        .xattrs
        .insert("security.capability".into(), b"\x01\x00\n\x02\n".to_vec());
    leaf.meta.xattrs.insert("user.after".into(), b"ok".to_vec());
    leaf.meta.mtime = -1; // a PAX mtime record too
    let mut layers = Layers::new();
    layers.add(&[("bin/ping", Inode::Leaf(Arc::new(leaf.clone())))]);
    let t = layers.flatten().unwrap();
    let Some(Inode::Leaf(back)) = t.get(&TreePath::parse("bin/ping").unwrap()) else {
        panic!()
    };
    assert_eq!(back.meta.xattrs, leaf.meta.xattrs);
    assert_eq!(back.meta.mtime, -1);
}

#[test]
fn paths_longer_than_linux_allows_are_refused_in_one_short_line() {
    // A file under 3000 nested directories: a 6004-byte path, which a PAX header carries but
    // no system could create. Before the limit, layers of such paths took memory quadratic in
    // the depth (2.8 GB for 10,000).
    let deep = "a/".repeat(3000) + "deep";
    let mut raw = Vec::new();
    crate::archive::tar::write_file(&mut raw, &deep, 0o644, 0, 4, &b"deep"[..]).unwrap();
    crate::archive::tar::write_end(&mut raw).unwrap();
    let err = Layers::new()
        .add_raw(&raw)
        .flatten()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("is 6004 bytes, more than the 4095 Linux allows a path (PATH_MAX)"),
        "{err}"
    );
    assert!(err.starts_with("layer ") && err.len() < 400, "{err}");
    assert_eq!(err.lines().count(), 1);
}

#[test]
fn an_oversized_long_name_header_is_refused_before_it_is_read() {
    // A 2 MiB GNU long name: the tar reader would read it whole into memory before any path
    // check could see it (a 16 GiB one fits in a layer the size bound allows).
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_path("././@LongLink").unwrap();
    h.set_size(2 << 20);
    h.set_cksum();
    let mut raw = h.as_bytes().to_vec();
    raw.extend(std::iter::repeat_n(b'a', 2 << 20));
    crate::archive::tar::write_file(&mut raw, "f", 0o644, 0, 1, &b"f"[..]).unwrap();
    crate::archive::tar::write_end(&mut raw).unwrap();
    let err = Layers::new().add_raw(&raw).flatten().unwrap_err();
    let err = crate::error::chain(&err);
    assert!(
        err.contains("the GNU long name header at offset 0 holds 2097152 bytes, more than the 1M an extension header may"),
        "{err}"
    );
}

#[test]
fn the_entries_of_one_image_are_bounded_across_its_layers() {
    let mut layers = Layers::new();
    layers.add(&[("a/one", file("1")), ("a/two", file("2"))]);
    layers.add(&[("b/three", file("3")), ("a/.wh.one", file(""))]);
    let count = |limit: u64| {
        let mut tree = Tree::new(0);
        let mut budget = EntryBudget::new(limit);
        for layer in &layers.paths {
            apply_layer_within(&mut tree, layer, &mut budget)?;
        }
        Ok::<u64, FlattenError>(budget.used())
    };
    let total = count(u64::MAX).unwrap();
    assert!(total >= 6, "{total}");
    assert_eq!(count(total).unwrap(), total);
    let err = count(total - 1).unwrap_err();
    assert!(
        matches!(&err, FlattenError::TooManyEntries { layer, limit }
            if layer.ends_with("layer1.tar") && *limit == total - 1),
        "{err:?}"
    );
    assert!(
        err.to_string().ends_with(&format!(
            "the image holds more than {} entries, the limit for one image (raise it with --max-image-entries)",
            total - 1
        )),
        "{err}"
    );
}

#[test]
fn the_deepest_layer_linux_allows_flattens_on_a_small_stack() {
    // 2047 nested directories and a file: the deepest path within PATH_MAX. Each entry's path
    // is one byte string, and the tree is walked and dropped without recursion.
    let path = "a/".repeat(2047) + "f";
    let mut layers = Layers::new();
    layers.add(&[(path.as_str(), file("f"))]);
    let worker = std::thread::Builder::new()
        .stack_size(128 << 10)
        .spawn(move || {
            let tree = layers.flatten().unwrap();
            let mut entries = 0;
            tree.walk::<()>(|_| {
                entries += 1;
                Ok(())
            })
            .unwrap();
            entries
        })
        .unwrap();
    assert_eq!(worker.join().unwrap(), 2049);
}

/// A layer holding one symlink `l` to `target`, written by the tar writer.
fn symlink_layer(target: &[u8]) -> Vec<u8> {
    use std::os::unix::ffi::OsStringExt;
    let mut t = Tree::new(0);
    t.insert(
        &TreePath::parse("l").unwrap(),
        Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o777, 0),
            kind: LeafKind::Symlink(std::ffi::OsString::from_vec(target.to_vec())),
        })),
        &Meta::root(0o755, 0),
    )
    .unwrap();
    let mut out = Vec::new();
    write_tar(&t, &mut out, &TarOptions::default()).unwrap();
    out
}

#[test]
fn a_truncated_layer_is_an_error() {
    let mut layers = Layers::new();
    layers.add(&[("f", file(&"x".repeat(1500))), ("g", file("g"))]);
    let whole = std::fs::read(&layers.paths[0]).unwrap();
    // Cut inside the body of `f` (its header is the first 512 bytes), then inside the
    // header of `g`.
    for cut in [512 + 700, 512 + 1536 + 100] {
        let mut truncated = Layers::new();
        truncated.add_raw(&whole[..cut]);
        let err = truncated.flatten().unwrap_err();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            text.contains("truncated") || text.contains("failed to read entire block"),
            "{cut}: {text}"
        );
    }
    // The body whole but the end-of-archive blocks gone: every entry is there.
    let mut no_end = Layers::new();
    no_end.add_raw(&whole[..512 + 1536 + 1024]);
    assert_eq!(lines(&no_end.flatten().unwrap()).len(), 3);
}

#[test]
fn a_symlink_target_comes_from_its_pax_record_whole() {
    // Longer than the header's 100 bytes, so in a PAX `linkpath` record; with a newline,
    // which the tar reader's own PAX parser splits at.
    let target = format!("a\nb/{}", "c".repeat(120));
    let mut layers = Layers::new();
    layers.add_raw(&symlink_layer(target.as_bytes()));
    let tree = layers.flatten().unwrap();
    let Some(Inode::Leaf(leaf)) = tree.get(&TreePath::parse("l").unwrap()) else {
        panic!("no symlink");
    };
    assert_eq!(leaf.kind, LeafKind::Symlink(target.into()));
}

#[test]
fn a_symlink_target_with_a_nul_or_nothing_is_refused() {
    // The writer refuses a NUL: put one into the PAX record of a target written without.
    let mut bytes = symlink_layer(format!("a{}", "c".repeat(120)).as_bytes());
    let at = bytes.windows(10).position(|w| w == b"linkpath=a").unwrap();
    bytes[at + 10] = 0;
    let mut layers = Layers::new();
    layers.add_raw(&bytes);
    let err = layers.flatten().unwrap_err().to_string();
    assert!(
        err.contains(": l: symlink target") && err.ends_with("contains a NUL byte"),
        "{err}"
    );
    // A symlink header with an empty link name.
    let mut header = tar::Header::new_ustar();
    header.set_path("l").unwrap();
    header.set_entry_type(tar::EntryType::Symlink);
    header.set_mode(0o777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_size(0);
    header.set_cksum();
    let mut raw = header.as_bytes().to_vec();
    raw.extend_from_slice(&[0u8; 1024]);
    let mut layers = Layers::new();
    layers.add_raw(&raw);
    let err = layers.flatten().unwrap_err().to_string();
    assert!(err.ends_with("l: symlink without a target"), "{err}");
}
