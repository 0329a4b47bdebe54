//! Command-line arguments of the `osbuild` binary (parsing only; the work is in the library).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Assemble minimal, immutable Linux OS images from OCI images and a LinuxKit-style YAML spec.
#[derive(Debug, Parser)]
#[command(name = "osbuild", version, about, propagate_version = true)]
pub struct Cli {
    /// Show more detail (every step, every image and layer).
    #[arg(short, long, global = true, conflicts_with = "quiet")]
    pub verbose: bool,
    /// Show nothing but warnings and errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build images from one or more YAML specs (later files merge into earlier ones).
    Build(BuildArgs),
    /// Show an image's platforms, config and LinuxKit label.
    Inspect(InspectArgs),
    /// Look after the local image cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Boot what `osbuild build` wrote.
    #[command(subcommand)]
    Run(RunCommand),
    /// Build, name and push packages (folders with a build.yml).
    #[command(subcommand)]
    Pkg(PkgCommand),
}

/// `osbuild pkg ...`.
#[derive(Debug, Subcommand)]
pub enum PkgCommand {
    /// Build a package for its architectures into the cache (nothing to do when it is there).
    Build {
        /// The package folder.
        dir: PathBuf,
        /// Cache location.
        #[command(flatten)]
        cache: CacheDir,
    },
    /// Print the package's image reference, tagged by the hash of its sources.
    ShowTag {
        /// The package folder.
        dir: PathBuf,
    },
    /// Build (if needed) and push a package to a registry.
    Push {
        /// The package folder.
        dir: PathBuf,
        /// Push to this registry host instead of the reference's (e.g. 127.0.0.1:5000).
        #[arg(long)]
        registry_host: Option<String>,
        /// Registry and cache options.
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// `osbuild run ...`.
#[derive(Debug, Subcommand)]
pub enum RunCommand {
    /// Boot what a build wrote, as its manifest NAME.json says, under QEMU.
    Qemu(QemuArgs),
}

/// `osbuild run qemu`.
#[derive(Debug, Args)]
pub struct QemuArgs {
    /// The build: its path prefix as given to `build` with --dir and --name (`out/hello`),
    /// its manifest (`out/hello.json`) or one of its files (`out/hello-efi.img`).
    #[arg(value_name = "PATH")]
    pub name: std::path::PathBuf,
    /// Which format to boot when the build wrote several.
    #[arg(short, long, value_name = "FORMAT")]
    pub format: Option<String>,
    /// Guest architecture (default: the one the build was made for).
    #[arg(long)]
    pub arch: Option<String>,
    /// Memory in MiB.
    #[arg(long, default_value_t = 1024)]
    pub mem: u32,
    /// Virtual CPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u32,
    /// A disk: PATH[,size=1G][,format=qcow2] (created when missing and a size is given; repeatable).
    #[arg(long, value_name = "DISK")]
    pub disk: Vec<String>,
    /// Forward 127.0.0.1:HOST to the guest's GUEST port: HOST:GUEST[/tcp|/udp] (repeatable).
    #[arg(long, value_name = "HOST:GUEST")]
    pub publish: Vec<String>,
    /// Boot a kernel and initrd through UEFI firmware too (disks and ISOs boot through the
    /// firmware their format claims).
    #[arg(long)]
    pub uefi: bool,
    /// Boot a disk that carries both boot paths (`--boot both`) through the BIOS instead of
    /// UEFI.
    #[arg(long)]
    pub bios: bool,
    /// Acceleration: auto (KVM only when the CPU shows vmx/svm), kvm or tcg.
    #[arg(long, default_value = "auto")]
    pub accel: String,
    /// Run in the background; the state directory holds qemu.pid and console.log.
    #[arg(long)]
    pub detached: bool,
    /// State directory for --detached and the --data disk (default: NAME-state).
    #[arg(long, value_name = "DIR")]
    pub state: Option<std::path::PathBuf>,
    /// No network card.
    #[arg(long)]
    pub no_network: bool,
    /// Give the guest this text as metadata: an ISO 9660 disk labelled CIDATA holding it as
    /// `config` (what LinuxKit's metadata package and cloud-init's NoCloud read).
    #[arg(long, value_name = "STRING", conflicts_with = "data_file")]
    pub data: Option<String>,
    /// Like --data, with the contents of FILE.
    #[arg(long, value_name = "FILE")]
    pub data_file: Option<std::path::PathBuf>,
}

/// Registry and cache options shared by the commands that pull.
#[derive(Debug, Args)]
pub struct RegistryArgs {
    /// Cache directory (default: $XDG_CACHE_HOME/osbuild).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Use plain HTTP for this registry host (repeatable). Loopback hosts always use HTTP.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registry: Vec<String>,
    /// Pull REGISTRY's images from URL instead, e.g. docker.io=http://127.0.0.1:5000 (repeatable).
    #[arg(long, value_name = "REGISTRY=URL")]
    pub mirror: Vec<String>,
    /// Docker config file with credentials (default: $DOCKER_CONFIG/config.json or
    /// ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub docker_config: Option<PathBuf>,
}

/// `osbuild build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// YAML spec files; several merge in order.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Output format (repeatable; the list is below). Default: the spec's `outputs:`, else
    /// kernel+initrd.
    #[arg(short, long = "format", value_name = "FORMAT")]
    pub formats: Vec<String>,
    /// Base name of the outputs (default: the first file's name without extension).
    #[arg(short, long)]
    pub name: Option<String>,
    /// Directory for the outputs.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// Write the (single) output to this file instead; `-` streams it to standard output.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Target architecture: amd64, arm64 or s390x (default: the host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Initrd compression: gzip, zstd or none.
    #[arg(long, default_value = "gzip")]
    pub compress: String,
    /// Threads that compress outputs (default: the number of cores). The outputs are the same
    /// bytes for every N.
    #[arg(short, long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Size of disk images: 512M, 10G, ... (default: the content plus a margin, in whole MiB;
    /// gcp: whole GiB).
    #[arg(long, value_name = "SIZE")]
    pub size: Option<String>,
    /// The layout of VM disk formats: efi (GPT + UKI), bios (MBR + GRUB) or both (amd64).
    /// Default: efi; aws on amd64: both; qcow2-bios: bios.
    #[arg(long, value_name = "LAYOUT")]
    pub boot: Option<String>,
    /// Store qcow2 clusters deflate-compressed (smaller, slower to write).
    #[arg(long)]
    pub compress_clusters: bool,
    /// Check the registry for newer images even when they are cached.
    #[arg(long, conflicts_with = "offline")]
    pub pull: bool,
    /// Use only the cache; fail naming any image that is not in it.
    #[arg(long)]
    pub offline: bool,
    /// Resolve the spec and pin every image by digest, print it, and build nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Registry and cache options.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Resource limits.
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// The resource limits of a build, raised from their defaults (docs/limits.md).
#[derive(Debug, Args)]
#[command(next_help_heading = "Limits (docs/limits.md)")]
pub struct LimitArgs {
    /// Bytes one layer may expand to when decompressed.
    #[arg(long, value_name = "SIZE", default_value = "16G", value_parser = size)]
    pub max_layer_size: u64,
    /// Bytes all layers of one image may expand to together.
    #[arg(long, value_name = "SIZE", default_value = "32G", value_parser = size)]
    pub max_image_size: u64,
    /// Entries all layers of one image may hold together.
    #[arg(long, value_name = "N", default_value = "4000000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_image_entries: u64,
    /// Bytes of one spec file.
    #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = size)]
    pub max_spec_size: u64,
    /// YAML nodes (keys, values, lists and maps) of one spec file; about 5 per `files` entry.
    #[arg(long, value_name = "N", default_value = "1000000", value_parser = count)]
    pub max_spec_nodes: usize,
}

impl LimitArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> osbuild::limits::Limits {
        osbuild::limits::Limits {
            layer_bytes: self.max_layer_size,
            image_bytes: self.max_image_size,
            image_entries: self.max_image_entries,
            spec_bytes: self.max_spec_size,
            spec_nodes: self.max_spec_nodes,
        }
    }
}

/// A size as `--size` takes it (`16G`, `512M`, bytes).
fn size(text: &str) -> Result<u64, String> {
    osbuild::disk::parse_size(text)
}

/// A count of at least one.
fn count(text: &str) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a positive whole number"))
}

