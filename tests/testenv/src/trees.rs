//! The filesystem trees of the fixture images: busybox from Debian's busybox-static, a test
//! init script, a kernel in LinuxKit layout, and three layers exercising every layer rule.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use osbuild::tree::{
    Content, Directory, HostImport, Inode, Leaf, LeafKind, Meta, Tree, TreePath, import_host_path,
};

/// The fixed mtime of fixture entries.
pub const MTIME: i64 = 1_700_000_000;

/// The line the test init prints once it runs, then the lines it prints after it.
pub const INIT_MARKER: &str = "osbuild-init: hello";

/// The busybox applets linked in `/bin` of the fixture images.
const APPLETS: [&str; 27] = [
    "sh", "cat", "echo", "ls", "mount", "umount", "uname", "poweroff", "reboot", "sleep", "mkdir",
    "httpd", "wc", "grep", "id", "hostname", "ip", "ifconfig", "nc", "sync", "head", "find",
    "test", "[", "modprobe", "insmod", "wget",
];

/// The init script of the `busybox-init` fixture: mounts the API filesystems, reports what the
/// build laid out, and powers the machine off.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "osbuild-init: hello from $(uname -m) kernel $(uname -r)"
[ -f /etc/osbuild-marker ] && echo "osbuild-init: marker: $(cat /etc/osbuild-marker)"
for b in /containers/*/*; do
  [ -f "$b/config.json" ] && echo "osbuild-init: bundle $b"
done
[ -d /lib/modules ] && echo "osbuild-init: modules $(find /lib/modules -name '*.ko*' | wc -l)"
echo "osbuild-init: done"
sync
poweroff -f
"#;

fn file(mode: u32, content: Content) -> Inode {
    Inode::Leaf(Arc::new(Leaf {
        meta: Meta::root(mode, MTIME),
        kind: LeafKind::File(content),
    }))
}

fn text(mode: u32, body: &str) -> Inode {
    file(mode, Content::inline(body.as_bytes().to_vec()))
}

fn symlink(target: &str) -> Inode {
    Inode::Leaf(Arc::new(Leaf {
        meta: Meta::root(0o777, MTIME),
        kind: LeafKind::Symlink(target.into()),
    }))
}

fn put(tree: &mut Tree, path: &str, inode: Inode) -> Result<()> {
    let meta = Meta::root(0o755, MTIME);
    tree.insert(&TreePath::parse(path)?, inode, &meta)
        .with_context(|| format!("fixture path {path}"))?;
    Ok(())
}

fn dir(tree: &mut Tree, path: &str, mode: u32) -> Result<()> {
    put(
        tree,
        path,
        Inode::Directory(Box::new(Directory::new(Meta::root(mode, MTIME)))),
    )
}

/// A busybox userland: `/bin/busybox` (the host's static busybox) and applet links.
pub fn busybox() -> Result<Tree> {
    busybox_from(Path::new("/bin/busybox"))
}

/// The test init with the static busybox at `busybox` (another architecture's, say).
pub fn busybox_init_from(busybox: &Path) -> Result<Tree> {
    let mut tree = busybox_from(busybox)?;
    put(&mut tree, "init", text(0o755, INIT_SCRIPT))?;
    Ok(tree)
}

/// A busybox userland around the static busybox binary at `busybox`.
pub fn busybox_from(busybox: &Path) -> Result<Tree> {
    let md = std::fs::metadata(busybox)
        .context("/bin/busybox is missing (apt-get install busybox-static)")?;
    let mut tree = Tree::new(MTIME);
    for d in ["bin", "etc", "tmp", "var", "www"] {
        dir(&mut tree, d, 0o755)?;
    }
    put(
        &mut tree,
        "bin/busybox",
        file(
            0o755,
            Content::Extent {
                file: osbuild::tree::BlobFile::new(busybox),
                offset: 0,
                len: md.len(),
            },
        ),
    )?;
    for applet in APPLETS {
        put(&mut tree, &format!("bin/{applet}"), symlink("busybox"))?;
    }
    put(
        &mut tree,
        "etc/passwd",
        text(0o644, "root:x:0:0:root:/:/bin/sh\n"),
    )?;
    put(&mut tree, "etc/group", text(0o644, "root:x:0:\n"))?;
    put(
        &mut tree,
        "www/index.html",
        text(0o644, "osbuild fixture\n"),
    )?;
    Ok(tree)
}

/// The test init: busybox plus [`INIT_SCRIPT`] at `/init`.
pub fn busybox_init() -> Result<Tree> {
    let mut tree = busybox()?;
    put(&mut tree, "init", text(0o755, INIT_SCRIPT))?;
    Ok(tree)
}

/// A kernel image in LinuxKit layout: `/kernel`, `/kernel.tar` (the modules tree, written to
/// `kernel_tar` by the caller), `/System.map`, `/config`.
pub fn kernel(image: &Path, kernel_tar: &Path, system_map: &Path, config: &Path) -> Result<Tree> {
    let opts = HostImport {
        uid: 0,
        gid: 0,
        mtime: MTIME,
    };
    let mut tree = Tree::new(MTIME);
    for (name, path, mode) in [
        ("kernel", image, 0o644),
        ("kernel.tar", kernel_tar, 0o644),
        ("System.map", system_map, 0o644),
        ("config", config, 0o644),
    ] {
        let mut inode = import_host_path(path, &opts)?;
        if let Inode::Leaf(leaf) = &mut inode {
            Arc::make_mut(leaf).meta.mode = mode;
        }
        put(&mut tree, name, inode)?;
    }
    Ok(tree)
}

/// A tree holding `lib/modules/...` from a host modules root (input of `kernel.tar`).
pub fn modules(modules_root: &Path) -> Result<Tree> {
    let opts = HostImport {
        uid: 0,
        gid: 0,
        mtime: MTIME,
    };
    let mut tree = Tree::new(MTIME);
    let inode = import_host_path(&modules_root.join("lib"), &opts)?;
    put(&mut tree, "lib", inode)?;
    Ok(tree)
}

/// Three layers exercising the layer rules: whiteouts of files and directories, an opaque
/// directory, a directory re-created after its whiteout, hardlinks within and across layers,
/// symlinks, a device, a fifo, a setuid file, an xattr, a directory replaced by a file.
pub fn three_layers() -> Result<[Tree; 3]> {
    let mut l1 = Tree::new(MTIME);
    dir(&mut l1, "etc", 0o755)?;
    put(&mut l1, "etc/keep", text(0o644, "keep v1\n"))?;
    put(&mut l1, "etc/gone", text(0o644, "gone\n"))?;
    dir(&mut l1, "opaque", 0o750)?;
    put(&mut l1, "opaque/a", text(0o644, "a\n"))?;
    put(&mut l1, "opaque/sub/b", text(0o644, "b\n"))?;
    dir(&mut l1, "redo", 0o755)?;
    put(&mut l1, "redo/old", text(0o644, "old\n"))?;
    let shared = file(0o644, Content::inline(b"shared body\n".to_vec()));
    put(&mut l1, "hl/orig", shared.clone())?;
    put(&mut l1, "hl/link", shared)?;
    put(&mut l1, "sym", symlink("etc/keep"))?;
    put(
        &mut l1,
        "dev/null",
        Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o666, MTIME),
            kind: LeafKind::CharDevice { major: 1, minor: 3 },
        })),
    )?;
    put(
        &mut l1,
        "run/fifo",
        Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o600, MTIME),
            kind: LeafKind::Fifo,
        })),
    )?;
    put(&mut l1, "dir-to-file/child", text(0o644, "child\n"))?;

    let mut l2 = Tree::new(MTIME);
    put(&mut l2, "etc/.wh.gone", text(0o644, ""))?;
    put(&mut l2, "opaque/.wh..wh..opq", text(0o644, ""))?;
    put(&mut l2, "opaque/c", text(0o644, "c\n"))?;
    put(&mut l2, ".wh.redo", text(0o644, ""))?;
    put(&mut l2, "dir-to-file", text(0o600, "now a file\n"))?;
    put(&mut l2, "bin/su", text(0o4755, "setuid\n"))?;
    let mut xattr_leaf = Leaf {
        meta: Meta::root(0o644, MTIME),
        kind: LeafKind::File(Content::inline(b"with xattr\n".to_vec())),
    };
    xattr_leaf
        .meta
        .xattrs
        .insert("user.osbuild".into(), b"yes".to_vec());
    put(&mut l2, "etc/xattr", Inode::Leaf(Arc::new(xattr_leaf)))?;

    let mut l3 = Tree::new(MTIME);
    dir(&mut l3, "redo", 0o700)?;
    put(&mut l3, "redo/new", text(0o644, "new\n"))?;
    put(&mut l3, "etc/keep", text(0o600, "keep v3\n"))?;
    let v3 = file(0o755, Content::inline(b"tool\n".to_vec()));
    put(&mut l3, "usr/bin/tool", v3.clone())?;
    put(&mut l3, "usr/bin/tool-alias", v3)?;
    Ok([l1, l2, l3])
}

/// A small tree marking the architecture it stands for (multi-arch index fixtures).
pub fn arch_marker(arch: &str) -> Result<Tree> {
    let mut tree = Tree::new(MTIME);
    put(&mut tree, "etc/arch", text(0o644, &format!("{arch}\n")))?;
    Ok(tree)
}
