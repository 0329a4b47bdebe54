//! GPTs with fuzz-chosen partitions on disks of fuzz-chosen sizes: never a panic; a table
//! written reads back (the `gpt` crate) with the same partitions, inside the usable area and
//! apart from each other.
#![no_main]

use arbitrary::Arbitrary;
use gpt::GptConfig;
use gpt::disk::LogicalBlockSize;
use libfuzzer_sys::fuzz_target;
use osbuild::disk::gpt::{Partition, usable, write_gpt};
use osbuild_fuzz::SparseDisk;

#[derive(Arbitrary, Debug)]
struct Part {
    type_guid: [u8; 16],
    guid: [u8; 16],
    /// Near the usable area when `near`; anywhere otherwise.
    near: bool,
    first: u64,
    len: u64,
    name: String,
    attributes: u64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    /// Disk size: sectors (small) or a shift (large).
    sectors: u32,
    large: Option<u8>,
    disk_guid: [u8; 16],
    parts: Vec<Part>,
}

fuzz_target!(|input: Input| {
    let size = match input.large {
        Some(shift) => 1u64 << (20 + u32::from(shift % 24)),
        None => u64::from(input.sectors % (64 << 11)) * 512 + u64::from(input.sectors >> 30),
    };
    let first_usable = usable(size).map_or(2048, |(first, _)| first);
    let parts: Vec<Partition> = input
        .parts
        .iter()
        .take(140)
        .map(|p| {
            let (first, last) = if p.near {
                let first = first_usable + p.first % 4096;
                (first, first.saturating_add(p.len % (1 << 24)))
            } else {
                (p.first, p.first.saturating_add(p.len))
            };
            Partition {
                type_guid: uuid::Uuid::from_bytes(p.type_guid),
                guid: uuid::Uuid::from_bytes(p.guid),
                first_lba: first,
                last_lba: last,
                name: p.name.clone(),
                attributes: p.attributes,
            }
        })
        .collect();
    let mut disk = SparseDisk::new(size);
    let guid = uuid::Uuid::from_bytes(input.disk_guid);
    if write_gpt(&mut disk, guid, &parts).is_err() {
        return;
    }
    let back = GptConfig::new()
        .writable(false)
        .logical_block_size(LogicalBlockSize::Lb512)
        .open_from_device(disk)
        .unwrap_or_else(|e| panic!("the table written does not read back: {e}"));
    assert_eq!(*back.guid(), guid);
    let header = back.primary_header().expect("a primary header");
    let got = back.partitions();
    let used: Vec<_> = got.iter().filter(|(_, p)| p.is_used()).collect();
    assert_eq!(used.len(), parts.len(), "partition count");
    let mut ranges = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let g = &got[&(i as u32 + 1)];
        assert_eq!(g.part_type_guid.guid, p.type_guid, "type of {i}");
        assert_eq!(g.part_guid, p.guid, "guid of {i}");
        assert_eq!(
            (g.first_lba, g.last_lba),
            (p.first_lba, p.last_lba),
            "place of {i}"
        );
        assert_eq!(g.flags, p.attributes, "attributes of {i}");
        assert_eq!(g.name, p.name, "name of {i}");
        assert!(
            header.first_usable <= p.first_lba
                && p.first_lba <= p.last_lba
                && p.last_lba <= header.last_usable,
            "partition {i} ({}..={}) outside {}..={}",
            p.first_lba,
            p.last_lba,
            header.first_usable,
            header.last_usable
        );
        ranges.push((p.first_lba, p.last_lba));
    }
    ranges.sort();
    for w in ranges.windows(2) {
        assert!(w[0].1 < w[1].0, "partitions overlap: {:?}", w);
    }
});
