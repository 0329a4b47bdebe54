//! The OVF descriptor and manifest of an OVA: a virtual appliance with one streamOptimized VMDK,
//! as vSphere imports it.
//!
//! An OVA is a tar (ustar) holding, in this order, the descriptor (`NAME.ovf`, OVF 1.0 XML), the
//! manifest (`NAME.mf`, one `SHA256(file)= hex` line per other file) and the disk. The
//! descriptor lists the files (`References`), the disk's capacity and format (`DiskSection`),
//! one network (`NetworkSection`) and the virtual machine: its guest OS
//! (`OperatingSystemSection`, a CIM OS type and VMware's guest id) and its hardware (CPUs,
//! memory, an LSI Logic SCSI controller with the disk, one VMXNET3 NIC, and EFI firmware when
//! asked for, as a `vmw:Config` item).

use std::fmt::Write as _;

use crate::image::Arch;

/// The OVF descriptor of an appliance with one streamOptimized disk.
#[derive(Debug, Clone)]
pub struct Appliance<'a> {
    /// The virtual machine's name.
    pub name: &'a str,
    /// The disk's file name in the OVA.
    pub disk_file: &'a str,
    /// The disk file's size in bytes.
    pub disk_file_size: u64,
    /// The disk's virtual size in bytes.
    pub capacity: u64,
    /// Bytes of the disk holding data.
    pub populated_size: u64,
    /// Boot with UEFI firmware (arm64 always does).
    pub uefi: bool,
    /// The guest's architecture.
    pub arch: Arch,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
}

/// The text of `s` escaped for XML character data and attribute values.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 cannot hold at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push('_'),
            c => out.push(c),
        }
    }
    out
}

/// The guest OS: CIM `OSType` (101 = "Linux 64-Bit"), VMware's guest id, and a description.
fn guest(arch: Arch) -> (u32, &'static str, &'static str) {
    match arch {
        // VMware names the architecture apart from the guest id (vSphere's guest architecture
        // property), so the arm64 guest shares the Linux id.
        Arch::Arm64 => (
            101,
            "other5xLinux64Guest",
            "Other 5.x or later Linux (64-bit Arm)",
        ),
        Arch::Amd64 | Arch::S390x => (
            101,
            "other5xLinux64Guest",
            "Other 5.x or later Linux (64-bit)",
        ),
    }
}

/// The OVF 1.0 descriptor of `a`, as vSphere imports it.
pub fn descriptor(a: &Appliance<'_>) -> String {
    let name = escape(a.name);
    let file = escape(a.disk_file);
    let (os_id, os_type, os_description) = guest(a.arch);
    // Hardware version 13 (ESXi 6.5) boots EFI guests; ESXi on Arm starts at 17.
    let hardware = match a.arch {
        Arch::Arm64 => "vmx-17",
        Arch::Amd64 | Arch::S390x => "vmx-13",
    };
    let efi = a.uefi || a.arch == Arch::Arm64;
    let mut x = String::new();
    let _ = write!(
        x,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{file}" ovf:id="file1" ovf:size="{file_size}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{capacity}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="{populated}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network">
      <Description>The VM Network network</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="{name}">
    <Info>A virtual machine</Info>
    <Name>{name}</Name>
    <OperatingSystemSection ovf:id="{os_id}" vmw:osType="{os_type}">
      <Info>The kind of installed guest operating system</Info>
      <Description>{os_description}</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>{name}</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>{hardware}</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>{cpus} virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{cpus}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>{memory}MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{memory}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI Controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard Disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>VM Network</rasd:Connection>
        <rasd:Description>VmxNet3 ethernet adapter on "VM Network"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
"#,
        file_size = a.disk_file_size,
        capacity = a.capacity,
        populated = a.populated_size,
        cpus = a.cpus,
        memory = a.memory_mib,
    );
    if efi {
        x.push_str(
            "      <vmw:Config ovf:required=\"false\" vmw:key=\"firmware\" vmw:value=\"efi\"/>\n",
        );
    }
    x.push_str("    </VirtualHardwareSection>\n  </VirtualSystem>\n</Envelope>\n");
    x
}

