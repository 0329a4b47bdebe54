//! OCI image layout tarballs in and out of the cache (`osbuild cache import|export`): the
//! layout's blobs are verified against their names on the way in; the tarball written on the
//! way out holds one image with everything it references.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::Arc;

use oci_spec::image::Descriptor;

use super::cache::{Cache, HashingWriter, REF_NAME};
use super::{ImageError, Reference};
use crate::archive::tar::{TarOptions, write_tar};
use crate::tree::{BlobFile, Content, Inode, Leaf, LeafKind, Meta, Tree, TreePath};

fn archive_err(path: &Path, reason: impl std::fmt::Display) -> ImageError {
    ImageError::Archive {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Import an OCI layout tarball; returns the image names it recorded.
pub fn import(cache: &Cache, tarball: &Path) -> Result<Vec<String>, ImageError> {
    let file = File::open(tarball).map_err(|e| archive_err(tarball, e))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut index: Option<Vec<u8>> = None;
    for entry in archive.entries().map_err(|e| archive_err(tarball, e))? {
        let mut entry = entry.map_err(|e| archive_err(tarball, e))?;
        let path = entry
            .path()
            .map_err(|e| archive_err(tarball, e))?
            .to_string_lossy()
            .into_owned();
        let path = path.trim_start_matches("./").to_string();
        if path == "index.json" {
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| archive_err(tarball, e))?;
            index = Some(bytes);
        } else if let Some(hex) = path.strip_prefix("blobs/sha256/")
            && entry.header().entry_type().is_file()
        {
            let digest = format!("sha256:{hex}");
            let tmp = cache.temp_file()?;
            let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, tmp));
            io::copy(&mut entry, &mut out).map_err(|e| archive_err(tarball, e))?;
            let (w, actual, _) = out.finish();
            if actual != digest {
                return Err(archive_err(
                    tarball,
                    format!("{path} has the wrong content (sha256 {actual})"),
                ));
            }
            let tmp = w
                .into_inner()
                .map_err(|e| archive_err(tarball, e.into_error()))?;
            cache.commit_blob(tmp, &digest)?;
        }
    }
    let index =
        index.ok_or_else(|| archive_err(tarball, "no index.json: not an OCI image layout"))?;
    let index: oci_spec::image::ImageIndex = serde_json::from_slice(&index)
        .map_err(|e| archive_err(tarball, format!("index.json: {e}")))?;
    let mut names = Vec::new();
    for desc in index.manifests() {
        let digest = desc.digest().to_string();
        if !cache.has_blob(&digest) {
            return Err(archive_err(
                tarball,
                format!("index.json names {digest}, which the tarball lacks"),
            ));
        }
        let Some(name) = desc.annotations().as_ref().and_then(|a| a.get(REF_NAME)) else {
            continue;
        };
        let reference = Reference::parse(name).map_err(|_| {
            archive_err(
                tarball,
                format!("image name {name:?} is not a full reference (registry/repository:tag)"),
            )
        })?;
        let mut clean = desc.clone();
        clean.set_annotations(None);
        cache.tag(&reference.to_string(), &clean)?;
        names.push(reference.to_string());
    }
    if names.is_empty() {
        return Err(archive_err(
            tarball,
            format!("index.json names no image ({REF_NAME} annotation)"),
        ));
    }
    Ok(names)
}

/// Every blob the image or index `digest` needs, the uncompressed layers excepted.
fn blobs_of(
    cache: &Cache,
    digest: &str,
    name: &str,
    out: &mut BTreeSet<String>,
) -> Result<(), ImageError> {
    if !out.insert(digest.to_string()) {
        return Ok(());
    }
    let bytes = cache
        .read_blob(digest)?
        .ok_or_else(|| ImageError::NotCached {
            reference: name.into(),
        })?;
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Invalid {
            reference: name.into(),
            reason: e.to_string(),
        })?;
    if let Some(list) = value.get("manifests").and_then(|m| m.as_array()) {
        for m in list {
            if let Some(d) = m.get("digest").and_then(|d| d.as_str())
                && cache.has_blob(d)
            {
                blobs_of(cache, d, name, out)?;
            }
        }
    }
    if let Some(config) = value.pointer("/config/digest").and_then(|d| d.as_str()) {
        out.insert(config.to_string());
    }
    for layer in value
        .get("layers")
        .and_then(|l| l.as_array())
        .into_iter()
        .flatten()
    {
        if let Some(d) = layer.get("digest").and_then(|d| d.as_str()) {
            if !cache.has_blob(d) {
                return Err(ImageError::NotCached {
                    reference: name.into(),
                });
            }
            out.insert(d.to_string());
        }
    }
    Ok(())
}

