//! What `osbuild run qemu PATH` boots: PATH names a build (its path prefix `out/NAME`, or its
//! manifest `out/NAME.json`) or one file a build wrote (`out/NAME-efi.img`). The manifest says
//! which format each file belongs to, for which architecture, and how it boots.

use std::path::{Path, PathBuf};

use crate::output::formats::FORMATS;
use crate::output::manifest::{Manifest, ManifestOutput};

/// A format's outputs picked from a manifest, with the directory its files are in.
#[derive(Debug, Clone)]
pub struct Target {
    /// The manifest's entry.
    pub output: ManifestOutput,
    /// The directory holding the manifest and the files.
    pub dir: PathBuf,
    /// The manifest's path.
    pub manifest: PathBuf,
}

impl Target {
    /// The path of the output's file with `role`, if it has one.
    pub fn file(&self, role: crate::output::Role) -> Option<PathBuf> {
        self.output.file(role).map(|f| self.dir.join(&f.path))
    }
}

/// The manifests that could describe `path`: itself when it ends in `.json`, `PATH.json`, and
/// for a file of a known format, the manifest of the name it was written under.
fn candidates(path: &Path) -> Vec<(PathBuf, Option<String>)> {
    let text = path.display().to_string();
    if text.ends_with(".json") {
        return vec![(path.to_path_buf(), None)];
    }
    let mut out = vec![(PathBuf::from(format!("{text}.json")), None)];
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for f in FORMATS {
        for o in f.files {
            if let Some(prefix) = text.strip_suffix(o.suffix)
                && !prefix.is_empty()
            {
                out.push((
                    PathBuf::from(format!("{prefix}.json")),
                    Some(file_name.clone()),
                ));
            }
        }
    }
    out
}

/// Pick what to boot for `path`, with `format` choosing among several formats of one build.
pub fn resolve(path: &Path, format: Option<&str>) -> Result<Target, String> {
    let mut tried = Vec::new();
    for (manifest_path, file) in candidates(path) {
        if !manifest_path.is_file() {
            tried.push(manifest_path.display().to_string());
            continue;
        }
        let manifest = Manifest::read(&manifest_path)?;
        let dir = manifest_path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        let matching: Vec<&ManifestOutput> = manifest
            .outputs
            .iter()
            .filter(|o| format.is_none_or(|f| o.format == f))
            .filter(|o| {
                file.as_ref()
                    .is_none_or(|name| o.files.iter().any(|f| &f.path == name))
            })
            .collect();
        let listed = || {
            manifest
                .outputs
                .iter()
                .map(|o| o.format.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return match matching.as_slice() {
            [one] => Ok(Target {
                output: (*one).clone(),
                dir,
                manifest: manifest_path,
            }),
            [] => Err(match (format, file) {
                (Some(f), _) => format!(
                    "{}: the build wrote no {f} output (it has {})",
                    manifest_path.display(),
                    listed()
                ),
                (None, Some(name)) => format!("{}: lists no file {name}", manifest_path.display()),
                (None, None) => format!("{}: the build wrote nothing", manifest_path.display()),
            }),
            _ => Err(format!(
                "{}: the build wrote {}: choose one with --format",
                manifest_path.display(),
                listed()
            )),
        };
    }
    Err(format!(
        "{}: no build found (looked for {}); run `osbuild build` first and give the --dir/--name it wrote, or one of its files",
        path.display(),
        tried.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::formats::{Boot, Firmware, Role};
    use crate::output::manifest::ManifestFile;

    fn write_manifest(dir: &Path) {
        let out = |format: &str, boot, files: &[(&str, Role)]| ManifestOutput {
            format: format.into(),
            arch: "amd64".into(),
            boot,
            files: files
                .iter()
                .map(|(p, r)| ManifestFile {
                    path: (*p).into(),
                    role: *r,
                    size: 0,
                    sha256: String::new(),
                    image_format: None,
                })
                .collect(),
        };
        let m = Manifest {
            name: "app".into(),
            outputs: vec![
                out(
                    "kernel+initrd",
                    Boot::Direct,
                    &[
                        ("app-kernel", Role::Kernel),
                        ("app-initrd.img", Role::Initrd),
                        ("app-cmdline", Role::Cmdline),
                    ],
                ),
                out(
                    "raw-efi",
                    Boot::Disk(Firmware::Uefi),
                    &[("app-efi.img", Role::Disk)],
                ),
            ],
        };
        std::fs::write(dir.join("app.json"), m.to_json()).unwrap();
    }

    #[test]
    fn a_file_picks_its_format_and_a_name_needs_a_choice() {
        let dir = tempfile::tempdir().unwrap();
        write_manifest(dir.path());
        let t = resolve(&dir.path().join("app-efi.img"), None).unwrap();
        assert_eq!(t.output.format, "raw-efi");
        assert_eq!(t.file(Role::Disk).unwrap(), dir.path().join("app-efi.img"));
        let err = resolve(&dir.path().join("app"), None).unwrap_err();
        assert!(
            err.ends_with("the build wrote kernel+initrd, raw-efi: choose one with --format"),
            "{err}"
        );
        let t = resolve(&dir.path().join("app"), Some("kernel+initrd")).unwrap();
        assert_eq!(t.file(Role::Kernel).unwrap(), dir.path().join("app-kernel"));
        let t = resolve(&dir.path().join("app.json"), Some("raw-efi")).unwrap();
        assert_eq!(t.output.boot, Boot::Disk(Firmware::Uefi));
        let err = resolve(&dir.path().join("app"), Some("iso-efi")).unwrap_err();
        assert!(err.contains("wrote no iso-efi output"), "{err}");
        let err = resolve(&dir.path().join("nothing"), None).unwrap_err();
        assert!(err.contains("no build found"), "{err}");
    }
}
