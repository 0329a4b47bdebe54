//! `osbuild build` end to end against a real registry on loopback, outputs read back with the
//! tools people use (cpio, tar, sha256sum) and with oci-spec.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use support::{Scratch, env, ok, osbuild_in, repo, sh, sha256, stderr, unpack_initrd};

fn hello() -> String {
    repo().join("examples/hello.yml").display().to_string()
}

fn services() -> String {
    repo().join("examples/services.yml").display().to_string()
}

#[test]
fn hello_builds_kernel_initrd_and_cmdline() {
    env();
    let s = Scratch::new();
    let out = s.out();
    ok(&s.osbuild(&["build", "--dir", out.to_str().unwrap(), &hello()]));
    assert_eq!(
        s.outputs(),
        [
            "hello-cmdline",
            "hello-initrd.img",
            "hello-kernel",
            "hello.json"
        ]
    );
    // The manifest names each file with its role, size and sha256, and how the format boots.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("hello.json")).unwrap()).unwrap();
    let entry = &manifest["outputs"][0];
    assert_eq!(entry["format"], "kernel+initrd");
    assert_eq!(entry["boot"]["method"], "direct");
    let initrd = entry["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["role"] == "initrd")
        .unwrap();
    assert_eq!(initrd["path"], "hello-initrd.img");
    assert_eq!(
        initrd["sha256"],
        support::sha256(&out.join("hello-initrd.img"))
    );
    assert_eq!(
        initrd["size"],
        std::fs::metadata(out.join("hello-initrd.img"))
            .unwrap()
            .len()
    );
    let cmdline = std::fs::read_to_string(out.join("hello-cmdline")).unwrap();
    assert!(cmdline.starts_with("console=ttyS0"), "{cmdline}");
    let kernel = sh(Command::new("file").arg(out.join("hello-kernel")));
    assert!(
        kernel.contains("Linux kernel x86 boot executable"),
        "{kernel}"
    );
    // The initrd, read by the real cpio.
    let listing = sh(Command::new("sh").arg("-c").arg(format!(
        "zcat '{}' | cpio -it --quiet",
        out.join("hello-initrd.img").display()
    )));
    for want in [
        "init",
        "bin/busybox",
        "etc/osbuild-marker",
        "etc/resolv.conf",
        "etc/hosts",
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} missing from\n{listing}"
        );
    }
    assert!(
        !listing.lines().any(|l| l.starts_with("boot")),
        "boot files are split out"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("lib/modules/") && l.ends_with("virtio_net.ko")),
        "{listing}"
    );
    let dir = s.dir.path().join("unpacked");
    unpack_initrd(&out.join("hello-initrd.img"), &dir);
    assert_eq!(
        std::fs::read_to_string(dir.join("etc/osbuild-marker")).unwrap(),
        "hello from osbuild"
    );
    assert_eq!(
        std::fs::metadata(dir.join("etc/osbuild-marker"))
            .unwrap()
            .mode()
            & 0o7777,
        0o644
    );
    assert_eq!(
        std::fs::read_link(dir.join("etc/resolv.conf"))
            .unwrap()
            .display()
            .to_string(),
        "/run/resolvconf/resolv.conf"
    );
    assert_eq!(
        std::fs::metadata(dir.join("init")).unwrap().mode() & 0o111,
        0o111
    );
    let modules_dep = std::fs::read_dir(dir.join("lib/modules"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("modules.dep");
    assert!(
        std::fs::read_to_string(modules_dep)
            .unwrap()
            .contains("virtio_net.ko")
    );
}

#[test]
fn services_lay_out_bundles_with_linuxkit_configs() {
    env();
    let s = Scratch::new();
    let out = s.out();
    ok(&s.osbuild(&[
        "build",
        "-f",
        "tar",
        "-f",
        "kernel+initrd",
        "--dir",
        out.to_str().unwrap(),
        &services(),
    ]));
    assert_eq!(
        s.outputs(),
        [
            "services-cmdline",
            "services-initrd.img",
            "services-kernel",
            "services.json",
            "services.tar"
        ]
    );
    let listing = sh(Command::new("tar")
        .arg("-tvf")
        .arg(out.join("services.tar")));
    for want in [
        "boot/kernel",
        "boot/cmdline",
        "containers/onboot/000-sysctl/config.json",
        "containers/onboot/000-sysctl/runtime.json",
        "containers/onboot/000-sysctl/rootfs/bin/busybox",
        "containers/services/web/lower/bin/busybox",
        "containers/services/web/tmp/",
        "containers/services/web/rootfs/",
        "containers/onshutdown/000-goodbye/lower/etc/hosts",
        "etc/motd",
    ] {
        assert!(listing.contains(want), "{want} missing from\n{listing}");
    }
    let dir = s.dir.path().join("unpacked");
    unpack_initrd(&out.join("services-initrd.img"), &dir);
    // The busybox image is used three times and stored once: hardlinks, not copies.
    let a = std::fs::metadata(dir.join("containers/onboot/000-sysctl/rootfs/bin/busybox")).unwrap();
    let b = std::fs::metadata(dir.join("containers/services/web/lower/bin/busybox")).unwrap();
    assert_eq!(a.ino(), b.ino(), "same inode");
    assert!(a.nlink() >= 3, "link count {}", a.nlink());
    assert_eq!(a.len(), std::fs::metadata("/bin/busybox").unwrap().len());
    // config.json, read back with oci-spec.
    let web: oci_spec::runtime::Spec =
        oci_spec::runtime::Spec::load(dir.join("containers/services/web/config.json")).unwrap();
    let process = web.process().as_ref().unwrap();
    assert_eq!(
        process.args().as_ref().unwrap(),
        &["/bin/httpd", "-f", "-p", "80"]
    );
    assert_eq!(
        process.env().as_ref().unwrap(),
        &["PATH=/bin"],
        "image Env kept"
    );
    assert_eq!(web.root().as_ref().unwrap().readonly(), Some(false));
    let caps: Vec<String> = process
        .capabilities()
        .as_ref()
        .unwrap()
        .effective()
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        caps,
        ["NET_BIND_SERVICE"],
        "YAML capabilities replace the label's"
    );
    let mounts: Vec<String> = web
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .map(|m| m.destination().display().to_string())
        .collect();
    assert!(
        mounts.contains(&"/etc/resolv.conf".to_string()),
        "the label's bind is kept: {mounts:?}"
    );
    let ns: Vec<String> = web
        .linux()
        .as_ref()
        .unwrap()
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| format!("{:?}", n.typ()))
        .collect();
    assert_eq!(ns, ["Pid", "Mount"]);
    let sysctl: oci_spec::runtime::Spec =
        oci_spec::runtime::Spec::load(dir.join("containers/onboot/000-sysctl/config.json"))
            .unwrap();
    assert_eq!(sysctl.root().as_ref().unwrap().readonly(), Some(true));
    assert_eq!(sysctl.process().as_ref().unwrap().user().uid(), 0);
    let runtime: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("containers/services/web/runtime.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(runtime["mounts"][2]["type"], "overlay");
    // Container images get LinuxKit's fixed files.
    let hosts =
        std::fs::read_to_string(dir.join("containers/services/web/lower/etc/hosts")).unwrap();
    assert!(hosts.starts_with("127.0.0.1       localhost"), "{hosts}");
    assert_eq!(
        std::fs::read_link(dir.join("containers/services/web/lower/etc/mtab"))
            .unwrap()
            .display()
            .to_string(),
        "/proc/mounts"
    );
}

