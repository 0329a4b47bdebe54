//! Metadata on a volume of the machine's own, read before any network service is asked:
//! - a cloud-init NoCloud volume (ISO 9660 labelled `CIDATA`, what `osbuild run qemu --data`
//!   attaches), or any CD-ROM, holding `user-data` or `config` at its root: the user data;
//! - an OpenStack config drive (ISO 9660 labelled `config-2`):
//!   `openstack/latest/meta_data.json` (`hostname`, `public_keys` by name) and
//!   `openstack/latest/user_data`.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::found::{Found, clean_hostname, key_lines};
use crate::iso::Volume;

/// The names the user data may have on a CIDATA volume or CD-ROM.
const DATA_NAMES: [&str; 2] = ["user-data", "config"];
const CONFIG_DRIVE_META: &str = "openstack/latest/meta_data.json";
const CONFIG_DRIVE_USER: &str = "openstack/latest/user_data";

/// Which kinds of volume to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kinds {
    /// CIDATA volumes and CD-ROMs.
    pub cidata: bool,
    /// OpenStack config drives.
    pub config_drive: bool,
}

/// Block devices that may hold a volume, named as `/dev/NAME` after the entries of
/// `sys_block` (`/sys/class/block`): CD-ROMs first, then every other disk and partition.
pub fn candidates(sys_block: &Path) -> Vec<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    names.sort_by_key(|n| (!n.starts_with("sr"), n.clone()));
    names
        .into_iter()
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
        .map(|n| Path::new("/dev").join(n))
        .collect()
}

/// The first of `devices` holding metadata of `kinds`, and the errors met on the way.
pub fn find(devices: &[PathBuf], kinds: Kinds) -> (Option<Found>, Vec<String>) {
    let mut errors = Vec::new();
    for device in devices {
        match read(device, kinds) {
            Ok(Some(found)) => return (Some(found), errors),
            Ok(None) => {}
            Err(e) => errors.push(format!("{}: {e}", device.display())),
        }
    }
    (None, errors)
}

fn read(device: &Path, kinds: Kinds) -> io::Result<Option<Found>> {
    let Some(mut volume) = Volume::open(device)? else {
        return Ok(None);
    };
    let is_cdrom = device
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("sr"));
    if kinds.cidata
        && (volume.labelled("CIDATA") || is_cdrom)
        && let Some(data) = volume.read_first(&DATA_NAMES)?
    {
        return Ok(Some(Found {
            provider: "cidata",
            via: device.display().to_string(),
            userdata: Some(data),
            ..Found::default()
        }));
    }
    if kinds.config_drive && volume.labelled("config-2") {
        return config_drive(&mut volume, device).map(Some);
    }
    Ok(None)
}

fn config_drive(volume: &mut Volume, device: &Path) -> io::Result<Found> {
    let meta = volume.read(CONFIG_DRIVE_META)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("config drive without {CONFIG_DRIVE_META}"),
        )
    })?;
    let (hostname, ssh_keys) = parse_meta_data(&meta).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{CONFIG_DRIVE_META}: not a JSON object"),
        )
    })?;
    let userdata = volume.read(CONFIG_DRIVE_USER)?.filter(|d| !d.is_empty());
    Ok(Found {
        provider: "openstack",
        via: format!("config drive {}", device.display()),
        hostname,
        ssh_keys,
        userdata,
        report_ready: false,
    })
}

/// `hostname` and the `public_keys` values (in name order) of a `meta_data.json`.
fn parse_meta_data(meta: &[u8]) -> Option<(Option<String>, Vec<String>)> {
    let doc: Value = serde_json::from_slice(meta).ok()?;
    let doc = doc.as_object()?;
    let hostname = doc
        .get("hostname")
        .and_then(Value::as_str)
        .and_then(clean_hostname);
    let keys = doc
        .get("public_keys")
        .and_then(Value::as_object)
        .map(|m| {
            let mut named: Vec<(&String, &str)> = m
                .iter()
                .filter_map(|(name, key)| Some((name, key.as_str()?)))
                .collect();
            named.sort();
            named.into_iter().map(|(_, key)| key).collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Some((hostname, key_lines(keys)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_data_json() {
        let meta = br#"{"uuid":"83679162-1378-4288-a2d4-70e13ec132aa","hostname":"test.novalocal",
            "name":"test","public_keys":{"mykey":"ssh-rsa AAA me\n","a":"ssh-ed25519 BBB"},
            "launch_index":0}"#;
        let (hostname, keys) = parse_meta_data(meta).unwrap();
        assert_eq!(hostname.as_deref(), Some("test.novalocal"));
        assert_eq!(keys, ["ssh-ed25519 BBB", "ssh-rsa AAA me"]);
        assert_eq!(parse_meta_data(b"{}"), Some((None, vec![])));
        assert_eq!(parse_meta_data(b"[]"), None);
    }

    #[test]
    fn cd_roms_come_first() {
        let dir = tempfile::tempdir().unwrap();
        for n in ["vda", "sr0", "loop0", "ram0", "vda1", "nvme0n1"] {
            std::fs::create_dir(dir.path().join(n)).unwrap();
        }
        let got: Vec<String> = candidates(dir.path())
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(got, ["/dev/sr0", "/dev/nvme0n1", "/dev/vda", "/dev/vda1"]);
    }
}
