//! Boot a kernel and initrd under QEMU (TCG unless the CPU offers hardware virtualisation) and
//! collect what the guest prints on its serial console.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// What a boot printed and how it ended.
#[derive(Debug)]
pub struct BootLog {
    /// Everything the console printed.
    pub console: String,
    /// Whether QEMU exited by itself (the guest powered off) before the timeout.
    pub exited: bool,
    /// How long the boot took.
    pub elapsed: Duration,
}

impl BootLog {
    /// The console lines that start with `prefix`.
    pub fn lines_starting(&self, prefix: &str) -> Vec<&str> {
        self.console
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| l.starts_with(prefix))
            .collect()
    }
}

/// The QEMU machine for an architecture: binary, machine arguments and console device.
fn machine(arch: &str) -> Result<(&'static str, Vec<&'static str>, &'static str)> {
    Ok(match arch {
        "amd64" | "x86_64" => ("qemu-system-x86_64", vec!["-M", "q35"], "ttyS0"),
        "arm64" | "aarch64" => (
            "qemu-system-aarch64",
            vec!["-M", "virt", "-cpu", "cortex-a57"],
            "ttyAMA0",
        ),
        "s390x" => (
            "qemu-system-s390x",
            vec!["-M", "s390-ccw-virtio"],
            "ttysclp0",
        ),
        other => bail!("no QEMU machine for architecture {other}"),
    })
}

fn hardware_virtualisation() -> bool {
    std::fs::read_to_string("/proc/cpuinfo")
        .map(|c| c.split_whitespace().any(|w| w == "vmx" || w == "svm"))
        .unwrap_or(false)
        && Path::new("/dev/kvm").exists()
}

/// Boot `kernel` with `initrd` and `cmdline` (the console for the architecture is appended),
/// and stop after `timeout` if the guest has not powered off by then.
pub fn boot(
    arch: &str,
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    timeout: Duration,
) -> Result<BootLog> {
    let (binary, machine_args, console) = machine(arch)?;
    let accel = if hardware_virtualisation() && arch == std::env::consts::ARCH {
        "kvm"
    } else {
        "tcg"
    };
    let append = format!("{cmdline} console={console} panic=-1");
    let started = Instant::now();
    let mut child = Command::new(binary)
        .args(&machine_args)
        .args([
            "-accel",
            accel,
            "-m",
            "512",
            "-smp",
            "1",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-nic", "none", "-monitor", "none", "-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(&append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| {
            format!("starting {binary} (apt-get install qemu-system-x86 from backports)")
        })?;
    let mut stdout = child.stdout.take().context("no QEMU stdout")?;
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        let _ = tx.send(());
        buf
    });
    let exited = rx.recv_timeout(timeout).is_ok();
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let console = String::from_utf8_lossy(&reader.join().unwrap_or_default()).into_owned();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    if exited && !status.success() {
        bail!("{binary} failed ({status}): {stderr}\nconsole:\n{console}");
    }
    Ok(BootLog {
        console,
        exited,
        elapsed: started.elapsed(),
    })
}
