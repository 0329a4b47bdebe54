//! A streaming ISO 9660 image writer: level-1 names with Rock Ridge and Joliet, El Torito boot
//! (BIOS and EFI, no emulation), isohybrid MBR; the layout is planned from the sources'
//! lengths, then every byte is written once, in order.
//!
//! Image layout, in sectors of 2048 bytes:
//!
//! | sectors | contents |
//! |---|---|
//! | 0-15 | system area: zero, or the hybrid MBR in the first 512 bytes |
//! | 16 | primary volume descriptor |
//! | 17 | El Torito boot record (with `boot`) |
//! | next | Joliet supplementary volume descriptor, then the set terminator |
//! | next | boot catalog (with `boot`) |
//! | next | path tables: primary L, primary M, Joliet L, Joliet M |
//! | next | primary directories, then Joliet directories (path table order) |
//! | next | Rock Ridge continuation areas |
//! | next | file bodies, in byte order of their paths, each from a new sector |
//! | end | zero padding to a whole MiB (with `hybrid`) |

mod el_torito;
mod hybrid;
mod layout;
mod names;
mod rock_ridge;
mod tree;
mod volume;

#[cfg(any(test, feature = "fuzzing"))]
pub mod reader;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tools;

use std::io::{self, Read, Write};

use crate::disk::source::{Source, copy_source};

/// A BIOS boot file is read into memory (for the boot info table or the hybrid check) only up
/// to this size; isolinux.bin is about 40 KiB, GRUB's eltorito.img a few hundred.
pub const MAX_BOOT_FILE: u64 = 8 << 20;

/// An ISO 9660 image to write.
pub struct IsoImage<'a> {
    /// Volume label: up to 32 of `A-Z`, `0-9`, `_`.
    pub volume_id: String,
    /// Unix time given to every record and to the volume's dates.
    pub mtime: i64,
    /// The files (and, with a directory mode, directories); parent directories are implied.
    pub files: Vec<IsoFile<'a>>,
    /// El Torito boot entries.
    pub boot: Option<ElTorito>,
    /// An MBR in the system area so that the image also boots as a disk.
    pub hybrid: Option<Hybrid>,
}

/// One file of an image.
pub struct IsoFile<'a> {
    /// Path inside the image, `/`-separated, like `EFI/BOOT/BOOTX64.EFI`.
    pub path: String,
    /// Its contents (empty for a directory).
    pub source: &'a dyn Source,
    /// Rock Ridge mode: permission bits; the type bits say regular file (0 or `0o100000`) or
    /// directory (`0o040000`, for empty directories or their modes; implied ones are 0755).
    pub mode: u32,
}

/// El Torito boot catalog entries: the BIOS one first when both are given.
#[derive(Debug, Clone)]
pub struct ElTorito {
    /// A no-emulation BIOS boot file.
    pub bios: Option<BiosBoot>,
    /// An EFI boot image (platform 0xEF).
    pub efi: Option<EfiBoot>,
}

/// A no-emulation BIOS boot entry.
#[derive(Debug, Clone)]
pub struct BiosBoot {
    /// Path of the boot file in the image, like `isolinux/isolinux.bin`.
    pub path: String,
    /// 512-byte sectors the BIOS loads (4 for isolinux).
    pub load_sectors: u16,
    /// Write a boot info table into the file's bytes 8..64 in the image (isolinux needs it).
    pub boot_info_table: bool,
}

/// A no-emulation EFI boot entry.
#[derive(Debug, Clone)]
pub struct EfiBoot {
    /// Path in the image of a FAT image holding `EFI/BOOT/BOOT*.EFI`, like `boot/efi.img`.
    pub path: String,
}

/// What the hybrid MBR holds.
#[derive(Debug, Clone)]
pub struct Hybrid {
    /// isolinux's `isohdpfx.bin` (432 bytes), patched to load the BIOS boot file from disk.
    pub mbr_code: Option<Vec<u8>>,
    /// Add a partition of type 0xEF over the EFI image, for UEFI firmware booting the disk.
    pub efi_partition: bool,
}

