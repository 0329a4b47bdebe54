//! Turn a [`RootfsPlan`] and the flattened image trees into the root filesystem tree, laid out
//! as LinuxKit lays it out: `boot/` from the kernel image and `kernel.tar` at `/`, init images
//! at `/`, volumes and container bundles under `/containers`, then `files`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fixups::{Resolv, fix_image};
use super::plan::{BundlePlan, FileBody, FilePlan, ImageKey, KernelPlan, RootfsPlan};
use crate::tree::{
    Content, Directory, FromHostError, HostImport, Inode, Leaf, LeafKind, Meta, Tree, TreeError,
    TreePath, TreePathError, import_host_path_at, overlay_dir,
};

/// Why the root filesystem could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    /// The kernel image lacks the kernel binary.
    #[error("kernel image {image}: no kernel file at /{path} (set kernel.binary)")]
    NoKernel {
        /// The kernel image.
        image: String,
        /// Where the kernel was looked for.
        path: String,
    },
    /// The kernel image lacks the modules tarball.
    #[error("kernel image {image}: no kernel tarball at /{path} (set kernel.tar, or `none`)")]
    NoKernelTar {
        /// The kernel image.
        image: String,
        /// Where the tarball was looked for.
        path: String,
    },
    /// The microcode file named by the spec is missing.
    #[error("kernel image {image}: no microcode file at /{path}")]
    NoUcode {
        /// The kernel image.
        image: String,
        /// Where the microcode was looked for.
        path: String,
    },
    /// A path in the kernel section is not a valid path.
    #[error("kernel image {image}")]
    KernelPath {
        /// The kernel image.
        image: String,
        /// The path problem.
        #[source]
        source: TreePathError,
    },
    /// The modules tarball could not be applied.
    #[error("kernel image {image}: /{path}")]
    KernelTar {
        /// The kernel image.
        image: String,
        /// The tarball's path in the image.
        path: String,
        /// What went wrong.
        #[source]
        source: crate::flatten::FlattenError,
    },
    /// An entry could not be placed (a file stands where a directory is needed).
    #[error("{location}")]
    Place {
        /// What was being placed (`files[2]`, `services/redis`).
        location: String,
        /// The tree error.
        #[source]
        source: TreeError,
    },
    /// A `files` source could not be read.
    #[error("{location}")]
    Source {
        /// The files entry.
        location: String,
        /// The host error.
        #[source]
        source: FromHostError,
    },
    /// The plan names an image the build did not pull (a bug in the caller).
    #[error("image {0} was not pulled")]
    ImageMissing(String),
}

/// The images of a build, flattened, by the reference the spec wrote.
pub type ImageTrees = BTreeMap<ImageKey, Tree>;

/// Lay out the root filesystem for `plan`. `mtime` is the time of every generated entry.
pub fn assemble(plan: &RootfsPlan, images: &ImageTrees, mtime: i64) -> Result<Tree, AssembleError> {
    let mut root = Tree::new(mtime);
    let image = |key: &ImageKey| {
        images
            .get(key)
            .ok_or_else(|| AssembleError::ImageMissing(key.clone()))
    };
    if let Some(kernel) = &plan.kernel {
        add_kernel(&mut root, kernel, image(&kernel.image)?, mtime)?;
    }
    for key in &plan.init {
        let mut tree = image(key)?.clone();
        fix_image(&mut tree.root, Resolv::Symlink, mtime);
        overlay_dir(&mut root.root, tree.root);
    }
    let dir_meta = Meta::root(0o755, mtime);
    for volume in &plan.volumes {
        let base = format!("containers/volumes/{}", volume.name);
        let place = |source| AssembleError::Place {
            location: format!("volumes/{}", volume.name),
            source,
        };
        let lower = match (&volume.oci_layout, &volume.image) {
            (Some(layout), _) => layout.root.clone(),
            (None, Some(key)) => {
                let mut tree = image(key)?.clone();
                fix_image(&mut tree.root, Resolv::Symlink, mtime);
                tree.root
            }
            (None, None) => Directory::new(dir_meta.clone()),
        };
        put(
            &mut root,
            &format!("{base}/lower"),
            Inode::Directory(Box::new(lower)),
            &dir_meta,
        )
        .map_err(place)?;
        for sub in ["tmp", "merged"] {
            put(
                &mut root,
                &format!("{base}/{sub}"),
                empty_dir(&dir_meta),
                &dir_meta,
            )
            .map_err(place)?;
        }
    }
    for bundle in &plan.bundles {
        add_bundle(&mut root, bundle, image(&bundle.image)?, mtime)?;
    }
    for file in &plan.files {
        add_file(&mut root, file, mtime)?;
    }
    Ok(root)
}

