//! One build, start to end: load the spec, pull every image (concurrently, into the cache),
//! flatten each once, plan and assemble the root filesystem, and write the outputs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use crate::flatten::{FlattenError, apply_layer};
use crate::image::{
    Arch, Cache, ImageError, PullPolicy, PulledImage, Puller, Reference, RegistryOptions,
};
use crate::output::OutputError;
use crate::output::compress::Compression;
use crate::output::formats::{Format, OutputRequest, write_outputs};
use crate::progress::{Reporter, human_bytes};
use crate::rootfs::assemble::{AssembleError, ImageTrees, assemble};
use crate::rootfs::oci_config::{ConfigInput, VolumeInfo, generate};
use crate::rootfs::plan::{
    BundlePlan, FileBody, FilePlan, KernelPlan, RootfsPlan, Section, VolumePlan,
};
use crate::rootfs::runtime_json::runtime_json;
use crate::spec::{
    ImageSpec, LoadedSpec, Loc, PKG_PREFIX, SpecError, pin_images, resolve_image_config,
};
use crate::tree::{Tree, TreePath};

/// LinuxKit's fixed time for generated entries (2017-04-18T16:30:00Z), used when
/// `SOURCE_DATE_EPOCH` is not set.
pub const DEFAULT_MTIME: i64 = 1_492_533_000;

/// Everything a build needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Spec files, merged in order.
    pub files: Vec<PathBuf>,
    /// Output formats.
    pub formats: Vec<Format>,
    /// Output base name (default: the first file's stem).
    pub name: Option<String>,
    /// Output directory.
    pub dir: PathBuf,
    /// A single output's path, or `-` for standard output.
    pub output: Option<PathBuf>,
    /// Target architecture.
    pub arch: Arch,
    /// Initrd compression.
    pub compression: Compression,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Registry access.
    pub registry: RegistryOptions,
    /// When to ask registries.
    pub policy: PullPolicy,
    /// Print the pinned spec instead of building.
    pub dry_run: bool,
    /// `SOURCE_DATE_EPOCH`.
    pub source_date_epoch: Option<i64>,
}

/// Why a build failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The spec is invalid.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// An image could not be had.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// An image's layers could not be flattened.
    #[error("{reference}: {source}")]
    Flatten {
        /// The image.
        reference: String,
        /// What went wrong.
        #[source]
        source: FlattenError,
    },
    /// The root filesystem could not be laid out.
    #[error(transparent)]
    Assemble(#[from] AssembleError),
    /// An output could not be written.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The build's own machinery failed (threads, runtime).
    #[error("{0}")]
    Internal(String),
}

impl BuildError {
    /// The documented exit code: 3 invalid spec, 4 image or registry, 5 output, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Spec(_) => 3,
            BuildError::Image(_) | BuildError::Flatten { .. } => 4,
            BuildError::Assemble(AssembleError::Place { .. } | AssembleError::Source { .. }) => 3,
            BuildError::Assemble(_) => 4,
            BuildError::Output(_) => 5,
            BuildError::Internal(_) => 1,
        }
    }
}

/// What a build did.
#[derive(Debug, Clone, Default)]
pub struct BuildReport {
    /// Files written.
    pub outputs: Vec<PathBuf>,
    /// The pinned spec (dry runs).
    pub pinned_yaml: Option<String>,
    /// Images used, pinned.
    pub images: Vec<String>,
}

fn spec_error<T>(
    loaded: &LoadedSpec,
    file: usize,
    loc: &Loc<T>,
    key: String,
    message: String,
) -> BuildError {
    BuildError::Spec(SpecError::at(loaded.file(file), loc, key, message))
}

/// Every image reference of the spec with where it is written, in spec order.
fn image_refs(loaded: &LoadedSpec) -> Vec<(usize, String, &Loc<String>)> {
    let s = &loaded.spec;
    let mut out = Vec::new();
    if let Some(k) = &s.kernel
        && let Some(image) = &k.image
    {
        out.push((k.file, "kernel.image".to_string(), image));
    }
    for (i, (image, file)) in s.init.iter().zip(&s.init_files).enumerate() {
        out.push((*file, format!("init[{i}]"), image));
    }
    for (section, list) in [
        ("onboot", &s.onboot),
        ("onshutdown", &s.onshutdown),
        ("services", &s.services),
    ] {
        for (i, c) in list.iter().enumerate() {
            if let Some(image) = &c.image {
                out.push((c.file, format!("{section}[{i}].image"), image));
            }
        }
    }
    for (i, v) in s.volumes.iter().enumerate() {
        if let Some(image) = &v.image {
            out.push((v.file, format!("volumes[{i}].image"), image));
        }
    }
    out
}