/// The cached image `reference` as an OCI image layout tree (`oci-layout`, `index.json`,
/// `blobs/sha256/...`, bodies left in the cache): for `export` and for `format: oci` volumes.
/// `mtime` is the time of its entries.
pub fn layout_tree(cache: &Cache, reference: &Reference, mtime: i64) -> Result<Tree, ImageError> {
    let dest = cache.root();
    let name = reference.to_string();
    let desc: Descriptor = match &reference.digest {
        Some(d) => {
            let bytes = cache.read_blob(d)?.ok_or_else(|| ImageError::NotCached {
                reference: name.clone(),
            })?;
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| archive_err(dest, e))?;
            let media = value
                .get("mediaType")
                .and_then(|m| m.as_str())
                .unwrap_or("application/vnd.oci.image.manifest.v1+json");
            serde_json::from_value(
                serde_json::json!({"mediaType": media, "digest": d, "size": bytes.len()}),
            )
            .map_err(|e| archive_err(dest, e))?
        }
        None => cache.resolve(&name)?.ok_or_else(|| ImageError::NotCached {
            reference: name.clone(),
        })?,
    };
    let mut blobs = BTreeSet::new();
    blobs_of(cache, desc.digest().as_ref(), &name, &mut blobs)?;
    let mut tagged = desc.clone();
    let mut annotations = std::collections::HashMap::new();
    annotations.insert(REF_NAME.to_string(), name.clone());
    tagged.set_annotations(Some(annotations));
    let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [tagged]});
    let mut tree = Tree::new(mtime);
    let meta = Meta::root(0o755, mtime);
    let file = |content: Content| {
        Inode::Leaf(Arc::new(Leaf {
            meta: Meta::root(0o644, mtime),
            kind: LeafKind::File(content),
        }))
    };
    let put = |tree: &mut Tree, path: &str, inode: Inode| -> Result<(), ImageError> {
        let p = TreePath::parse(path).map_err(|e| archive_err(dest, e))?;
        tree.insert(&p, inode, &meta)
            .map(|_| ())
            .map_err(|e| archive_err(dest, e))
    };
    put(
        &mut tree,
        "oci-layout",
        file(Content::inline(
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )),
    )?;
    put(
        &mut tree,
        "index.json",
        file(Content::inline(
            serde_json::to_vec(&index).map_err(|e| archive_err(dest, e))?,
        )),
    )?;
    for digest in &blobs {
        let path = cache.blob_path(digest);
        let len = std::fs::metadata(&path)
            .map_err(|e| archive_err(&path, e))?
            .len();
        let hex = digest.trim_start_matches("sha256:");
        put(
            &mut tree,
            &format!("blobs/sha256/{hex}"),
            file(Content::Extent {
                file: BlobFile::new(&path),
                offset: 0,
                len,
            }),
        )?;
    }
    Ok(tree)
}

/// Write the cached image `reference` as an OCI layout tarball at `dest`.
pub fn export(cache: &Cache, reference: &Reference, dest: &Path) -> Result<(), ImageError> {
    let tree = layout_tree(cache, reference, 0)?;
    let mut staged = crate::archive::atomic::StagedOutputs::new();
    let out = staged.create(dest).map_err(|e| archive_err(dest, e))?;
    let mut out = BufWriter::new(out);
    write_tar(&tree, &mut out, &TarOptions::default()).map_err(|e| archive_err(dest, e))?;
    out.flush().map_err(|e| archive_err(dest, e))?;
    drop(out);
    staged.commit().map_err(|e| archive_err(dest, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Arch;
    use crate::image::layout::{ImageSpec, write_image};

    #[test]
    fn export_then_import_into_a_fresh_cache_keeps_digests() {
        let a = tempfile::tempdir().unwrap();
        let cache = Cache::open(a.path()).unwrap();
        let mut tree = Tree::new(0);
        tree.insert(
            &TreePath::parse("etc/x").unwrap(),
            Inode::Leaf(Arc::new(Leaf {
                meta: Meta::root(0o644, 0),
                kind: LeafKind::File(Content::inline(b"x".to_vec())),
            })),
            &Meta::root(0o755, 0),
        )
        .unwrap();
        let spec = ImageSpec {
            layers: vec![&tree],
            cmd: vec!["/bin/sh".into()],
            ..ImageSpec::default()
        };
        let desc = write_image(&cache, &spec, Arch::Amd64).unwrap();
        let name = "127.0.0.1:5000/test/x:1";
        cache.tag(name, &desc).unwrap();
        let out = a.path().join("x.tar");
        export(&cache, &Reference::parse(name).unwrap(), &out).unwrap();
        let b = tempfile::tempdir().unwrap();
        let fresh = Cache::open(b.path()).unwrap();
        assert_eq!(import(&fresh, &out).unwrap(), [name]);
        assert_eq!(
            fresh.resolve(name).unwrap().unwrap().digest(),
            desc.digest()
        );
        assert!(fresh.reachable().unwrap().len() >= 3);
        // A corrupted tarball is refused.
        let mut bytes = std::fs::read(&out).unwrap();
        let at = bytes.windows(9).position(|w| w == b"/bin/sh\"]").unwrap();
        bytes[at + 1] = b'X';
        std::fs::write(&out, &bytes).unwrap();
        let c = tempfile::tempdir().unwrap();
        let err = import(&Cache::open(c.path()).unwrap(), &out).unwrap_err();
        assert!(err.to_string().contains("wrong content"), "{err}");
    }
}
