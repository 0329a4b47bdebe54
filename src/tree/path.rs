//! Normalised paths inside a [`Tree`](super::Tree): relative to its root, no `.`/`..`.
//!
//! A path is one byte string, its names joined by `/`: a layer entry's path costs its length,
//! not an allocation per component (a 2,000-deep path was 2,000 allocations).

use std::cmp::Ordering;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

pub use crate::limits::{NAME_MAX, PATH_MAX};

/// A path inside a tree: its names joined by `/`, without a leading or trailing slash and
/// without empty, `.` or `..` names. The empty path is the root.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct TreePath {
    bytes: Vec<u8>,
}

/// Why a path from an archive or a spec cannot name an entry of the tree.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TreePathError {
    /// A `..` component would leave the root.
    #[error("path {0:?} escapes the root with '..'")]
    Escapes(String),
    /// The path contains a NUL byte.
    #[error("path {0:?} contains a NUL byte")]
    Nul(String),
    /// The path is longer than Linux lets a path be (PATH_MAX), or one of its names longer
    /// than a name may be (NAME_MAX): no system could create it.
    #[error("path {shown:?} is {len} bytes, {what}")]
    TooLong {
        /// The start and end of the path.
        shown: String,
        /// Its length in bytes (of the path, or of the name).
        len: usize,
        /// Which limit it passes.
        what: &'static str,
    },
}

/// `bytes` as text short enough for a one-line message: paths over 100 characters keep
/// their first and last 40, joined by `...`.
pub fn abbreviate(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let chars: Vec<char> = text.chars().collect();
    if chars.len() <= 100 {
        return text.into_owned();
    }
    let head: String = chars[..40].iter().collect();
    let tail: String = chars[chars.len() - 40..].iter().collect();
    format!("{head}...{tail}")
}

impl TreePath {
    /// The root (no components).
    pub fn root() -> Self {
        TreePath::default()
    }

    /// Parse a path as found in archives and specs. Leading `/` and `./`, repeated slashes and
    /// `.` components are dropped; any `..` component is refused, whatever precedes it, since a
    /// layer may not climb through its own entries either.
    pub fn parse(path: impl AsRef<OsStr>) -> Result<Self, TreePathError> {
        let bytes = path.as_ref().as_bytes();
        if bytes.contains(&0) {
            return Err(TreePathError::Nul(
                String::from_utf8_lossy(bytes).into_owned(),
            ));
        }
        if bytes.len() > PATH_MAX {
            return Err(TreePathError::TooLong {
                shown: abbreviate(bytes),
                len: bytes.len(),
                what: "more than the 4095 Linux allows a path (PATH_MAX)",
            });
        }
        let mut out = TreePath {
            bytes: Vec::with_capacity(bytes.len()),
        };
        for part in bytes.split(|&b| b == b'/') {
            if part.len() > NAME_MAX {
                return Err(TreePathError::TooLong {
                    shown: abbreviate(bytes),
                    len: part.len(),
                    what: "with a name longer than the 255 bytes Linux allows (NAME_MAX)",
                });
            }
            match part {
                b"" | b"." => {}
                b".." => {
                    return Err(TreePathError::Escapes(
                        String::from_utf8_lossy(bytes).into_owned(),
                    ));
                }
                name => out.push(OsStr::from_bytes(name)),
            }
        }
        out.bytes.shrink_to_fit();
        Ok(out)
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The components from the root down.
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &OsStr> {
        self.bytes
            .split(|&b| b == b'/')
            .filter(|c| !c.is_empty())
            .map(OsStr::from_bytes)
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        if self.bytes.is_empty() {
            0
        } else {
            self.bytes.iter().filter(|&&b| b == b'/').count() + 1
        }
    }

    /// Where the last component starts.
    fn last_start(&self) -> usize {
        self.bytes
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(0, |slash| slash + 1)
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&OsStr> {
        (!self.is_root()).then(|| OsStr::from_bytes(&self.bytes[self.last_start()..]))
    }

    /// The parent path and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(TreePath, &OsStr)> {
        if self.is_root() {
            return None;
        }
        let start = self.last_start();
        let parent = TreePath {
            bytes: self.bytes[..start.saturating_sub(1)].to_vec(),
        };
        Some((parent, OsStr::from_bytes(&self.bytes[start..])))
    }

    /// Append one component (which must not contain `/`); an empty name adds nothing.
    pub fn push(&mut self, name: impl AsRef<OsStr>) {
        let name = name.as_ref().as_bytes();
        if name.is_empty() {
            return;
        }
        if !self.bytes.is_empty() {
            self.bytes.push(b'/');
        }
        self.bytes.extend_from_slice(name);
    }

    /// Drop the last component.
    pub fn pop(&mut self) -> Option<OsString> {
        if self.is_root() {
            return None;
        }
        let start = self.last_start();
        let name = self.bytes.split_off(start);
        self.bytes.truncate(start.saturating_sub(1));
        Some(OsString::from_vec(name))
    }

    /// This path followed by `other`.
    pub fn join(&self, other: &TreePath) -> TreePath {
        let mut out = self.clone();
        out.push(OsStr::from_bytes(&other.bytes));
        out
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &TreePath) -> bool {
        prefix.is_root()
            || (self.bytes.starts_with(&prefix.bytes)
                && self
                    .bytes
                    .get(prefix.bytes.len())
                    .is_none_or(|&b| b == b'/'))
    }

    /// The path as bytes, components joined by `/`, without a leading slash.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The path as bytes, components joined by `/`, without a leading slash.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }
}

/// Component by component, as a list of names would order (`a/b` before `a-b`).
impl Ord for TreePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for TreePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TreePath")
            .field(&String::from_utf8_lossy(&self.bytes))
            .finish()
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_prefixes_and_dots() {
        for input in ["a/b", "/a/b", "./a/b", "a//b/", "./a/./b"] {
            assert_eq!(
                TreePath::parse(input).unwrap().to_string(),
                "a/b",
                "{input}"
            );
        }
        assert!(TreePath::parse("./").unwrap().is_root());
        assert!(TreePath::parse("/").unwrap().is_root());
    }

