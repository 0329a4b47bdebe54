//! The standard fixture images, built from real binaries with osbuild's own image writer and
//! pushed to a registry on loopback:
//!
//! | image | what |
//! |---|---|
//! | `osbuild/busybox:1` | Debian's static busybox, `Cmd` `/bin/sh`, a LinuxKit label |
//! | `osbuild/busybox-init:1` | busybox and an `/init` script that reports and powers off (amd64, arm64, s390x) |
//! | `osbuild/kernel:6.1-debian` | `pkg/kernel`: Debian kernels for virtio guests (amd64, arm64, s390x) |
//! | `osbuild/efi-stub:252` | `pkg/efi-stub`: systemd's EFI stubs (amd64, arm64), the default `boot.efi` image |
//! | `osbuild/bios-loaders:1` | `pkg/bios-loaders`: isolinux (amd64), the default `boot.bios` image |
//! | `osbuild/layers:1` | three layers exercising every layer rule |
//! | `osbuild/multiarch:1` | an index with amd64 and arm64 images marking their arch |

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use osbuild::image::layout::{ImageSpec, write_image, write_index};
use osbuild::image::{Arch, Cache, PullPolicy, Puller, Reference, RegistryOptions};
use osbuild::progress::Reporter;

use crate::registry::Registry;
use crate::{packages, trees};

/// The architectures the boot fixtures are built for.
pub const BOOT_ARCHES: [Arch; 3] = [Arch::Amd64, Arch::Arm64, Arch::S390x];

/// The LinuxKit label of the busybox fixture.
pub const BUSYBOX_LABEL: &str =
    r#"{"capabilities":["CAP_NET_BIND_SERVICE"],"binds":["/etc/resolv.conf:/etc/resolv.conf"]}"#;

/// Builds images and pushes them to one registry.
pub struct Pusher {
    /// Where the images are made before they are pushed.
    pub cache: Cache,
    _cache_dir: tempfile::TempDir,
    puller: Puller,
    opts: RegistryOptions,
    runtime: tokio::runtime::Runtime,
    registry: String,
}

impl Pusher {
    /// A pusher to the registry at `addr` (`127.0.0.1:PORT`).
    pub fn new(addr: &str) -> Result<Pusher> {
        Pusher::with_credentials(addr, None)
    }

    /// A pusher using the credentials in the Docker config `docker_config`.
    pub fn with_credentials(addr: &str, docker_config: Option<&Path>) -> Result<Pusher> {
        let dir = tempfile::Builder::new()
            .prefix("osbuild-fixture-cache-")
            .tempdir()?;
        let cache = Cache::open(dir.path())?;
        let opts = RegistryOptions {
            docker_config: docker_config.map(Path::to_path_buf),
            ..RegistryOptions::default()
        };
        let puller = Puller::new(
            cache.clone(),
            opts.clone(),
            PullPolicy::default(),
            Reporter::quiet(),
        );
        Ok(Pusher {
            cache,
            _cache_dir: dir,
            puller,
            opts,
            runtime: tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?,
            registry: addr.to_string(),
        })
    }

    /// `REGISTRY/name`.
    pub fn reference(&self, name: &str) -> Result<Reference> {
        Ok(Reference::parse(&format!("{}/{name}", self.registry))?)
    }

    /// Build and push a single-platform image; returns the pushed reference.
    pub fn push(&self, name: &str, spec: &ImageSpec<'_>, arch: Arch) -> Result<Reference> {
        let desc = write_image(&self.cache, spec, arch)?;
        let target = self.reference(name)?;
        self.runtime
            .block_on(self.puller.push(&desc, &target))
            .with_context(|| format!("pushing {target}"))?;
        Ok(target)
    }

    /// Push the busybox init image (amd64) under `name`.
    pub fn push_init(&self, name: &str) -> Result<Reference> {
        let tree = trees::busybox_init()?;
        let spec = ImageSpec {
            layers: vec![&tree],
            cmd: vec!["/init".into()],
            ..ImageSpec::default()
        };
        self.push(name, &spec, Arch::Amd64)
    }

