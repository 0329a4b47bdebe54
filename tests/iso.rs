//! The ISO formats on `examples/redis-os.yml` with the repository's packages (the kernel,
//! `pkg/efi-stub` for the UEFI path, `pkg/bios-loaders` for the BIOS path): `iso-bios` read back
//! with xorriso and osirrox (El Torito BIOS and UEFI entries, boot info table, the hybrid MBR's
//! partitions, the kernel and initrd it carries), described by the manifest, byte-identical
//! when built twice, and booted under QEMU (TCG) until redis answers PONG through a published
//! port: `iso-bios` as a CD-ROM through SeaBIOS and isolinux, `iso-efi` as a CD-ROM through
//! OVMF on x86_64 and AAVMF on arm64, and the unified kernel image.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{repo, sh, sha256, stderr};

/// Build `specs` for amd64 as `out/NAME*` in `formats`, with the package cache shared by the
/// run's tests (the `@pkg:` images are built once); returns the outputs' path prefix.
fn build(name: &str, specs: &[&Path], formats: &[&str], out: &Path) -> PathBuf {
    let args: Vec<&str> = formats.iter().flat_map(|f| ["-f", f]).collect();
    let t0 = Instant::now();
    let prefix = support::build_shared("amd64", name, specs, out, &args);
    eprintln!(
        "built {formats:?} into {} in {:.1}s",
        out.display(),
        t0.elapsed().as_secs_f64()
    );
    prefix
}

/// Lines of `text` as trimmed strings.
fn lines(text: &str) -> Vec<String> {
    text.lines().map(|l| l.trim().to_string()).collect()
}

/// The line of `report` starting with `prefix` (whitespace runs folded), or a panic showing
/// the report.
fn line_with<'a>(report: &'a [String], prefix: &str) -> &'a str {
    report
        .iter()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} in:\n{}", report.join("\n")))
}

/// Whitespace-separated words of `line`.
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// `xorriso`'s El Torito and system area reports of `iso`.
fn xorriso_report(iso: &Path) -> Vec<String> {
    let out = Command::new("xorriso")
        .arg("-indev")
        .arg(iso)
        .args(["-report_el_torito", "plain", "-report_system_area", "plain"])
        .output()
        .expect("xorriso (Debian package xorriso)");
    assert!(
        out.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The reports go to standard output; xorriso's own notes to standard error.
    lines(&String::from_utf8_lossy(&out.stdout))
        .into_iter()
        .map(|l| words(&l).join(" "))
        .collect()
}

/// Extract `path` of `iso` into `dest` with osirrox.
fn extract(iso: &Path, path: &str, dest: &Path) {
    sh(Command::new("osirrox")
        .arg("-indev")
        .arg(iso)
        .arg("-extract")
        .arg(path)
        .arg(dest));
}

/// QEMU started by `osbuild run qemu --detached`, stopped when dropped (also on a panic).
struct Detached {
    what: String,
    state: PathBuf,
    pid: String,
    port: u16,
    started: Instant,
}

impl Detached {
    /// Boot `target` (a file a build wrote) with redis's port published.
    fn boot(what: &str, target: &Path, state: &Path) -> Detached {
        let port = osbuild_testenv::registry::free_port().unwrap();
        let started = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .args(["run", "qemu", "--accel", "tcg", "--mem", "1024"])
            .args(["--publish", &format!("{port}:6379")])
            .arg("--detached")
            .arg("--state")
            .arg(state)
            .arg(target)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{what}: run qemu failed:\n{}",
            stderr(&o)
        );
        let pid = std::fs::read_to_string(state.join("qemu.pid"))
            .unwrap()
            .trim()
            .to_string();
        Detached {
            what: what.into(),
            state: state.to_path_buf(),
            pid,
            port,
            started,
        }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.state.join("console.log")).unwrap_or_default()
    }

    fn running(&self) -> bool {
        Path::new("/proc").join(&self.pid).exists()
    }

    /// Wait for redis to be ready on the console, then for PONG through the published port
    /// (the forward accepts before the guest listens). Returns the console.
    fn wait_for_pong(&self, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let console = self.console();
            if console.contains("Ready to accept connections") && redis_ping(self.port) == "PONG" {
                eprintln!(
                    "{}: PONG {:.1}s after start",
                    self.what,
                    self.started.elapsed().as_secs_f64()
                );
                return console;
            }
            if Instant::now() > deadline || !self.running() {
                panic!(
                    "{}: no PONG from redis through port {} (QEMU {}):\n{console}",
                    self.what,
                    self.port,
                    if self.running() {
                        "still running"
                    } else {
                        "exited"
                    }
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(&self.pid).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.running() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.running() {
            let _ = Command::new("kill").args(["-9", &self.pid]).status();
        }
    }
}

fn redis_ping(port: u16) -> String {
    let o = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "PING"])
        .output()
        .expect("redis-cli (Debian package redis-tools)");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