/// The OVA manifest: one `SHA256(file)= hex` line per (file name, SHA-256 hex digest).
pub fn manifest(files: &[(&str, &str)]) -> String {
    files
        .iter()
        .map(|(name, digest)| format!("SHA256({name})= {digest}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small well-formedness check: tags nest and close, attributes are quoted, every `&`
    /// starts a known entity, and nothing is left open. Returns the element names in order.
    fn check_xml(x: &str) -> Result<Vec<String>, String> {
        let body = x
            .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
            .ok_or("no XML declaration")?;
        let mut stack: Vec<String> = Vec::new();
        let mut names = Vec::new();
        let mut rest = body;
        while let Some(open) = rest.find('<') {
            check_text(&rest[..open])?;
            let close = rest[open..].find('>').ok_or("unclosed tag")? + open;
            let tag = &rest[open + 1..close];
            rest = &rest[close + 1..];
            if let Some(name) = tag.strip_prefix('/') {
                let top = stack.pop().ok_or(format!("stray </{name}>"))?;
                if top != name {
                    return Err(format!("</{name}> closes <{top}>"));
                }
                continue;
            }
            let (tag, empty) = match tag.strip_suffix('/') {
                Some(t) => (t, true),
                None => (tag, false),
            };
            let name = tag
                .split_whitespace()
                .next()
                .ok_or("empty tag")?
                .to_string();
            let mut attrs = tag[name.len()..].trim();
            while !attrs.is_empty() {
                let eq = attrs
                    .find("=\"")
                    .ok_or(format!("bad attribute in <{name}>"))?;
                let end = attrs[eq + 2..].find('"').ok_or("unquoted attribute")? + eq + 2;
                check_text(&attrs[eq + 2..end])?;
                attrs = attrs[end + 1..].trim_start();
            }
            names.push(name.clone());
            if !empty {
                stack.push(name);
            }
        }
        check_text(rest)?;
        if stack.is_empty() && !rest.contains('<') {
            Ok(names)
        } else {
            Err(format!("left open: {stack:?}"))
        }
    }

    /// Text and attribute values: every `&` starts one of the predefined entities.
    fn check_text(t: &str) -> Result<(), String> {
        for (i, _) in t.match_indices('&') {
            let ok = ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                .iter()
                .any(|e| t[i..].starts_with(e));
            if !ok {
                return Err(format!("bare & in {t:?}"));
            }
        }
        Ok(())
    }

    fn appliance<'a>(name: &'a str, uefi: bool, arch: Arch) -> Appliance<'a> {
        Appliance {
            name,
            disk_file: "disk.vmdk",
            disk_file_size: 123_456,
            capacity: 10 << 30,
            populated_size: 7 << 20,
            uefi,
            arch,
            cpus: 2,
            memory_mib: 1024,
        }
    }

    #[test]
    fn descriptor_is_well_formed_and_says_the_sizes() {
        let x = descriptor(&appliance("web & <db> \"one\"", false, Arch::Amd64));
        let names = check_xml(&x).unwrap_or_else(|e| panic!("{e}\n{x}"));
        for section in [
            "References",
            "DiskSection",
            "NetworkSection",
            "VirtualSystem",
            "OperatingSystemSection",
            "VirtualHardwareSection",
        ] {
            assert!(names.iter().any(|n| n == section), "{section}");
        }
        assert_eq!(names.iter().filter(|n| *n == "Item").count(), 5);
        assert!(x.contains(r#"ovf:href="disk.vmdk" ovf:id="file1" ovf:size="123456""#));
        assert!(x.contains(r#"ovf:capacity="10737418240""#));
        assert!(x.contains(r#"ovf:populatedSize="7340032""#));
        assert!(x.contains("vmdk.html#streamOptimized"));
        assert!(x.contains("<Name>web &amp; &lt;db&gt; &quot;one&quot;</Name>"));
        assert!(x.contains(r#"ovf:id="101" vmw:osType="other5xLinux64Guest""#));
        assert!(x.contains("<rasd:ResourceSubType>lsilogic</rasd:ResourceSubType>"));
        assert!(!x.contains("firmware"));
    }

    #[test]
    fn efi_firmware_when_asked_and_always_on_arm64() {
        let x = descriptor(&appliance("a", true, Arch::Amd64));
        check_xml(&x).unwrap();
        assert!(x.contains(r#"vmw:key="firmware" vmw:value="efi""#));
        let arm = descriptor(&appliance("a", false, Arch::Arm64));
        check_xml(&arm).unwrap();
        assert!(arm.contains(r#"vmw:value="efi""#));
        assert!(arm.contains("64-bit Arm"));
        assert!(arm.contains("vmx-17"));
    }

    #[test]
    fn the_checker_catches_broken_xml() {
        let head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
        for bad in ["<a><b></a></b>", "<a>x & y</a>", "<a b=c/>", "<a>"] {
            assert!(check_xml(&format!("{head}{bad}")).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifest_lines() {
        let m = manifest(&[("a.ovf", "00ff"), ("disk.vmdk", "abcd")]);
        assert_eq!(m, "SHA256(a.ovf)= 00ff\nSHA256(disk.vmdk)= abcd\n");
    }
}
