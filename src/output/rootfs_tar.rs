//! The `tar` format: the whole root filesystem, `boot/` included, as NAME.tar.

use std::io::{BufWriter, Write};

use super::{Job, OutputError, Outputs, finish};
use crate::archive::tar::{TarOptions, write_tar};

fn options<'a>(job: &Job<'_>) -> TarOptions<'a> {
    TarOptions {
        mtime_clamp: job.request.mtime_clamp,
        filter: None,
    }
}

/// `tar` into the output directory.
pub(super) fn write(job: &Job<'_>, out: &mut Outputs) -> Result<(), OutputError> {
    let mut file = BufWriter::with_capacity(1 << 20, out.create(".tar")?);
    write_tar(job.tree, &mut file, &options(job))?;
    finish(file, "tar")?;
    Ok(())
}

/// `tar` to standard output.
pub(super) fn stream(job: &Job<'_>, mut out: &mut dyn Write) -> Result<(), OutputError> {
    write_tar(job.tree, &mut out, &options(job))?;
    Ok(())
}
