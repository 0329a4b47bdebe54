//! Arbitrary bytes as what a registry sends for a pull, split at `%%DOC%%`: the top-level
//! manifest or index, the manifest, the image config. Parsed and checked as a pull does:
//! never a panic, and every digest that passes is a sha256 digest (digests name files of the
//! cache), with one diff_id per layer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use osbuild::image::Arch;
use osbuild::image::layer::codec_for;
use osbuild::image::reference::is_sha256_digest;
use osbuild::image::registry::{parse_config, parse_manifest, parse_top};
use osbuild_fuzz::split;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let arch = Arch::ALL[usize::from(first) % Arch::ALL.len()];
    let docs = split(rest, b"%%DOC%%");
    let top = docs[0];
    let manifest_bytes = docs.get(1).copied().unwrap_or(top);
    let config_bytes = docs.get(2).copied().unwrap_or(b"{}");
    let from_index = match parse_top(top, arch) {
        Ok(t) => {
            if let Some(d) = &t.manifest {
                assert!(is_sha256_digest(d), "index names {d:?}");
            }
            t.manifest.is_some()
        }
        Err(_) => false,
    };
    let Ok(manifest) = parse_manifest(manifest_bytes) else {
        return;
    };
    assert!(is_sha256_digest(&manifest.config().digest().to_string()));
    for l in manifest.layers() {
        assert!(is_sha256_digest(&l.digest().to_string()));
        let _ = codec_for(l.media_type().as_ref());
    }
    let expect_arch = (!from_index).then_some(arch);
    if let Ok(config) = parse_config(&manifest, config_bytes, expect_arch) {
        let ids = config.rootfs().diff_ids();
        assert_eq!(ids.len(), manifest.layers().len());
        for id in ids {
            assert!(is_sha256_digest(id), "diff_id {id:?}");
        }
        if let Some(a) = expect_arch {
            assert_eq!(config.architecture().to_string(), a.oci());
        }
    }
});
