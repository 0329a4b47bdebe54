//! The OCI runtime `config.json` of a container bundle, with LinuxKit's defaults: the process
//! from the image config, label and YAML (in that precedence), capabilities, the standard
//! mounts, namespaces, rlimits, ids, devices and cgroup resources.
//!
//! Output is deterministic: the effective capabilities keep the YAML order, the other sets are
//! sorted, mounts are sorted by destination and the JSON keys by name.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxIdMappingBuilder, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResources, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use serde::Serialize;

use crate::spec::{IdMap, IdMapping, ImageSpec, all_capabilities};

/// Facts about a volume containers may bind.
#[derive(Debug, Clone, Copy)]
pub struct VolumeInfo {
    /// The volume is read-only.
    pub readonly: bool,
}

/// What the config of one container is made from.
#[derive(Debug, Clone, Copy)]
pub struct ConfigInput<'a> {
    /// The YAML entry with the image label already applied.
    pub spec: &'a ImageSpec,
    /// The image's own config (Entrypoint, Cmd, Env, WorkingDir).
    pub image: Option<&'a oci_spec::image::Config>,
    /// Container ids.
    pub ids: &'a IdMap,
    /// Volumes by name.
    pub volumes: &'a BTreeMap<String, VolumeInfo>,
}

/// A generated config.
#[derive(Debug, Clone)]
pub struct GeneratedConfig {
    /// The runtime spec.
    pub spec: Spec,
    /// `config.json` bytes.
    pub json: Vec<u8>,
    /// Whether the root is read-only.
    pub readonly: bool,
}

/// The runtime-spec version LinuxKit writes (that of the runtime-spec it is built with).
pub const OCI_VERSION: &str = "1.2.1";

/// `Some(list)` unless it is empty (LinuxKit leaves empty lists out of the config).
fn non_empty<T>(list: Vec<T>) -> Option<Vec<T>> {
    (!list.is_empty()).then_some(list)
}

/// Where a volume's merged view is mounted in the root filesystem.
pub fn volume_merged_dir(name: &str) -> String {
    format!("/containers/volumes/{name}/merged")
}

fn default_mountpoint(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "proc" => "/proc",
        "devpts" => "/dev/pts",
        "sysfs" => "/sys",
        "cgroup" => "/sys/fs/cgroup",
        "mqueue" => "/dev/mqueue",
        _ => return None,
    })
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Result<Mount, String> {
    MountBuilder::default()
        .destination(dest)
        .typ(kind)
        .source(source)
        .options(options.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .build()
        .map_err(|e| e.to_string())
}

fn resolve_volume(
    source: &str,
    volumes: &BTreeMap<String, VolumeInfo>,
    writable: bool,
) -> Result<String, String> {
    if source.starts_with('/') {
        return Ok(source.to_string());
    }
    let volume = volumes
        .get(source)
        .ok_or_else(|| format!("volume {source:?} is not defined in volumes"))?;
    if volume.readonly && writable {
        return Err(format!(
            "volume {source:?} is read-only but is mounted read-write (add the ro option)"
        ));
    }
    Ok(volume_merged_dir(source))
}

fn expand_caps(list: Option<Vec<String>>) -> Vec<String> {
    let list = list.unwrap_or_default();
    if let [only] = &list[..] {
        match only.to_ascii_lowercase().as_str() {
            "none" => return Vec::new(),
            "all" => return all_capabilities().map(str::to_string).collect(),
            _ => {}
        }
    }
    list
}

/// The capability `name` (upper case, `CAP_` optional). The bundle contract's table decides
/// what is known, so the init can apply every name written; oci-spec's enum only carries it.
fn to_capability(name: &str) -> Result<Capability, String> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    let unknown = || format!("unknown capability {name:?}");
    let known = osbuild_bundle::CAPABILITIES
        .iter()
        .find(|c| c.name.strip_prefix("CAP_") == Some(bare))
        .ok_or_else(unknown)?;
    Capability::from_str(&known.name["CAP_".len()..]).map_err(|_| unknown())
}

fn idmap(
    list: &Option<Vec<IdMapping>>,
) -> Result<Option<Vec<oci_spec::runtime::LinuxIdMapping>>, String> {
    list.as_ref()
        .map(|l| {
            l.iter()
                .map(|m| {
                    LinuxIdMappingBuilder::default()
                        .host_id(m.host_id)
                        .container_id(m.container_id)
                        .size(m.size)
                        .build()
                        .map_err(|e| e.to_string())
                })
                .collect()
        })
        .transpose()
}

