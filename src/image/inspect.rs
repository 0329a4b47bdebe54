//! `osbuild inspect`: what an image is made for and of (platforms, config, LinuxKit label).

use std::fmt::Write;

use serde::Serialize;

use super::registry::Puller;
use super::{Arch, ImageError, Reference};

/// The LinuxKit label carrying an image's default container config.
pub const LINUXKIT_LABEL: &str = "org.mobyproject.config";

/// What `inspect` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The reference as asked.
    pub reference: String,
    /// The reference pinned by digest.
    pub pinned: String,
    /// The platform manifest shown.
    pub manifest_digest: String,
    /// Platforms of the image (from its index; one for a single manifest).
    pub platforms: Vec<String>,
    /// Architecture of the config shown.
    pub architecture: String,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `Env`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// Labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The LinuxKit label, parsed.
    pub linuxkit: Option<serde_json::Value>,
    /// Number of layers.
    pub layers: usize,
}

/// Pull (or read from the cache) `reference` for `arch` and describe it.
pub async fn inspect(
    puller: &Puller,
    reference: &Reference,
    arch: Arch,
) -> Result<Inspection, ImageError> {
    let image = puller.pull(reference, arch).await?;
    let top_digest = image.pinned.digest.clone().unwrap_or_default();
    let top = puller.cache().read_blob(&top_digest)?.unwrap_or_default();
    let top: serde_json::Value = serde_json::from_slice(&top).unwrap_or_default();
    let platforms = match top.get("manifests").and_then(|m| m.as_array()) {
        Some(list) => list
            .iter()
            .filter_map(|m| {
                let os = m.pointer("/platform/os")?.as_str()?;
                let arch = m.pointer("/platform/architecture")?.as_str()?;
                (os != "unknown").then(|| format!("{os}/{arch}"))
            })
            .collect(),
        None => vec![format!("linux/{}", image.config.architecture())],
    };
    let cfg = image.config.config().clone().unwrap_or_default();
    let labels: std::collections::BTreeMap<String, String> = cfg
        .labels()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let linuxkit = match labels.get(LINUXKIT_LABEL) {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| ImageError::Invalid {
            reference: reference.to_string(),
            reason: format!("label {LINUXKIT_LABEL} is not JSON: {e}"),
        })?),
        None => None,
    };
    Ok(Inspection {
        reference: reference.to_string(),
        pinned: image.pinned.to_string(),
        manifest_digest: image.manifest_digest.clone(),
        platforms,
        architecture: image.config.architecture().to_string(),
        entrypoint: cfg.entrypoint().clone().unwrap_or_default(),
        cmd: cfg.cmd().clone().unwrap_or_default(),
        env: cfg.env().clone().unwrap_or_default(),
        working_dir: cfg.working_dir().clone(),
        user: cfg.user().clone(),
        labels,
        linuxkit,
        layers: image.layers.len(),
    })
}

impl Inspection {
    /// A human-readable rendering.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "Reference:    {}", self.reference);
        let _ = writeln!(s, "Pinned:       {}", self.pinned);
        let _ = writeln!(s, "Platforms:    {}", self.platforms.join(", "));
        let _ = writeln!(
            s,
            "Manifest:     {} ({})",
            self.manifest_digest, self.architecture
        );
        let _ = writeln!(s, "Layers:       {}", self.layers);
        let _ = writeln!(s, "Entrypoint:   {:?}", self.entrypoint);
        let _ = writeln!(s, "Cmd:          {:?}", self.cmd);
        let _ = writeln!(s, "Env:          {:?}", self.env);
        if let Some(wd) = &self.working_dir {
            let _ = writeln!(s, "WorkingDir:   {wd}");
        }
        if let Some(u) = &self.user {
            let _ = writeln!(s, "User:         {u}");
        }
        for (k, v) in self.labels.iter().filter(|(k, _)| *k != LINUXKIT_LABEL) {
            let _ = writeln!(s, "Label:        {k}={v}");
        }
        if let Some(lk) = &self.linuxkit {
            let pretty = serde_json::to_string_pretty(lk).unwrap_or_default();
            let _ = writeln!(s, "LinuxKit config ({LINUXKIT_LABEL}):\n{pretty}");
        }
        s
    }
}
