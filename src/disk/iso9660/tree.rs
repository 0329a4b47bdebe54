//! The directory tree of an image, built from its list of paths: checks paths, implies parent
//! directories, refuses duplicates, keeps entries in byte order of their names.

use std::collections::BTreeMap;

use super::rock_ridge::{S_IFDIR, S_IFREG};
use super::{IsoError, IsoFile};

/// Type bits of a POSIX mode.
const S_IFMT: u32 = 0o170_000;
/// Mode of directories no entry gives a mode to.
const IMPLIED_DIR_MODE: u32 = 0o755;
/// Longest name component Rock Ridge records here (as POSIX NAME_MAX).
const NAME_MAX: usize = 255;

/// An entry of a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Entry {
    /// A directory: its index in [`Tree::dirs`].
    Dir(usize),
    /// A regular file: its index in the image's files.
    File(usize),
}

/// A directory.
#[derive(Debug)]
pub(crate) struct Dir {
    /// Its path, for messages.
    pub path: String,
    /// Its parent (the root is its own parent).
    pub parent: usize,
    /// Permission bits.
    pub mode: u32,
    /// Whether an entry of the image declared it (so a second one is a duplicate).
    pub declared: bool,
    /// Its entries by name.
    pub entries: BTreeMap<String, Entry>,
}

impl Dir {
    /// How many subdirectories it has.
    pub fn subdirs(&self) -> u32 {
        self.entries
            .values()
            .filter(|e| matches!(e, Entry::Dir(_)))
            .count() as u32
    }
}

/// The directories of an image; the root is `dirs[0]`.
#[derive(Debug)]
pub(crate) struct Tree {
    /// All directories, parents before children.
    pub dirs: Vec<Dir>,
}

fn bad(path: &str, why: &'static str) -> IsoError {
    IsoError::BadPath {
        path: path.to_string(),
        why,
    }
}

