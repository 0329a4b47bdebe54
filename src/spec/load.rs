//! Reading spec files: YAML with locations, one-line errors (`file:line:col: key.path: msg`),
//! the merge of several files, then validation.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_saphyr::budget::BudgetBreach;

use super::{IdMap, Loc, Origin, Spec, validate};
use crate::disk::human_size;
use crate::limits::{Limits, SPEC_BYTES_FLAG, SPEC_NODES_FLAG};

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
    #[error("{path}")]
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
    /// A `files` entry's `source` cannot be copied from the host.
    #[error("{origin}: {key}")]
    Source {
        /// Where the `source` was written.
        origin: Origin,
        /// The key path (`files[2].source`).
        key: String,
        /// What is wrong with the host file.
        #[source]
        source: crate::tree::FromHostError,
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
            origin: Origin::of(file, loc),
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

/// The parser's budget for one spec file: the node and text bounds from `limits` (events are
/// bounded so that the node bound is the one met), the parser's defaults for the rest.
fn yaml_budget(limits: &Limits) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = limits.spec_nodes;
    // Each node is one event, or two for a list or map (start and end), around 4 more for
    // the stream and the document.
    budget.max_events = limits.spec_nodes.saturating_mul(2).saturating_add(16);
    budget.max_total_scalar_bytes = usize::try_from(limits.spec_bytes).unwrap_or(usize::MAX);
    budget
}

/// Which of the parser's bounds `breach` passed, its value, and how to raise it.
fn budget_message(breach: &BudgetBreach, limits: &Limits) -> String {
    let fixed = serde_saphyr::Budget::default();
    let spec = "the limit for one spec file";
    let yaml = "the limit for YAML in a spec";
    match breach {
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
            "more than {} YAML nodes (keys, values, lists and maps), {spec} (raise it with {SPEC_NODES_FLAG})",
            limits.spec_nodes
        ),
        BudgetBreach::ScalarBytes { .. } => format!(
            "more than {} of text in values (aliases expanded), {spec} (raise it with {SPEC_BYTES_FLAG})",
            human_size(limits.spec_bytes)
        ),
        BudgetBreach::Depth { .. } => {
            format!("more than {} levels of nesting, {yaml}", fixed.max_depth)
        }
        BudgetBreach::Aliases { .. } => {
            format!("more than {} aliases (`*name`), {yaml}", fixed.max_aliases)
        }
        BudgetBreach::Anchors { .. } => {
            format!("more than {} anchors (`&name`), {yaml}", fixed.max_anchors)
        }
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => format!(
            "{aliases} aliases for {anchors} anchors, more than {} per anchor, {yaml}",
            fixed.alias_anchor_ratio_multiplier
        ),
        BudgetBreach::MergeKeys { .. } => {
            format!(
                "more than {} merge keys (`<<`), {yaml}",
                fixed.max_merge_keys
            )
        }
        other => format!("YAML past a bound of its parser ({other:?}), {yaml}"),
    }
}

/// The message of a YAML error, in the words of a spec author (the parser's own texts for
/// these name its API).
fn yaml_message(e: &serde_saphyr::Error, limits: &Limits) -> String {
    match e.without_snippet() {
        serde_saphyr::Error::Budget { breach, .. } => budget_message(breach, limits),
        serde_saphyr::Error::MultipleDocuments { .. } => {
            "a spec is one YAML document; this file holds several (`---`)".to_string()
        }
        serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
            format!("key `{k}` is given twice")
        }
        serde_saphyr::Error::DuplicateMappingKey { key: None, .. } => {
            "a key is given twice".to_string()
        }
        other => bare_message(&other.to_string()),
    }
}

/// A serde key path as a spec key path: `Spanned` values add an internal `.value` step, and
/// the document itself (`.`) or an unknown place (`?`) is no key.
pub(super) fn spec_key(path: &str) -> String {
    if matches!(path, "." | "?") {
        return String::new();
    }
    path.replace(".value.", ".")
        .trim_end_matches(".value")
        .to_string()
}

/// Parse YAML `text` into `T`, reporting errors as `file:line:column: key.path: message`.
pub fn parse_located<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
) -> Result<T, SpecError> {
    parse_located_within(text, file, &Limits::default())
}

