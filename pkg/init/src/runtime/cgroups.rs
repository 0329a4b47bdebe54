//! cgroup v2: one cgroup per container, limits from `linux.resources`, and killing a whole
//! container at once through `cgroup.kill`.

use std::path::{Path, PathBuf};

use super::config::{Config, Resources};

/// Where the unified hierarchy is mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup of the container in `bundle` (`/containers/SECTION/NAME`): `cgroupsPath` when
/// the config gives one, else `osbuild/SECTION/NAME`.
pub fn path_for(bundle: &Path, config: &Config) -> PathBuf {
    if let Some(p) = config
        .linux
        .cgroups_path
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        // "slice:prefix:name" is systemd's notation; take the name.
        let p = p.rsplit(':').next().unwrap_or(p);
        return Path::new(ROOT).join(p.trim_start_matches('/'));
    }
    let name = bundle.file_name().unwrap_or_default();
    let section = bundle
        .parent()
        .and_then(Path::file_name)
        .unwrap_or_default();
    Path::new(ROOT).join("osbuild").join(section).join(name)
}

/// Create `cgroup` (a path under [`ROOT`], or relative to it), enabling the controllers on
/// the way down.
pub fn create(cgroup: &Path) -> Result<(), String> {
    if !Path::new(ROOT).join("cgroup.controllers").exists() {
        return Err(format!("{ROOT} is not a cgroup2 mount"));
    }
    let relative = cgroup.strip_prefix(ROOT).unwrap_or(cgroup);
    let mut dir = PathBuf::from(ROOT);
    for part in relative.components() {
        if matches!(part, std::path::Component::ParentDir) {
            return Err(format!(
                "cgroup {}: \"..\" is not allowed",
                cgroup.display()
            ));
        }
        if !matches!(part, std::path::Component::Normal(_)) {
            continue;
        }
        enable_controllers(&dir);
        dir.push(part);
        make_dir(&dir)?;
    }
    Ok(())
}

/// Make the directory `dir` unless it is there: containers starting together race to make
/// their common parents (`osbuild/services`), and the one that loses finds it made.
fn make_dir(dir: &Path) -> Result<(), String> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(format!("mkdir {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Create `cgroup`, apply `resources` and move the calling process into it.
pub fn enter(cgroup: &Path, resources: &Resources) -> Result<(), String> {
    create(cgroup)?;
    for (file, value) in settings(resources) {
        write(cgroup, file, &value)?;
    }
    write(cgroup, "cgroup.procs", &std::process::id().to_string())
}

/// Kill every process of `cgroup` (SIGKILL); false when there was no such cgroup.
pub fn kill(cgroup: &Path) -> bool {
    std::fs::write(cgroup.join("cgroup.kill"), "1").is_ok()
}

/// Remove an empty cgroup (best effort: it may be busy still).
/// Remove `cgroup` and the cgroups below it, deepest first. False while one still has
/// processes (a killed container's take a moment to go) or cannot be removed.
pub fn remove(cgroup: &Path) -> bool {
    if let Ok(entries) = std::fs::read_dir(cgroup) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove(&e.path());
            }
        }
    }
    match std::fs::remove_dir(cgroup) {
        Ok(()) => true,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn enable_controllers(dir: &Path) {
    let Ok(available) = std::fs::read_to_string(dir.join("cgroup.controllers")) else {
        return;
    };
    let enabled = std::fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
    for c in available.split_whitespace() {
        if !enabled.split_whitespace().any(|e| e == c) {
            // A controller may refuse (e.g. cpu with realtime tasks); limits using it then fail
            // with a clear error when written.
            let _ = std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}"));
        }
    }
}

fn write(cgroup: &Path, file: &str, value: &str) -> Result<(), String> {
    std::fs::write(cgroup.join(file), value)
        .map_err(|e| format!("{}/{file} = {value}: {e}", cgroup.display()))
}

fn limit(v: i64) -> String {
    if v < 0 { "max".into() } else { v.to_string() }
}

/// The cgroup v2 files and values `resources` asks for (v1 units converted as runc does).
pub fn settings(r: &Resources) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(m) = &r.memory {
        if let Some(l) = m.limit {
            out.push(("memory.max", limit(l)));
            if let Some(s) = m.swap {
                // v1's swap is memory+swap; v2 limits swap alone.
                let swap = if s < 0 || l < 0 { -1 } else { (s - l).max(0) };
                out.push(("memory.swap.max", limit(swap)));
            }
        }
        if let Some(low) = m.reservation {
            out.push(("memory.low", limit(low)));
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(shares) = c.shares.filter(|s| *s > 0) {
            // runc's conversion of [2, 262144] shares to [1, 10000] weight.
            let weight = 1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142;
            out.push(("cpu.weight", weight.to_string()));
        }
        if c.quota.is_some() || c.period.is_some() {
            let quota = c
                .quota
                .filter(|q| *q > 0)
                .map_or("max".into(), |q| q.to_string());
            out.push((
                "cpu.max",
                format!("{quota} {}", c.period.unwrap_or(100_000)),
            ));
        }
        if let Some(cpus) = c.cpus.as_deref().filter(|s| !s.is_empty()) {
            out.push(("cpuset.cpus", cpus.to_string()));
        }
    }
    if let Some(p) = &r.pids {
        out.push((
            "pids.max",
            if p.limit > 0 {
                p.limit.to_string()
            } else {
                "max".into()
            },
        ));
    }
    if let Some(w) = r.block_io.as_ref().and_then(|b| b.weight) {
        // v1 [10, 1000] to v2 [1, 10000], as runc does.
        let weight = 1 + ((w.clamp(10, 1000) - 10) * 9999) / 990;
        out.push(("io.weight", format!("default {weight}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::config::*;
    use super::*;

    #[test]
    fn resources_become_v2_files() {
        let r: Resources = serde_json::from_str(
            r#"{"memory":{"limit":67108864,"swap":134217728},"cpu":{"shares":1024,"quota":50000,"period":100000},
            "pids":{"limit":64},"blockIO":{"weight":500}}"#,
        )
        .unwrap();
        assert_eq!(
            settings(&r),
            [
                ("memory.max", "67108864".to_string()),
                ("memory.swap.max", "67108864".into()),
                ("cpu.weight", "39".into()),
                ("cpu.max", "50000 100000".into()),
                ("pids.max", "64".into()),
                ("io.weight", "default 4950".into()),
            ]
        );
        assert!(settings(&Resources::default()).is_empty());
    }

    #[test]
    fn default_path_is_per_section_and_name() {
        let c = Config::default();
        assert_eq!(
            path_for(Path::new("/containers/services/redis"), &c),
            Path::new("/sys/fs/cgroup/osbuild/services/redis")
        );
        let mut c = Config::default();
        c.linux.cgroups_path = Some("/podruntime/x".into());
        assert_eq!(
            path_for(Path::new("/containers/services/x"), &c),
            Path::new("/sys/fs/cgroup/podruntime/x")
        );
    }

    #[test]
    fn a_directory_made_meanwhile_is_no_error() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("services");
        make_dir(&cg).unwrap();
        // Another container made it between our look and our mkdir.
        make_dir(&cg).unwrap();
        let under_file = dir.path().join("file");
        std::fs::write(&under_file, b"").unwrap();
        let err = make_dir(&under_file.join("x")).unwrap_err();
        assert!(err.starts_with("mkdir "), "{err}");
    }
}
