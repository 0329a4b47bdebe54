//! The `osbuild` command line: parses arguments, runs the library, prints errors once.

mod cli;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use cli::{
    BuildArgs, CacheCommand, Cli, Command, InspectArgs, PkgCommand, QemuArgs, RegistryArgs,
    RunCommand,
};
use osbuild::build::{BuildError, BuildOptions};
use osbuild::image::{Arch, Cache, PullPolicy, Puller, Reference, RegistryOptions};
use osbuild::progress::{Mode, Reporter, human_bytes};

/// Exit code for a bad command line (clap uses it too).
const EXIT_USAGE: u8 = 2;

/// A mistake on the command line or in the environment it reads: exit 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct UsageError(String);

/// An image asked for by name is not in the cache: exit 4, like other image errors.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not in the cache")]
struct NotCached(String);

/// A [`UsageError`] with a formatted message, as an [`anyhow::Error`].
macro_rules! usage {
    ($($arg:tt)*) => {
        anyhow::Error::from(UsageError(format!($($arg)*)))
    };
}

/// The documented exit code for `e`, chosen by the kind of the first typed error in its
/// chain: 2 bad command line (a malformed
/// image reference among them), 3 invalid spec, 4 image or registry, 5 output, 1 otherwise.
fn exit_code(e: &anyhow::Error) -> u8 {
    use osbuild::image::ImageError;
    use osbuild::run::qemu::RunError;
    use osbuild::spec::SpecError;
    for cause in e.chain() {
        // A reference that does not parse reaches here only from the command line; in a
        // spec it is a SpecError.
        if cause.is::<UsageError>() || cause.is::<osbuild::image::reference::ReferenceError>() {
            return EXIT_USAGE;
        }
        if let Some(b) = cause.downcast_ref::<BuildError>() {
            return u8::try_from(b.exit_code()).unwrap_or(1);
        }
        if cause.is::<SpecError>() {
            return 3;
        }
        if cause.is::<ImageError>() || cause.is::<NotCached>() {
            return 4;
        }
        if let Some(RunError::Usage(_)) = cause.downcast_ref::<RunError>() {
            return EXIT_USAGE;
        }
    }
    1
}

fn registry_options(args: &RegistryArgs) -> Result<RegistryOptions> {
    let mut mirrors = BTreeMap::new();
    for m in &args.mirror {
        let (registry, url) = m.split_once('=').ok_or_else(|| {
            usage!("--mirror {m:?}: expected REGISTRY=URL, e.g. docker.io=http://127.0.0.1:5000")
        })?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(usage!(
                "--mirror {m:?}: the URL must start with http:// or https://"
            ));
        }
        mirrors.insert(registry.to_string(), url.to_string());
    }
    Ok(RegistryOptions {
        insecure: args.insecure_registry.clone(),
        mirrors,
        docker_config: args.docker_config.clone(),
        ..RegistryOptions::default()
    })
}

fn parse_arch(arch: &Option<String>) -> Result<Arch> {
    match arch {
        Some(a) => a.parse().map_err(|e: String| usage!("--arch: {e}")),
        None => Ok(Arch::host()),
    }
}

fn source_date_epoch() -> Result<Option<i64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        // The reproducible-builds definition: a non-negative number of seconds since 1970.
        Ok(v) if !v.is_empty() => match v.parse::<i64>() {
            Ok(secs) if secs >= 0 => Ok(Some(secs)),
            _ => Err(usage!(
                "SOURCE_DATE_EPOCH={v:?} is not a non-negative number of seconds"
            )),
        },
        _ => Ok(None),
    }
}

