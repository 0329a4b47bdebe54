//! Packages: `osbuild pkg build|show-tag|push` and `@pkg:` references resolved by
//! `osbuild build` on an empty cache.

mod support;

use std::process::Command;
use std::time::Duration;

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