    #[test]
    fn refuses_parent_components() {
        for input in ["..", "../etc/passwd", "a/../../b", "a/.."] {
            assert!(
                matches!(TreePath::parse(input), Err(TreePathError::Escapes(_))),
                "{input}"
            );
        }
    }

    #[test]
    fn split_last_gives_parent_and_name() {
        let p = TreePath::parse("a/b/c").unwrap();
        let (parent, name) = p.split_last().unwrap();
        assert_eq!(parent.to_string(), "a/b");
        assert_eq!(name, "c");
        assert!(TreePath::root().split_last().is_none());
    }

    #[test]
    fn paths_no_system_could_create_are_refused_in_short() {
        let deep = "a/".repeat(2047) + "b";
        assert_eq!(deep.len(), PATH_MAX);
        assert_eq!(TreePath::parse(&deep).unwrap().depth(), 2048);
        let deeper = "a/".repeat(5000);
        let err = TreePath::parse(&deeper).unwrap_err().to_string();
        assert!(
            err.ends_with("is 10000 bytes, more than the 4095 Linux allows a path (PATH_MAX)"),
            "{err}"
        );
        assert!(err.len() < 200, "the message stays short: {err}");
        let name = format!("dir/{}", "n".repeat(256));
        let err = TreePath::parse(&name).unwrap_err().to_string();
        assert!(
            err.contains("is 256 bytes, with a name longer than the 255"),
            "{err}"
        );
        assert!(TreePath::parse(format!("dir/{}", "n".repeat(255))).is_ok());
    }

    #[test]
    fn one_byte_string_holds_the_whole_path() {
        let deep = "a/".repeat(2047) + "b";
        let p = TreePath::parse(&deep).unwrap();
        assert_eq!(p.as_bytes(), deep.as_bytes());
        assert_eq!(p.depth(), 2048);
        // One allocation of the path's length, not one per component.
        assert_eq!(p.bytes.capacity(), deep.len());
        assert_eq!(p.components().count(), 2048);
        assert_eq!(p.file_name().unwrap(), "b");
    }

    #[test]
    fn push_pop_join_and_prefixes() {
        let mut p = TreePath::root();
        assert_eq!(p.depth(), 0);
        assert!(p.file_name().is_none());
        assert!(p.pop().is_none());
        p.push("usr");
        p.push("");
        p.push("lib");
        assert_eq!(p.to_string(), "usr/lib");
        assert_eq!(p.components().collect::<Vec<_>>(), ["usr", "lib"]);
        let joined = p.join(&TreePath::parse("x/y").unwrap());
        assert_eq!(joined.to_string(), "usr/lib/x/y");
        assert_eq!(TreePath::root().join(&p), p);
        assert!(joined.starts_with(&p));
        assert!(joined.starts_with(&TreePath::root()));
        assert!(p.starts_with(&p));
        assert!(!TreePath::parse("usr/libexec").unwrap().starts_with(&p));
        assert_eq!(p.pop().unwrap(), "lib");
        assert_eq!(p.pop().unwrap(), "usr");
        assert!(p.is_root());
        let top = TreePath::parse("top").unwrap();
        let (parent, name) = top.split_last().unwrap();
        assert!(parent.is_root());
        assert_eq!(name, "top");
    }

    #[test]
    fn order_is_by_component_like_a_directory_walk() {
        let mut paths: Vec<TreePath> = ["a-b", "a/b", "a", "a.b/c", "a/b/c"]
            .iter()
            .map(|s| TreePath::parse(s).unwrap())
            .collect();
        paths.sort();
        let shown: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["a", "a/b", "a/b/c", "a-b", "a.b/c"]);
    }
}
