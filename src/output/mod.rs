//! Output formats: the table that declares them ([`formats`]), one writer per format composing
//! boot artifacts ([`crate::boot`]) and disk layouts ([`crate::disk`]) into files that appear
//! whole or not at all, and the manifest ([`manifest`]) that says what a build wrote.

mod bios_disk;
mod disk_image;
mod efi_disk;
pub mod formats;
mod hybrid_disk;
mod iso;
mod kernel_initrd;
mod kernel_squashfs;
pub mod manifest;
mod ova;
mod rootfs_tar;
mod vm_disk;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::archive::ArchiveError;
use crate::archive::atomic::StagedOutputs;
use crate::archive::compress::Compression;
use crate::disk::source::Source;
use crate::image::Arch;
use crate::tree::{Content, Tree};
pub use formats::{Boot, DiskBoot, Firmware, Format, Role};
pub use manifest::Manifest;

/// Why an output could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// Writing an archive or an output file failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The inputs do not fit the format (no kernel, a kernel without an EFI stub, ...).
    #[error("{0}")]
    Input(String),
    /// The request cannot be done as asked (`-o` with several files, a size too small, ...).
    #[error("{0}")]
    Usage(String),
    /// A disk layout or filesystem could not be made.
    #[error("{what}: {reason}")]
    Layout {
        /// The file or part being made.
        what: String,
        /// What went wrong.
        reason: String,
    },
}

impl OutputError {
    /// An I/O failure while writing the output `path`.
    pub fn io(path: &Path, source: io::Error) -> OutputError {
        OutputError::Archive(ArchiveError::File {
            path: path.display().to_string(),
            source,
        })
    }
}

impl Source for Content {
    fn len(&self) -> u64 {
        Content::len(self)
    }

    fn open(&self) -> io::Result<Box<dyn io::Read + '_>> {
        Ok(Box::new(Content::open(self)?))
    }
}

/// Where and how outputs are written.
#[derive(Debug, Clone)]
pub struct OutputRequest {
    /// Directory for the outputs.
    pub dir: PathBuf,
    /// Base name of the outputs.
    pub name: String,
    /// A single-file output's path instead of the default name; `-` means standard output.
    pub output: Option<PathBuf>,
    /// The target architecture.
    pub arch: Arch,
    /// Initrd compression.
    pub compression: Compression,
    /// `SOURCE_DATE_EPOCH`: later mtimes are clamped to it.
    pub mtime_clamp: Option<i64>,
    /// The mtime of entries the writers generate.
    pub mtime: i64,
    /// The size of disk images (`--size`), in bytes; `None` for the content plus a margin.
    pub disk_size: Option<u64>,
    /// The layout VM disks hold (`--boot`); `None` for each format's default.
    pub boot: Option<DiskBoot>,
    /// Store qcow2 clusters compressed.
    pub compress_clusters: bool,
    /// Threads that compress outputs (`--jobs`, at least one); the bytes do not depend on it.
    pub jobs: usize,
}

/// The boot loaders the disk and ISO formats install, from the `boot` images.
#[derive(Debug, Clone, Default)]
pub struct Loaders {
    /// The flattened `boot.efi` image (systemd's EFI stubs).
    pub efi: Option<Tree>,
    /// The flattened `boot.bios` image (syslinux).
    pub bios: Option<Tree>,
}

/// The directory outputs go to: `-o FILE`'s (`.` for a bare name), else `--dir`.
pub fn output_dir(output: Option<&Path>, dir: &Path) -> PathBuf {
    match output {
        Some(out) => out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
        None => dir.to_path_buf(),
    }
}

/// Everything a writer reads.
pub struct Job<'a> {
    /// The format being written.
    pub format: Format,
    /// The assembled root filesystem.
    pub tree: &'a Tree,
    /// Where and how.
    pub request: &'a OutputRequest,
    /// Boot loaders, when the format needs them.
    pub loaders: &'a Loaders,
}

impl Job<'_> {
    /// The boot files, or the error saying this format needs a kernel.
    pub fn boot_files(&self) -> Result<crate::boot::BootFiles, OutputError> {
        crate::boot::BootFiles::of(self.tree, self.format.name).map_err(OutputError::Input)
    }

    /// A scratch directory beside the outputs (same filesystem, removed when dropped).
    pub fn scratch(&self) -> Result<tempfile::TempDir, OutputError> {
        let dir = output_dir(self.request.output.as_deref(), &self.request.dir);
        tempfile::Builder::new()
            .prefix(&crate::archive::atomic::scratch_prefix())
            .tempdir_in(&dir)
            .map_err(|e| OutputError::io(&dir, e))
    }
}

/// The files of one build being written: staged beside their destinations and moved into
/// place together by [`write_outputs`].
pub struct Outputs {
    staged: StagedOutputs,
    base: PathBuf,
    single: Option<PathBuf>,
    written: Vec<manifest::WrittenFormat>,
}

impl Outputs {
    /// The destination of the current format's file with `suffix`.
    fn dest(&self, suffix: &str) -> PathBuf {
        match &self.single {
            Some(out) => out.clone(),
            None => PathBuf::from(format!("{}{suffix}", self.base.display())),
        }
    }

    /// The role of the current format's file `suffix`.
    fn role(&self, suffix: &str) -> Result<Role, OutputError> {
        let format = self
            .written
            .last()
            .map(|(f, _, _)| *f)
            .ok_or_else(|| OutputError::Usage("no format is being written".into()))?;
        format
            .files
            .iter()
            .find(|f| f.suffix == suffix)
            .map(|f| f.role)
            .ok_or_else(|| OutputError::Usage(format!("the {format} format has no file {suffix}")))
    }