/// Why an image could not be written.
#[derive(Debug, thiserror::Error)]
pub enum IsoError {
    /// The volume label is not up to 32 of `A-Z`, `0-9`, `_`.
    #[error("volume id {0:?}: not 1 to 32 of A-Z, 0-9 and _")]
    VolumeId(String),
    /// A path that cannot name a file.
    #[error("{path:?}: not a path in an ISO image: {why}")]
    BadPath {
        /// The path as given.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Two entries with the same path.
    #[error("{0:?}: given twice")]
    Duplicate(String),
    /// A path goes through a file as if it were a directory.
    #[error("{path:?}: {file:?} is a file, not a directory")]
    NotADirectory {
        /// The path as given.
        path: String,
        /// The file in its way.
        file: String,
    },
    /// A mode whose type bits are neither a regular file nor a directory.
    #[error("{path:?}: mode {mode:o} is not a regular file or a directory")]
    UnsupportedType {
        /// The path.
        path: String,
        /// Its mode.
        mode: u32,
    },
    /// A directory entry given contents.
    #[error("{0:?}: a directory has no contents")]
    DirectoryWithData(String),
    /// A file of 4 GiB or more (one extent holds at most 4 GiB - 1).
    #[error("{path:?}: {len} bytes; ISO 9660 holds files up to 4 GiB - 1")]
    FileTooLarge {
        /// The path.
        path: String,
        /// Its length.
        len: u64,
    },
    /// More directories than path tables number.
    #[error("{0} directories; path tables number at most 65535")]
    TooManyDirectories(usize),
    /// A directory whose names collide more than mangling can resolve.
    #[error("{0:?}: too many entries with colliding ISO 9660 names")]
    NameCollisions(String),
    /// An image larger than 32-bit sector numbers reach.
    #[error("image of {0} sectors is larger than ISO 9660 addresses")]
    TooLarge(u64),
    /// El Torito asked for with neither a BIOS nor an EFI entry.
    #[error("El Torito boot without a BIOS or an EFI entry")]
    NoBootEntry,
    /// A boot entry names a path that is not a file of the image.
    #[error("boot file {0:?} is not a file of the image")]
    BootFileMissing(String),
    /// A BIOS boot entry loading zero sectors.
    #[error("boot file {0:?}: load size of 0 sectors")]
    ZeroLoadSectors(String),
    /// A BIOS boot file too large to be read into memory.
    #[error("boot file {path:?}: {len} bytes, more than the {MAX_BOOT_FILE} read into memory")]
    BootFileTooLarge {
        /// The path.
        path: String,
        /// Its length.
        len: u64,
    },
    /// A BIOS boot file too short for a boot info table.
    #[error("boot file {0:?}: shorter than the 64 bytes a boot info table needs")]
    BootFileTooSmall(String),
    /// An empty EFI boot image.
    #[error("EFI boot image {0:?} is empty")]
    EmptyEfiImage(String),
    /// MBR boot code longer than the MBR holds.
    #[error("hybrid MBR code of {0} bytes; at most 432 fit")]
    MbrCodeSize(usize),
    /// MBR boot code without a BIOS boot file for it to load.
    #[error("hybrid MBR code needs a BIOS boot entry")]
    HybridWithoutBios,
    /// An EFI partition without an EFI boot image for it to cover.
    #[error("hybrid EFI partition needs an EFI boot entry")]
    HybridWithoutEfi,
    /// A BIOS boot file that isohdpfx.bin cannot start.
    #[error(
        "boot file {0:?}: no isolinux hybrid signature at byte 64 (isolinux-debug.bin cannot boot from disk)"
    )]
    NotHybridIsolinux(String),
    /// Reading a file's contents failed or gave another length than announced.
    #[error("reading {path:?}")]
    Read {
        /// The path in the image.
        path: String,
        /// What failed.
        #[source]
        source: io::Error,
    },
    /// Writing the image failed.
    #[error("writing the image")]
    Write(#[source] io::Error),
}

impl<'a> IsoImage<'a> {
    /// A plain image of regular files (mode 0644), no boot, no MBR: what the metadata disk
    /// of `osbuild run --data` needs (`CIDATA` with `config` at the root).
    pub fn plain(volume_id: &str, mtime: i64, files: &[(&str, &'a dyn Source)]) -> Self {
        IsoImage {
            volume_id: volume_id.to_string(),
            mtime,
            files: files
                .iter()
                .map(|&(path, source)| IsoFile {
                    path: path.to_string(),
                    source,
                    mode: 0o644,
                })
                .collect(),
            boot: None,
            hybrid: None,
        }
    }
}

/// The size in bytes [`write_iso`] will write for `image`, without reading any file.
pub fn iso_size(image: &IsoImage<'_>) -> Result<u64, IsoError> {
    let plan = layout::plan(image)?;
    Ok(u64::from(plan.total_sectors) * volume::SECTOR as u64)
}

/// A writer remembering whether it failed, to tell write errors from read errors.
struct Tracked<'w, W: Write> {
    inner: &'w mut W,
    written: u64,
    failed: bool,
}

impl<W: Write> Write for Tracked<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.inner.write(buf) {
            Ok(n) => {
                self.written += n as u64;
                Ok(n)
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Tracked<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), IsoError> {
        self.write_all(bytes).map_err(IsoError::Write)
    }

