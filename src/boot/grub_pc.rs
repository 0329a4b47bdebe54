//! GRUB for PC BIOS (`i386-pc`), assembled and installed natively from the files Debian's
//! `grub-pc-bin` ships in `/usr/lib/grub/i386-pc`, the way `grub-mkimage -O i386-pc` and
//! `grub-install` (setup) put them together, without running either:
//!
//! - `core.img` = `diskboot.img` (the first sector; its last 12 bytes are the blocklist of
//!   the sectors that follow) + `lzma_decompress.img` (real-mode start-up and decompressor;
//!   bytes 0x08 and 0x0C hold the compressed and uncompressed sizes) + an LZMA stream of
//!   `kernel.img`'s loadable bytes followed by the module area: a module-info header
//!   (magic `gmim`, offset, size), then each module as a header (type, size) and its bytes,
//!   dependencies first as `moddep.lst` orders them, then the embedded configuration and the
//!   prefix, each padded to 4 bytes.
//! - Installation: `core.img` goes into the sectors after the MBR (the gap before the first
//!   partition), its blocklist names those sectors, and `boot.img` becomes the MBR's boot
//!   code with the sector of `core.img`, "boot drive from the BIOS" and the hard-disk
//!   workaround patched in, around the disk signature and partition table. No Reed-Solomon
//!   redundancy is added (its size field stays 0, which the start-up code skips).
//!
//! LZMA: the decompressor expects a raw LZMA1 stream (no header) with lc=3, lp=0, pb=2, as
//! GRUB's own `LzmaEncode` call writes it; it stops after the uncompressed size, so the end
//! marker liblzma's raw LZMA1 encoder appends is harmless. The `liblzma` crate (the
//! maintained fork of `xz2`, building xz's own liblzma from source) is used because it is the
//! reference encoder with a raw LZMA1 mode and real match finding; the pure-Rust `lzma-rs`
//! only writes literals, which would make `core.img` several times larger.

use std::collections::BTreeMap;

/// Where `grub-pc-bin` has GRUB's i386-pc files.
pub const DIR: &str = "usr/lib/grub/i386-pc";

/// Bytes of `boot.img` that become the MBR's boot code (up to the disk signature).
pub const BOOT_CODE_LEN: usize = 440;

const SECTOR: usize = 512;
/// `kernel.img` is linked to run here (GRUB_KERNEL_I386_PC_LINK_ADDR).
const LINK_ADDR: u32 = 0x9000;
/// The decompressor runs at 0x8200 and must end before the kernel's link address.
const MAX_DECOMPRESSOR: usize = 0x9000 - 0x8200;
/// core.img (after its first sector) is loaded at 0x8200 and must end below 0x78000.
const MAX_CORE_END: usize = 0x78000;
/// The kernel with its bss must end below 0x68000.
const MAX_KERNEL_END: u32 = 0x68000;
/// The segment the blocklist loads the sectors after diskboot.img to (0x8200 >> 4).
const LOAD_SEGMENT: u16 = 0x820;

/// Offsets in lzma_decompress.img (include/grub/offsets.h).
const COMPRESSED_SIZE: usize = 0x08;
const UNCOMPRESSED_SIZE: usize = 0x0C;
const REED_SOLOMON_REDUNDANCY: usize = 0x10;
/// Offsets in boot.img (include/grub/i386/pc/boot.h).
const KERNEL_SECTOR: usize = 0x5C;
const BOOT_DRIVE: usize = 0x64;
const DRIVE_CHECK: usize = 0x66;

/// "gmim": the module-info magic.
const MODULE_MAGIC: u32 = 0x676d_696d;
/// Module object types (include/grub/kernel.h).
const OBJ_TYPE_ELF: u32 = 0;
const OBJ_TYPE_CONFIG: u32 = 2;
const OBJ_TYPE_PREFIX: u32 = 3;

