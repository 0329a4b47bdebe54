//! Root filesystem assembly: kernel, init images, container bundles and files laid out where
//! LinuxKit users expect them.

pub mod assemble;
pub mod fixups;
pub mod plan;