    fn zeros(&mut self, mut n: u64) -> Result<(), IsoError> {
        let z = [0u8; volume::SECTOR];
        while n > 0 {
            let k = n.min(z.len() as u64) as usize;
            self.put(&z[..k])?;
            n -= k as u64;
        }
        Ok(())
    }
}

/// Read the BIOS boot file into memory, checking its length.
fn read_boot_file(path: &str, source: &dyn Source) -> Result<Vec<u8>, IsoError> {
    let len = source.len();
    if len > MAX_BOOT_FILE {
        return Err(IsoError::BootFileTooLarge {
            path: path.to_string(),
            len,
        });
    }
    let read = |e| IsoError::Read {
        path: path.to_string(),
        source: e,
    };
    let mut data = Vec::with_capacity(len as usize);
    source
        .open()
        .map_err(read)?
        .take(len + 1)
        .read_to_end(&mut data)
        .map_err(read)?;
    if data.len() as u64 != len {
        let msg = format!("expected {len} bytes, read {}", data.len());
        return Err(read(io::Error::new(io::ErrorKind::InvalidData, msg)));
    }
    Ok(data)
}

/// Write `image` to `out`, strictly sequentially; returns the bytes written. File bodies are
/// streamed from their sources; only the BIOS boot file is held in memory, when a boot info
/// table or the hybrid MBR needs it.
pub fn write_iso<W: Write>(out: &mut W, image: &IsoImage<'_>) -> Result<u64, IsoError> {
    let plan = layout::plan(image)?;
    // The BIOS boot file as written, when it must be looked at or patched.
    let mut boot_file: Option<(usize, Vec<u8>)> = None;
    if let (Some((index, lba)), Some(bios)) =
        (plan.bios, image.boot.as_ref().and_then(|b| b.bios.as_ref()))
    {
        let code = image.hybrid.as_ref().and_then(|h| h.mbr_code.as_ref());
        if bios.boot_info_table || code.is_some() {
            let mut data = read_boot_file(&bios.path, image.files[index].source)?;
            let at = el_torito::ISOLINUX_SIGNATURE_AT;
            if code.is_some() && data.get(at..at + 4) != Some(&el_torito::ISOLINUX_SIGNATURE[..]) {
                return Err(IsoError::NotHybridIsolinux(bios.path.clone()));
            }
            if bios.boot_info_table {
                if data.len() < 64 {
                    return Err(IsoError::BootFileTooSmall(bios.path.clone()));
                }
                el_torito::patch_boot_info_table(&mut data, lba);
            }
            boot_file = Some((index, data));
        }
    }

    let mut w = Tracked {
        inner: out,
        written: 0,
        failed: false,
    };
    let system_area = u64::from(volume::PVD_SECTOR) * volume::SECTOR as u64;
    match &image.hybrid {
        Some(h) => {
            let total_bytes = u64::from(plan.total_sectors) * volume::SECTOR as u64;
            let mbr = hybrid::mbr(&hybrid::Mbr {
                code: h.mbr_code.as_deref(),
                bios_lba: plan
                    .bios
                    .map(|(_, lba)| lba)
                    .filter(|_| h.mbr_code.is_some()),
                total_bytes,
                efi: plan
                    .efi
                    .filter(|_| h.efi_partition)
                    .map(|(i, lba)| (lba, image.files[i].source.len())),
                signature: plan.signature,
            });
            w.put(&mbr)?;
            w.zeros(system_area - 512)?;
        }
        None => w.zeros(system_area)?,
    }
    w.put(&plan.metadata)?;
    let mut buf = vec![0u8; 64 << 10];
    for &(index, lba) in &plan.data {
        let expected = u64::from(lba) * volume::SECTOR as u64;
        if w.written != expected {
            // The plan and the stream disagree: a bug, reported rather than written.
            let msg = format!("at byte {} instead of {expected}", w.written);
            return Err(IsoError::Write(io::Error::other(msg)));
        }
        let file = &image.files[index];
        let len = match &boot_file {
            Some((i, data)) if *i == index => {
                w.put(data)?;
                data.len() as u64
            }
            _ => copy_source(file.source, &mut w, &mut buf).map_err(|e| {
                if w.failed {
                    IsoError::Write(e)
                } else {
                    IsoError::Read {
                        path: file.path.clone(),
                        source: e,
                    }
                }
            })?,
        };
        w.zeros(len.next_multiple_of(volume::SECTOR as u64) - len)?;
    }
    let total = u64::from(plan.total_sectors) * volume::SECTOR as u64;
    w.zeros(total.saturating_sub(w.written))?;
    Ok(w.written)
}
