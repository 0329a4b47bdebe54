//! The command line: `metadata [OPTIONS] [SOURCE...]`. The sources are LinuxKit's provider
//! arguments where they overlap (`cdrom`, `openstack`, `aws`, `gcp`); the options put the
//! files it reads and writes elsewhere (tests run it on a temporary directory and a fake
//! sysfs).

use std::path::PathBuf;
use std::time::Duration;

use crate::cloud::Cloud;
use crate::local::Kinds;

/// The usage text.
pub const USAGE: &str = "usage: metadata [--config-dir DIR] [--sys DIR] [--device PATH]... \
[--wait SECONDS] [SOURCE...]
  Reads the metadata the machine was given into DIR (/run/config) from the first source
  that has some: local volumes first (a CIDATA volume or CD-ROM, an OpenStack config drive),
  then the metadata service of the cloud DMI names (waited for up to --wait seconds, 10 by
  default), then the others, briefly. On Azure, the ready report is tried as long.
  SOURCE: cidata (or cdrom), openstack, aws, gce (or gcp), azure; all when none is given.
  --sys DIR     where sysfs is (/sys): DMI fields and the block devices to read
  --device PATH read PATH (a device or an image file) instead of every block device";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where the data goes.
    pub config_dir: PathBuf,
    /// Where sysfs is.
    pub sys: PathBuf,
    /// The devices to read; `None`: every block device.
    pub devices: Option<Vec<PathBuf>>,
    /// How long the service DMI names (and Azure's WireServer) is waited for.
    pub wait: Duration,
    /// Local volumes to read.
    pub local: Kinds,
    /// Services to ask, in order.
    pub clouds: Vec<Cloud>,
}

/// Parse the arguments (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
    let mut o = Options {
        config_dir: PathBuf::from("/run/config"),
        sys: PathBuf::from("/sys"),
        devices: None,
        wait: Duration::from_secs(10),
        local: Kinds {
            cidata: false,
            config_drive: false,
        },
        clouds: Vec::new(),
    };
    let mut any_source = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config-dir" => o.config_dir = value("--config-dir")?.into(),
            "--sys" => o.sys = value("--sys")?.into(),
            "--device" => o
                .devices
                .get_or_insert_with(Vec::new)
                .push(value("--device")?.into()),
            "--wait" => {
                let v = value("--wait")?;
                let secs: f64 = v
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && (0.0..=3600.0).contains(s))
                    .ok_or_else(|| format!("--wait {v:?}: not a number of seconds up to 3600"))?;
                o.wait = Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => return Err(String::new()),
            source if !source.starts_with('-') => {
                any_source = true;
                match source {
                    "cidata" | "cdrom" => o.local.cidata = true,
                    "openstack" => o.local.config_drive = true,
                    "aws" => o.clouds.push(Cloud::Aws),
                    "gce" | "gcp" => o.clouds.push(Cloud::Gce),
                    "azure" => o.clouds.push(Cloud::Azure),
                    _ => return Err(format!("unknown source {source:?}")),
                }
            }
            _ => return Err(format!("unknown option {arg:?}")),
        }
    }
    if !any_source {
        o.local = Kinds {
            cidata: true,
            config_drive: true,
        };
        o.clouds = Cloud::ALL.to_vec();
    }
    o.clouds.dedup();
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Result<Options, String> {
        parse(a.iter().map(|s| s.to_string()))
    }

    #[test]
    fn defaults_read_everything() {
        let o = args(&[]).unwrap();
        assert_eq!(o.config_dir, PathBuf::from("/run/config"));
        assert_eq!(o.sys, PathBuf::from("/sys"));
        assert_eq!(o.devices, None);
        assert_eq!(o.wait, Duration::from_secs(10));
        assert!(o.local.cidata && o.local.config_drive);
        assert_eq!(o.clouds, Cloud::ALL);
    }

    #[test]
    fn options_and_sources() {
        let o = args(&[
            "--config-dir",
            "/tmp/c",
            "--sys",
            "/tmp/s",
            "--device",
            "a.iso",
            "--device",
            "/dev/sr0",
            "--wait",
            "0.5",
            "gcp",
            "openstack",
        ])
        .unwrap();
        assert_eq!(o.config_dir, PathBuf::from("/tmp/c"));
        assert_eq!(o.sys, PathBuf::from("/tmp/s"));
        assert_eq!(
            o.devices,
            Some(vec![PathBuf::from("a.iso"), PathBuf::from("/dev/sr0")])
        );
        assert_eq!(o.wait, Duration::from_millis(500));
        assert!(!o.local.cidata && o.local.config_drive);
        assert_eq!(o.clouds, [Cloud::Gce]);
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(args(&["--sys"]).unwrap_err(), "--sys needs a value");
        assert_eq!(args(&["vmware"]).unwrap_err(), "unknown source \"vmware\"");
        assert_eq!(args(&["-v"]).unwrap_err(), "unknown option \"-v\"");
        assert!(
            args(&["--wait", "-1"])
                .unwrap_err()
                .contains("--wait \"-1\"")
        );
        assert!(args(&["--wait", "NaN"]).is_err());
    }
}
