//! The contract between osbuild's builder and the image's init: what a container's bundle
//! holds besides the OCI `config.json`. The builder writes these documents through these types
//! and the init reads them through the same ones, so the two cannot drift apart.
//!
//! - [`Runtime`] is LinuxKit's `runtime.json`: setup done around the container in the host's
//!   namespaces. Every key is written (empty lists, `""` for each namespace of `bindNS` not
//!   bound), as LinuxKit does.
//! - [`Supervise`] is osbuild's `supervise.json`: how the init supervises the container.
//! - [`CAPABILITIES`] is the capability table: the names the builder accepts and the numbers
//!   the init applies.
//!
//! Reading is lenient (a missing key is its default; keys unknown here are ignored, except in
//! `bindNS`), so an init reads bundles of a builder that knows more keys than it does.

mod capabilities;
mod restart;

use serde::{Deserialize, Serialize};

pub use capabilities::{CAPABILITIES, Capability, capability};
pub use restart::Restart;

/// The OCI runtime spec of a bundle (not defined here: it is the OCI document).
pub const CONFIG_JSON: &str = "config.json";
/// The name of the [`Runtime`] document in a bundle.
pub const RUNTIME_JSON: &str = "runtime.json";
/// The name of the [`Supervise`] document in a bundle.
pub const SUPERVISE_JSON: &str = "supervise.json";

/// `runtime.json`: LinuxKit's setup done in the host's namespaces before the container starts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Runtime {
    /// cgroups to create (paths under the cgroup2 root), e.g. for a container runtime inside.
    pub cgroups: Vec<String>,
    /// Mounts made first, in order (for a writable container: a tmpfs and an overlay).
    pub mounts: Vec<Mount>,
    /// Directories created after the mounts.
    pub mkdir: Vec<String>,
    /// Network interfaces to move into the container's network namespace or create there.
    pub interfaces: Vec<Interface>,
    /// Namespaces to bind-mount to a path once created, so others can join them.
    #[serde(rename = "bindNS")]
    pub bind_ns: BindNs,
    /// LinuxKit's containerd namespace (kept for the document's shape; unused).
    pub namespace: String,
}

/// A mount, OCI style (in `runtime.json` and `config.json`); empty strings and lists are left
/// out when written and mean "not given" when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mount {
    /// Where it is mounted.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub destination: String,
    /// Filesystem type (`bind` for binds; empty for a remount).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Source device, path or name.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub source: String,
    /// `mount -o` style options.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    /// User id mappings of an idmapped mount.
    #[serde(rename = "uidMappings", skip_serializing_if = "Vec::is_empty")]
    pub uid_mappings: Vec<IdMapping>,
    /// Group id mappings of an idmapped mount.
    #[serde(rename = "gidMappings", skip_serializing_if = "Vec::is_empty")]
    pub gid_mappings: Vec<IdMapping>,
}

/// A range of user or group ids mapped into a namespace or mount.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdMapping {
    /// First id outside.
    #[serde(rename = "hostID")]
    pub host_id: u32,
    /// First id inside.
    #[serde(rename = "containerID")]
    pub container_id: u32,
    /// Number of ids.
    pub size: u32,
}

/// A network interface set up for the container (LinuxKit's semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Interface {
    /// The link's name in the container.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The kind of link to create (`veth`, `dummy`, ...); empty moves an existing host link.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub add: String,
    /// A veth's other end, left in the host's namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub peer: String,
    /// Create the link in the host's namespace, then move it.
    #[serde(rename = "createInRoot")]
    pub create_in_root: bool,
}

/// `bindNS`: where to bind each of the container's namespaces, `""` meaning "do not bind".
/// Unknown namespaces are an error when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BindNs {
    /// cgroup namespace.
    pub cgroup: String,
    /// IPC namespace.
    pub ipc: String,
    /// Mount namespace.
    pub mnt: String,
    /// Network namespace.
    pub net: String,
    /// PID namespace.
    pub pid: String,
    /// User namespace.
    pub user: String,
    /// UTS namespace.
    pub uts: String,
}

impl BindNs {
    /// Every namespace with its path (`""` when not bound), by its `/proc/PID/ns` name.
    pub fn entries(&self) -> [(&'static str, &str); 7] {
        [
            ("cgroup", &self.cgroup),
            ("ipc", &self.ipc),
            ("mnt", &self.mnt),
            ("net", &self.net),
            ("pid", &self.pid),
            ("user", &self.user),
            ("uts", &self.uts),
        ]
    }
}

/// `supervise.json`: the spec's supervision keys, only those set (`{}` when none is).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Supervise {
    /// Seconds an onboot or onshutdown container may run before it is killed (`0.5`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<f64>,
    /// When a service is restarted (absent: [`Restart::Always`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Services that must be running first.
    #[serde(rename = "dependsOn", skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

#[cfg(test)]
mod tests;