    /// Build and push a multi-platform index.
    pub fn push_index(&self, name: &str, images: &[(Arch, ImageSpec<'_>)]) -> Result<Reference> {
        let mut manifests = Vec::new();
        for (arch, spec) in images {
            manifests.push(write_image(&self.cache, spec, *arch)?);
        }
        let desc = write_index(&self.cache, manifests)?;
        let target = self.reference(name)?;
        self.runtime
            .block_on(self.puller.push(&desc, &target))
            .with_context(|| format!("pushing {target}"))?;
        Ok(target)
    }
}

/// Build the repository package in `dir` (once per run, in the shared cache) and push its
/// index as `osbuild/TAG_NAME`.
pub fn push_package(pusher: &Pusher, dir: &Path, name: &str) -> Result<Reference> {
    let (cache, pinned) = packages::build(dir)?;
    let digest = pinned
        .digest
        .clone()
        .context("package reference without digest")?;
    let tagged = Reference {
        digest: None,
        ..pinned.clone()
    };
    let desc = cache
        .resolve(&tagged.to_string())?
        .filter(|d| d.digest().to_string() == digest)
        .context("package index missing from the shared cache")?;
    let puller = Puller::new(
        cache,
        pusher.opts.clone(),
        PullPolicy::default(),
        Reporter::quiet(),
    );
    let target = pusher.reference(name)?;
    pusher
        .runtime
        .block_on(puller.push(&desc, &target))
        .with_context(|| format!("pushing {target}"))?;
    Ok(target)
}

/// Push every standard fixture: busybox, the busybox init for each of [`BOOT_ARCHES`], the
/// layer and multi-arch fixtures, `pkg/kernel` as `osbuild/kernel:6.1-debian`, and
/// `pkg/efi-stub` and `pkg/bios-loaders` as the default `boot.efi` and `boot.bios` images; returns
/// their references by short name.
pub fn push_standard(pusher: &Pusher) -> Result<BTreeMap<&'static str, Reference>> {
    let mut out = BTreeMap::new();
    let busybox = trees::busybox()?;
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.mobyproject.config".to_string(),
        BUSYBOX_LABEL.to_string(),
    );
    out.insert(
        "busybox",
        pusher.push(
            "osbuild/busybox:1",
            &ImageSpec {
                layers: vec![&busybox],
                cmd: vec!["/bin/sh".into()],
                env: vec!["PATH=/bin".into()],
                labels,
                ..ImageSpec::default()
            },
            Arch::Amd64,
        )?,
    );
    out.insert("busybox-init", push_multiarch_init(pusher, &BOOT_ARCHES)?);
    // The repository's packages the tests boot with, under the references specs use.
    for (package, reference) in [
        ("kernel", "osbuild/kernel:6.1-debian"),
        ("efi-stub", osbuild::build::DEFAULT_EFI_IMAGE),
        ("bios-loaders", osbuild::build::DEFAULT_BIOS_IMAGE),
    ] {
        let pushed = push_package(pusher, &packages::package_dir(package), reference)?;
        out.insert(package, pushed);
    }
    let layers = trees::three_layers()?;
    out.insert(
        "layers",
        pusher.push(
            "osbuild/layers:1",
            &ImageSpec {
                layers: layers.iter().collect(),
                cmd: vec!["/bin/true".into()],
                ..ImageSpec::default()
            },
            Arch::Amd64,
        )?,
    );
    let amd = trees::arch_marker("amd64")?;
    let arm = trees::arch_marker("arm64")?;
    out.insert(
        "multiarch",
        pusher.push_index(
            "osbuild/multiarch:1",
            &[
                (
                    Arch::Amd64,
                    ImageSpec {
                        layers: vec![&amd],
                        cmd: vec!["/x".into()],
                        ..ImageSpec::default()
                    },
                ),
                (
                    Arch::Arm64,
                    ImageSpec {
                        layers: vec![&arm],
                        cmd: vec!["/x".into()],
                        ..ImageSpec::default()
                    },
                ),
            ],
        )?,
    );
    Ok(out)
}

/// Push `osbuild/busybox-init:1` as an index holding an image for each of `arches` (Debian's
/// busybox-static of each architecture), so one spec builds for all of them with `--arch`.
pub fn push_multiarch_init(pusher: &Pusher, arches: &[Arch]) -> Result<Reference> {
    let dir = crate::fixtures_dir();
    let mut inits = Vec::new();
    for arch in arches {
        let busybox = if *arch == Arch::host() {
            PathBuf::from("/bin/busybox")
        } else {
            let pkg = format!("busybox-static:{}", arch.oci());
            crate::debian::unpacked(&dir, &format!("busybox-{}", arch.oci()), &[&pkg])?
                .join("bin/busybox")
        };
        inits.push((*arch, trees::busybox_init_from(&busybox)?));
    }
    let init_specs: Vec<(Arch, ImageSpec<'_>)> = inits
        .iter()
        .map(|(a, t)| {
            (
                *a,
                ImageSpec {
                    layers: vec![t],
                    cmd: vec!["/init".into()],
                    ..ImageSpec::default()
                },
            )
        })
        .collect();
    pusher.push_index("osbuild/busybox-init:1", &init_specs)
}

/// Push `osbuild/redis:7-debian`: Debian's redis-server and its libraries.
pub fn push_redis(pusher: &Pusher) -> Result<Reference> {
    let root = crate::debian::unpacked(&crate::fixtures_dir(), "redis-host", &["redis-server"])?;
    let opts = osbuild::tree::HostImport {
        uid: 0,
        gid: 0,
        mtime: trees::MTIME,
    };
    let osbuild::tree::Inode::Directory(dir) = osbuild::tree::import_host_path(&root, &opts)?
    else {
        anyhow::bail!("{} is not a directory", root.display());
    };
    let mut tree = osbuild::tree::Tree::new(trees::MTIME);
    tree.root = *dir;
    let _ = tree.remove(&osbuild::tree::TreePath::parse(".complete")?);
    pusher.push(
        "osbuild/redis:7-debian",
        &ImageSpec {
            layers: vec![&tree],
            cmd: vec![
                "/usr/bin/redis-server".into(),
                "--protected-mode".into(),
                "no".into(),
            ],
            ..ImageSpec::default()
        },
        Arch::Amd64,
    )
}

/// A registry with every standard fixture and the small kernel, ready for builds that use
/// `--mirror docker.io=http://ADDR`.
pub struct Environment {
    /// The registry.
    pub registry: Registry,
    /// The fixture references, by short name (`kernel` included).
    pub images: BTreeMap<&'static str, Reference>,
}

impl Environment {
    /// Start a registry and push the standard fixtures.
    pub fn start() -> Result<Environment> {
        let registry = Registry::start()?;
        let pusher = Pusher::new(&registry.addr())?;
        let images = push_standard(&pusher)?;
        Ok(Environment { registry, images })
    }

    /// The `--mirror` value that sends docker.io references to this registry.
    pub fn mirror_arg(&self) -> String {
        format!("docker.io=http://{}", self.registry.addr())
    }
}
