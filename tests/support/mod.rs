//! Shared by the integration tests: one fixture registry per test binary, and the osbuild
//! binary run as a subprocess with its own cache.

#![allow(dead_code)]

pub mod guest;
pub mod sparse;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use osbuild_testenv::fixtures::Environment;

/// The fixture registry shared by the tests of this binary.
pub fn env() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| Environment::start().expect("fixture registry"))
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A test's scratch space: a cache and an output directory.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
    pub fn out(&self) -> PathBuf {
        let p = self.dir.path().join("out");
        std::fs::create_dir_all(&p).expect("out dir");
        p
    }
    /// Write a spec file into the scratch space.
    pub fn spec(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("spec");
        p
    }
    /// Write a spec `NAME.yml` booting `pkg/kernel` (a console for every architecture) with the
    /// busybox init fixture, the images `extra_init` after it, and `script` as `/init`.
    pub fn init_spec(&self, name: &str, extra_init: &[&str], script: &str) -> PathBuf {
        let mut text = String::from(
            "kernel:\n  image: osbuild/kernel:6.1-debian\n  cmdline: \"console=ttyS0 console=ttyAMA0 console=ttysclp0\"\ninit:\n  - osbuild/busybox-init:1\n",
        );
        for image in extra_init {
            text.push_str(&format!("  - \"{image}\"\n"));
        }
        text.push_str("files:\n  - path: init\n    mode: \"0755\"\n    contents: |\n");
        for line in script.lines() {
            text.push_str(&format!("      {line}\n"));
        }
        self.spec(&format!("{name}.yml"), &text)
    }
    /// Build `spec` for `arch` as `out/NAME-*` (panicking with osbuild's stderr on failure);
    /// returns the outputs' path prefix.
    pub fn build_for(&self, arch: &str, name: &str, spec: &Path) -> PathBuf {
        let out = self.out();
        ok(&self.osbuild(&[
            "build",
            "--arch",
            arch,
            "--name",
            name,
            "--dir",
            out.to_str().expect("utf-8 path"),
            spec.to_str().expect("utf-8 path"),
        ]));
        out.join(name)
    }
    /// `osbuild ARGS` with this scratch's cache and the fixture registry as docker.io mirror.
    pub fn osbuild(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_osbuild"));
        cmd.args(args)
            .arg("--cache")
            .arg(self.cache())
            .arg("--mirror")
            .arg(env().mirror_arg())
            .env("CI", "true")
            .env_remove("SOURCE_DATE_EPOCH");
        cmd.output().expect("run osbuild")
    }
    /// Names of the files in the output directory.
    pub fn outputs(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.out())
            .expect("out dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

/// `osbuild ARGS --cache CACHE` with nothing else added: for other registries and offline runs.
pub fn osbuild_in(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(args)
        .arg("--cache")
        .arg(cache)
        .env("CI", "true")
        .output()
        .expect("run osbuild")
}

/// The error line of a failed run; asserts the exit code and that there is exactly one line.
pub fn failure(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "exit code; stderr:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(lines.len(), 1, "one error line:\n{err}");
    lines[0].trim_start_matches("error: ").to_string()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Assert success and return stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "osbuild failed ({}):\n{}",
        o.status,
        stderr(o)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run a command and return its stdout, asserting success.
pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Unpack a gzip'd newc initrd with the real cpio into `dest`.
pub fn unpack_initrd(initrd: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("dest");
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zcat '{}' | cpio -idm --no-absolute-filenames --quiet",
            initrd.display()
        ))
        .current_dir(dest)
        .status()
        .expect("cpio");
    assert!(status.success(), "cpio -id failed");
}

/// sha256 of a file (hex).
pub fn sha256(path: &Path) -> String {
    let out = sh(Command::new("sha256sum").arg(path));
    out.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// `osbuild build -q --arch ARCH --name NAME --dir OUT ARGS... SPECS...` with the package cache
/// shared by the run's tests (so `@pkg:` packages are built once) and the fixture registry as
/// docker.io mirror; panics with osbuild's stderr on failure. Returns the outputs' path prefix.
pub fn build_shared(arch: &str, name: &str, specs: &[&Path], out: &Path, args: &[&str]) -> PathBuf {
    // The fixture registry first: starting it builds packages under the same lock.
    let mirror = env().mirror_arg();
    let (cache, _lock) = osbuild_testenv::packages::locked_cache_dir().expect("package cache");
    let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["build", "-q", "--arch", arch, "--name", name, "--dir"])
        .arg(out)
        .args(args)
        .args(specs)
        .arg("--cache")
        .arg(&cache)
        .arg("--mirror")
        .arg(mirror)
        .env("CI", "true")
        .output()
        .expect("run osbuild");
    assert!(o.status.success(), "{arch}: build failed:\n{}", stderr(&o));
    out.join(name)
}

/// Boot `image` with `osbuild run qemu` (detached) and wait for PONG through a published port;
/// returns the console log and the seconds it took. QEMU is stopped whatever happens.
pub fn boot_until_pong(image: &Path, arch: &str, state: &Path) -> (String, f64) {
    boot_until_pong_with(image, arch, state, &[])
}

