//! Arbitrary bytes as one or more spec files (split at `%%FILE%%`), read, merged and
//! validated by `spec::load`: never a panic; an error names a place in a file given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use osbuild::spec::{SpecError, load, load_str};
use osbuild_fuzz::{scratch_dir, split};

fuzz_target!(|data: &[u8]| {
    let files = split(data, b"%%FILE%%");
    if files.len() > 3 {
        return;
    }
    let dir = scratch_dir();
    let mut paths = Vec::new();
    for (i, text) in files.iter().enumerate() {
        let path = dir.path().join(format!("s{i}.yml"));
        std::fs::write(&path, text).expect("scratch file");
        paths.push(path);
    }
    match load(&paths) {
        Ok(loaded) => {
            // What loaded prints and serialises.
            let _ = loaded.to_string();
            let _ = loaded.spec.to_json();
            let _ = loaded.image_refs();
            // The YAML of a spec loads back (`--dry-run` prints it to be used again).
            if let Ok(yaml) = loaded.spec.to_yaml()
                && let Err(e) = load_str(&yaml, &paths[0], 0)
            {
                panic!("the spec's own YAML does not load: {e}\n{yaml}");
            }
        }
        Err(SpecError::Invalid { origin, .. }) | Err(SpecError::Source { origin, .. }) => {
            assert!(
                paths.contains(&origin.file),
                "error outside the files: {origin}"
            );
        }
        Err(SpecError::Read { .. }) => {}
    }
});
