//! The container's filesystem view: its root bound and mounted over, default devices,
//! pivot_root into it, masked and read-only paths, a read-only root.

use std::path::{Component, Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};

use super::Bundle;
use super::config::Mount;
use super::mounts;

const NONE: Option<&str> = None;

/// Device nodes every container gets when its `/dev` is not the host's: (name, major, minor).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Links every container's `/dev` gets.
const DEV_LINKS: [(&str, &str); 5] = [
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
];

/// Build the container's mounts under its root and pivot into it. Runs in the container's new
/// mount namespace.
pub fn enter(bundle: &Bundle) -> Result<(), String> {
    let c = &bundle.config;
    let propagation = match c.linux.rootfs_propagation.as_deref() {
        Some("shared" | "rshared") => MsFlags::MS_SHARED,
        Some("slave" | "rslave") => MsFlags::MS_SLAVE,
        _ => MsFlags::MS_PRIVATE,
    };
    mount(NONE, "/", NONE, MsFlags::MS_REC | propagation, NONE)
        .map_err(|e| format!("making / {propagation:?}: {e}"))?;
    let root = bundle.rootfs();
    // pivot_root refuses a shared new root or a shared parent of it: the mount holding the
    // root (its own mount when it is one) goes private in this namespace, as runc does, so
    // the bind below is private too. Mounts bound from the host keep the propagation the
    // config gives them.
    let holder = containing_mount(&root);
    mount(NONE, &holder, NONE, MsFlags::MS_PRIVATE, NONE)
        .map_err(|e| format!("making {} private: {e}", holder.display()))?;
    mount(
        Some(&root),
        &root,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(|e| format!("binding {}: {e}", root.display()))?;
    // The image's tree may sit on a read-only mount; mount points are made while writable and
    // the root goes read-only at the end when the config says so. A user namespace cannot
    // lift a read-only flag the host set: its mount points must exist in the image.
    let userns = c.linux.namespaces.iter().any(|n| n.kind == "user");
    match mounts::remount(&root, MsFlags::MS_BIND) {
        Err(nix::errno::Errno::EPERM) if userns => {}
        r => r.map_err(|e| format!("remounting {} writable: {e}", root.display()))?,
    }
    let mut host_dev = false;
    // Read-only tmpfs mounts (a read-only container's /dev) go read-only once the mounts and
    // devices inside them are made, as runc does.
    let mut readonly_later = Vec::new();
    for m in &c.mounts {
        let dest = resolve_in_root(&root, &m.destination)?;
        let relative = dest.strip_prefix(&root).unwrap_or(&dest);
        let mut options = m.options.clone();
        if m.kind == "tmpfs" && options.iter().any(|o| o == "ro") {
            options.retain(|o| o != "ro");
            let keep = mounts::parse_options(&options).flags
                & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
            readonly_later.push((dest.clone(), keep));
        }
        let in_root = Mount {
            destination: format!("/{}", relative.display()),
            options,
            ..m.clone()
        };
        mounts::apply(Some(&root), &in_root)
            .map_err(|e| format!("mount {}: {e}", m.destination))?;
        if m.destination == "/dev" && mounts::parse_options(&m.options).bind {
            host_dev = true;
        }
    }
    if !host_dev {
        default_devices(&root.join("dev"))?;
    }
    for d in &c.linux.devices {
        make_device(&root, d)?;
    }
    for (dest, keep) in readonly_later.iter().rev() {
        mounts::remount(dest, MsFlags::MS_BIND | MsFlags::MS_RDONLY | *keep)
            .map_err(|e| format!("making {} read-only: {e}", dest.display()))?;
    }
    let old_root = std::fs::File::open("/").map_err(|e| format!("opening /: {e}"))?;
    std::env::set_current_dir(&root).map_err(|e| format!("chdir {}: {e}", root.display()))?;
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    // The old root now lies over the new one. From inside it (as runc does), it becomes a
    // slave, so that detaching it cannot unmount anything of the host's, whose mounts it may
    // share; the new root's own mounts keep their propagation.
    nix::unistd::fchdir(&old_root).map_err(|e| format!("entering the old root: {e}"))?;
    mount(NONE, ".", NONE, MsFlags::MS_SLAVE | MsFlags::MS_REC, NONE)
        .map_err(|e| format!("making the old root a slave: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detaching the old root: {e}"))?;
    drop(old_root);
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    // Before /proc/sys goes read-only.
    for (key, value) in &c.linux.sysctl {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| format!("sysctl {key}={value}: {e}"))?;
    }
    for p in &c.linux.masked_paths {
        mask(p)?;
    }
    for p in &c.linux.readonly_paths {
        make_readonly(p)?;
    }
    if c.root.readonly {
        mounts::remount(Path::new("/"), MsFlags::MS_BIND | MsFlags::MS_RDONLY)
            .map_err(|e| format!("making the root read-only: {e}"))?;
    }
    Ok(())
}