fn empty_dir(meta: &Meta) -> Inode {
    Inode::Directory(Box::new(Directory::new(meta.clone())))
}

fn leaf(meta: Meta, kind: LeafKind) -> Inode {
    Inode::Leaf(Arc::new(Leaf { meta, kind }))
}

/// Put `inode` at `path` (a literal path made by this module), creating parents with `meta`.
fn put(tree: &mut Tree, path: &str, inode: Inode, meta: &Meta) -> Result<(), TreeError> {
    let path = TreePath::parse(path).map_err(|_| TreeError::NotFound { path: path.into() })?;
    tree.insert(&path, inode, meta).map(|_| ())
}

/// The regular file at `path` in `tree`, if there is one.
fn find_file(tree: &Tree, path: &str) -> Result<Option<Arc<Leaf>>, TreePathError> {
    let path = TreePath::parse(path)?;
    Ok(match tree.get(&path) {
        Some(Inode::Leaf(l)) if matches!(l.kind, LeafKind::File(_)) => Some(l.clone()),
        _ => None,
    })
}

fn add_kernel(
    root: &mut Tree,
    plan: &KernelPlan,
    image: &Tree,
    mtime: i64,
) -> Result<(), AssembleError> {
    let path_err = |source| AssembleError::KernelPath {
        image: plan.image.clone(),
        source,
    };
    let boot_meta = Meta::root(0o755, mtime);
    let place = |source| AssembleError::Place {
        location: "kernel".into(),
        source,
    };
    let kernel = find_file(image, &plan.binary)
        .map_err(path_err)?
        .ok_or_else(|| AssembleError::NoKernel {
            image: plan.image.clone(),
            path: plan.binary.clone(),
        })?;
    if let Some(tar) = &plan.tar {
        let tarball =
            find_file(image, tar)
                .map_err(path_err)?
                .ok_or_else(|| AssembleError::NoKernelTar {
                    image: plan.image.clone(),
                    path: tar.clone(),
                })?;
        if let LeafKind::File(content) = &tarball.kind {
            crate::flatten::apply_tar_content(root, content).map_err(|source| {
                AssembleError::KernelTar {
                    image: plan.image.clone(),
                    path: tar.clone(),
                    source,
                }
            })?;
        }
    }
    let kernel_meta = Meta {
        mtime,
        ..kernel.meta.clone()
    };
    put(
        root,
        "boot/kernel",
        leaf(kernel_meta, kernel.kind.clone()),
        &boot_meta,
    )
    .map_err(place)?;
    put(
        root,
        "boot/cmdline",
        leaf(
            Meta::root(0o644, mtime),
            LeafKind::File(Content::inline(plan.cmdline.as_bytes().to_vec())),
        ),
        &boot_meta,
    )
    .map_err(place)?;
    if let Some(ucode) = &plan.ucode {
        let file =
            find_file(image, ucode)
                .map_err(path_err)?
                .ok_or_else(|| AssembleError::NoUcode {
                    image: plan.image.clone(),
                    path: ucode.clone(),
                })?;
        let meta = Meta {
            mtime,
            ..file.meta.clone()
        };
        put(
            root,
            "boot/ucode.cpio",
            leaf(meta, file.kind.clone()),
            &boot_meta,
        )
        .map_err(place)?;
    }
    if let Some(boot) = root.get_dir_mut(&TreePath::parse("boot").map_err(path_err)?) {
        boot.meta = boot_meta;
    }
    Ok(())
}