/// [`parse_located`] within the YAML bounds of `limits`.
pub fn parse_located_within<T: serde::de::DeserializeOwned>(
    text: &str,
    file: &Path,
    limits: &Limits,
) -> Result<T, SpecError> {
    let mut key = None;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(yaml_budget(limits));
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
            key = Some(e.path().to_string());
            e.into_inner()
        })
    });
    parsed.map_err(|e| {
        let (line, column) = e
            .location()
            .map_or((0, 0), |l| (l.line() as usize, l.column() as usize));
        SpecError::Invalid {
            origin: Origin {
                file: file.to_owned(),
                line,
                column,
            },
            key: key.as_deref().map(spec_key).unwrap_or_default(),
            message: yaml_message(&e, limits),
        }
    })
}

/// Parse one spec document from `text`; `file` names it in errors and `index` is recorded in
/// its parts. An empty document (nothing, comments, `---` or `~`) is an error.
pub fn load_str(text: &str, file: &Path, index: usize) -> Result<Spec, SpecError> {
    load_str_within(text, file, index, &Limits::default())
}

/// [`load_str`] within the YAML bounds of `limits`.
fn load_str_within(
    text: &str,
    file: &Path,
    index: usize,
    limits: &Limits,
) -> Result<Spec, SpecError> {
    let mut spec = parse_located_within::<Option<Spec>>(text, file, limits)?
        .ok_or_else(|| SpecError::in_file(file, "", "the spec is empty"))?;
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
    for o in &mut spec.outputs {
        o.file = index;
    }
    if let Some(b) = &mut spec.boot {
        b.efi_file = index;
        b.bios_file = index;
    }
    Ok(spec)
}

/// Read, merge and validate the spec files `paths` (in order), within the default limits.
pub fn load(paths: &[PathBuf]) -> Result<LoadedSpec, SpecError> {
    load_within(paths, &Limits::default())
}

