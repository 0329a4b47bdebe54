//! The resource limits (docs/limits.md) through the CLI: a layer or image that expands past
//! its bound, an image with too many entries and a spec with too many YAML nodes each fail in
//! one line naming the limit and its flag, and leave nothing behind; the flags raise them.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::Output;

use oci_spec::image::{Descriptor, DescriptorBuilder, MediaType};
use osbuild::image::cache::sha256_digest;
use osbuild::image::{Cache, PullPolicy, Puller, Reference, RegistryOptions};
use osbuild::progress::Reporter;
use support::{Scratch, env, failure, ok};

/// A gzip'd layer tar of `files` (name, size) holding zeros; (blob, diff_id).
fn zeros_layer(files: &[(&str, u64)]) -> (Vec<u8>, String) {
    let mut tar = Vec::new();
    for (name, size) in files {
        osbuild::archive::tar::write_file(&mut tar, name, 0o644, 0, *size, std::io::repeat(0))
            .expect("tar entry");
    }
    osbuild::archive::tar::write_end(&mut tar).expect("tar end");
    let diff_id = sha256_digest(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).expect("gzip");
    (gz.finish().expect("gzip"), diff_id)
}

fn descriptor(media_type: MediaType, digest: &str, size: usize) -> Descriptor {
    DescriptorBuilder::default()
        .media_type(media_type)
        .digest(digest.parse::<oci_spec::image::Digest>().expect("digest"))
        .size(size as u64)
        .build()
        .expect("descriptor")
}

/// Push an amd64 image of the gzip `layers` (blob, diff_id) to the fixture registry as
/// `name` (`limits/x:1`, which the tests reach as docker.io/limits/x:1 through the mirror).
/// Returns the layers' digests.
fn push(name: &str, layers: &[(Vec<u8>, String)]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = Cache::open(dir.path()).expect("cache");
    let mut descs = Vec::new();
    for (blob, _) in layers {
        let digest = cache.put_blob(blob).expect("blob");
        descs.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": digest,
            "size": blob.len(),
        }));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| &l.1).collect::<Vec<_>>()},
    }))
    .expect("config");
    let config_digest = cache.put_blob(&config).expect("config blob");
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": descs,
    }))
    .expect("manifest");
    let manifest_digest = cache.put_blob(&manifest).expect("manifest blob");
    let puller = Puller::new(
        cache,
        RegistryOptions::default(),
        PullPolicy::default(),
        Reporter::quiet(),
    );
    let target = Reference::parse(&format!("{}/{name}", env().registry.addr())).expect("ref");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(puller.push(
            &descriptor(MediaType::ImageManifest, &manifest_digest, manifest.len()),
            &target,
        ))
        .expect("push");
    descs
        .iter()
        .map(|d| d["digest"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `osbuild build -f tar --dir OUT ARGS... SPEC` for a spec with `image` as its only init.
fn build_tar(s: &Scratch, image: &str, args: &[&str]) -> Output {
    let spec = s.spec("limits.yml", &format!("init:\n  - {image}\n"));
    let out = s.out();
    let mut all = vec!["build", "-f", "tar", "--dir", out.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    all.push(spec.to_str().expect("utf-8"));
    s.osbuild(&all)
}

/// Every file under `dir` with its size.
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let md = e.metadata().expect("metadata");
            if md.is_dir() {
                stack.push(e.path());
            } else {
                found.push((e.path().display().to_string(), md.len()));
            }
        }
    }
    found
}

/// Nothing of the refused layers is in the cache (neither the compressed blobs nor any
/// expanded data, finished or partial), no name is tagged for it, and nothing is in the
/// output directory.
fn assert_nothing_kept(s: &Scratch, layers: &[(Vec<u8>, String)], digests: &[String]) {
    let cache = Cache::open(&s.cache()).expect("cache");
    for ((_, diff_id), digest) in layers.iter().zip(digests) {
        assert!(!cache.has_blob(diff_id), "expanded layer {diff_id} kept");
        assert!(!cache.has_blob(digest), "compressed layer {digest} kept");
    }
    assert_eq!(
        files_under(&s.cache().join("tmp")),
        [],
        "temporary files kept"
    );
    let big: Vec<_> = files_under(&s.cache().join("blobs"))
        .into_iter()
        .filter(|(_, len)| *len > 64 << 10)
        .collect();
    assert_eq!(big, [], "only manifests and configs remain");
    let tagged = cache.list().expect("list");
    assert!(
        tagged.is_empty(),
        "no name points at the refused image: {tagged:?}"
    );
    assert!(s.outputs().is_empty(), "{:?}", s.outputs());
}