/// [`boot_until_pong`] with more `osbuild run qemu` arguments (`--bios`).
pub fn boot_until_pong_with(
    image: &Path,
    arch: &str,
    state: &Path,
    extra: &[&str],
) -> (String, f64) {
    let port = portpicker();
    let started = std::time::Instant::now();
    let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args([
            "run",
            "qemu",
            "--accel",
            "tcg",
            "--mem",
            "1024",
            "--detached",
        ])
        .args([
            "--arch",
            arch,
            "--publish",
            &format!("{port}:6379"),
            "--state",
        ])
        .arg(state)
        .args(extra)
        .arg(image)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    struct Stop(PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            if let Ok(pid) = std::fs::read_to_string(&self.0) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
    let _stop = Stop(state.join("qemu.pid"));
    let log = state.join("console.log");
    let deadline = started + std::time::Duration::from_secs(420);
    loop {
        let console = std::fs::read_to_string(&log).unwrap_or_default();
        if console.contains("redis: started") {
            let pong = Command::new("redis-cli")
                .args(["-p", &port.to_string(), "PING"])
                .output()
                .unwrap();
            if String::from_utf8_lossy(&pong.stdout).trim() == "PONG" {
                return (console, started.elapsed().as_secs_f64());
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{arch}: no PONG within 420 s; console:\n{console}"
        );
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// A free TCP port on the loopback interface.
pub fn portpicker() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `osbuild build -q --offline --arch amd64 -f FORMAT ARGS... SPEC --cache CACHE --dir OUT`.
pub fn build_offline(cache: &Path, out: &Path, spec: &Path, format: &str, args: &[&str]) -> Output {
    std::fs::create_dir_all(out).expect("out dir");
    Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["build", "-q", "--offline", "--arch", "amd64", "-f", format])
        .args(args)
        .arg("--dir")
        .arg(out)
        .arg(spec)
        .arg("--cache")
        .arg(cache)
        .output()
        .expect("run osbuild")
}

/// Build `spec` as `format` again through a copy of the run's package cache (another cache,
/// the same inputs) and assert that `file` (a name in the output directory) comes out with
/// the same bytes as `first`.
pub fn assert_same_bytes_through_another_cache(
    scratch: &Path,
    spec: &Path,
    format: &str,
    file: &str,
    first: &Path,
) {
    let (cache, lock) = osbuild_testenv::packages::locked_cache_dir().expect("package cache");
    let other = scratch.join("other-cache");
    sh(Command::new("cp").arg("-a").arg(&cache).arg(&other));
    drop(lock);
    let again = scratch.join("again");
    let o = build_offline(&other, &again, spec, format, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        sha256(&again.join(file)),
        sha256(first),
        "two builds of {file} differ"
    );
}

/// Assert that `--size 8M` is refused for `format` with one line saying what the content
/// needs, exit code 2, and nothing left in the output directory.
pub fn assert_too_small_is_refused(scratch: &Path, spec: &Path, format: &str) {
    let (cache, _lock) = osbuild_testenv::packages::locked_cache_dir().expect("package cache");
    let small = scratch.join("small");
    let o = build_offline(&cache, &small, spec, format, &["--size", "8M"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.starts_with(&format!(
            "error: --size 8M is too small for {format}: the content needs at least "
        )),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(
        std::fs::read_dir(&small).expect("dir").count(),
        0,
        "nothing left behind"
    );
}

/// `examples/redis-os.yml`, the spec the format tests build.
pub fn redis_os() -> PathBuf {
    repo().join("examples/redis-os.yml")
}

/// `--size 300M` gives `format` (its disk `NAME{suffix}`) a 300 MiB image that
/// `check(image, scratch)` accepts, and `--size 8M` is refused
/// ([`assert_too_small_is_refused`]).
pub fn assert_size_is_honoured(format: &str, suffix: &str, check: impl Fn(&Path, &Path)) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let spec = redis_os();
    let base = build_shared(
        "amd64",
        "big",
        &[&spec],
        &out,
        &["-f", format, "--size", "300M"],
    );
    let image = PathBuf::from(format!("{}{suffix}", base.display()));
    assert_eq!(std::fs::metadata(&image).expect("image").len(), 300 << 20);
    check(&image, dir.path());
    assert_too_small_is_refused(dir.path(), &spec, format);
}

/// The manifest entry of `format` in the manifest of the build named `name` in `out`.
pub fn manifest_output(out: &Path, name: &str, format: &str) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{name}.json"))).expect("manifest"))
            .expect("manifest JSON");
    manifest["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["format"] == format)
        .unwrap_or_else(|| panic!("no {format} in {manifest:#}"))
        .clone()
}

/// The manifest entry of the only format a build named `name` wrote into `out`, after
/// checking its file's hash against `image`.
pub fn manifest_entry(out: &Path, name: &str, image: &Path) -> serde_json::Value {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join(format!("{name}.json"))).expect("manifest"))
            .expect("manifest JSON");
    let entry = manifest["outputs"][0].clone();
    assert_eq!(entry["files"][0]["sha256"], sha256(image));
    entry
}
