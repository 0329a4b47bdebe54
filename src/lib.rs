//! osbuild assembles minimal, immutable Linux OS images from OCI images and a LinuxKit-style
//! YAML spec.
//!
//! The data flows through the modules in this order:
//! [`spec`] (read, merge and validate the YAML) -> [`image`] (references, registry, cache) ->
//! [`flatten`] (layers into a [`tree::Tree`]) -> [`rootfs`] (plan and lay out kernel, init and
//! container bundles with their OCI runtime configs) -> [`output`] (the format table and its
//! writers, built from [`boot`] artifacts (initrd, UKI) and [`disk`] layouts (GPT, FAT, ISO
//! 9660, squashfs) over [`archive`] writers (cpio, tar, compression)). [`build`] drives that
//! flow for one build; [`run`] boots its outputs; the binary is a thin CLI over them.

pub mod archive;
pub mod boot;
pub mod build;
pub mod disk;
pub mod error;
pub mod flatten;
pub mod image;
pub mod limits;
pub mod output;
pub mod pkg;
pub mod progress;
pub mod rootfs;
pub mod run;
pub mod spec;
pub mod tree;
