//! One build, start to end: load the spec, choose the formats, pull every image (concurrently,
//! into the cache; `@pkg:` packages built for the target architecture first), flatten each
//! once, plan and assemble the root filesystem, and hand it to the format writers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::archive::compress::Compression;
use crate::flatten::{EntryBudget, FlattenError, apply_layer_within};
use crate::image::{
    Arch, Cache, ImageError, PullPolicy, PulledImage, Puller, Reference, RegistryOptions,
};
use crate::limits::Limits;
use crate::output::formats::Needs;
use crate::output::{DiskBoot, Format, Loaders, OutputError, OutputRequest, write_outputs};
use crate::progress::{Reporter, human_bytes};
use crate::rootfs::assemble::{AssembleError, ImageTrees, assemble};
use crate::rootfs::from_spec::PlanError;
use crate::spec::{LoadedSpec, Loc, PKG_PREFIX, SpecError, pin_images};
use crate::tree::Tree;

/// LinuxKit's fixed time for generated entries (2017-04-18T16:30:00Z), used when
/// `SOURCE_DATE_EPOCH` is not set.
pub const DEFAULT_MTIME: i64 = 1_492_533_000;

/// The image with systemd's EFI stubs when the spec's `boot.efi` names none.
pub const DEFAULT_EFI_IMAGE: &str = "osbuild/efi-stub:252";
/// The image with the BIOS loaders (isolinux, GRUB) when the spec's `boot.bios` names none.
pub const DEFAULT_BIOS_IMAGE: &str = "osbuild/bios-loaders:1";

/// Everything a build needs to know.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Spec files, merged in order.
    pub files: Vec<PathBuf>,
    /// Output formats; empty for the spec's `outputs:` (else kernel+initrd).
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
    /// The size of disk images in bytes (`--size`); `None` for the content plus a margin.
    pub disk_size: Option<u64>,
    /// The layout VM disks hold (`--boot`); `None` for each format's default.
    pub boot: Option<DiskBoot>,
    /// Store qcow2 clusters compressed (`--compress-clusters`).
    pub compress_clusters: bool,
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
    /// The resource limits (`--max-layer-size`, ...; docs/limits.md).
    pub limits: Limits,
    /// Threads that compress outputs (`--jobs`); the bytes do not depend on it.
    pub jobs: usize,
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
    #[error("{reference}")]
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
    /// The command line asks for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// The build's own machinery failed (threads, runtime).
    #[error("{0}")]
    Internal(String),
    /// Several packages failed to build: each error, in the order of the spec, on a line of
    /// its own (each line after the first starts with `error: `, as the first does once
    /// printed).
    #[error("{}", .0.iter().map(|e| crate::error::chain(e)).collect::<Vec<_>>().join("\nerror: "))]
    Packages(Vec<BuildError>),
}

impl From<PlanError> for BuildError {
    fn from(e: PlanError) -> BuildError {
        match e {
            PlanError::Spec(s) => BuildError::Spec(s),
            PlanError::Image(i) => BuildError::Image(i),
            PlanError::Internal(m) => BuildError::Internal(m),
        }
    }
}

