//! The output formats a build can write, LinuxKit's names and file names:
//! `kernel+initrd` (NAME-kernel, NAME-initrd.img with the microcode cpio prepended, NAME-cmdline),
//! `tar-kernel-initrd` (NAME-initrd.tar holding kernel, initrd.img, cmdline, ucode.cpio) and
//! `tar` (NAME.tar, the whole root filesystem including `boot/`).

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use super::atomic::StagedOutputs;
use super::compress::{Compression, Compressor};
use super::cpio::{CpioOptions, write_cpio};
use super::tar::{TarOptions, write_tar};
use super::{OutputError, copy_content};
use crate::tree::{BlobFile, Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// Kernel, initrd and command line as three files.
    KernelInitrd,
    /// The same three (and the microcode) in one tar.
    TarKernelInitrd,
    /// The root filesystem as a tar.
    Tar,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "kernel+initrd" => Ok(Format::KernelInitrd),
            "tar-kernel-initrd" => Ok(Format::TarKernelInitrd),
            "tar" => Ok(Format::Tar),
            other => Err(format!(
                "unknown output format {other:?}: use kernel+initrd, tar-kernel-initrd or tar"
            )),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::KernelInitrd => "kernel+initrd",
            Format::TarKernelInitrd => "tar-kernel-initrd",
            Format::Tar => "tar",
        })
    }
}

/// Where and how outputs are written.
#[derive(Debug, Clone)]
pub struct OutputRequest {
    /// Directory for the outputs.
    pub dir: PathBuf,
    /// Base name of the outputs.
    pub name: String,
    /// A single-file output's path instead of the default name; `-` means standard output.
    pub output: Option<PathBuf>,
    /// Initrd compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: later mtimes are clamped to it.
    pub mtime_clamp: Option<i64>,
    /// The mtime of entries the writers generate.
    pub mtime: i64,
}

/// The boot files split out of the root filesystem for kernel+initrd outputs.
const KERNEL: &str = "boot/kernel";
const CMDLINE: &str = "boot/cmdline";
const UCODE: &str = "boot/ucode.cpio";

fn boot_file(tree: &Tree, path: &str) -> Option<Content> {
    let path = TreePath::parse(path).ok()?;
    match tree.get(&path)? {
        Inode::Leaf(l) => match &l.kind {
            LeafKind::File(c) => Some(c.clone()),
            _ => None,
        },
        Inode::Directory(_) => None,
    }
}

/// Whether `path` stays in the initrd: everything but the split-out boot files (and `boot/`
/// itself when nothing else is in it).
fn in_initrd(tree: &Tree) -> impl Fn(&TreePath) -> bool + '_ {
    let split: Vec<TreePath> = [KERNEL, CMDLINE, UCODE]
        .iter()
        .filter_map(|p| TreePath::parse(p).ok())
        .collect();
    let boot = TreePath::parse("boot").unwrap_or_default();
    let boot_only_split = tree.get_dir(&boot).is_some_and(|d| {
        d.entries
            .keys()
            .all(|n| ["kernel", "cmdline", "ucode.cpio"].iter().any(|s| n == *s))
    });
    move |p: &TreePath| !(split.contains(p) || (boot_only_split && *p == boot))
}

/// Write the initrd: the microcode cpio as is, then the compressed cpio of the root filesystem.
fn write_initrd<W: Write + Send + 'static>(
    tree: &Tree,
    out: W,
    req: &OutputRequest,
) -> Result<W, OutputError> {
    let err = |source| OutputError::Write {
        path: "initrd".into(),
        source,
    };
    let mut out = out;
    if let Some(ucode) = boot_file(tree, UCODE) {
        let mut buf = vec![0u8; 1 << 16];
        copy_content(&ucode, &mut out, &mut buf, UCODE)?;
    }
    let mut compressor = Compressor::new(req.compression, out).map_err(err)?;
    let keep = in_initrd(tree);
    let opts = CpioOptions {
        mtime_clamp: req.mtime_clamp,
        filter: Some(&keep),
    };
    write_cpio(tree, &mut compressor, &opts)?;
    compressor.finish().map_err(err)
}

fn require(tree: &Tree, path: &str, format: Format) -> Result<Content, OutputError> {
    boot_file(tree, path).ok_or_else(|| {
        OutputError::Usage(format!(
            "the {format} output needs a kernel: the spec has no kernel section (or /{path} is missing)"
        ))
    })
}

