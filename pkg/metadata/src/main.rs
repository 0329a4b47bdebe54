//! `metadata`: read the metadata a machine was given into `/run/config`, laid out as
//! LinuxKit's metadata package does (`provider`, `hostname`, `ssh/authorized_keys`,
//! `userdata` and, when the user data is a JSON object, its directories and files), and set
//! the host name. Sources, the first that has data wins: local volumes (a CIDATA volume or a
//! CD-ROM, an OpenStack config drive), then the metadata services of AWS, GCE and Azure on
//! the link-local network, the one DMI names first. On Azure it then reports the machine
//! ready. Finding nothing is not an error: the boot goes on, within seconds.

mod args;
mod base64;
mod cloud;
mod config;
mod found;
mod http;
mod iso;
mod local;
mod userdata;

use std::process::ExitCode;

use cloud::{Cloud, dmi, wireserver};
use found::Found;

fn main() -> ExitCode {
    let options = match args::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("metadata: {e}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let mut failed = false;

    let mut found = None;
    let local_wanted = options.local.cidata || options.local.config_drive;
    if local_wanted {
        let devices = options
            .devices
            .clone()
            .unwrap_or_else(|| local::candidates(&options.sys.join("class/block")));
        let (hit, errors) = local::find(&devices, options.local);
        for e in errors {
            eprintln!("metadata: {e}");
        }
        found = hit;
    }

    let mut network_note = String::new();
    if found.is_none() && !options.clouds.is_empty() {
        let named =
            dmi::platform(&options.sys.join("class/dmi/id")).filter(|c| options.clouds.contains(c));
        let order = match named {
            Some(c) => cloud::first_of(&options.clouds, c),
            None => options.clouds.clone(),
        };
        let outcome = cloud::probe(&order, named.is_some(), options.wait);
        for (c, e) in &outcome.errors {
            eprintln!("metadata: {}: {}", c.name(), cloud::chain(e));
            failed = true;
        }
        found = outcome.found;
        network_note = match (outcome.unreachable, named) {
            (Some(why), Some(c)) => format!("; DMI names {}, but {why}", c.name()),
            (Some(why), None) => format!("; no metadata service ({why})"),
            (None, _) => format!(
                "; no {} metadata service gave any",
                order
                    .iter()
                    .map(|c| c.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
    }

    let Some(found) = found else {
        let local_note = if local_wanted {
            "no CIDATA volume, config drive or CD-ROM with data"
        } else {
            "no local volume read"
        };
        let note = if options.clouds.is_empty() {
            String::new()
        } else {
            network_note
        };
        println!("metadata: no metadata: {local_note}{note}");
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    };

    let dir = &options.config_dir;
    let written = match config::write(dir, &found) {
        Ok(w) => w,
        Err(e) => {
            eprintln!(
                "metadata: {}: writing {}: {e}",
                found.describe(),
                dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    println!(
        "metadata: {}: {} into {}",
        found.describe(),
        written.describe(),
        dir.display()
    );
    if let Some(name) = &written.hostname
        && let Err(e) = set_hostname(name)
    {
        eprintln!("metadata: sethostname {name:?}: {e}");
        failed = true;
    }
    if found.report_ready && !report_ready(&found, options.wait) {
        failed = true;
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Set the kernel's host name (see [`found::kernel_hostname`]).
fn set_hostname(name: &str) -> std::io::Result<()> {
    rustix::system::sethostname(found::kernel_hostname(name).as_bytes())
        .map_err(std::io::Error::from)
}

/// Tell Azure's WireServer the machine is ready (trying for up to `patience`); whether that
/// worked.
fn report_ready(found: &Found, patience: std::time::Duration) -> bool {
    match wireserver::report_ready(patience) {
        Ok(goal) => {
            println!(
                "metadata: {}: reported Ready to {} (incarnation {}, container {}, instance {})",
                Cloud::Azure.name(),
                wireserver::WIRESERVER.ip(),
                goal.incarnation,
                goal.container_id,
                goal.instance_id
            );
            true
        }
        Err(e) => {
            eprintln!(
                "metadata: {}: ready report: {}",
                found.describe(),
                cloud::chain(&e)
            );
            false
        }
    }
}