impl BuildError {
    /// The documented exit code: 2 bad command line, 3 invalid spec (or inputs that do not fit
    /// the format, such as a kernel without an EFI stub), 4 image or registry, 5 output, 1
    /// otherwise; for several failed packages, the first's.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::Usage(_) => 2,
            BuildError::Spec(_) => 3,
            BuildError::Image(_) | BuildError::Flatten { .. } => 4,
            BuildError::Assemble(AssembleError::Place { .. } | AssembleError::Source { .. }) => 3,
            BuildError::Assemble(_) => 4,
            BuildError::Output(OutputError::Usage(_)) => 2,
            BuildError::Output(OutputError::Input(_)) => 3,
            BuildError::Output(_) => 5,
            BuildError::Internal(_) => 1,
            BuildError::Packages(errors) => errors.first().map_or(1, BuildError::exit_code),
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

/// The formats to write: the command line's, else the spec's `outputs:`, else kernel+initrd;
/// each checked against the architecture before anything is pulled.
fn choose_formats(
    loaded: &LoadedSpec,
    asked: &[Format],
    arch: Arch,
) -> Result<Vec<Format>, BuildError> {
    let mut formats: Vec<Format> = Vec::new();
    if asked.is_empty() {
        for (i, o) in loaded.spec.outputs.iter().enumerate() {
            let at = |message: String| {
                SpecError::at(
                    loaded.file(o.file),
                    &o.format,
                    format!("outputs[{i}].format"),
                    message,
                )
            };
            let format: Format = o.format.value.parse().map_err(at)?;
            format.check_arch(arch).map_err(at)?;
            if !formats.contains(&format) {
                formats.push(format);
            }
        }
        if formats.is_empty() {
            formats.push(Format::named("kernel+initrd").ok_or_else(|| {
                BuildError::Internal("the format table has no kernel+initrd".into())
            })?);
        }
    } else {
        for f in asked {
            f.check_arch(arch)
                .map_err(|m| BuildError::Usage(format!("--format {f}: {m}")))?;
            if !formats.contains(f) {
                formats.push(*f);
            }
        }
    }
    Ok(formats)
}

/// Check `--boot` and `--size` against `formats` before anything is pulled; returns what
/// each format needs with the layout it will hold.
fn check_disk_options(
    formats: &[Format],
    opts: &BuildOptions,
) -> Result<Vec<(Format, Needs)>, BuildError> {
    if let Some(boot) = opts.boot
        && !formats.iter().any(|f| f.vm.is_some())
    {
        return Err(BuildError::Usage(format!(
            "--boot {boot} chooses the layout of VM disk formats, and none is asked for ({})",
            formats
                .iter()
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let mut out = Vec::new();
    for f in formats {
        let boot = f
            .disk_boot(opts.arch, opts.boot.filter(|_| f.vm.is_some()))
            .map_err(|m| BuildError::Usage(format!("{f}: {m}")))?;
        if opts.disk_size.is_some() {
            // The content's size is known only once the images are in; alignment and the
            // format's limit are checked now.
            f.disk_size(0, opts.disk_size)
                .map_err(|m| BuildError::Usage(format!("{f}: {m}")))?;
        }
        out.push((*f, f.needs_for(boot)));
    }
    Ok(out)
}

/// An image the build pulls: the value as written, where (when the spec wrote it), its key.
struct Wanted<'a> {
    value: String,
    key: String,
    written: Option<(usize, &'a Loc<String>)>,
}

/// The boot loader images `formats` need: the spec's `boot.efi`/`boot.bios` or the defaults.
fn loader_images<'a>(
    loaded: &'a LoadedSpec,
    formats: &[(Format, Needs)],
) -> (Option<Wanted<'a>>, Option<Wanted<'a>>) {
    let boot = loaded.spec.boot.as_ref();
    let pick =
        |needed: bool, written: Option<(usize, &'a Loc<String>)>, key: &str, default: &str| {
            needed.then(|| Wanted {
                value: written.map_or_else(|| default.to_string(), |(_, loc)| loc.value.clone()),
                key: key.into(),
                written,
            })
        };
    (
        pick(
            formats.iter().any(|(_, needs)| needs.efi_stub),
            boot.and_then(|b| Some((b.efi_file, b.efi.as_ref()?))),
            "boot.efi",
            DEFAULT_EFI_IMAGE,
        ),
        pick(
            formats.iter().any(|(_, needs)| needs.bios_loader),
            boot.and_then(|b| Some((b.bios_file, b.bios.as_ref()?))),
            "boot.bios",
            DEFAULT_BIOS_IMAGE,
        ),
    )
}

/// Fail before pulling anything when the outputs could not be written. The output directory
/// is made when it does not exist; a dry run writes nothing and needs none.
fn check_output_dir(opts: &BuildOptions) -> Result<(), BuildError> {
    if opts.dry_run || opts.output.as_deref() == Some(Path::new("-")) {
        return Ok(());
    }
    let dir = crate::output::output_dir(opts.output.as_deref(), &opts.dir);
    std::fs::create_dir_all(&dir).map_err(|e| OutputError::io(&dir, e))?;
    tempfile::tempfile_in(&dir).map_err(|e| OutputError::io(&dir, e))?;
    Ok(())
}

/// How an image the build needs is had: from a registry (or the cache), or from a package
/// folder built into the cache.
enum Source {
    Registry(Reference),
    /// The index of the package among those the build needs.
    Package(usize),
}

/// What `wanted` names: a registry reference, or a `@pkg:` package, loaded and added to
/// `packages` (once per folder) to be built with the others.
fn source_of(
    loaded: &LoadedSpec,
    wanted: &Wanted<'_>,
    packages: &mut Vec<(PathBuf, crate::pkg::Package)>,
) -> Result<Source, BuildError> {
    let Some(path) = wanted.value.strip_prefix(PKG_PREFIX) else {
        return Reference::parse(&wanted.value)
            .map(Source::Registry)
            .map_err(|e| BuildError::Image(e.into()));
    };
    let base = wanted
        .written
        .map_or_else(|| PathBuf::from("."), |(file, _)| loaded.base_dir(file));
    let dir = base.join(path);
    // Two spellings of one folder are one package, loaded once.
    let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
    if let Some(i) = packages.iter().position(|(c, _)| *c == canonical) {
        return Ok(Source::Package(i));
    }
    let package = crate::pkg::Package::load(&dir).map_err(|e| match e {
        SpecError::Read { path, source } => {
            package_error(loaded, wanted, format!("no package at {path}: {source}"))
        }
        other => BuildError::Spec(other),
    })?;
    packages.push((canonical, package));
    Ok(Source::Package(packages.len() - 1))
}

/// `message` about the package `wanted` names, located where the spec names it.
fn package_error(loaded: &LoadedSpec, wanted: &Wanted<'_>, message: String) -> BuildError {
    match wanted.written {
        Some((file, loc)) => BuildError::Spec(SpecError::at(
            loaded.file(file),
            loc,
            wanted.key.clone(),
            message,
        )),
        None => BuildError::Usage(format!("{}: {message}", wanted.value)),
    }
}

/// The reference to pull for each of `unique` (the values of `wanted`): registry references
/// as written, and every `@pkg:` package the cache lacks for `arch` built first, all of them
/// together ([`crate::pkg::batch::build_all`]). Spec errors come before any build; package
/// failures are reported in the order of the spec, all of them.
fn resolve_references(
    loaded: &LoadedSpec,
    unique: &[&Wanted<'_>],
    cache: &Cache,
    mtime: i64,
    arch: Arch,
    reporter: &Reporter,
) -> Result<Vec<Reference>, BuildError> {
    let mut packages = Vec::new();
    let sources = unique
        .iter()
        .map(|w| source_of(loaded, w, &mut packages))
        .collect::<Result<Vec<Source>, BuildError>>()?;
    let packages: Vec<crate::pkg::Package> = packages.into_iter().map(|(_, p)| p).collect();
    let mut built: Vec<Option<Result<Reference, crate::pkg::PkgError>>> =
        crate::pkg::batch::build_all(&packages, cache, mtime, arch, reporter)
            .into_iter()
            .map(Some)
            .collect();
    let mut references = Vec::new();
    let mut errors = Vec::new();
    for (w, source) in unique.iter().zip(sources) {
        match source {
            Source::Registry(r) => references.push(r),
            // A folder named twice (however spelled) gives each naming its reference, so
            // the references stay in step with `unique`; its failure is reported once.
            Source::Package(i) => match built.get_mut(i) {
                Some(Some(Ok(r))) => references.push(r.clone()),
                Some(slot) => {
                    if let Some(Err(e)) = slot.take() {
                        errors.push(match e {
                            crate::pkg::PkgError::Manifest(s) => BuildError::Spec(s),
                            crate::pkg::PkgError::Image(i) => BuildError::Image(i),
                            other => package_error(loaded, w, crate::error::chain(&other)),
                        });
                    }
                }
                None => {
                    return Err(BuildError::Internal(format!(
                        "{}: package {i} was not built",
                        w.value
                    )));
                }
            },
        }
    }
    match errors.len() {
        0 => Ok(references),
        1 => Err(errors.remove(0)),
        _ => Err(BuildError::Packages(errors)),
    }
}

/// Flatten `image`'s layers into a tree, holding no more than `limits` allow.
fn flatten(
    image: &PulledImage,
    name: &str,
    limits: &Limits,
    reporter: &Reporter,
) -> Result<Tree, BuildError> {
    let task = reporter.task(format!("flatten {name}"), None);
    let mut tree = Tree::new(0);
    let mut bytes = 0;
    let mut budget = EntryBudget::new(limits.image_entries);
    for layer in &image.layers {
        let stats = apply_layer_within(&mut tree, layer, &mut budget).map_err(|source| {
            BuildError::Flatten {
                reference: image.pinned.to_string(),
                source,
            }
        })?;
        bytes += stats.bytes;
        task.inc(stats.bytes);
    }
    task.finish(human_bytes(bytes));
    Ok(tree)
}

/// How long the pulls and flattens took.
#[derive(Debug, Clone, Copy, Default)]
struct PullTimes {
    /// Until the last pull was done.
    pull: Duration,
    /// Every flatten's time, added up (they run on the blocking pool, during the pulls).
    flatten: Duration,
    /// From the last pull to the last flatten.
    flatten_after: Duration,
}

/// Pull `parsed` (the images written `unique`), four at a time, and flatten each image on the
/// blocking pool as soon as its pull is done, while the other pulls go on (not for a dry
/// run): one flatten per manifest digest. Returns the images by name, the trees by
/// manifest digest and the times taken. Errors are reported in the order of the images'
/// names, whichever happened first, so a build fails the same way every time.
async fn pull_and_flatten(
    puller: &Puller,
    unique: &[String],
    parsed: &[Reference],
    opts: &BuildOptions,
    reporter: &Reporter,
) -> Result<
    (
        BTreeMap<String, PulledImage>,
        BTreeMap<String, Tree>,
        PullTimes,
    ),
    BuildError,
> {
    use futures_util::StreamExt;
    let started = Instant::now();
    let mut times = PullTimes::default();
    let mut pulls = futures_util::stream::iter(
        parsed
            .iter()
            .enumerate()
            .map(|(i, r)| async move { (i, puller.pull(r, opts.arch).await) }),
    )
    .buffer_unordered(4);
    let mut pulled: Vec<Option<Result<PulledImage, ImageError>>> =
        std::iter::repeat_with(|| None).take(parsed.len()).collect();
    let mut flattening = BTreeMap::new();
    while let Some((i, result)) = pulls.next().await {
        if let Ok(image) = &result
            && !opts.dry_run
            && !flattening.contains_key(&image.manifest_digest)
        {
            let (image, name) = (image.clone(), unique[i].clone());
            let (limits, reporter) = (opts.limits, reporter.clone());
            let digest = image.manifest_digest.clone();
            let job = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                flatten(&image, &name, &limits, &reporter).map(|t| (t, started.elapsed()))
            });
            flattening.insert(digest, job);
        }
        pulled[i] = Some(result);
    }
    times.pull = started.elapsed();
    let mut images = BTreeMap::new();
    for (name, result) in unique.iter().zip(pulled) {
        let result =
            result.ok_or_else(|| BuildError::Internal(format!("{name}: the pull never ended")))?;
        images.insert(name.clone(), result?);
    }
    let mut trees = BTreeMap::new();
    for image in images.values() {
        if let Some(job) = flattening.remove(&image.manifest_digest) {
            let (tree, took) = job
                .await
                .map_err(|e| BuildError::Internal(format!("flattening {}: {e}", image.pinned)))??;
            times.flatten += took;
            trees.insert(image.manifest_digest.clone(), tree);
        }
    }
    times.flatten_after = started.elapsed().saturating_sub(times.pull);
    Ok((images, trees, times))
}

/// Run one build.
pub fn run(opts: &BuildOptions, reporter: &Reporter) -> Result<BuildReport, BuildError> {
    let started = Instant::now();
    let loaded = crate::spec::load_within(&opts.files, &opts.limits)?;
    for w in &loaded.warnings {
        reporter.warn(w);
    }
    let formats = choose_formats(&loaded, &opts.formats, opts.arch)?;
    let needs = check_disk_options(&formats, opts)?;
    crate::output::check_single_output(&formats, opts.output.as_deref())?;
    check_output_dir(opts)?;
    let cache = Cache::open(&opts.cache_dir)?;
    let _in_use = cache.lock_in_use()?;
    let mtime = opts.source_date_epoch.unwrap_or(DEFAULT_MTIME);

    let uses = loaded.image_refs();
    let (efi, bios) = loader_images(&loaded, &needs);
    let mut wanted: Vec<Wanted<'_>> = uses
        .iter()
        .map(|u| Wanted {
            value: u.value.value.clone(),
            key: u.key.clone(),
            written: Some((u.file, u.value)),
        })
        .collect();
    wanted.extend(efi.iter().chain(bios.iter()).map(|w| Wanted {
        value: w.value.clone(),
        key: w.key.clone(),
        written: w.written,
    }));
    // Each distinct image value once, with the reference to pull for it.
    let mut firsts: Vec<&Wanted<'_>> = Vec::new();
    for w in &wanted {
        if !firsts.iter().any(|f| f.value == w.value) {
            firsts.push(w);
        }
    }
    let unique: Vec<String> = firsts.iter().map(|w| w.value.clone()).collect();
    let packages_started = Instant::now();
    let parsed = resolve_references(&loaded, &firsts, &cache, mtime, opts.arch, reporter)?;
    let packages_took = packages_started.elapsed();

    let puller = Puller::new(cache, opts.registry.clone(), opts.policy, reporter.clone())
        .with_limits(&opts.limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| BuildError::Internal(format!("starting the async runtime: {e}")))?;
    let pull_task = reporter.task(format!("resolve {} images", parsed.len()), None);
    let (images, by_digest, pull_times) =
        runtime.block_on(pull_and_flatten(&puller, &unique, &parsed, opts, reporter))?;
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

    // Each image's tree (two references to one manifest share it).
    let mut trees = ImageTrees::new();
    for (name, image) in &images {
        let tree = by_digest
            .get(&image.manifest_digest)
            .cloned()
            .ok_or_else(|| BuildError::Internal(format!("{name}: pulled but not flattened")))?;
        trees.insert(name.clone(), tree);
    }
    let loaders = Loaders {
        efi: efi.and_then(|w| trees.get(&w.value).cloned()),
        bios: bios.and_then(|w| trees.get(&w.value).cloned()),
    };

    let assemble_started = Instant::now();
    let plan = crate::rootfs::from_spec::plan(
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

    let request = OutputRequest {
        dir: opts.dir.clone(),
        name: opts
            .name
            .clone()
            .unwrap_or_else(|| default_name(&opts.files)),
        output: opts.output.clone(),
        arch: opts.arch,
        compression: opts.compression,
        mtime_clamp: opts.source_date_epoch,
        mtime,
        disk_size: opts.disk_size,
        boot: opts.boot,
        compress_clusters: opts.compress_clusters,
        jobs: opts.jobs.max(1),
    };
    let assemble_took = assemble_started.elapsed();
    let write_started = Instant::now();
    let names: Vec<&str> = formats.iter().map(|f| f.name).collect();
    let task = reporter.task(format!("write {}", names.join(", ")), None);
    report.outputs = write_outputs(&tree, &formats, &request, &loaders)?;
    let total: u64 = report
        .outputs
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    task.finish(format!("{} ({})", human_bytes(total), opts.compression));
    let secs = |d: Duration| d.as_secs_f64();
    reporter.detail(format!(
        "build took {:.1}s: packages {:.1}s, pull {:.1}s, flatten {:.1}s ({:.1}s after the \
         pulls), assemble {:.1}s, write {:.1}s",
        secs(started.elapsed()),
        secs(packages_took),
        secs(pull_times.pull),
        secs(pull_times.flatten),
        secs(pull_times.flatten_after),
        secs(assemble_took),
        secs(write_started.elapsed()),
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
