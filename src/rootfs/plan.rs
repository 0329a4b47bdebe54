//! What goes into the root filesystem, decided from the spec before any image is read: a plain
//! description that [`assemble`](super::assemble) turns into a tree.

use std::path::PathBuf;

use crate::tree::TreePath;

/// Names an image the build pulled (the reference exactly as the spec wrote it).
pub type ImageKey = String;

/// The kernel: which files of the kernel image to use and the command line.
#[derive(Debug, Clone)]
pub struct KernelPlan {
    /// The kernel image.
    pub image: ImageKey,
    /// Path of the kernel binary inside the image (LinuxKit's `binary`, default `kernel`).
    pub binary: String,
    /// Path of the modules tarball inside the image (default `kernel.tar`), `None` for `none`.
    pub tar: Option<String>,
    /// Path of the CPU microcode cpio inside the image, if any.
    pub ucode: Option<String>,
    /// The kernel command line.
    pub cmdline: String,
}

/// The section a container belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    /// Run once at boot, in order.
    Onboot,
    /// Run once at shutdown, in order.
    Onshutdown,
    /// Long-running.
    Services,
}

impl Section {
    /// The directory name under `/containers`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Section::Onboot => "onboot",
            Section::Onshutdown => "onshutdown",
            Section::Services => "services",
        }
    }

    /// The bundle directory name of container `index` called `name` in this section
    /// (`000-name` for the ordered sections, `name` for services).
    pub fn bundle_name(self, index: usize, name: &str) -> String {
        match self {
            Section::Onboot | Section::Onshutdown => format!("{index:03}-{name}"),
            Section::Services => name.to_string(),
        }
    }
}

/// One container bundle under `/containers/SECTION/NAME`.
#[derive(Debug, Clone)]
pub struct BundlePlan {
    /// Its section.
    pub section: Section,
    /// Its directory name (`000-name` or `name`).
    pub dir_name: String,
    /// The image whose filesystem it runs.
    pub image: ImageKey,
    /// Read-only root (`rootfs/`) or writable (`lower/` + overlay at boot).
    pub readonly: bool,
    /// The OCI runtime `config.json`.
    pub config_json: Vec<u8>,
    /// LinuxKit's `runtime.json`.
    pub runtime_json: Vec<u8>,
    /// `supervise.json`: the spec's `timeout`, `restart` and `dependsOn` for the init.
    pub supervise_json: Vec<u8>,
}

impl BundlePlan {
    /// `containers/SECTION/NAME`.
    pub fn path(&self) -> String {
        format!("containers/{}/{}", self.section.dir_name(), self.dir_name)
    }
}

/// A volume under `/containers/volumes/NAME` (`lower/` from an optional image, `tmp/`, `merged/`).
#[derive(Debug, Clone)]
pub struct VolumePlan {
    /// The volume's name.
    pub name: String,
    /// The image filling `lower/`, if any.
    pub image: Option<ImageKey>,
    /// For `format: oci`, the OCI image layout to place in `lower/` instead of the image's
    /// filesystem.
    pub oci_layout: Option<crate::tree::Tree>,
}

/// What a `files:` entry makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileBody {
    /// A directory.
    Directory,
    /// A symbolic link to the target.
    Symlink(String),
    /// A regular file with these bytes (`contents` or `metadata`).
    Contents(Vec<u8>),
    /// A regular file or directory tree copied from the host.
    Source {
        /// Host path, symlinks resolved: a regular file or a directory when it was planned.
        path: PathBuf,
        /// Skip silently when it cannot be read (the plan made from a spec resolves `optional`
        /// sources itself and leaves this false).
        optional: bool,
    },
}

/// One `files:` entry.
#[derive(Debug, Clone)]
pub struct FilePlan {
    /// Where it goes.
    pub path: TreePath,
    /// What it is.
    pub body: FileBody,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Where the entry is in the spec (`spec.yml:12:11: files[3]`), for errors.
    pub location: String,
}

/// Everything the root filesystem is made of, in the order it is laid out.
#[derive(Debug, Clone, Default)]
pub struct RootfsPlan {
    /// The kernel, if the spec has one.
    pub kernel: Option<KernelPlan>,
    /// Init images, flattened at `/` in order.
    pub init: Vec<ImageKey>,
    /// Volumes.
    pub volumes: Vec<VolumePlan>,
    /// Container bundles: onboot, onshutdown, then services.
    pub bundles: Vec<BundlePlan>,
    /// `files:` entries, last.
    pub files: Vec<FilePlan>,
}