/// The mount point of the mount `path` is on: `path` itself when it is a mount point, else
/// the longest mount point above it.
fn containing_mount(path: &Path) -> PathBuf {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_point_of(&info, path)
}

/// [`containing_mount`] from the text of a `mountinfo` file.
fn mount_point_of(mountinfo: &str, path: &Path) -> PathBuf {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(m.replace("\\040", " ")))
        .filter(|m| path.starts_with(m))
        .max_by_key(|m| m.components().count())
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Create the mount points of `config.json`'s mounts in the container's root, from the host's
/// side. A new user namespace's root cannot create them in an image the host's root owns;
/// where the image is read-only they must exist already, and the mounts report what is
/// missing.
pub fn prepare_mountpoints(bundle: &Bundle) -> Result<(), String> {
    let root = bundle.rootfs();
    for m in &bundle.config.mounts {
        let target = resolve_in_root(&root, &m.destination)?;
        let bind = mounts::parse_options(&m.options).bind || m.kind == "bind";
        let dir = !bind
            || m.source.is_empty()
            || std::fs::metadata(&m.source).is_ok_and(|md| md.is_dir());
        match mounts::create_mountpoint(&target, dir) {
            Err(e) if e.raw_os_error() == Some(nix::libc::EROFS) => {}
            r => r.map_err(|e| format!("mount point {}: {e}", m.destination))?,
        }
    }
    Ok(())
}

/// `path` inside `root` with every symlink resolved as if `root` were `/`, so a link in the
/// image cannot point a mount outside the container.
pub fn resolve_in_root(root: &Path, path: &str) -> Result<PathBuf, String> {
    let mut todo: Vec<PathBuf> = vec![PathBuf::from(path)];
    let mut out = root.to_path_buf();
    let mut links = 0;
    while let Some(p) = todo.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(comp) = comps.pop() {
            match comp {
                Component::RootDir => out = root.to_path_buf(),
                Component::CurDir | Component::Prefix(_) => {}
                Component::ParentDir => {
                    if out != root {
                        out.pop();
                    }
                }
                Component::Normal(name) => {
                    let next = out.join(name);
                    match std::fs::read_link(&next) {
                        Ok(target) => {
                            links += 1;
                            if links > 40 {
                                return Err(format!("{path}: too many levels of symbolic links"));
                            }
                            let rest: PathBuf = comps.iter().rev().collect();
                            comps.clear();
                            todo.push(rest);
                            todo.push(target);
                        }
                        Err(_) => out = next,
                    }
                }
            }
        }
    }
    Ok(out)
}