/// Build the runtime config of one container.
pub fn generate(input: &ConfigInput<'_>) -> Result<GeneratedConfig, String> {
    let s = input.spec;
    let image = input.image.cloned().unwrap_or_default();
    let mut image_args = image.entrypoint().clone().unwrap_or_default();
    image_args.extend(image.cmd().clone().unwrap_or_default());
    let args = s.command.clone().unwrap_or(image_args);
    if args.is_empty() {
        return Err(
            "no command: the image has no Entrypoint or Cmd and the spec sets no command".into(),
        );
    }
    let env = s
        .env
        .clone()
        .unwrap_or_else(|| image.env().clone().unwrap_or_default());
    let cwd = s
        .cwd
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| image.working_dir().clone().filter(|c| !c.is_empty()))
        .unwrap_or_else(|| "/".into());
    let readonly = s.readonly.unwrap_or(false);

    // Mounts, later ones replacing earlier ones at the same destination.
    let mut mounts: BTreeMap<String, Mount> = BTreeMap::new();
    let mut dev = vec!["nosuid", "strictatime", "mode=755", "size=65536k"];
    let mut sys = vec!["nosuid", "noexec", "nodev"];
    if readonly {
        dev.push("ro");
        sys.push("ro");
    }
    for m in [
        mount(
            "/proc",
            "proc",
            "proc",
            &["nosuid", "nodev", "noexec", "relatime"],
        )?,
        mount("/dev", "tmpfs", "tmpfs", &dev)?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
            ],
        )?,
        mount("/sys", "sysfs", "sysfs", &sys)?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", "ro"],
        )?,
    ] {
        mounts.insert(m.destination().display().to_string(), m);
    }
    for t in s.tmpfs.iter().flatten() {
        let (dest, opts) = match t.value.split_once(':') {
            Some((d, o)) => (d, o.split(',').collect::<Vec<_>>()),
            None => (t.value.as_str(), Vec::new()),
        };
        mounts.insert(dest.to_string(), mount(dest, "tmpfs", "tmpfs", &opts)?);
    }
    for b in s.binds.iter().flatten() {
        let parts: Vec<&str> = b.value.split(':').collect();
        let (src, dest) = match parts[..] {
            [src, dest] | [src, dest, _] => (src, dest),
            _ => return Err(format!("bind {:?} is not src:dst[:options]", b.value)),
        };
        let opts: Vec<&str> = match parts.get(2) {
            Some(o) => o.split(',').chain(std::iter::once("rbind")).collect(),
            None => vec!["rw", "rbind", "rshared"],
        };
        let writable = !opts.contains(&"ro");
        let src = resolve_volume(src, input.volumes, writable)?;
        mounts.insert(dest.to_string(), mount(dest, "bind", &src, &opts)?);
    }
    for m in s.mounts.iter().flatten() {
        let mut kind = m.kind.clone();
        if kind.is_empty()
            && matches!(
                m.source.as_str(),
                "mqueue" | "devpts" | "proc" | "sysfs" | "cgroup"
            )
        {
            kind = m.source.clone();
        }
        if kind.is_empty() && m.destination == "/dev" {
            kind = "tmpfs".into();
        }
        if kind.is_empty() {
            return Err(format!(
                "mount for destination {:?} is missing its type",
                m.destination
            ));
        }
        let mut source = if m.source.is_empty() {
            kind.clone()
        } else {
            m.source.clone()
        };
        if kind == "bind" {
            source = resolve_volume(&source, input.volumes, !m.options.iter().any(|o| o == "ro"))?;
        }
        let dest = if m.destination.is_empty() {
            default_mountpoint(&kind)
                .ok_or_else(|| format!("mount of type {kind} is missing its destination"))?
                .to_string()
        } else {
            m.destination.clone()
        };
        let opts: Vec<&str> = m.options.iter().map(String::as_str).collect();
        mounts.insert(dest.clone(), mount(&dest, &kind, &source, &opts)?);
    }

    // A new user namespace is set up by its root: the maps must give it one.
    let userns = s.userns.as_deref().unwrap_or("");
    if !matches!(userns, "" | "host" | "root") {
        let maps_root = |m: &Option<Vec<IdMapping>>| {
            m.iter()
                .flatten()
                .any(|r| r.container_id == 0 && r.size > 0)
        };
        if !maps_root(&s.uid_mappings) || !maps_root(&s.gid_mappings) {
            return Err(format!(
                "userns: {userns} needs uidMappings and gidMappings that map the container's id 0"
            ));
        }
    } else if s.uid_mappings.as_ref().is_some_and(|m| !m.is_empty())
        || s.gid_mappings.as_ref().is_some_and(|m| !m.is_empty())
    {
        return Err("uidMappings and gidMappings need a new user namespace (userns: new)".into());
    }

    // Namespaces: LinuxKit's order, mount always new, pid new unless host.
    let mut namespaces = Vec::new();
    let ns = |kind: LinuxNamespaceType,
              path: &str|
     -> Result<oci_spec::runtime::LinuxNamespace, String> {
        let mut b = LinuxNamespaceBuilder::default().typ(kind);
        if !path.is_empty() {
            b = b.path(path);
        }
        b.build().map_err(|e| e.to_string())
    };
    for (kind, value, default_new) in [
        (LinuxNamespaceType::Network, &s.net, false),
        (LinuxNamespaceType::Ipc, &s.ipc, false),
        (LinuxNamespaceType::Uts, &s.uts, false),
        (LinuxNamespaceType::Pid, &s.pid, true),
        (LinuxNamespaceType::User, &s.userns, false),
    ] {
        let v = value.as_deref().unwrap_or("");
        let host = matches!(v, "host" | "root") || (v.is_empty() && !default_new);
        if !host {
            let path = if matches!(v, "new" | "none" | "") {
                ""
            } else {
                v
            };
            namespaces.push(ns(kind, path)?);
        }
    }
    namespaces.push(ns(LinuxNamespaceType::Mount, "")?);

    // Capabilities.
    let mut effective = expand_caps(
        s.capabilities
            .clone()
            .map(|c| c.into_iter().map(|c| c.value).collect()),
    );
    effective.dedup();
    let ambient = expand_caps(
        s.ambient
            .clone()
            .map(|c| c.into_iter().map(|c| c.value).collect()),
    );
    let bounding: BTreeSet<String> = effective.iter().chain(&ambient).cloned().collect();
    let set = |names: &[String]| -> Result<oci_spec::runtime::Capabilities, String> {
        names.iter().map(|n| to_capability(n)).collect()
    };
    let bounding_list: Vec<String> = bounding.iter().cloned().collect();
    let caps = LinuxCapabilitiesBuilder::default()
        .bounding(set(&bounding_list)?)
        .effective(set(&effective)?)
        .inheritable(set(&bounding_list)?)
        .permitted(set(&bounding_list)?)
        .ambient(set(&ambient)?)
        .build()
        .map_err(|e| e.to_string())?;

    let mut rlimits = Vec::new();
    for r in s.rlimits.iter().flatten() {
        let parsed = crate::spec::parse_rlimit(&r.value)?;
        let kind = PosixRlimitType::from_str(&parsed.kind)
            .map_err(|_| format!("unknown rlimit {}", parsed.kind))?;
        rlimits.push(
            PosixRlimitBuilder::default()
                .typ(kind)
                .soft(parsed.soft)
                .hard(parsed.hard)
                .build()
                .map_err(|e| e.to_string())?,
        );
    }

    let id = |v: &Option<crate::spec::Loc<crate::spec::IdRef>>| -> Result<u32, String> {
        match v {
            Some(v) => input
                .ids
                .resolve(&v.value)
                .map_err(|n| format!("unknown id {n:?}")),
            None => Ok(0),
        }
    };
    let additional: Vec<u32> = s
        .additional_gids
        .iter()
        .flatten()
        .map(|g| {
            input
                .ids
                .resolve(&g.value)
                .map_err(|n| format!("unknown id {n:?}"))
        })
        .collect::<Result<_, _>>()?;
    let mut user = UserBuilder::default().uid(id(&s.uid)?).gid(id(&s.gid)?);
    if !additional.is_empty() {
        user = user.additional_gids(additional);
    }
    let mut process = ProcessBuilder::default()
        .terminal(false)
        .user(user.build().map_err(|e| e.to_string())?)
        .args(args)
        .cwd(cwd)
        .capabilities(caps)
        .build()
        .map_err(|e| e.to_string())?;
    // oci-spec's defaults (an RLIMIT_NOFILE of 1024, no_new_privileges) are not LinuxKit's:
    // every optional field is set to exactly what the spec asks for.
    process.set_env(non_empty(env));
    process.set_rlimits(non_empty(rlimits));
    process.set_no_new_privileges(s.no_new_privileges.filter(|n| *n));
    process.set_oom_score_adj(s.oom_score_adj);

    let mut resources: LinuxResources = s.resources.clone().unwrap_or_default();
    let mut device_rules = resources.devices().clone().unwrap_or_default();
    let mut devices = Vec::new();
    for d in s.devices.iter().flatten() {
        let kind = LinuxDeviceType::from_str(&d.kind)
            .map_err(|_| format!("device type {:?} is not c, b, u, p or a", d.kind))?;
        if d.path == "all" {
            device_rules.push(
                LinuxDeviceCgroupBuilder::default()
                    .allow(true)
                    .typ(kind)
                    .access("rwm")
                    .build()
                    .map_err(|e| e.to_string())?,
            );
            continue;
        }
        let mode = d
            .mode
            .as_ref()
            .map(|m| m.value.0)
            .ok_or_else(|| format!("device {} needs a mode", d.path))?;
        devices.push(
            LinuxDeviceBuilder::default()
                .path(d.path.clone())
                .typ(kind)
                .major(d.major)
                .minor(d.minor)
                .file_mode(mode)
                .build()
                .map_err(|e| e.to_string())?,
        );
        device_rules.push(
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(kind)
                .major(d.major)
                .minor(d.minor)
                .access("rwm")
                .build()
                .map_err(|e| e.to_string())?,
        );
    }
    resources.set_devices(non_empty(device_rules));

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .resources(resources)
        .build()
        .map_err(|e| e.to_string())?;
    // As for the process: no oci-spec default (masked paths, ...) may leak into the config.
    linux.set_devices(non_empty(devices));
    linux.set_masked_paths(s.masked_paths.clone().and_then(non_empty));
    linux.set_readonly_paths(s.readonly_paths.clone().and_then(non_empty));
    linux.set_uid_mappings(idmap(&s.uid_mappings)?.and_then(non_empty));
    linux.set_gid_mappings(idmap(&s.gid_mappings)?.and_then(non_empty));
    linux.set_sysctl(
        s.sysctl
            .clone()
            .filter(|m| !m.is_empty())
            .map(|m| m.into_iter().collect()),
    );
    linux.set_cgroups_path(
        s.cgroups_path
            .clone()
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from),
    );
    linux.set_rootfs_propagation(s.rootfs_propagation.clone().filter(|p| !p.is_empty()));
    let mut spec = SpecBuilder::default()
        .version(OCI_VERSION)
        .process(process)
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(readonly)
                .build()
                .map_err(|e| e.to_string())?,
        )
        .mounts(mounts.into_values().collect::<Vec<_>>())
        .linux(linux)
        .build()
        .map_err(|e| e.to_string())?;
    // oci-spec's default host name ("youki") would make runc refuse to start a container
    // that shares the host's UTS namespace.
    spec.set_hostname(s.hostname.clone().filter(|h| !h.is_empty()));
    spec.set_annotations(
        s.annotations
            .clone()
            .filter(|a| !a.is_empty())
            .map(|a| a.into_iter().collect()),
    );

    // Serialise with the capability sets in a fixed order (oci-spec keeps them in hash sets).
    let mut value = serde_json::to_value(&spec).map_err(|e| e.to_string())?;
    if let Some(c) = value
        .pointer_mut("/process/capabilities")
        .and_then(|c| c.as_object_mut())
    {
        // Empty sets are left out, as LinuxKit's encoder does.
        c.clear();
        for (key, set) in [
            ("ambient", &ambient),
            ("bounding", &bounding_list),
            ("effective", &effective),
            ("inheritable", &bounding_list),
            ("permitted", &bounding_list),
        ] {
            if !set.is_empty() {
                c.insert(key.into(), set.clone().into());
            }
        }
    }
    Ok(GeneratedConfig {
        spec,
        json: pretty_json(&value)?,
        readonly,
    })
}

/// JSON with four-space indentation (LinuxKit's layout) and a final newline.
pub fn pretty_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser).map_err(|e| e.to_string())?;
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests;
