//! Reading spec files: YAML with locations, one-line errors (`file:line:col: key.path: msg`),
//! the merge of several files, then validation.

use std::fmt;
use std::path::{Path, PathBuf};

use super::{IdMap, Loc, Origin, Spec, validate};

/// A spec that loaded, merged and validated.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The merged spec.
    pub spec: Spec,
    /// The files it came from, in order (the `file` indices of its parts).
    pub files: Vec<PathBuf>,
    /// Container names and their uid/gid.
    pub ids: IdMap,
    /// Things worth saying that do not stop the build (`trust` is obsolete, ...).
    pub warnings: Vec<String>,
}

/// Why a spec cannot be used. Every variant prints as one line naming the place.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A spec file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The YAML is malformed or does not fit the schema; or a value is invalid.
    #[error("{}", located(origin, key, message))]
    Invalid {
        /// Where.
        origin: Origin,
        /// The key path (`services[1].capabilities[0]`), empty for the whole document.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn located(origin: &Origin, key: &str, message: &str) -> String {
    if key.is_empty() {
        format!("{origin}: {message}")
    } else {
        format!("{origin}: {key}: {message}")
    }
}

impl SpecError {
    /// An invalid value at `loc` in `file`.
    pub fn at<T>(
        file: &Path,
        loc: &Loc<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError::Invalid {
            origin: Origin {
                file: file.to_owned(),
                line: loc.referenced.line() as usize,
                column: loc.referenced.column() as usize,
            },
            key: key.into(),
            message: message.into(),
        }
    }

    /// An invalid value somewhere in `file` (no better place known).
    pub fn in_file(file: &Path, key: impl Into<String>, message: impl Into<String>) -> SpecError {
        SpecError::Invalid {
            origin: Origin {
                file: file.to_owned(),
                line: 0,
                column: 0,
            },
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Strip serde-saphyr's trailing " at line L, column C" (the location is printed first).
fn bare_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text);
    match first.rfind(" at line ") {
        Some(i) if first[i..].contains("column") => first[..i].to_string(),
        _ => first.to_string(),
    }
}

/// Parse YAML `text` into `T`, reporting errors as `file:line:column: key.path: message`.
pub fn parse_located<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<T, SpecError> {
    let mut key = None;
    let parsed = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            key = Some(e.path().to_string());
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        // Spanned values add an internal `.value` step to the path; it is not a spec key.
        let key = key
            .take()
            .filter(|k| k != ".")
            .map(|k| {
                k.replace(".value.", ".")
                    .trim_end_matches(".value")
                    .to_string()
            })
            .unwrap_or_default();
        SpecError::Invalid {
            origin: Origin {
                file: file.to_owned(),
                line,
                column,
            },
            key,
            message: bare_message(&e.without_snippet().to_string()),
        }
    })
}

/// Parse one spec document from `text`; `file` names it in errors and `index` is recorded in
/// its parts.
pub fn load_str(text: &str, file: &Path, index: usize) -> Result<Spec, SpecError> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Err(SpecError::in_file(file, "", "the spec is empty"));
    }
    let mut spec: Spec = parse_located(text, file)?;
    if let Some(k) = &mut spec.kernel {
        k.file = index;
    }
    spec.init_files = vec![index; spec.init.len()];
    for c in spec
        .onboot
        .iter_mut()
        .chain(&mut spec.onshutdown)
        .chain(&mut spec.services)
    {
        c.file = index;
    }
    for f in &mut spec.files {
        f.file = index;
    }
    for v in &mut spec.volumes {
        v.file = index;
    }
    Ok(spec)
}

/// Merge `later` into `earlier` as LinuxKit does: kernel fields set later win, lists append.
pub fn merge(mut earlier: Spec, later: Spec) -> Spec {
    if let Some(k1) = later.kernel {
        let k0 = earlier.kernel.get_or_insert_with(Default::default);
        if k1.image.is_some() {
            k0.image = k1.image;
            k0.file = k1.file;
        }
        if k1.cmdline.is_some() {
            k0.cmdline = k1.cmdline;
        }
        if k1.binary.is_some() {
            k0.binary = k1.binary;
        }
        if k1.tar.is_some() {
            k0.tar = k1.tar;
        }
        if k1.ucode.is_some() {
            k0.ucode = k1.ucode;
        }
    }
    earlier.init.extend(later.init);
    earlier.init_files.extend(later.init_files);
    earlier.onboot.extend(later.onboot);
    earlier.onshutdown.extend(later.onshutdown);
    earlier.services.extend(later.services);
    earlier.files.extend(later.files);
    earlier.volumes.extend(later.volumes);
    if later.trust.is_some() {
        earlier.trust = later.trust;
    }
    earlier
}