/// Run one build.
pub fn run(opts: &BuildOptions, reporter: &Reporter) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let loaded = crate::spec::load(&opts.files)?;
    for w in &loaded.warnings {
        reporter.warn(w);
    }
    // Fail before pulling anything when the outputs could not be written.
    if opts.output.as_deref() != Some(std::path::Path::new("-")) {
        let dir = match &opts.output {
            Some(out) => out
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from),
            None => opts.dir.clone(),
        };
        tempfile::tempfile_in(&dir).map_err(|source| OutputError::File {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let refs = image_refs(&loaded);
    let cache = Cache::open(&opts.cache_dir)?;
    let _in_use = cache.lock_in_use()?;
    let mtime = opts.source_date_epoch.unwrap_or(DEFAULT_MTIME);
    // Each distinct image value of the spec, with the reference to pull for it. `@pkg:PATH`
    // names a package folder: it is built into the cache when missing (its tag is a hash of
    // its sources) and then served from there by digest.
    let mut unique: Vec<String> = Vec::new();
    let mut parsed: Vec<Reference> = Vec::new();
    for (file, key, loc) in &refs {
        if unique.contains(&loc.value) {
            continue;
        }
        let reference = match loc.value.strip_prefix(PKG_PREFIX) {
            Some(path) => {
                let dir = loaded.base_dir(*file).join(path);
                let package = crate::pkg::Package::load(&dir).map_err(|e| match e {
                    SpecError::Read { path, source } => spec_error(
                        &loaded,
                        *file,
                        loc,
                        key.clone(),
                        format!("no package at {path}: {source}"),
                    ),
                    other => BuildError::Spec(other),
                })?;
                let task = reporter.task(format!("package {}", dir.display()), None);
                let built = crate::pkg::build(&package, &cache, mtime).map_err(|e| match e {
                    crate::pkg::PkgError::Manifest(s) => BuildError::Spec(s),
                    crate::pkg::PkgError::Image(i) => BuildError::Image(i),
                    other => spec_error(&loaded, *file, loc, key.clone(), other.to_string()),
                })?;
                task.finish(built.to_string());
                built
            }
            None => Reference::parse(&loc.value).map_err(|e| BuildError::Image(e.into()))?,
        };
        unique.push(loc.value.clone());
        parsed.push(reference);
    }

    let puller = Puller::new(cache, opts.registry.clone(), opts.policy, reporter.clone());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BuildError::Internal(format!("starting the async runtime: {e}")))?;
    let pull_task = reporter.task(format!("resolve {} images", parsed.len()), None);
    let pulled = runtime.block_on(puller.pull_all(&parsed, opts.arch));
    let mut images: BTreeMap<String, PulledImage> = BTreeMap::new();
    for (name, result) in unique.iter().zip(pulled) {
        images.insert(name.clone(), result?);
    }
    drop(runtime);
    pull_task.finish(format!("{} images for linux/{}", images.len(), opts.arch));

    let mut report = BuildReport {
        images: images.values().map(|i| i.pinned.to_string()).collect(),
        ..BuildReport::default()
    };
    let mut pinned_spec = loaded.spec.clone();
    pin_images(&mut pinned_spec, &|r| {
        images.get(r).map(|i| i.pinned.to_string())
    });
    if opts.dry_run {
        report.pinned_yaml = Some(pinned_spec.to_yaml().map_err(BuildError::Internal)?);
        return Ok(report);
    }

    // Flatten each image once (two references to one manifest share the tree).
    let mut by_digest: BTreeMap<String, Tree> = BTreeMap::new();
    let mut trees = ImageTrees::new();
    for (name, image) in &images {
        let tree = match by_digest.get(&image.manifest_digest) {
            Some(t) => t.clone(),
            None => {
                let task = reporter.task(format!("flatten {name}"), None);
                let mut tree = Tree::new(0);
                let mut bytes = 0;
                for layer in &image.layers {
                    let stats =
                        apply_layer(&mut tree, layer).map_err(|source| BuildError::Flatten {
                            reference: image.pinned.to_string(),
                            source,
                        })?;
                    bytes += stats.bytes;
                    task.inc(stats.bytes);
                }
                task.finish(human_bytes(bytes));
                by_digest.insert(image.manifest_digest.clone(), tree.clone());
                tree
            }
        };
        trees.insert(name.clone(), tree);
    }

    let plan = plan(
        &loaded,
        &pinned_spec,
        &images,
        puller.cache(),
        mtime,
        opts.arch,
    )?;
    let tree = assemble(&plan, &trees, mtime)?;
    drop(trees);
    drop(by_digest);

    let name = opts
        .name
        .clone()
        .unwrap_or_else(|| default_name(&opts.files));
    let request = OutputRequest {
        dir: opts.dir.clone(),
        name,
        output: opts.output.clone(),
        compression: opts.compression,
        mtime_clamp: opts.source_date_epoch,
        mtime,
    };
    let task = reporter.task(
        format!(
            "write {}",
            opts.formats
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None,
    );
    report.outputs = write_outputs(&tree, &opts.formats, &request)?;
    let total: u64 = report
        .outputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    task.finish(format!("{} ({})", human_bytes(total), opts.compression));
    reporter.detail(format!(
        "build took {:.1}s",
        started.elapsed().as_secs_f64()
    ));
    Ok(report)
}

/// The first spec file's name without its extension.
pub fn default_name(files: &[PathBuf]) -> String {
    files
        .first()
        .and_then(|f| f.file_stem())
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "osbuild".into())
}