#[test]
fn builds_are_byte_reproducible() {
    env();
    let a = Scratch::new();
    let b = Scratch::new();
    // One compressing thread, then three: the same bytes.
    for (s, jobs) in [(&a, "1"), (&b, "3")] {
        let out = s.out();
        ok(&s.osbuild(&[
            "build",
            "-j",
            jobs,
            "-f",
            "kernel+initrd",
            "-f",
            "tar",
            "--dir",
            out.to_str().unwrap(),
            &services(),
        ]));
        ok(&s.osbuild(&[
            "build",
            "--jobs",
            jobs,
            "--compress",
            "zstd",
            "--name",
            "z",
            "--dir",
            out.to_str().unwrap(),
            &services(),
        ]));
    }
    for f in [
        "services-initrd.img",
        "services.json",
        "services.tar",
        "services-kernel",
        "z-initrd.img",
    ] {
        assert_eq!(
            sha256(&a.out().join(f)),
            sha256(&b.out().join(f)),
            "{f} differs between builds on 1 and 3 threads"
        );
    }
    sh(Command::new("gzip")
        .arg("-t")
        .arg(a.out().join("services-initrd.img")));
    sh(Command::new("zstd")
        .arg("-tq")
        .arg(a.out().join("z-initrd.img")));
}

#[test]
fn source_date_epoch_changes_generated_times_only_as_asked() {
    env();
    let s = Scratch::new();
    let out = s.out();
    let spec = services();
    let run = |epoch: &str, name: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_osbuild"))
            .args([
                "build",
                "-f",
                "tar",
                "--name",
                name,
                "--dir",
                out.to_str().unwrap(),
                &spec,
            ])
            .arg("--cache")
            .arg(s.cache())
            .arg("--mirror")
            .arg(env().mirror_arg())
            .env("SOURCE_DATE_EPOCH", epoch)
            .output()
            .unwrap();
        ok(&o);
    };
    run("1000000000", "a");
    run("1000000000", "b");
    run("1100000000", "c");
    assert_eq!(sha256(&out.join("a.tar")), sha256(&out.join("b.tar")));
    assert_ne!(sha256(&out.join("a.tar")), sha256(&out.join("c.tar")));
    let listing = sh(Command::new("tar")
        .arg("--full-time")
        .arg("-tvf")
        .arg(out.join("a.tar")));
    assert!(
        listing.lines().all(|l| !l.contains("2023-")),
        "no mtime beyond the epoch:\n{listing}"
    );
}

