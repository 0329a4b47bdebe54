//! Root filesystem assembly: kernel, init images, container bundles (with their OCI runtime
//! config, `runtime.json` and `supervise.json`) and files laid out where LinuxKit users expect them.

pub mod assemble;
pub mod fixups;
pub mod from_spec;
pub mod mount_points;
pub mod oci_config;
pub mod plan;
pub mod runtime_json;
pub mod supervise_json;