#[test]
fn iso_bios_and_iso_efi_of_redis_os_boot_to_pong() {
    let dir = tempfile::tempdir().unwrap();
    // examples/redis-os.yml names pkg/efi-stub and pkg/bios-loaders in its `boot` section.
    let example = repo().join("examples/redis-os.yml");
    let specs = [example.as_path()];
    let out1 = dir.path().join("out1");
    let out2 = dir.path().join("out2");
    std::fs::create_dir_all(&out1).unwrap();
    std::fs::create_dir_all(&out2).unwrap();
    // The kernel+initrd of the same build is what the ISO must carry.
    let prefix = build(
        "redis-os",
        &specs,
        &["iso-bios", "iso-efi", "kernel+initrd"],
        &out1,
    );
    let iso = out1.join("redis-os.iso");
    let efi_iso = out1.join("redis-os-efi.iso");

    // El Torito: a BIOS entry (isolinux.bin, 4 sectors, boot info table) and a UEFI one
    // (boot/efi.img); the system area: isohybrid MBR code and an 0xEF partition over the EFI
    // image after partition 1 (type 0x00, from 0: isohybrid --uefi's layout).
    let report = xorriso_report(&iso);
    let text = report.join("\n");
    let bios = words(line_with(&report, "El Torito boot img : 1 BIOS"));
    let efi = words(line_with(&report, "El Torito boot img : 2 UEFI"));
    // N Pltf B Emul Ld_seg Hdpt Ldsiz LBA
    assert_eq!(&bios[7..10], ["y", "none", "0x0000"], "{text}");
    assert_eq!(bios[11], "4", "BIOS load size:\n{text}");
    assert_eq!(&efi[7..10], ["y", "none", "0x0000"], "{text}");
    assert_eq!(
        line_with(&report, "El Torito img path : 1"),
        "El Torito img path : 1 /isolinux/isolinux.bin"
    );
    assert_eq!(
        line_with(&report, "El Torito img path : 2"),
        "El Torito img path : 2 /boot/efi.img"
    );
    assert_eq!(
        line_with(&report, "El Torito img opts : 1"),
        "El Torito img opts : 1 boot-info-table isohybrid-suitable",
        "{text}"
    );
    assert!(
        line_with(&report, "System area summary:").contains("MBR isohybrid"),
        "{text}"
    );
    assert!(
        text.contains("MBR partition table: N Status Type Start Blocks"),
        "{text}"
    );
    // N Status Type Start Blocks (512-byte sectors)
    let part1 = words(line_with(&report, "MBR partition : 1"));
    let part2 = words(line_with(&report, "MBR partition : 2"));
    assert_eq!(&part1[4..7], ["0x80", "0x00", "0"], "{text}");
    assert_eq!(&part2[4..6], ["0x00", "0xef"], "{text}");
    let size = std::fs::metadata(&iso).unwrap().len();
    assert_eq!(size % (1 << 20), 0, "a hybrid image is whole MiB");
    assert_eq!(part1[7].parse::<u64>().unwrap() * 512, size, "{text}");
    let efi_start: u64 = part2[6].parse().unwrap();
    assert_eq!(
        line_with(&report, "MBR partition path : 2"),
        "MBR partition path : 2 /boot/efi.img",
        "{text}"
    );
    assert!(efi_start > 0 && efi_start.is_multiple_of(4), "{text}");
    let efi_lba: u64 = efi[12].parse().unwrap();
    assert_eq!(
        efi_lba * 4,
        efi_start,
        "the EFI partition is the EFI image:\n{text}"
    );

    // iso-efi: the UEFI entry alone, hybrid with the EFI partition and no boot code.
    let report_efi = xorriso_report(&efi_iso);
    let text_efi = report_efi.join("\n");
    line_with(&report_efi, "El Torito boot img : 1 UEFI");
    assert!(!text_efi.contains(" BIOS "), "{text_efi}");
    let p2 = words(line_with(&report_efi, "MBR partition : 2"));
    assert_eq!(&p2[4..6], ["0x00", "0xef"], "{text_efi}");

    // The files: the build's kernel and initrd (microcode first), isolinux's configuration
    // with the spec's command line, the loaders from pkg/bios-loaders.
    let x = dir.path().join("x");
    std::fs::create_dir_all(&x).unwrap();
    for path in [
        "/boot/kernel",
        "/boot/initrd.img",
        "/isolinux/isolinux.cfg",
        "/isolinux/ldlinux.c32",
        "/boot/efi.img",
    ] {
        extract(&iso, path, &x.join(path.rsplit('/').next().unwrap()));
    }
    let kernel = PathBuf::from(format!("{}-kernel", prefix.display()));
    let initrd = PathBuf::from(format!("{}-initrd.img", prefix.display()));
    assert_eq!(sha256(&x.join("kernel")), sha256(&kernel), "/boot/kernel");
    assert_eq!(
        sha256(&x.join("initrd.img")),
        sha256(&initrd),
        "/boot/initrd.img"
    );
    let cfg = std::fs::read_to_string(x.join("isolinux.cfg")).unwrap();
    assert_eq!(
        cfg,
        "PROMPT 0\nTIMEOUT 0\nDEFAULT osbuild\n\nLABEL osbuild\n  KERNEL /boot/kernel\n  INITRD /boot/initrd.img\n  APPEND console=ttyS0 console=ttyAMA0 console=ttysclp0 panic=1\n"
    );
    assert_eq!(
        &std::fs::read(x.join("ldlinux.c32")).unwrap()[..4],
        b"\x7fELF",
        "ldlinux.c32"
    );
    // The EFI image is a sound FAT volume with the UKI at the removable-media path.
    sh(Command::new("fsck.vfat").arg("-n").arg(x.join("efi.img")));
    let mdir = sh(Command::new("mdir")
        .arg("-i")
        .arg(x.join("efi.img"))
        .args(["-b", "::/EFI/BOOT"]));
    assert!(mdir.contains("::/EFI/BOOT/BOOTX64.EFI"), "{mdir}");

    // The manifest lists both ISOs with their role and how they boot.
    let entry = |format: &str| support::manifest_output(&out1, "redis-os", format);
    let bios_entry = entry("iso-bios");
    assert_eq!(bios_entry["arch"], "amd64");
    assert_eq!(
        bios_entry["boot"],
        serde_json::json!({"method": "cdrom", "firmware": "bios"})
    );
    assert_eq!(bios_entry["files"][0]["path"], "redis-os.iso");
    assert_eq!(bios_entry["files"][0]["role"], "iso");
    assert_eq!(bios_entry["files"][0]["size"], size);
    assert_eq!(bios_entry["files"][0]["sha256"], sha256(&iso));
    let efi_entry = entry("iso-efi");
    assert_eq!(
        efi_entry["boot"],
        serde_json::json!({"method": "cdrom", "firmware": "uefi"})
    );
    assert_eq!(efi_entry["files"][0]["path"], "redis-os-efi.iso");
    assert_eq!(efi_entry["files"][0]["role"], "iso");

    // Reproducible: the same spec and cache into another directory give the same bytes.
    build("redis-os", &specs, &["iso-bios", "iso-efi"], &out2);
    assert_eq!(
        sha256(&out2.join("redis-os.iso")),
        sha256(&iso),
        "iso-bios differs"
    );
    assert_eq!(
        sha256(&out2.join("redis-os-efi.iso")),
        sha256(&efi_iso),
        "iso-efi differs"
    );
    std::fs::remove_dir_all(&out2).unwrap();

    // BIOS: SeaBIOS boots the CD-ROM, isolinux loads the kernel and initrd.
    let guest = Detached::boot(
        "iso-bios (SeaBIOS, CD-ROM)",
        &iso,
        &dir.path().join("state-bios"),
    );
    let console = guest.wait_for_pong(Duration::from_secs(600));
    drop(guest);
    assert!(
        console.contains("Command line: BOOT_IMAGE=/boot/kernel console=ttyS0"),
        "isolinux did not start the kernel:\n{console}"
    );
    assert!(!console.contains("efi: EFI v"), "{console}");

    // UEFI: OVMF boots the iso-efi CD-ROM's EFI image, the UKI starts the kernel.
    let guest = Detached::boot(
        "iso-efi (OVMF, CD-ROM)",
        &efi_iso,
        &dir.path().join("state-efi"),
    );
    let console = guest.wait_for_pong(Duration::from_secs(600));
    drop(guest);
    assert!(
        console.contains("efi: EFI v"),
        "not booted through UEFI:\n{console}"
    );
    assert!(!console.contains("BOOT_IMAGE="), "{console}");
}

