//! Temporary files that name their owner: the process id is part of the name, so what a
//! build killed with SIGKILL left behind can be told from what a running build is writing.
//! [`sweep`] removes the entries whose owner is gone; the cache and the output directory are
//! swept when a build opens them.

use std::fs;
use std::path::Path;

/// This process's id as temporary names carry it.
pub fn owner_tag() -> String {
    std::process::id().to_string()
}

/// Whether process `pid` is running (its `/proc` entry exists). A reused id keeps a stale
/// file until that process ends too: the sweep errs on the side of keeping.
fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

/// The id in `text` up to `end` (`12345-abc` with `-` gives 12345).
pub fn pid_before(text: &str, end: char) -> Option<u32> {
    let (digits, _) = text.split_once(end)?;
    digits.parse().ok()
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Files and directories removed.
    pub entries: u64,
    /// Bytes they held (directories: the files directly in them and below).
    pub bytes: u64,
}

/// Remove the entries of `dir` for which `owner(name)` names a process that is no longer
/// running; entries it does not recognise (`None`) are left alone. Failures to remove are
/// ignored: a later sweep tries again.
pub fn sweep(dir: &Path, owner: impl Fn(&str) -> Option<u32>) -> Swept {
    let mut swept = Swept::default();
    let Ok(entries) = fs::read_dir(dir) else {
        return swept;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = owner(&name) else { continue };
        if alive(pid) {
            continue;
        }
        let path = entry.path();
        let bytes = size_of(&path);
        let removed = match entry.file_type() {
            Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
            _ => fs::remove_file(&path),
        };
        if removed.is_ok() {
            swept.entries += 1;
            swept.bytes += bytes;
        }
    }
    swept
}

/// The bytes a file holds, or the files below a directory (symlinks not followed).
fn size_of(path: &Path) -> u64 {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::read_dir(path)
            .map(|d| d.flatten().map(|e| size_of(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The id of a process that has ended.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn only_what_a_gone_owner_left_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dead_pid();
        let me = owner_tag();
        fs::write(dir.path().join(format!("blob-{dead}-a1")), b"12345").unwrap();
        fs::write(dir.path().join(format!("blob-{me}-b2")), b"live").unwrap();
        fs::write(dir.path().join("blob-notanid-c3"), b"?").unwrap();
        fs::write(dir.path().join("user-file"), b"mine").unwrap();
        fs::create_dir(dir.path().join(format!("blob-{dead}-dir"))).unwrap();
        fs::write(dir.path().join(format!("blob-{dead}-dir/x")), b"123").unwrap();
        let swept = sweep(dir.path(), |n| pid_before(n.strip_prefix("blob-")?, '-'));
        assert_eq!(
            swept,
            Swept {
                entries: 2,
                bytes: 8
            }
        );
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                format!("blob-{me}-b2"),
                "blob-notanid-c3".into(),
                "user-file".into()
            ]
        );
    }

    #[test]
    fn ids_are_read_up_to_their_end() {
        assert_eq!(pid_before("12345-abc", '-'), Some(12345));
        assert_eq!(pid_before("x-abc", '-'), None);
        assert_eq!(pid_before("12345", '-'), None);
    }
}