fn write_content(
    staged: &mut StagedOutputs,
    dest: &Path,
    content: &Content,
) -> Result<(), OutputError> {
    let mut file = BufWriter::new(staged.create(dest)?);
    let mut buf = vec![0u8; 1 << 20];
    copy_content(content, &mut file, &mut buf, &dest.display().to_string())?;
    file.flush().map_err(|source| OutputError::File {
        path: dest.display().to_string(),
        source,
    })
}

/// Write `formats` of `tree` as asked; returns the files written (nothing for standard output).
/// Either every output appears or none does.
pub fn write_outputs(
    tree: &Tree,
    formats: &[Format],
    req: &OutputRequest,
) -> Result<Vec<PathBuf>, OutputError> {
    if req.output.is_some() && formats.len() != 1 {
        return Err(OutputError::Usage(
            "-o names one output: give exactly one --format".into(),
        ));
    }
    if req.output.as_deref() == Some(Path::new("-")) {
        let format = formats[0];
        let stdout = io::stdout();
        let mut lock = BufWriter::new(stdout.lock());
        match format {
            Format::Tar => {
                write_tar(
                    tree,
                    &mut lock,
                    &TarOptions {
                        mtime_clamp: req.mtime_clamp,
                        filter: None,
                    },
                )?;
            }
            Format::TarKernelInitrd => {
                let scratch = tempfile::tempdir().map_err(|source| OutputError::File {
                    path: std::env::temp_dir().display().to_string(),
                    source,
                })?;
                let kernel_tar = build_kernel_initrd_tree(tree, scratch.path(), req)?;
                write_tar(&kernel_tar, &mut lock, &TarOptions::default())?;
            }
            Format::KernelInitrd => {
                return Err(OutputError::Usage(
                    "kernel+initrd is three files and cannot go to standard output: use tar-kernel-initrd".into(),
                ));
            }
        }
        lock.flush().map_err(|source| OutputError::File {
            path: "standard output".into(),
            source,
        })?;
        return Ok(Vec::new());
    }
    let base = req.dir.join(&req.name);
    let with_suffix = |suffix: &str| -> PathBuf {
        match &req.output {
            Some(out) => out.clone(),
            None => PathBuf::from(format!("{}{suffix}", base.display())),
        }
    };
    let mut staged = StagedOutputs::new();
    for format in formats {
        match format {
            Format::KernelInitrd => {
                let kernel = require(tree, KERNEL, *format)?;
                let cmdline = boot_file(tree, CMDLINE).unwrap_or(Content::inline(Vec::new()));
                if req.output.is_some() {
                    return Err(OutputError::Usage(
                        "kernel+initrd is three files: use --name and --dir instead of -o".into(),
                    ));
                }
                write_content(&mut staged, &with_suffix("-kernel"), &kernel)?;
                write_content(&mut staged, &with_suffix("-cmdline"), &cmdline)?;
                let dest = with_suffix("-initrd.img");
                let file = BufWriter::with_capacity(1 << 20, staged.create(&dest)?);
                let mut file = write_initrd(tree, file, req)?;
                file.flush().map_err(|source| OutputError::File {
                    path: dest.display().to_string(),
                    source,
                })?;
            }
            Format::TarKernelInitrd => {
                let dest = with_suffix("-initrd.tar");
                let scratch = tempfile::tempdir_in(dest.parent().unwrap_or(Path::new(".")))
                    .map_err(|source| OutputError::File {
                        path: dest.display().to_string(),
                        source,
                    })?;
                let kernel_tar = build_kernel_initrd_tree(tree, scratch.path(), req)?;
                let mut file = BufWriter::with_capacity(1 << 20, staged.create(&dest)?);
                write_tar(&kernel_tar, &mut file, &TarOptions::default())?;
                file.flush().map_err(|source| OutputError::File {
                    path: dest.display().to_string(),
                    source,
                })?;
            }
            Format::Tar => {
                let dest = with_suffix(".tar");
                let mut file = BufWriter::with_capacity(1 << 20, staged.create(&dest)?);
                write_tar(
                    tree,
                    &mut file,
                    &TarOptions {
                        mtime_clamp: req.mtime_clamp,
                        filter: None,
                    },
                )?;
                file.flush().map_err(|source| OutputError::File {
                    path: dest.display().to_string(),
                    source,
                })?;
            }
        }
    }
    staged.commit()
}

