//! The config directory (`/run/config`), laid out as LinuxKit's metadata package does:
//! `provider` (which source answered), `hostname`, `ssh/authorized_keys` (mode 0600), then the
//! user data ([`crate::userdata`]: `userdata` and, for a JSON object, its directories), which
//! may replace any of them.

use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::found::Found;

/// What was written, for the log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// The host name written.
    pub hostname: Option<String>,
    /// SSH keys written.
    pub ssh_keys: usize,
    /// Bytes of user data, and the files it made.
    pub userdata: Option<(usize, usize)>,
}

impl Written {
    /// `hostname NAME, 2 ssh keys, 312 bytes of user data (3 files)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(h) = &self.hostname {
            parts.push(format!("hostname {h}"));
        }
        match self.ssh_keys {
            0 => {}
            1 => parts.push("1 ssh key".into()),
            n => parts.push(format!("{n} ssh keys")),
        }
        if let Some((bytes, files)) = self.userdata {
            let mut part = format!("{bytes} bytes of user data");
            if files > 1 {
                part.push_str(&format!(" ({files} files)"));
            }
            parts.push(part);
        }
        if parts.is_empty() {
            "no host name, ssh keys or user data".into()
        } else {
            parts.join(", ")
        }
    }
}

fn at(path: &Path) -> impl Fn(io::Error) -> io::Error + '_ {
    move |e| io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Write what `found` holds under `dir`.
pub fn write(dir: &Path, found: &Found) -> io::Result<Written> {
    fs::create_dir_all(dir).map_err(at(dir))?;
    let provider = dir.join("provider");
    fs::write(&provider, found.provider).map_err(at(&provider))?;
    let mut written = Written::default();
    if let Some(name) = &found.hostname {
        let path = dir.join("hostname");
        fs::write(&path, name).map_err(at(&path))?;
        written.hostname = Some(name.clone());
    }
    if !found.ssh_keys.is_empty() {
        let ssh = dir.join("ssh");
        fs::create_dir_all(&ssh).map_err(at(&ssh))?;
        let path = ssh.join("authorized_keys");
        let mut text = found.ssh_keys.join("\n");
        text.push('\n');
        fs::write(&path, text).map_err(at(&path))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(at(&path))?;
        written.ssh_keys = found.ssh_keys.len();
    }
    if let Some(data) = &found.userdata {
        let files = crate::userdata::write(dir, data)?;
        written.userdata = Some((data.len(), files));
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_in_its_place() {
        let dir = tempfile::tempdir().unwrap();
        let found = Found {
            provider: "gce",
            via: "metadata server".into(),
            hostname: Some("vm1.c.proj.internal".into()),
            ssh_keys: vec!["ssh-ed25519 AAA a".into(), "ssh-rsa BBB b".into()],
            userdata: Some(br#"{"app":{"x":{"content":"1"}}}"#.to_vec()),
            report_ready: false,
        };
        let w = write(dir.path(), &found).unwrap();
        let read = |p: &str| fs::read_to_string(dir.path().join(p)).unwrap();
        assert_eq!(read("provider"), "gce");
        assert_eq!(read("hostname"), "vm1.c.proj.internal");
        assert_eq!(
            read("ssh/authorized_keys"),
            "ssh-ed25519 AAA a\nssh-rsa BBB b\n"
        );
        let mode = fs::metadata(dir.path().join("ssh/authorized_keys"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(read("app/x"), "1");
        assert_eq!(
            w.describe(),
            "hostname vm1.c.proj.internal, 2 ssh keys, 29 bytes of user data (2 files)"
        );
    }

    #[test]
    fn only_what_there_is() {
        let dir = tempfile::tempdir().unwrap();
        let found = Found {
            provider: "aws",
            ssh_keys: vec!["k".into()],
            ..Found::default()
        };
        let w = write(&dir.path().join("config"), &found).unwrap();
        assert_eq!(w.describe(), "1 ssh key");
        let mut names: Vec<String> = fs::read_dir(dir.path().join("config"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["provider", "ssh"]);
        assert_eq!(
            Written::default().describe(),
            "no host name, ssh keys or user data"
        );
    }
}
