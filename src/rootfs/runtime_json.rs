//! LinuxKit's `runtime.json` of a bundle: what the init does around the container (cgroups,
//! mounts, directories, interfaces, namespace bind mounts), plus the mounts osbuild's layout
//! needs: a self bind of a read-only `rootfs/` (pivot_root wants a mount point), or the tmpfs
//! and overlay that make a writable container's root from `lower/`.
//!
//! The document is [`osbuild_bundle::Runtime`], the type the init reads: LinuxKit's shape,
//! every key present (empty lists, `""` for each namespace of `bindNS` and for `namespace`).
//! The spec's YAML types (strict, merged key by key with the label's) are mapped onto it
//! here. The init makes the overlay's `upperdir` and `workdir` while mounting it (mounts come
//! before `mkdir`), so no `mkdir` entry is added for them.

use osbuild_bundle::{BindNs, IdMapping, Interface, Mount, Runtime};

use super::oci_config::{pretty_json, volume_merged_dir};
use crate::spec::{BindNsSpec, ImageSpec, InterfaceSpec, MountSpec};

/// `bindNS` with every namespace written, `""` meaning "do not bind".
fn bind_ns(b: &BindNsSpec) -> BindNs {
    let path = |p: &Option<String>| p.clone().unwrap_or_default();
    BindNs {
        cgroup: path(&b.cgroup),
        ipc: path(&b.ipc),
        mnt: path(&b.mnt),
        net: path(&b.net),
        pid: path(&b.pid),
        user: path(&b.user),
        uts: path(&b.uts),
    }
}

/// A spec mount as the document carries it.
fn mount(m: &MountSpec) -> Mount {
    let ids = |list: &[crate::spec::IdMapping]| {
        list.iter()
            .map(|i| IdMapping {
                host_id: i.host_id,
                container_id: i.container_id,
                size: i.size,
            })
            .collect()
    };
    Mount {
        destination: m.destination.clone(),
        kind: m.kind.clone(),
        source: m.source.clone(),
        options: m.options.clone(),
        uid_mappings: ids(&m.uid_mappings),
        gid_mappings: ids(&m.gid_mappings),
    }
}

/// A spec interface as the document carries it.
fn interface(i: &InterfaceSpec) -> Interface {
    Interface {
        name: i.name.clone(),
        add: i.add.clone(),
        peer: i.peer.clone(),
        create_in_root: i.create_in_root,
    }
}

/// A mount of osbuild's own layout.
fn m(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    Mount {
        destination: destination.into(),
        kind: kind.into(),
        source: source.into(),
        options: options.iter().map(|s| s.to_string()).collect(),
        ..Mount::default()
    }
}