#[test]
fn dry_run_pins_every_image_by_digest() {
    env();
    let s = Scratch::new();
    // A dry run writes nothing, so it needs no output directory and makes none.
    let missing = s.out().join("not-yet");
    let out = ok(&s.osbuild(&[
        "build",
        "--dry-run",
        "--dir",
        missing.to_str().unwrap(),
        &services(),
    ]));
    assert!(s.outputs().is_empty(), "a dry run writes nothing");
    let pinned: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("image:") || l.trim_start().starts_with("- "))
        .collect();
    assert!(out.contains("osbuild/kernel:6.1-debian@sha256:"), "{out}");
    assert!(out.contains("osbuild/busybox:1@sha256:"), "{out}");
    assert!(!pinned.is_empty());
    // The pinned spec is itself a valid spec that builds.
    let spec = s.spec("pinned.yml", &out);
    // A build makes the output directory it is given.
    ok(&s.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        missing.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    assert!(missing.join("pinned.tar").is_file());
}

#[test]
fn three_layers_flatten_to_the_expected_tree() {
    env();
    let s = Scratch::new();
    let spec = s.spec("layers.yml", "init:\n  - osbuild/layers:1\n");
    let out = s.out();
    ok(&s.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    let listing = sh(Command::new("tar").arg("-tvf").arg(out.join("layers.tar")));
    let entries: Vec<String> = listing
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // perms owner size date time name [-> target | link to target]
            let rest = f[5..].join(" ");
            format!("{} {}", f[0], rest)
        })
        .filter(|l| {
            !l.contains(" dev/pts/")
                && !l.contains(" dev/shm/")
                && !l.contains(" proc/")
                && !l.contains(" sys/")
                && !l.contains(" etc/hosts")
                && !l.contains(" etc/mtab")
                && !l.contains(" etc/resolv.conf")
        })
        .collect();
    let expected = [
        "-rwsr-xr-x bin/su",
        "drwxr-xr-x bin/",
        "crw-rw-rw- dev/null",
        "drwxr-xr-x dev/",
        "-rw------- dir-to-file",
        "-rw------- etc/keep",
        "-rw-r--r-- etc/xattr",
        "drwxr-xr-x etc/",
        "-rw-r--r-- hl/link",
        "hrw-r--r-- hl/orig link to hl/link",
        "drwxr-xr-x hl/",
        "-rw-r--r-- opaque/c",
        // Layer 2 carries its own `opaque/` entry (0755), whose metadata replaces layer 1's 0750.
        "drwxr-xr-x opaque/",
        "-rw-r--r-- redo/new",
        "drwx------ redo/",
        "prw------- run/fifo",
        "drwxr-xr-x run/",
        "lrwxrwxrwx sym -> etc/keep",
        "-rwxr-xr-x usr/bin/tool",
        "hrwxr-xr-x usr/bin/tool-alias link to usr/bin/tool",
        "drwxr-xr-x usr/bin/",
        "drwxr-xr-x usr/",
    ];
    let mut got: Vec<String> = entries.clone();
    got.sort();
    let mut want: Vec<String> = expected.iter().map(|e| e.to_string()).collect();
    want.sort();
    assert_eq!(got, want, "full listing:\n{listing}");
    // Whiteouts never appear, hidden files are gone.
    for gone in [
        ".wh.",
        "etc/gone",
        "opaque/a",
        "opaque/sub",
        "redo/old",
        "dir-to-file/child",
    ] {
        assert!(!listing.contains(gone), "{gone} should be gone:\n{listing}");
    }
    // The xattr survives as a PAX record.
    let mut ar = tar::Archive::new(std::fs::File::open(out.join("layers.tar")).unwrap());
    let mut found = false;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == "etc/xattr" {
            let exts = e.pax_extensions().unwrap().unwrap();
            found = exts
                .filter_map(|x| x.ok())
                .any(|x| x.key() == Ok("SCHILY.xattr.user.osbuild") && x.value_bytes() == b"yes");
        }
    }
    assert!(found, "user.osbuild xattr kept");
}