/// The small tree of the tar-kernel-initrd format; the initrd is written to `scratch` first.
fn build_kernel_initrd_tree(
    tree: &Tree,
    scratch: &Path,
    req: &OutputRequest,
) -> Result<Tree, OutputError> {
    let format = Format::TarKernelInitrd;
    let kernel = require(tree, KERNEL, format)?;
    let cmdline = boot_file(tree, CMDLINE).unwrap_or(Content::inline(Vec::new()));
    let initrd_path = scratch.join("initrd.img");
    let file = File::create(&initrd_path).map_err(|source| OutputError::File {
        path: initrd_path.display().to_string(),
        source,
    })?;
    // The microcode travels beside the initrd in this format, not inside it.
    let mut no_ucode = tree.clone();
    let ucode = boot_file(tree, UCODE);
    if let Ok(p) = TreePath::parse(UCODE) {
        let _ = no_ucode.remove(&p);
    }
    let mut file = write_initrd(&no_ucode, BufWriter::new(file), req)?;
    file.flush().map_err(|source| OutputError::File {
        path: initrd_path.display().to_string(),
        source,
    })?;
    let initrd_len = std::fs::metadata(&initrd_path)
        .map_err(|source| OutputError::File {
            path: initrd_path.display().to_string(),
            source,
        })?
        .len();
    let mut out = Tree::new(req.mtime);
    let meta = Meta::root(0o644, req.mtime);
    let mut add = |name: &str, content: Content| {
        let leaf = Inode::Leaf(Arc::new(Leaf {
            meta: meta.clone(),
            kind: LeafKind::File(content),
        }));
        if let Ok(p) = TreePath::parse(name) {
            let _ = out.insert(&p, leaf, &meta);
        }
    };
    add("kernel", kernel);
    add(
        "initrd.img",
        Content::Extent {
            file: BlobFile::new(&initrd_path),
            offset: 0,
            len: initrd_len,
        },
    );
    add("cmdline", cmdline);
    if let Some(ucode) = ucode {
        add("ucode.cpio", ucode);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> Tree {
        let mut t = Tree::new(0);
        let meta = Meta::root(0o755, 0);
        for (p, body) in [
            (KERNEL, "KERNEL"),
            (CMDLINE, "console=ttyS0"),
            ("init", "#!/bin/sh\n"),
        ] {
            let leaf = Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o755, 0),
                kind: LeafKind::File(Content::inline(body.as_bytes().to_vec())),
            }));
            t.insert(&TreePath::parse(p).unwrap(), leaf, &meta).unwrap();
        }
        t
    }

    fn request(dir: &Path) -> OutputRequest {
        OutputRequest {
            dir: dir.to_owned(),
            name: "img".into(),
            output: None,
            compression: Compression::None,
            mtime_clamp: None,
            mtime: 0,
        }
    }

    #[test]
    fn kernel_initrd_splits_boot_files_out() {
        let dir = tempfile::tempdir().unwrap();
        let written =
            write_outputs(&rootfs(), &[Format::KernelInitrd], &request(dir.path())).unwrap();
        assert_eq!(written.len(), 3);
        assert_eq!(
            std::fs::read(dir.path().join("img-kernel")).unwrap(),
            b"KERNEL"
        );
        assert_eq!(
            std::fs::read(dir.path().join("img-cmdline")).unwrap(),
            b"console=ttyS0"
        );
        let initrd = std::fs::read(dir.path().join("img-initrd.img")).unwrap();
        let text = String::from_utf8_lossy(&initrd);
        assert!(text.contains("init\0"));
        assert!(!text.contains("boot"), "boot/ is not in the initrd");
    }

    #[test]
    fn no_kernel_is_a_clear_error_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = rootfs();
        t.remove(&TreePath::parse(KERNEL).unwrap()).unwrap();
        let err = write_outputs(
            &t,
            &[Format::Tar, Format::KernelInitrd],
            &request(dir.path()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("needs a kernel"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn tar_kernel_initrd_holds_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        write_outputs(&rootfs(), &[Format::TarKernelInitrd], &request(dir.path())).unwrap();
        let f = File::open(dir.path().join("img-initrd.tar")).unwrap();
        let names: Vec<String> = tar::Archive::new(f)
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["cmdline", "initrd.img", "kernel"]);
    }
}