/// `runtime.json` for the container `spec` (label applied) whose bundle is `bundle`
/// (`containers/services/NAME`, no leading slash).
pub fn runtime_json(spec: &ImageSpec, bundle: &str, readonly: bool) -> Result<Vec<u8>, String> {
    let runtime = spec.runtime.clone().unwrap_or_default();
    let root = format!("/{bundle}/rootfs");
    let mut mounts = if readonly {
        vec![m(&root, "", &root, &["bind"])]
    } else {
        let tmp = format!("/{bundle}/tmp");
        let overlay = format!("lowerdir=/{bundle}/lower,upperdir={tmp}/upper,workdir={tmp}/work");
        vec![
            m(&tmp, "tmpfs", "tmpfs", &[]),
            m(&tmp, "", "", &["remount", "private"]),
            m(&root, "overlay", "overlay", &[&overlay]),
        ]
    };
    for spec_mount in runtime.mounts.iter().flatten() {
        let mut mount = mount(spec_mount);
        if mount.kind == "bind" && !mount.source.is_empty() && !mount.source.starts_with('/') {
            mount.source = volume_merged_dir(&mount.source);
        }
        mounts.push(mount);
    }
    let body = Runtime {
        cgroups: runtime.cgroups.unwrap_or_default(),
        mounts,
        mkdir: runtime.mkdir.unwrap_or_default(),
        interfaces: runtime.interfaces.iter().flatten().map(interface).collect(),
        bind_ns: bind_ns(&runtime.bind_ns.unwrap_or_default()),
        namespace: runtime.namespace.unwrap_or_default(),
    };
    pretty_json(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_container_gets_tmpfs_and_overlay() {
        let spec: ImageSpec = serde_saphyr::from_str("name: web\nimage: x\n").unwrap();
        let json = runtime_json(&spec, "containers/services/web", false).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        let mounts = v["mounts"].as_array().unwrap();
        assert_eq!(mounts[0]["destination"], "/containers/services/web/tmp");
        assert_eq!(mounts[0]["type"], "tmpfs");
        assert_eq!(
            mounts[1]["options"],
            serde_json::json!(["remount", "private"])
        );
        assert_eq!(mounts[2]["type"], "overlay");
        assert_eq!(
            mounts[2]["options"][0],
            "lowerdir=/containers/services/web/lower,upperdir=/containers/services/web/tmp/upper,workdir=/containers/services/web/tmp/work"
        );
        assert_eq!(mounts.len(), 3);
        assert_eq!(v["mkdir"], serde_json::json!([]));
        assert_eq!(v["cgroups"], serde_json::json!([]));
        assert_eq!(v["interfaces"], serde_json::json!([]));
        assert_eq!(
            v["bindNS"],
            serde_json::json!({"cgroup": "", "ipc": "", "mnt": "", "net": "", "pid": "", "user": "", "uts": ""})
        );
        assert_eq!(v["namespace"], "");
    }

    #[test]
    fn writable_container_document_is_linuxkits() {
        let spec: ImageSpec = serde_saphyr::from_str("name: web\nimage: x\n").unwrap();
        let json = runtime_json(&spec, "containers/onboot/001-web", false).unwrap();
        let b = "/containers/onboot/001-web";
        let want = serde_json::json!({
            "cgroups": [],
            "mounts": [
                {"destination": format!("{b}/tmp"), "type": "tmpfs", "source": "tmpfs"},
                {"destination": format!("{b}/tmp"), "options": ["remount", "private"]},
                {
                    "destination": format!("{b}/rootfs"),
                    "type": "overlay",
                    "source": "overlay",
                    "options": [format!("lowerdir={b}/lower,upperdir={b}/tmp/upper,workdir={b}/tmp/work")]
                }
            ],
            "mkdir": [],
            "interfaces": [],
            "bindNS": {"cgroup": "", "ipc": "", "mnt": "", "net": "", "pid": "", "user": "", "uts": ""},
            "namespace": ""
        });
        let got: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(got, want);
        // Keys in LinuxKit's order, four-space indentation.
        let text = String::from_utf8(json).unwrap();
        let order: Vec<usize> = [
            "\"cgroups\"",
            "\"mounts\"",
            "\"mkdir\"",
            "\"interfaces\"",
            "\"bindNS\"",
            "\"namespace\"",
        ]
        .iter()
        .map(|k| text.find(k).unwrap())
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(text.starts_with("{\n    \"cgroups\""), "{text}");
    }

    #[test]
    fn readonly_root_is_bound_onto_itself_and_runtime_keys_pass_through() {
        let spec: ImageSpec = serde_saphyr::from_str(
            "name: n\nimage: x\nruntime:\n  mkdir: [/var/lib/x]\n  cgroups: [systemreserved]\n  interfaces:\n    - name: eth1\n      add: veth\n      peer: veth1\n  bindNS:\n    net: /run/netns/n\n",
        )
        .unwrap();
        let json = runtime_json(&spec, "containers/onboot/000-n", true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(v["mounts"][0]["source"], "/containers/onboot/000-n/rootfs");
        assert_eq!(v["mounts"][0]["options"], serde_json::json!(["bind"]));
        assert_eq!(v["mkdir"], serde_json::json!(["/var/lib/x"]));
        assert_eq!(v["cgroups"], serde_json::json!(["systemreserved"]));
        assert_eq!(v["interfaces"][0]["peer"], "veth1");
        assert_eq!(v["bindNS"]["net"], "/run/netns/n");
    }
}