    /// Start the current format's file with `suffix`; returns the open (staged) file.
    pub fn create(&mut self, suffix: &str) -> Result<File, OutputError> {
        let role = self.role(suffix)?;
        let dest = self.dest(suffix);
        if self.staged.temp_path(&dest).is_some() {
            return Err(OutputError::Usage(format!(
                "two formats of this build write {}: build them under different names",
                dest.display()
            )));
        }
        let file = self.staged.create(&dest)?;
        if let Some((_, _, files)) = self.written.last_mut() {
            files.push((dest, role));
        }
        Ok(file)
    }

    /// Write the current format's file `suffix` from `content`. A file another format of this
    /// build already wrote from the same content (the kernel) is listed again, not rewritten.
    pub fn copy(&mut self, suffix: &str, content: &Content) -> Result<(), OutputError> {
        let dest = self.dest(suffix);
        if self.staged.temp_path(&dest).is_some() {
            let role = self.role(suffix)?;
            if let Some((_, _, files)) = self.written.last_mut() {
                files.push((dest, role));
            }
            return Ok(());
        }
        let mut file = BufWriter::new(self.create(suffix)?);
        let mut buf = vec![0u8; 1 << 20];
        crate::archive::copy_content(content, &mut file, &mut buf, &dest.display().to_string())?;
        file.flush().map_err(|e| OutputError::io(&dest, e))
    }
}

/// Finish a buffered output file: flush it and report errors against `suffix`'s file.
pub fn finish(file: BufWriter<File>, what: &str) -> Result<File, OutputError> {
    file.into_inner()
        .map_err(|e| OutputError::io(Path::new(what), e.into_error()))
}

/// A write that failed for want of space, said of the output file being written when it
/// happened (or of the output directory, before any was started) with the OS error, rather
/// than of the entry or scratch file that met it.
fn disk_full(e: OutputError, out: &Outputs, dir: &Path) -> OutputError {
    let full = match &e {
        OutputError::Archive(
            ArchiveError::Write { source, .. } | ArchiveError::File { source, .. },
        ) => source.kind() == io::ErrorKind::StorageFull,
        _ => false,
    };
    if !full {
        return e;
    }
    let file = out
        .written
        .last()
        .and_then(|(_, _, files)| files.last())
        .map_or(dir, |(dest, _)| dest.as_path());
    OutputError::io(
        file,
        io::Error::from_raw_os_error(rustix::io::Errno::NOSPC.raw_os_error()),
    )
}

/// Check that `-o` (a file, or `-` for standard output) can take `formats`: exactly one
/// format of one file, and for standard output one that streams. Checked before anything is
/// pulled, and again by [`write_outputs`].
pub fn check_single_output(formats: &[Format], output: Option<&Path>) -> Result<(), OutputError> {
    let Some(output) = output else {
        return Ok(());
    };
    let [format] = formats else {
        return Err(OutputError::Usage(
            "-o names one output: give exactly one --format".into(),
        ));
    };
    if format.files.len() != 1 {
        return Err(OutputError::Usage(format!(
            "{format} is {} files and cannot go to one file: use --name and --dir instead of -o",
            format.files.len()
        )));
    }
    if output == Path::new("-") && format.stream.is_none() {
        return Err(OutputError::Usage(format!(
            "{format} cannot go to standard output: only {} can",
            Format::all()
                .filter(|f| f.stream.is_some())
                .map(|f| f.name)
                .collect::<Vec<_>>()
                .join(" and ")
        )));
    }
    Ok(())
}

/// Write `formats` of `tree` as asked; returns the files written (nothing for standard
/// output). Either every output, and the manifest `NAME.json`, appear or none does.
pub fn write_outputs(
    tree: &Tree,
    formats: &[Format],
    request: &OutputRequest,
    loaders: &Loaders,
) -> Result<Vec<PathBuf>, OutputError> {
    check_single_output(formats, request.output.as_deref())?;
    if request.output.as_deref() == Some(Path::new("-"))
        && let (Some(&format), Some(stream)) =
            (formats.first(), formats.first().and_then(|f| f.stream))
    {
        let job = Job {
            format,
            tree,
            request,
            loaders,
        };
        let stdout = io::stdout();
        let mut lock = BufWriter::new(stdout.lock());
        stream(&job, &mut lock)?;
        lock.flush()
            .map_err(|e| OutputError::io(Path::new("standard output"), e))?;
        return Ok(Vec::new());
    }
    crate::archive::atomic::sweep_output_dir(&output_dir(request.output.as_deref(), &request.dir));
    let mut out = Outputs {
        staged: StagedOutputs::new(),
        base: request.dir.join(&request.name),
        single: request.output.clone(),
        written: Vec::new(),
    };
    for format in formats {
        format
            .check_arch(request.arch)
            .map_err(OutputError::Usage)?;
        let boot = format
            .disk_boot(request.arch, request.boot)
            .map_err(OutputError::Usage)?;
        out.written
            .push((*format, format.boot_for(boot), Vec::new()));
        let job = Job {
            format: *format,
            tree,
            request,
            loaders,
        };
        if let Err(e) = (format.writer)(&job, &mut out) {
            return Err(disk_full(e, &out, &request.dir));
        }
    }
    let Outputs {
        mut staged,
        written,
        single,
        ..
    } = out;
    if single.is_none() {
        let manifest_path = request.dir.join(format!("{}.json", request.name));
        let manifest = manifest::Manifest::describe(
            &request.name,
            request.arch,
            &written,
            &staged,
            &manifest_path,
        )?;
        let mut file = BufWriter::new(staged.create(&manifest_path)?);
        file.write_all(manifest.to_json().as_bytes())
            .map_err(|e| OutputError::io(&manifest_path, e))?;
        finish(file, &manifest_path.display().to_string())?;
    }
    Ok(staged.commit()?)
}