#[test]
fn a_layer_expanding_past_its_bound_fails_at_once_and_keeps_nothing() {
    // 8 MiB of zeros, a few KiB compressed, against a 1 MiB bound.
    let layers = [zeros_layer(&[("zeros", 8 << 20)])];
    let digests = push("limits/layer-bomb:1", &layers);
    let s = Scratch::new();
    let o = build_tar(&s, "limits/layer-bomb:1", &["--max-layer-size", "1M"]);
    let e = failure(&o, 4);
    assert!(e.contains("limits/layer-bomb:1"), "{e}");
    assert!(e.contains(&format!("layer {}", digests[0])), "{e}");
    assert!(
        e.ends_with("expands past 1M, the limit for one layer (raise it with --max-layer-size)"),
        "{e}"
    );
    assert_nothing_kept(&s, &layers, &digests);
    // The same layer within the default bound builds.
    ok(&build_tar(&s, "limits/layer-bomb:1", &[]));
    assert_eq!(s.outputs(), ["limits.json", "limits.tar"]);
}

#[test]
fn the_layers_of_an_image_together_are_bounded_too() {
    let layers = [
        zeros_layer(&[("a", 3 << 20)]),
        zeros_layer(&[("b", 3 << 20)]),
    ];
    let digests = push("limits/image-bomb:1", &layers);
    let s = Scratch::new();
    let o = build_tar(&s, "limits/image-bomb:1", &["--max-image-size", "4M"]);
    let e = failure(&o, 4);
    assert!(e.contains("limits/image-bomb:1: layer sha256:"), "{e}");
    assert!(
        e.ends_with(
            "the image's layers expand past 4M, the limit for one image (raise it with --max-image-size)"
        ),
        "{e}"
    );
    assert_nothing_kept(&s, &layers, &digests);
    ok(&build_tar(
        &s,
        "limits/image-bomb:1",
        &["--max-image-size", "7M"],
    ));
}

#[test]
fn an_image_with_more_entries_than_the_limit_is_refused() {
    let names: Vec<String> = (0..40).map(|i| format!("f{i}")).collect();
    let files: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    push("limits/entries:1", &[zeros_layer(&files)]);
    let s = Scratch::new();
    let o = build_tar(&s, "limits/entries:1", &["--max-image-entries", "30"]);
    let e = failure(&o, 4);
    assert!(e.contains("limits/entries:1"), "{e}");
    assert!(
        e.ends_with(
            "the image holds more than 30 entries, the limit for one image (raise it with --max-image-entries)"
        ),
        "{e}"
    );
    assert!(s.outputs().is_empty());
    ok(&build_tar(
        &s,
        "limits/entries:1",
        &["--max-image-entries", "40"],
    ));
}

#[test]
fn images_flattened_while_others_pull_fail_in_the_order_of_their_names() {
    // Two images past the entry limit, the smaller pulled (and flattened) first: the error is
    // about the first by name, every time.
    let names: Vec<String> = (0..4000).map(|i| format!("f{i}")).collect();
    let many: Vec<(&str, u64)> = names.iter().map(|n| (n.as_str(), 1)).collect();
    push("limits/a-many:1", &[zeros_layer(&many)]);
    push("limits/b-few:1", &[zeros_layer(&many[..40])]);
    let s = Scratch::new();
    let spec = s.spec(
        "two.yml",
        "init:\n  - limits/a-many:1\n  - limits/b-few:1\n",
    );
    for _ in 0..3 {
        let o = s.osbuild(&[
            "build",
            "-f",
            "tar",
            "--max-image-entries",
            "30",
            "--dir",
            s.out().to_str().expect("utf-8"),
            spec.to_str().expect("utf-8"),
        ]);
        let e = failure(&o, 4);
        assert!(e.contains("limits/a-many:1"), "{e}");
        assert!(s.outputs().is_empty());
    }
}

#[test]
fn a_spec_past_the_yaml_node_limit_says_which_limit_and_how_to_raise_it() {
    // 50,001 `files` entries: 250,000 nodes and more, which the parser's own default refused
    // as `budget breached: Nodes { nodes: 250001 }`.
    let s = Scratch::new();
    let mut yaml = String::from("files:\n");
    for i in 0..50_001 {
        yaml.push_str(&format!("  - path: etc/f{i}\n    contents: x\n"));
    }
    let spec = s.spec("many.yml", &yaml);
    let spec = spec.to_str().expect("utf-8");
    let dir = s.out();
    let dir = dir.to_str().expect("utf-8");
    let o = s.osbuild(&[
        "build",
        "-f",
        "tar",
        "--dir",
        dir,
        "--max-spec-nodes",
        "200000",
        spec,
    ]);
    let e = failure(&o, 3);
    assert!(e.starts_with(&format!("{spec}:")), "{e}");
    assert!(
        e.ends_with(
            ": more than 200000 YAML nodes (keys, values, lists and maps), the limit for one spec file (raise it with --max-spec-nodes)"
        ),
        "{e}"
    );
    assert!(s.outputs().is_empty());
    // Within the default limit the spec loads and builds.
    ok(&s.osbuild(&["build", "-f", "tar", "--dir", dir, spec]));
    assert_eq!(s.outputs(), ["many.json", "many.tar"]);
}
