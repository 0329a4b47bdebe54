//! `files` entries as the command line sees them: sources read the way LinuxKit reads them
//! (symlinks followed, only regular files and directories), and every mistake in `files` or
//! `kernel` found after parsing reported at its line and column, with exit code 3 and nothing
//! written. The specs here name no image, so no registry is needed.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{osbuild_in, stderr};

/// A scratch directory holding a spec, its sources, a cache and an output directory.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn out(&self) -> PathBuf {
        self.path("out")
    }

    /// `osbuild build -f tar --dir out s.yml` with `spec` as `s.yml`.
    fn build(&self, spec: &str) -> Output {
        let file = self.path("s.yml");
        std::fs::write(&file, spec).expect("spec");
        osbuild_in(
            &self.path("cache"),
            &[
                "build",
                "-q",
                "-f",
                "tar",
                "--dir",
                self.out().to_str().expect("utf-8"),
                file.to_str().expect("utf-8"),
            ],
        )
    }

    /// The one error line of a failed build (its exit code asserted), the scratch directory
    /// shown as `DIR`; asserts nothing was left in the output directory.
    fn failure(&self, spec: &str, code: i32) -> String {
        let o = self.build(spec);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "exit code; stderr:\n{err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(lines.len(), 1, "one error line:\n{err}");
        let left: Vec<_> = std::fs::read_dir(self.out())
            .map(|d| d.map(|e| e.expect("entry").file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "left in --dir: {left:?}");
        lines[0]
            .trim_start_matches("error: ")
            .replace(&self.dir.path().display().to_string(), "DIR")
    }
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

/// `tar -tvf` of the output, one `mode name` line per entry under `etc/`.
fn listing(tar: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tvf")
        .arg(tar)
        .output()
        .expect("tar");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let name = f[5..].join(" ");
            name.starts_with("etc/").then(|| format!("{} {name}", f[0]))
        })
        .collect()
}

fn contents(tar: &Path, name: &str) -> String {
    let out = Command::new("tar")
        .arg("-xOf")
        .arg(tar)
        .arg(name)
        .output()
        .expect("tar");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_symlink_source_copies_what_it_points_to_and_a_directory_gets_0700() {
    let c = Case::new();
    std::fs::write(c.path("real"), "hello\n").unwrap();
    std::os::unix::fs::symlink("real", c.path("link")).unwrap();
    std::fs::create_dir_all(c.path("conf/sub")).unwrap();
    std::fs::write(c.path("conf/sub/f"), "in conf\n").unwrap();
    std::os::unix::fs::symlink("sub/f", c.path("conf/l")).unwrap();
    let o = c.build(
        "files:\n  - path: etc/x\n    source: link\n  - path: etc/conf\n    source: conf\n  - path: etc/gone\n    source: missing\n    optional: true\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let tar = c.out().join("s.tar");
    let mut entries = listing(&tar);
    // Parent and inner directory modes come from the spec and the host; the link inside the
    // directory stays a link.
    entries.retain(|e| e != "drwx------ etc/");
    assert_eq!(
        entries,
        [
            "drwx------ etc/conf/",
            "lrwxrwxrwx etc/conf/l -> sub/f",
            "drwxr-xr-x etc/conf/sub/",
            "-rw-r--r-- etc/conf/sub/f",
            "-rw------- etc/x",
        ]
    );
    assert_eq!(contents(&tar, "etc/x"), "hello\n");
}

#[test]
fn sources_that_cannot_be_copied_are_refused_where_written() {
    let c = Case::new();
    mkfifo(&c.path("fifo"));
    std::os::unix::fs::symlink("fifo", c.path("to-fifo")).unwrap();
    std::os::unix::fs::symlink("b", c.path("a")).unwrap();
    std::os::unix::fs::symlink("a", c.path("b")).unwrap();
    std::fs::create_dir_all(c.path("d/in")).unwrap();
    mkfifo(&c.path("d/in/pipe"));
    let spec = |source: &str| {
        format!(
            "files:\n  - path: etc/ok\n    contents: x\n  - path: etc/x\n    source: {source}\n    mode: \"0644\"\n"
        )
    };
    for (source, error) in [
        (
            "fifo",
            "DIR/s.yml:5:13: files[1].source: DIR/fifo: a FIFO, not a regular file or directory",
        ),
        (
            "to-fifo",
            "DIR/s.yml:5:13: files[1].source: DIR/fifo: a FIFO, not a regular file or directory",
        ),
        (
            "/dev/zero",
            "DIR/s.yml:5:13: files[1].source: /dev/zero: a character device, not a regular file or directory",
        ),
        (
            "a",
            "DIR/s.yml:5:13: files[1].source: DIR/a: a loop of symbolic links",
        ),
        (
            "missing",
            "DIR/s.yml:5:13: files[1].source: DIR/missing: No such file or directory (os error 2)",
        ),
    ] {
        assert_eq!(c.failure(&spec(source), 3), error, "{source}");
    }
    // /proc/self/environ is osbuild's own environment: refused, whatever its pid.
    let e = c.failure(&spec("/proc/self/environ"), 3);
    assert!(
        e.starts_with("DIR/s.yml:5:13: files[1].source: /proc/")
            && e.ends_with(
                "/environ: on proc, a kernel filesystem whose files cannot be copied into an image"
            ),
        "{e}"
    );
    // Inside a directory source, found as the tree is laid out.
    assert_eq!(
        c.failure(&spec("d"), 3),
        "DIR/s.yml:4:11: files[1]: DIR/d/in/pipe: a FIFO, not a regular file or directory"
    );
}

#[test]
fn files_and_kernel_mistakes_found_after_parsing_are_located() {
    let c = Case::new();
    assert_eq!(
        c.failure(
            "files:\n  - path: etc/x\n    contents: x\nkernel:\n  cmdline: console=ttyS0\n",
            3
        ),
        "DIR/s.yml:5:3: kernel: missing `image`"
    );
    assert_eq!(
        c.failure(
            "files:\n  - path: etc/a\n    contents: x\n  - path: etc/a/b\n    contents: y\n",
            3
        ),
        "DIR/s.yml:4:11: files[1].path: \"etc/a/b\" is under \"etc/a\", which files[0] (line 2) makes a file, not a directory"
    );
    assert_eq!(
        c.failure("files:\n  - path: .\n    contents: x\n", 3),
        "DIR/s.yml:2:11: files[0].path: \".\" names the root directory, which a file cannot replace"
    );
}

#[test]
fn a_5000_character_path_is_an_invalid_spec_shown_by_its_ends() {
    let c = Case::new();
    for path in [
        "x".repeat(5000),
        "ab/".repeat(1667),
        format!("\\0{}", "y".repeat(5000)),
    ] {
        let e = c.failure(
            &format!("files:\n  - path: \"{path}\"\n    contents: x\n"),
            3,
        );
        assert!(e.starts_with("DIR/s.yml:2:11: files[0].path: "), "{e}");
        assert!(e.len() < 250, "{} characters: {e}", e.len());
    }
}
