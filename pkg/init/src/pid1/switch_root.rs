//! `root=DEV` from an initramfs: find the device, mount it read-only, free the initramfs, make
//! the device the root and start its own `/init` there (the `kernel+squashfs` output).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::{modules, system};
use crate::log;

/// The filesystem of the root when `rootfstype=` does not say.
pub const DEFAULT_FSTYPE: &str = "squashfs";
/// How long the root device may take to appear when `rootdelay=` does not say.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Where the new root is mounted before it is moved over `/`.
const SYSROOT: &str = "/.osbuild-sysroot";
/// What the first stage mounts to find the device; unmounted again before the switch.
const FIND_MOUNTS: [&str; 3] = ["/proc", "/sys", "/dev"];

/// The root the kernel command line names.
#[derive(Debug, PartialEq)]
pub struct Root {
    /// `root=`: a device path.
    pub device: PathBuf,
    /// `rootfstype=`: the filesystems to try, in order.
    pub fstypes: Vec<String>,
    /// `rootflags=`: mount data.
    pub flags: String,
    /// `rootdelay=SECONDS`: how long to wait for the device; None with `rootwait`: forever.
    pub wait: Option<Duration>,
}

/// The root `cmdline` (the text of `/proc/cmdline`) names, or None without `root=`. The last
/// value of a parameter wins, as in the kernel, and what follows `--` is the init's.
pub fn parse(cmdline: &str) -> Result<Option<Root>, String> {
    let (mut device, mut fstypes, mut flags, mut delay, mut rootwait) =
        (None, None, String::new(), None, false);
    for arg in cmdline.split_whitespace().take_while(|a| *a != "--") {
        match arg.split_once('=') {
            Some(("root", v)) => device = Some(v),
            Some(("rootfstype", v)) => fstypes = Some(v),
            Some(("rootflags", v)) => flags = v.to_string(),
            Some(("rootdelay", v)) => delay = Some(v),
            None if arg == "rootwait" => rootwait = true,
            _ => {}
        }
    }
    let Some(device) = device else {
        return Ok(None);
    };
    if !device.starts_with('/') {
        return Err(format!(
            "root={device}: only device paths (root=/dev/vda) are understood"
        ));
    }
    let fstypes: Vec<String> = fstypes
        .unwrap_or(DEFAULT_FSTYPE)
        .split(',')
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    if fstypes.is_empty() {
        return Err("rootfstype= names no filesystem".into());
    }
    let wait = match delay {
        Some(d) => {
            Some(Duration::from_secs(d.parse::<u64>().map_err(|_| {
                format!("rootdelay={d}: not a whole number of seconds")
            })?))
        }
        None if rootwait => None,
        None => Some(DEFAULT_WAIT),
    };
    Ok(Some(Root {
        device: PathBuf::from(device),
        fstypes,
        flags,
        wait,
    }))
}

/// The root the kernel command line asks for, read with `/proc` mounted for the purpose. With
/// a root, `/proc` stays mounted for [`switch`]; without one it is unmounted again, so the
/// initramfs is as the kernel left it.
pub fn requested() -> Result<Option<Root>, String> {
    mount_system("/proc")?;
    let cmdline =
        std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("/proc/cmdline: {e}"))?;
    let root = parse(&cmdline)?;
    if root.is_none() {
        unmount("/proc");
    }
    Ok(root)
}

