//! The end of the system (kill what is left, sync, unmount, reboot(2)), fatal errors, and the
//! power button: QEMU's `system_powerdown` is an ACPI (x86) or GPIO (arm64) key press that
//! reaches us as a KEY_POWER input event.

use std::io::Read;
use std::time::Duration;

use nix::sys::reboot::{RebootMode, reboot};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::log;
use crate::supervisor::{Action, Event, Waker};

/// `EV_KEY` and `KEY_POWER` from linux/input-event-codes.h.
const EV_KEY: u16 = 1;
const KEY_POWER: u16 = 116;
/// `struct input_event` on 64-bit architectures: a 16-byte timeval, type, code, value.
const EVENT_SIZE: usize = 24;

/// Whether an `input_event` is the power key going down.
pub fn is_power_press(event: &[u8]) -> bool {
    event.len() == EVENT_SIZE
        && u16::from_ne_bytes([event[16], event[17]]) == EV_KEY
        && u16::from_ne_bytes([event[18], event[19]]) == KEY_POWER
        && i32::from_ne_bytes([event[20], event[21], event[22], event[23]]) == 1
}

/// Watch every input device that has a power key; a press asks for a poweroff.
pub fn watch_power_button(waker: &Waker) -> usize {
    let mut watched = 0;
    let Ok(entries) = std::fs::read_dir("/sys/class/input") else {
        return 0;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with("event") {
            continue;
        }
        // capabilities/key is a bitmap in hex words, most significant first.
        let keys =
            std::fs::read_to_string(e.path().join("device/capabilities/key")).unwrap_or_default();
        if !has_bit(&keys, KEY_POWER as usize) {
            continue;
        }
        let Ok(mut dev) = std::fs::File::open(format!("/dev/input/{name}")) else {
            continue;
        };
        let waker = waker.clone();
        watched += 1;
        std::thread::spawn(move || {
            let mut buf = [0u8; EVENT_SIZE];
            while dev.read_exact(&mut buf).is_ok() {
                if is_power_press(&buf) {
                    log!("power button pressed");
                    waker.send(Event::Shutdown(Action::Poweroff));
                }
            }
        });
    }
    watched
}

/// Whether bit `n` is set in a sysfs bitmap ("10000 0 0 ..." in words of the machine's size).
pub fn has_bit(bitmap: &str, n: usize) -> bool {
    let words: Vec<&str> = bitmap.split_whitespace().collect();
    let bits = usize::BITS as usize;
    let Some(word) = words.len().checked_sub(1 + n / bits).map(|i| words[i]) else {
        return false;
    };
    u64::from_str_radix(word, 16).is_ok_and(|w| w & (1 << (n % bits)) != 0)
}

/// Kill every remaining process, sync, unmount, and power off or reboot.
pub fn end(action: Action) -> ! {
    log!("sending SIGTERM to all processes");
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    std::thread::sleep(Duration::from_millis(500));
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    nix::unistd::sync();
    unmount_all();
    nix::unistd::sync();
    let mode = match action {
        Action::Poweroff => RebootMode::RB_POWER_OFF,
        Action::Reboot => RebootMode::RB_AUTOBOOT,
    };
    log!(
        "{}",
        if action == Action::Poweroff {
            "powering off"
        } else {
            "rebooting"
        }
    );
    // What is still queued for the console (a flood's backlog is bounded) goes out first.
    crate::console::flush(Duration::from_secs(3));
    let e = reboot(mode);
    log!("reboot(2) failed: {e:?}");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn unmount_all() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(|t| t.replace("\\040", " "))
        .collect();
    for t in targets.iter().rev() {
        if matches!(t.as_str(), "/" | "/proc" | "/sys" | "/dev") {
            continue;
        }
        let _ = nix::mount::umount2(t.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// What to do when PID 1 cannot go on (`osbuild.onfatal=reboot|poweroff` on the command line;
/// poweroff by default).
pub fn fatal(message: &str) -> ! {
    log!("FATAL: {message}");
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let action = if cmdline
        .split_whitespace()
        .any(|a| a == "osbuild.onfatal=reboot")
    {
        Action::Reboot
    } else {
        Action::Poweroff
    };
    end(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_key_events_are_recognised() {
        let mut e = [0u8; 24];
        e[16..18].copy_from_slice(&EV_KEY.to_ne_bytes());
        e[18..20].copy_from_slice(&KEY_POWER.to_ne_bytes());
        e[20..24].copy_from_slice(&1i32.to_ne_bytes());
        assert!(is_power_press(&e));
        e[20..24].copy_from_slice(&0i32.to_ne_bytes());
        assert!(!is_power_press(&e));
    }

    #[test]
    fn bitmaps_read_from_the_last_word() {
        // KEY_POWER (116) in the second 64-bit word from the right: bit 52.
        assert!(has_bit("10000000000000 0", 116));
        assert!(!has_bit("0", 116));
        assert!(has_bit("1", 0));
    }
}
