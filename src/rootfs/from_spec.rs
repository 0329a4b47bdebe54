//! The plan of a build's root filesystem, made from the loaded spec and the configs of the
//! images it pulled: the kernel's files, the init images, one bundle per container (with its
//! generated `config.json`, `runtime.json` and `supervise.json`), volumes and `files`.

use std::collections::BTreeMap;

use super::oci_config::{ConfigInput, VolumeInfo, generate};
use super::plan::{BundlePlan, FileBody, FilePlan, KernelPlan, RootfsPlan, Section, VolumePlan};
use super::runtime_json::runtime_json;
use crate::image::{Arch, Cache, ImageError, PulledImage};
use crate::spec::{
    ImageSpec, LoadedSpec, Loc, Origin, SpecError, resolve_image_config, resolve_source,
};
use crate::tree::TreePath;

/// Why a root filesystem could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The spec asks for something the images cannot give.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An image's layout could not be read from the cache.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An image the spec names was not pulled (a bug in the caller).
    #[error("{0}")]
    Internal(String),
}

fn spec_error<T>(
    loaded: &LoadedSpec,
    file: usize,
    loc: &Loc<T>,
    key: String,
    message: String,
) -> PlanError {
    PlanError::Spec(SpecError::at(loaded.file(file), loc, key, message))
}

/// Decide the layout of the root filesystem from the spec (`pinned`: with every image pinned,
/// for `metadata` files) and the pulled images' configs.
pub fn plan(
    loaded: &LoadedSpec,
    pinned: &crate::spec::Spec,
    images: &BTreeMap<String, PulledImage>,
    cache: &Cache,
    mtime: i64,
    arch: Arch,
) -> Result<RootfsPlan, PlanError> {
    let s = &loaded.spec;
    let mut plan = RootfsPlan::default();
    if let Some(k) = &s.kernel
        && let Some(image) = &k.image
    {
        plan.kernel = Some(KernelPlan {
            image: image.value.clone(),
            binary: k
                .binary
                .clone()
                .filter(|b| !b.is_empty())
                .unwrap_or_else(|| "kernel".into()),
            tar: match k.tar.as_deref() {
                None | Some("") => Some("kernel.tar".into()),
                Some("none") => None,
                Some(t) => Some(t.into()),
            },
            ucode: k.ucode.clone().filter(|u| !u.is_empty()),
            cmdline: k.cmdline.clone().unwrap_or_default(),
        });
    }
    plan.init = s.init.iter().map(|i| i.value.clone()).collect();
    let mut volumes = BTreeMap::new();
    for (i, v) in s.volumes.iter().enumerate() {
        volumes.insert(
            v.name.value.clone(),
            VolumeInfo {
                readonly: v.readonly,
            },
        );
        let oci = v.format.as_ref().is_some_and(|f| f.value == "oci");
        let oci_layout = match (&v.image, oci) {
            (Some(image), true) => {
                if let Some(other) = v
                    .platforms
                    .iter()
                    .find(|p| p.as_str() != format!("linux/{arch}"))
                {
                    return Err(spec_error(
                        loaded,
                        v.file,
                        image,
                        format!("volumes[{i}].platforms"),
                        format!(
                            "only the build's platform linux/{arch} can be placed in an oci volume, not {other}"
                        ),
                    ));
                }
                let pulled = images.get(&image.value).ok_or_else(|| {
                    PlanError::Internal(format!("image {} was not pulled", image.value))
                })?;
                Some(crate::image::archive::layout_tree(
                    cache,
                    &pulled.pinned,
                    mtime,
                )?)
            }
            _ => None,
        };
        plan.volumes.push(VolumePlan {
            name: v.name.value.clone(),
            image: v.image.as_ref().map(|i| i.value.clone()),
            oci_layout,
        });
    }
    let sections = [
        (Section::Onboot, "onboot", &s.onboot),
        (Section::Onshutdown, "onshutdown", &s.onshutdown),
        (Section::Services, "services", &s.services),
    ];
    for (section, key, list) in sections {
        for (i, c) in list.iter().enumerate() {
            plan.bundles
                .push(bundle(loaded, section, key, i, c, images, &volumes)?);
        }
    }
    for (i, f) in s.files.iter().enumerate() {
        let file = loaded.file(f.file);
        let key = format!("files[{i}]");
        // The spec was validated: this fails only for a spec that was not.
        let path = TreePath::parse(&f.path.value).map_err(|e| {
            PlanError::Spec(SpecError::at(
                file,
                &f.path,
                format!("{key}.path"),
                e.to_string(),
            ))
        })?;
        let mut is_dir = f.directory;
        let body = if f.directory {
            FileBody::Directory
        } else if let Some(target) = &f.symlink {
            FileBody::Symlink(target.clone())
        } else if let Some(c) = &f.contents {
            FileBody::Contents(c.as_bytes().to_vec())
        } else if let Some(src) = &f.source {
            // Resolved again: the host may have changed since the spec was loaded.
            let Some(source) = resolve_source(loaded, i, f, src)? else {
                continue;
            };
            is_dir = source.is_dir;
            FileBody::Source {
                path: source.path,
                // `optional` was applied here: a source that is there must copy whole.
                optional: false,
            }
        } else {
            let text = match f.metadata.as_ref().map(|m| m.value.as_str()) {
                Some("json") => pinned.to_json(),
                _ => pinned.to_yaml(),
            }
            .map_err(PlanError::Internal)?;
            FileBody::Contents(text.into_bytes())
        };
        let id = |v: &Option<Loc<crate::spec::IdRef>>| -> Result<u32, PlanError> {
            match v {
                Some(v) => loaded.ids.resolve(&v.value).map_err(|n| {
                    PlanError::Spec(SpecError::at(
                        file,
                        v,
                        key.clone(),
                        format!("unknown id {n:?}"),
                    ))
                }),
                None => Ok(0),
            }
        };
        plan.files.push(FilePlan {
            mode: f
                .mode
                .as_ref()
                .map_or(if is_dir { 0o700 } else { 0o600 }, |m| m.value.0),
            uid: id(&f.uid)?,
            gid: id(&f.gid)?,
            location: format!("{}: {key}", Origin::of(file, &f.path)),
            path,
            body,
        });
    }
    Ok(plan)
}

