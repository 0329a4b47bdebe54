//! config.json checked field by field against LinuxKit's defaults.

use super::*;
use crate::spec::{IdMap, load_str, resolve_image_config};
use std::path::Path;

const REDIS: &str = r#"
services:
  - name: redis
    image: redis:4.0.5-alpine
    capabilities:
     - CAP_NET_BIND_SERVICE
     - CAP_CHOWN
     - CAP_SETUID
     - CAP_SETGID
     - CAP_DAC_OVERRIDE
    net: host
    readonly: true
"#;

fn generate_for(
    yaml: &str,
    label: Option<&str>,
    image: Option<oci_spec::image::Config>,
) -> Result<GeneratedConfig, String> {
    let spec = load_str(yaml, Path::new("t.yml"), 0).unwrap();
    let ids = IdMap::allocate(&spec);
    let resolved = resolve_image_config(&spec.services[0], label)?;
    let volumes = BTreeMap::new();
    generate(&ConfigInput {
        spec: &resolved,
        image: image.as_ref(),
        ids: &ids,
        volumes: &volumes,
    })
}

fn image_config() -> oci_spec::image::Config {
    serde_json::from_str(r#"{"Entrypoint":["docker-entrypoint.sh"],"Cmd":["redis-server"],"Env":["PATH=/usr/bin"],"WorkingDir":"/data"}"#).unwrap()
}

#[test]
fn redis_service_matches_linuxkit_defaults() {
    let g = generate_for(REDIS, None, Some(image_config())).unwrap();
    // Read back through oci-spec, as a runtime would.
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(&g.json).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(
        p.args().as_ref().unwrap(),
        &["docker-entrypoint.sh", "redis-server"]
    );
    assert_eq!(p.env().as_ref().unwrap(), &["PATH=/usr/bin"]);
    assert_eq!(p.cwd().display().to_string(), "/data");
    assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
    let v: serde_json::Value = serde_json::from_slice(&g.json).unwrap();
    let caps = &v["process"]["capabilities"];
    assert_eq!(
        caps["effective"],
        serde_json::json!([
            "CAP_NET_BIND_SERVICE",
            "CAP_CHOWN",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_DAC_OVERRIDE"
        ])
    );
    let sorted = serde_json::json!([
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_NET_BIND_SERVICE",
        "CAP_SETGID",
        "CAP_SETUID"
    ]);
    for set in ["bounding", "permitted", "inheritable"] {
        assert_eq!(caps[set], sorted, "{set}");
    }
    assert!(caps.get("ambient").is_none(), "empty sets are left out");
    // Nothing beyond what LinuxKit writes: no host name (runc refuses one without a UTS
    // namespace), no rlimits, no masked paths, no annotations.
    assert_eq!(spec.version(), "1.2.1");
    assert_eq!(spec.hostname(), &None);
    assert_eq!(spec.annotations(), &None);
    assert_eq!(p.rlimits(), &None);
    assert_eq!(p.no_new_privileges(), None);
    assert_eq!(p.oom_score_adj(), None);
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.masked_paths(), &None);
    assert_eq!(linux.readonly_paths(), &None);
    assert_eq!(linux.devices(), &None);
    assert_eq!(linux.sysctl(), &None);
    assert_eq!(linux.cgroups_path(), &None);
    assert!(linux.seccomp().is_none());
    assert_eq!(
        v["linux"]["resources"],
        serde_json::json!({}),
        "no device rules unless devices are given"
    );
    let root = spec.root().as_ref().unwrap();
    assert_eq!(root.path().display().to_string(), "rootfs");
    assert_eq!(root.readonly(), Some(true));
    let mounts: Vec<(String, String, Vec<String>)> = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m.destination().display().to_string(),
                m.typ().clone().unwrap(),
                m.options().clone().unwrap(),
            )
        })
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(
        mounts,
        [
            (
                "/dev".into(),
                "tmpfs".into(),
                s(&["nosuid", "strictatime", "mode=755", "size=65536k", "ro"])
            ),
            (
                "/dev/pts".into(),
                "devpts".into(),
                s(&[
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620"
                ])
            ),
            (
                "/proc".into(),
                "proc".into(),
                s(&["nosuid", "nodev", "noexec", "relatime"])
            ),
            (
                "/sys".into(),
                "sysfs".into(),
                s(&["nosuid", "noexec", "nodev", "ro"])
            ),
            (
                "/sys/fs/cgroup".into(),
                "cgroup".into(),
                s(&["nosuid", "noexec", "nodev", "relatime", "ro"])
            ),
        ]
    );
    let ns: Vec<String> = spec
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| format!("{:?}", n.typ()))
        .collect();
    assert_eq!(
        ns,
        ["Pid", "Mount"],
        "net: host keeps the host network; pid and mount are new"
    );
    assert!(g.readonly);
}

