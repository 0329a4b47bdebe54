//! The image label `org.mobyproject.config` and its precedence: image config < label < YAML.
//! Only `capabilities.add` and `binds.add` of the YAML add to the label's lists; every other
//! key set in the YAML replaces the label's value. `runtime` is merged key by key, and
//! `runtime.bindNS` namespace by namespace, as LinuxKit does.

use super::load::spec_key;
use super::{BindNsSpec, ImageSpec, RuntimeSpec};

/// Parse the label body (JSON, or YAML as LinuxKit allows) into an image spec.
fn parse_label(label: &str) -> Result<ImageSpec, String> {
    let json = &mut serde_json::Deserializer::from_str(label);
    let spec: ImageSpec = match serde_path_to_error::deserialize(json) {
        Ok(s) => s,
        // Valid JSON that does not fit the schema: say where.
        Err(e) if e.inner().is_data() => {
            let key = spec_key(&e.path().to_string());
            let at = if key.is_empty() {
                String::new()
            } else {
                format!("{key}: ")
            };
            return Err(format!(
                "the org.mobyproject.config label is invalid: {at}{}",
                e.inner()
            ));
        }
        // Not JSON: LinuxKit also reads the label as YAML.
        Err(e) => serde_saphyr::from_str(label)
            .map_err(|_| format!("the org.mobyproject.config label is invalid: {}", e.inner()))?,
    };
    if spec.name.is_some() {
        return Err("the org.mobyproject.config label may not set `name`".into());
    }
    if spec.image.is_some() {
        return Err("the org.mobyproject.config label may not set `image`".into());
    }
    if let Some(key) = super::supervise::set_keys(&spec).first() {
        return Err(format!(
            "the org.mobyproject.config label may not set `{key}` (supervision keys are set in the spec only)"
        ));
    }
    Ok(spec)
}

/// Append `extra` to `base` without repeating values.
fn merge_unique<T: Clone, K: PartialEq>(
    base: Option<Vec<T>>,
    extra: &Option<Vec<T>>,
    key: impl Fn(&T) -> K,
) -> Option<Vec<T>> {
    match (base, extra) {
        (None, None) => None,
        (Some(b), None) => Some(b),
        (None, Some(e)) => Some(e.clone()),
        (Some(mut b), Some(e)) => {
            for item in e {
                if !b.iter().any(|x| key(x) == key(item)) {
                    b.push(item.clone());
                }
            }
            Some(b)
        }
    }
}

/// `runtime` of the YAML over the label's: each key set in the YAML wins.
fn merge_runtime(label: Option<&RuntimeSpec>, yaml: Option<&RuntimeSpec>) -> Option<RuntimeSpec> {
    let (label, yaml) = match (label, yaml) {
        (None, None) => return None,
        (Some(one), None) | (None, Some(one)) => return Some(one.clone()),
        (Some(label), Some(yaml)) => (label, yaml),
    };
    let bind_ns = match (&label.bind_ns, &yaml.bind_ns) {
        (Some(l), Some(y)) => Some(BindNsSpec {
            cgroup: y.cgroup.clone().or(l.cgroup.clone()),
            ipc: y.ipc.clone().or(l.ipc.clone()),
            mnt: y.mnt.clone().or(l.mnt.clone()),
            net: y.net.clone().or(l.net.clone()),
            pid: y.pid.clone().or(l.pid.clone()),
            user: y.user.clone().or(l.user.clone()),
            uts: y.uts.clone().or(l.uts.clone()),
        }),
        (l, y) => y.clone().or(l.clone()),
    };
    Some(RuntimeSpec {
        cgroups: yaml.cgroups.clone().or(label.cgroups.clone()),
        mounts: yaml.mounts.clone().or(label.mounts.clone()),
        mkdir: yaml.mkdir.clone().or(label.mkdir.clone()),
        interfaces: yaml.interfaces.clone().or(label.interfaces.clone()),
        bind_ns,
        namespace: yaml.namespace.clone().or(label.namespace.clone()),
    })
}

