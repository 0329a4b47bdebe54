//! The parts of a bundle's `config.json` (OCI runtime spec) the runtime acts on, and the
//! reading of every bundle document. `runtime.json` and `supervise.json` are the bundle
//! contract's types ([`osbuild_bundle`]), the ones the builder writes with; `config.json`'s
//! mounts and id mappings have the contract's shapes too.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

pub use osbuild_bundle::{IdMapping, Interface, Mount, Runtime, Supervise};

/// `config.json`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Config {
    /// The process to run.
    pub process: Process,
    /// The root filesystem.
    pub root: Root,
    /// The container's host name (with a UTS namespace).
    pub hostname: Option<String>,
    /// Mounts, in order.
    pub mounts: Vec<Mount>,
    /// Linux settings.
    pub linux: Linux,
}

/// `process`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Process {
    /// Program and arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
    /// Identity.
    pub user: User,
    /// Capability sets.
    pub capabilities: Option<Capabilities>,
    /// `PR_SET_NO_NEW_PRIVS`.
    pub no_new_privileges: bool,
    /// Resource limits.
    pub rlimits: Vec<Rlimit>,
    /// `/proc/self/oom_score_adj`.
    pub oom_score_adj: Option<i32>,
}

/// `process.user`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// `process.capabilities`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: Vec<String>,
    /// Effective set.
    pub effective: Vec<String>,
    /// Inheritable set.
    pub inheritable: Vec<String>,
    /// Permitted set.
    pub permitted: Vec<String>,
    /// Ambient set.
    pub ambient: Vec<String>,
}

/// One `process.rlimits` entry.
#[derive(Debug, Deserialize)]
pub struct Rlimit {
    /// `RLIMIT_NOFILE` and so on.
    #[serde(rename = "type")]
    pub kind: String,
    /// Hard limit.
    pub hard: u64,
    /// Soft limit.
    pub soft: u64,
}

/// `root`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Root {
    /// Relative to the bundle, or absolute.
    pub path: String,
    /// Mount the root read-only.
    pub readonly: bool,
}

/// `linux`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Linux {
    /// Namespaces to create (no `path`) or join (`path`).
    pub namespaces: Vec<Namespace>,
    /// `sysctl` settings (namespaced ones).
    pub sysctl: BTreeMap<String, String>,
    /// Paths hidden from the container.
    pub masked_paths: Vec<String>,
    /// Paths made read-only.
    pub readonly_paths: Vec<String>,
    /// The container's cgroup, relative to the cgroup2 root (default `osbuild/SECTION/NAME`).
    pub cgroups_path: Option<String>,
    /// cgroup limits.
    pub resources: Resources,
    /// Propagation of the container's root mount (`rprivate` by default).
    pub rootfs_propagation: Option<String>,
    /// Device nodes to create in the container's `/dev`.
    pub devices: Vec<Device>,
    /// User ids of a new user namespace.
    pub uid_mappings: Vec<IdMapping>,
    /// Group ids of a new user namespace.
    pub gid_mappings: Vec<IdMapping>,
}

/// One `linux.devices` entry.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Device {
    /// Path in the container.
    pub path: String,
    /// `c`, `b`, `u` or `p`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Major number.
    pub major: u64,
    /// Minor number.
    pub minor: u64,
    /// Permission bits.
    pub file_mode: Option<u32>,
    /// Owner.
    pub uid: Option<u32>,
    /// Group.
    pub gid: Option<u32>,
}

/// One `linux.resources.devices` rule.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DeviceRule {
    /// Allow (true) or deny.
    pub allow: bool,
    /// `a` (all devices: the default), `c` or `b`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Major number; absent or -1 matches every major.
    pub major: Option<i64>,
    /// Minor number; absent or -1 matches every minor.
    pub minor: Option<i64>,
    /// Some of `r`, `w` and `m`; absent or empty is `rwm`.
    pub access: Option<String>,
}

