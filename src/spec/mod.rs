//! The YAML spec: LinuxKit's schema (every key, `docs/spec.md`), read with locations so every
//! mistake is reported as `file:line:column: key.path: message`, merged across files, and
//! validated before anything is pulled.

mod capabilities;
mod ids;
mod label;
mod load;
mod merge;
mod node;
mod refs;
mod scalar;
mod sources;
mod supervise;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use capabilities::{all_capabilities, is_known_capability};
pub use ids::IdMap;
pub use label::resolve_image_config;
pub use load::{LoadedSpec, SpecError, load, load_str, load_within, parse_located};
pub use merge::merge;
pub use refs::{ImageRef, ImageUse, pin_images};
pub use scalar::{IdRef, Mode};
pub use sources::{host_path, resolve_source};
pub use supervise::{Restart, Timeout};
pub use validate::{Rlimit, parse_rlimit};

/// A value with the place it was written (line and column; zero when it came from JSON).
pub type Loc<T> = serde_saphyr::Spanned<T>;

/// The prefix of package references in image fields.
pub const PKG_PREFIX: &str = "@pkg:";

/// A whole spec (one file, or several merged).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The kernel.
    #[serde(
        default,
        deserialize_with = "node::one",
        skip_serializing_if = "Option::is_none"
    )]
    pub kernel: Option<KernelSpec>,
    /// Init images, flattened at `/` in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub init: Vec<Loc<String>>,
    /// Containers run once at boot, in order.
    #[serde(
        default,
        deserialize_with = "node::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub onboot: Vec<ImageSpec>,
    /// Containers run once at shutdown, in order.
    #[serde(
        default,
        deserialize_with = "node::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub onshutdown: Vec<ImageSpec>,
    /// Long-running containers.
    #[serde(
        default,
        deserialize_with = "node::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub services: Vec<ImageSpec>,
    /// Files added to the root filesystem.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Volumes under `/containers/volumes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeSpec>,
    /// Obsolete (content trust): accepted with a warning, ignored.
    #[serde(default, skip_serializing)]
    pub trust: Option<TrustSpec>,
    /// Output formats written when the command line names none (the moby-era `outputs:` list).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<OutputSpec>,
    /// The images boot loaders are taken from, for the disk and ISO formats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot: Option<BootSpec>,
    /// Which spec file each `init` entry came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub init_files: Vec<usize>,
}

/// The `kernel` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// Which spec file this came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub file: usize,
    /// Where the section was written in that file (its first key); `None` when it was not
    /// read from YAML.
    #[serde(skip)]
    pub at: Option<Loc<()>>,
    /// The kernel image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Loc<String>>,
    /// The kernel command line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Path of the kernel inside the image (default `kernel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    /// Path of the modules tarball (default `kernel.tar`; `none` for none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tar: Option<String>,
    /// Path of a CPU microcode cpio inside the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ucode: Option<String>,
}

/// An `outputs:` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// Which spec file this came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub file: usize,
    /// The format's name (`kernel+initrd`, `raw-efi`, ...).
    pub format: Loc<String>,
}

/// The `boot` section: images holding the boot loaders the disk and ISO formats install.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {
    /// Which spec file `efi` came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub efi_file: usize,
    /// Which spec file `bios` came from.
    #[serde(skip)]
    pub bios_file: usize,
    /// The image with systemd's EFI stubs (`usr/lib/systemd/boot/efi/linux*.efi.stub`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub efi: Option<Loc<String>>,
    /// The image with syslinux's BIOS loaders (`usr/lib/ISOLINUX`, `usr/lib/syslinux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bios: Option<Loc<String>>,
}

/// The obsolete `trust` section.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TrustSpec {
    /// Trusted images.
    #[serde(default)]
    pub image: Vec<String>,
    /// Trusted organisations.
    #[serde(default)]
    pub org: Vec<String>,
}

/// A mount (OCI runtime-spec style).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// Where it is mounted in the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// Filesystem type.
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// Mount options.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// User id mappings of an idmapped mount.
    #[serde(
        default,
        rename = "uidMappings",
        alias = "uidmappings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub uid_mappings: Vec<IdMapping>,
    /// Group id mappings of an idmapped mount.
    #[serde(
        default,
        rename = "gidMappings",
        alias = "gidmappings",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gid_mappings: Vec<IdMapping>,
}