/// Why GRUB could not be assembled or installed.
#[derive(Debug, thiserror::Error)]
pub enum GrubError {
    /// A file could not be had (the caller's message).
    #[error("{0}")]
    Missing(String),
    /// A file is not what GRUB's tools expect.
    #[error("{file}: {reason}")]
    Bad {
        /// The file, relative to the i386-pc directory.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The image does not fit where it must go.
    #[error("{0}")]
    TooBig(String),
}

fn bad(file: &str, reason: impl Into<String>) -> GrubError {
    GrubError::Bad {
        file: file.into(),
        reason: reason.into(),
    }
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The modules `wanted` with their dependencies from `moddep.lst`, dependencies first, each
/// once (the order `grub-mkimage` embeds them in, so each module's dependencies are loaded
/// before it).
pub fn resolve_modules(moddep: &str, wanted: &[&str]) -> Vec<String> {
    let deps: BTreeMap<&str, Vec<&str>> = moddep
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(m, d)| (m.trim(), d.split_whitespace().collect()))
        .collect();
    fn add(
        m: &str,
        deps: &BTreeMap<&str, Vec<&str>>,
        out: &mut Vec<String>,
        seen: &mut Vec<String>,
    ) {
        if out.iter().any(|x| x == m) || seen.iter().any(|x| x == m) {
            return;
        }
        seen.push(m.to_string());
        for d in deps.get(m).into_iter().flatten() {
            add(d, deps, out, seen);
        }
        out.push(m.to_string());
    }
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for m in wanted {
        add(m, &deps, &mut out, &mut seen);
    }
    out
}

/// The loadable bytes of `kernel.img` (an ELF32 linked at 0x9000): every allocated
/// PROGBITS section at its address, from the link address to the end of `.data`.
fn kernel_bytes(elf: &[u8]) -> Result<Vec<u8>, GrubError> {
    const FILE: &str = "kernel.img";
    if elf.get(..4) != Some(b"\x7fELF") || elf.get(4) != Some(&1) || elf.get(5) != Some(&1) {
        return Err(bad(FILE, "not a little-endian 32-bit ELF file"));
    }
    if u16_at(elf, 0x12) != Some(3) {
        return Err(bad(FILE, "not an i386 ELF file"));
    }
    let trunc = || bad(FILE, "truncated section table");
    let shoff = u32_at(elf, 0x20).ok_or_else(trunc)? as usize;
    let shentsize = u16_at(elf, 0x2E).ok_or_else(trunc)? as usize;
    let shnum = u16_at(elf, 0x30).ok_or_else(trunc)? as usize;
    if shentsize < 40 {
        return Err(trunc());
    }
    struct Sec {
        kind: u32,
        flags: u32,
        addr: u32,
        offset: usize,
        size: usize,
    }
    let mut secs = Vec::new();
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        let f = |o: usize| u32_at(elf, h + o).ok_or_else(trunc);
        secs.push(Sec {
            kind: f(4)?,
            flags: f(8)?,
            addr: f(12)?,
            offset: f(16)? as usize,
            size: f(20)? as usize,
        });
    }
    const SHT_PROGBITS: u32 = 1;
    const SHT_NOBITS: u32 = 8;
    const SHF_ALLOC: u32 = 2;
    const SHF_EXECINSTR: u32 = 4;
    let loaded: Vec<&Sec> = secs
        .iter()
        .filter(|s| s.kind == SHT_PROGBITS && s.flags & SHF_ALLOC != 0)
        .collect();
    match loaded.iter().find(|s| s.flags & SHF_EXECINSTR != 0) {
        Some(text) if text.addr == LINK_ADDR => {}
        Some(text) => {
            return Err(bad(
                FILE,
                format!(
                    "its code starts at {:#x}, not at {LINK_ADDR:#x}: not an i386-pc kernel",
                    text.addr
                ),
            ));
        }
        None => return Err(bad(FILE, "no code section")),
    }
    let mut end = 0u32;
    for s in &loaded {
        if s.addr < LINK_ADDR {
            return Err(bad(FILE, format!("a section at {:#x}", s.addr)));
        }
        end = end.max(s.addr + s.size as u32);
    }
    let bss_end = secs
        .iter()
        .filter(|s| s.kind == SHT_NOBITS && s.flags & SHF_ALLOC != 0)
        .map(|s| s.addr + s.size as u32)
        .max()
        .unwrap_or(end)
        .max(end);
    if bss_end > MAX_KERNEL_END {
        return Err(GrubError::TooBig(format!(
            "kernel.img ends at {bss_end:#x}, beyond {MAX_KERNEL_END:#x}"
        )));
    }
    let mut out = vec![0u8; (end - LINK_ADDR) as usize];
    for s in &loaded {
        let from = elf
            .get(s.offset..s.offset + s.size)
            .ok_or_else(|| bad(FILE, "a section runs past the end of the file"))?;
        let at = (s.addr - LINK_ADDR) as usize;
        out[at..at + s.size].copy_from_slice(from);
    }
    Ok(out)
}