#[test]
fn output_is_deterministic() {
    let a = generate_for(REDIS, None, Some(image_config()))
        .unwrap()
        .json;
    for _ in 0..5 {
        assert_eq!(
            generate_for(REDIS, None, Some(image_config()))
                .unwrap()
                .json,
            a
        );
    }
}

#[test]
fn label_command_and_yaml_override() {
    let label = r#"{"command":["/from-label"],"binds":["/var:/var"],"pid":"host","capabilities":["CAP_SYS_ADMIN"]}"#;
    let yaml = "services:\n  - name: a\n    image: x\n    binds.add: [\"/etc:/etc:ro\"]\n    uid: a\n    tmpfs: [\"/run:size=1m\"]\n";
    let g = generate_for(yaml, Some(label), Some(image_config())).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&g.json).unwrap();
    assert_eq!(v["process"]["args"], serde_json::json!(["/from-label"]));
    assert_eq!(
        v["process"]["user"]["uid"], 100,
        "uid: a means container a's id"
    );
    let mounts = v["mounts"].as_array().unwrap();
    let find = |d: &str| {
        mounts
            .iter()
            .find(|m| m["destination"] == d)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        find("/var")["options"],
        serde_json::json!(["rw", "rbind", "rshared"])
    );
    assert_eq!(find("/etc")["options"], serde_json::json!(["ro", "rbind"]));
    assert_eq!(find("/run")["type"], "tmpfs");
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["mount"], "pid: host from the label");
    assert_eq!(
        v["process"]["capabilities"]["effective"],
        serde_json::json!(["CAP_SYS_ADMIN"])
    );
}