/// `linux.resources`: what cgroup v2 enforces.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Resources {
    /// Memory limits.
    pub memory: Option<MemoryResources>,
    /// CPU weight and bandwidth.
    pub cpu: Option<CpuResources>,
    /// The number of tasks.
    pub pids: Option<PidsResources>,
    /// Block I/O weight.
    #[serde(rename = "blockIO")]
    pub block_io: Option<BlockIoResources>,
    /// Device access rules.
    pub devices: Vec<DeviceRule>,
}

/// `linux.resources.memory` (bytes; -1 is unlimited).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct MemoryResources {
    /// Hard limit: `memory.max`.
    pub limit: Option<i64>,
    /// Soft limit: `memory.low`.
    pub reservation: Option<i64>,
    /// Memory plus swap: `memory.swap.max` gets the difference.
    pub swap: Option<i64>,
}

/// `linux.resources.cpu`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CpuResources {
    /// cgroup v1 shares (2..262144), converted to `cpu.weight`.
    pub shares: Option<u64>,
    /// Microseconds per period the cgroup may run (`cpu.max`).
    pub quota: Option<i64>,
    /// The period in microseconds.
    pub period: Option<u64>,
    /// CPUs allowed (`cpuset.cpus`).
    pub cpus: Option<String>,
}

/// `linux.resources.pids`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct PidsResources {
    /// `pids.max` (0 or less: unlimited).
    pub limit: i64,
}

/// `linux.resources.blockIO`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BlockIoResources {
    /// cgroup v1 weight (10..1000), converted to `io.weight`.
    pub weight: Option<u64>,
}

/// One namespace.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Namespace {
    /// `pid`, `mount`, `network`, `ipc`, `uts`, `user`, `cgroup`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Join this namespace instead of creating one.
    pub path: Option<String>,
}

/// Read and parse a JSON file of the bundle; a missing `runtime.json` is an empty one.
pub fn read<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_osbuild_writes() {
        let c: Config = serde_json::from_str(
            r#"{"ociVersion":"1.2.1","process":{"args":["/bin/echo","hi"],"cwd":"/","env":["PATH=/bin"],
            "user":{"uid":100,"gid":101,"additionalGids":[5]},"noNewPrivileges":true,
            "capabilities":{"bounding":["CAP_NET_BIND_SERVICE"],"effective":["CAP_NET_BIND_SERVICE"]},
            "rlimits":[{"type":"RLIMIT_NOFILE","hard":4096,"soft":1024}],"oomScoreAdj":-100},
            "root":{"path":"rootfs","readonly":true},"hostname":"x",
            "mounts":[{"destination":"/proc","type":"proc","source":"proc","options":["nosuid"]}],
            "linux":{"namespaces":[{"type":"pid"},{"type":"network","path":"/run/netns/x"}],
            "maskedPaths":["/proc/kcore"],"readonlyPaths":["/proc/sys"],"sysctl":{"net.ipv4.ip_forward":"1"}}}"#,
        )
        .unwrap();
        assert_eq!(c.process.args, ["/bin/echo", "hi"]);
        assert_eq!(c.process.user.additional_gids, [5]);
        assert!(c.process.no_new_privileges && c.root.readonly);
        assert_eq!(c.linux.namespaces[1].path.as_deref(), Some("/run/netns/x"));
        assert_eq!(c.process.rlimits[0].soft, 1024);
        let r: Runtime = serde_json::from_str(
            r#"{"cgroups":[],"mounts":[{"destination":"/c/tmp","type":"tmpfs","source":"tmpfs"},
            {"destination":"/c/tmp","options":["remount","private"]}],"mkdir":[],"interfaces":[],
            "bindNS":{"net":""},"namespace":""}"#,
        )
        .unwrap();
        assert_eq!(r.mounts.len(), 2);
        assert!(r.cgroups.is_empty());
        assert_eq!(r.mounts[1].kind, "");
    }
}
