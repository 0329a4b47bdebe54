//! osbuild assembles minimal, immutable Linux OS images from OCI images and a LinuxKit-style
//! YAML spec.
//!
//! The data flows through the modules in this order:
//! [`spec`] (read, merge and validate the YAML) -> [`image`] (references, registry, cache) ->
//! [`flatten`] (layers into a [`tree::Tree`]) -> [`rootfs`] (lay out kernel, init and container
//! bundles with their OCI runtime configs) -> [`output`] (cpio, tar and the formats built on
//! them). [`build`] drives that flow for one build; [`run`] boots its outputs; the binary is a
//! thin CLI over them.

pub mod build;
pub mod flatten;
pub mod image;
pub mod output;
pub mod pkg;
pub mod progress;
pub mod rootfs;
pub mod run;
pub mod spec;
pub mod tree;