#[test]
fn all_none_rlimits_devices_and_namespaces() {
    let yaml = "services:\n  - name: a\n    image: x\n    command: [/bin/sh]\n    capabilities: [all]\n    net: new\n    ipc: /proc/1/ns/ipc\n    rlimits: [\"nofile,1024,unlimited\"]\n    devices:\n      - {path: /dev/fuse, type: c, major: 10, minor: 229, mode: \"0666\"}\n    oomScoreAdj: -500\n";
    let g = generate_for(yaml, None, None).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&g.json).unwrap();
    assert_eq!(
        v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
    assert_eq!(
        v["process"]["rlimits"][0],
        serde_json::json!({"type": "RLIMIT_NOFILE", "soft": 1024, "hard": u64::MAX})
    );
    assert_eq!(v["process"]["oomScoreAdj"], -500);
    assert_eq!(v["linux"]["devices"][0]["path"], "/dev/fuse");
    assert_eq!(v["linux"]["devices"][0]["fileMode"], 0o666);
    assert_eq!(
        v["linux"]["resources"]["devices"],
        serde_json::json!([{"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}])
    );
    let ns = v["linux"]["namespaces"].as_array().unwrap();
    assert_eq!(ns[0], serde_json::json!({"type": "network"}));
    assert_eq!(
        ns[1],
        serde_json::json!({"type": "ipc", "path": "/proc/1/ns/ipc"})
    );
    let g = generate_for(
        "services:\n  - name: a\n    image: x\n    command: [x]\n    capabilities: [none]\n",
        None,
        None,
    )
    .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&g.json).unwrap();
    assert_eq!(v["process"]["capabilities"], serde_json::json!({}));
}

#[test]
fn no_command_anywhere_is_an_error() {
    let err = generate_for("services:\n  - name: a\n    image: x\n", None, None).unwrap_err();
    assert!(err.contains("no command"), "{err}");
}

#[test]
fn user_namespaces_need_maps_of_root() {
    let spec = |extra: &[&str]| {
        let mut y = "services:\n  - name: a\n    image: x\n    command: [/bin/true]\n".to_string();
        for line in extra {
            y.push_str(&format!("    {line}\n"));
        }
        generate_for(&y, None, None)
    };
    let err = |extra: &[&str]| spec(extra).err().unwrap_or_default();
    let root = "[{hostID: 100000, containerID: 0, size: 65536}]";
    let one = "[{hostID: 1000, containerID: 1, size: 1}]";
    assert!(err(&["userns: new"]).contains("needs uidMappings and gidMappings"));
    let e = err(&[
        "userns: new",
        &format!("uidMappings: {one}"),
        &format!("gidMappings: {one}"),
    ]);
    assert!(e.contains("map the container's id 0"), "{e}");
    let e = err(&[&format!("uidMappings: {root}")]);
    assert!(e.contains("need a new user namespace"), "{e}");
    let ok = spec(&[
        "userns: new",
        &format!("uidMappings: {root}"),
        &format!("gidMappings: {root}"),
    ]);
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn optional_keys_pass_through() {
    let yaml = r#"services:
  - name: a
    image: x
    command: [x]
    env: []
    hostname: box
    uts: new
    ambient: [CAP_NET_RAW]
    capabilities: [CAP_CHOWN]
    noNewPrivileges: true
    maskedPaths: [/proc/kcore]
    readonlyPaths: [/proc/sys]
    sysctl: {net.ipv4.ip_forward: "1"}
    annotations: {org.example: "yes"}
    cgroupsPath: /osbuild/a
    rootfsPropagation: shared
    additionalGids: [a, 7]
    gid: root
    userns: new
    uidMappings: [{hostID: 1000, containerID: 0, size: 1}]
    gidMappings: [{hostID: 1000, containerID: 0, size: 1}]
"#;
    let g = generate_for(yaml, None, Some(image_config())).unwrap();
    let spec: oci_spec::runtime::Spec = serde_json::from_slice(&g.json).unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.env(), &None, "env: [] replaces the image's Env");
    assert_eq!(p.no_new_privileges(), Some(true));
    assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[100, 7]);
    assert_eq!(spec.hostname().as_deref(), Some("box"));
    assert_eq!(
        spec.annotations().as_ref().unwrap()["org.example"],
        "yes".to_string()
    );
    let linux = spec.linux().as_ref().unwrap();
    assert_eq!(linux.masked_paths().as_ref().unwrap(), &["/proc/kcore"]);
    assert_eq!(linux.readonly_paths().as_ref().unwrap(), &["/proc/sys"]);
    assert_eq!(linux.sysctl().as_ref().unwrap()["net.ipv4.ip_forward"], "1");
    assert_eq!(
        linux.cgroups_path().as_ref().unwrap().display().to_string(),
        "/osbuild/a"
    );
    assert_eq!(linux.rootfs_propagation().as_deref(), Some("shared"));
    assert_eq!(linux.uid_mappings().as_ref().unwrap()[0].host_id(), 1000);
    let v: serde_json::Value = serde_json::from_slice(&g.json).unwrap();
    let caps = &v["process"]["capabilities"];
    assert_eq!(caps["effective"], serde_json::json!(["CAP_CHOWN"]));
    assert_eq!(caps["ambient"], serde_json::json!(["CAP_NET_RAW"]));
    assert_eq!(
        caps["bounding"],
        serde_json::json!(["CAP_CHOWN", "CAP_NET_RAW"])
    );
    assert_eq!(caps["permitted"], caps["bounding"]);
    assert_eq!(caps["inheritable"], caps["bounding"]);
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, ["uts", "pid", "user", "mount"]);
}