/// A user or group id mapping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdMapping {
    /// First id on the host.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// First id in the container.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// How many ids.
    pub size: u32,
}

/// A device node created in the container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// Path in the container, or `all` to allow every device of `type`.
    pub path: String,
    /// `c`, `b`, `u` or `p` (`a` with `all`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Major number.
    #[serde(default)]
    pub major: i64,
    /// Minor number.
    #[serde(default)]
    pub minor: i64,
    /// Octal permissions (string).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Loc<Mode>>,
}

/// A network interface the init sets up for a container (LinuxKit's runtime config).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceSpec {
    /// Name in the container.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Create an interface of this type (e.g. `veth`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub add: String,
    /// The veth peer's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Create it in the root namespace and move it.
    #[serde(default, rename = "createInRoot")]
    pub create_in_root: bool,
}

/// Namespaces to bind-mount somewhere once the container runs.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BindNsSpec {
    /// cgroup namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    /// IPC namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// Mount namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mnt: Option<String>,
    /// Network namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    /// PID namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// User namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// UTS namespace path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
}

/// LinuxKit's runtime config: what the init does around a container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSpec {
    /// cgroups to create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroups: Option<Vec<String>>,
    /// Mounts made before the container starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountSpec>>,
    /// Directories created before the container starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mkdir: Option<Vec<String>>,
    /// Network interfaces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<InterfaceSpec>>,
    /// Namespaces to bind-mount.
    #[serde(default, rename = "bindNS", skip_serializing_if = "Option::is_none")]
    pub bind_ns: Option<BindNsSpec>,
    /// containerd namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// An onboot, onshutdown or service container, or the body of an image's LinuxKit label.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Which spec file this came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub file: usize,
    /// Where the entry was written in that file (its first key); `None` in a label or when
    /// it was not read from YAML.
    #[serde(skip)]
    pub at: Option<Loc<()>>,
    /// Container name (required in a spec, forbidden in a label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Loc<String>>,
    /// Image reference (required in a spec, forbidden in a label).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Loc<String>>,
    /// Capabilities (replace the label's; `all` or `none` alone are special).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<Vec<Loc<String>>>,
    /// Capabilities added to the label's.
    #[serde(
        default,
        rename = "capabilities.add",
        skip_serializing_if = "Option::is_none"
    )]
    pub capabilities_add: Option<Vec<Loc<String>>>,
    /// Ambient capabilities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambient: Option<Vec<Loc<String>>>,
    /// Mounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mounts: Option<Vec<MountSpec>>,
    /// Bind mounts `src:dst[:opts]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binds: Option<Vec<Loc<String>>>,
    /// Bind mounts added to the label's.
    #[serde(default, rename = "binds.add", skip_serializing_if = "Option::is_none")]
    pub binds_add: Option<Vec<Loc<String>>>,
    /// Device nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<Vec<DeviceSpec>>,
    /// tmpfs mounts `dst[:opts]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<Vec<Loc<String>>>,
    /// The command (replaces Entrypoint and Cmd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Environment (replaces the image's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Network namespace: `host`, `new`, `none` or a path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    /// PID namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    /// IPC namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    /// UTS namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// User namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns: Option<String>,
    /// Host name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Read-only root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly: Option<bool>,
    /// Paths masked in the container.
    #[serde(
        default,
        rename = "maskedPaths",
        skip_serializing_if = "Option::is_none"
    )]
    pub masked_paths: Option<Vec<String>>,
    /// Paths made read-only in the container.
    #[serde(
        default,
        rename = "readonlyPaths",
        skip_serializing_if = "Option::is_none"
    )]
    pub readonly_paths: Option<Vec<String>>,
    /// User: a number or a container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Loc<IdRef>>,
    /// Group: a number or a container name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<Loc<IdRef>>,
    /// Supplementary groups.
    #[serde(
        default,
        rename = "additionalGids",
        skip_serializing_if = "Option::is_none"
    )]
    pub additional_gids: Option<Vec<Loc<IdRef>>>,
    /// Set no_new_privs.
    #[serde(
        default,
        rename = "noNewPrivileges",
        skip_serializing_if = "Option::is_none"
    )]
    pub no_new_privileges: Option<bool>,
    /// OOM score adjustment.
    #[serde(
        default,
        rename = "oomScoreAdj",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_score_adj: Option<i32>,
    /// Root filesystem propagation.
    #[serde(
        default,
        rename = "rootfsPropagation",
        skip_serializing_if = "Option::is_none"
    )]
    pub rootfs_propagation: Option<String>,
    /// cgroup path.
    #[serde(
        default,
        rename = "cgroupsPath",
        skip_serializing_if = "Option::is_none"
    )]
    pub cgroups_path: Option<String>,
    /// cgroup resources (OCI `LinuxResources`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<oci_spec::runtime::LinuxResources>,
    /// sysctls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sysctl: Option<BTreeMap<String, String>>,
    /// `name,soft,hard` resource limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rlimits: Option<Vec<Loc<String>>>,
    /// User namespace uid mappings.
    #[serde(
        default,
        rename = "uidMappings",
        skip_serializing_if = "Option::is_none"
    )]
    pub uid_mappings: Option<Vec<IdMapping>>,
    /// User namespace gid mappings.
    #[serde(
        default,
        rename = "gidMappings",
        skip_serializing_if = "Option::is_none"
    )]
    pub gid_mappings: Option<Vec<IdMapping>>,
    /// OCI annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// LinuxKit runtime config.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<RuntimeSpec>,
    /// Supervision (spec only, never from a label; onboot and onshutdown): kill the container
    /// after this long and go on.
    #[serde(
        default,
        deserialize_with = "supervise::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub timeout: Option<Loc<Timeout>>,
    /// Supervision (spec only; services): when to restart the service (default `always`).
    #[serde(
        default,
        deserialize_with = "supervise::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub restart: Option<Loc<Restart>>,
    /// Supervision (spec only; services): services to start before this one.
    #[serde(
        default,
        rename = "dependsOn",
        deserialize_with = "supervise::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub depends_on: Option<Vec<Loc<String>>>,
}