fn build(args: &BuildArgs, reporter: &Reporter) -> Result<ExitCode> {
    // Bad --format values exit 2 like every other command-line mistake.
    let formats = args
        .formats
        .iter()
        .map(|f| f.parse().map_err(|e: String| usage!("--format: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let opts = BuildOptions {
        files: args.files.clone(),
        formats,
        name: args.name.clone(),
        dir: args.dir.clone(),
        output: args.output.clone(),
        arch: parse_arch(&args.arch)?,
        disk_size: args
            .size
            .as_deref()
            .map(osbuild::disk::parse_size)
            .transpose()
            .map_err(|e| usage!("--size: {e}"))?,
        compression: args
            .compress
            .parse()
            .map_err(|e: String| usage!("--compress: {e}"))?,
        boot: args
            .boot
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| usage!("--boot: {e}"))?,
        compress_clusters: args.compress_clusters,
        cache_dir: args
            .registry
            .cache
            .clone()
            .unwrap_or_else(Cache::default_dir),
        registry: registry_options(&args.registry)?,
        policy: PullPolicy {
            pull_always: args.pull,
            offline: args.offline,
        },
        dry_run: args.dry_run,
        source_date_epoch: source_date_epoch()?,
        limits: args.limits.limits(),
        jobs: args
            .jobs
            .map_or_else(osbuild::archive::compress::available_threads, usize::from),
    };
    match osbuild::build::run(&opts, reporter) {
        Ok(report) => {
            if let Some(yaml) = report.pinned_yaml {
                print!("{yaml}");
            }
            for out in &report.outputs {
                let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
                reporter.info(format!("wrote {} ({})", out.display(), human_bytes(size)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn inspect(args: &InspectArgs, reporter: &Reporter) -> Result<ExitCode> {
    let reference = Reference::parse(&args.image)?;
    let cache = Cache::open(
        &args
            .registry
            .cache
            .clone()
            .unwrap_or_else(Cache::default_dir),
    )?;
    let puller = Puller::new(
        cache,
        registry_options(&args.registry)?,
        PullPolicy {
            pull_always: false,
            offline: args.offline,
        },
        reporter.clone(),
    );
    let arch = parse_arch(&args.arch)?;
    match runtime()?.block_on(osbuild::image::inspect::inspect(&puller, &reference, arch)) {
        Ok(found) => {
            let mut out = std::io::stdout().lock();
            if args.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&found)?)?;
            } else {
                write!(out, "{}", found.to_text())?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Err(e.into()),
    }
}

fn cache_command(cmd: &CacheCommand) -> Result<ExitCode> {
    let open =
        |dir: &cli::CacheDir| Cache::open(&dir.cache.clone().unwrap_or_else(Cache::default_dir));
    match cmd {
        CacheCommand::Ls(dir) => {
            let cache = open(dir)?;
            let mut out = std::io::stdout().lock();
            for (name, desc) in cache.list()? {
                writeln!(out, "{name}\t{}\t{}", desc.digest(), desc.media_type())?;
            }
            writeln!(out, "total blob size: {}", human_bytes(cache.size()?))?;
        }
        CacheCommand::Rm { image, dir } => {
            let cache = open(dir)?;
            let name = Reference::parse(image)?.to_string();
            if !cache.remove(&name)? {
                return Err(NotCached(name).into());
            }
            let freed = cache.gc()?;
            eprintln!("removed {name}; freed {}", describe_freed(&freed));
        }
        CacheCommand::Clean { all, dir } => {
            let cache = open(dir)?;
            let freed = if *all {
                cache.clean_all()?
            } else {
                cache.gc()?
            };
            eprintln!("freed {}", describe_freed(&freed));
        }
        CacheCommand::Import { file, dir } => {
            let cache = open(dir)?;
            let names = osbuild::image::archive::import(&cache, file)?;
            for n in names {
                eprintln!("imported {n}");
            }
        }
        CacheCommand::Export { image, file, dir } => {
            let cache = open(dir)?;
            let reference = Reference::parse(image)?;
            osbuild::image::archive::export(&cache, &reference, file)?;
            eprintln!("exported {reference} to {}", file.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_qemu(args: &QemuArgs) -> Result<ExitCode> {
    use osbuild::output::{Boot, Firmware, Role};
    use osbuild::run::qemu::{BootTarget, MetadataDisk, QemuConfig, start};
    // The options first: a mistake in them is reported before any file is looked for.
    let disks = args
        .disk
        .iter()
        .map(|d| d.parse().map_err(|e: String| usage!("--disk: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let publish = args
        .publish
        .iter()
        .map(|p| p.parse().map_err(|e: String| usage!("--publish: {e}")))
        .collect::<Result<Vec<_>>>()?;
    let accel = args
        .accel
        .parse()
        .map_err(|e: String| usage!("--accel: {e}"))?;
    let contents = match (&args.data, &args.data_file) {
        (Some(text), _) => Some(text.clone().into_bytes()),
        (None, Some(path)) => {
            Some(std::fs::read(path).with_context(|| format!("--data-file {}", path.display()))?)
        }
        (None, None) => None,
    };
    let target = osbuild::run::target::resolve(&args.name, args.format.as_deref())
        .map_err(anyhow::Error::msg)?;
    let built: osbuild::image::Arch = target
        .output
        .arch
        .parse()
        .map_err(|e: String| anyhow!("{}: {e}", target.manifest.display()))?;
    let arch = match &args.arch {
        Some(a) => {
            let asked = parse_arch(&Some(a.clone()))?;
            if asked != built {
                return Err(usage!(
                    "--arch {asked}: {} was built for {built}",
                    target.manifest.display()
                ));
            }
            asked
        }
        None => built,
    };
    let need = |role: Role| {
        target.file(role).ok_or_else(|| {
            anyhow!(
                "{}: the {} output has no {role:?} file",
                target.manifest.display(),
                target.output.format
            )
        })
    };
    let boot = match target.output.boot {
        Boot::Direct | Boot::KernelRootDisk => BootTarget::Direct {
            kernel: need(Role::Kernel)?,
            initrd: need(Role::Initrd)?,
            cmdline: std::fs::read_to_string(need(Role::Cmdline)?)
                .unwrap_or_default()
                .trim()
                .to_string(),
            root: match target.output.boot {
                Boot::KernelRootDisk => Some(need(Role::Squashfs)?),
                _ => None,
            },
        },
        Boot::Disk(firmware) => {
            let image = target.output.file(Role::Disk).ok_or_else(|| {
                anyhow!(
                    "{}: the {} output is an archive to upload or import, not a disk QEMU boots",
                    target.manifest.display(),
                    target.output.format
                )
            })?;
            BootTarget::Disk {
                image: target.dir.join(&image.path),
                format: image.image_format.clone().unwrap_or_else(|| "raw".into()),
                firmware: match (firmware, args.bios) {
                    (Firmware::UefiAndBios, true) => Firmware::Bios,
                    (Firmware::Uefi, true) => {
                        return Err(usage!(
                            "--bios: the {} output boots only through UEFI",
                            target.output.format
                        ));
                    }
                    (f, _) => f,
                },
            }
        }
        Boot::Cdrom(firmware) => BootTarget::Cdrom {
            image: need(Role::Iso)?,
            firmware,
        },
        Boot::None => {
            return Err(anyhow!(
                "{}: the {} format does not boot by itself",
                target.manifest.display(),
                target.output.format
            ));
        }
    };
    let name = target
        .manifest
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let state = args
        .state
        .clone()
        .unwrap_or_else(|| target.dir.join(format!("{name}-state")));
    let mtime = source_date_epoch()?.unwrap_or(osbuild::build::DEFAULT_MTIME);
    let data = contents.map(|contents| MetadataDisk {
        contents,
        iso: state.join("data.iso"),
        mtime,
    });
    let (console_log, pidfile) = if args.detached {
        std::fs::create_dir_all(&state)
            .with_context(|| format!("{}: creating the state directory", state.display()))?;
        (
            Some(state.join("console.log")),
            Some(state.join("qemu.pid")),
        )
    } else {
        (None, None)
    };
    let cfg = QemuConfig {
        arch,
        mem_mib: args.mem,
        cpus: args.cpus,
        boot,
        state: state.clone(),
        disks,
        publish,
        uefi: args.uefi,
        accel,
        network: !args.no_network,
        console_log: console_log.clone(),
        pidfile: pidfile.clone(),
        data,
    };
    start(&cfg)?;
    if let (Some(log), Some(pid)) = (console_log, pidfile) {
        eprintln!(
            "started; pid in {}, console in {}",
            pid.display(),
            log.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn pkg_command(cmd: &PkgCommand, reporter: &Reporter) -> Result<ExitCode> {
    let mtime = source_date_epoch()?.unwrap_or(osbuild::build::DEFAULT_MTIME);
    let load =
        |dir: &std::path::Path| osbuild::pkg::Package::load(dir).map_err(anyhow::Error::from);
    match cmd {
        PkgCommand::ShowTag { dir } => {
            println!("{}", osbuild::pkg::reference(&load(dir)?)?);
        }
        PkgCommand::Build { dir, cache } => {
            let cache = Cache::open(&cache.cache.clone().unwrap_or_else(Cache::default_dir))?;
            let built = osbuild::pkg::build(&load(dir)?, &cache, mtime)?;
            println!("{built}");
        }
        PkgCommand::Push {
            dir,
            registry_host,
            registry,
        } => {
            let cache = Cache::open(&registry.cache.clone().unwrap_or_else(Cache::default_dir))?;
            let built = osbuild::pkg::build(&load(dir)?, &cache, mtime)?;
            let mut target = Reference {
                digest: None,
                ..built.clone()
            };
            if let Some(host) = registry_host {
                target.registry = host.clone();
            }
            let puller = Puller::new(
                cache.clone(),
                registry_options(registry)?,
                PullPolicy::default(),
                reporter.clone(),
            );
            let digest = built.digest.clone().unwrap_or_default();
            let desc = cache
                .resolve(
                    &Reference {
                        digest: None,
                        ..built.clone()
                    }
                    .to_string(),
                )?
                .ok_or_else(|| anyhow!("{built}: not in the cache after building"))?;
            runtime()?.block_on(puller.push(&desc, &target))?;
            println!("{}", target.pinned(&digest));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = {
        use clap::{CommandFactory, FromArgMatches};
        let command = Cli::command()
            .mut_subcommand("build", |b| b.after_help(osbuild::output::formats::help()));
        let matches = command.get_matches();
        Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
    };
    // Ctrl-C or a termination signal: remove half-written outputs before leaving.
    let _ = ctrlc::set_handler(|| {
        osbuild::archive::atomic::remove_all_staged();
        std::process::exit(130);
    });
    let reporter = Reporter::new(Mode::detect(cli.quiet), cli.verbose);
    let result = match &cli.command {
        Command::Build(args) => build(args, &reporter),
        Command::Inspect(args) => inspect(args, &reporter),
        Command::Cache(cmd) => cache_command(cmd),
        Command::Run(RunCommand::Qemu(args)) => run_qemu(args),
        Command::Pkg(cmd) => pkg_command(cmd, &reporter),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let line = e.chain().map(ToString::to_string).collect::<Vec<_>>();
            eprintln!("error: {}", line.join(": "));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// `3 blobs and 2 temporary files (1.2 MiB)`.
fn describe_freed(freed: &osbuild::image::cache::Freed) -> String {
    let temporary = match freed.temporary {
        0 => String::new(),
        1 => " and 1 temporary file".into(),
        n => format!(" and {n} temporary files"),
    };
    format!(
        "{} blobs{temporary} ({})",
        freed.blobs,
        human_bytes(freed.bytes)
    )
}