/// The container config after applying the image's label under the YAML entry `yaml`.
/// The result keeps `name`, `image` and the source file of `yaml`.
pub fn resolve_image_config(yaml: &ImageSpec, label: Option<&str>) -> Result<ImageSpec, String> {
    let label = match label {
        Some(text) if !text.trim().is_empty() => parse_label(text)?,
        _ => ImageSpec::default(),
    };
    macro_rules! pick {
        ($($field:ident),*) => {
            ImageSpec {
                $($field: yaml.$field.clone().or(label.$field.clone()),)*
                name: yaml.name.clone(),
                image: yaml.image.clone(),
                file: yaml.file,
                at: yaml.at.clone(),
                capabilities: yaml
                    .capabilities
                    .clone()
                    .or_else(|| merge_unique(label.capabilities.clone(), &yaml.capabilities_add, |c| c.value.clone())),
                capabilities_add: None,
                binds: yaml
                    .binds
                    .clone()
                    .or_else(|| merge_unique(label.binds.clone(), &yaml.binds_add, |b| b.value.clone())),
                binds_add: None,
                runtime: merge_runtime(label.runtime.as_ref(), yaml.runtime.as_ref()),
                // Supervision keys come from the spec only (a label setting one is refused).
                timeout: yaml.timeout.clone(),
                restart: yaml.restart.clone(),
                depends_on: yaml.depends_on.clone(),
            }
        };
    }
    Ok(pick!(
        ambient,
        mounts,
        devices,
        tmpfs,
        command,
        env,
        cwd,
        net,
        pid,
        ipc,
        uts,
        userns,
        hostname,
        readonly,
        masked_paths,
        readonly_paths,
        uid,
        gid,
        additional_gids,
        no_new_privileges,
        oom_score_adj,
        rootfs_propagation,
        cgroups_path,
        resources,
        sysctl,
        rlimits,
        uid_mappings,
        gid_mappings,
        annotations
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> ImageSpec {
        serde_saphyr::from_str(text).unwrap()
    }

    fn caps(s: &ImageSpec) -> Vec<String> {
        s.capabilities
            .iter()
            .flatten()
            .map(|c| c.value.clone())
            .collect()
    }

    #[test]
    fn yaml_replaces_label_values() {
        let label =
            r#"{"capabilities":["CAP_SYS_ADMIN"],"net":"host","readonly":true,"binds":["/a:/a"]}"#;
        let y = yaml("name: x\nimage: y\nnet: new\ncapabilities: [CAP_CHOWN]\n");
        let r = resolve_image_config(&y, Some(label)).unwrap();
        assert_eq!(r.net.as_deref(), Some("new"));
        assert_eq!(caps(&r), ["CAP_CHOWN"]);
        assert_eq!(
            r.readonly,
            Some(true),
            "unset in YAML: the label's value stays"
        );
        assert_eq!(r.binds.unwrap().len(), 1);
    }

    #[test]
    fn add_keys_merge_with_the_label() {
        let label = r#"{"capabilities":["CAP_SYS_ADMIN","CAP_NET_ADMIN"],"binds":["/a:/a"]}"#;
        let y = yaml(
            "name: x\nimage: y\ncapabilities.add: [CAP_NET_ADMIN, CAP_CHOWN]\nbinds.add: [/b:/b]\n",
        );
        let r = resolve_image_config(&y, Some(label)).unwrap();
        assert_eq!(caps(&r), ["CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_CHOWN"]);
        let binds: Vec<_> = r.binds.unwrap().into_iter().map(|b| b.value).collect();
        assert_eq!(binds, ["/a:/a", "/b:/b"]);
    }

    #[test]
    fn label_may_not_name_or_pick_the_image() {
        let y = yaml("name: x\nimage: y\n");
        let err = resolve_image_config(&y, Some(r#"{"name":"evil"}"#)).unwrap_err();
        assert!(err.contains("may not set `name`"), "{err}");
        let err = resolve_image_config(&y, Some("{not json")).unwrap_err();
        assert!(err.contains("label is invalid"), "{err}");
        let err =
            resolve_image_config(&y, Some(r#"{"readonly":true,"capabilites":[]}"#)).unwrap_err();
        assert!(
            err.contains("label is invalid: capabilites: unknown field `capabilites`"),
            "{err}"
        );
        for (label, key) in [
            (r#"{"timeout":"5s"}"#, "timeout"),
            (r#"{"readonly":true,"restart":"no"}"#, "restart"),
            (r#"{"dependsOn":["db"]}"#, "dependsOn"),
            ("restart: on-failure\n", "restart"),
        ] {
            let err = resolve_image_config(&y, Some(label)).unwrap_err();
            assert_eq!(
                err,
                format!(
                    "the org.mobyproject.config label may not set `{key}` (supervision keys are set in the spec only)"
                ),
                "{label}"
            );
        }
        let err = resolve_image_config(&y, Some(r#"{"runtime":{"mkdir":[1]}}"#)).unwrap_err();
        assert!(
            err.contains("label is invalid: runtime.mkdir[0]: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn supervision_keys_come_from_the_yaml() {
        let y = yaml("name: x\nimage: y\nrestart: on-failure\ndependsOn: [db]\n");
        let r = resolve_image_config(&y, Some(r#"{"readonly":true}"#)).unwrap();
        assert_eq!(r.restart.unwrap().value, crate::spec::Restart::OnFailure);
        assert_eq!(r.depends_on.unwrap()[0].value, "db");
        let y = yaml("name: x\nimage: y\ntimeout: 1s\n");
        let r = resolve_image_config(&y, None).unwrap();
        assert_eq!(r.timeout.unwrap().value.as_millis(), 1_000);
    }

    #[test]
    fn runtime_merges_key_by_key() {
        let label = r#"{"runtime":{"mkdir":["/var/lib/a"],"cgroups":["a"],"bindNS":{"net":"/run/netns/a","ipc":"/run/ipc/a"}}}"#;
        let y = yaml(
            "name: x\nimage: y\nruntime:\n  cgroups: [b]\n  bindNS:\n    net: /run/netns/b\n  namespace: ns\n",
        );
        let r = resolve_image_config(&y, Some(label))
            .unwrap()
            .runtime
            .unwrap();
        assert_eq!(r.mkdir.unwrap(), ["/var/lib/a"], "kept from the label");
        assert_eq!(r.cgroups.unwrap(), ["b"], "replaced by the YAML");
        assert_eq!(r.namespace.as_deref(), Some("ns"));
        let ns = r.bind_ns.unwrap();
        assert_eq!(ns.net.as_deref(), Some("/run/netns/b"));
        assert_eq!(ns.ipc.as_deref(), Some("/run/ipc/a"));
        assert_eq!(ns.pid, None);
        let only_label = resolve_image_config(&yaml("name: x\nimage: y\n"), Some(label)).unwrap();
        assert_eq!(only_label.runtime.unwrap().cgroups.unwrap(), ["a"]);
    }
}
