//! What a disk writer copies into an image: bytes whose length is known before they are read.

use std::io::{self, Read};

/// The bytes of one file a writer copies in. The length is known up front (layouts are
/// planned before anything is written); the bytes are read once, streaming.
pub trait Source: Sync {
    /// How many bytes [`Source::open`] yields.
    fn len(&self) -> u64;

    /// Whether there are no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader over exactly [`Source::len`] bytes.
    fn open(&self) -> io::Result<Box<dyn Read + '_>>;
}

impl Source for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self))
    }
}

impl Source for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn open(&self) -> io::Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.as_slice()))
    }
}

/// Copy `source` into `out` with `buf`, failing when it yields more or fewer bytes than its
/// length says (a file changed under the writer would otherwise corrupt the layout).
pub fn copy_source<W: io::Write + ?Sized>(
    source: &dyn Source,
    out: &mut W,
    buf: &mut [u8],
) -> io::Result<u64> {
    let expected = source.len();
    let mut reader = source.open()?;
    let mut total = 0u64;
    loop {
        let n = match reader.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > expected {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    if total != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("expected {expected} bytes, read {total}"),
        ));
    }
    Ok(total)
}