/// One module-area object: header (type, size including the header) and bytes padded to 4.
fn push_object(area: &mut Vec<u8>, kind: u32, bytes: &[u8], nul: bool) {
    let len = align4(bytes.len() + usize::from(nul));
    area.extend_from_slice(&kind.to_le_bytes());
    area.extend_from_slice(&((len + 8) as u32).to_le_bytes());
    let start = area.len();
    area.extend_from_slice(bytes);
    area.resize(start + len, 0);
}

/// The raw LZMA1 filter grub-mkimage uses and lzma_decompress.img expects: lc=3, lp=0,
/// pb=2, a 64 KiB dictionary.
fn grub_lzma1() -> Result<liblzma::stream::Filters, liblzma::stream::Error> {
    let mut opts = liblzma::stream::LzmaOptions::new_preset(9)?;
    opts.dict_size(1 << 16)
        .literal_context_bits(3)
        .literal_position_bits(0)
        .position_bits(2);
    let mut filters = liblzma::stream::Filters::new();
    filters.lzma1(&opts);
    Ok(filters)
}

/// `data` as a raw LZMA1 stream ([`grub_lzma1`]).
fn lzma(data: &[u8]) -> Result<Vec<u8>, GrubError> {
    use liblzma::stream::{Action, Status, Stream};
    let err = |e: liblzma::stream::Error| GrubError::Bad {
        file: "core.img".into(),
        reason: format!("LZMA compression failed: {e}"),
    };
    let mut stream = Stream::new_raw_encoder(&grub_lzma1().map_err(err)?).map_err(err)?;
    let mut out = Vec::with_capacity(data.len() + 4096);
    loop {
        let consumed = stream.total_in() as usize;
        if out.capacity() - out.len() < 4096 {
            out.reserve(out.capacity());
        }
        match stream
            .process_vec(&data[consumed..], &mut out, Action::Finish)
            .map_err(err)?
        {
            Status::StreamEnd => return Ok(out),
            _ => continue,
        }
    }
}

/// What `core.img` is made of besides the files: the modules wanted (their dependencies are
/// added), the prefix and the configuration run before anything else.
#[derive(Debug, Clone)]
pub struct CoreSpec<'a> {
    /// Modules to embed (`biosdisk`, `part_msdos`, `fat`, `linux`, ...).
    pub modules: &'a [&'a str],
    /// GRUB's `$prefix` (`(hd0,msdos1)/boot/grub`).
    pub prefix: &'a str,
    /// The embedded configuration, run by the rescue parser after the modules are loaded.
    pub config: &'a str,
}

/// A `core.img` and what it is made of.
#[derive(Debug, Clone)]
pub struct CoreImage {
    /// diskboot.img + lzma_decompress.img + the compressed kernel and modules, not padded.
    pub bytes: Vec<u8>,
    /// The modules embedded, in order.
    pub modules: Vec<String>,
    /// Bytes of the kernel and module area before compression.
    pub uncompressed: usize,
}

