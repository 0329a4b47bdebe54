//! The image references of a spec: listing them with where they were written, telling registry
//! references from `@pkg:PATH` package references, pinning them, and printing the pinned spec.

use std::path::{Path, PathBuf};

use super::{LoadedSpec, Loc, Origin, PKG_PREFIX, Spec};

/// What an image field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// A registry reference, as written (`redis:7`, `ghcr.io/o/r@sha256:…`).
    Registry(String),
    /// `@pkg:PATH`: the package in the folder PATH, resolved against the spec file's folder.
    Package(PathBuf),
}

impl ImageRef {
    /// Read an image field's `text` written in a spec file whose folder is `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> ImageRef {
        match text.strip_prefix(PKG_PREFIX) {
            Some(path) => ImageRef::Package(base_dir.join(path)),
            None => ImageRef::Registry(text.to_string()),
        }
    }
}

/// One image field of a spec.
#[derive(Debug, Clone)]
pub struct ImageUse<'a> {
    /// Where it was written.
    pub origin: Origin,
    /// The spec file it was written in (index into [`LoadedSpec::files`]).
    pub file: usize,
    /// Its key path (`kernel.image`, `init[0]`, `services[2].image`, `volumes[0].image`).
    pub key: String,
    /// The value as written (with its location).
    pub value: &'a Loc<String>,
    /// What it names.
    pub reference: ImageRef,
}

impl LoadedSpec {
    /// Every image field of the spec, in spec order: kernel, init, onboot, onshutdown,
    /// services, volumes.
    pub fn image_refs(&self) -> Vec<ImageUse<'_>> {
        let s = &self.spec;
        let mut found: Vec<(usize, String, &Loc<String>)> = Vec::new();
        if let Some(k) = &s.kernel
            && let Some(image) = &k.image
        {
            found.push((k.file, "kernel.image".into(), image));
        }
        for (i, (image, file)) in s.init.iter().zip(&s.init_files).enumerate() {
            found.push((*file, format!("init[{i}]"), image));
        }
        for (section, list) in [
            ("onboot", &s.onboot),
            ("onshutdown", &s.onshutdown),
            ("services", &s.services),
        ] {
            for (i, c) in list.iter().enumerate() {
                if let Some(image) = &c.image {
                    found.push((c.file, format!("{section}[{i}].image"), image));
                }
            }
        }
        for (i, v) in s.volumes.iter().enumerate() {
            if let Some(image) = &v.image {
                found.push((v.file, format!("volumes[{i}].image"), image));
            }
        }
        found
            .into_iter()
            .map(|(file, key, value)| ImageUse {
                origin: Origin::of(self.file(file), value),
                file,
                key,
                value,
                reference: ImageRef::parse(&value.value, &self.base_dir(file)),
            })
            .collect()
    }

    /// The `@pkg:` references of the spec, each with where it was written.
    pub fn package_refs(&self) -> Vec<ImageUse<'_>> {
        self.image_refs()
            .into_iter()
            .filter(|u| matches!(u.reference, ImageRef::Package(_)))
            .collect()
    }
}

/// Replace every image reference of `spec` by what `pin` gives for it (kept when `None`).
pub fn pin_images(spec: &mut Spec, pin: &dyn Fn(&str) -> Option<String>) {
    let mut apply = |loc: &mut Loc<String>| {
        if let Some(p) = pin(&loc.value) {
            loc.value = p;
        }
    };
    if let Some(image) = spec.kernel.as_mut().and_then(|k| k.image.as_mut()) {
        apply(image);
    }
    spec.init.iter_mut().for_each(&mut apply);
    for c in spec
        .onboot
        .iter_mut()
        .chain(&mut spec.onshutdown)
        .chain(&mut spec.services)
    {
        if let Some(image) = c.image.as_mut() {
            apply(image);
        }
    }
    for v in &mut spec.volumes {
        if let Some(image) = v.image.as_mut() {
            apply(image);
        }
    }
    if let Some(b) = spec.boot.as_mut() {
        b.efi.iter_mut().chain(b.bios.iter_mut()).for_each(apply);
    }
}

impl Spec {
    /// The spec as YAML (for `--dry-run` and `metadata: yaml`); it loads back as the same spec.
    pub fn to_yaml(&self) -> Result<String, String> {
        serde_saphyr::to_string(self).map_err(|e| e.to_string())
    }

    /// The spec as JSON (for `metadata: json`).
    pub fn to_json(&self) -> Result<String, String> {
        serde_json::to_string_pretty(self).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(text: &str) -> (tempfile::TempDir, LoadedSpec) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("os.yml");
        std::fs::write(&path, text).unwrap();
        let l = crate::spec::load(&[path]).unwrap();
        (dir, l)
    }

    const SPEC: &str = "kernel:\n  image: k:1\ninit:\n  - i:1\n  - \"@pkg:pkg/init\"\nonboot:\n  - name: a\n    image: \"@pkg:../a\"\nservices:\n  - name: s\n    image: x:2\nvolumes:\n  - name: v\n    image: y:3\n";

    #[test]
    fn every_image_field_is_listed_with_its_place() {
        let (dir, l) = loaded(SPEC);
        let refs = l.image_refs();
        let keys: Vec<&str> = refs.iter().map(|r| r.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kernel.image",
                "init[0]",
                "init[1]",
                "onboot[0].image",
                "services[0].image",
                "volumes[0].image"
            ]
        );
        assert_eq!(refs[0].reference, ImageRef::Registry("k:1".into()));
        assert_eq!((refs[2].origin.line, refs[2].origin.column), (5, 5));
        let pkgs = l.package_refs();
        assert_eq!(pkgs.len(), 2);
        assert_eq!(
            pkgs[0].reference,
            ImageRef::Package(dir.path().join("pkg/init"))
        );
        assert_eq!(
            pkgs[1].reference,
            ImageRef::Package(dir.path().join("../a"))
        );
        assert_eq!(
            pkgs[1].origin.to_string(),
            format!("{}:8:12", dir.path().join("os.yml").display())
        );
    }

    #[test]
    fn pinning_covers_every_listed_image() {
        let (_dir, l) = loaded(SPEC);
        let mut spec = l.spec.clone();
        pin_images(&mut spec, &|r| Some(format!("pinned/{r}")));
        let pinned = LoadedSpec { spec, ..l.clone() };
        for (before, after) in l.image_refs().iter().zip(pinned.image_refs()) {
            assert_eq!(after.value.value, format!("pinned/{}", before.value.value));
        }
    }
}
