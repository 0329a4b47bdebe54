//! Every resource limit of a build, in one place: what it bounds, its default, why, and the
//! flag that raises it. The code that enforces a limit takes it from here; `docs/limits.md`
//! is the same list for users.
//!
//! The defaults are far above what real images and specs need and far below what would
//! exhaust a build machine: a hostile layer or spec fails in one line naming the limit, not
//! by filling the disk or the memory.

/// The longest path Linux resolves, in bytes, without the terminating NUL (`PATH_MAX` - 1).
/// Fixed: no system could create a longer path, so no image legitimately holds one.
pub const PATH_MAX: usize = 4095;

/// The longest name of one directory entry, in bytes (`NAME_MAX`). Fixed, as [`PATH_MAX`].
pub const NAME_MAX: usize = 255;

/// The largest extension header a layer may hold, in bytes: a PAX record set (`x`, `g`) or a
/// GNU long name or link target (`L`, `K`). Fixed: the tar reader reads each whole into
/// memory, a real one is a few hundred bytes (a long name is at most [`PATH_MAX`]; xattrs
/// rarely pass a few KB), and Go's `archive/tar` refuses them past 1 MiB too.
pub const MAX_EXTENSION_HEADER: u64 = 1 << 20;

/// The deepest a tree path can be: [`PATH_MAX`] with one-byte names (`a/a/.../a`). Not a
/// limit of its own but a consequence of [`PATH_MAX`]; it bounds how deep any walk of a tree
/// goes, and the tree's walks and drops do not recurse anyway.
pub const MAX_DEPTH: usize = PATH_MAX.div_ceil(2);

/// Default of [`Limits::layer_bytes`]: 16 GiB. The largest layers of public images (CUDA and
/// machine-learning stacks) expand to under 10 GiB; real layers compress 2 to 5 times, a
/// decompression bomb 1000 times (a 16 MB gzip layer can hold 16 GB).
pub const DEFAULT_LAYER_BYTES: u64 = 16 << 30;

/// Default of [`Limits::image_bytes`]: 32 GiB, about twice the largest public images; what
/// osbuild makes (an initrd, a disk) is meant to be far smaller.
pub const DEFAULT_IMAGE_BYTES: u64 = 32 << 30;

/// Default of [`Limits::image_entries`]: 4 million. Distribution images hold 10,000 to
/// 100,000 entries, the largest (TeX Live, big `node_modules`) under a million; each entry
/// costs about 200 bytes of memory, so the tree of one image stays under 1 GB.
pub const DEFAULT_IMAGE_ENTRIES: u64 = 4_000_000;

/// Default of [`Limits::spec_bytes`]: 64 MiB for one spec file. Specs are a few KB; one that
/// inlines many files is a few MB. The parser holds the text and its values in memory.
pub const DEFAULT_SPEC_BYTES: u64 = 64 << 20;

/// Default of [`Limits::spec_nodes`]: one million YAML nodes (scalars, lists and maps) in one
/// spec file. A `files` entry with a path and contents is 5 nodes, so this allows about
/// 200,000 `files` entries; a LinuxKit spec has a few hundred nodes.
pub const DEFAULT_SPEC_NODES: usize = 1_000_000;

/// The limits a build enforces (`BuildOptions::limits`). [`Limits::default`] holds the
/// defaults above; each field has a command-line flag ([`Limits::FLAGS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes one layer may expand to when decompressed (`--max-layer-size`). Counted as the
    /// decompressor yields them, so the pull stops as soon as the bound is passed.
    pub layer_bytes: u64,
    /// Bytes all layers of one image may expand to together (`--max-image-size`).
    pub image_bytes: u64,
    /// Entries (tar members, whiteouts included) all layers of one image may hold together
    /// (`--max-image-entries`): bounds the memory of the flattened tree.
    pub image_entries: u64,
    /// Bytes of one spec file (`--max-spec-size`); also the bound on the text of its values,
    /// aliases expanded.
    pub spec_bytes: u64,
    /// YAML nodes of one spec file (`--max-spec-nodes`). The number of `files` entries has no
    /// limit of its own: this one bounds it.
    pub spec_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            layer_bytes: DEFAULT_LAYER_BYTES,
            image_bytes: DEFAULT_IMAGE_BYTES,
            image_entries: DEFAULT_IMAGE_ENTRIES,
            spec_bytes: DEFAULT_SPEC_BYTES,
            spec_nodes: DEFAULT_SPEC_NODES,
        }
    }
}

impl Limits {
    /// The flag that raises each limit, in field order.
    pub const FLAGS: [&'static str; 5] = [
        LAYER_BYTES_FLAG,
        IMAGE_BYTES_FLAG,
        IMAGE_ENTRIES_FLAG,
        SPEC_BYTES_FLAG,
        SPEC_NODES_FLAG,
    ];
}

/// The flag of [`Limits::layer_bytes`].
pub const LAYER_BYTES_FLAG: &str = "--max-layer-size";
/// The flag of [`Limits::image_bytes`].
pub const IMAGE_BYTES_FLAG: &str = "--max-image-size";
/// The flag of [`Limits::image_entries`].
pub const IMAGE_ENTRIES_FLAG: &str = "--max-image-entries";
/// The flag of [`Limits::spec_bytes`].
pub const SPEC_BYTES_FLAG: &str = "--max-spec-size";
/// The flag of [`Limits::spec_nodes`].
pub const SPEC_NODES_FLAG: &str = "--max-spec-nodes";

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/limits.md lists every flag with its default, so the two cannot drift apart.
    #[test]
    fn the_documentation_states_every_flag_and_default() {
        let doc = include_str!("../docs/limits.md");
        let d = Limits::default();
        let defaults = [
            crate::disk::human_size(d.layer_bytes),
            crate::disk::human_size(d.image_bytes),
            "4,000,000".to_string(),
            crate::disk::human_size(d.spec_bytes),
            "1,000,000".to_string(),
        ];
        assert_eq!(d.image_entries, 4_000_000);
        assert_eq!(d.spec_nodes, 1_000_000);
        for (flag, default) in Limits::FLAGS.iter().zip(defaults) {
            let row = doc
                .lines()
                .find(|l| l.starts_with('|') && l.contains(&format!("`{flag}`")))
                .unwrap_or_else(|| panic!("docs/limits.md has no row for {flag}"));
            assert!(
                row.contains(&format!("| {default} |")),
                "{flag}: {row:?} does not show {default}"
            );
        }
        for fixed in ["4095", "255"] {
            assert!(doc.contains(&format!("| {fixed} |")), "{fixed}");
        }
    }
}
