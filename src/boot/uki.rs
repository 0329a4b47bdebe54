//! Unified Kernel Images assembled natively: a systemd EFI stub (a PE32+ image) with the
//! `.osrel`, `.cmdline`, `.linux`, `.initrd`, ... sections appended, written streaming.
//!
//! [`plan`] reads the stub, checks it, and computes the new headers and where every added
//! section goes; [`UkiPlan::write`] then writes the headers, the stub's own section data and
//! each section body straight from its [`Source`]. The output is a function of the inputs
//! only: the stub's `TimeDateStamp` is kept and the PE `CheckSum` is set to zero (UEFI
//! firmware does not check it; ukify zeroes it too).
//!
//! What is changed in the stub: `NumberOfSections`, `SizeOfImage`, `SizeOfInitializedData`,
//! `SizeOfHeaders` (grown, when needed, into the room before the first section's data),
//! `CheckSum` and the appended section headers; whatever follows the stub's last section data
//! (a COFF symbol table some builds leave in, bytes no header declares) is dropped, since the
//! loaded image never holds it. Stub section data is never moved, so no file offset inside the
//! stub changes.

use std::io::{self, Write};

use crate::disk::source::{Source, copy_source};

/// `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`: what every added section is.
const SECTION_CHARACTERISTICS: u32 = 0x4000_0040;
/// The PE32+ optional header magic.
const PE32_PLUS_MAGIC: u16 = 0x20b;
/// `IMAGE_SUBSYSTEM_EFI_APPLICATION`.
const EFI_APPLICATION: u16 = 10;
/// `IMAGE_FILE_LOCAL_SYMS_STRIPPED`, set when the symbol table is dropped.
const LOCAL_SYMS_STRIPPED: u16 = 0x0008;
/// Bytes of one section header.
const SECTION_HEADER_LEN: u64 = 40;
/// Bytes of the PE32+ optional header before its data directories.
const OPTIONAL_FIXED_LEN: u64 = 112;
/// Data directory indexes.
const DIR_SECURITY: u64 = 4;
const DIR_DEBUG: u64 = 6;
/// Bytes of one debug directory entry.
const DEBUG_ENTRY_LEN: u64 = 28;

/// The CPU a PE image is for (its COFF `Machine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeMachine {
    /// x86_64 (`IMAGE_FILE_MACHINE_AMD64`, 0x8664).
    X64,
    /// arm64 (`IMAGE_FILE_MACHINE_ARM64`, 0xAA64).
    Aa64,
}

impl PeMachine {
    /// The COFF `Machine` value.
    pub fn coff_machine(self) -> u16 {
        match self {
            PeMachine::X64 => 0x8664,
            PeMachine::Aa64 => 0xaa64,
        }
    }

    /// The file name of systemd's EFI stub for this machine (`linuxx64.efi.stub`, ...).
    pub fn stub_name(self) -> &'static str {
        match self {
            PeMachine::X64 => "linuxx64.efi.stub",
            PeMachine::Aa64 => "linuxaa64.efi.stub",
        }
    }

    /// The removable-media boot path firmware starts (`EFI/BOOT/BOOTX64.EFI`, ...).
    pub fn default_boot_path(self) -> &'static str {
        match self {
            PeMachine::X64 => "EFI/BOOT/BOOTX64.EFI",
            PeMachine::Aa64 => "EFI/BOOT/BOOTAA64.EFI",
        }
    }
}

/// The name people use for a COFF `Machine` value.
fn machine_name(machine: u16) -> String {
    match machine {
        0x8664 => "x86_64".into(),
        0xaa64 => "arm64".into(),
        0x014c => "i386".into(),
        0x01c2 | 0x01c4 => "arm".into(),
        0x0200 => "ia64".into(),
        0x5064 => "riscv64".into(),
        0x6264 => "loongarch64".into(),
        other => format!("machine {other:#06x}"),
    }
}

/// One section to add to the stub.
#[derive(Clone, Copy)]
pub struct UkiSection<'a> {
    /// The section name, 1 to 8 printable ASCII bytes: `.osrel`, `.cmdline`, `.linux`,
    /// `.initrd`, ... (see the UKI specification).
    pub name: &'static str,
    /// The section body.
    pub source: &'a dyn Source,
}

/// Why a UKI could not be planned or written, or a kernel cannot go into one.
#[derive(Debug, thiserror::Error)]
pub enum UkiError {
    /// The stub does not start with a DOS header and a PE signature.
    #[error("the EFI stub is not a PE image (no MZ header or PE signature)")]
    NotPe,
    /// The stub's optional header is not PE32+.
    #[error("the EFI stub is not a PE32+ image (optional header magic {magic:#x})")]
    NotPe32Plus {
        /// The magic found.
        magic: u16,
    },
    /// A header or table of the stub runs past the end of its bytes.
    #[error("the EFI stub is truncated: its {what} runs past the end of the file")]
    Truncated {
        /// What is cut off.
        what: &'static str,
    },
    /// A structural inconsistency in the stub's headers.
    #[error("the EFI stub is malformed: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// A section header of the stub points outside the file or into the headers.
    #[error("the EFI stub's section {name} {reason}")]
    BadStubSection {
        /// The section's name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The stub is for another CPU.
    #[error("the EFI stub is for {found}, not {expected}")]
    StubMachine {
        /// The stub's machine.
        found: String,
        /// The machine asked for.
        expected: String,
    },
    /// The stub is not an EFI application.
    #[error("the EFI stub is not an EFI application (subsystem {subsystem}, expected 10)")]
    NotEfiApplication {
        /// The subsystem found.
        subsystem: u16,
    },
    /// The stub's section or file alignment is unusable.
    #[error(
        "the EFI stub has invalid alignments (SectionAlignment {section:#x}, FileAlignment {file:#x})"
    )]
    BadAlignment {
        /// `SectionAlignment`.
        section: u32,
        /// `FileAlignment`.
        file: u32,
    },
    /// The stub carries an Authenticode signature, which adding sections would break.
    #[error("the EFI stub is signed (it has a certificate table); use the unsigned stub")]
    SignedStub,
    /// The stub's debug directory refers to data after its sections, which would be dropped.
    #[error("the EFI stub's debug directory refers to data after its last section")]
    DebugDataAfterSections,
    /// The section headers to add do not fit before the first section's data.
    #[error("no room for {count} more section headers in the stub's headers")]
    NoHeaderRoom {
        /// How many were to be added.
        count: usize,
    },
    /// The bytes after the stub's section table, where new headers go, hold something the
    /// headers refer to (the entry point, a data directory, the symbol table).
    #[error("the space after the EFI stub's section table is in use (its headers refer to it)")]
    HeaderSlackInUse,
    /// A section name is empty, longer than 8 bytes or not printable ASCII.
    #[error("section name {name:?} is not 1 to 8 printable ASCII characters")]
    BadSectionName {
        /// The name.
        name: String,
    },
    /// The stub already has a section of that name.
    #[error("the EFI stub already has a {name} section")]
    DuplicateSection {
        /// The name.
        name: String,
    },
    /// A section to add has no bytes.
    #[error("section {name} is empty")]
    EmptySection {
        /// The name.
        name: String,
    },
    /// The image would not fit PE's 32-bit sizes and addresses.
    #[error("the UKI would be larger than a PE image can be (4 GiB)")]
    TooLarge,
    /// [`UkiPlan::write`] was given other sections than [`plan`].
    #[error("the sections given to write differ from those planned (at {name})")]
    PlanMismatch {
        /// The first section that differs.
        name: String,
    },
    /// Writing the image, or reading a section body, failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// The kernel is not a PE image: built without `CONFIG_EFI_STUB`.
    #[error("the kernel has no EFI stub (CONFIG_EFI_STUB)")]
    KernelNoEfiStub,
    /// The kernel is an ELF `vmlinux`, not a bootable image.
    #[error(
        "the kernel is an ELF vmlinux, not a bootable image (bzImage or Image) with an EFI stub"
    )]
    KernelIsElf,
    /// The kernel file is compressed as a whole (an arm64 `vmlinuz` as some distributions ship it).
    #[error("the kernel is {format}-compressed; a UKI needs the uncompressed kernel image")]
    KernelCompressed {
        /// The compression format.
        format: &'static str,
    },
    /// Fewer bytes of the kernel were given than its PE header needs.
    #[error("the kernel's first {have} bytes do not reach its PE header (needs {need})")]
    KernelHeadShort {
        /// Bytes given.
        have: usize,
        /// Bytes needed.
        need: u64,
    },
    /// The kernel is for another CPU.
    #[error("the kernel is for {found}, not {expected}")]
    KernelMachine {
        /// The kernel's machine.
        found: String,
        /// The machine asked for.
        expected: String,
    },
}

