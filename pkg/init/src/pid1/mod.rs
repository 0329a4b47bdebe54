//! PID 1: set the system up (root on a tmpfs, or the `root=` device; the system's
//! filesystems, kernel modules, host name, loopback, limits), start the supervisor, and end
//! the system when it returns. PID 1 never exits: a fatal error powers off (or reboots, per
//! `osbuild.onfatal=`).

pub mod modules;
pub mod power;
pub mod rootfs;
pub mod switch_root;
pub mod system;

use std::time::Instant;

use crate::log;
use crate::supervisor::{self, Settings, Supervisor};

fn settings() -> Settings {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let grace = cmdline
        .split_whitespace()
        .find_map(|a| a.strip_prefix("osbuild.grace="))
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|g| g.is_finite() && *g >= 0.0)
        .unwrap_or(10.0);
    Settings {
        grace: std::time::Duration::from_secs_f64(grace),
    }
}

/// Run as PID 1. `exe` is the path this program was started as (`/init`).
pub fn main(exe: &str) -> ! {
    std::panic::set_hook(Box::new(|info| power::fatal(&format!("panic: {info}"))));
    let t0 = Instant::now();
    // Signals go to the supervisor's signalfd; block them before any thread exists.
    if let Err(e) = supervisor::handled_signals().thread_block() {
        power::fatal(&format!("blocking signals: {e}"));
    }
    // Ctrl-Alt-Del (and s390x's quiesce) becomes SIGINT instead of an instant reboot.
    let _ = nix::sys::reboot::set_cad_enabled(false);
    if let Err(e) = setup(exe) {
        power::fatal(&e);
    }
    log!("system ready in {:.3}s", t0.elapsed().as_secs_f64());
    // From here on services share the console: PID 1 never waits for it.
    crate::console::start();
    let sup = match Supervisor::new(settings()) {
        Ok(s) => s,
        Err(e) => power::fatal(&e),
    };
    let waker = sup.waker();
    if let Err(e) = supervisor::api::serve(waker.clone()) {
        log!("control socket: {e}");
    }
    let buttons = power::watch_power_button(&waker);
    if buttons > 0 {
        log!("watching {buttons} power button(s)");
    }
    let action = sup.run();
    power::end(action)
}

fn setup(exe: &str) -> Result<(), String> {
    if rootfs::is_initramfs() {
        // `root=DEV`: the initramfs only finds the real root; its /init goes on from there.
        if let Some(root) = switch_root::requested()? {
            switch_root::switch(&root)?;
        }
        let n = rootfs::move_to_tmpfs()?;
        log!("root moved to a tmpfs ({n} entries)");
    }
    system::mount_all()?;
    system::share_mounts()?;
    log!(
        "osbuild init {} on {}",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::ARCH
    );
    // The kernel asks this program for the modules it needs later (net-pf-17, fs-overlay...).
    if exe.starts_with('/') && std::path::Path::new(exe).exists() {
        let _ = std::fs::write("/proc/sys/kernel/modprobe", exe);
    }
    if let Some(mut index) = modules::Index::load() {
        let (loaded, errors) = index.load_for_devices();
        // No device asks for these: evdev gives the power button a /dev/input node, and
        // af_packet serves DHCP clients' raw sockets without a round trip through the
        // kernel's module helper.
        let mut evdev = index.load_module("evdev").unwrap_or_default();
        evdev.extend(index.load_module("af_packet").unwrap_or_default());
        log!(
            "loaded {} modules for the devices present: {}",
            loaded.len() + evdev.len(),
            loaded.join(" ")
        );
        for e in errors {
            log!("module: {e}");
        }
    }
    system::rlimits()?;
    if let Err(e) = crate::netlink::link_up("lo") {
        log!("lo: {e}");
    }
    let name = system::hostname();
    system::set_hostname(&name)?;
    log!("hostname {name}");
    system::root_readonly()?;
    Ok(())
}

/// The kernel's module helper: `modprobe -q -- NAME`. It has no console; what it does goes to
/// the kernel log.
pub fn modprobe(name: &str) -> i32 {
    let kmsg = |line: String| {
        let _ = std::fs::write("/dev/kmsg", format!("init-modprobe: {line}\n"));
    };
    let Some(mut index) = modules::Index::load() else {
        kmsg(format!("{name}: no module index"));
        return 1;
    };
    let mut status = 1;
    for module in index.resolve(name) {
        match index.load_module(&module) {
            Ok(loaded) => {
                kmsg(format!("{name}: loaded {}", loaded.join(" ")));
                status = 0;
            }
            Err(e) => kmsg(format!("{name}: {e}")),
        }
    }
    if status != 0 {
        kmsg(format!("{name}: no module"));
    }
    status
}
