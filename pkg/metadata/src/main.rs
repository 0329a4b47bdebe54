//! `metadata`: find the metadata disk a VM was given (an ISO 9660 volume labelled CIDATA, or a
//! CD-ROM holding `config` or `user-data`), copy the data to `/run/config/userdata` and, when
//! it is a JSON object, lay it out as directories and files under `/run/config` the way
//! LinuxKit's metadata package does. Finding nothing is not an error: the boot goes on.

mod iso;
mod userdata;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Where the data goes.
const CONFIG_DIR: &str = "/run/config";
/// The names the data may have on the volume.
const DATA_NAMES: [&str; 2] = ["user-data", "config"];

/// Block devices that may hold the data: CD-ROMs first, then every other disk.
fn candidates(sys_block: &Path) -> Vec<PathBuf> {
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

fn main() -> ExitCode {
    let mut found = None;
    for device in candidates(Path::new("/sys/class/block")) {
        match iso::read_data(&device, &DATA_NAMES) {
            Ok(Some(data)) => {
                found = Some((device, data));
                break;
            }
            Ok(None) => {}
            Err(e) => eprintln!("metadata: {}: {e}", device.display()),
        }
    }
    let Some((device, data)) = found else {
        println!("metadata: no CIDATA volume or CD-ROM with data found");
        return ExitCode::SUCCESS;
    };
    match userdata::write(Path::new(CONFIG_DIR), &data) {
        Ok(files) => {
            println!(
                "metadata: {} bytes from {} into {CONFIG_DIR} ({files} files)",
                data.len(),
                device.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("metadata: {CONFIG_DIR}: {e}");
            ExitCode::FAILURE
        }
    }
}