fn default_devices(dev: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dev).map_err(|e| format!("mkdir {}: {e}", dev.display()))?;
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        if path.symlink_metadata().is_ok() {
            continue;
        }
        let mode = Mode::from_bits_truncate(0o666);
        let host = Path::new("/dev").join(name);
        let name = path.display();
        make_node(
            &path,
            SFlag::S_IFCHR,
            mode,
            makedev(major, minor),
            &host,
            &name,
        )?;
    }
    for (name, target) in DEV_LINKS {
        let path = dev.join(name);
        if path.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(target, &path)
                .map_err(|e| format!("symlink {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

fn make_device(root: &Path, d: &super::config::Device) -> Result<(), String> {
    let kind = match d.kind.as_str() {
        "c" | "u" => SFlag::S_IFCHR,
        "b" => SFlag::S_IFBLK,
        "p" => SFlag::S_IFIFO,
        other => return Err(format!("device {}: unknown type {other:?}", d.path)),
    };
    let path = resolve_in_root(root, &d.path)?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("mkdir {}: {e}", parent.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let mode = Mode::from_bits_truncate(d.file_mode.unwrap_or(0o666));
    let made = make_node(
        &path,
        kind,
        mode,
        makedev(d.major, d.minor),
        Path::new(&d.path),
        &d.path,
    )?;
    if made {
        std::os::unix::fs::chown(&path, d.uid, d.gid)
            .map_err(|e| format!("chown {}: {e}", d.path))?;
    }
    Ok(())
}

/// mknod with exactly `mode` (mknod alone is subject to the umask); errors name `name`.
/// Where mknod is not allowed (a user namespace) the host's node `host` is bound instead, as
/// runc does; false then.
fn make_node(
    path: &Path,
    kind: SFlag,
    mode: Mode,
    dev: nix::sys::stat::dev_t,
    host: &Path,
    name: &dyn std::fmt::Display,
) -> Result<bool, String> {
    match mknod(path, kind, mode, dev) {
        Ok(()) => {}
        Err(nix::errno::Errno::EPERM) => {
            if host.symlink_metadata().is_err() {
                return Err(format!(
                    "mknod {name}: not permitted here (a user namespace) and the host has no {} \
                     to bind",
                    host.display()
                ));
            }
            std::fs::File::create(path).map_err(|e| format!("creating {name}: {e}"))?;
            mount(Some(host), path, NONE, MsFlags::MS_BIND, NONE)
                .map_err(|e| format!("binding the host's {} to {name}: {e}", host.display()))?;
            return Ok(false);
        }
        Err(e) => return Err(format!("mknod {name}: {e}")),
    }
    nix::sys::stat::fchmodat(
        nix::fcntl::AT_FDCWD,
        path,
        mode,
        nix::sys::stat::FchmodatFlags::FollowSymlink,
    )
    .map_err(|e| format!("chmod {name}: {e}"))?;
    Ok(true)
}

fn mask(path: &str) -> Result<(), String> {
    let Ok(meta) = std::fs::metadata(path) else {
        return Ok(());
    };
    let r = if meta.is_dir() {
        mount(Some("tmpfs"), path, Some("tmpfs"), MsFlags::MS_RDONLY, NONE)
    } else {
        mount(Some("/dev/null"), path, NONE, MsFlags::MS_BIND, NONE)
    };
    r.map_err(|e| format!("masking {path}: {e}"))
}

fn make_readonly(path: &str) -> Result<(), String> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    mount(
        Some(path),
        path,
        NONE,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        NONE,
    )
    .map_err(|e| format!("binding {path}: {e}"))?;
    let flags = MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    mounts::remount(Path::new(path), flags).map_err(|e| format!("making {path} read-only: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_containing_mount_is_the_longest_mount_point_above() {
        let info = "22 1 0:21 / / rw shared:1 - tmpfs root rw\n\
                    23 22 0:22 / /var rw shared:2 - tmpfs tmpfs rw\n\
                    24 23 0:23 / /var/lib\\040x rw - ext4 /dev/vda rw\n";
        let at = |p: &str| mount_point_of(info, Path::new(p));
        assert_eq!(at("/containers/services/redis"), Path::new("/"));
        assert_eq!(at("/var/run/x"), Path::new("/var"));
        assert_eq!(at("/variable"), Path::new("/"));
        assert_eq!(at("/var/lib x/data"), Path::new("/var/lib x"));
    }

    #[test]
    fn symlinks_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("run/resolvconf")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/run/resolvconf/resolv.conf", root.join("etc/resolv.conf"))
            .unwrap();
        std::os::unix::fs::symlink("../../../../..", root.join("etc/up")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("var")).unwrap();
        assert_eq!(
            resolve_in_root(root, "/etc/resolv.conf").unwrap(),
            root.join("run/resolvconf/resolv.conf")
        );
        assert_eq!(
            resolve_in_root(root, "/etc/up/tmp").unwrap(),
            root.join("tmp")
        );
        assert_eq!(resolve_in_root(root, "/var/x").unwrap(), root.join("etc/x"));
        assert_eq!(resolve_in_root(root, "/a/../b").unwrap(), root.join("b"));
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(root, "/loop").is_err());
    }
}
