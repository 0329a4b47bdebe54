//! Outputs appear whole or not at all: each is written to a hidden temporary file in its
//! destination directory and renamed into place only when every output of the build is done.
//! Dropping the set without committing removes the temporary files; a signal handler can call
//! [`remove_all_staged`] so an interrupted build leaves nothing behind either.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::ArchiveError;
use super::stale::{Swept, owner_tag, pid_before, sweep};

/// The prefix of the scratch directories writers make beside their outputs.
pub fn scratch_prefix() -> String {
    format!(".osbuild-scratch-{}-", owner_tag())
}

/// The process that owns a temporary entry of an output directory: a staged output
/// (`.NAME.PID.XXXXXX.tmp`) or a scratch directory (`.osbuild-scratch-PID-XXXXXX`).
fn output_temp_owner(name: &str) -> Option<u32> {
    if let Some(rest) = name.strip_prefix(".osbuild-scratch-") {
        return pid_before(rest, '-');
    }
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = inner.rsplitn(3, '.');
    let (_random, pid, file) = (parts.next()?, parts.next()?, parts.next()?);
    if file.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Remove from the output directory `dir` the staged outputs and scratch directories of
/// builds that were killed before they could (SIGKILL, a power cut).
pub fn sweep_output_dir(dir: &Path) -> Swept {
    sweep(dir, output_temp_owner)
}

/// Temporary files of every live [`StagedOutputs`] in this process.
static STAGED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn register(path: &Path) {
    if let Ok(mut staged) = STAGED.lock() {
        staged.push(path.to_owned());
    }
}

fn unregister(path: &Path) {
    if let Ok(mut staged) = STAGED.lock() {
        staged.retain(|p| p != path);
    }
}

/// Remove every temporary output file of this process (for a SIGINT/SIGTERM handler).
pub fn remove_all_staged() {
    if let Ok(staged) = STAGED.lock() {
        for path in staged.iter() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A set of output files being written.
#[derive(Debug, Default)]
pub struct StagedOutputs {
    staged: Vec<(PathBuf, PathBuf)>,
}

impl StagedOutputs {
    /// An empty set.
    pub fn new() -> Self {
        StagedOutputs::default()
    }

    /// Start the output that will be `dest`; returns the open temporary file.
    pub fn create(&mut self, dest: &Path) -> Result<File, ArchiveError> {
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = dest
            .file_name()
            .ok_or_else(|| ArchiveError::Usage(format!("{}: not a file name", dest.display())))?;
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.{}.", name.to_string_lossy(), owner_tag()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|source| ArchiveError::File {
                path: dir.display().to_string(),
                source,
            })?;
        let (file, path) = tmp.keep().map_err(|e| ArchiveError::File {
            path: dir.display().to_string(),
            source: e.error,
        })?;
        register(&path);
        self.staged.push((path, dest.to_owned()));
        // Outputs are ordinary files for their owner and readable by everyone, like cp's.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(|source| ArchiveError::File {
                path: dest.display().to_string(),
                source,
            })?;
        Ok(file)
    }

    /// The temporary file holding what will be `dest`, while it is staged.
    pub fn temp_path(&self, dest: &Path) -> Option<&Path> {
        self.staged
            .iter()
            .find(|(_, d)| d == dest)
            .map(|(t, _)| t.as_path())
    }

    /// Make every output durable and move it into place.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, ArchiveError> {
        let staged = std::mem::take(&mut self.staged);
        for (tmp, dest) in &staged {
            let sync = File::open(tmp).and_then(|f| f.sync_all());
            sync.map_err(|source| ArchiveError::File {
                path: dest.display().to_string(),
                source,
            })?;
        }
        let mut done = Vec::new();
        for (tmp, dest) in &staged {
            fs::rename(tmp, dest).map_err(|source| ArchiveError::File {
                path: dest.display().to_string(),
                source,
            })?;
            unregister(tmp);
            done.push(dest.clone());
        }
        // Make the renames durable too.
        if let Some((_, dest)) = staged.first()
            && let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty())
        {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        self.staged = staged.into_iter().filter(|(t, _)| t.exists()).collect();
        Ok(done)
    }
}

impl Drop for StagedOutputs {
    fn drop(&mut self) {
        for (tmp, _) in &self.staged {
            let _ = fs::remove_file(tmp);
            unregister(tmp);
        }
    }
}

/// Whether `err` means the directory is not writable or does not exist (for messages).
pub fn is_permission_or_missing(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::NotFound
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The tests share the process-wide list of staged files.
    static SERIAL: Mutex<()> = Mutex::new(());

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn commit_moves_all_outputs_into_place() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let mut set = StagedOutputs::new();
        set.create(&dir.path().join("a"))
            .unwrap()
            .write_all(b"A")
            .unwrap();
        set.create(&dir.path().join("b"))
            .unwrap()
            .write_all(b"B")
            .unwrap();
        assert_eq!(names(dir.path()).len(), 2);
        assert!(names(dir.path()).iter().all(|n| n.starts_with('.')));
        set.commit().unwrap();
        assert_eq!(names(dir.path()), ["a", "b"]);
        assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"B");
    }

    #[test]
    fn dropping_leaves_nothing() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        {
            let mut set = StagedOutputs::new();
            set.create(&dir.path().join("a"))
                .unwrap()
                .write_all(b"partial")
                .unwrap();
        }
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn signal_cleanup_removes_staged_files() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let mut set = StagedOutputs::new();
        set.create(&dir.path().join("x")).unwrap();
        remove_all_staged();
        assert!(names(dir.path()).is_empty());
        drop(set);
    }

    #[test]
    fn missing_directory_is_named() {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let mut set = StagedOutputs::new();
        let err = set
            .create(Path::new("/nonexistent/osbuild/out"))
            .unwrap_err();
        assert!(
            crate::error::chain(&err).starts_with("/nonexistent/osbuild: "),
            "{err}"
        );
    }

    #[test]
    fn what_killed_builds_left_is_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale_out = dir.path().join(format!(".app-efi.img.{dead}.Ab12Cd.tmp"));
        fs::write(&stale_out, b"partial").unwrap();
        let stale_scratch = dir.path().join(format!(".osbuild-scratch-{dead}-Xy12"));
        fs::create_dir(&stale_scratch).unwrap();
        fs::write(stale_scratch.join("disk.raw"), b"raw").unwrap();
        let user = dir.path().join(".notes.1.tmp");
        fs::write(&user, b"a user's file of a similar shape but no owner part").unwrap();
        let mut staged = StagedOutputs::new();
        staged.create(&dir.path().join("app.json")).unwrap();
        let swept = sweep_output_dir(dir.path());
        assert_eq!(swept.entries, 2, "{swept:?}");
        assert!(!stale_out.exists() && !stale_scratch.exists());
        assert!(user.exists());
        assert_eq!(
            names(dir.path()).len(),
            2,
            "this process's staged file is kept"
        );
        drop(staged);
        assert_eq!(owner_tag_of(".app.json.12.AbCdEf.tmp"), Some(12));
        assert_eq!(owner_tag_of(".a.b.c.7.xyz.tmp"), Some(7));
        assert_eq!(owner_tag_of("..1.x.tmp"), None);
    }

    fn owner_tag_of(name: &str) -> Option<u32> {
        output_temp_owner(name)
    }
}