/// The text of the spec file `path`, refused when it is larger than `limits` allow (read no
/// further than that, whatever the file is).
fn read_spec(path: &Path, limits: &Limits) -> Result<String, SpecError> {
    let read_err = |source| SpecError::Read {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut text = String::new();
    file.take(limits.spec_bytes.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > limits.spec_bytes {
        return Err(SpecError::in_file(
            path,
            "",
            format!(
                "larger than {}, the limit for one spec file (raise it with {SPEC_BYTES_FLAG})",
                human_size(limits.spec_bytes)
            ),
        ));
    }
    Ok(text)
}

/// Read, merge and validate the spec files `paths` (in order), within `limits`.
pub fn load_within(paths: &[PathBuf], limits: &Limits) -> Result<LoadedSpec, SpecError> {
    let mut merged: Option<Spec> = None;
    let mut warnings = Vec::new();
    for (index, path) in paths.iter().enumerate() {
        let text = read_spec(path, limits)?;
        let spec = load_str_within(&text, path, index, limits)?;
        if spec.trust.is_some() {
            warnings.push(format!(
                "{}: `trust` is obsolete and ignored",
                path.display()
            ));
        }
        merged = Some(match merged {
            Some(m) => super::merge::merge(m, spec),
            None => spec,
        });
    }
    let spec =
        merged.ok_or_else(|| SpecError::in_file(Path::new("-"), "", "no spec file given"))?;
    finish(spec, paths.to_vec(), warnings)
}

/// Allocate the ids of a merged `spec` read from `files`, then validate it.
fn finish(spec: Spec, files: Vec<PathBuf>, warnings: Vec<String>) -> Result<LoadedSpec, SpecError> {
    let loaded = LoadedSpec {
        ids: IdMap::allocate(&spec),
        spec,
        files,
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
        for empty in ["", "# nothing\n", "---\n", "~\n", "\n\n"] {
            assert_eq!(err(empty), "s.yml: the spec is empty", "{empty:?}");
        }
        assert_eq!(
            err("init: [a:1]\n---\ninit: [b:1]\n"),
            "s.yml:3:1: a spec is one YAML document; this file holds several (`---`)"
        );
        assert_eq!(
            err("init: [a:1]\ninit: [b:1]\n"),
            "s.yml:2:1: key `init` is given twice"
        );
        let e = err("- a\n");
        assert!(e.starts_with("s.yml:1:1: "), "{e}");
        let e = err("kernel: [a]\n");
        assert!(e.starts_with("s.yml:1:9: kernel: "), "{e}");
        let e = err("services:\n  - name: a\n    image: b\n    command: /bin/sh\n");
        assert!(e.starts_with("s.yml:4:14: services[0].command: "), "{e}");
        let e = err("files:\n  - contents: x\n");
        assert!(
            e.starts_with("s.yml:2:5: files[0]: missing field `path`"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.yml");
        let e = load(std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(e, SpecError::Read { .. }));
        assert!(
            crate::error::chain(&e).starts_with(&format!("{}: ", path.display())),
            "{e}"
        );
    }

    #[test]
    fn modes_are_octal_quoted_or_not() {
        let spec = load_str(
            "files:\n  - path: a\n    contents: x\n    mode: 0600\n  - path: b\n    directory: true\n    mode: \"0755\"\n  - path: c\n    contents: x\n    mode: 644\n",
            Path::new("s.yml"),
            0,
        )
        .unwrap();
        let modes: Vec<u32> = spec
            .files
            .iter()
            .map(|f| f.mode.as_ref().unwrap().value.0)
            .collect();
        assert_eq!(modes, [0o600, 0o755, 0o644]);
        let e = err("files:\n  - path: etc/x\n    contents: hi\n    mode: 0999\n");
        assert!(
            e.starts_with("s.yml:4:11: files[0].mode: mode \"0999\" is not an octal number"),
            "{e}"
        );
        let e = err("files:\n  - path: etc/x\n    contents: hi\n    mode: rwx\n");
        assert!(
            e.starts_with("s.yml:4:11: files[0].mode: mode \"rwx\""),
            "{e}"
        );
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
        let e = err(
            "onboot:\n  - name: a\n    image: b\nservices:\n  - name: c\n    image: d\n    additionalGids: [a, 5, ghost]\n",
        );
        assert_eq!(
            e,
            "s.yml:7:28: services[0].additionalGids[2]: \"ghost\" is neither a number, root, nor a container name"
        );
        let e = err("files:\n  - path: etc/x\n    contents: hi\n    gid: ghost\n");
        assert!(e.starts_with("s.yml:4:10: files[0].gid: \"ghost\""), "{e}");
        let e = err("init:\n  - \"@pkg:\"\n");
        assert_eq!(
            e,
            "s.yml:2:5: init[0]: `@pkg:` needs the path of a package folder"
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
    fn outputs_append_and_boot_keys_remember_their_file() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(
            &a,
            "boot:\n  efi: \"@pkg:stub\"\noutputs:\n  - format: raw-efi\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "boot:\n  bios: \"@pkg:sys\"\noutputs:\n  - format: iso-bios\n",
        )
        .unwrap();
        let l = load(&[a, b]).unwrap();
        let formats: Vec<_> = l
            .spec
            .outputs
            .iter()
            .map(|o| o.format.value.as_str())
            .collect();
        assert_eq!(formats, ["raw-efi", "iso-bios"]);
        assert_eq!(l.spec.outputs[1].file, 1);
        let boot = l.spec.boot.as_ref().unwrap();
        assert_eq!(boot.efi.as_ref().unwrap().value, "@pkg:stub");
        assert_eq!((boot.efi_file, boot.bios_file), (0, 1));
        let e = load_str(
            "outputs:\n  - format: raw-efi\n    project: x\n",
            Path::new("s.yml"),
            0,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("s.yml:3:5: outputs[0].project: unknown field"),
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
        let text = r#"kernel:
  image: k:1
  cmdline: console=ttyS0
  tar: none
init: [i:1, "@pkg:pkg/init"]
onboot:
  - name: sysctl
    image: s:1
    readonly: true
    devices: [{path: /dev/fuse, type: c, major: 10, minor: 229, mode: "0666"}]
    runtime:
      mkdir: [/var/lib/x]
      bindNS: {net: /run/netns/n}
      interfaces: [{name: eth1, add: veth, peer: veth1, createInRoot: true}]
services:
  - name: s
    image: x:2
    capabilities: [CAP_CHOWN]
    binds.add: ["/a:/a"]
    uid: sysctl
    additionalGids: [sysctl, 5]
    env: ["A=yes", "B=0600"]
    sysctl: {net.ipv4.ip_forward: "1"}
    rlimits: ["nofile,1024,unlimited"]
    resources: {memory: {limit: 1048576}}
    mounts: [{destination: /x, type: bind, source: /y, options: [rbind, ro]}]
files:
  - path: etc/f
    contents: "yes"
    mode: 0644
    uid: root
  - path: etc/d
    directory: true
volumes:
  - name: v
    image: y:3
    format: oci
    platforms: [linux/amd64]
"#;
        let mut spec = load_str(text, Path::new("s.yml"), 0).unwrap();
        let digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        crate::spec::pin_images(&mut spec, &|r| {
            (!r.starts_with(crate::spec::PKG_PREFIX)).then(|| format!("{r}@{digest}"))
        });
        let yaml = spec.to_yaml().unwrap();
        let back = load_str(&yaml, Path::new("out.yml"), 0).unwrap();
        assert_eq!(back.services[0].image(), format!("x:2@{digest}"));
        assert_eq!(back.files[0].mode.as_ref().unwrap().value.0, 0o644);
        assert_eq!(
            back.services[0].binds_add.as_ref().unwrap()[0].value,
            "/a:/a"
        );
        assert_eq!(back.to_yaml().unwrap(), yaml);
        assert_eq!(back.files[0].contents.as_deref(), Some("yes"));
        assert_eq!(back.services[0].env.as_ref().unwrap()[1], "B=0600");
        assert_eq!(
            back.init[1].value, "@pkg:pkg/init",
            "packages are not pinned"
        );
        assert_eq!(
            back.onboot[0]
                .runtime
                .as_ref()
                .unwrap()
                .interfaces
                .as_ref()
                .unwrap()[0]
                .peer,
            "veth1"
        );
        assert_eq!(
            back.volumes[0].image.as_ref().unwrap().value,
            format!("y:3@{digest}")
        );
        assert_eq!(back.kernel.as_ref().unwrap().tar.as_deref(), Some("none"));
        // The JSON form (metadata: json) reads back too.
        let json = back.to_json().unwrap();
        let from_json: crate::spec::Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(from_json.to_yaml().unwrap(), yaml);
    }

    #[test]
    fn spec_shaped_input_never_panics() {
        use proptest::prelude::*;
        let line = prop::sample::select(vec![
            "kernel:",
            "  image: k:1",
            "  cmdline: x",
            "init:",
            "  - i:1",
            "  - \"@pkg:p\"",
            "onboot:",
            "services:",
            "  - name: a",
            "    image: b",
            "    capabilities: [all]",
            "    capabilities.add: [CAP_X]",
            "    binds: [\"/a:/b:ro\"]",
            "    uid: a",
            "    gid: 9",
            "    additionalGids: [a, 1]",
            "    rlimits: [\"nofile,1,2\"]",
            "    mode: 0600",
            "    runtime:",
            "      bindNS: {net: /x}",
            "    devices: [{path: all, type: a}]",
            "    timeout: 1m30s",
            "    timeout: 0",
            "    restart: no",
            "    restart: maybe",
            "    dependsOn: [a]",
            "    dependsOn: [a, b, a]",
            "  - name: b",
            "    dependsOn: [b]",
            "files:",
            "  - path: etc/x",
            "    contents: |",
            "      text",
            "    mode: \"0644\"",
            "    uid: root",
            "volumes:",
            "  - name: v",
            "    format: oci",
            "trust: {org: [x]}",
            "---",
            "&a x: *a",
            "  - {",
            "- ]",
            "\t",
            "",
        ]);
        proptest!(ProptestConfig::with_cases(500), |(lines in prop::collection::vec(line, 0..24))| {
            if let Ok(spec) = load_str(&lines.join("\n"), Path::new("p.yml"), 0) {
                let _ = finish(spec, vec![PathBuf::from("p.yml")], Vec::new());
            }
        });
    }

    #[test]
    fn arbitrary_input_never_panics() {
        use proptest::prelude::*;
        proptest!(ProptestConfig::with_cases(300), |(text in "[a-z:\\-\\[\\]{}\" \n0-9@.,#&*!|>]{0,200}")| {
            let _ = load_str(&text, Path::new("p.yml"), 0);
        });
    }

    #[test]
    fn yaml_bounds_name_the_limit_its_value_and_its_flag() {
        let mut yaml = String::from("files:\n");
        for i in 0..100 {
            yaml.push_str(&format!("  - path: etc/f{i}\n    contents: x\n"));
        }
        let limits = Limits {
            spec_nodes: 200,
            ..Limits::default()
        };
        let e = parse_located_within::<Option<Spec>>(&yaml, Path::new("s.yml"), &limits)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("s.yml:") && e.ends_with(
                ": more than 200 YAML nodes (keys, values, lists and maps), the limit for one spec file (raise it with --max-spec-nodes)"
            ),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        // The default bound takes the same spec.
        assert!(load_str(&yaml, Path::new("s.yml"), 0).is_ok());
    }

    #[test]
    fn a_spec_file_larger_than_the_limit_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.yml");
        std::fs::write(&path, format!("# {}\ninit: [a:1]\n", "x".repeat(2000))).unwrap();
        let limits = Limits {
            spec_bytes: 1024,
            ..Limits::default()
        };
        let e = load_within(std::slice::from_ref(&path), &limits)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}: larger than 1K, the limit for one spec file (raise it with --max-spec-size)",
                path.display()
            )
        );
        assert!(load(std::slice::from_ref(&path)).is_ok());
    }
}
