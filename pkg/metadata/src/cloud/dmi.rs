//! Which cloud the machine is in, from what its firmware says in the SMBIOS (DMI) tables, as
//! Linux shows them under `/sys/class/dmi/id`: EC2's vendor fields say "Amazon EC2" (Xen
//! instances: a product version ending in "amazon"), Compute Engine's say "Google", and Azure
//! gives its VMs a fixed chassis asset tag (plain Hyper-V VMs, also "Microsoft Corporation",
//! have another).

use std::path::Path;

use super::Cloud;

/// Azure's chassis asset tag.
pub const AZURE_ASSET_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

/// The cloud the DMI fields under `dmi_dir` name, if any.
pub fn platform(dmi_dir: &Path) -> Option<Cloud> {
    let field = |name: &str| {
        std::fs::read_to_string(dmi_dir.join(name))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    let (sys_vendor, product_name, product_version) = (
        field("sys_vendor"),
        field("product_name"),
        field("product_version"),
    );
    let (bios_vendor, asset_tag) = (field("bios_vendor"), field("chassis_asset_tag"));
    if asset_tag == AZURE_ASSET_TAG {
        Some(Cloud::Azure)
    } else if sys_vendor.starts_with("Amazon EC2")
        || bios_vendor.starts_with("Amazon EC2")
        || product_version.to_ascii_lowercase().ends_with("amazon")
    {
        Some(Cloud::Aws)
    } else if sys_vendor == "Google"
        || bios_vendor == "Google"
        || product_name == "Google Compute Engine"
    {
        Some(Cloud::Gce)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dmi(fields: &[(&str, &str)]) -> Option<Cloud> {
        let dir = tempfile::tempdir().unwrap();
        for (name, value) in fields {
            std::fs::write(dir.path().join(name), format!("{value}\n")).unwrap();
        }
        platform(dir.path())
    }

    #[test]
    fn clouds_by_their_firmware() {
        assert_eq!(
            dmi(&[("sys_vendor", "Amazon EC2"), ("product_name", "m6g.large")]),
            Some(Cloud::Aws)
        );
        assert_eq!(
            dmi(&[("sys_vendor", "Xen"), ("product_version", "4.11.amazon")]),
            Some(Cloud::Aws)
        );
        assert_eq!(
            dmi(&[
                ("sys_vendor", "Google"),
                ("product_name", "Google Compute Engine")
            ]),
            Some(Cloud::Gce)
        );
        assert_eq!(
            dmi(&[
                ("sys_vendor", "Microsoft Corporation"),
                ("product_name", "Virtual Machine"),
                ("chassis_asset_tag", AZURE_ASSET_TAG),
            ]),
            Some(Cloud::Azure)
        );
    }

    #[test]
    fn other_machines_name_none() {
        assert_eq!(dmi(&[]), None);
        assert_eq!(
            dmi(&[
                ("sys_vendor", "QEMU"),
                ("product_name", "Standard PC (Q35 + ICH9, 2009)")
            ]),
            None
        );
        // Hyper-V outside Azure.
        assert_eq!(
            dmi(&[
                ("sys_vendor", "Microsoft Corporation"),
                ("chassis_asset_tag", "1234-5678"),
            ]),
            None
        );
    }
}
