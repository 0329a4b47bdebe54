//! The merge of several spec files, as LinuxKit does it: kernel fields set in a later file win
//! field by field, every list (init, onboot, onshutdown, services, files, volumes, outputs) is appended;
//! `boot` fields set later win.
//! Duplicates are looked for afterwards, on the merged spec.

use super::{KernelSpec, Spec};

/// Merge `later` into `earlier` as LinuxKit does: kernel fields set later win, lists append.
pub fn merge(mut earlier: Spec, later: Spec) -> Spec {
    if let Some(k1) = later.kernel {
        // `file` and `at` name the section that gave the image (else the first section).
        let k0 = earlier.kernel.get_or_insert_with(|| KernelSpec {
            file: k1.file,
            at: k1.at.clone(),
            ..KernelSpec::default()
        });
        if k1.image.is_some() {
            k0.image = k1.image;
            k0.file = k1.file;
            k0.at = k1.at;
        }
        if k1.cmdline.is_some() {
            k0.cmdline = k1.cmdline;
        }
        if k1.binary.is_some() {
            k0.binary = k1.binary;
        }
        if k1.tar.is_some() {
            k0.tar = k1.tar;
        }
        if k1.ucode.is_some() {
            k0.ucode = k1.ucode;
        }
    }
    earlier.init.extend(later.init);
    earlier.init_files.extend(later.init_files);
    earlier.onboot.extend(later.onboot);
    earlier.onshutdown.extend(later.onshutdown);
    earlier.services.extend(later.services);
    earlier.files.extend(later.files);
    earlier.volumes.extend(later.volumes);
    earlier.outputs.extend(later.outputs);
    if let Some(b1) = later.boot {
        let b0 = earlier.boot.get_or_insert_with(Default::default);
        if b1.efi.is_some() {
            b0.efi = b1.efi;
            b0.efi_file = b1.efi_file;
        }
        if b1.bios.is_some() {
            b0.bios = b1.bios;
            b0.bios_file = b1.bios_file;
        }
    }
    if later.trust.is_some() {
        earlier.trust = later.trust;
    }
    earlier
}
