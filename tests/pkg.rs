//! Packages: `osbuild pkg build|show-tag|push` and `@pkg:` references resolved by
//! `osbuild build` on an empty cache.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use osbuild_testenv::qemu::boot;
use osbuild_testenv::registry::Registry;
use support::{Scratch, env, ok, osbuild_in, stderr};

const INIT: &str = "#!/bin/sh\nmount -t proc proc /proc\necho \"osbuild-pkg: init from a package on $(uname -m)\"\npoweroff -f\n";

/// A package folder `pkg/hello` next to the spec, holding an init script.
fn package(s: &Scratch) -> std::path::PathBuf {
    let dir = s.dir.path().join("pkg/hello");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("init.sh"), INIT).unwrap();
    std::fs::write(
        dir.join("build.yml"),
        "image: hello-init\ntag: \"1.0-{{.Hash}}\"\ncmd: [/init]\nconfig:\n  capabilities: [CAP_SYS_ADMIN]\nbuilder:\n  files:\n    - source: init.sh\n      path: /init\n      mode: \"0755\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_spec_with_a_package_builds_on_an_empty_cache_and_boots() {
    env();
    let s = Scratch::new();
    package(&s);
    let spec = s.spec(
        "pkg.yml",
        "kernel:\n  image: osbuild/kernel:6.1-debian\n  cmdline: console=ttyS0\ninit:\n  - osbuild/busybox:1\n  - \"@pkg:./pkg/hello\"\n",
    );
    let out = s.out();
    ok(&s.osbuild(&[
        "build",
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    let cmdline = std::fs::read_to_string(out.join("pkg-cmdline")).unwrap();
    let log = boot(
        "amd64",
        &out.join("pkg-kernel"),
        &out.join("pkg-initrd.img"),
        &cmdline,
        Duration::from_secs(180),
    )
    .unwrap();
    assert!(
        log.console
            .contains("osbuild-pkg: init from a package on x86_64"),
        "{}",
        log.console
    );
    // The dry run shows the package pinned by its index digest.
    let dry = ok(&s.osbuild(&[
        "build",
        "--dry-run",
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    assert!(dry.contains("docker.io/osbuild/hello-init:1.0-"), "{dry}");
    assert!(dry.contains("@sha256:"), "{dry}");
}

/// The platforms `osbuild inspect` lists for `reference` in `cache` (which has `arch`).
fn platforms(cache: &std::path::Path, reference: &str, arch: &str) -> String {
    let text = ok(&osbuild_in(
        cache,
        &["inspect", "--offline", "--arch", arch, reference],
    ));
    text.lines()
        .find_map(|l| l.strip_prefix("Platforms:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[test]
fn arch_builds_a_package_for_that_architecture_only() {
    let s = Scratch::new();
    let dir = package(&s);
    let tag = ok(&Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["pkg", "show-tag", dir.to_str().unwrap()])
        .output()
        .unwrap());
    let tag = tag.trim();
    let spec = s.spec("arch.yml", "init:\n  - \"@pkg:./pkg/hello\"\n");
    let build = |arch: &str| {
        ok(&osbuild_in(
            &s.cache(),
            &[
                "build",
                "-q",
                "-f",
                "tar",
                "--arch",
                arch,
                "--dir",
                s.out().to_str().unwrap(),
                spec.to_str().unwrap(),
            ],
        ))
    };
    build("arm64");
    assert_eq!(platforms(&s.cache(), tag, "arm64"), "linux/arm64");
    // Another architecture later joins the same index, in build.yml's order.
    build("amd64");
    assert_eq!(
        platforms(&s.cache(), tag, "amd64"),
        "linux/amd64, linux/arm64"
    );
    build("s390x");
    let grown = ok(&osbuild_in(
        &s.cache(),
        &["pkg", "build", dir.to_str().unwrap()],
    ));
    // The index grown one architecture at a time is the one `pkg build` makes at once.
    let other = Scratch::new();
    let whole = ok(&osbuild_in(
        &other.cache(),
        &["pkg", "build", dir.to_str().unwrap()],
    ));
    assert_eq!(grown, whole);
}

#[test]
fn tags_follow_the_sources_and_builds_are_reproducible() {
    let s = Scratch::new();
    let dir = package(&s);
    let dir_arg = dir.to_str().unwrap();
    let tag = ok(&Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["pkg", "show-tag", dir_arg])
        .output()
        .unwrap());
    assert!(
        tag.starts_with("docker.io/osbuild/hello-init:1.0-"),
        "{tag}"
    );
    let a = ok(&osbuild_in(&s.cache(), &["pkg", "build", dir_arg]));
    let other = Scratch::new();
    let b = ok(&osbuild_in(&other.cache(), &["pkg", "build", dir_arg]));
    assert_eq!(a, b, "same sources, same digest in two caches");
    assert!(
        a.trim().starts_with(tag.trim()) && a.contains("@sha256:"),
        "{a}"
    );
    std::fs::write(dir.join("init.sh"), format!("{INIT}# changed\n")).unwrap();
    let changed = ok(&Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["pkg", "show-tag", dir_arg])
        .output()
        .unwrap());
    assert_ne!(changed, tag, "a changed source changes the tag");
}

#[test]
fn push_sends_every_architecture() {
    let registry = Registry::start().unwrap();
    let s = Scratch::new();
    let dir = package(&s);
    let pushed = ok(&osbuild_in(
        &s.cache(),
        &[
            "pkg",
            "push",
            dir.to_str().unwrap(),
            "--registry-host",
            &registry.addr(),
        ],
    ));
    assert!(
        pushed.starts_with(&format!("{}/osbuild/hello-init:1.0-", registry.addr())),
        "{pushed}"
    );
    // A second push finds every blob in the registry already and sends only the manifests.
    let again = ok(&osbuild_in(
        &s.cache(),
        &[
            "pkg",
            "push",
            dir.to_str().unwrap(),
            "--registry-host",
            &registry.addr(),
        ],
    ));
    assert_eq!(again, pushed);
    let fresh = Scratch::new();
    let tag_ref = pushed.trim().split('@').next().unwrap().to_string();
    let o = osbuild_in(&fresh.cache(), &["inspect", "--json", &tag_ref]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(
        v["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64", "linux/s390x"])
    );
    assert!(v["linuxkit"]["capabilities"][0] == "CAP_SYS_ADMIN", "{v}");
}

#[test]
fn bad_packages_are_reported_with_their_place() {
    let s = Scratch::new();
    let spec = s.spec("p.yml", "init:\n  - \"@pkg:./nowhere\"\n");
    let o = s.osbuild(&[
        "build",
        "--dir",
        s.out().to_str().unwrap(),
        spec.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("p.yml:2:5: init[0]: no package at "),
        "{}",
        stderr(&o)
    );
    let dir = s.dir.path().join("bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("build.yml"),
        "image: x\nbuilder:\n  files:\n    - source: missing.sh\n      path: /x\n",
    )
    .unwrap();
    let o = osbuild_in(&s.cache(), &["pkg", "build", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("build.yml:4:15: builder.files[0].source: "),
        "{}",
        stderr(&o)
    );
}

#[test]
fn redis_package_builds_for_three_architectures() {
    let s = Scratch::new();
    let redis = support::repo().join("pkg/redis");
    let built = ok(&osbuild_in(
        &s.cache(),
        &["pkg", "build", redis.to_str().unwrap()],
    ));
    assert!(built.starts_with("docker.io/osbuild/redis:7-"), "{built}");
    let spec = s.spec(
        "r.yml",
        &format!(
            "services:\n  - name: redis\n    image: \"@pkg:{}\"\n",
            redis.display()
        ),
    );
    let out = s.out();
    for (arch, machine) in [
        ("amd64", "x86-64"),
        ("arm64", "ARM aarch64"),
        ("s390x", "IBM S/390"),
    ] {
        let o = osbuild_in(
            &s.cache(),
            &[
                "build",
                "-f",
                "tar",
                "--offline",
                "--arch",
                arch,
                "--name",
                arch,
                "--dir",
                out.to_str().unwrap(),
                spec.to_str().unwrap(),
            ],
        );
        ok(&o);
        let bin = s.dir.path().join(format!("redis-{arch}"));
        let body = Command::new("tar")
            .arg("-xOf")
            .arg(out.join(format!("{arch}.tar")))
            .arg("containers/services/redis/rootfs/usr/bin/redis-check-rdb")
            .output()
            .unwrap();
        assert!(
            body.status.success() && body.stdout.len() > 100_000,
            "{arch}: redis binary missing"
        );
        std::fs::write(&bin, &body.stdout).unwrap();
        let kind = ok(&Command::new("file").arg("-b").arg(&bin).output().unwrap());
        assert!(
            kind.contains("ELF 64-bit") && kind.contains(machine),
            "{arch}: {kind}"
        );
        let listing = ok(&Command::new("tar")
            .arg("-tf")
            .arg(out.join(format!("{arch}.tar")))
            .output()
            .unwrap());
        assert!(
            !listing.contains("usr/share/perl"),
            "{arch}: only the kept paths"
        );
        assert!(
            listing.contains("containers/services/redis/rootfs/usr/bin/redis-server"),
            "{arch}"
        );
    }
    // The label carries the package's config into config.json.
    let config = ok(&Command::new("tar")
        .arg("-xOf")
        .arg(out.join("amd64.tar"))
        .arg("containers/services/redis/config.json")
        .output()
        .unwrap());
    assert!(
        config.contains("CAP_NET_BIND_SERVICE") && config.contains("/usr/bin/redis-server"),
        "{config}"
    );
}

#[test]
fn kernel_package_holds_each_architectures_kernel_and_only_the_listed_modules() {
    // `osbuild/kernel:6.1-debian` in the fixture registry is `pkg/kernel`, built once per run.
    env();
    let s = Scratch::new();
    let o = s.osbuild(&["inspect", "--json", "osbuild/kernel:6.1-debian"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(
        v["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64", "linux/s390x"])
    );
    let spec = s.spec(
        "k.yml",
        "kernel:\n  image: osbuild/kernel:6.1-debian\n  cmdline: console=ttyS0\ninit:\n  - osbuild/busybox-init:1\n",
    );
    let out = s.out();
    for (arch, kernel_kind, module_machine) in [
        ("amd64", "Linux kernel x86 boot executable", "x86-64"),
        ("arm64", "Linux kernel ARM64 boot executable", "ARM aarch64"),
        ("s390x", "", "IBM S/390"),
    ] {
        ok(&s.osbuild(&[
            "build",
            "--arch",
            arch,
            "--compress",
            "none",
            "--name",
            arch,
            "--dir",
            out.to_str().unwrap(),
            spec.to_str().unwrap(),
        ]));
        let kernel = out.join(format!("{arch}-kernel"));
        let kind = ok(&Command::new("file")
            .args(["-bz"])
            .arg(&kernel)
            .output()
            .unwrap());
        assert!(kind.contains(kernel_kind), "{arch} kernel: {kind}");
        let initrd = out.join(format!("{arch}-initrd.img"));
        let listing = ok(&Command::new("sh")
            .arg("-c")
            .arg("cpio -it --quiet < \"$0\"")
            .arg(&initrd)
            .output()
            .unwrap());
        let modules: Vec<&str> = listing
            .lines()
            .filter(|l| l.starts_with("lib/modules/") && l.ends_with(".ko"))
            .collect();
        let has = |name: &str| modules.iter().any(|m| m.ends_with(&format!("/{name}.ko")));
        assert!(has("virtio_net") && has("isofs"), "{arch}: {modules:?}");
        assert!(
            !has("e1000") && !has("btrfs"),
            "{arch}: unlisted modules shipped"
        );
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("lib/modules/") && l.ends_with("/modules.dep")),
            "{arch}: no modules.dep"
        );
        let net = modules
            .iter()
            .find(|m| m.ends_with("/virtio_net.ko"))
            .unwrap();
        let body = Command::new("sh")
            .arg("-c")
            .arg("cpio -i --quiet --to-stdout \"$1\" < \"$0\"")
            .arg(&initrd)
            .arg(net)
            .output()
            .unwrap();
        let module = s.dir.path().join(format!("virtio_net-{arch}.ko"));
        std::fs::write(&module, &body.stdout).unwrap();
        let kind = ok(&Command::new("file")
            .arg("-b")
            .arg(&module)
            .output()
            .unwrap());
        assert!(
            kind.contains("ELF 64-bit")
                && kind.contains("relocatable")
                && kind.contains(module_machine),
            "{arch} module: {kind}"
        );
    }
}

/// Everything under `cache` that is a file, relative to it.
fn cache_files(cache: &std::path::Path) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(cache, cache, &mut out);
    out.sort();
    out
}

#[test]
fn builder_failures_name_the_cause_and_leave_the_cache_clean() {
    let s = Scratch::new();
    let write = |name: &str, text: &str| {
        let dir = s.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("build.yml"), text).unwrap();
        dir.display().to_string()
    };
    let missing_deb = write(
        "nodeb",
        "image: x\narches: [arm64]\nbuilder:\n  debian:\n    include: [no-such-package-osbuild]\n",
    );
    let o = osbuild_in(&s.cache(), &["pkg", "build", &missing_deb]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains(
            "nodeb/build.yml: debian builder for arm64: mmdebstrap: Unable to locate package no-such-package-osbuild"
        ),
        "{}",
        stderr(&o)
    );
    let missing_module = write(
        "nomod",
        "image: k\narches: [amd64]\nbuilder:\n  kernel:\n    modules: [virtio_net, no_such_module]\n",
    );
    let o = osbuild_in(&s.cache(), &["pkg", "build", &missing_module]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("nomod/build.yml:5:27: builder.kernel.modules[1]: no module \"no_such_module\" in linux-image-amd64 (6.1."),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    // Nothing was tagged and nothing half-written is left behind.
    let files = cache_files(&s.cache());
    assert!(files.iter().all(|f| !f.starts_with("tmp/")), "{files:?}");
    let index = std::fs::read_to_string(s.cache().join("index.json")).unwrap_or_default();
    assert!(
        !index.contains("osbuild/k:") && !index.contains("osbuild/x:"),
        "{index}"
    );
    let no_crate = write(
        "nocrate",
        "image: c\narches: [amd64]\nbuilder:\n  cargo:\n    binaries:\n      - name: c\n        path: /c\n",
    );
    let o = osbuild_in(&s.cache(), &["pkg", "build", &no_crate]);
    assert!(
        stderr(&o).contains("nocrate/build.yml: cargo builder: no Cargo.toml in "),
        "{}",
        stderr(&o)
    );
    // A missing host tool is named with the package that provides it: here the cross linker
    // (only cargo itself is left on PATH).
    let cargo_dir = std::path::Path::new(env!("CARGO"))
        .parent()
        .unwrap()
        .to_owned();
    let rustup_dir = std::env::var_os("HOME")
        .map(|h| std::path::Path::new(&h).join(".cargo/bin"))
        .unwrap_or_default();
    let metadata = support::repo().join("pkg/metadata");
    let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["pkg", "build", metadata.to_str().unwrap(), "--cache"])
        .arg(s.cache())
        .env(
            "PATH",
            std::env::join_paths([rustup_dir, cargo_dir]).unwrap(),
        )
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains(
            "aarch64-linux-gnu-gcc is not installed: apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
        ),
        "{}",
        stderr(&o)
    );
    let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args(["pkg", "build", &missing_deb, "--cache"])
        .arg(s.cache())
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(
        stderr(&o).contains("mmdebstrap is not installed: apt-get install mmdebstrap"),
        "{}",
        stderr(&o)
    );
}

/// An init that starts pkg/getty's script the way a service would run it, with the host's /dev.
const GETTY_INIT: &str = "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs dev /dev\necho osbuild-getty: starting\nexec /usr/bin/rungetty.sh\n";

#[test]
fn getty_package_gives_a_shell_on_the_console() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    env();
    let s = Scratch::new();
    let getty = format!("@pkg:{}", support::repo().join("pkg/getty").display());
    let spec = s.init_spec("getty", &[&getty], GETTY_INIT);
    let image = s.build_for("amd64", "getty", &spec);
    let mut qemu = Command::new(env!("CARGO_BIN_EXE_osbuild"))
        .args([
            "run",
            "qemu",
            "--accel",
            "tcg",
            "--mem",
            "512",
            "--no-network",
        ])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    let stdout = qemu.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut stdin = qemu.stdin.take().unwrap();
    let mut console = String::new();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut answered = false;
    // Type a command until the shell answers with what only a shell computes.
    while Instant::now() < deadline && !answered {
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            answered |= line.trim() == "osbuild-42";
            console.push_str(&line);
            console.push('\n');
        }
        if console.contains("osbuild-getty: starting") && !answered {
            let _ = stdin.write_all(b"echo osbuild-$((6*7))\n");
        }
    }
    let _ = stdin.write_all(b"poweroff -f\n");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if qemu.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    assert!(answered, "no shell answered on the console:\n{console}");
}

#[test]
fn cargo_package_builds_static_executables_for_three_architectures() {
    let s = Scratch::new();
    let metadata = support::repo().join("pkg/metadata");
    let first = ok(&osbuild_in(
        &s.cache(),
        &["pkg", "build", metadata.to_str().unwrap()],
    ));
    let again = ok(&osbuild_in(
        &Scratch::new().cache(),
        &["pkg", "build", metadata.to_str().unwrap()],
    ));
    assert_eq!(first, again, "same sources, same digest");
    let spec = s.spec(
        "m.yml",
        &format!(
            "onboot:\n  - name: metadata\n    image: \"@pkg:{}\"\n",
            metadata.display()
        ),
    );
    let out = s.out();
    for (arch, machine) in [
        ("amd64", "x86-64"),
        ("arm64", "ARM aarch64"),
        ("s390x", "IBM S/390"),
    ] {
        ok(&osbuild_in(
            &s.cache(),
            &[
                "build",
                "-f",
                "tar",
                "--offline",
                "--arch",
                arch,
                "--name",
                arch,
                "--dir",
                out.to_str().unwrap(),
                spec.to_str().unwrap(),
            ],
        ));
        let body = Command::new("tar")
            .arg("-xOf")
            .arg(out.join(format!("{arch}.tar")))
            .arg("containers/onboot/000-metadata/rootfs/usr/bin/metadata")
            .output()
            .unwrap();
        assert!(body.status.success(), "{arch}: metadata binary missing");
        let bin = s.dir.path().join(format!("metadata-{arch}"));
        std::fs::write(&bin, &body.stdout).unwrap();
        let kind = ok(&Command::new("file").arg("-b").arg(&bin).output().unwrap());
        assert!(
            kind.contains("ELF 64-bit") && kind.contains(machine) && kind.contains("static"),
            "{arch}: {kind}"
        );
    }
}

/// An init that runs pkg/metadata's program and shows what it laid out.
const METADATA_INIT: &str = "#!/bin/sh\nmount -t proc proc /proc\nmount -t sysfs sysfs /sys\nmount -t devtmpfs dev /dev\nmount -t tmpfs run /run\nmodprobe virtio_pci 2>/dev/null\nmodprobe virtio_blk\nfor i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/vda ] && break; sleep 1; done\n/usr/bin/metadata\necho \"osbuild-metadata: $(cat /run/config/app/greeting) $(ls -l /run/config/app/greeting | cut -c1-10)\"\npoweroff -f\n";

#[test]
fn metadata_package_reads_data_given_to_guests_of_each_architecture() {
    env();
    let s = Scratch::new();
    let metadata = format!("@pkg:{}", support::repo().join("pkg/metadata").display());
    let spec = s.init_spec("meta", &[&metadata], METADATA_INIT);
    for (arch, uname) in [
        ("amd64", "x86_64"),
        ("arm64", "aarch64"),
        ("s390x", "s390x"),
    ] {
        let image = s.build_for(arch, arch, &spec);
        let data = format!(
            "{{\"app\":{{\"greeting\":{{\"perm\":\"0600\",\"content\":\"hello-{uname}\"}}}}}}"
        );
        let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .args([
                "run", "qemu", "--arch", arch, "--accel", "tcg", "--mem", "512",
            ])
            .args(["--no-network", "--data", &data])
            .arg(&image)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let console = String::from_utf8_lossy(&o.stdout);
        assert!(o.status.success(), "{arch}: {}\n{console}", stderr(&o));
        assert!(
            console.contains(&format!("osbuild-metadata: hello-{uname} -rw-------")),
            "{arch}:\n{console}"
        );
    }
}

/// A cargo workspace of its own next to the specs, `ws`: the packages `a` and `b` print what
/// the library `shared` says, which is `loud` with its feature `loud` (which only `b` asks
/// for) and `quiet` without; `c` and `d` do not compile. Each of a, b, c, d is a package.
fn workspace(s: &Scratch) -> std::path::PathBuf {
    let ws = s.dir.path().join("ws");
    let write = |path: &str, text: &str| {
        let p = ws.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "Cargo.toml",
        "[workspace]\nmembers = [\"a\", \"b\", \"c\", \"d\", \"shared\"]\nresolver = \"2\"\n",
    );
    write(
        "shared/Cargo.toml",
        "[package]\nname = \"shared\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[features]\nloud = []\n",
    );
    write(
        "shared/src/lib.rs",
        "pub fn word() -> &'static str {\n    if cfg!(feature = \"loud\") { \"loud\" } else { \"quiet\" }\n}\n",
    );
    for (name, features, main) in [
        (
            "a",
            "",
            "fn main() { println!(\"a {}\", shared::word()); }\n",
        ),
        (
            "b",
            ", features = [\"loud\"]",
            "fn main() { println!(\"b {}\", shared::word()); }\n",
        ),
        ("c", "", "fn main() { let _ = undefined_c; }\n"),
        ("d", "", "fn main() { let _ = undefined_d; }\n"),
    ] {
        write(
            &format!("{name}/Cargo.toml"),
            &format!(
                "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nshared = {{ path = \"../shared\"{features} }}\n"
            ),
        );
        write(&format!("{name}/src/main.rs"), main);
        write(
            &format!("{name}/build.yml"),
            &format!(
                "image: {name}\narches: [amd64]\nbuilder:\n  cargo:\n    binaries: [{{name: {name}, path: /usr/bin/{name}}}]\n"
            ),
        );
    }
    let lock = Command::new(env!("CARGO"))
        .args(["generate-lockfile", "--offline", "--manifest-path"])
        .arg(ws.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(lock.status.success(), "{}", stderr(&lock));
    ws
}

/// The `docker.io/osbuild/NAME:TAG@sha256:...` reference a dry run's pinned spec shows.
fn pinned(yaml: &str, name: &str) -> String {
    let prefix = format!("docker.io/osbuild/{name}:");
    yaml.split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
        .find(|w| w.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {name} in {yaml}"))
        .to_string()
}

#[test]
fn cargo_packages_built_together_give_the_images_each_gets_alone() {
    let s = Scratch::new();
    workspace(&s);
    let both = s.spec(
        "both.yml",
        "init:\n  - \"@pkg:./ws/a\"\n  - \"@pkg:./ws/b\"\n",
    );
    let out = s.out();
    let o = osbuild_in(
        &s.cache(),
        &[
            "build",
            "-f",
            "tar",
            "--arch",
            "amd64",
            "--dir",
            out.to_str().unwrap(),
            both.to_str().unwrap(),
        ],
    );
    ok(&o);
    // One cargo invocation compiled both.
    assert!(
        stderr(&o).contains("cargo a, b (amd64): 2 of 2 packages compiled"),
        "{}",
        stderr(&o)
    );
    // Each binary has its own package's features, not the union of both.
    for (name, says) in [("a", "a quiet"), ("b", "b loud")] {
        let body = Command::new("tar")
            .arg("-xOf")
            .arg(out.join("both.tar"))
            .arg(format!("usr/bin/{name}"))
            .output()
            .unwrap();
        assert!(body.status.success(), "{name} missing");
        let bin = s.dir.path().join(format!("bin-{name}"));
        std::fs::write(&bin, &body.stdout).unwrap();
        std::fs::set_permissions(&bin, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let said = ok(&Command::new(&bin).output().unwrap());
        assert_eq!(said.trim(), says);
    }
    let dry = |cache: &std::path::Path, spec: &std::path::Path| {
        ok(&osbuild_in(
            cache,
            &[
                "build",
                "--dry-run",
                "--arch",
                "amd64",
                spec.to_str().unwrap(),
            ],
        ))
    };
    let together = dry(&s.cache(), &both);
    // Each alone, in a cache of its own: the same images.
    for name in ["a", "b"] {
        let spec = s.spec(
            &format!("{name}.yml"),
            &format!("init:\n  - \"@pkg:./ws/{name}\"\n"),
        );
        let alone = dry(&Scratch::new().cache(), &spec);
        assert_eq!(pinned(&alone, name), pinned(&together, name));
    }
}

#[test]
fn failing_packages_of_a_batch_are_each_named_and_the_others_built() {
    let s = Scratch::new();
    workspace(&s);
    let spec = s.spec(
        "bad.yml",
        "init:\n  - \"@pkg:./ws/a\"\n  - \"@pkg:./ws/c\"\n  - \"@pkg:./ws/d\"\n",
    );
    let o = osbuild_in(
        &s.cache(),
        &[
            "build",
            "--dry-run",
            "--arch",
            "amd64",
            spec.to_str().unwrap(),
        ],
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error: ")).collect();
    assert_eq!(errors.len(), 2, "{err}");
    // In the order of the spec, each at its reference and naming its build.yml and cause.
    assert!(
        errors[0].contains("bad.yml:3:5: init[1]: ")
            && errors[0].contains("ws/c/build.yml: cargo builder for amd64: error[E0425]: cannot find value `undefined_c`"),
        "{err}"
    );
    assert!(
        errors[1].contains("bad.yml:4:5: init[2]: ")
            && errors[1].contains("ws/d/build.yml: cargo builder for amd64: error[E0425]: cannot find value `undefined_d`"),
        "{err}"
    );
    // The package that compiled is in the cache all the same.
    assert!(err.contains("ws/a (amd64): docker.io/osbuild/a:"), "{err}");
    let index = std::fs::read_to_string(s.cache().join("index.json")).unwrap();
    assert!(index.contains("osbuild/a:"), "{index}");
    assert!(
        !index.contains("osbuild/c:") && !index.contains("osbuild/d:"),
        "{index}"
    );
}
