//! Compression of outputs on every core, in bytes that do not depend on how many.
//!
//! gzip is [`ParallelGzip`]: deflate at level 6 (the level LinuxKit's Go gzip writer uses by
//! default) by flate2 with the zlib-rs backend, pigz-style in 1 MiB chunks on worker threads,
//! one member with no file name and mtime 0. zstd is level 3 in zstd's multithreaded mode with
//! at least one worker, whose jobs are cut by size alone. In both, the calling thread
//! serialises the archive while the workers compress, at most about two chunks per worker in
//! flight, and the output is the same for every number of threads.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use super::pgzip::ParallelGzip;

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

/// A writer that compresses into `W` on worker threads.
pub struct Compressor<W: Write> {
    inner: Inner<W>,
}

enum Inner<W: Write> {
    Gzip(ParallelGzip<W>),
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> fmt::Debug for Compressor<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let codec = match self.inner {
            Inner::Gzip(_) => Compression::Gzip,
            Inner::Zstd(_) => Compression::Zstd,
            Inner::None(_) => Compression::None,
        };
        f.debug_struct("Compressor")
            .field("codec", &codec)
            .finish_non_exhaustive()
    }
}

/// The number of cores, the default number of compressing threads.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl<W: Write> Compressor<W> {
    /// Start compressing into `inner` with `codec` on as many threads as there are cores.
    pub fn new(codec: Compression, inner: W) -> io::Result<Self> {
        Self::with_threads(codec, inner, available_threads())
    }

    /// Start compressing into `inner` with `codec` on `threads` worker threads (at least one).
    /// The output is the same whatever the number of threads.
    pub fn with_threads(codec: Compression, inner: W, threads: usize) -> io::Result<Self> {
        let threads = threads.max(1);
        let inner = match codec {
            Compression::Gzip => Inner::Gzip(ParallelGzip::with_threads(inner, 6, threads)),
            Compression::Zstd => {
                let mut enc = zstd::stream::write::Encoder::new(inner, 3)?;
                // One worker or more: zstd's jobs then have a size set by the level alone, so
                // the bytes are the same for any number of workers (zero workers, zstd's
                // single-threaded mode, would give other bytes).
                enc.multithread(u32::try_from(threads).unwrap_or(u32::MAX))?;
                enc.include_checksum(true)?;
                Inner::Zstd(enc)
            }
            Compression::None => Inner::None(inner),
        };
        Ok(Compressor { inner })
    }

    /// End the stream and return the inner writer, flushed.
    pub fn finish(self) -> io::Result<W> {
        match self.inner {
            Inner::Gzip(gz) => gz.finish(),
            Inner::Zstd(enc) => {
                let mut inner = enc.finish()?;
                inner.flush()?;
                Ok(inner)
            }
            Inner::None(mut inner) => {
                inner.flush()?;
                Ok(inner)
            }
        }
    }
}

impl<W: Write> Write for Compressor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Gzip(gz) => gz.write(data),
            Inner::Zstd(enc) => enc.write(data),
            Inner::None(inner) => inner.write(data),
        }
    }

    /// Writes out what is already compressed, without cutting the stream: flushing never
    /// changes the output.
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Gzip(gz) => gz.flush(),
            // zstd's flush would end the current job and block early, changing the bytes.
            Inner::Zstd(_) => Ok(()),
            Inner::None(inner) => inner.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::pgzip::CHUNK;
    use std::io::Read;
    use std::process::{Command, Stdio};

    fn sample() -> Vec<u8> {
        (0..600_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    /// About 9 MiB of text-like bytes that compress about 3:1: several gzip chunks and more
    /// than one zstd job at level 3.
    fn big_sample() -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let words: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("sym{i:x}_{} ", i * 7919 % 4093).into_bytes())
            .collect();
        let len = 9 * CHUNK + 4321;
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&words[(state % 2000) as usize]);
        }
        out.truncate(len);
        out
    }

    fn compress_with(codec: Compression, data: &[u8], threads: usize) -> Vec<u8> {
        let mut c = Compressor::with_threads(codec, Vec::new(), threads).unwrap();
        for piece in data.chunks(7777) {
            c.write_all(piece).unwrap();
        }
        c.flush().unwrap();
        c.finish().unwrap()
    }

    fn compress(codec: Compression, data: &[u8]) -> Vec<u8> {
        compress_with(codec, data, 2)
    }

    /// Run `tool args` with `input` on its standard input; its standard output.
    fn run(tool: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool}: {e}"));
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let feeder = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().unwrap();
        feeder.join().unwrap().unwrap();
        assert!(out.status.success(), "{tool} {args:?}: {}", out.status);
        out.stdout
    }

    #[test]
    fn gzip_bytes_do_not_depend_on_the_thread_count_and_gzip_reads_them() {
        let data = big_sample();
        let one = compress_with(Compression::Gzip, &data, 1);
        for threads in [2, 3] {
            assert!(
                compress_with(Compression::Gzip, &data, threads) == one,
                "{threads} threads give other bytes than one"
            );
        }
        run("gzip", &["-t"], &one);
        assert!(
            run("gzip", &["-dc"], &one) == data,
            "gunzip gives the input back"
        );
        // Within 1% of one zlib stream at the same level.
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap();
        assert!(
            (one.len() as f64) < single.len() as f64 * 1.01,
            "{} bytes against {} in one stream",
            one.len(),
            single.len()
        );
    }

    #[test]
    fn zstd_bytes_do_not_depend_on_the_thread_count_and_zstd_reads_them() {
        let data = big_sample();
        let one = compress_with(Compression::Zstd, &data, 1);
        for threads in [2, 4] {
            assert!(
                compress_with(Compression::Zstd, &data, threads) == one,
                "{threads} workers give other bytes than one"
            );
        }
        run("zstd", &["-t", "-q"], &one);
        assert!(
            run("zstd", &["-dc"], &one) == data,
            "zstd -d gives the input back"
        );
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
            let data = big_sample();
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
        for codec in [Compression::Gzip, Compression::Zstd, Compression::None] {
            let mut c = Compressor::new(codec, Failing).unwrap();
            let err = big_sample()
                .chunks(CHUNK / 3)
                .try_for_each(|piece| c.write_all(piece))
                .and_then(|()| c.finish().map(|_| ()))
                .unwrap_err();
            assert_eq!(err.to_string(), "disk full", "{codec}");
        }
    }
}
