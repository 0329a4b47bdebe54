//! A window onto part of a file or device: a partition seen as a volume of its own, so a
//! filesystem writer cannot touch anything outside it.

use std::io::{self, Read, Seek, SeekFrom, Write};

/// `len` bytes of `inner` starting at `start`, with its own position.
#[derive(Debug)]
pub struct Slice<T> {
    inner: T,
    start: u64,
    len: u64,
    pos: u64,
}

impl<T: Seek> Slice<T> {
    /// The window `start..start+len` of `inner`.
    pub fn new(inner: T, start: u64, len: u64) -> Slice<T> {
        Slice {
            inner,
            start,
            len,
            pos: 0,
        }
    }

    /// The underlying file or device.
    pub fn into_inner(self) -> T {
        self.inner
    }

    fn room(&self, want: usize) -> usize {
        let left = self.len.saturating_sub(self.pos);
        want.min(usize::try_from(left).unwrap_or(usize::MAX))
    }
}

impl<T: Read + Seek> Read for Slice<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 {
            return Ok(0);
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let got = self.inner.read(&mut buf[..n])?;
        self.pos += got as u64;
        Ok(got)
    }
}

impl<T: Write + Seek> Write for Slice<T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.room(buf.len());
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("write past the end of a {}-byte region", self.len),
            ));
        }
        self.inner.seek(SeekFrom::Start(self.start + self.pos))?;
        let done = self.inner.write(&buf[..n])?;
        self.pos += done as u64;
        Ok(done)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T> Seek for Slice<T> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(t) if t <= self.len => {
                self.pos = t;
                Ok(t)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("seek outside a {}-byte region", self.len),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn stays_inside_its_window() {
        let mut s = Slice::new(Cursor::new(vec![0u8; 16]), 4, 8);
        s.write_all(b"abcdefgh").unwrap();
        assert!(s.write_all(b"x").is_err());
        assert!(s.seek(SeekFrom::Start(9)).is_err());
        s.seek(SeekFrom::End(-2)).unwrap();
        let mut two = [0u8; 4];
        assert_eq!(s.read(&mut two).unwrap(), 2);
        assert_eq!(&two[..2], b"gh");
        let inner = s.into_inner().into_inner();
        assert_eq!(&inner[..], b"\0\0\0\0abcdefgh\0\0\0\0");
    }
}