fn bundle(
    loaded: &LoadedSpec,
    section: Section,
    key: &str,
    index: usize,
    c: &ImageSpec,
    images: &BTreeMap<String, PulledImage>,
    volumes: &BTreeMap<String, VolumeInfo>,
) -> Result<BundlePlan, PlanError> {
    let image_ref = c.image();
    let image = images
        .get(image_ref)
        .ok_or_else(|| PlanError::Internal(format!("image {image_ref} was not pulled")))?;
    let config = image.config.config().clone();
    let label = config
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(crate::image::inspect::LINUXKIT_LABEL))
        .cloned();
    let at = |message: String| -> PlanError {
        let key = format!("{key}[{index}]");
        let file = loaded.file(c.file);
        PlanError::Spec(match (&c.name, &c.at) {
            (Some(name), _) => SpecError::at(file, name, key, message),
            (None, Some(at)) => SpecError::at(file, at, key, message),
            (None, None) => SpecError::in_file(file, key, message),
        })
    };
    let resolved = resolve_image_config(c, label.as_deref())
        .map_err(|m| at(format!("{}: {m}", image.pinned)))?;
    let generated = generate(&ConfigInput {
        spec: &resolved,
        image: config.as_ref(),
        ids: &loaded.ids,
        volumes,
    })
    .map_err(|m| at(format!("{}: {m}", image.pinned)))?;
    let dir_name = section.bundle_name(index, c.name());
    let path = format!("containers/{}/{dir_name}", section.dir_name());
    let runtime = runtime_json(&resolved, &path, generated.readonly).map_err(at)?;
    Ok(BundlePlan {
        section,
        dir_name,
        image: image_ref.to_string(),
        readonly: generated.readonly,
        config_json: generated.json,
        runtime_json: runtime,
        supervise_json: crate::rootfs::supervise_json::supervise_json(&resolved).map_err(at)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn plan_files(dir: &std::path::Path, yaml: &str) -> Result<Vec<FilePlan>, PlanError> {
        let spec = dir.join("s.yml");
        fs::write(&spec, yaml).unwrap();
        let loaded = crate::spec::load(std::slice::from_ref(&spec)).unwrap();
        let cache = Cache::open(&dir.join("cache")).unwrap();
        let pinned = loaded.spec.clone();
        plan(&loaded, &pinned, &BTreeMap::new(), &cache, 0, Arch::Amd64).map(|p| p.files)
    }

    #[test]
    fn sources_are_planned_resolved_with_linuxkit_modes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::create_dir(d.join("conf")).unwrap();
        fs::write(d.join("real"), "x").unwrap();
        symlink("real", d.join("link")).unwrap();
        symlink("conf", d.join("conf-link")).unwrap();
        let files = plan_files(
            d,
            "files:\n  - path: etc/conf\n    source: conf-link\n  - path: etc/x\n    source: link\n  - path: etc/gone\n    source: missing\n    optional: true\n  - path: etc/mode\n    source: conf\n    mode: \"0750\"\n",
        )
        .unwrap();
        let got: Vec<(String, u32, FileBody, String)> = files
            .into_iter()
            .map(|f| {
                let location = f.location.replace(&d.display().to_string(), "DIR");
                (f.path.to_string(), f.mode, f.body, location)
            })
            .collect();
        let source = |p: &str| FileBody::Source {
            path: fs::canonicalize(d.join(p)).unwrap(),
            optional: false,
        };
        assert_eq!(
            got,
            [
                (
                    "etc/conf".into(),
                    0o700,
                    source("conf"),
                    "DIR/s.yml:2:11: files[0]".into()
                ),
                (
                    "etc/x".into(),
                    0o600,
                    source("real"),
                    "DIR/s.yml:4:11: files[1]".into()
                ),
                (
                    "etc/mode".into(),
                    0o750,
                    source("conf"),
                    "DIR/s.yml:9:11: files[3]".into()
                ),
            ]
        );
    }

    #[test]
    fn a_source_that_changed_since_loading_is_refused_where_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("f"), "x").unwrap();
        let spec = d.join("s.yml");
        fs::write(&spec, "files:\n  - path: etc/f\n    source: f\n").unwrap();
        let loaded = crate::spec::load(std::slice::from_ref(&spec)).unwrap();
        fs::remove_file(d.join("f")).unwrap();
        symlink("f", d.join("f")).unwrap();
        let cache = Cache::open(&d.join("cache")).unwrap();
        let err = plan(
            &loaded,
            &loaded.spec.clone(),
            &BTreeMap::new(),
            &cache,
            0,
            Arch::Amd64,
        )
        .unwrap_err();
        assert!(
            matches!(&err, PlanError::Spec(SpecError::Source { key, .. }) if key == "files[0].source"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!("{}:3:13: files[0].source", spec.display())
        );
    }
}
