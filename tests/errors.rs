//! Bad input: one clear line naming what and where, a documented non-zero exit, and no output
//! file left behind.

mod support;

use std::process::Output;

use osbuild_testenv::fixtures::Pusher;
use osbuild_testenv::registry::Registry;
use support::{Scratch, env, failure, ok, osbuild_in, repo, stderr};

fn build(s: &Scratch, spec: &str) -> Output {
    let path = s.spec("bad.yml", spec);
    s.osbuild(&[
        "build",
        "--dir",
        s.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ])
}

#[test]
fn unknown_key_shows_line_and_column() {
    let s = Scratch::new();
    let o = build(
        &s,
        "kernel:\n  image: osbuild/kernel:6.1-debian\n  cmdlin: console=ttyS0\n",
    );
    let e = failure(&o, 3);
    assert!(e.ends_with("bad.yml:3:3: kernel.cmdlin: unknown field `cmdlin`, expected one of `image`, `cmdline`, `binary`, `tar`, `ucode`") || e.contains("bad.yml:3:3: kernel.cmdlin: unknown field `cmdlin`"), "{e}");
    assert!(s.outputs().is_empty());
}

#[test]
fn bad_mode_is_named() {
    let s = Scratch::new();
    let o = build(
        &s,
        "files:\n  - path: etc/x\n    contents: x\n    mode: \"0789\"\n",
    );
    let e = failure(&o, 3);
    assert!(
        e.contains("bad.yml:4:11: files[0].mode: mode \"0789\" is not an octal number"),
        "{e}"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn duplicate_service_name_is_named() {
    let s = Scratch::new();
    let o = build(
        &s,
        "services:\n  - name: web\n    image: osbuild/busybox:1\n  - name: web\n    image: osbuild/busybox:1\n",
    );
    let e = failure(&o, 3);
    assert!(
        e.contains("bad.yml:4:11: services[1].name: duplicate service name \"web\""),
        "{e}"
    );
}

#[test]
fn missing_image_is_a_404_naming_the_reference() {
    env();
    let s = Scratch::new();
    let o = build(&s, "init:\n  - osbuild/does-not-exist:1\n");
    let e = failure(&o, 4);
    assert!(
        e.starts_with("docker.io/osbuild/does-not-exist:1: not found in registry 127.0.0.1:"),
        "{e}"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn registry_down_is_reported_after_retries() {
    let s = Scratch::new();
    let mut registry = Registry::start().unwrap();
    let addr = registry.addr();
    registry.stop();
    let spec = s.spec(
        "down.yml",
        &format!("init:\n  - {addr}/osbuild/busybox:1\n"),
    );
    let out = s.out();
    let o = osbuild_in(
        &s.cache(),
        &[
            "build",
            "--dir",
            out.to_str().unwrap(),
            spec.to_str().unwrap(),
        ],
    );
    let e = failure(&o, 4);
    assert!(
        e.contains(&format!("registry {addr} failed after 4 attempts")),
        "{e}"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn missing_arch_lists_what_the_image_has() {
    env();
    let s = Scratch::new();
    let path = s.spec("m.yml", "init:\n  - osbuild/multiarch:1\n");
    let o = s.osbuild(&[
        "build",
        "--arch",
        "s390x",
        "--dir",
        s.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let e = failure(&o, 4);
    assert_eq!(
        e,
        "docker.io/osbuild/multiarch:1: no image for linux/s390x (the image has: linux/amd64, linux/arm64)"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn unwritable_output_directory_fails_before_pulling() {
    let s = Scratch::new();
    let hello = repo().join("examples/hello.yml");
    // A directory that cannot be made: its parent is a file.
    let file = s.spec("a-file", "");
    let dir = file.join("out");
    let o = s.osbuild(&[
        "build",
        "--dir",
        dir.to_str().unwrap(),
        hello.to_str().unwrap(),
    ]);
    let e = failure(&o, 5);
    assert!(e.starts_with(&format!("{}: ", dir.display())), "{e}");
    assert!(
        !s.cache().join("blobs").exists()
            || std::fs::read_dir(s.cache().join("blobs/sha256"))
                .unwrap()
                .count()
                == 0
    );
}

#[test]
fn spec_without_kernel_cannot_make_kernel_initrd() {
    env();
    let s = Scratch::new();
    let o = build(&s, "init:\n  - osbuild/busybox-init:1\n");
    let e = failure(&o, 3);
    assert!(e.contains("needs a kernel"), "{e}");
    assert!(s.outputs().is_empty());
}

/// A registry holding one image, for tampering tests that must not disturb the shared one.
fn own_registry() -> (Registry, String) {
    let registry = Registry::start().unwrap();
    let pusher = Pusher::new(&registry.addr()).unwrap();
    let r = pusher.push_init("osbuild/tamper:1").unwrap();
    (registry, r.to_string())
}

/// `osbuild build -f tar` of a spec whose init is `image`.
fn build_tar_of(s: &Scratch, image: &str) -> Output {
    let spec = s.spec("t.yml", &format!("init:\n  - {image}\n"));
    s.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        s.out().to_str().unwrap(),
        spec.to_str().unwrap(),
    ])
}

fn biggest_file(dir: &std::path::Path) -> std::path::PathBuf {
    let mut best = (0, dir.to_path_buf());
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let md = e.metadata().unwrap();
            if md.is_dir() {
                stack.push(e.path());
            } else if md.len() > best.0 {
                best = (md.len(), e.path());
            }
        }
    }
    best.1
}

fn flip_byte(path: &std::path::Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0xff;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn tampered_cache_blob_is_fetched_again() {
    let (_registry, image) = own_registry();
    let s = Scratch::new();
    let spec = s.spec("t.yml", &format!("init:\n  - {image}\n"));
    let out = s.out();
    let args = [
        "build",
        "-f",
        "tar",
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ];
    ok(&s.osbuild(&args));
    let first = std::fs::read(s.out().join("t.tar")).unwrap();
    // Damage the largest cached blob (a layer), then build again: the build heals the cache.
    let blob = biggest_file(&s.cache().join("blobs/sha256"));
    flip_byte(&blob, 1000);
    ok(&s.osbuild(&args));
    assert_eq!(
        std::fs::read(s.out().join("t.tar")).unwrap(),
        first,
        "same output after healing"
    );
    let name = blob.file_name().unwrap().to_string_lossy().into_owned();
    let healed = std::process::Command::new("sha256sum")
        .arg(&blob)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&healed.stdout).starts_with(&name),
        "the blob is whole again"
    );
}

#[test]
fn tampered_registry_blob_fails_the_build() {
    let (registry, image) = own_registry();
    let blob = biggest_file(&registry.storage_dir());
    flip_byte(&blob, 2000);
    let s = Scratch::new();
    let o = build_tar_of(&s, &image);
    let e = failure(&o, 4);
    assert!(
        e.contains("has the wrong content") && e.contains(&image),
        "{e}"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn a_blob_the_registry_lost_is_named_by_its_digest() {
    let (registry, image) = own_registry();
    let blob = biggest_file(&registry.storage_dir());
    std::fs::remove_file(&blob).unwrap();
    // The registry keeps blobs at .../sha256/XX/HEX/data.
    let hex = blob
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    let s = Scratch::new();
    let o = build_tar_of(&s, &image);
    let e = failure(&o, 4);
    assert!(
        e.contains(&image) && e.contains(&format!("layer sha256:{hex} not found")),
        "{e}"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn supervision_keys_are_checked_where_written() {
    let s = Scratch::new();
    for (spec, want) in [
        (
            "onboot:\n  - name: a\n    image: x\n    timeout: soon\n",
            "bad.yml:4:14: onboot[0].timeout: timeout \"soon\" is not a duration: give whole seconds (30) or numbers with units ms, s, m, h (500ms, 30s, 2m, 1h, 1m30s)",
        ),
        (
            "onshutdown:\n  - name: a\n    image: x\n    timeout: 0s\n",
            "bad.yml:4:14: onshutdown[0].timeout: timeout \"0s\" must be longer than zero",
        ),
        (
            "services:\n  - name: a\n    image: x\n    timeout: 5s\n",
            "bad.yml:4:14: services[0].timeout: `timeout` is allowed only in `onboot` and `onshutdown`, not in `services`",
        ),
        (
            "onboot:\n  - name: a\n    image: x\n    restart: always\n",
            "bad.yml:4:14: onboot[0].restart: `restart` is allowed only in `services`, not in `onboot`",
        ),
        (
            "services:\n  - name: a\n    image: x\n    restart: sometimes\n",
            "bad.yml:4:14: services[0].restart: restart \"sometimes\" is not one of always, on-failure, no",
        ),
        (
            "onboot:\n  - name: a\n    image: x\n    dependsOn: [b]\n",
            "bad.yml:4:17: onboot[0].dependsOn: `dependsOn` is allowed only in `services`, not in `onboot`",
        ),
        (
            "services:\n  - name: a\n    image: x\n    dependsOn: [ghost]\n",
            "bad.yml:4:17: services[0].dependsOn[0]: \"ghost\" is not a service of this spec",
        ),
        (
            "services:\n  - name: a\n    image: x\n    dependsOn: [a]\n",
            "bad.yml:4:17: services[0].dependsOn[0]: service \"a\" cannot depend on itself",
        ),
        (
            "services:\n  - name: a\n    image: x\n    dependsOn: [b]\n  - name: b\n    image: x\n    dependsOn: [a]\n",
            "bad.yml:4:17: services[0].dependsOn[0]: dependency cycle: a -> b -> a",
        ),
    ] {
        let e = failure(&build(&s, spec), 3);
        assert!(e.ends_with(want), "{spec}\n{e}");
    }
    assert!(s.outputs().is_empty());
}

#[test]
fn supervision_keys_in_an_image_label_are_refused() {
    use osbuild::image::Arch;
    use osbuild::image::layout::ImageSpec;
    let registry = Registry::start().unwrap();
    let pusher = Pusher::new(&registry.addr()).unwrap();
    let tree = osbuild_testenv::trees::arch_marker("amd64").unwrap();
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(
        "org.mobyproject.config".to_string(),
        r#"{"readonly":true,"restart":"no"}"#.to_string(),
    );
    let image = pusher
        .push(
            "labelled/restart:1",
            &ImageSpec {
                layers: vec![&tree],
                cmd: vec!["/x".into()],
                labels,
                ..ImageSpec::default()
            },
            Arch::Amd64,
        )
        .unwrap();
    let s = Scratch::new();
    let spec = s.spec(
        "l.yml",
        &format!("services:\n  - name: app\n    image: {image}\n"),
    );
    let o = osbuild_in(
        &s.cache(),
        &[
            "build",
            "-f",
            "tar",
            "--dir",
            s.out().to_str().unwrap(),
            spec.to_str().unwrap(),
        ],
    );
    let e = failure(&o, 3);
    assert!(
        e.contains("l.yml:2:11: services[0]: ")
            && e.contains(
                "the org.mobyproject.config label may not set `restart` (supervision keys are set in the spec only)"
            ),
        "{e}"
    );
    assert!(s.outputs().is_empty());
}

/// A spec that builds with the fixtures: the kernel package and the busybox init.
const BOOTABLE: &str = "kernel:\n  image: osbuild/kernel:6.1-debian\n  cmdline: console=ttyS0\ninit:\n  - osbuild/busybox-init:1\n";

#[test]
fn unknown_format_lists_the_formats() {
    let s = Scratch::new();
    let path = s.spec("ok.yml", BOOTABLE);
    let o = s.osbuild(&[
        "build",
        "-f",
        "vhdx-x",
        "--dir",
        s.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let e = failure(&o, 2);
    assert!(
        e.starts_with("--format: unknown output format \"vhdx-x\": use one of kernel+initrd, "),
        "{e}"
    );
    for name in [
        "tar",
        "kernel+squashfs",
        "raw-efi",
        "raw-bios",
        "iso-efi",
        "iso-bios",
    ] {
        assert!(e.contains(name), "{name} missing: {e}");
    }
    assert!(s.outputs().is_empty());
}

#[test]
fn a_format_the_architecture_lacks_is_refused_before_pulling() {
    let s = Scratch::new();
    // The image does not exist: the format is refused before anything is asked of a registry.
    let path = s.spec("ok.yml", "kernel:\n  image: osbuild/no-such-kernel:1\n");
    let o = s.osbuild(&[
        "build",
        "--arch",
        "s390x",
        "-f",
        "raw-efi",
        "--dir",
        s.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let e = failure(&o, 2);
    assert_eq!(
        e,
        "--format raw-efi: the raw-efi format is not made for s390x: it exists for amd64, arm64"
    );
    assert!(s.outputs().is_empty());
}

#[test]
fn spec_outputs_are_written_and_checked_where_written() {
    let s = Scratch::new();
    let good = s.spec(
        "outs.yml",
        &format!("{BOOTABLE}outputs:\n  - format: tar\n  - format: kernel+initrd\n"),
    );
    ok(&s.osbuild(&[
        "build",
        "--dir",
        s.out().to_str().unwrap(),
        good.to_str().unwrap(),
    ]));
    assert_eq!(
        s.outputs(),
        [
            "outs-cmdline",
            "outs-initrd.img",
            "outs-kernel",
            "outs.json",
            "outs.tar"
        ]
    );
    // --format overrides the list.
    let only = Scratch::new();
    ok(&only.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        only.out().to_str().unwrap(),
        good.to_str().unwrap(),
    ]));
    assert_eq!(only.outputs(), ["outs.json", "outs.tar"]);
    let bad = Scratch::new();
    let path = bad.spec(
        "bad.yml",
        &format!("{BOOTABLE}outputs:\n  - format: kernel+initrd\n  - format: gcp-img\n"),
    );
    let o = bad.osbuild(&[
        "build",
        "--dir",
        bad.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let e = failure(&o, 3);
    assert!(
        e.contains(
            "bad.yml:8:13: outputs[1].format: unknown output format \"gcp-img\": use one of "
        ),
        "{e}"
    );
    assert!(bad.outputs().is_empty());
    let arch = Scratch::new();
    let path = arch.spec(
        "arch.yml",
        &format!("{BOOTABLE}outputs:\n  - format: raw-efi\n"),
    );
    let o = arch.osbuild(&[
        "build",
        "--arch",
        "s390x",
        "--dir",
        arch.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let e = failure(&o, 3);
    assert!(
        e.contains("arch.yml:7:13: outputs[0].format: the raw-efi format is not made for s390x"),
        "{e}"
    );
}

#[test]
fn a_kernel_without_an_efi_stub_cannot_make_an_efi_disk() {
    // busybox is an ELF program, not an EFI-stub kernel; the stub comes from the default
    // boot.efi image in the fixture registry.
    let s = Scratch::new();
    let path = s.spec(
        "elf.yml",
        "kernel:\n  image: osbuild/busybox:1\n  binary: bin/busybox\n  tar: none\ninit:\n  - osbuild/busybox-init:1\n",
    );
    let o = s.osbuild(&[
        "build",
        "-f",
        "raw-efi",
        "--dir",
        s.out().to_str().unwrap(),
        path.to_str().unwrap(),
    ]);
    let e = failure(&o, 3);
    assert!(e.starts_with("boot/kernel: "), "{e}");
    assert!(e.contains("ELF"), "{e}");
    assert!(s.outputs().is_empty());
}

/// Nothing was pulled into `s`'s cache.
fn nothing_pulled(s: &Scratch) -> bool {
    std::fs::read_dir(s.cache().join("blobs/sha256")).map_or(true, |d| d.count() == 0)
}

#[test]
fn exit_codes_follow_the_kind_of_error() {
    let s = Scratch::new();
    let hello = repo().join("examples/hello.yml");
    let hello = hello.to_str().unwrap();
    let file = s.out().join("one-file");
    let file = file.to_str().unwrap();
    // Bad command lines exit 2, before anything is pulled.
    for (args, says) in [
        (
            vec!["build", "-o", file, "-f", "kernel+initrd", hello],
            "kernel+initrd is 3 files and cannot go to one file",
        ),
        (
            vec!["build", "-o", file, "-f", "tar", "-f", "raw-efi", hello],
            "-o names one output",
        ),
        (
            vec!["build", "-o", "-", "-f", "raw-efi", hello],
            "raw-efi cannot go to standard output",
        ),
        (vec!["build", "--arch", "vax", hello], "--arch: "),
        (
            vec!["build", "--size", "lots", "-f", "raw-efi", hello],
            "--size: ",
        ),
        (
            vec!["build", "--mirror", "docker.io", hello],
            "--mirror \"docker.io\": expected REGISTRY=URL",
        ),
    ] {
        let e = failure(&osbuild_in(&s.cache(), &args), 2);
        assert!(e.starts_with(says), "{args:?}: {e}");
        assert!(nothing_pulled(&s), "{args:?} pulled");
    }
    // A negative SOURCE_DATE_EPOCH is a bad setting, said as such, not a failure per entry.
    for epoch in ["-1", "soon"] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .args(["build", "--cache"])
            .arg(s.cache())
            .args(["--dir", s.out().to_str().unwrap(), hello])
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .expect("run osbuild");
        let e = failure(&o, 2);
        assert_eq!(
            e,
            format!("SOURCE_DATE_EPOCH=\"{epoch}\" is not a non-negative number of seconds")
        );
        assert!(nothing_pulled(&s), "SOURCE_DATE_EPOCH={epoch} pulled");
    }
    let o = osbuild_in(
        &s.cache(),
        &["build", "-o", file, "-f", "kernel+initrd", hello],
    );
    assert!(!std::path::Path::new(file).exists(), "{}", stderr(&o));
    // An image that is not there exits 4; one that cannot be named exits 2.
    let e = failure(
        &osbuild_in(&s.cache(), &["cache", "rm", "osbuild/not-there:1"]),
        4,
    );
    assert!(
        e.ends_with("osbuild/not-there:1 is not in the cache"),
        "{e}"
    );
    let e = failure(
        &osbuild_in(&s.cache(), &["cache", "rm", "Not A Reference"]),
        2,
    );
    assert!(e.contains("Not A Reference"), "{e}");
}

/// `osbuild build` run with `dir` on a tmpfs of `size` bytes in a private mount namespace;
/// also returns what the directory held afterwards.
fn build_on_small_tmpfs(s: &Scratch, size: u64, args: &[&str]) -> (Output, String) {
    let dir = s.out().join("small");
    std::fs::create_dir_all(&dir).unwrap();
    let script = "mount -t tmpfs -o size=$1 tmpfs \"$2\" || exit 99; shift; dir=$1; shift; \
                  \"$@\"; rc=$?; ls -A \"$dir\" >&2; echo \"held: $(ls -A \"$dir\" | tr '\\n' ' ')\" >&2; exit $rc";
    let out = std::process::Command::new("unshare")
        .args(["-m", "sh", "-c", script, "sh"])
        .arg(size.to_string())
        .arg(&dir)
        .arg(env!("CARGO_BIN_EXE_osbuild"))
        .args(args)
        .arg("--dir")
        .arg(&dir)
        .arg("--cache")
        .arg(s.cache())
        .arg("--mirror")
        .arg(env().mirror_arg())
        .env("CI", "true")
        .output()
        .expect("run unshare");
    assert_ne!(out.status.code(), Some(99), "mount: {}", stderr(&out));
    let held = stderr(&out)
        .lines()
        .find_map(|l| l.strip_prefix("held: "))
        .unwrap_or("?")
        .trim()
        .to_string();
    (out, held)
}

#[test]
fn a_full_disk_is_said_naming_the_output_file() {
    if !osbuild_test_skip::is_root() {
        return osbuild_test_skip::skip("needs root to mount a small tmpfs");
    }
    let s = Scratch::new();
    let hello = repo().join("examples/hello.yml");
    let hello = hello.to_str().unwrap();
    // Fill the cache, and learn how big the kernel is.
    ok(&s.osbuild(&["build", "--dir", s.out().to_str().unwrap(), hello]));
    let kernel = std::fs::metadata(s.out().join("hello-kernel"))
        .unwrap()
        .len();
    // Room for the kernel, not for the initrd; then room for nothing.
    for (args, room, file) in [
        (
            vec!["build", "--compress", "gzip", hello],
            kernel + (64 << 10),
            "hello-initrd.img",
        ),
        (
            vec!["build", "--compress", "zstd", hello],
            kernel + (64 << 10),
            "hello-initrd.img",
        ),
        (
            vec!["build", "--compress", "none", hello],
            kernel + (64 << 10),
            "hello-initrd.img",
        ),
        (vec!["build", "-f", "tar", hello], 64 << 10, "hello.tar"),
        (
            vec!["build", "-f", "raw-efi", hello],
            64 << 10,
            "hello-efi.img",
        ),
    ] {
        let (o, held) = build_on_small_tmpfs(&s, room, &args);
        let e = failure(&o, 5);
        assert!(e.contains(file), "{args:?}: the message names {file}: {e}");
        assert!(
            e.ends_with(": No space left on device (os error 28)"),
            "{args:?}: {e}"
        );
        assert_eq!(e.matches("No space left").count(), 1, "said once: {e}");
        assert_eq!(held, "", "{args:?} left files behind");
    }
}