fn expand_home(path: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) => dirs::home_dir().unwrap_or_default().join(rest),
        None => PathBuf::from(path),
    }
}

/// Decide the layout from the spec and the pulled images' configs.
fn plan(
    loaded: &LoadedSpec,
    pinned: &crate::spec::Spec,
    images: &BTreeMap<String, PulledImage>,
    cache: &Cache,
    mtime: i64,
    arch: Arch,
) -> Result<RootfsPlan, BuildError> {
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
                    BuildError::Internal(format!("image {} was not pulled", image.value))
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
        let path = TreePath::parse(&f.path.value).map_err(|e| {
            BuildError::Spec(SpecError::at(
                file,
                &f.path,
                format!("{key}.path"),
                e.to_string(),
            ))
        })?;
        let body = if f.directory {
            FileBody::Directory
        } else if let Some(target) = &f.symlink {
            FileBody::Symlink(target.clone())
        } else if let Some(c) = &f.contents {
            FileBody::Contents(c.as_bytes().to_vec())
        } else if let Some(src) = &f.source {
            let path = expand_home(src);
            let path = if path.is_relative() {
                loaded.base_dir(f.file).join(path)
            } else {
                path
            };
            FileBody::Source {
                path,
                optional: f.optional,
            }
        } else {
            let text = match f.metadata.as_ref().map(|m| m.value.as_str()) {
                Some("json") => pinned.to_json(),
                _ => pinned.to_yaml(),
            }
            .map_err(BuildError::Internal)?;
            FileBody::Contents(text.into_bytes())
        };
        let id = |v: &Option<Loc<crate::spec::IdRef>>| -> Result<u32, BuildError> {
            match v {
                Some(v) => loaded.ids.resolve(&v.value).map_err(|n| {
                    BuildError::Spec(SpecError::at(
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
                .map_or(if f.directory { 0o700 } else { 0o600 }, |m| m.value.0),
            uid: id(&f.uid)?,
            gid: id(&f.gid)?,
            location: format!("{}: {key} ({})", file.display(), f.path.value),
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
) -> Result<BundlePlan, BuildError> {
    let image_ref = c.image();
    let image = images
        .get(image_ref)
        .ok_or_else(|| BuildError::Internal(format!("image {image_ref} was not pulled")))?;
    let config = image.config.config().clone();
    let label = config
        .as_ref()
        .and_then(|c| c.labels().as_ref())
        .and_then(|l| l.get(crate::image::inspect::LINUXKIT_LABEL))
        .cloned();
    let at = |message: String| -> BuildError {
        let key = format!("{key}[{index}]");
        match &c.name {
            Some(name) => BuildError::Spec(SpecError::at(loaded.file(c.file), name, key, message)),
            None => BuildError::Spec(SpecError::in_file(loaded.file(c.file), key, message)),
        }
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
