//! `osbuild run qemu`: boot what `osbuild build` wrote, as its manifest says (the kernel and
//! initrd directly, a disk or a CD-ROM through the firmware the format claims), with the
//! machine, console and network device right for the architecture, KVM only where the CPU
//! offers it, user networking with port forwards, extra disks and UEFI.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use crate::image::Arch;
use crate::output::Firmware;

/// Why a machine could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A boot file is missing.
    #[error("{path}: {reason}")]
    Missing {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A host tool or firmware is not installed.
    #[error("{what} is not installed: apt-get install {package}")]
    NotInstalled {
        /// The program or firmware file.
        what: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// An option is malformed.
    #[error("{0}")]
    Usage(String),
    /// Starting QEMU or a helper failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// Hardware acceleration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// KVM when the CPU has vmx/svm, `/dev/kvm` exists and the guest is the host's arch.
    Auto,
    /// KVM.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl FromStr for Accel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Accel::Auto),
            "kvm" => Ok(Accel::Kvm),
            "tcg" => Ok(Accel::Tcg),
            other => Err(format!(
                "unknown accelerator {other:?}: use auto, kvm or tcg"
            )),
        }
    }
}

/// A port forward from the host's loopback to the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// Host port (on 127.0.0.1).
    pub host: u16,
    /// Guest port.
    pub guest: u16,
    /// UDP instead of TCP.
    pub udp: bool,
}

impl FromStr for Publish {
    type Err = String;
    /// `host:guest[/tcp|/udp]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("--publish {s:?}: expected HOST:GUEST[/tcp|/udp], e.g. 6379:6379");
        let (ports, proto) = match s.split_once('/') {
            Some((p, proto)) => (p, proto),
            None => (s, "tcp"),
        };
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ => return Err(bad()),
        };
        let (host, guest) = ports.split_once(':').ok_or_else(bad)?;
        Ok(Publish {
            host: host.parse().map_err(|_| bad())?,
            guest: guest.parse().map_err(|_| bad())?,
            udp,
        })
    }
}

/// A disk attached to the guest (created when missing and a size is given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Image file.
    pub path: PathBuf,
    /// Size for a new image (`qemu-img` syntax: `1G`, `512M`).
    pub size: Option<String>,
    /// Image format (default `qcow2` for new images, else detected by QEMU).
    pub format: Option<String>,
}

impl FromStr for Disk {
    type Err = String;
    /// `path[,size=1G][,format=qcow2]`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let path = parts
            .next()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| format!("--disk {s:?}: no path"))?;
        let mut disk = Disk {
            path: PathBuf::from(path),
            size: None,
            format: None,
        };
        for part in parts {
            match part.split_once('=') {
                Some(("size", v)) if !v.is_empty() => disk.size = Some(v.into()),
                Some(("format", v)) if !v.is_empty() => disk.format = Some(v.into()),
                _ => {
                    return Err(format!(
                        "--disk {s:?}: unknown option {part:?} (size=, format=)"
                    ));
                }
            }
        }
        Ok(disk)
    }
}

/// What the machine boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootTarget {
    /// A kernel and initrd loaded by QEMU, with a command line (the architecture's console is
    /// added when none is given).
    Direct {
        /// Kernel image.
        kernel: PathBuf,
        /// Initrd.
        initrd: PathBuf,
        /// Kernel command line.
        cmdline: String,
        /// The root filesystem image, attached read-only as the first disk (`/dev/vda`).
        root: Option<PathBuf>,
    },
    /// A disk image booted by firmware.
    Disk {
        /// The image.
        image: PathBuf,
        /// The firmware it boots through.
        firmware: Firmware,
        /// QEMU's name for the image's format (`raw`, `qcow2`, `vpc`, `vhdx`, `vmdk`).
        format: String,
    },
    /// An ISO booted by firmware from a CD-ROM drive.
    Cdrom {
        /// The image.
        image: PathBuf,
        /// The firmware it boots through.
        firmware: Firmware,
    },
}