#[test]
fn arch_selects_the_manifest_from_an_index() {
    env();
    let s = Scratch::new();
    let spec = s.spec("multi.yml", "init:\n  - osbuild/multiarch:1\n");
    let out = s.out();
    for arch in ["amd64", "arm64"] {
        let o = s.osbuild(&[
            "build",
            "-f",
            "tar",
            "--arch",
            arch,
            "--name",
            arch,
            "--dir",
            out.to_str().unwrap(),
            spec.to_str().unwrap(),
        ]);
        ok(&o);
        let text = sh(Command::new("tar")
            .arg("-xOf")
            .arg(out.join(format!("{arch}.tar")))
            .arg("etc/arch"));
        assert_eq!(text.trim(), arch);
    }
}

#[test]
fn tar_streams_to_stdout() {
    env();
    let s = Scratch::new();
    let o = s.osbuild(&["build", "-f", "tar", "-o", "-", &hello()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = ar
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"boot/kernel".to_string()));
    assert!(names.contains(&"init".to_string()));
}

#[test]
fn tar_kernel_initrd_holds_the_boot_files() {
    env();
    let s = Scratch::new();
    let out = s.out();
    ok(&s.osbuild(&[
        "build",
        "-f",
        "tar-kernel-initrd",
        "--dir",
        out.to_str().unwrap(),
        &hello(),
    ]));
    let listing = sh(Command::new("tar")
        .arg("-tf")
        .arg(out.join("hello-initrd.tar")));
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["cmdline", "initrd.img", "kernel"]
    );
}