/// Read, merge and validate the spec files `paths` (in order).
pub fn load(paths: &[PathBuf]) -> Result<LoadedSpec, SpecError> {
    let mut merged: Option<Spec> = None;
    let mut warnings = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let spec = load_str(&text, path, index)?;
        if spec.trust.is_some() {
            warnings.push(format!(
                "{}: `trust` is obsolete and ignored",
                path.display()
            ));
        }
        merged = Some(match merged {
            Some(m) => merge(m, spec),
            None => spec,
        });
    }
    let spec =
        merged.ok_or_else(|| SpecError::in_file(Path::new("-"), "", "no spec file given"))?;
    let loaded = LoadedSpec {
        ids: IdMap::allocate(&spec),
        spec,
        files: paths.to_vec(),
        warnings,
    };
    validate::validate(&loaded)?;
    Ok(loaded)
}

impl LoadedSpec {
    /// The file part `index` came from.
    pub fn file(&self, index: usize) -> &Path {
        self.files
            .get(index)
            .map_or(Path::new("-"), PathBuf::as_path)
    }

    /// The directory relative paths in file `index` are resolved against.
    pub fn base_dir(&self, index: usize) -> PathBuf {
        self.file(index)
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    }
}

impl fmt::Display for LoadedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files: Vec<String> = self.files.iter().map(|p| p.display().to_string()).collect();
        write!(f, "{}", files.join(" + "))
    }
}

/// Replace every registry image reference of `spec` by what `pin` gives for it.
pub fn pin_images(spec: &mut super::Spec, pin: &dyn Fn(&str) -> Option<String>) {
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
}

impl super::Spec {
    /// The spec as YAML (for `--dry-run` and `metadata: yaml`).
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

    fn err(yaml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yml");
        std::fs::write(&path, yaml).unwrap();
        let msg = load(std::slice::from_ref(&path)).unwrap_err().to_string();
        msg.replace(&path.display().to_string(), "s.yml")
    }