/// Mount `root` read-only, make it `/` in place of the initramfs (whose files are deleted)
/// and execute its `/init` with this program's arguments. Returns only on failure.
pub fn switch(root: &Root) -> Result<std::convert::Infallible, String> {
    let dev = root.device.display();
    mount_system("/sys")?;
    mount_system("/dev")?;
    console();
    let mut index = modules::Index::load();
    if let Some(index) = &mut index {
        let (mut loaded, mut errors) = index.load_for_devices();
        for fstype in &root.fstypes {
            let mut found = index.resolve(fstype);
            if found.is_empty() {
                found = index.resolve(&format!("fs-{fstype}"));
            }
            for module in found {
                match index.load_module(&module) {
                    Ok(mut l) => loaded.append(&mut l),
                    Err(e) => errors.push(e),
                }
            }
        }
        log!(
            "initramfs: loaded {} modules for the devices present and {}: {}",
            loaded.len(),
            root.fstypes.join(","),
            loaded.join(" ")
        );
        for e in errors {
            log!("module: {e}");
        }
    } else {
        log!("initramfs: no /lib/modules/RELEASE/modules.dep for this kernel, no modules loaded");
    }
    wait_for(root, index.as_mut())?;

    std::fs::create_dir_all(SYSROOT).map_err(|e| format!("mkdir {SYSROOT}: {e}"))?;
    let data = (!root.flags.is_empty()).then_some(root.flags.as_str());
    let mut failures = Vec::new();
    let fstype = root.fstypes.iter().find(|fstype| {
        let r = mount(
            Some(&root.device),
            SYSROOT,
            Some(fstype.as_str()),
            MsFlags::MS_RDONLY,
            data,
        );
        if let Err(e) = r {
            failures.push(format!("{fstype}: {e}"));
        }
        r.is_ok()
    });
    let Some(fstype) = fstype else {
        return Err(format!(
            "mounting the root device {dev} read-only failed ({})",
            failures.join(", ")
        ));
    };
    let init = Path::new(SYSROOT).join("init");
    if !init.is_file() {
        return Err(format!("the root device {dev} ({fstype}) has no /init"));
    }
    log!("mounted {dev} ({fstype}) read-only");

    // What was mounted to find the device goes: the new root's PID 1 mounts its own.
    for target in FIND_MOUNTS.iter().rev() {
        unmount(target);
    }
    let rootdev = std::fs::symlink_metadata("/")
        .map_err(|e| format!("/: {e}"))?
        .dev();
    let freed = remove_tree(Path::new("/"), rootdev);
    std::env::set_current_dir(SYSROOT).map_err(|e| format!("chdir {SYSROOT}: {e}"))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .map_err(|e| format!("moving {dev} over /: {e}"))?;
    nix::unistd::chroot(".").map_err(|e| format!("chroot: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    log!("initramfs freed ({freed} entries); starting /init of {dev}");
    let args: Vec<CString> = std::env::args_os()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    nix::unistd::execv(c"/init", &args).map_err(|e| format!("executing /init of {dev}: {e}"))
}

/// Wait until the root device exists, loading the modules of devices that appear meanwhile.
fn wait_for(root: &Root, mut index: Option<&mut modules::Index>) -> Result<(), String> {
    let dev = root.device.display();
    if root.device.exists() {
        return Ok(());
    }
    match root.wait {
        Some(w) => log!("waiting up to {}s for the root device {dev}", w.as_secs()),
        None => log!("waiting for the root device {dev} (rootwait)"),
    }
    let start = Instant::now();
    let mut rescan = start;
    while !root.device.exists() {
        if root.wait.is_some_and(|w| start.elapsed() >= w) {
            return Err(format!(
                "the root device {dev} did not appear within {}s (block devices: {}); \
                 is the disk attached?",
                start.elapsed().as_secs(),
                block_devices()
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
        if let Some(index) = index.as_deref_mut()
            && rescan.elapsed() >= Duration::from_secs(1)
        {
            let (loaded, _) = index.load_for_devices();
            if !loaded.is_empty() {
                log!("initramfs: loaded {}", loaded.join(" "));
            }
            rescan = Instant::now();
        }
    }
    log!(
        "root device {dev} appeared after {:.2}s",
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The block devices the kernel knows, for the message when the root device is missing.
fn block_devices() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/block")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(" ")
    }
}

/// Mount the [`system::MOUNTS`] entry for `target`, making the directory if it is missing.
fn mount_system(target: &str) -> Result<(), String> {
    let Some((fstype, _, flags, data)) = system::MOUNTS.iter().find(|m| m.1 == target) else {
        return Err(format!("{target}: not a system mount"));
    };
    std::fs::create_dir_all(target).map_err(|e| format!("mkdir {target}: {e}"))?;
    let data = (!data.is_empty()).then_some(*data);
    mount(Some(*fstype), target, Some(*fstype), *flags, data)
        .map_err(|e| format!("mount {fstype} on {target}: {e}"))
}

fn unmount(target: &str) {
    if umount2(target, MntFlags::empty()).is_err() {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
}

/// Without a `/dev/console` in the initramfs the kernel starts us with no standard streams;
/// take the console from devtmpfs so the log is seen.
fn console() {
    if Path::new("/proc/self/fd/2").exists() {
        return;
    }
    if let Ok(c) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/console")
    {
        let _ = nix::unistd::dup2_stdin(&c);
        let _ = nix::unistd::dup2_stdout(&c);
        let _ = nix::unistd::dup2_stderr(&c);
    }
}

/// Delete everything under `dir` on the filesystem `dev`, not crossing into other mounts (the
/// new root); returns how many entries went.
fn remove_tree(dir: &Path, dev: u64) -> usize {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.dev() != dev {
            continue;
        }
        let removed = if meta.is_dir() {
            count += remove_tree(&path, dev);
            std::fs::remove_dir(&path)
        } else {
            std::fs::remove_file(&path)
        };
        count += usize::from(removed.is_ok());
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_root_nothing_is_asked() {
        assert_eq!(parse("console=ttyS0 quiet").unwrap(), None);
        assert_eq!(parse("").unwrap(), None);
        // What follows `--` is for the init, not the kernel.
        assert_eq!(parse("console=ttyS0 -- root=/dev/vda").unwrap(), None);
    }

    #[test]
    fn root_with_defaults() {
        let root = parse("console=ttyS0 root=/dev/vda panic=-1\n")
            .unwrap()
            .unwrap();
        assert_eq!(
            root,
            Root {
                device: PathBuf::from("/dev/vda"),
                fstypes: vec!["squashfs".into()],
                flags: String::new(),
                wait: Some(DEFAULT_WAIT),
            }
        );
    }

    #[test]
    fn type_flags_and_delay() {
        let root = parse(
            "root=/dev/sda1 root=/dev/vdb rootfstype=ext4,squashfs rootflags=noatime rootdelay=5",
        )
        .unwrap()
        .unwrap();
        assert_eq!(root.device, Path::new("/dev/vdb"), "the last root= wins");
        assert_eq!(root.fstypes, ["ext4", "squashfs"]);
        assert_eq!(root.flags, "noatime");
        assert_eq!(root.wait, Some(Duration::from_secs(5)));
        let forever = parse("root=/dev/vda rootwait").unwrap().unwrap();
        assert_eq!(forever.wait, None);
        let bounded = parse("rootwait root=/dev/vda rootdelay=0")
            .unwrap()
            .unwrap();
        assert_eq!(bounded.wait, Some(Duration::ZERO));
    }

    #[test]
    fn only_device_paths_and_sane_values() {
        let e = parse("root=PARTUUID=1234-01").unwrap_err();
        assert!(
            e.contains("root=PARTUUID=1234-01") && e.contains("device paths"),
            "{e}"
        );
        assert!(parse("root=").unwrap_err().contains("device paths"));
        assert!(
            parse("root=/dev/vda rootdelay=ten")
                .unwrap_err()
                .contains("rootdelay=ten")
        );
        assert!(
            parse("root=/dev/vda rootfstype=")
                .unwrap_err()
                .contains("rootfstype")
        );
    }

    #[test]
    fn removes_one_filesystem_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/modules/6.1")).unwrap();
        std::fs::write(dir.path().join("lib/modules/6.1/modules.dep"), "").unwrap();
        std::fs::write(dir.path().join("init"), "x").unwrap();
        std::os::unix::fs::symlink("/nonexistent", dir.path().join("link")).unwrap();
        let dev = std::fs::metadata(dir.path()).unwrap().dev();
        assert_eq!(remove_tree(dir.path(), dev), 6);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        // Entries of another filesystem are left alone.
        std::fs::write(dir.path().join("kept"), "x").unwrap();
        assert_eq!(remove_tree(dir.path(), dev.wrapping_add(1)), 0);
        assert!(dir.path().join("kept").exists());
    }
}