#[test]
fn inspect_shows_platforms_config_and_label() {
    env();
    let s = Scratch::new();
    let o = s.osbuild(&["inspect", "osbuild/busybox:1"]);
    let text = ok(&o);
    assert!(text.contains("Platforms:    linux/amd64"), "{text}");
    assert!(text.contains("Cmd:          [\"/bin/sh\"]"), "{text}");
    assert!(text.contains("CAP_NET_BIND_SERVICE"), "{text}");
    let o = s.osbuild(&["inspect", "--json", "osbuild/multiarch:1"]);
    let v: serde_json::Value = serde_json::from_str(&ok(&o)).unwrap();
    assert_eq!(
        v["platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
}

#[test]
fn cache_commands_and_offline_builds() {
    env();
    let s = Scratch::new();
    let out = s.out();
    let out_dir = out.to_str().unwrap();
    let hello = hello();
    ok(&s.osbuild(&["build", "--dir", out_dir, &hello]));
    let cache = |args: &[&str]| osbuild_in(&s.cache(), &[&["cache"], args].concat());
    let ls = ok(&cache(&["ls"]));
    assert!(
        ls.contains("docker.io/osbuild/kernel:6.1-debian\tsha256:"),
        "{ls}"
    );
    assert!(ls.contains("docker.io/osbuild/busybox-init:1"), "{ls}");
    // Offline: the same build works from the cache alone, even with the mirror unreachable.
    let unreachable = ["--mirror", "docker.io=http://127.0.0.1:9"];
    let offline = [
        "build",
        "--offline",
        "--name",
        "offline",
        "--dir",
        out_dir,
        &hello,
    ];
    ok(&osbuild_in(
        &s.cache(),
        &[&offline[..], &unreachable].concat(),
    ));
    assert_eq!(
        sha256(&out.join("offline-initrd.img")),
        sha256(&out.join("hello-initrd.img"))
    );
    // Export, then import into an empty cache and build offline from it.
    let tarball = s.dir.path().join("init.tar");
    let tarball_arg = tarball.to_str().unwrap();
    ok(&cache(&["export", "osbuild/busybox-init:1", tarball_arg]));
    let listing = sh(Command::new("tar").arg("-tf").arg(&tarball));
    for want in ["index.json", "oci-layout", "blobs/sha256/"] {
        assert!(listing.contains(want), "{want} missing from\n{listing}");
    }
    let other = Scratch::new();
    ok(&osbuild_in(
        &other.cache(),
        &["cache", "import", tarball_arg],
    ));
    let spec = other.spec("init-only.yml", "init:\n  - osbuild/busybox-init:1\n");
    let other_out = other.out();
    let other_dir = other_out.to_str().unwrap();
    ok(&osbuild_in(
        &other.cache(),
        &[
            "build",
            "--offline",
            "-f",
            "tar",
            "--dir",
            other_dir,
            spec.to_str().unwrap(),
        ],
    ));
    // Offline with an image the cache lacks names it.
    let o = osbuild_in(
        &other.cache(),
        &["build", "--offline", "--dir", other_dir, &hello],
    );
    assert_eq!(o.status.code(), Some(4));
    assert!(
        stderr(&o).contains("docker.io/osbuild/kernel:6.1-debian: not in the cache"),
        "{}",
        stderr(&o)
    );
    // rm and clean.
    ok(&cache(&["rm", "osbuild/busybox-init:1"]));
    assert!(!ok(&cache(&["ls"])).contains("busybox-init"));
    ok(&cache(&["clean", "--all"]));
    assert!(!ok(&cache(&["ls"])).contains("docker.io"));
}

#[test]
fn pull_rechecks_a_cached_tag() {
    use osbuild::image::Arch;
    use osbuild::image::layout::ImageSpec;
    use osbuild_testenv::fixtures::Pusher;
    use osbuild_testenv::registry::Registry;
    let registry = Registry::start().unwrap();
    let pusher = Pusher::new(&registry.addr()).unwrap();
    let push = |arch_marker: &str| {
        let tree = osbuild_testenv::trees::arch_marker(arch_marker).unwrap();
        pusher
            .push(
                "moving/tag:1",
                &ImageSpec {
                    layers: vec![&tree],
                    cmd: vec!["/x".into()],
                    ..ImageSpec::default()
                },
                Arch::Amd64,
            )
            .unwrap()
    };
    let image = push("first");
    let s = Scratch::new();
    let spec = s.spec("m.yml", &format!("init:\n  - {image}\n"));
    let out = s.out();
    let build = |name: &str, extra: &[&str]| {
        let args = [
            "build",
            "-f",
            "tar",
            "--name",
            name,
            "--dir",
            out.to_str().unwrap(),
            spec.to_str().unwrap(),
        ];
        ok(&osbuild_in(&s.cache(), &[&args[..], extra].concat()));
        sh(Command::new("tar")
            .arg("-xOf")
            .arg(out.join(format!("{name}.tar")))
            .arg("etc/arch"))
    };
    assert_eq!(build("a", &[]).trim(), "first");
    push("second");
    assert_eq!(
        build("b", &[]).trim(),
        "first",
        "the cached tag is used without --pull"
    );
    assert_eq!(
        build("c", &["--pull"]).trim(),
        "second",
        "--pull asks the registry again"
    );
}

#[test]
fn volumes_are_laid_out_and_bound_by_name() {
    env();
    let s = Scratch::new();
    let spec = s.spec(
        "vol.yml",
        "volumes:\n  - name: data\n    image: osbuild/busybox-init:1\n  - name: layout\n    image: osbuild/multiarch:1\n    format: oci\n  - name: empty\n    readonly: true\nservices:\n  - name: app\n    image: osbuild/busybox:1\n    binds:\n      - data:/data\n      - empty:/empty:ro\n",
    );
    let out = s.out();
    ok(&s.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        out.to_str().unwrap(),
        spec.to_str().unwrap(),
    ]));
    let listing = sh(Command::new("tar").arg("-tf").arg(out.join("vol.tar")));
    for want in [
        "containers/volumes/data/lower/init",
        "containers/volumes/data/tmp/",
        "containers/volumes/data/merged/",
        "containers/volumes/layout/lower/oci-layout",
        "containers/volumes/layout/lower/index.json",
        "containers/volumes/empty/merged/",
    ] {
        assert!(
            listing.lines().any(|l| l == want),
            "{want} missing from\n{listing}"
        );
    }
    let blobs = listing
        .lines()
        .filter(|l| {
            l.starts_with("containers/volumes/layout/lower/blobs/sha256/") && !l.ends_with('/')
        })
        .count();
    assert!(blobs >= 4, "index, manifest, config and layer: {blobs}");
    let config = sh(Command::new("tar")
        .arg("-xOf")
        .arg(out.join("vol.tar"))
        .arg("containers/services/app/config.json"));
    let v: serde_json::Value = serde_json::from_str(&config).unwrap();
    let mounts = v["mounts"].as_array().unwrap();
    let data = mounts.iter().find(|m| m["destination"] == "/data").unwrap();
    assert_eq!(data["source"], "/containers/volumes/data/merged");
    // A read-only volume bound read-write is refused.
    let bad = s.spec("bad.yml", "volumes:\n  - name: ro\n    readonly: true\nservices:\n  - name: app\n    image: osbuild/busybox:1\n    binds: [\"ro:/ro\"]\n");
    let o = s.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        out.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("volume \"ro\" is read-only but is mounted read-write"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn supervision_keys_reach_every_bundle_and_the_dry_run() {
    use osbuild::image::Arch;
    use osbuild::image::layout::ImageSpec;
    use osbuild_testenv::fixtures::Pusher;
    use osbuild_testenv::registry::Registry;
    let registry = Registry::start().unwrap();
    let pusher = Pusher::new(&registry.addr()).unwrap();
    let tree = osbuild_testenv::trees::arch_marker("amd64").unwrap();
    let image = pusher
        .push(
            "supervise/app:1",
            &ImageSpec {
                layers: vec![&tree],
                cmd: vec!["/x".into()],
                ..ImageSpec::default()
            },
            Arch::Amd64,
        )
        .unwrap();
    let s = Scratch::new();
    let spec = s.spec(
        "sup.yml",
        &format!(
            "onboot:\n  - name: setup\n    image: {image}\n    timeout: 500ms\n  - name: plain\n    image: {image}\nonshutdown:\n  - name: save\n    image: {image}\n    timeout: 1m30s\nservices:\n  - name: db\n    image: {image}\n    restart: on-failure\n  - name: web\n    image: {image}\n    restart: no\n    dependsOn: [db]\n"
        ),
    );
    let out = s.out();
    let build = |spec: &std::path::Path, name: &str| {
        ok(&osbuild_in(
            &s.cache(),
            &[
                "build",
                "-f",
                "tar",
                "--name",
                name,
                "--dir",
                out.to_str().unwrap(),
                spec.to_str().unwrap(),
            ],
        ));
        out.join(format!("{name}.tar"))
    };
    let tar = build(&spec, "sup");
    let listing = sh(Command::new("tar").arg("-tvf").arg(&tar));
    let line = |path: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(path))
            .unwrap_or_else(|| panic!("{path} missing from\n{listing}"))
            .to_string()
    };
    let expected = [
        ("onboot/000-setup", r#"{"timeout":0.5}"#),
        ("onboot/001-plain", "{}"),
        ("onshutdown/000-save", r#"{"timeout":90.0}"#),
        ("services/db", r#"{"restart":"on-failure"}"#),
        ("services/web", r#"{"restart":"no","dependsOn":["db"]}"#),
    ];
    for (bundle, want) in expected {
        let path = format!("containers/{bundle}/supervise.json");
        let text = sh(Command::new("tar").arg("-xOf").arg(&tar).arg(&path));
        let got: serde_json::Value = serde_json::from_str(&text).unwrap();
        let want: serde_json::Value = serde_json::from_str(want).unwrap();
        assert_eq!(got, want, "{path}: {text}");
        assert_eq!(
            serde_json::to_string(&got).unwrap(),
            serde_json::to_string(&want).unwrap(),
            "{path}: key order"
        );
        assert!(text.ends_with("}\n"), "{path}: {text:?}");
        // Same mode, owner and time as config.json (`tar -tv`: mode, owner, size, date, time).
        let config = line(&format!("containers/{bundle}/config.json"));
        let fields = |l: &str| -> Vec<String> {
            let f: Vec<&str> = l.split_whitespace().collect();
            vec![f[0].into(), f[1].into(), f[3].into(), f[4].into()]
        };
        assert_eq!(fields(&line(&path)), fields(&config), "{path}");
        assert!(line(&path).starts_with("-rw-r--r-- "), "{}", line(&path));
    }
    // The dry run shows the keys, and its output builds the same bundles.
    let dry = ok(&osbuild_in(
        &s.cache(),
        &["build", "--dry-run", spec.to_str().unwrap()],
    ));
    for want in [
        "timeout: 500ms",
        "timeout: 1m30s",
        "restart: on-failure",
        "dependsOn:",
    ] {
        assert!(dry.contains(want), "{want} missing from\n{dry}");
    }
    let pinned = s.spec("pinned.yml", &dry);
    let again = build(&pinned, "pinned");
    for (bundle, _) in expected {
        let path = format!("containers/{bundle}/supervise.json");
        assert_eq!(
            sh(Command::new("tar").arg("-xOf").arg(&again).arg(&path)),
            sh(Command::new("tar").arg("-xOf").arg(&tar).arg(&path)),
            "{path}"
        );
    }
}
