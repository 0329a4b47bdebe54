//! Compression of outputs, on a thread of its own: the archive is serialised on the calling
//! thread and handed over in 1 MiB chunks through a bounded queue, so reading file bodies and
//! compressing them use two cores and memory stays bounded.
//!
//! gzip is written by flate2 with the zlib-rs backend at level 6 (the level LinuxKit's Go gzip
//! writer uses by default), with no file name and mtime 0; zstd at level 3, with zstd's own
//! worker threads. Both are deterministic for the same input.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;

/// A compression codec for outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (the kernel's default initramfs codec).
    Gzip,
    /// zstd (Linux 5.9 and later).
    Zstd,
    /// No compression.
    None,
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gzip" | "gz" => Ok(Compression::Gzip),
            "zstd" | "zst" => Ok(Compression::Zstd),
            "none" => Ok(Compression::None),
            other => Err(format!(
                "unknown compression {other:?}: use gzip, zstd or none"
            )),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "none",
        })
    }
}

const CHUNK: usize = 1 << 20;
const QUEUE: usize = 4;

/// A writer that compresses on a worker thread into `W`.
pub struct Compressor<W: Write + Send + 'static> {
    buf: Vec<u8>,
    tx: Option<SyncSender<Vec<u8>>>,
    worker: Option<JoinHandle<io::Result<W>>>,
    /// Why the worker stopped early, once known: reported again by every later call.
    stopped: Option<(io::ErrorKind, String)>,
}

impl<W: Write + Send + 'static> fmt::Debug for Compressor<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Compressor").finish_non_exhaustive()
    }
}

fn run_worker<W: Write>(codec: Compression, inner: W, rx: Receiver<Vec<u8>>) -> io::Result<W> {
    match codec {
        Compression::Gzip => {
            let mut enc = flate2::GzBuilder::new()
                .mtime(0)
                .write(inner, flate2::Compression::new(6));
            for chunk in rx {
                enc.write_all(&chunk)?;
            }
            enc.finish()
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(inner, 3)?;
            enc.multithread(2)?;
            enc.include_checksum(true)?;
            for chunk in rx {
                enc.write_all(&chunk)?;
            }
            enc.finish()
        }
        Compression::None => {
            let mut inner = inner;
            for chunk in rx {
                inner.write_all(&chunk)?;
            }
            Ok(inner)
        }
    }
}

impl<W: Write + Send + 'static> Compressor<W> {
    /// Start compressing into `inner` with `codec`.
    pub fn new(codec: Compression, inner: W) -> io::Result<Self> {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let worker = std::thread::Builder::new()
            .name(format!("{codec}-compress"))
            .spawn(move || run_worker(codec, inner, rx))?;
        Ok(Compressor {
            buf: Vec::with_capacity(CHUNK),
            tx: Some(tx),
            worker: Some(worker),
            stopped: None,
        })
    }

    fn send(&mut self) -> io::Result<()> {
        if let Some((kind, text)) = &self.stopped {
            return Err(io::Error::new(*kind, text.clone()));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let sent = self.tx.as_ref().map(|tx| tx.send(chunk));
        match sent {
            Some(Ok(())) => Ok(()),
            // The worker stopped early (its output failed, a full disk): report why.
            _ => {
                self.tx = None;
                let why = match self.worker.take().map(JoinHandle::join) {
                    Some(Ok(Err(cause))) => (cause.kind(), cause.to_string()),
                    _ => (io::ErrorKind::BrokenPipe, "compressor stopped".to_string()),
                };
                let err = io::Error::new(why.0, why.1.clone());
                self.stopped = Some(why);
                Err(err)
            }
        }
    }

    /// Flush what is left, wait for the worker, and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some((kind, text)) = self.stopped.take() {
            return Err(io::Error::new(kind, text));
        }
        let sent = self.send();
        self.tx = None;
        let Some(worker) = self.worker.take() else {
            // The last send found the worker stopped, joined it and holds its reason.
            return Err(sent
                .err()
                .unwrap_or_else(|| io::Error::other("compressor already finished")));
        };
        let result = worker
            .join()
            .map_err(|_| io::Error::other("compressor thread panicked"))?;
        let inner = result?;
        sent?;
        Ok(inner)
    }
}

impl<W: Write + Send + 'static> Write for Compressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

impl<W: Write + Send + 'static> Drop for Compressor<W> {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> Vec<u8> {
        (0..600_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
        let mut c = Compressor::new(codec, Vec::new()).unwrap();
        for piece in data.chunks(7777) {
            c.write_all(piece).unwrap();
        }
        c.finish().unwrap()
    }

    /// A writer that is full after `room` bytes.
    struct Full {
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            let n = data.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_outputs_own_error_is_reported() {
        for codec in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut c = Compressor::new(codec, Full { room: 16 }).unwrap();
            let data = sample();
            let err = data
                .chunks(CHUNK / 3)
                .try_for_each(|piece| c.write_all(piece))
                .and_then(|()| c.finish().map(|_| ()))
                .unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::StorageFull, "{codec}: {err}");
        }
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let data = sample();
        for codec in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let a = compress(codec, &data);
            let b = compress(codec, &data);
            assert_eq!(a, b, "{codec} output differs between runs");
            let mut back = Vec::new();
            match codec {
                Compression::Gzip => {
                    flate2::read::GzDecoder::new(&a[..])
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::Zstd => {
                    zstd::stream::read::Decoder::new(&a[..])
                        .unwrap()
                        .read_to_end(&mut back)
                        .unwrap();
                }
                Compression::None => back = a.clone(),
            }
            assert_eq!(back, data, "{codec} round trip");
        }
    }

    #[test]
    fn gzip_header_has_no_time_or_name() {
        let out = compress(Compression::Gzip, b"x");
        assert_eq!(&out[..4], &[0x1f, 0x8b, 8, 0], "no FNAME flag");
        assert_eq!(&out[4..8], &[0, 0, 0, 0], "mtime 0");
    }

    #[test]
    fn parses_names() {
        assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
        assert!("lz4".parse::<Compression>().unwrap_err().contains("lz4"));
    }

    #[derive(Debug)]
    struct Failing;
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::other("disk full"))
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn inner_write_errors_surface() {
        let mut c = Compressor::new(Compression::None, Failing).unwrap();
        let _ = c.write_all(&sample());
        let err = c.finish().unwrap_err();
        assert_eq!(err.to_string(), "disk full");
    }
}
