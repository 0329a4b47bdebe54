//! Running what a build wrote: `osbuild run qemu`.

pub mod qemu;
pub mod target;