/// The components of `path`, checked.
fn components(path: &str) -> Result<Vec<&str>, IsoError> {
    let trimmed = path.trim_start_matches('/');
    if trimmed.is_empty() {
        return Err(bad(path, "empty"));
    }
    let parts: Vec<&str> = trimmed.split('/').collect();
    for p in &parts {
        match *p {
            "" => return Err(bad(path, "empty component")),
            "." | ".." => return Err(bad(path, "\".\" or \"..\" component")),
            _ if p.contains('\0') => return Err(bad(path, "NUL byte")),
            _ if p.len() > NAME_MAX => return Err(bad(path, "component longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(parts)
}

impl Tree {
    /// The tree of `files`.
    pub fn build(files: &[IsoFile<'_>]) -> Result<Tree, IsoError> {
        let mut tree = Tree {
            dirs: vec![Dir {
                path: String::new(),
                parent: 0,
                mode: IMPLIED_DIR_MODE,
                declared: false,
                entries: BTreeMap::new(),
            }],
        };
        for (index, f) in files.iter().enumerate() {
            let parts = components(&f.path)?;
            let is_dir = match f.mode & S_IFMT {
                0 | S_IFREG => false,
                S_IFDIR => true,
                _ => {
                    let (path, mode) = (f.path.clone(), f.mode);
                    return Err(IsoError::UnsupportedType { path, mode });
                }
            };
            let len = f.source.len();
            if is_dir && len != 0 {
                return Err(IsoError::DirectoryWithData(f.path.clone()));
            }
            if len > u64::from(u32::MAX) {
                return Err(IsoError::FileTooLarge {
                    path: f.path.clone(),
                    len,
                });
            }
            let (last, parents) = parts.split_last().ok_or_else(|| bad(&f.path, "empty"))?;
            let mut dir = 0;
            for p in parents {
                dir = tree.subdir(dir, p, &f.path)?;
            }
            let perms = f.mode & 0o7777;
            if is_dir {
                let d = tree.subdir(dir, last, &f.path)?;
                if tree.dirs[d].declared {
                    return Err(IsoError::Duplicate(f.path.clone()));
                }
                tree.dirs[d].declared = true;
                tree.dirs[d].mode = perms;
            } else {
                if tree.dirs[dir].entries.contains_key(*last) {
                    return Err(IsoError::Duplicate(f.path.clone()));
                }
                tree.dirs[dir]
                    .entries
                    .insert(last.to_string(), Entry::File(index));
            }
        }
        Ok(tree)
    }

    /// The subdirectory `name` of `dir`, made when missing.
    fn subdir(&mut self, dir: usize, name: &str, path: &str) -> Result<usize, IsoError> {
        match self.dirs[dir].entries.get(name) {
            Some(Entry::Dir(d)) => Ok(*d),
            Some(Entry::File(_)) => {
                let parent = &self.dirs[dir].path;
                let file = if parent.is_empty() {
                    name.to_string()
                } else {
                    format!("{parent}/{name}")
                };
                Err(IsoError::NotADirectory {
                    path: path.to_string(),
                    file,
                })
            }
            None => {
                let d = self.dirs.len();
                let parent = &self.dirs[dir].path;
                let full = if parent.is_empty() {
                    name.to_string()
                } else {
                    format!("{parent}/{name}")
                };
                self.dirs.push(Dir {
                    path: full,
                    parent: dir,
                    mode: IMPLIED_DIR_MODE,
                    declared: false,
                    entries: BTreeMap::new(),
                });
                self.dirs[dir]
                    .entries
                    .insert(name.to_string(), Entry::Dir(d));
                Ok(d)
            }
        }
    }

    /// The image's files in byte order of their paths (the order their bodies are written):
    /// depth first, entries in name order, without recursion (paths may be deep).
    pub fn files_in_order(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut stack: Vec<Entry> = vec![Entry::Dir(0)];
        while let Some(e) = stack.pop() {
            match e {
                Entry::File(i) => out.push(i),
                Entry::Dir(d) => stack.extend(self.dirs[d].entries.values().rev().copied()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files<'a>(list: &[(&str, u32)], data: &'a Vec<u8>) -> Vec<IsoFile<'a>> {
        list.iter()
            .map(|&(p, mode)| IsoFile {
                path: p.to_string(),
                source: data,
                mode,
            })
            .collect()
    }

    #[test]
    fn implies_parents_and_orders_entries() {
        let empty = Vec::new();
        let f = files(
            &[
                ("b/x", 0o644),
                ("a", 0o600),
                ("b/c/y", 0o644),
                ("e", 0o40700),
            ],
            &empty,
        );
        let t = Tree::build(&f).unwrap();
        let names: Vec<&str> = t.dirs.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(names, ["", "b", "b/c", "e"]);
        assert_eq!(t.dirs[3].mode, 0o700);
        assert_eq!(t.dirs[1].mode, 0o755);
        assert_eq!(t.dirs[0].subdirs(), 2);
        assert_eq!(t.files_in_order(), [1, 2, 0]);
    }

    #[test]
    fn refuses_bad_paths_and_duplicates() {
        let cases: &[(&[(&str, u32)], &str)] = &[
            (&[("", 0o644)], "BadPath"),
            (&[("a//b", 0o644)], "BadPath"),
            (&[("a/../b", 0o644)], "BadPath"),
            (&[("a/", 0o644)], "BadPath"),
            (&[("a\0b", 0o644)], "BadPath"),
            (&[("a", 0o644), ("/a", 0o644)], "Duplicate"),
            (&[("d", 0o40755), ("d", 0o40755)], "Duplicate"),
            (&[("d/x", 0o644), ("d", 0o644)], "Duplicate"),
            (&[("a", 0o644), ("a/b", 0o644)], "NotADirectory"),
            (&[("l", 0o120777)], "UnsupportedType"),
        ];
        let empty = Vec::new();
        for (list, want) in cases {
            let err = Tree::build(&files(list, &empty)).unwrap_err();
            assert!(format!("{err:?}").starts_with(want), "{list:?}: {err:?}");
        }
        let long = "x".repeat(256);
        assert!(Tree::build(&files(&[(&long, 0o644)], &empty)).is_err());
        let data = b"data".to_vec();
        let e = Tree::build(&files(&[("d", 0o40755)], &data)).unwrap_err();
        assert!(matches!(e, IsoError::DirectoryWithData(p) if p == "d"));
    }
}
