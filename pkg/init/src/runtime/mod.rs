//! The container runtime: runs one bundle (`config.json` + `runtime.json` + `rootfs/`) the
//! way runc would, in two stages of this same program.
//!
//! - [`stage1`] (`init osbuild-runtime BUNDLE`) runs in the host's namespaces: it makes the
//!   `runtime.json` mounts and directories, puts itself in the container's cgroup, joins the
//!   namespaces given by path and starts stage 2 in the new ones (clone), held until it has
//!   written a new user namespace's id maps, set up the `interfaces` and bound the namespaces
//!   `bindNS` asks for; then it forwards signals to stage 2 and exits with its status. The
//!   supervisor watches this process.
//! - [`stage2`] (`init osbuild-runtime-exec BUNDLE`) starts inside the new namespaces (PID 1 of
//!   a new PID namespace): it mounts the container's filesystems, pivots into its root, sets
//!   the identity, limits and capabilities and executes the container's process.

pub mod caps;
pub mod cgroups;
pub mod config;
pub mod device_filter;
pub mod interfaces;
pub mod mounts;
pub mod namespaces;
pub mod process;
pub mod rootfs;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};

use config::{Config, Runtime};

/// Argument selecting stage 1.
pub const STAGE1: &str = "osbuild-runtime";
/// Argument selecting stage 2.
pub const STAGE2: &str = "osbuild-runtime-exec";

/// Signals stage 1 passes on to the container.
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

/// A bundle directory and its parsed documents.
pub struct Bundle {
    /// The bundle directory.
    pub dir: PathBuf,
    /// `config.json`.
    pub config: Config,
}

impl Bundle {
    /// Read `dir/config.json`.
    pub fn open(dir: &Path) -> Result<Bundle, String> {
        let path = dir.join(osbuild_bundle::CONFIG_JSON);
        if !path.exists() {
            return Err(format!("{}: no such file", path.display()));
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            config: config::read(&path)?,
        })
    }

    /// The container's root directory.
    pub fn rootfs(&self) -> PathBuf {
        let p = if self.config.root.path.is_empty() {
            "rootfs"
        } else {
            &self.config.root.path
        };
        self.dir.join(p)
    }
}

/// The exit status to report for a child's wait status (128 + signal for a kill).
pub fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
        _ => None,
    }
}

fn fail(bundle: &Path, message: String) -> ! {
    let name = bundle.file_name().unwrap_or_default().to_string_lossy();
    eprintln!("osbuild-runtime: {name}: {message}");
    std::process::exit(126)
}

/// Stage 1: host-side setup, namespaces, stage 2, signal forwarding. Never returns.
pub fn stage1(bundle_dir: &Path) -> ! {
    match run_stage1(bundle_dir) {
        Ok(code) => std::process::exit(code),
        Err(e) => fail(bundle_dir, e),
    }
}