/// Where one added section goes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Placed {
    /// The section name.
    name: &'static str,
    /// Body bytes (the `VirtualSize`).
    len: u64,
    /// `PointerToRawData`.
    offset: u64,
    /// `SizeOfRawData`: `len` rounded up to the file alignment.
    raw_len: u64,
    /// `VirtualAddress`.
    rva: u64,
}

/// A planned UKI: the stub's bytes with updated headers and where each added section goes.
#[derive(Debug, Clone)]
pub struct UkiPlan {
    /// The stub up to the end of its section data, with the new headers in place.
    head: Vec<u8>,
    /// The added sections in file and address order.
    placed: Vec<Placed>,
    /// Total bytes of the UKI.
    len: u64,
}

/// Little-endian reads that fail with [`UkiError::Truncated`] instead of panicking.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&self, off: u64, len: u64, what: &'static str) -> Result<&[u8], UkiError> {
        let end = off.checked_add(len).ok_or(UkiError::Truncated { what })?;
        if end > self.0.len() as u64 {
            return Err(UkiError::Truncated { what });
        }
        Ok(&self.0[off as usize..end as usize])
    }

    fn u16(&self, off: u64, what: &'static str) -> Result<u16, UkiError> {
        let b = self.bytes(off, 2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&self, off: u64, what: &'static str) -> Result<u32, UkiError> {
        let b = self.bytes(off, 4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

fn put_u16(buf: &mut [u8], off: u64, v: u16) {
    buf[off as usize..off as usize + 2].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(buf: &mut [u8], off: u64, v: u32) {
    buf[off as usize..off as usize + 4].copy_from_slice(&v.to_le_bytes());
}

/// `v` rounded up to `align` (a power of two), or `None` on overflow.
fn align_up(v: u64, align: u64) -> Option<u64> {
    Some(v.checked_add(align - 1)? & !(align - 1))
}

/// A value that must fit a 32-bit PE field.
fn fit32(v: u64) -> Result<u32, UkiError> {
    u32::try_from(v).map_err(|_| UkiError::TooLarge)
}

/// One section header of the stub.
struct StubSection {
    name: [u8; 8],
    virtual_size: u64,
    rva: u64,
    raw_len: u64,
    raw_offset: u64,
}

impl StubSection {
    fn name(&self) -> String {
        let end = self.name.iter().position(|&b| b == 0).unwrap_or(8);
        String::from_utf8_lossy(&self.name[..end]).into_owned()
    }
}

/// Plan a UKI: `stub` (the bytes of `linuxx64.efi.stub` or `linuxaa64.efi.stub`) with
/// `sections` appended in the given order (for arm64, `.initrd` after `.linux`).
pub fn plan(
    stub: &[u8],
    machine: PeMachine,
    sections: &[UkiSection<'_>],
) -> Result<UkiPlan, UkiError> {
    let r = Reader(stub);
    let file_len = stub.len() as u64;

    // DOS header and PE signature.
    if r.bytes(0, 2, "DOS header").ok() != Some(b"MZ".as_slice()) {
        return Err(UkiError::NotPe);
    }
    let pe = u64::from(r.u32(0x3c, "DOS header")?);
    if r.bytes(pe, 4, "PE signature")
        .map_err(|_| UkiError::NotPe)?
        != b"PE\0\0"
    {
        return Err(UkiError::NotPe);
    }

    // COFF file header.
    let coff = pe + 4;
    let found = r.u16(coff, "COFF header")?;
    if found != machine.coff_machine() {
        return Err(UkiError::StubMachine {
            found: machine_name(found),
            expected: machine_name(machine.coff_machine()),
        });
    }
    let n_sections = u64::from(r.u16(coff + 2, "COFF header")?);
    let symtab = u64::from(r.u32(coff + 8, "COFF header")?);
    let n_symbols = u64::from(r.u32(coff + 12, "COFF header")?);
    let optional_len = u64::from(r.u16(coff + 16, "COFF header")?);
    let characteristics = r.u16(coff + 18, "COFF header")?;

    // PE32+ optional header.
    let opt = coff + 20;
    let magic = r.u16(opt, "optional header")?;
    if magic != PE32_PLUS_MAGIC {
        return Err(UkiError::NotPe32Plus { magic });
    }
    if optional_len < OPTIONAL_FIXED_LEN {
        return Err(UkiError::Malformed {
            reason: "its optional header is shorter than PE32+ requires",
        });
    }
    r.bytes(opt, optional_len, "optional header")?;
    let initialized_data = u64::from(r.u32(opt + 8, "optional header")?);
    let entry = u64::from(r.u32(opt + 16, "optional header")?);
    let section_align = r.u32(opt + 32, "optional header")?;
    let file_align = r.u32(opt + 36, "optional header")?;
    let size_of_image = u64::from(r.u32(opt + 56, "optional header")?);
    let size_of_headers = u64::from(r.u32(opt + 60, "optional header")?);
    let subsystem = r.u16(opt + 68, "optional header")?;
    let n_dirs = u64::from(r.u32(opt + 108, "optional header")?);
    if subsystem != EFI_APPLICATION {
        return Err(UkiError::NotEfiApplication { subsystem });
    }
    if !section_align.is_power_of_two()
        || !file_align.is_power_of_two()
        || file_align > section_align
        || file_align > 0x10000
    {
        return Err(UkiError::BadAlignment {
            section: section_align,
            file: file_align,
        });
    }
    let (section_align, file_align) = (u64::from(section_align), u64::from(file_align));
    if OPTIONAL_FIXED_LEN + n_dirs.saturating_mul(8) > optional_len {
        return Err(UkiError::Malformed {
            reason: "its data directories do not fit its optional header",
        });
    }
    let dir = |index: u64| -> Result<(u64, u64), UkiError> {
        if index >= n_dirs {
            return Ok((0, 0));
        }
        let at = opt + OPTIONAL_FIXED_LEN + index * 8;
        Ok((
            u64::from(r.u32(at, "data directories")?),
            u64::from(r.u32(at + 4, "data directories")?),
        ))
    };
    if dir(DIR_SECURITY)? != (0, 0) {
        return Err(UkiError::SignedStub);
    }

    // Section table.
    let table = opt + optional_len;
    let table_end = table + n_sections * SECTION_HEADER_LEN;
    r.bytes(table, n_sections * SECTION_HEADER_LEN, "section table")?;
    if n_sections == 0 {
        return Err(UkiError::Malformed {
            reason: "it has no sections",
        });
    }
    if size_of_headers < table_end {
        return Err(UkiError::Malformed {
            reason: "its SizeOfHeaders does not cover its section table",
        });
    }
    let mut stub_sections = Vec::with_capacity(n_sections as usize);
    for i in 0..n_sections {
        let at = table + i * SECTION_HEADER_LEN;
        let mut name = [0u8; 8];
        name.copy_from_slice(r.bytes(at, 8, "section table")?);
        stub_sections.push(StubSection {
            name,
            virtual_size: u64::from(r.u32(at + 8, "section table")?),
            rva: u64::from(r.u32(at + 12, "section table")?),
            raw_len: u64::from(r.u32(at + 16, "section table")?),
            raw_offset: u64::from(r.u32(at + 20, "section table")?),
        });
    }

    // The extent of the stub's section data and address space.
    let mut data_end = size_of_headers;
    let mut first_data = u64::MAX;
    let mut first_rva = u64::MAX;
    let mut rva_end = size_of_image;
    for s in &stub_sections {
        let bad = |reason| UkiError::BadStubSection {
            name: s.name(),
            reason,
        };
        if s.raw_len > 0 {
            let end = s.raw_offset + s.raw_len; // both < 2^32: no overflow
            if end > file_len {
                return Err(bad("has data past the end of the file"));
            }
            if s.raw_offset < size_of_headers {
                return Err(bad("has data inside the headers"));
            }
            data_end = data_end.max(end);
            first_data = first_data.min(s.raw_offset);
        }
        rva_end = rva_end.max(s.rva + s.virtual_size.max(s.raw_len));
        first_rva = first_rva.min(s.rva);
    }
    if data_end > file_len {
        return Err(UkiError::Truncated { what: "headers" });
    }

    // Bytes after the last section's data are outside the image as loaded: a COFF symbol
    // table some stub builds leave in (Debian's x86_64 one), or sections the header does not
    // declare (Debian's arm64 one, an objcopy -O binary build, carries .sbat and .sdmagic
    // there). They are dropped, as objcopy does; nothing may refer to them.
    let drop_symbols = symtab >= data_end && (symtab != 0 || n_symbols != 0);
    check_debug_directory(&r, &stub_sections, dir(DIR_DEBUG)?, data_end)?;

    // The new section headers.
    let count = sections.len();
    for s in sections {
        let name = s.name;
        let printable = name.bytes().all(|b| b.is_ascii_graphic());
        if name.is_empty() || name.len() > 8 || !printable {
            return Err(UkiError::BadSectionName { name: name.into() });
        }
        if stub_sections.iter().any(|t| t.name() == name) {
            return Err(UkiError::DuplicateSection { name: name.into() });
        }
        if s.source.is_empty() {
            return Err(UkiError::EmptySection { name: name.into() });
        }
    }
    let no_room = UkiError::NoHeaderRoom { count };
    let new_table_end = table_end + count as u64 * SECTION_HEADER_LEN;
    if new_table_end > first_data || new_table_end > first_rva {
        return Err(no_room);
    }
    let mut new_size_of_headers = size_of_headers;
    if new_table_end > size_of_headers {
        // Grow SizeOfHeaders into the slack before the first section (never moving data).
        new_size_of_headers = align_up(new_table_end, file_align).ok_or(UkiError::TooLarge)?;
        if new_size_of_headers > first_data || new_size_of_headers > first_rva {
            return Err(no_room);
        }
    }
    // The new headers overwrite what follows the table (zeros, or fill such as the NOPs in
    // Debian's arm64 stub): refuse when anything the headers point at lives there.
    let slack = table_end..new_table_end;
    let overlaps = |at: u64, len: u64| at < slack.end && slack.start < at.saturating_add(len);
    let mut referenced =
        overlaps(entry, 1) || (!drop_symbols && symtab != 0 && overlaps(symtab, 1));
    for index in 0..n_dirs.min(16) {
        let (at, len) = dir(index)?;
        referenced |= len != 0 && overlaps(at, len);
    }
    if referenced {
        return Err(UkiError::HeaderSlackInUse);
    }

    let mut head = stub[..data_end as usize].to_vec();
    if (head.len() as u64) < new_size_of_headers {
        head.resize(new_size_of_headers as usize, 0);
    }

    // Placement.
    let too_large = || UkiError::TooLarge;
    let mut offset = align_up(head.len() as u64, file_align).ok_or_else(too_large)?;
    let mut rva = align_up(rva_end, section_align).ok_or_else(too_large)?;
    let mut added_data = 0u64;
    let mut placed = Vec::with_capacity(count);
    for s in sections {
        let len = s.source.len();
        let raw_len = align_up(len, file_align).ok_or_else(too_large)?;
        placed.push(Placed {
            name: s.name,
            len,
            offset,
            raw_len,
            rva,
        });
        offset = offset.checked_add(raw_len).ok_or_else(too_large)?;
        let end = rva.checked_add(len).ok_or_else(too_large)?;
        rva = align_up(end, section_align).ok_or_else(too_large)?;
        added_data = added_data.checked_add(raw_len).ok_or_else(too_large)?;
    }
    fit32(offset)?;
    let new_size_of_image = fit32(rva)?;

    // Headers.
    let n_total =
        u16::try_from(n_sections + count as u64).map_err(|_| UkiError::NoHeaderRoom { count })?;
    put_u16(&mut head, coff + 2, n_total);
    if drop_symbols {
        put_u32(&mut head, coff + 8, 0);
        put_u32(&mut head, coff + 12, 0);
        put_u16(&mut head, coff + 18, characteristics | LOCAL_SYMS_STRIPPED);
    }
    put_u32(
        &mut head,
        opt + 8,
        fit32(initialized_data.saturating_add(added_data)).unwrap_or(u32::MAX),
    );
    put_u32(&mut head, opt + 56, new_size_of_image);
    put_u32(&mut head, opt + 60, fit32(new_size_of_headers)?);
    put_u32(&mut head, opt + 64, 0);
    for (i, p) in placed.iter().enumerate() {
        let at = table_end + i as u64 * SECTION_HEADER_LEN;
        let header = &mut head[at as usize..(at + SECTION_HEADER_LEN) as usize];
        header.fill(0);
        header[..p.name.len()].copy_from_slice(p.name.as_bytes());
        put_u32(header, 8, fit32(p.len)?);
        put_u32(header, 12, fit32(p.rva)?);
        put_u32(header, 16, fit32(p.raw_len)?);
        put_u32(header, 20, fit32(p.offset)?);
        put_u32(header, 36, SECTION_CHARACTERISTICS);
    }

    Ok(UkiPlan {
        head,
        placed,
        len: offset,
    })
}

/// Refuse a stub whose debug directory entries point at file data after its sections (it
/// would be dropped). An entry that cannot be located is left alone: loaders ignore it.
fn check_debug_directory(
    r: &Reader<'_>,
    sections: &[StubSection],
    (rva, size): (u64, u64),
    data_end: u64,
) -> Result<(), UkiError> {
    if size == 0 {
        return Ok(());
    }
    let Some(file_at) = sections.iter().find_map(|s| {
        (rva >= s.rva && rva + size <= s.rva + s.raw_len).then(|| s.raw_offset + (rva - s.rva))
    }) else {
        return Ok(());
    };
    for i in 0..size / DEBUG_ENTRY_LEN {
        let at = file_at + i * DEBUG_ENTRY_LEN;
        let (Ok(len), Ok(ptr)) = (
            r.u32(at + 16, "debug directory"),
            r.u32(at + 24, "debug directory"),
        ) else {
            return Ok(());
        };
        if ptr != 0 && len != 0 && u64::from(ptr) + u64::from(len) > data_end {
            return Err(UkiError::DebugDataAfterSections);
        }
    }
    Ok(())
}

/// An [`UkiError::Io`] maker for `map_err`.
fn io_err(what: String) -> impl FnOnce(io::Error) -> UkiError {
    move |source| UkiError::Io { what, source }
}

/// Zero bytes for padding.
static ZEROS: [u8; 4096] = [0; 4096];

/// Write `n` zero bytes.
fn write_zeros<W: Write + ?Sized>(out: &mut W, mut n: u64) -> io::Result<()> {
    while n > 0 {
        let chunk = n.min(ZEROS.len() as u64) as usize;
        out.write_all(&ZEROS[..chunk])?;
        n -= chunk as u64;
    }
    Ok(())
}

impl UkiPlan {
    /// Total bytes [`UkiPlan::write`] writes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the image is empty (never: a plan holds at least the stub's headers).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Write the UKI to `out`: the updated headers and the stub's section data, then each
    /// section body streamed from its source and padded to the file alignment. `sections`
    /// must be those given to [`plan`] (same names and lengths, same order).
    pub fn write<W: Write>(
        &self,
        out: &mut W,
        sections: &[UkiSection<'_>],
    ) -> Result<(), UkiError> {
        if sections.len() != self.placed.len() {
            let name = sections
                .get(self.placed.len())
                .map(|s| s.name)
                .or_else(|| self.placed.get(sections.len()).map(|p| p.name))
                .unwrap_or_default();
            return Err(UkiError::PlanMismatch { name: name.into() });
        }
        for (s, p) in sections.iter().zip(&self.placed) {
            if s.name != p.name || s.source.len() != p.len {
                return Err(UkiError::PlanMismatch {
                    name: s.name.into(),
                });
            }
        }
        out.write_all(&self.head)
            .map_err(io_err("writing the UKI's headers and stub".into()))?;
        let mut at = self.head.len() as u64;
        let mut buf = vec![0u8; 256 * 1024];
        for (s, p) in sections.iter().zip(&self.placed) {
            let what = || format!("writing section {} of the UKI", p.name);
            write_zeros(out, p.offset - at).map_err(io_err(what()))?;
            copy_source(s.source, out, &mut buf).map_err(io_err(what()))?;
            write_zeros(out, p.raw_len - p.len).map_err(io_err(what()))?;
            at = p.offset + p.raw_len;
        }
        debug_assert_eq!(at, self.len);
        Ok(())
    }
}

/// Check that a kernel can be the `.linux` of a UKI for `machine`: it must itself be an
/// EFI application (an x86 bzImage or arm64 Image built with `CONFIG_EFI_STUB`) for that
/// machine. `head` is the start of the kernel file; its first 4 KiB are plenty.
pub fn check_kernel(machine: PeMachine, head: &[u8]) -> Result<(), UkiError> {
    const COMPRESSED: [(&[u8], &str); 6] = [
        (b"\x1f\x8b", "gzip"),
        (b"\x28\xb5\x2f\xfd", "zstd"),
        (b"\xfd7zXZ\0", "xz"),
        (b"\x04\x22\x4d\x18", "lz4"),
        (b"BZh", "bzip2"),
        (b"\x89LZO", "lzo"),
    ];
    if head.starts_with(b"\x7fELF") {
        return Err(UkiError::KernelIsElf);
    }
    if let Some((_, format)) = COMPRESSED.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Err(UkiError::KernelCompressed { format });
    }
    if !head.starts_with(b"MZ") {
        return Err(UkiError::KernelNoEfiStub);
    }
    let short = |need: u64| UkiError::KernelHeadShort {
        have: head.len(),
        need,
    };
    let r = Reader(head);
    let pe = u64::from(r.u32(0x3c, "").map_err(|_| short(0x40))?);
    let signature = r.bytes(pe, 4, "").map_err(|_| short(pe + 6))?;
    if signature != b"PE\0\0" {
        return Err(UkiError::KernelNoEfiStub);
    }
    let found = r.u16(pe + 4, "").map_err(|_| short(pe + 6))?;
    if found != machine.coff_machine() {
        return Err(UkiError::KernelMachine {
            found: machine_name(found),
            expected: machine_name(machine.coff_machine()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the real x86_64 stub is when `systemd-boot-efi` is installed.
    const REAL_STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

    /// A synthetic PE32+ EFI application: `sections` are (name, rva, virtual size, raw data).
    struct Pe {
        machine: u16,
        magic: u16,
        subsystem: u16,
        section_align: u32,
        file_align: u32,
        size_of_headers: u32,
        sections: Vec<(&'static str, u32, u32, Vec<u8>)>,
        symbols: Option<(u32, Vec<u8>)>,
        tail: Vec<u8>,
        security: (u32, u32),
    }

    impl Pe {
        fn new() -> Self {
            Pe {
                machine: 0x8664,
                magic: 0x20b,
                subsystem: 10,
                section_align: 0x1000,
                file_align: 0x200,
                size_of_headers: 0x400,
                sections: vec![
                    (".text", 0x1000, 0x1234, vec![0xcc; 0x1400]),
                    (".data", 0x3000, 0x10, vec![0xdd; 0x200]),
                ],
                symbols: None,
                tail: Vec::new(),
                security: (0, 0),
            }
        }

        /// Where the section table starts (after 16 data directories).
        const TABLE: usize = 0x80 + 24 + 240;

        fn build(&self) -> Vec<u8> {
            let mut b = vec![0u8; self.size_of_headers as usize];
            b[..2].copy_from_slice(b"MZ");
            put_u32(&mut b, 0x3c, 0x80);
            b[0x80..0x84].copy_from_slice(b"PE\0\0");
            let coff = 0x84;
            put_u16(&mut b, coff, self.machine);
            put_u16(&mut b, coff + 2, self.sections.len() as u16);
            put_u32(&mut b, coff + 4, 0x1234_5678);
            put_u16(&mut b, coff + 16, 240);
            put_u16(&mut b, coff + 18, 0x206);
            let opt = coff + 20;
            put_u16(&mut b, opt, self.magic);
            put_u32(&mut b, opt + 8, 0x200);
            put_u32(&mut b, opt + 16, 0x1000);
            put_u32(&mut b, opt + 32, self.section_align);
            put_u32(&mut b, opt + 36, self.file_align);
            let last = self.sections.last().unwrap();
            put_u32(
                &mut b,
                opt + 56,
                (last.1 + last.2).next_multiple_of(self.section_align),
            );
            put_u32(&mut b, opt + 60, self.size_of_headers);
            put_u32(&mut b, opt + 64, 0xdead_beef);
            put_u16(&mut b, opt + 68, self.subsystem);
            put_u32(&mut b, opt + 108, 16);
            put_u32(&mut b, opt + 112 + 32, self.security.0);
            put_u32(&mut b, opt + 112 + 36, self.security.1);
            let mut data = Vec::new();
            let mut offset = self.size_of_headers;
            for (i, (name, rva, vsize, raw)) in self.sections.iter().enumerate() {
                let at = (Self::TABLE + i * 40) as u64;
                b[at as usize..at as usize + name.len()].copy_from_slice(name.as_bytes());
                put_u32(&mut b, at + 8, *vsize);
                put_u32(&mut b, at + 12, *rva);
                put_u32(&mut b, at + 16, raw.len() as u32);
                put_u32(&mut b, at + 20, offset);
                put_u32(&mut b, at + 36, 0x6000_0020);
                offset += raw.len() as u32;
                data.extend_from_slice(raw);
            }
            if let Some((n, bytes)) = &self.symbols {
                put_u32(&mut b, coff + 8, offset);
                put_u32(&mut b, coff + 12, *n);
                data.extend_from_slice(bytes);
            }
            b.extend_from_slice(&data);
            b.extend_from_slice(&self.tail);
            b
        }
    }

    fn u16_at(b: &[u8], off: usize) -> u16 {
        u16::from_le_bytes([b[off], b[off + 1]])
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
    }

    /// A parsed section header: (name, virtual size, rva, raw size, raw offset, characteristics).
    fn headers(b: &[u8]) -> Vec<(String, u32, u32, u32, u32, u32)> {
        let pe = u32_at(b, 0x3c) as usize;
        let n = u16_at(b, pe + 6) as usize;
        let table = pe + 24 + u16_at(b, pe + 20) as usize;
        (0..n)
            .map(|i| {
                let at = table + i * 40;
                let name = String::from_utf8_lossy(&b[at..at + 8])
                    .trim_end_matches('\0')
                    .to_string();
                (
                    name,
                    u32_at(b, at + 8),
                    u32_at(b, at + 12),
                    u32_at(b, at + 16),
                    u32_at(b, at + 20),
                    u32_at(b, at + 36),
                )
            })
            .collect()
    }

    fn assemble(stub: &[u8], machine: PeMachine, sections: &[UkiSection<'_>]) -> Vec<u8> {
        let plan = plan(stub, machine, sections).unwrap();
        let mut out = Vec::new();
        plan.write(&mut out, sections).unwrap();
        assert_eq!(out.len() as u64, plan.len());
        out
    }

    fn bodies() -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
        (
            b"ID=test\n".to_vec(),
            b"console=ttyS0".to_vec(),
            (0..0x1234u32).map(|i| i as u8).collect(),
            vec![7u8; 0x2001],
        )
    }

    #[test]
    fn places_sections_after_the_stub() {
        let stub = Pe::new().build();
        let (osrel, cmdline, linux, initrd) = bodies();
        let sections = [
            UkiSection {
                name: ".osrel",
                source: &osrel,
            },
            UkiSection {
                name: ".cmdline",
                source: &cmdline,
            },
            UkiSection {
                name: ".linux",
                source: &linux,
            },
            UkiSection {
                name: ".initrd",
                source: &initrd,
            },
        ];
        let out = assemble(&stub, PeMachine::X64, &sections);
        let h = headers(&out);
        assert_eq!(h.len(), 6);
        // The stub's own sections are untouched.
        assert_eq!(h[..2], headers(&stub)[..]);
        // Stub data ends at 0x400 + 0x1400 + 0x200 = 0x1a00; stub addresses end at 0x3010.
        let want = [
            (".osrel", 8, 0x4000, 0x200, 0x1a00),
            (".cmdline", 13, 0x5000, 0x200, 0x1c00),
            (".linux", 0x1234, 0x6000, 0x1400, 0x1e00),
            (".initrd", 0x2001, 0x8000, 0x2200, 0x3200),
        ];
        for (got, want) in h[2..].iter().zip(want) {
            assert_eq!(
                (got.0.as_str(), got.1, got.2, got.3, got.4, got.5),
                (
                    want.0,
                    want.1,
                    want.2,
                    want.3,
                    want.4,
                    SECTION_CHARACTERISTICS
                )
            );
        }
        assert_eq!(out.len(), 0x3200 + 0x2200);
        let opt = 0x84 + 20;
        assert_eq!(u32_at(&out, opt + 56), 0xb000, "SizeOfImage");
        assert_eq!(u32_at(&out, opt + 60), 0x400, "SizeOfHeaders");
        assert_eq!(u32_at(&out, opt + 64), 0, "CheckSum");
        assert_eq!(
            u32_at(&out, opt + 8),
            0x200 + 0x200 + 0x200 + 0x1400 + 0x2200
        );
        assert_eq!(u32_at(&out, 0x84 + 4), 0x1234_5678, "TimeDateStamp kept");
        // Bodies at their offsets, zero padding after them.
        for (s, (_, len, _, raw, off, _)) in sections.iter().zip(&h[2..]) {
            let (off, len, raw) = (*off as usize, *len as usize, *raw as usize);
            let mut body = Vec::new();
            s.source.open().unwrap().read_to_end(&mut body).unwrap();
            assert_eq!(&out[off..off + len], body.as_slice());
            assert!(out[off + len..off + raw].iter().all(|&b| b == 0));
        }
        // The stub's data is copied verbatim.
        assert_eq!(&out[0x400..0x1a00], &stub[0x400..0x1a00]);
    }

    use std::io::Read;

    #[test]
    fn same_inputs_same_bytes() {
        let stub = Pe::new().build();
        let (osrel, cmdline, linux, initrd) = bodies();
        let sections = [
            UkiSection {
                name: ".osrel",
                source: &osrel,
            },
            UkiSection {
                name: ".cmdline",
                source: &cmdline,
            },
            UkiSection {
                name: ".linux",
                source: &linux,
            },
            UkiSection {
                name: ".initrd",
                source: &initrd,
            },
        ];
        let a = assemble(&stub, PeMachine::X64, &sections);
        let b = assemble(&stub, PeMachine::X64, &sections);
        assert_eq!(a, b);
        // Planning again from the output with no new sections changes nothing but the
        // (already zero) checksum: the result is a valid stub for the parser.
        let again = plan(&a, PeMachine::X64, &[]).unwrap();
        assert_eq!(again.len(), a.len() as u64);
    }

    #[test]
    fn order_is_kept() {
        let stub = Pe::new().build();
        let (_, _, linux, initrd) = bodies();
        let sections = [
            UkiSection {
                name: ".linux",
                source: &linux,
            },
            UkiSection {
                name: ".initrd",
                source: &initrd,
            },
        ];
        let h = headers(&assemble(&stub, PeMachine::X64, &sections));
        assert_eq!(h[2].0, ".linux");
        assert_eq!(h[3].0, ".initrd");
        assert!(h[3].2 > h[2].2 && h[3].4 > h[2].4);
    }

    #[test]
    fn small_section_alignment() {
        // Like Debian's x86_64 stub: both alignments 0x200, SizeOfImage past the last
        // section's virtual size (it counts the raw size).
        let mut pe = Pe::new();
        pe.section_align = 0x200;
        pe.sections = vec![
            (".text", 0x400, 0x300, vec![1; 0x400]),
            (".sdmagic", 0x800, 0x34, vec![2; 0x200]),
        ];
        let stub = pe.build();
        let body = vec![9u8; 0x201];
        let out = assemble(
            &stub,
            PeMachine::X64,
            &[UkiSection {
                name: ".linux",
                source: &body,
            }],
        );
        let h = headers(&out);
        // Raw size 0x200 of .sdmagic counts: its addresses end at 0xa00.
        assert_eq!((h[2].2, h[2].3, h[2].4), (0xa00, 0x400, 0xa00));
        assert_eq!(u32_at(&out, 0x84 + 20 + 56), 0xe00);
    }

    #[test]
    fn symbol_table_at_the_end_is_dropped() {
        let mut pe = Pe::new();
        let mut symbols = vec![0x55u8; 3 * 18];
        symbols.extend_from_slice(&9u32.to_le_bytes());
        symbols.extend_from_slice(b"abcde");
        pe.symbols = Some((3, symbols));
        let stub = pe.build();
        let body = b"x".to_vec();
        let out = assemble(
            &stub,
            PeMachine::X64,
            &[UkiSection {
                name: ".osrel",
                source: &body,
            }],
        );
        assert_eq!(u32_at(&out, 0x84 + 8), 0, "PointerToSymbolTable");
        assert_eq!(u32_at(&out, 0x84 + 12), 0, "NumberOfSymbols");
        assert_eq!(
            u16_at(&out, 0x84 + 18) & LOCAL_SYMS_STRIPPED,
            LOCAL_SYMS_STRIPPED
        );
        assert_eq!(headers(&out)[2].4, 0x1a00);
        assert_eq!(out.len(), 0x1a00 + 0x200);
    }

    #[test]
    fn bytes_after_the_sections_are_dropped() {
        let mut pe = Pe::new();
        pe.tail = b"#### LoaderInfo: systemd-stub ####".to_vec();
        let body = b"x".to_vec();
        let sections = [UkiSection {
            name: ".osrel",
            source: &body as &dyn Source,
        }];
        let out = assemble(&pe.build(), PeMachine::X64, &sections);
        assert_eq!(out.len(), 0x1a00 + 0x200);
        assert_eq!(headers(&out)[2].4, 0x1a00);
    }

    #[test]
    fn headers_grow_into_free_slack() {
        // SizeOfHeaders 0x200 holds the table (it ends at 0x188 + 2 * 40 = 0x1d8) and one
        // more header; the first section's data and address are at 0x1000: room to grow.
        let mut pe = Pe::new();
        pe.size_of_headers = 0x200;
        pe.sections[0].3.truncate(0x200);
        let mut stub = pe.build();
        // Move the first section's data to 0x1000 by padding: rebuild the stub by hand.
        let first = u32_at(&stub, Pe::TABLE + 20) as usize;
        assert_eq!(first, 0x200);
        let mut padded = stub[..first].to_vec();
        padded.resize(0x1000, 0);
        padded.extend_from_slice(&stub[first..]);
        for i in 0..2 {
            let at = (Pe::TABLE + i * 40 + 20) as u64;
            let old = u32_at(&padded, at as usize);
            put_u32(&mut padded, at, old + 0x1000 - 0x200);
        }
        stub = padded;
        let bodies: Vec<Vec<u8>> = (1..=6).map(|n| vec![n as u8; n]).collect();
        let names = [".a", ".b", ".c", ".d", ".e", ".f"];
        let sections: Vec<UkiSection<'_>> = names
            .iter()
            .zip(&bodies)
            .map(|(name, body)| UkiSection { name, source: body })
            .collect();
        let out = assemble(&stub, PeMachine::X64, &sections);
        assert_eq!(u32_at(&out, 0x84 + 20 + 60), 0x400, "SizeOfHeaders grown");
        assert_eq!(headers(&out).len(), 8);
    }

    #[test]
    fn no_room_for_headers() {
        // The section table ends at 0x188 + 2 * 40 = 0x1d8; the first section's data at
        // 0x400 leaves room for 13 more.
        let stub = Pe::new().build();
        let body = b"x".to_vec();
        let names = [
            ".s0", ".s1", ".s2", ".s3", ".s4", ".s5", ".s6", ".s7", ".s8", ".s9", ".s10", ".s11",
            ".s12", ".s13",
        ];
        let sections: Vec<UkiSection<'_>> = names
            .iter()
            .map(|name| UkiSection {
                name,
                source: &body,
            })
            .collect();
        assert!(plan(&stub, PeMachine::X64, &sections[..13]).is_ok());
        let err = plan(&stub, PeMachine::X64, &sections).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no room for 14 more section headers in the stub's headers"
        );
    }

    #[test]
    fn slack_is_overwritten_unless_referenced() {
        let body = b"x".to_vec();
        let sections = [UkiSection {
            name: ".osrel",
            source: &body as &dyn Source,
        }];
        // Fill after the table (arm64 NOPs, as in Debian's arm64 stub) is overwritten.
        let mut stub = Pe::new().build();
        for at in (Pe::TABLE + 2 * 40..0x400).step_by(4) {
            stub[at..at + 4].copy_from_slice(&0xd503_201fu32.to_le_bytes());
        }
        let out = assemble(&stub, PeMachine::X64, &sections);
        assert_eq!(headers(&out)[2].0, ".osrel");
        assert_eq!(
            out[Pe::TABLE + 3 * 40..0x400],
            stub[Pe::TABLE + 3 * 40..0x400]
        );
        // A data directory (base relocations) or the entry point there: refused.
        let opt = 0x84 + 20;
        let slack = (Pe::TABLE + 2 * 40 + 8) as u32;
        let mut with_dir = stub.clone();
        put_u32(&mut with_dir, opt + 112 + 5 * 8, slack);
        put_u32(&mut with_dir, opt + 112 + 5 * 8 + 4, 12);
        let mut with_entry = stub.clone();
        put_u32(&mut with_entry, opt + 16, slack);
        for bad in [with_dir, with_entry] {
            let err = plan(&bad, PeMachine::X64, &sections).unwrap_err();
            assert_eq!(
                err.to_string(),
                "the space after the EFI stub's section table is in use (its headers refer to it)"
            );
        }
    }

    #[test]
    fn bad_stubs() {
        let body = b"x".to_vec();
        let sections = [UkiSection {
            name: ".osrel",
            source: &body as &dyn Source,
        }];
        let check = |pe: &Pe, want: &str| {
            let err = plan(&pe.build(), PeMachine::X64, &sections).unwrap_err();
            assert_eq!(err.to_string(), want);
        };
        let mut pe = Pe::new();
        pe.magic = 0x10b;
        check(
            &pe,
            "the EFI stub is not a PE32+ image (optional header magic 0x10b)",
        );
        let mut pe = Pe::new();
        pe.machine = 0xaa64;
        check(&pe, "the EFI stub is for arm64, not x86_64");
        let mut pe = Pe::new();
        pe.subsystem = 3;
        check(
            &pe,
            "the EFI stub is not an EFI application (subsystem 3, expected 10)",
        );
        let mut pe = Pe::new();
        pe.security = (0x1a00, 0x100);
        check(
            &pe,
            "the EFI stub is signed (it has a certificate table); use the unsigned stub",
        );
        let mut pe = Pe::new();
        pe.file_align = 0x300;
        check(
            &pe,
            "the EFI stub has invalid alignments (SectionAlignment 0x1000, FileAlignment 0x300)",
        );
        let err = plan(b"\x7fELF\x02\x01\x01", PeMachine::X64, &sections).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the EFI stub is not a PE image (no MZ header or PE signature)"
        );
        let stub = Pe::new().build();
        let err = plan(&stub[..0x1800], PeMachine::X64, &sections).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the EFI stub's section .data has data past the end of the file"
        );
    }

    #[test]
    fn bad_sections() {
        let stub = Pe::new().build();
        let body = b"x".to_vec();
        let empty = Vec::new();
        let err = |name: &'static str, source: &dyn Source| {
            plan(&stub, PeMachine::X64, &[UkiSection { name, source }])
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(".toolongname", &body),
            "section name \".toolongname\" is not 1 to 8 printable ASCII characters"
        );
        assert_eq!(
            err("", &body),
            "section name \"\" is not 1 to 8 printable ASCII characters"
        );
        assert_eq!(
            err(".a b", &body),
            "section name \".a b\" is not 1 to 8 printable ASCII characters"
        );
        assert_eq!(
            err(".text", &body),
            "the EFI stub already has a .text section"
        );
        assert_eq!(err(".initrd", &empty), "section .initrd is empty");
    }

    #[test]
    fn write_checks_the_sections_against_the_plan() {
        let stub = Pe::new().build();
        let (a, b) = (b"abc".to_vec(), b"abcd".to_vec());
        let planned = plan(
            &stub,
            PeMachine::X64,
            &[UkiSection {
                name: ".osrel",
                source: &a,
            }],
        )
        .unwrap();
        let mut out = Vec::new();
        let err = planned
            .write(
                &mut out,
                &[UkiSection {
                    name: ".osrel",
                    source: &b,
                }],
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the sections given to write differ from those planned (at .osrel)"
        );
        let err = planned.write(&mut out, &[]).unwrap_err();
        assert!(matches!(err, UkiError::PlanMismatch { .. }), "{err}");
    }

    /// A source whose reader yields fewer bytes than its length says.
    struct Liar;

    impl Source for Liar {
        fn len(&self) -> u64 {
            10
        }

        fn open(&self) -> io::Result<Box<dyn Read + '_>> {
            Ok(Box::new(&b"short"[..]))
        }
    }

    /// A writer that fails after `left` bytes.
    struct Full {
        left: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.left == 0 {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            let n = buf.len().min(self.left);
            self.left -= n;
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_errors_name_the_section() {
        let stub = Pe::new().build();
        let sections = [UkiSection {
            name: ".initrd",
            source: &Liar,
        }];
        let planned = plan(&stub, PeMachine::X64, &sections).unwrap();
        let err = planned.write(&mut Vec::new(), &sections).unwrap_err();
        assert_eq!(
            crate::error::chain(&err),
            "writing section .initrd of the UKI: expected 10 bytes, read 5"
        );
        let body = b"x".to_vec();
        let sections = [UkiSection {
            name: ".osrel",
            source: &body as &dyn Source,
        }];
        let planned = plan(&stub, PeMachine::X64, &sections).unwrap();
        let err = planned
            .write(&mut Full { left: 100 }, &sections)
            .unwrap_err();
        assert_eq!(
            crate::error::chain(&err),
            "writing the UKI's headers and stub: disk full"
        );
    }

    #[test]
    fn truncated_and_garbled_stubs_do_not_panic() {
        let mut pe = Pe::new();
        let mut symbols = vec![0u8; 18];
        symbols.extend_from_slice(&4u32.to_le_bytes());
        pe.symbols = Some((1, symbols));
        let stub = pe.build();
        let body = b"x".to_vec();
        let sections = [UkiSection {
            name: ".osrel",
            source: &body as &dyn Source,
        }];
        for len in 0..stub.len() {
            let planned = plan(&stub[..len], PeMachine::X64, &sections);
            // Cut in the headers or section data: refused; in the symbol table: dropped.
            assert_eq!(planned.is_err(), len < 0x1a00, "len {len}");
        }
        // Deterministic pseudo-random corruption of header bytes and whole garbage inputs.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let mut bad = stub.clone();
            for _ in 0..1 + next() % 4 {
                let at = (next() % 0x240) as usize;
                bad[at] = next() as u8;
            }
            if let Ok(p) = plan(&bad, PeMachine::X64, &sections) {
                let mut out = Vec::new();
                p.write(&mut out, &sections).unwrap();
                assert_eq!(out.len() as u64, p.len());
            }
            let garbage: Vec<u8> = (0..next() % 600).map(|_| next() as u8).collect();
            let _ = plan(&garbage, PeMachine::Aa64, &sections);
            let _ = check_kernel(PeMachine::X64, &garbage);
        }
    }

    /// A kernel head: MZ, e_lfanew 0x40, PE signature and `machine`.
    fn kernel_head(machine: u16) -> Vec<u8> {
        let mut b = vec![0u8; 0x200];
        b[..2].copy_from_slice(b"MZ");
        put_u32(&mut b, 0x3c, 0x40);
        b[0x40..0x44].copy_from_slice(b"PE\0\0");
        put_u16(&mut b, 0x44, machine);
        b
    }

    #[test]
    fn kernels() {
        assert!(check_kernel(PeMachine::X64, &kernel_head(0x8664)).is_ok());
        assert!(check_kernel(PeMachine::Aa64, &kernel_head(0xaa64)).is_ok());
        let msg = |m, head: &[u8]| check_kernel(m, head).unwrap_err().to_string();
        assert_eq!(
            msg(PeMachine::X64, &kernel_head(0xaa64)),
            "the kernel is for arm64, not x86_64"
        );
        assert_eq!(
            msg(PeMachine::Aa64, &kernel_head(0x8664)),
            "the kernel is for x86_64, not arm64"
        );
        // An x86 boot sector without the MZ header, an arm64 Image without it.
        let mut legacy = vec![0u8; 0x400];
        legacy[..5].copy_from_slice(&[0xea, 0x05, 0x00, 0xc0, 0x07]);
        legacy[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(
            msg(PeMachine::X64, &legacy),
            "the kernel has no EFI stub (CONFIG_EFI_STUB)"
        );
        let mut image = vec![0u8; 0x40];
        image[0x38..0x3c].copy_from_slice(b"ARM\x64");
        assert_eq!(
            msg(PeMachine::Aa64, &image),
            "the kernel has no EFI stub (CONFIG_EFI_STUB)"
        );
        let mut not_pe = kernel_head(0x8664);
        not_pe[0x40] = b'X';
        assert_eq!(
            msg(PeMachine::X64, &not_pe),
            "the kernel has no EFI stub (CONFIG_EFI_STUB)"
        );
        assert_eq!(
            msg(PeMachine::Aa64, b"\x1f\x8b\x08\x00"),
            "the kernel is gzip-compressed; a UKI needs the uncompressed kernel image"
        );
        assert_eq!(
            msg(PeMachine::X64, b"\x7fELF\x02"),
            "the kernel is an ELF vmlinux, not a bootable image (bzImage or Image) with an EFI stub"
        );
        let head = kernel_head(0x8664);
        assert_eq!(
            msg(PeMachine::X64, &head[..0x42]),
            "the kernel's first 66 bytes do not reach its PE header (needs 70)"
        );
        assert_eq!(
            msg(PeMachine::X64, &head[..0x20]),
            "the kernel's first 32 bytes do not reach its PE header (needs 64)"
        );
        assert!(msg(PeMachine::X64, &kernel_head(0x5064)).ends_with("riscv64, not x86_64"));
    }

    #[test]
    fn real_stub() {
        let Ok(stub) = std::fs::read(REAL_STUB) else {
            eprintln!("note: {REAL_STUB} is missing (install systemd-boot-efi); skipped");
            return;
        };
        let (osrel, cmdline, linux, initrd) = bodies();
        let sections = [
            UkiSection {
                name: ".osrel",
                source: &osrel,
            },
            UkiSection {
                name: ".cmdline",
                source: &cmdline,
            },
            UkiSection {
                name: ".linux",
                source: &linux,
            },
            UkiSection {
                name: ".initrd",
                source: &initrd,
            },
        ];
        let out = assemble(&stub, PeMachine::X64, &sections);
        let before = headers(&stub);
        let after = headers(&out);
        assert_eq!(after.len(), before.len() + 4);
        assert_eq!(after[..before.len()], before[..]);
        let pe = u32_at(&out, 0x3c) as usize;
        let opt = pe + 24;
        let section_align = u32_at(&out, opt + 32);
        let file_align = u32_at(&out, opt + 36);
        let data_end = before.iter().map(|s| s.4 + s.3).max().unwrap();
        let rva_end = before.iter().map(|s| s.2 + s.1.max(s.3)).max().unwrap();
        let mut offset = data_end.next_multiple_of(file_align);
        let mut rva = rva_end
            .max(u32_at(&stub, opt + 56))
            .next_multiple_of(section_align);
        for (s, h) in sections.iter().zip(&after[before.len()..]) {
            assert_eq!(h.0, s.name);
            assert_eq!((h.1 as u64, h.2, h.4), (s.source.len(), rva, offset));
            assert_eq!(h.4 % file_align, 0);
            assert_eq!(h.2 % section_align, 0);
            offset += h.3;
            rva = (rva + h.1).next_multiple_of(section_align);
        }
        assert_eq!(out.len() as u32, offset);
        assert_eq!(u32_at(&out, opt + 56), rva, "SizeOfImage");
        assert_eq!(u32_at(&out, pe + 12), 0, "symbol table dropped");
        let first = before.iter().map(|s| s.4).min().unwrap() as usize;
        assert_eq!(
            &out[first..data_end as usize],
            &stub[first..data_end as usize]
        );
        assert!(matches!(
            plan(&stub, PeMachine::Aa64, &sections),
            Err(UkiError::StubMachine { .. })
        ));
    }
}