impl ImageSpec {
    /// The container name (empty in a label).
    pub fn name(&self) -> &str {
        self.name.as_ref().map_or("", |n| n.value.as_str())
    }

    /// The image reference as written (empty in a label).
    pub fn image(&self) -> &str {
        self.image.as_ref().map_or("", |n| n.value.as_str())
    }
}

/// A `files:` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Which spec file this came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub file: usize,
    /// Path in the image.
    pub path: Loc<String>,
    /// A directory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub directory: bool,
    /// A symlink to this target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink: Option<String>,
    /// Literal contents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contents: Option<String>,
    /// A host file or directory to copy (`~/` expanded), relative to the spec's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Loc<String>>,
    /// Skip silently when `source` is unreadable.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
    /// The resolved spec as `yaml` or `json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Loc<String>>,
    /// Octal mode (a string: `"0644"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<Loc<Mode>>,
    /// Owner: a number, a container name or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Loc<IdRef>>,
    /// Group: a number, a container name or `root`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<Loc<IdRef>>,
}

/// A `volumes:` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Which spec file this came from (index into [`LoadedSpec::files`]).
    #[serde(skip)]
    pub file: usize,
    /// Volume name (used in binds and mounts as the source).
    pub name: Loc<String>,
    /// Image whose filesystem fills the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Loc<String>>,
    /// Read-only volume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// `filesystem` (default) or `oci` (an OCI layout of the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Loc<String>>,
    /// Platforms for the `oci` format.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
}

/// The section a container is in.
pub use crate::rootfs::plan::Section;

/// Where a value came from, for messages after loading: `file:line:column`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The spec file.
    pub file: PathBuf,
    /// 1-based line (0 when unknown).
    pub line: usize,
    /// 1-based column (0 when unknown).
    pub column: usize,
}

impl Origin {
    /// Where `loc` was written in `file`.
    pub fn of<T>(file: &std::path::Path, loc: &Loc<T>) -> Origin {
        Origin {
            file: file.to_owned(),
            line: loc.referenced.line() as usize,
            column: loc.referenced.column() as usize,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}
