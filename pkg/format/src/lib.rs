//! Block devices for persistent data: recognising what a device holds, finding the disks
//! that are safe to format, and making an ext4 filesystem with `mkfs.ext4`.

pub mod disks;
pub mod flags;
pub mod mkfs;
pub mod probe;