/// `osbuild inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image reference.
    pub image: String,
    /// Architecture whose manifest and config to show (default: the host's).
    #[arg(long)]
    pub arch: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Use only the cache.
    #[arg(long)]
    pub offline: bool,
    /// Registry and cache options.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// `osbuild cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// List cached images.
    Ls(CacheDir),
    /// Remove an image from the cache (its blobs go at the next `clean`).
    Rm {
        /// Image reference.
        image: String,
        /// Cache location.
        #[command(flatten)]
        dir: CacheDir,
    },
    /// Remove blobs no cached image uses; with --all, empty the cache.
    Clean {
        /// Remove everything.
        #[arg(long)]
        all: bool,
        /// Cache location.
        #[command(flatten)]
        dir: CacheDir,
    },
    /// Import an OCI image layout tarball.
    Import {
        /// The tarball.
        file: PathBuf,
        /// Cache location.
        #[command(flatten)]
        dir: CacheDir,
    },
    /// Export a cached image as an OCI image layout tarball.
    Export {
        /// Image reference.
        image: String,
        /// The tarball to write.
        file: PathBuf,
        /// Cache location.
        #[command(flatten)]
        dir: CacheDir,
    },
}

/// Where the cache is.
#[derive(Debug, Args)]
pub struct CacheDir {
    /// Cache directory (default: $XDG_CACHE_HOME/osbuild).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn repeatable_formats_and_mirrors() {
        let cli = Cli::parse_from([
            "osbuild",
            "build",
            "-f",
            "tar",
            "--format",
            "kernel+initrd",
            "--mirror",
            "docker.io=http://127.0.0.1:1",
            "a.yml",
            "b.yml",
        ]);
        let Command::Build(b) = cli.command else {
            panic!("not build")
        };
        assert_eq!(b.formats, ["tar", "kernel+initrd"]);
        assert_eq!(b.files.len(), 2);
        assert_eq!(b.registry.mirror, ["docker.io=http://127.0.0.1:1"]);
    }

    #[test]
    fn limits_default_to_the_library_defaults_and_take_sizes() {
        let build = |extra: &[&str]| {
            let mut args = vec!["osbuild", "build"];
            args.extend_from_slice(extra);
            args.push("a.yml");
            let Command::Build(b) = Cli::parse_from(args).command else {
                panic!("not build")
            };
            b.limits.limits()
        };
        assert_eq!(build(&[]), osbuild::limits::Limits::default());
        let raised = build(&[
            "--max-layer-size",
            "64G",
            "--max-image-size",
            "1T",
            "--max-image-entries",
            "9000000",
            "--max-spec-size",
            "256M",
            "--max-spec-nodes",
            "5000000",
        ]);
        assert_eq!(raised.layer_bytes, 64 << 30);
        assert_eq!(raised.image_bytes, 1 << 40);
        assert_eq!(raised.image_entries, 9_000_000);
        assert_eq!(raised.spec_bytes, 256 << 20);
        assert_eq!(raised.spec_nodes, 5_000_000);
        for bad in [
            &["--max-layer-size", "lots"][..],
            &["--max-spec-nodes", "0"],
            &["--max-image-entries", "-1"],
        ] {
            let mut args = vec!["osbuild", "build"];
            args.extend_from_slice(bad);
            args.push("a.yml");
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