fn run_stage1(bundle_dir: &Path) -> Result<i32, String> {
    let bundle = Bundle::open(bundle_dir)?;
    let runtime: Runtime = config::read(&bundle_dir.join(osbuild_bundle::RUNTIME_JSON))?;
    let linux = &bundle.config.linux;
    let plan = namespaces::Plan::new(&linux.namespaces)?;
    namespaces::check_id_maps(
        plan.new_flags().contains(CloneFlags::CLONE_NEWUSER),
        &linux.uid_mappings,
        &linux.gid_mappings,
    )?;
    if let Some(m) = bundle
        .config
        .mounts
        .iter()
        .find(|m| !m.uid_mappings.is_empty() || !m.gid_mappings.is_empty())
    {
        return Err(format!(
            "mount {}: idmapped mounts (uidMappings, gidMappings) are not supported",
            m.destination
        ));
    }
    if !runtime.interfaces.is_empty() && !plan.own(CloneFlags::CLONE_NEWNET) {
        return Err(
            "runtime.json interfaces need the container's own network namespace (net: new)".into(),
        );
    }
    for i in &runtime.interfaces {
        interfaces::step(i)?;
    }
    for m in &runtime.mounts {
        mounts::apply(None, m)?;
    }
    for dir in &runtime.mkdir {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
    }
    for cgroup in &runtime.cgroups {
        cgroups::create(Path::new(cgroup.trim_start_matches('/')))?;
    }
    let cgroup = cgroups::path_for(bundle_dir, &bundle.config);
    cgroups::enter(&cgroup, &linux.resources)?;
    device_filter::apply(&cgroup, &linux.resources.devices)?;
    // Kept from the host's namespaces: the mount namespace for bindNS, a netlink socket for
    // the interfaces.
    let host_mnt = namespaces::current_mount_ns()?;
    let host_net = if runtime.interfaces.is_empty() {
        None
    } else {
        Some(crate::netlink::Route::open()?)
    };
    plan.join()?;

    // Block what we forward before the child exists, so no signal is lost.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    // Exactly these: children inherit the mask, and stage 2 clears it before the exec.
    mask.thread_set_mask()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let argv = ["init", STAGE2]
        .iter()
        .map(|s| CString::new(*s))
        .chain([CString::new(bundle_dir.as_os_str().as_bytes())])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bundle path: {e}"))?;
    if plan.new_flags().contains(CloneFlags::CLONE_NEWUSER) {
        rootfs::prepare_mountpoints(&bundle)?;
    }
    let child = namespaces::spawn_held(plan.new_flags(), &argv)?;
    let pid = child.pid;
    if plan.new_flags().contains(CloneFlags::CLONE_NEWUSER) {
        namespaces::write_id_maps(pid, &linux.uid_mappings, &linux.gid_mappings)?;
    }
    if let Some(host) = &host_net {
        interfaces::setup(host, pid, &runtime.interfaces)?;
    }
    if runtime.bind_ns.entries().iter().any(|(_, p)| !p.is_empty()) {
        namespaces::bind(&host_mnt, pid, &runtime.bind_ns)?;
    }
    child.release()?;
    loop {
        let sig = mask.wait().map_err(|e| format!("sigwait: {e}"))?;
        if sig != Signal::SIGCHLD {
            let _ = kill(pid, sig);
            continue;
        }
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
            Err(e) => return Err(format!("waiting for the container: {e}")),
        }
    }
}

/// Stage 2: inside the namespaces; becomes the container's process. Never returns.
pub fn stage2(bundle_dir: &Path) -> ! {
    let e = match run_stage2(bundle_dir) {
        Ok(e) => e,
        Err(e) => fail(bundle_dir, e),
    };
    fail(bundle_dir, e)
}

/// Everything up to the exec; returns the exec's error (an `Ok` is the exec failing).
fn run_stage2(bundle_dir: &Path) -> Result<String, String> {
    // The mask is inherited through fork and exec: the container's process starts with none
    // blocked.
    SigSet::all()
        .thread_unblock()
        .map_err(|e| format!("unblocking signals: {e}"))?;
    rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
        .map_err(|e| format!("PR_SET_PDEATHSIG: {e}"))?;
    let bundle = Bundle::open(bundle_dir)?;
    let c = &bundle.config;
    let uts = c.linux.namespaces.iter().any(|n| n.kind == "uts");
    rootfs::enter(&bundle)?;
    if let (true, Some(name)) = (uts, &c.hostname) {
        nix::unistd::sethostname(name).map_err(|e| format!("sethostname {name}: {e}"))?;
    }
    let p = &c.process;
    process::set_rlimits(&p.rlimits)?;
    if let Some(adj) = p.oom_score_adj {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| format!("oom_score_adj {adj}: {e}"))?;
    }
    process::set_identity(p)?;
    if p.no_new_privileges {
        rustix::thread::set_no_new_privs(true).map_err(|e| format!("no_new_privs: {e}"))?;
    }
    let cwd = if p.cwd.is_empty() { "/" } else { &p.cwd };
    std::env::set_current_dir(cwd).map_err(|e| format!("cwd {cwd}: {e}"))?;
    let Some((program, args)) = p.args.split_first() else {
        return Err("config.json has no process.args".into());
    };
    let env = p
        .env
        .iter()
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")));
    let err = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .exec();
    Ok(format!("exec {program}: {err}"))
}
