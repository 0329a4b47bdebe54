//! Boot what `osbuild build` wrote under QEMU (TCG unless the CPU offers hardware
//! virtualisation) and read what the guest printed.

mod support;

use std::time::Duration;

use osbuild_testenv::qemu::boot;
use osbuild_testenv::trees::INIT_MARKER;
use support::{Scratch, env, ok, repo};

fn build_and_boot(example: &str, name: &str) -> osbuild_testenv::qemu::BootLog {
    env();
    let s = Scratch::new();
    let out = s.out();
    let spec = repo().join("examples").join(example);
    ok(&s.osbuild(&[
        "build",
        "--name",
        name,
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    let cmdline = std::fs::read_to_string(out.join(format!("{name}-cmdline"))).unwrap();
    let log = boot(
        "amd64",
        &out.join(format!("{name}-kernel")),
        &out.join(format!("{name}-initrd.img")),
        &cmdline,
        Duration::from_secs(180),
    )
    .unwrap();
    assert!(
        log.exited,
        "the guest powers off by itself; console:\n{}",
        log.console
    );
    log
}

#[test]
fn hello_boots_and_its_init_runs() {
    let log = build_and_boot("hello.yml", "hello");
    let lines = log.lines_starting("osbuild-init:");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(INIT_MARKER) && l.contains("from x86_64 kernel 6.1")),
        "console:\n{}",
        log.console
    );
    assert!(
        lines.contains(&"osbuild-init: marker: hello from osbuild"),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("osbuild-init: modules ") && !l.ends_with(" 0")),
        "{lines:?}"
    );
    assert_eq!(lines.last(), Some(&"osbuild-init: done"));
}

#[test]
fn services_image_boots_with_its_bundles_in_place() {
    let log = build_and_boot("services.yml", "services");
    let lines = log.lines_starting("osbuild-init: bundle");
    assert_eq!(
        lines,
        [
            "osbuild-init: bundle /containers/onboot/000-sysctl",
            "osbuild-init: bundle /containers/onshutdown/000-goodbye",
            "osbuild-init: bundle /containers/services/web",
        ],
        "console:\n{}",
        log.console
    );
}