impl BootTarget {
    /// Whether the machine boots through UEFI firmware.
    fn uefi(&self) -> bool {
        matches!(
            self,
            BootTarget::Disk {
                firmware: Firmware::Uefi | Firmware::UefiAndBios,
                ..
            } | BootTarget::Cdrom {
                firmware: Firmware::Uefi,
                ..
            }
        )
    }
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct QemuConfig {
    /// Guest architecture.
    pub arch: Arch,
    /// Memory in MiB.
    pub mem_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// What it boots.
    pub boot: BootTarget,
    /// Where the firmware's variable store is kept (a copy of the template, made when missing).
    pub state: PathBuf,
    /// Disks.
    pub disks: Vec<Disk>,
    /// Port forwards.
    pub publish: Vec<Publish>,
    /// Boot a kernel and initrd through UEFI firmware too.
    pub uefi: bool,
    /// Acceleration.
    pub accel: Accel,
    /// Give the guest a network card (user networking).
    pub network: bool,
    /// Where the console goes when detached (else standard input/output).
    pub console_log: Option<PathBuf>,
    /// Write QEMU's pid here and run in the background.
    pub pidfile: Option<PathBuf>,
    /// A metadata disk to write and attach read-only.
    pub data: Option<MetadataDisk>,
}

/// The `--data` / `--data-file` contents and where their ISO 9660 image goes.
#[derive(Debug, Clone)]
pub struct MetadataDisk {
    /// What the guest reads as `config` on the volume labelled `CIDATA`.
    pub contents: Vec<u8>,
    /// The image file (in the state directory).
    pub iso: PathBuf,
    /// The time the image's records carry.
    pub mtime: i64,
}

impl MetadataDisk {
    /// Write the image (whole or not at all).
    pub fn write(&self) -> Result<(), RunError> {
        use crate::disk::iso9660::{IsoImage, write_iso};
        let io = |source| RunError::Io {
            what: self.iso.display().to_string(),
            source,
        };
        if let Some(dir) = self.iso.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = self.iso.with_extension("iso.tmp");
        let written = (|| {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            let image = IsoImage::plain("CIDATA", self.mtime, &[("config", &self.contents)]);
            write_iso(&mut file, &image).map_err(|e| std::io::Error::other(e.to_string()))?;
            std::io::Write::flush(&mut file)?;
            std::fs::rename(&tmp, &self.iso)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

/// The QEMU program, Debian package, machine arguments and console of an architecture.
pub struct Machine {
    /// Program name.
    pub binary: &'static str,
    /// Debian package providing it.
    pub package: &'static str,
    /// `-M ...` and `-cpu ...`.
    pub args: &'static [&'static str],
    /// The serial console device in the guest.
    pub console: &'static str,
    /// Network device model.
    pub nic: &'static str,
}

/// The virtio block device model of `arch`'s machine.
fn block_device(arch: Arch) -> &'static str {
    if arch == Arch::S390x {
        "virtio-blk-ccw"
    } else {
        "virtio-blk-pci"
    }
}

/// The virtio entropy device of `arch`'s machine. Without one, a guest under TCG can wait
/// minutes for its random pool (getrandom(2) blocks, e.g. in a DHCP client).
fn rng_device(arch: Arch) -> &'static str {
    if arch == Arch::S390x {
        "virtio-rng-ccw"
    } else {
        "virtio-rng-pci"
    }
}

/// The machine for `arch`.
pub fn machine(arch: Arch) -> Machine {
    match arch {
        Arch::Amd64 => Machine {
            binary: "qemu-system-x86_64",
            package: "qemu-system-x86",
            args: &["-M", "q35"],
            console: "ttyS0",
            nic: "virtio-net-pci",
        },
        Arch::Arm64 => Machine {
            binary: "qemu-system-aarch64",
            package: "qemu-system-arm",
            args: &["-M", "virt", "-cpu", "cortex-a57"],
            console: "ttyAMA0",
            nic: "virtio-net-pci",
        },
        Arch::S390x => Machine {
            binary: "qemu-system-s390x",
            package: "qemu-system-s390x",
            args: &["-M", "s390-ccw-virtio"],
            console: "ttysclp0",
            nic: "virtio-net-ccw",
        },
    }
}

/// Whether KVM can run an `arch` guest here: the same architecture, a CPU with vmx or svm
/// (a `/dev/kvm` without them may be a software hypervisor that never finishes a boot), and
/// `/dev/kvm`.
pub fn kvm_usable(arch: Arch, cpuinfo: &str, dev_kvm: bool) -> bool {
    let flags = cpuinfo.split_whitespace().any(|w| w == "vmx" || w == "svm");
    arch == Arch::host() && flags && dev_kvm
}

/// UEFI firmware for `arch`.
struct Uefi {
    /// The read-only code.
    code: &'static str,
    /// The template of the variable store.
    vars: &'static str,
    /// The Debian package providing both.
    package: &'static str,
}

/// UEFI firmware for `arch`.
fn firmware(arch: Arch) -> Result<Uefi, RunError> {
    match arch {
        Arch::Amd64 => Ok(Uefi {
            code: "/usr/share/OVMF/OVMF_CODE_4M.fd",
            vars: "/usr/share/OVMF/OVMF_VARS_4M.fd",
            package: "ovmf",
        }),
        Arch::Arm64 => Ok(Uefi {
            code: "/usr/share/AAVMF/AAVMF_CODE.fd",
            vars: "/usr/share/AAVMF/AAVMF_VARS.fd",
            package: "qemu-efi-aarch64",
        }),
        Arch::S390x => Err(RunError::Usage(
            "s390x has no UEFI: boot it without --uefi".into(),
        )),
    }
}

/// The variable store of a UEFI run: a copy of the template in the state directory.
fn vars_path(cfg: &QemuConfig) -> PathBuf {
    cfg.state.join("efivars.fd")
}

/// Whether the machine runs UEFI firmware.
fn wants_uefi(cfg: &QemuConfig) -> bool {
    cfg.uefi || cfg.boot.uefi()
}

fn find_program(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

/// QEMU's arguments for `cfg`, with `kvm` deciding the accelerator for `Accel::Auto`.
pub fn arguments(cfg: &QemuConfig, kvm: bool) -> Result<Vec<OsString>, RunError> {
    let m = machine(cfg.arch);
    let mut args: Vec<OsString> = m.args.iter().map(OsString::from).collect();
    let accel = match cfg.accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
        Accel::Auto if kvm => "kvm",
        Accel::Auto => "tcg",
    };
    let push =
        |args: &mut Vec<OsString>, items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&mut args, &["-accel", accel]);
    if accel == "kvm" && cfg.arch == Arch::Arm64 {
        push(&mut args, &["-cpu", "host"]);
    }
    push(
        &mut args,
        &[
            "-m",
            &cfg.mem_mib.to_string(),
            "-smp",
            &cfg.cpus.to_string(),
        ],
    );
    let detached = cfg.console_log.is_some() && cfg.pidfile.is_some();
    // -nographic puts the console on stdio and cannot be combined with -daemonize.
    let display = if detached {
        ["-display", "none"]
    } else {
        ["-nographic", ""]
    };
    push(&mut args, &display[..if detached { 2 } else { 1 }]);
    push(&mut args, &["-no-reboot", "-boot", "menu=on,splash-time=0"]);
    if wants_uefi(cfg) {
        let fw = firmware(cfg.arch)?;
        push(
            &mut args,
            &[
                "-drive",
                &format!("if=pflash,format=raw,readonly=on,file={}", fw.code),
                "-drive",
                &format!("if=pflash,format=raw,file={}", vars_path(cfg).display()),
            ],
        );
    }
    match &cfg.boot {
        BootTarget::Direct {
            kernel,
            initrd,
            cmdline,
            root,
        } => {
            args.push("-kernel".into());
            args.push(kernel.clone().into());
            args.push("-initrd".into());
            args.push(initrd.clone().into());
            let mut cmdline = cmdline.trim().to_string();
            if !cmdline
                .split_whitespace()
                .any(|w| w.starts_with("console="))
            {
                cmdline = format!("{cmdline} console={}", m.console)
                    .trim()
                    .to_string();
            }
            push(&mut args, &["-append", &cmdline]);
            if let Some(root) = root {
                push(
                    &mut args,
                    &[
                        "-drive",
                        &format!(
                            "file={},if=none,id=root,format=raw,readonly=on",
                            root.display()
                        ),
                        "-device",
                        &format!("{},drive=root", block_device(cfg.arch)),
                    ],
                );
            }
        }
        BootTarget::Disk { image, format, .. } => {
            push(
                &mut args,
                &[
                    "-drive",
                    &format!("file={},if=none,id=boot,format={format}", image.display()),
                    "-device",
                    &format!("{},drive=boot,bootindex=0", block_device(cfg.arch)),
                ],
            );
        }
        BootTarget::Cdrom { image, .. } => {
            push(
                &mut args,
                &[
                    "-drive",
                    &format!(
                        "file={},if=none,id=boot,format=raw,media=cdrom,readonly=on",
                        image.display()
                    ),
                ],
            );
            match cfg.arch {
                Arch::Amd64 => push(&mut args, &["-device", "ide-cd,drive=boot,bootindex=0"]),
                Arch::Arm64 => push(
                    &mut args,
                    &[
                        "-device",
                        "virtio-scsi-pci,id=scsi0",
                        "-device",
                        "scsi-cd,bus=scsi0.0,drive=boot,bootindex=0",
                    ],
                ),
                Arch::S390x => push(
                    &mut args,
                    &[
                        "-device",
                        "virtio-scsi-ccw,id=scsi0",
                        "-device",
                        "scsi-cd,bus=scsi0.0,drive=boot,bootindex=0",
                    ],
                ),
            }
        }
    }
    push(&mut args, &["-device", rng_device(cfg.arch)]);
    if cfg.network {
        let mut netdev = "user,id=n0".to_string();
        for p in &cfg.publish {
            let proto = if p.udp { "udp" } else { "tcp" };
            netdev.push_str(&format!(
                ",hostfwd={proto}:127.0.0.1:{}-:{}",
                p.host, p.guest
            ));
        }
        push(
            &mut args,
            &[
                "-netdev",
                &netdev,
                "-device",
                &format!("{},netdev=n0", m.nic),
            ],
        );
    } else {
        push(&mut args, &["-nic", "none"]);
    }
    for (i, d) in cfg.disks.iter().enumerate() {
        let mut drive = format!("file={},if=none,id=disk{i}", d.path.display());
        if let Some(f) = &d.format {
            drive.push_str(&format!(",format={f}"));
        }
        let device = block_device(cfg.arch);
        push(
            &mut args,
            &[
                "-drive",
                &drive,
                "-device",
                &format!("{device},drive=disk{i}"),
            ],
        );
    }
    if let Some(data) = &cfg.data {
        let device = block_device(cfg.arch);
        push(
            &mut args,
            &[
                "-drive",
                &format!(
                    "file={},if=none,id=data,format=raw,readonly=on",
                    data.iso.display()
                ),
                "-device",
                &format!("{device},drive=data"),
            ],
        );
    }
    match (&cfg.console_log, &cfg.pidfile) {
        (Some(log), Some(pid)) => {
            push(
                &mut args,
                &[
                    "-serial",
                    &format!("file:{}", log.display()),
                    "-monitor",
                    "none",
                ],
            );
            push(
                &mut args,
                &["-daemonize", "-pidfile", &pid.display().to_string()],
            );
        }
        _ => push(&mut args, &["-serial", "mon:stdio"]),
    }
    Ok(args)
}

/// Start QEMU. In the foreground the process becomes QEMU (its console on this terminal, its
/// exit status ours); detached, QEMU daemonizes and this returns once it runs.
pub fn start(cfg: &QemuConfig) -> Result<(), RunError> {
    use std::os::unix::process::CommandExt;
    let qemu = prepare(cfg)?;
    if let Some(data) = &cfg.data {
        data.write()?;
    }
    let kvm = cfg.accel == Accel::Auto
        && kvm_usable(
            cfg.arch,
            &std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default(),
            Path::new("/dev/kvm").exists(),
        );
    let args = arguments(cfg, kvm)?;
    let mut command = Command::new(&qemu);
    command.args(&args);
    if cfg.pidfile.is_some() {
        let status = command.status().map_err(|source| RunError::Io {
            what: qemu.display().to_string(),
            source,
        })?;
        if !status.success() {
            return Err(RunError::Usage(format!(
                "{} failed to start ({status})",
                qemu.display()
            )));
        }
        return Ok(());
    }
    let source = command.exec();
    Err(RunError::Io {
        what: qemu.display().to_string(),
        source,
    })
}

/// Check that the files, QEMU and any firmware are there, and create missing disks and the
/// firmware's variable store.
pub fn prepare(cfg: &QemuConfig) -> Result<PathBuf, RunError> {
    let files: Vec<&PathBuf> = match &cfg.boot {
        BootTarget::Direct {
            kernel,
            initrd,
            root,
            ..
        } => [kernel, initrd].into_iter().chain(root.as_ref()).collect(),
        BootTarget::Disk { image, .. } | BootTarget::Cdrom { image, .. } => vec![image],
    };
    for path in files {
        if !path.is_file() {
            return Err(RunError::Missing {
                path: path.clone(),
                reason: "not found (its manifest lists it: build again)".into(),
            });
        }
    }
    let m = machine(cfg.arch);
    let qemu = find_program(m.binary).ok_or_else(|| RunError::NotInstalled {
        what: m.binary.into(),
        package: m.package.into(),
    })?;
    if wants_uefi(cfg) {
        let fw = firmware(cfg.arch)?;
        for file in [fw.code, fw.vars] {
            if !Path::new(file).is_file() {
                return Err(RunError::NotInstalled {
                    what: format!("UEFI firmware {file}"),
                    package: fw.package.into(),
                });
            }
        }
        let vars = vars_path(cfg);
        if !vars.is_file() {
            let io = |source| RunError::Io {
                what: vars.display().to_string(),
                source,
            };
            std::fs::create_dir_all(&cfg.state).map_err(io)?;
            std::fs::copy(fw.vars, &vars).map_err(io)?;
        }
    }
    for d in &cfg.disks {
        if d.path.exists() {
            continue;
        }
        let Some(size) = &d.size else {
            return Err(RunError::Missing {
                path: d.path.clone(),
                reason: "no such disk image (add size= to create one)".into(),
            });
        };
        let qemu_img = find_program("qemu-img").ok_or_else(|| RunError::NotInstalled {
            what: "qemu-img".into(),
            package: "qemu-utils".into(),
        })?;
        let format = d.format.clone().unwrap_or_else(|| "qcow2".into());
        let status = Command::new(qemu_img)
            .args(["create", "-q", "-f", &format])
            .arg(&d.path)
            .arg(size)
            .status()
            .map_err(|source| RunError::Io {
                what: "qemu-img create".into(),
                source,
            })?;
        if !status.success() {
            return Err(RunError::Missing {
                path: d.path.clone(),
                reason: format!("qemu-img could not create a {size} {format} image"),
            });
        }
    }
    Ok(qemu)
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}/{}",
            self.host,
            self.guest,
            if self.udp { "udp" } else { "tcp" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(arch: Arch) -> QemuConfig {
        QemuConfig {
            arch,
            mem_mib: 1024,
            cpus: 2,
            boot: BootTarget::Direct {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: "quiet".into(),
                root: None,
            },
            state: "/s".into(),
            disks: vec![],
            publish: vec![],
            uefi: false,
            accel: Accel::Auto,
            network: true,
            console_log: None,
            pidfile: None,
            data: None,
        }
    }

    fn text(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn machine_console_and_nic_follow_the_architecture() {
        let x = text(&arguments(&config(Arch::Amd64), false).unwrap());
        assert!(x.starts_with("-M q35 -accel tcg -m 1024 -smp 2"), "{x}");
        assert!(x.contains("-append quiet console=ttyS0"), "{x}");
        assert!(x.contains("-device virtio-net-pci,netdev=n0"), "{x}");
        assert!(x.contains("-device virtio-rng-pci"), "{x}");
        let a = text(&arguments(&config(Arch::Arm64), false).unwrap());
        assert!(a.starts_with("-M virt -cpu cortex-a57"), "{a}");
        assert!(a.contains("console=ttyAMA0"), "{a}");
        let s = text(&arguments(&config(Arch::S390x), false).unwrap());
        assert!(
            s.contains("-M s390-ccw-virtio")
                && s.contains("console=ttysclp0")
                && s.contains("virtio-net-ccw"),
            "{s}"
        );
    }

    #[test]
    fn metadata_disk_is_attached_read_only_and_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = config(Arch::S390x);
        c.data = Some(MetadataDisk {
            contents: b"{}".to_vec(),
            iso: dir.path().join("state/data.iso"),
            mtime: 0,
        });
        let s = text(&arguments(&c, false).unwrap());
        assert!(
            s.contains(&format!(
                "-drive file={}/state/data.iso,if=none,id=data,format=raw,readonly=on -device virtio-blk-ccw,drive=data",
                dir.path().display()
            )),
            "{s}"
        );
        c.data.as_ref().unwrap().write().unwrap();
        let iso = std::fs::read(dir.path().join("state/data.iso")).unwrap();
        assert_eq!(iso.len() % 2048, 0);
        assert_eq!(&iso[16 * 2048..16 * 2048 + 6], b"\x01CD001");
        assert_eq!(&iso[16 * 2048 + 40..16 * 2048 + 46], b"CIDATA");
        assert_eq!(
            std::fs::read_dir(dir.path().join("state")).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn publish_disks_uefi_and_detached() {
        let mut c = config(Arch::Amd64);
        c.boot = BootTarget::Direct {
            kernel: "k".into(),
            initrd: "i".into(),
            cmdline: "console=ttyS0 panic=1".into(),
            root: None,
        };
        c.publish = vec!["8080:80".parse().unwrap(), "5353:53/udp".parse().unwrap()];
        c.disks = vec!["d.qcow2,size=1G,format=qcow2".parse().unwrap()];
        c.uefi = true;
        c.console_log = Some("/s/console.log".into());
        c.pidfile = Some("/s/qemu.pid".into());
        let x = text(&arguments(&c, true).unwrap());
        assert!(x.contains("-accel kvm"), "{x}");
        assert!(
            x.contains(
                "-netdev user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80,hostfwd=udp:127.0.0.1:5353-:53"
            ),
            "{x}"
        );
        assert!(x.contains("-drive file=d.qcow2,if=none,id=disk0,format=qcow2 -device virtio-blk-pci,drive=disk0"), "{x}");
        assert!(
            x.contains("-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file=/s/efivars.fd"),
            "{x}"
        );
        assert!(
            x.contains("-append console=ttyS0 panic=1 "),
            "the console given is kept: {x}"
        );
        assert!(
            x.contains("-serial file:/s/console.log -monitor none -daemonize -pidfile /s/qemu.pid"),
            "{x}"
        );
        let mut s = config(Arch::S390x);
        s.uefi = true;
        assert!(
            arguments(&s, false)
                .unwrap_err()
                .to_string()
                .contains("no UEFI")
        );
    }

    #[test]
    fn disks_and_cdroms_boot_through_their_firmware() {
        let mut c = config(Arch::Arm64);
        c.boot = BootTarget::Disk {
            image: "app-efi.img".into(),
            firmware: Firmware::Uefi,
            format: "raw".into(),
        };
        let a = text(&arguments(&c, false).unwrap());
        assert!(a.contains("file=/usr/share/AAVMF/AAVMF_CODE.fd"), "{a}");
        assert!(
            a.contains("-drive file=app-efi.img,if=none,id=boot,format=raw -device virtio-blk-pci,drive=boot,bootindex=0"),
            "{a}"
        );
        assert!(!a.contains("-kernel"), "{a}");
        // A container is attached with its driver; a disk with both paths boots via UEFI.
        let mut v = config(Arch::Amd64);
        v.boot = BootTarget::Disk {
            image: "app.vhdx".into(),
            firmware: Firmware::UefiAndBios,
            format: "vhdx".into(),
        };
        let a = text(&arguments(&v, false).unwrap());
        assert!(
            a.contains("-drive file=app.vhdx,if=none,id=boot,format=vhdx "),
            "{a}"
        );
        assert!(a.contains("OVMF_CODE"), "{a}");
        let mut x = config(Arch::Amd64);
        x.boot = BootTarget::Cdrom {
            image: "app.iso".into(),
            firmware: Firmware::Bios,
        };
        let t = text(&arguments(&x, false).unwrap());
        assert!(!t.contains("pflash"), "SeaBIOS is QEMU's default: {t}");
        assert!(
            t.contains("media=cdrom,readonly=on -device ide-cd,drive=boot,bootindex=0"),
            "{t}"
        );
    }

    #[test]
    fn a_root_image_is_the_first_disk_read_only() {
        let mut c = config(Arch::S390x);
        c.boot = BootTarget::Direct {
            kernel: "k".into(),
            initrd: "i".into(),
            cmdline: "root=/dev/vda".into(),
            root: Some("app-squashfs.img".into()),
        };
        c.disks = vec!["extra.qcow2".parse().unwrap()];
        let s = text(&arguments(&c, false).unwrap());
        let root = s
            .find("-drive file=app-squashfs.img,if=none,id=root,format=raw,readonly=on -device virtio-blk-ccw,drive=root")
            .expect(&s);
        assert!(root < s.find("extra.qcow2").unwrap(), "{s}");
    }

    #[test]
    fn option_parsing() {
        assert_eq!(
            "6379:6379".parse::<Publish>().unwrap(),
            Publish {
                host: 6379,
                guest: 6379,
                udp: false
            }
        );
        for bad in ["6379", "a:b", "1:2/sctp", "70000:1"] {
            assert!(bad.parse::<Publish>().unwrap_err().contains(bad), "{bad}");
        }
        assert!(
            "x.img,colour=red"
                .parse::<Disk>()
                .unwrap_err()
                .contains("colour")
        );
        assert_eq!("tcg".parse::<Accel>(), Ok(Accel::Tcg));
    }

    #[test]
    fn kvm_only_with_hardware_virtualisation() {
        let host = Arch::host();
        assert!(kvm_usable(host, "flags : fpu vmx sse", true));
        assert!(
            !kvm_usable(host, "flags : fpu sse", true),
            "a /dev/kvm without vmx/svm is not used"
        );
        assert!(!kvm_usable(host, "flags : svm", false));
        let other = if host == Arch::Arm64 {
            Arch::Amd64
        } else {
            Arch::Arm64
        };
        assert!(!kvm_usable(other, "flags : vmx", true));
    }

    #[test]
    fn missing_files_and_programs_are_named() {
        let mut c = config(Arch::Amd64);
        c.boot = BootTarget::Direct {
            kernel: "/nonexistent/hello-kernel".into(),
            initrd: "i".into(),
            cmdline: String::new(),
            root: None,
        };
        let err = prepare(&c).unwrap_err().to_string();
        assert!(
            err.starts_with("/nonexistent/hello-kernel: not found"),
            "{err}"
        );
    }
}