/// A `boot.bios` image without isolinux (here the EFI stub's) is named with the missing path,
/// and nothing is written.
#[test]
fn a_bios_image_without_isolinux_is_named() {
    let dir = tempfile::tempdir().unwrap();
    // A later file's `boot.bios` wins; its `@pkg:` path is relative to that file.
    let boot = dir.path().join("boot.yml");
    std::fs::write(
        &boot,
        format!(
            "boot:\n  bios: \"@pkg:{}\"\n",
            repo().join("pkg/efi-stub").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let (cache, _lock) = osbuild_testenv::packages::locked_cache_dir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["build", "-q", "--arch", "amd64", "-f", "iso-bios", "--dir"])
        .arg(&out)
        .arg(repo().join("examples/redis-os.yml"))
        .arg(&boot)
        .arg("--cache")
        .arg(&cache)
        .env("CI", "true")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(!o.status.success(), "{err}");
    assert_eq!(
        err.trim(),
        "error: the boot.bios image has no /usr/lib/ISOLINUX/isolinux.bin (isolinux's El Torito boot file); the iso-bios format needs it"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        0,
        "something was written"
    );
}

#[test]
fn iso_efi_boots_on_arm64_through_aavmf() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let spec = repo().join("examples/redis-os.yml");
    let prefix = support::build_shared("arm64", "redis-os", &[&spec], &out, &["-f", "iso-efi"]);
    let iso = PathBuf::from(format!("{}-efi.iso", prefix.display()));
    let report = xorriso_report(&iso);
    line_with(&report, "El Torito boot img : 1 UEFI");
    let (console, secs) = support::boot_until_pong(&iso, "arm64", &dir.path().join("state"));
    assert!(
        console.contains("init: osbuild init 0.1.0 on aarch64"),
        "{console}"
    );
    eprintln!("iso-efi arm64 (AAVMF, CD-ROM): PONG after {secs:.0} s");
}