fn add_bundle(
    root: &mut Tree,
    plan: &BundlePlan,
    image: &Tree,
    mtime: i64,
) -> Result<(), AssembleError> {
    let base = plan.path();
    let place = |source| AssembleError::Place {
        location: base.clone(),
        source,
    };
    let dir_meta = Meta::root(0o755, mtime);
    let mut tree = image.clone();
    fix_image(&mut tree.root, Resolv::Placeholder, mtime);
    let image_dir = if plan.readonly { "rootfs" } else { "lower" };
    put(
        root,
        &format!("{base}/{image_dir}"),
        Inode::Directory(Box::new(tree.root)),
        &dir_meta,
    )
    .map_err(place)?;
    if !plan.readonly {
        for sub in ["tmp", "rootfs"] {
            put(
                root,
                &format!("{base}/{sub}"),
                empty_dir(&dir_meta),
                &dir_meta,
            )
            .map_err(place)?;
        }
    }
    for (name, body) in [
        (osbuild_bundle::CONFIG_JSON, &plan.config_json),
        (osbuild_bundle::RUNTIME_JSON, &plan.runtime_json),
        (osbuild_bundle::SUPERVISE_JSON, &plan.supervise_json),
    ] {
        let file = leaf(
            Meta::root(0o644, mtime),
            LeafKind::File(Content::inline(body.clone())),
        );
        put(root, &format!("{base}/{name}"), file, &dir_meta).map_err(place)?;
    }
    Ok(())
}

/// LinuxKit's parent directory mode for a file's mode: each class that has any permission also
/// gets search permission.
fn parent_dir_mode(mode: u32) -> u32 {
    let mut dir = mode & 0o777;
    for (any, x) in [(0o700, 0o100), (0o070, 0o010), (0o007, 0o001)] {
        if dir & any != 0 {
            dir |= x;
        }
    }
    dir
}

