//! Normalised paths inside a [`Tree`](super::Tree): relative to its root, no `.`/`..`.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;

/// A path inside a tree as a list of components. The empty path is the root.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TreePath {
    components: Vec<OsString>,
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

/// The longest path Linux resolves, in bytes, without the terminating NUL (PATH_MAX - 1).
pub const PATH_MAX: usize = 4095;
/// The longest name of one directory entry, in bytes (NAME_MAX).
pub const NAME_MAX: usize = 255;

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
        let mut components = Vec::new();
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
                name => components.push(OsStr::from_bytes(name).to_owned()),
            }
        }
        Ok(TreePath { components })
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.components.is_empty()
    }

    /// The components from the root down.
    pub fn components(&self) -> impl Iterator<Item = &OsStr> {
        self.components.iter().map(OsString::as_os_str)
    }

    /// Number of components.
    pub fn depth(&self) -> usize {
        self.components.len()
    }

    /// The last component, if any.
    pub fn file_name(&self) -> Option<&OsStr> {
        self.components.last().map(OsString::as_os_str)
    }

    /// The parent path and the last component; `None` for the root.
    pub fn split_last(&self) -> Option<(TreePath, &OsStr)> {
        let (last, parent) = self.components.split_last()?;
        Some((
            TreePath {
                components: parent.to_vec(),
            },
            last.as_os_str(),
        ))
    }

    /// Append one component (which must not contain `/`).
    pub fn push(&mut self, name: impl AsRef<OsStr>) {
        self.components.push(name.as_ref().to_owned());
    }

    /// Drop the last component.
    pub fn pop(&mut self) -> Option<OsString> {
        self.components.pop()
    }

    /// This path followed by `other`.
    pub fn join(&self, other: &TreePath) -> TreePath {
        let mut components = self.components.clone();
        components.extend(other.components.iter().cloned());
        TreePath { components }
    }

    /// Whether `prefix` is this path or one of its ancestors.
    pub fn starts_with(&self, prefix: &TreePath) -> bool {
        self.components.starts_with(&prefix.components)
    }

    /// The path as bytes, components joined by `/`, without a leading slash.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(b'/');
            }
            out.extend_from_slice(c.as_bytes());
        }
        out
    }
}

impl fmt::Display for TreePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
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
}
