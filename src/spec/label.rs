//! The image label `org.mobyproject.config` and its precedence: image config < label < YAML.
//! Only `capabilities.add` and `binds.add` of the YAML add to the label's lists; every other
//! key set in the YAML replaces the label's value.

use super::ImageSpec;

/// Parse the label body (JSON, or YAML as LinuxKit allows) into an image spec.
fn parse_label(label: &str) -> Result<ImageSpec, String> {
    let spec: ImageSpec = match serde_json::from_str(label) {
        Ok(s) => s,
        Err(json_err) => serde_saphyr::from_str(label)
            .map_err(|_| format!("the org.mobyproject.config label is invalid: {json_err}"))?,
    };
    if spec.name.is_some() {
        return Err("the org.mobyproject.config label may not set `name`".into());
    }
    if spec.image.is_some() {
        return Err("the org.mobyproject.config label may not set `image`".into());
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
        annotations,
        runtime
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
    }
}