/// Assemble `core.img` from the i386-pc files `load` returns by name (`kernel.img`,
/// `moddep.lst`, `fat.mod`, ...), as `grub-mkimage -O i386-pc` does.
pub fn core_image(
    load: &mut dyn FnMut(&str) -> Result<Vec<u8>, GrubError>,
    spec: &CoreSpec<'_>,
) -> Result<CoreImage, GrubError> {
    let moddep = load("moddep.lst")?;
    let modules = resolve_modules(&String::from_utf8_lossy(&moddep), spec.modules);
    let mut image = kernel_bytes(&load("kernel.img")?)?;
    let mut area = Vec::new();
    for m in &modules {
        let name = format!("{m}.mod");
        let bytes = load(&name)?;
        if bytes.get(..4) != Some(b"\x7fELF") {
            return Err(bad(&name, "not an ELF module"));
        }
        push_object(&mut area, OBJ_TYPE_ELF, &bytes, false);
    }
    push_object(&mut area, OBJ_TYPE_CONFIG, spec.config.as_bytes(), true);
    push_object(&mut area, OBJ_TYPE_PREFIX, spec.prefix.as_bytes(), true);
    let total = 12 + area.len();
    image.extend_from_slice(&MODULE_MAGIC.to_le_bytes());
    image.extend_from_slice(&12u32.to_le_bytes());
    image.extend_from_slice(&(total as u32).to_le_bytes());
    image.extend_from_slice(&area);
    let compressed = lzma(&image)?;

    let mut decompressor = load("lzma_decompress.img")?;
    if decompressor.len() > MAX_DECOMPRESSOR || decompressor.len() < 0x20 {
        return Err(bad(
            "lzma_decompress.img",
            format!(
                "{} bytes: not an i386-pc decompressor (at most {MAX_DECOMPRESSOR})",
                decompressor.len()
            ),
        ));
    }
    decompressor[COMPRESSED_SIZE..COMPRESSED_SIZE + 4]
        .copy_from_slice(&(compressed.len() as u32).to_le_bytes());
    decompressor[UNCOMPRESSED_SIZE..UNCOMPRESSED_SIZE + 4]
        .copy_from_slice(&(image.len() as u32).to_le_bytes());
    decompressor[REED_SOLOMON_REDUNDANCY..REED_SOLOMON_REDUNDANCY + 4].fill(0);
    let after = decompressor.len() + compressed.len();
    if LINK_ADDR as usize + after > MAX_CORE_END {
        return Err(GrubError::TooBig(format!(
            "GRUB's core image is {after} bytes after its first sector; at most {} fit below {MAX_CORE_END:#x}",
            MAX_CORE_END - LINK_ADDR as usize
        )));
    }

    let mut diskboot = load("diskboot.img")?;
    if diskboot.len() != SECTOR || u16_at(&diskboot, SECTOR - 2) != Some(LOAD_SEGMENT) {
        return Err(bad(
            "diskboot.img",
            "not an i386-pc diskboot.img (512 bytes ending in a blocklist to segment 0x820)",
        ));
    }
    let sectors = after.div_ceil(SECTOR) as u16;
    diskboot[SECTOR - 4..SECTOR - 2].copy_from_slice(&sectors.to_le_bytes());
    let mut bytes = diskboot;
    bytes.extend_from_slice(&decompressor);
    bytes.extend_from_slice(&compressed);
    Ok(CoreImage {
        bytes,
        modules,
        uncompressed: image.len(),
    })
}