fn add_file(root: &mut Tree, file: &FilePlan, mtime: i64) -> Result<(), AssembleError> {
    let place = |source| AssembleError::Place {
        location: file.location.clone(),
        source,
    };
    let meta = Meta {
        mode: file.mode & 0o7777,
        uid: file.uid,
        gid: file.gid,
        mtime,
        xattrs: BTreeMap::new(),
    };
    let parent_meta = Meta {
        mode: parent_dir_mode(file.mode),
        ..meta.clone()
    };
    let inode = match &file.body {
        FileBody::Directory => {
            // An existing directory keeps its entries and takes the new metadata.
            if let Some(dir) = root.get_dir_mut(&file.path) {
                dir.meta = meta;
                return Ok(());
            }
            empty_dir(&meta)
        }
        FileBody::Symlink(target) => leaf(meta, LeafKind::Symlink(target.into())),
        FileBody::Contents(bytes) => leaf(meta, LeafKind::File(Content::inline(bytes.clone()))),
        FileBody::Source { path, optional } => {
            let opts = HostImport {
                uid: file.uid,
                gid: file.gid,
                mtime,
            };
            match import_host_path_at(path, &opts, file.path.as_bytes().len()) {
                Ok(Inode::Leaf(l)) => leaf(meta, l.kind.clone()),
                Ok(Inode::Directory(mut d)) => {
                    d.meta = meta;
                    Inode::Directory(d)
                }
                Err(_) if *optional => return Ok(()),
                Err(source) => {
                    return Err(AssembleError::Source {
                        location: file.location.clone(),
                        source,
                    });
                }
            }
        }
    };
    root.insert(&file.path, inode, &parent_meta)
        .map_err(place)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rootfs::plan::{Section, VolumePlan};

    fn file_at<'a>(tree: &'a Tree, path: &str) -> &'a Arc<Leaf> {
        match tree.get(&TreePath::parse(path).unwrap()) {
            Some(Inode::Leaf(l)) => l,
            other => panic!("{path}: {other:?}"),
        }
    }

    fn text_at(tree: &Tree, path: &str) -> String {
        match &file_at(tree, path).kind {
            LeafKind::File(c) => String::from_utf8(c.read_to_vec().unwrap()).unwrap(),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn image(files: &[(&str, &str)]) -> Tree {
        let mut t = Tree::new(1);
        let meta = Meta::root(0o755, 1);
        for (p, body) in files {
            let inode = leaf(
                Meta::root(0o755, 1),
                LeafKind::File(Content::inline(body.as_bytes().to_vec())),
            );
            t.insert(&TreePath::parse(p).unwrap(), inode, &meta)
                .unwrap();
        }
        t
    }

    fn bundle(
        section: Section,
        index: usize,
        name: &str,
        image: &str,
        readonly: bool,
    ) -> BundlePlan {
        BundlePlan {
            section,
            dir_name: section.bundle_name(index, name),
            image: image.into(),
            readonly,
            config_json: format!("{{\"name\":\"{name}\"}}").into_bytes(),
            runtime_json: b"{}".to_vec(),
            supervise_json: b"{}\n".to_vec(),
        }
    }

    #[test]
    fn lays_out_init_bundles_volumes_and_files() {
        let mut images = ImageTrees::new();
        images.insert(
            "init:1".into(),
            image(&[("init", "#!/bin/sh"), ("bin/a", "a1")]),
        );
        images.insert("init:2".into(), image(&[("bin/a", "a2")]));
        images.insert("svc:1".into(), image(&[("bin/svc", "svc")]));
        let plan = RootfsPlan {
            kernel: None,
            init: vec!["init:1".into(), "init:2".into()],
            volumes: vec![VolumePlan {
                name: "data".into(),
                image: None,
                oci_layout: None,
            }],
            bundles: vec![
                bundle(Section::Onboot, 0, "setup", "svc:1", true),
                bundle(Section::Services, 0, "web", "svc:1", false),
            ],
            files: vec![FilePlan {
                path: TreePath::parse("etc/app/conf").unwrap(),
                body: FileBody::Contents(b"x=1".to_vec()),
                mode: 0o640,
                uid: 100,
                gid: 101,
                location: "files[0]".into(),
            }],
        };
        let t = assemble(&plan, &images, 42).unwrap();
        assert_eq!(text_at(&t, "bin/a"), "a2", "later init images win");
        assert_eq!(text_at(&t, "init"), "#!/bin/sh");
        assert!(matches!(
            file_at(&t, "etc/resolv.conf").kind,
            LeafKind::Symlink(_)
        ));
        assert_eq!(
            text_at(&t, "containers/onboot/000-setup/rootfs/bin/svc"),
            "svc"
        );
        assert_eq!(
            text_at(&t, "containers/onboot/000-setup/config.json"),
            "{\"name\":\"setup\"}"
        );
        assert_eq!(text_at(&t, "containers/services/web/lower/bin/svc"), "svc");
        for d in [
            "containers/services/web/tmp",
            "containers/services/web/rootfs",
        ] {
            let dir = t.get_dir(&TreePath::parse(d).unwrap()).unwrap();
            assert!(dir.entries.is_empty(), "{d} is empty");
        }
        assert!(
            t.get_dir(&TreePath::parse("containers/volumes/data/merged").unwrap())
                .is_some()
        );
        // The same image used twice shares its files (written once, as hardlinks).
        assert!(Arc::ptr_eq(
            file_at(&t, "containers/onboot/000-setup/rootfs/bin/svc"),
            file_at(&t, "containers/services/web/lower/bin/svc"),
        ));
        let conf = file_at(&t, "etc/app/conf");
        assert_eq!(
            (
                conf.meta.mode,
                conf.meta.uid,
                conf.meta.gid,
                conf.meta.mtime
            ),
            (0o640, 100, 101, 42)
        );
        let app = t.get_dir(&TreePath::parse("etc/app").unwrap()).unwrap();
        assert_eq!(
            app.meta.mode, 0o750,
            "new parents get search permission where readable"
        );
    }

    #[test]
    fn every_bundle_gets_its_supervise_json() {
        let spec = crate::spec::load_str(
            "onboot:\n  - {name: setup, image: svc:1, timeout: 500ms}\n  - {name: plain, image: svc:1}\nonshutdown:\n  - {name: save, image: svc:1, timeout: 1m30s}\nservices:\n  - {name: db, image: svc:1, restart: on-failure}\n  - {name: web, image: svc:1, restart: no, dependsOn: [db]}\n",
            std::path::Path::new("s.yml"),
            0,
        )
        .unwrap();
        let mut images = ImageTrees::new();
        images.insert("svc:1".into(), image(&[("bin/svc", "svc")]));
        let mut plan = RootfsPlan::default();
        for (section, list) in [
            (Section::Onboot, &spec.onboot),
            (Section::Onshutdown, &spec.onshutdown),
            (Section::Services, &spec.services),
        ] {
            for (i, c) in list.iter().enumerate() {
                let mut b = bundle(section, i, c.name(), "svc:1", true);
                b.supervise_json = crate::rootfs::supervise_json::supervise_json(c).unwrap();
                plan.bundles.push(b);
            }
        }
        let t = assemble(&plan, &images, 42).unwrap();
        for (bundle, want) in [
            ("onboot/000-setup", "{\n    \"timeout\": 0.5\n}\n"),
            ("onboot/001-plain", "{}\n"),
            ("onshutdown/000-save", "{\n    \"timeout\": 90.0\n}\n"),
            ("services/db", "{\n    \"restart\": \"on-failure\"\n}\n"),
            (
                "services/web",
                "{\n    \"restart\": \"no\",\n    \"dependsOn\": [\n        \"db\"\n    ]\n}\n",
            ),
        ] {
            let path = format!("containers/{bundle}/supervise.json");
            assert_eq!(text_at(&t, &path), want, "{path}");
            let meta = &file_at(&t, &path).meta;
            let config = &file_at(&t, &format!("containers/{bundle}/config.json")).meta;
            assert_eq!(
                (meta.mode, meta.uid, meta.gid, meta.mtime),
                (config.mode, config.uid, config.gid, config.mtime),
                "{path}: like config.json"
            );
            assert_eq!((meta.mode, meta.mtime), (0o644, 42));
        }
    }

    #[test]
    fn kernel_without_binary_names_image_and_path() {
        let mut images = ImageTrees::new();
        images.insert("k:1".into(), image(&[("vmlinuz", "k")]));
        let plan = RootfsPlan {
            kernel: Some(KernelPlan {
                image: "k:1".into(),
                binary: "kernel".into(),
                tar: None,
                ucode: None,
                cmdline: "console=ttyS0".into(),
            }),
            ..RootfsPlan::default()
        };
        let err = assemble(&plan, &images, 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel image k:1: no kernel file at /kernel (set kernel.binary)"
        );
    }

    #[test]
    fn kernel_files_go_to_boot() {
        let mut images = ImageTrees::new();
        images.insert(
            "k:1".into(),
            image(&[("kernel", "bzImage"), ("ucode.cpio", "uc")]),
        );
        let plan = RootfsPlan {
            kernel: Some(KernelPlan {
                image: "k:1".into(),
                binary: "kernel".into(),
                tar: None,
                ucode: Some("ucode.cpio".into()),
                cmdline: "console=ttyS0".into(),
            }),
            ..RootfsPlan::default()
        };
        let t = assemble(&plan, &images, 9).unwrap();
        assert_eq!(text_at(&t, "boot/kernel"), "bzImage");
        assert_eq!(text_at(&t, "boot/cmdline"), "console=ttyS0");
        assert_eq!(text_at(&t, "boot/ucode.cpio"), "uc");
        assert_eq!(file_at(&t, "boot/kernel").meta.mtime, 9);
    }

    #[test]
    fn missing_optional_source_is_skipped_and_required_one_fails() {
        let mut plan = RootfsPlan::default();
        let mut file = FilePlan {
            path: TreePath::parse("etc/x").unwrap(),
            body: FileBody::Source {
                path: "/nonexistent/osbuild".into(),
                optional: true,
            },
            mode: 0o600,
            uid: 0,
            gid: 0,
            location: "files[0]".into(),
        };
        plan.files.push(file.clone());
        let t = assemble(&plan, &ImageTrees::new(), 0).unwrap();
        assert!(t.get(&TreePath::parse("etc/x").unwrap()).is_none());
        file.body = FileBody::Source {
            path: "/nonexistent/osbuild".into(),
            optional: false,
        };
        plan.files = vec![file];
        let err = assemble(&plan, &ImageTrees::new(), 0).unwrap_err();
        assert!(
            crate::error::chain(&err).starts_with("files[0]: /nonexistent/osbuild: "),
            "{err}"
        );
    }

    #[test]
    fn parent_modes_follow_linuxkit() {
        assert_eq!(parent_dir_mode(0o600), 0o700);
        assert_eq!(parent_dir_mode(0o644), 0o755);
        assert_eq!(parent_dir_mode(0o640), 0o750);
        assert_eq!(parent_dir_mode(0o000), 0o000);
    }
}