    #[test]
    fn unknown_key_names_line_column_and_key_path() {
        let e = err(
            "kernel:\n  image: k:1\nservices:\n  - name: a\n    image: b\n    capabilites: [CAP_CHOWN]\n",
        );
        assert!(
            e.starts_with("s.yml:6:5: services[0].capabilites: unknown field `capabilites`"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
    }

    #[test]
    fn wrong_type_and_syntax_errors_are_located() {
        let e = err("services:\n  - name: a\n    image: b\n    readonly: maybe\n");
        assert!(e.starts_with("s.yml:4:15: services[0].readonly: "), "{e}");
        let e = err("init: [a\n");
        assert!(e.starts_with("s.yml:1:"), "{e}");
        let e = err("# nothing\n");
        assert_eq!(e, "s.yml: the spec is empty");
    }

    #[test]
    fn bad_values_are_located() {
        let e = err("files:\n  - path: etc/x\n    contents: hi\n    mode: \"0999\"\n");
        assert!(
            e.starts_with("s.yml:4:11: files[0].mode: mode \"0999\" is not an octal number"),
            "{e}"
        );
        let e =
            err("services:\n  - name: a\n    image: b\n    capabilities: [CAP_CHOWN, net_admin]\n");
        assert_eq!(
            e,
            "s.yml:4:31: services[0].capabilities[1]: unknown capability \"net_admin\" (did you mean CAP_NET_ADMIN?)"
        );
        let e = err("services:\n  - name: a\n    image: b\n  - name: a\n    image: c\n");
        assert_eq!(
            e,
            "s.yml:4:11: services[1].name: duplicate service name \"a\" (first at line 2)"
        );
        let e = err("services:\n  - name: a\n    image: b\n    uid: nobody\n");
        assert!(
            e.starts_with("s.yml:4:10: services[0].uid: \"nobody\" is neither"),
            "{e}"
        );
        let e = err("init:\n  - Not/Valid\n");
        assert!(
            e.starts_with("s.yml:2:5: init[0]: invalid repository name"),
            "{e}"
        );
        let e = err("files:\n  - path: etc/x\n    contents: a\n    source: b\n");
        assert!(
            e.starts_with("s.yml:2:11: files[0]: give only one of"),
            "{e}"
        );
        let e = err("services:\n  - name: a\n    image: b\n    rlimits: [\"nofile,1\"]\n");
        assert!(
            e.starts_with("s.yml:4:15: services[0].rlimits[0]: rlimit"),
            "{e}"
        );
    }

    #[test]
    fn files_merge_with_later_kernel_fields_winning() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, "kernel:\n  image: k:1\n  cmdline: one\ninit: [i:1]\nservices:\n  - name: s1\n    image: x\n").unwrap();
        std::fs::write(&b, "kernel:\n  cmdline: two\ninit: [i:2]\nservices:\n  - name: s2\n    image: y\n    uid: s1\ntrust:\n  org: [linuxkit]\n").unwrap();
        let l = load(&[a.clone(), b.clone()]).unwrap();
        let k = l.spec.kernel.as_ref().unwrap();
        assert_eq!(k.image.as_ref().unwrap().value, "k:1");
        assert_eq!(k.cmdline.as_deref(), Some("two"));
        let init: Vec<_> = l.spec.init.iter().map(|i| i.value.as_str()).collect();
        assert_eq!(init, ["i:1", "i:2"]);
        assert_eq!(l.spec.services.len(), 2);
        assert_eq!(l.file(l.spec.services[1].file), b.as_path());
        assert_eq!(l.ids.get("s1"), Some(100));
        assert_eq!(l.ids.get("s2"), Some(101));
        assert_eq!(l.warnings.len(), 1);
        // A duplicate across files is reported in the later file.
        std::fs::write(&b, "services:\n  - name: s1\n    image: y\n").unwrap();
        let e = load(&[a, b.clone()]).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "{}:2:11: services[1].name: duplicate",
                b.display()
            )),
            "{e}"
        );
    }

    #[test]
    fn ids_count_from_100_across_sections() {
        let l = load_str(
            "onboot:\n  - {name: a, image: x}\n  - {name: b, image: x}\nonshutdown:\n  - {name: c, image: x}\nservices:\n  - {name: d, image: x}\n",
            Path::new("s.yml"),
            0,
        )
        .unwrap();
        let ids = crate::spec::IdMap::allocate(&l);
        assert_eq!(
            [ids.get("a"), ids.get("b"), ids.get("c"), ids.get("d")],
            [Some(100), Some(101), Some(102), Some(103)]
        );
    }

    #[test]
    fn pinned_yaml_loads_back() {
        let text = "kernel:\n  image: k:1\n  cmdline: console=ttyS0\ninit: [i:1]\nservices:\n  - name: s\n    image: x:2\n    capabilities: [CAP_CHOWN]\n    binds.add: [\"/a:/a\"]\nfiles:\n  - path: etc/f\n    contents: hi\n    mode: \"0644\"\n";
        let mut spec = load_str(text, Path::new("s.yml"), 0).unwrap();
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        pin_images(&mut spec, &|r| Some(format!("{r}@{digest}")));
        let yaml = spec.to_yaml().unwrap();
        let back = load_str(&yaml, Path::new("out.yml"), 0).unwrap();
        assert_eq!(back.services[0].image(), format!("x:2@{digest}"));
        assert_eq!(back.files[0].mode.as_ref().unwrap().value.0, 0o644);
        assert_eq!(
            back.services[0].binds_add.as_ref().unwrap()[0].value,
            "/a:/a"
        );
        assert_eq!(back.to_yaml().unwrap(), yaml);
    }

    #[test]
    fn arbitrary_input_never_panics() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(300), |(text in "[a-z:\\-\\[\\]{}\" \n0-9@.,#&*!|>]{0,200}")| {
            let _ = load_str(&text, Path::new("p.yml"), 0);
        });
    }
}
