//! Lay the data out under the config directory: always `userdata` holding it unchanged, and,
//! when it is a JSON object, a directory per key whose objects with a `content` string are
//! files (mode from `perm`, octal, default 0644) and whose other objects are directories.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{Map, Value};

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Whether `name` may be a file or directory name under the config directory.
fn safe_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Write `data` under `dir`; returns how many files were written.
pub fn write(dir: &Path, data: &[u8]) -> io::Result<usize> {
    fs::create_dir_all(dir)?;
    fs::write(dir.join("userdata"), data)?;
    let mut files = 1;
    if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(data) {
        for (key, value) in &map {
            if let Value::Object(inner) = value {
                files += tree(&dir.join(checked(key)?), inner)?;
            }
        }
    }
    Ok(files)
}

fn checked(name: &str) -> io::Result<&str> {
    if safe_name(name) {
        Ok(name)
    } else {
        Err(invalid(format!("{name:?}: not a file name")))
    }
}

fn tree(dir: &Path, map: &Map<String, Value>) -> io::Result<usize> {
    fs::create_dir_all(dir)?;
    let mut files = 0;
    for (name, value) in map {
        let path = dir.join(checked(name)?);
        let Value::Object(entry) = value else {
            return Err(invalid(format!("{}: expected an object", path.display())));
        };
        match entry.get("content") {
            Some(Value::String(content)) => {
                let mode = match entry.get("perm") {
                    None => 0o644,
                    Some(Value::String(p)) => u32::from_str_radix(p, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| invalid(format!("{}: perm {p:?}", path.display())))?,
                    Some(_) => return Err(invalid(format!("{}: perm", path.display()))),
                };
                fs::write(&path, content)?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
                files += 1;
            }
            Some(_) => {
                return Err(invalid(format!("{}: content must be text", path.display())));
            }
            None => files += tree(&path, entry)?,
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_becomes_directories_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let data = br#"{"ssh":{"sshd_config":{"perm":"0600","content":"PermitRootLogin no\n"}},
                        "app":{"conf":{"level":{"content":"3"}}},"note":"ignored"}"#;
        assert_eq!(write(dir.path(), data).unwrap(), 3);
        let sshd = dir.path().join("ssh/sshd_config");
        assert_eq!(fs::read_to_string(&sshd).unwrap(), "PermitRootLogin no\n");
        assert_eq!(
            fs::metadata(&sshd).unwrap().permissions().mode() & 0o7777,
            0o600
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("app/conf/level")).unwrap(),
            "3"
        );
        assert_eq!(fs::read(dir.path().join("userdata")).unwrap(), data);
    }

    #[test]
    fn plain_text_is_kept_as_userdata_only() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(write(dir.path(), b"hostname: x\n").unwrap(), 1);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn names_cannot_escape_and_bad_entries_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = write(dir.path(), br#"{"..":{"x":{"content":"y"}}}"#).unwrap_err();
        assert!(e.to_string().contains("\"..\": not a file name"), "{e}");
        let e = write(dir.path(), br#"{"a":{"x":{"content":"y","perm":"9"}}}"#).unwrap_err();
        assert!(e.to_string().contains("perm \"9\""), "{e}");
    }
}
