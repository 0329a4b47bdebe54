//! A byte range of a file seen as a file of its own (Read + Seek), so a tar stored inside
//! another file (a kernel image's `kernel.tar` inside a layer) is read where it lies.

use std::io::{self, Read, Seek, SeekFrom};

/// `len` bytes of `inner` starting at `base`.
#[derive(Debug)]
pub struct Window<R> {
    inner: R,
    len: u64,
    pos: u64,
}

impl<R: Read + Seek> Window<R> {
    /// The window `[base, base + len)` of `inner`.
    pub fn new(mut inner: R, base: u64, len: u64) -> io::Result<Self> {
        inner.seek(SeekFrom::Start(base))?;
        Ok(Window { inner, len, pos: 0 })
    }
}

impl<R: Read + Seek> Read for Window<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = self.inner.read(&mut buf[..want])?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for Window<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the start"))?;
        let target = target.min(self.len);
        // Relative seeks keep a BufReader's buffer when the move is small.
        let delta = i64::try_from(target as i128 - self.pos as i128)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "seek too far"))?;
        self.inner.seek_relative(delta)?;
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn reads_and_seeks_inside_the_range_only() {
        let mut w = Window::new(Cursor::new(b"0123456789".to_vec()), 2, 5).unwrap();
        let mut s = String::new();
        w.read_to_string(&mut s).unwrap();
        assert_eq!(s, "23456");
        w.seek(SeekFrom::Start(1)).unwrap();
        let mut b = [0u8; 2];
        w.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"34");
        assert_eq!(w.seek(SeekFrom::End(0)).unwrap(), 5);
        assert_eq!(w.read(&mut b).unwrap(), 0);
        assert!(w.seek(SeekFrom::Current(-10)).is_err());
    }
}
