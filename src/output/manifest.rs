//! `NAME.json`: what a build wrote, per format: the architecture, each file with its role,
//! size and sha256, and how it boots. `osbuild run qemu` reads it instead of guessing from
//! file names. A later build of the same name replaces the entries of the formats it wrote and
//! keeps the others whose files are still there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::OutputError;
use super::formats::{Boot, Format, Role};
use crate::archive::atomic::StagedOutputs;
use crate::image::Arch;

/// What a build wrote of one format: the format, how it boots as built, and its files with
/// their roles.
pub type WrittenFormat = (Format, Boot, Vec<(PathBuf, Role)>);

/// A build's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The build's name (the files' common prefix).
    pub name: String,
    /// One entry per format, sorted by format name.
    pub outputs: Vec<ManifestOutput>,
}

/// One format's files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestOutput {
    /// The format's name.
    pub format: String,
    /// The architecture it was built for.
    pub arch: String,
    /// How it boots.
    pub boot: Boot,
    /// Its files.
    pub files: Vec<ManifestFile>,
}

/// One written file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Its file name, in the manifest's directory.
    pub path: String,
    /// What it holds.
    pub role: Role,
    /// Its size in bytes.
    pub size: u64,
    /// The sha256 of its bytes (hex).
    pub sha256: String,
    /// For a disk image in a container, QEMU's name for it (`qcow2`, `vpc`, `vhdx`, `vmdk`,
    /// `raw`); absent for plain raw disks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_format: Option<String>,
}

/// The sha256 (hex) and length of the file at `path`.
pub fn sha256_file(path: &Path) -> std::io::Result<(String, u64)> {
    let (digest, len) = crate::image::cache::hash_reader(std::fs::File::open(path)?)?;
    Ok((digest.trim_start_matches("sha256:").to_string(), len))
}

impl Manifest {
    /// The manifest at `path` after a build named `name` for `arch` wrote `written` (staged in
    /// `staged`): the entries of an existing manifest for other formats are kept while their
    /// files are still there.
    pub fn describe(
        name: &str,
        arch: Arch,
        written: &[WrittenFormat],
        staged: &StagedOutputs,
        path: &Path,
    ) -> Result<Manifest, OutputError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut outputs = Vec::new();
        for (format, boot, files) in written {
            let mut entry = ManifestOutput {
                format: format.name.to_string(),
                arch: arch.to_string(),
                boot: *boot,
                files: Vec::new(),
            };
            let image_format = format
                .vm
                .and_then(|vm| vm.container.qemu_format())
                .map(str::to_string);
            for (dest, role) in files {
                let source = staged.temp_path(dest).unwrap_or(dest);
                let (sha256, size) = sha256_file(source).map_err(|e| OutputError::io(dest, e))?;
                entry.files.push(ManifestFile {
                    path: dest
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    role: *role,
                    size,
                    sha256,
                    image_format: image_format.clone().filter(|_| *role == Role::Disk),
                });
            }
            outputs.push(entry);
        }
        if let Ok(old) = Manifest::read(path)
            && old.name == name
        {
            for entry in old.outputs {
                let rebuilt = outputs.iter().any(|o| o.format == entry.format);
                let present = entry
                    .files
                    .iter()
                    .all(|f| std::fs::metadata(dir.join(&f.path)).is_ok_and(|m| m.len() == f.size));
                if !rebuilt && present {
                    outputs.push(entry);
                }
            }
        }
        outputs.sort_by(|a, b| a.format.cmp(&b.format));
        Ok(Manifest {
            name: name.to_string(),
            outputs,
        })
    }

    /// Read the manifest at `path`.
    pub fn read(path: &Path) -> Result<Manifest, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_str(&text)
            .map_err(|e| format!("{}: not an osbuild manifest: {e}", path.display()))
    }

    /// The manifest as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

impl ManifestOutput {
    /// The file with `role`, if the format wrote one.
    pub fn file(&self, role: Role) -> Option<&ManifestFile> {
        self.files.iter().find(|f| f.role == role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_round_trips() {
        let m = Manifest {
            name: "app".into(),
            outputs: vec![ManifestOutput {
                format: "raw-efi".into(),
                arch: "arm64".into(),
                boot: Boot::Disk(super::super::Firmware::Uefi),
                files: vec![ManifestFile {
                    path: "app-efi.img".into(),
                    role: Role::Disk,
                    size: 3,
                    sha256: "ab".into(),
                    image_format: None,
                }],
            }],
        };
        let text = m.to_json();
        assert!(
            text.contains("\"boot\": {\n        \"method\": \"disk\",\n        \"firmware\": \"uefi\"\n      }"),
            "{text}"
        );
        let back: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, m);
    }
}