/// Install `core` at 512-byte sector `core_lba` of a disk whose first sector is `mbr`:
/// returns `core.img` padded to whole sectors with its blocklist naming the sectors after its
/// first, and puts `boot_img`'s code (patched to load `core_lba`) into `mbr[..440]`, keeping
/// the disk signature and partition table.
pub fn install(
    boot_img: &[u8],
    core: &[u8],
    core_lba: u64,
    mbr: &mut [u8; 512],
) -> Result<Vec<u8>, GrubError> {
    if boot_img.len() != SECTOR || boot_img[510..] != [0x55, 0xAA] {
        return Err(bad("boot.img", "not a 512-byte boot sector"));
    }
    if core.len() < SECTOR {
        return Err(bad("core.img", "shorter than a sector"));
    }
    let nsec = core.len().div_ceil(SECTOR);
    let mut out = core.to_vec();
    out.resize(nsec * SECTOR, 0);
    // The blocklist grows down from the end of the first sector: one entry for the sectors
    // that follow, then a zero terminator.
    let entry = SECTOR - 12;
    out[entry..entry + 8].copy_from_slice(&(core_lba + 1).to_le_bytes());
    out[entry + 8..entry + 10].copy_from_slice(&((nsec - 1) as u16).to_le_bytes());
    out[entry + 10..entry + 12].copy_from_slice(&LOAD_SEGMENT.to_le_bytes());
    out[entry - 12..entry].fill(0);

    let mut code = [0u8; SECTOR];
    code.copy_from_slice(boot_img);
    code[KERNEL_SECTOR..KERNEL_SECTOR + 8].copy_from_slice(&core_lba.to_le_bytes());
    // 0xFF: use the drive the BIOS booted from (DL).
    code[BOOT_DRIVE] = 0xFF;
    // A hard disk: nop out the jump that skips the "trust DL only if 0x80-0x8F" workaround.
    code[DRIVE_CHECK] = 0x90;
    code[DRIVE_CHECK + 1] = 0x90;
    mbr[..BOOT_CODE_LEN].copy_from_slice(&code[..BOOT_CODE_LEN]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal i386 ELF with `.text` at 0x9000, `.data` after it and a `.bss`.
    fn fake_kernel() -> Vec<u8> {
        let mut elf = vec![0u8; 0x100];
        elf[..6].copy_from_slice(b"\x7fELF\x01\x01");
        elf[0x12..0x14].copy_from_slice(&3u16.to_le_bytes());
        let text = b"TEXT-CODE";
        let data = b"DATA";
        elf[0x80..0x80 + text.len()].copy_from_slice(text);
        elf[0x90..0x94].copy_from_slice(data);
        let shoff = elf.len();
        elf[0x20..0x24].copy_from_slice(&(shoff as u32).to_le_bytes());
        elf[0x2E..0x30].copy_from_slice(&40u16.to_le_bytes());
        elf[0x30..0x32].copy_from_slice(&4u16.to_le_bytes());
        let sec = |kind: u32, flags: u32, addr: u32, off: u32, size: u32| {
            let mut s = vec![0u8; 40];
            for (i, v) in [kind, flags, addr, off, size].iter().enumerate() {
                s[4 + 4 * i..8 + 4 * i].copy_from_slice(&v.to_le_bytes());
            }
            s
        };
        elf.extend(vec![0u8; 40]);
        elf.extend(sec(1, 6, 0x9000, 0x80, text.len() as u32));
        elf.extend(sec(1, 3, 0x9010, 0x90, 4));
        elf.extend(sec(8, 3, 0x9020, 0, 0x100));
        elf
    }

    fn files() -> BTreeMap<String, Vec<u8>> {
        let mut f = BTreeMap::new();
        f.insert("kernel.img".into(), fake_kernel());
        f.insert(
            "moddep.lst".into(),
            b"linux: relocator boot\nrelocator: mmap\nmmap: boot\nboot:\nfat: fshelp\nfshelp:\n"
                .to_vec(),
        );
        for m in ["linux", "relocator", "mmap", "boot", "fat", "fshelp"] {
            let mut b = b"\x7fELF".to_vec();
            b.extend_from_slice(m.as_bytes());
            f.insert(format!("{m}.mod"), b);
        }
        let mut d = vec![0xEAu8; 0x40];
        d[COMPRESSED_SIZE..0x14].fill(0);
        f.insert("lzma_decompress.img".into(), d);
        let mut diskboot = vec![0x90u8; 512];
        diskboot[500..].fill(0);
        diskboot[510..].copy_from_slice(&LOAD_SEGMENT.to_le_bytes());
        f.insert("diskboot.img".into(), diskboot);
        let mut boot = vec![0x11u8; 512];
        boot[510..].copy_from_slice(&[0x55, 0xAA]);
        f.insert("boot.img".into(), boot);
        f
    }

    fn build(files: &BTreeMap<String, Vec<u8>>) -> CoreImage {
        let mut load = |n: &str| {
            files
                .get(n)
                .cloned()
                .ok_or_else(|| GrubError::Missing(n.into()))
        };
        core_image(
            &mut load,
            &CoreSpec {
                modules: &["fat", "linux"],
                prefix: "(hd0,msdos1)/boot/grub",
                config: "boot\n",
            },
        )
        .unwrap()
    }

    fn unlzma(data: &[u8], size: usize) -> Vec<u8> {
        use liblzma::stream::{Action, Stream};
        let mut s = Stream::new_raw_decoder(&grub_lzma1().unwrap()).unwrap();
        let mut out = Vec::with_capacity(size + 1024);
        let _ = s.process_vec(data, &mut out, Action::Finish).unwrap();
        out
    }

    #[test]
    fn dependencies_come_first_once() {
        let dep = "linux: relocator normal boot\nnormal: boot extcmd\nrelocator: mmap\nmmap: boot\nboot:\nextcmd:\n";
        assert_eq!(
            resolve_modules(dep, &["boot", "linux"]),
            ["boot", "mmap", "relocator", "extcmd", "normal", "linux"]
        );
    }

    #[test]
    fn layout_of_core_img() {
        let f = files();
        let core = build(&f);
        assert_eq!(
            core.modules,
            ["fshelp", "fat", "boot", "mmap", "relocator", "linux"]
        );
        let b = &core.bytes;
        // diskboot.img first; its blocklist says how many sectors follow.
        let after = b.len() - 512;
        assert_eq!(u16_at(b, 508), Some(after.div_ceil(512) as u16));
        assert_eq!(u16_at(b, 510), Some(0x820));
        // Then the decompressor with both sizes patched, then the stream.
        let d = &b[512..512 + 0x40];
        let compressed = u32_at(d, COMPRESSED_SIZE).unwrap() as usize;
        let uncompressed = u32_at(d, UNCOMPRESSED_SIZE).unwrap() as usize;
        assert_eq!(u32_at(d, REED_SOLOMON_REDUNDANCY), Some(0));
        assert_eq!(512 + 0x40 + compressed, b.len());
        assert_eq!(uncompressed, core.uncompressed);
        let image = unlzma(&b[512 + 0x40..], uncompressed);
        assert!(image.len() >= uncompressed);
        let image = &image[..uncompressed];
        // kernel.img's .text at 0, .data at 0x10, no bss; then the module info.
        assert_eq!(&image[..9], b"TEXT-CODE");
        assert_eq!(&image[0x10..0x14], b"DATA");
        let info = 0x14;
        assert_eq!(u32_at(image, info), Some(MODULE_MAGIC));
        assert_eq!(u32_at(image, info + 4), Some(12));
        assert_eq!(
            u32_at(image, info + 8).unwrap() as usize,
            image.len() - info
        );
        // Objects: six modules, the config, the prefix; each padded to 4 bytes.
        let mut at = info + 12;
        let mut kinds = Vec::new();
        while at < image.len() {
            let kind = u32_at(image, at).unwrap();
            let size = u32_at(image, at + 4).unwrap() as usize;
            assert_eq!(size % 4, 0);
            kinds.push((kind, image[at + 8..at + size].to_vec()));
            at += size;
        }
        assert_eq!(at, image.len());
        assert_eq!(kinds.len(), 8);
        assert_eq!(kinds[0], (0, b"\x7fELFfshelp\0\0".to_vec()));
        assert_eq!(kinds[6], (2, b"boot\n\0\0\0".to_vec()));
        assert_eq!(kinds[7].0, 3);
        assert!(kinds[7].1.starts_with(b"(hd0,msdos1)/boot/grub\0"));
    }

    #[test]
    fn the_same_files_give_the_same_core() {
        let f = files();
        assert_eq!(build(&f).bytes, build(&f).bytes);
    }

    #[test]
    fn installing_patches_the_blocklist_and_the_mbr() {
        let f = files();
        let core = build(&f);
        let mut mbr = [0u8; 512];
        mbr[440..444].copy_from_slice(&0xDEAD_BEEFu32.to_le_bytes());
        mbr[446] = 0x80;
        mbr[510] = 0x55;
        mbr[511] = 0xAA;
        let before = mbr;
        let out = install(&f["boot.img"], &core.bytes, 1, &mut mbr).unwrap();
        assert_eq!(out.len() % 512, 0);
        let nsec = out.len() / 512;
        assert_eq!(u64::from_le_bytes(out[500..508].try_into().unwrap()), 2);
        assert_eq!(u16_at(&out, 508), Some((nsec - 1) as u16));
        assert_eq!(u16_at(&out, 510), Some(0x820));
        assert!(out[488..500].iter().all(|&b| b == 0), "terminator");
        assert_eq!(&out[512..core.bytes.len()], &core.bytes[512..]);
        assert_eq!(
            u64::from_le_bytes(mbr[KERNEL_SECTOR..KERNEL_SECTOR + 8].try_into().unwrap()),
            1
        );
        assert_eq!(mbr[BOOT_DRIVE], 0xFF);
        assert_eq!(&mbr[DRIVE_CHECK..DRIVE_CHECK + 2], &[0x90, 0x90]);
        assert_eq!(mbr[0], 0x11);
        assert_eq!(&mbr[440..], &before[440..], "signature and table kept");
    }

    #[test]
    fn wrong_files_are_named() {
        let mut f = files();
        f.insert("kernel.img".into(), b"MZ not elf".to_vec());
        let mut load = |n: &str| {
            f.get(n)
                .cloned()
                .ok_or_else(|| GrubError::Missing(n.into()))
        };
        let spec = CoreSpec {
            modules: &["fat"],
            prefix: "",
            config: "",
        };
        let err = core_image(&mut load, &spec).unwrap_err().to_string();
        assert!(err.starts_with("kernel.img: "), "{err}");
    }
}
