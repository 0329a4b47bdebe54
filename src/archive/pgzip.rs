//! gzip compressed on every core, as pigz does it: one gzip member (RFC 1952) whose deflate
//! stream (RFC 1951) is cut into fixed chunks compressed independently.
//!
//! The input is cut into [`CHUNK`]-byte chunks. Each is compressed as raw deflate by a worker
//! thread, primed with the last 32 KiB of the chunk before it as dictionary (so matches reach
//! back across the cut and the ratio stays close to a single stream), and ended with a sync
//! flush (an empty stored block, which leaves the stream byte-aligned) so the pieces can be
//! joined; the last chunk ends the stream instead. The member is: a 10-byte header (no name,
//! mtime 0), the joined deflate pieces, the CRC-32 of the whole input (the chunks' CRCs
//! combined in order) and its length mod 2^32.
//!
//! Where the cuts fall depends only on the input, so the output depends only on the input and
//! the level, never on the number of threads. At most two chunks per thread are in flight.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// Bytes of input compressed as one piece.
pub const CHUNK: usize = 1 << 20;
/// The deflate window: how much of the previous chunk primes the next.
const WINDOW: usize = 32 << 10;

/// One chunk to compress.
struct Job {
    seq: u64,
    dictionary: Vec<u8>,
    data: Vec<u8>,
    last: bool,
}

/// One compressed chunk: its deflate bytes and the CRC of its input.
struct Done {
    seq: u64,
    deflate: io::Result<Vec<u8>>,
    crc: Crc,
}

/// A writer that gzips what it is given on several threads into `W`; [`ParallelGzip::finish`]
/// ends the member and returns `W`.
pub struct ParallelGzip<W: Write> {
    inner: W,
    level: u32,
    pending: Vec<u8>,
    /// The last [`WINDOW`] bytes of the chunk handed out last.
    window: Vec<u8>,
    jobs: Option<SyncSender<Job>>,
    results: Receiver<Done>,
    workers: Vec<JoinHandle<()>>,
    /// Chunks handed out and not yet written.
    in_flight: usize,
    max_in_flight: usize,
    /// Results that arrived before the chunks ahead of them.
    early: BTreeMap<u64, Done>,
    next_seq: u64,
    next_write: u64,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> fmt::Debug for ParallelGzip<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParallelGzip")
            .field("level", &self.level)
            .field("threads", &self.workers.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write> ParallelGzip<W> {
    /// Compress at `level` (0-9, clamped) into `inner` on as many threads as there are cores.
    pub fn new(inner: W, level: u32) -> Self {
        let threads = super::compress::available_threads();
        Self::with_threads(inner, level, threads)
    }

    /// Compress at `level` (0-9, clamped) into `inner` on `threads` worker threads (at least
    /// one). The output is the same whatever the number of threads.
    pub fn with_threads(inner: W, level: u32, threads: usize) -> Self {
        let threads = threads.max(1);
        let level = level.min(9);
        let max_in_flight = 2 * threads;
        let (jobs, job_rx) = sync_channel::<Job>(max_in_flight);
        let job_rx = Arc::new(Mutex::new(job_rx));
        let (done_tx, results) = channel::<Done>();
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let job_rx = Arc::clone(&job_rx);
            let done_tx = done_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("gzip-{i}"))
                .spawn(move || work(level, &job_rx, &done_tx));
            // A thread that cannot be started leaves fewer workers; none at all is reported
            // by the first write.
            if let Ok(handle) = spawned {
                workers.push(handle);
            }
        }
        ParallelGzip {
            inner,
            level,
            pending: Vec::with_capacity(CHUNK),
            window: Vec::new(),
            jobs: Some(jobs),
            results,
            workers,
            in_flight: 0,
            max_in_flight,
            early: BTreeMap::new(),
            next_seq: 0,
            next_write: 0,
            crc: Crc::new(),
            header_written: false,
        }
    }

    /// The 10-byte member header: deflate, no flags, mtime 0, the level hint, OS unknown.
    fn header(&self) -> [u8; 10] {
        let xfl = match self.level {
            9 => 2,
            0 | 1 => 4,
            _ => 0,
        };
        [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255]
    }

    /// Hand the pending bytes to the workers as the next chunk.
    fn dispatch(&mut self, last: bool) -> io::Result<()> {
        if self.workers.is_empty() {
            return Err(io::Error::other(
                "gzip: no compression thread could be started",
            ));
        }
        while self.in_flight >= self.max_in_flight {
            self.write_next(true)?;
        }
        let data = std::mem::replace(&mut self.pending, Vec::with_capacity(CHUNK));
        // Every chunk but the last is whole (longer than the window), so the 32 KiB before a
        // chunk are the end of the chunk before it.
        let tail = data[data.len().saturating_sub(WINDOW)..].to_vec();
        let dictionary = std::mem::replace(&mut self.window, tail);
        let job = Job {
            seq: self.next_seq,
            dictionary,
            data,
            last,
        };
        let jobs = self.jobs.as_ref().ok_or_else(finished)?;
        jobs.send(job)
            .map_err(|_| io::Error::other("gzip: the compression threads stopped"))?;
        self.next_seq += 1;
        self.in_flight += 1;
        Ok(())
    }

    /// Write the next chunk in order if it is done (or wait for it when `block`).
    fn write_next(&mut self, block: bool) -> io::Result<bool> {
        loop {
            if let Some(done) = self.early.remove(&self.next_write) {
                self.emit(done)?;
                return Ok(true);
            }
            let done = if block {
                self.results
                    .recv()
                    .map_err(|_| io::Error::other("gzip: the compression threads stopped"))?
            } else {
                match self.results.try_recv() {
                    Ok(done) => done,
                    Err(_) => return Ok(false),
                }
            };
            self.early.insert(done.seq, done);
        }
    }

    fn emit(&mut self, done: Done) -> io::Result<()> {
        if !self.header_written {
            let header = self.header();
            self.inner.write_all(&header)?;
            self.header_written = true;
        }
        let deflate = done.deflate?;
        self.inner.write_all(&deflate)?;
        self.crc.combine(&done.crc);
        self.next_write += 1;
        self.in_flight -= 1;
        Ok(())
    }

    /// End the member (the last chunk, CRC-32 and length) and return the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.dispatch(true)?;
        while self.in_flight > 0 {
            self.write_next(true)?;
        }
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.inner.write_all(&trailer)?;
        self.inner.flush()?;
        self.stop();
        Ok(self.inner)
    }

    /// Close the job queue and wait for the workers.
    fn stop(&mut self) {
        self.jobs = None;
        for handle in self.workers.drain(..) {
            let _ = handle.join();
        }
    }
}

fn finished() -> io::Error {
    io::Error::other("gzip: the stream was already finished")
}

impl<W: Write> Write for ParallelGzip<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.pending.len());
        self.pending.extend_from_slice(&buf[..n]);
        if self.pending.len() == CHUNK {
            self.dispatch(false)?;
            while self.write_next(false)? {}
        }
        Ok(n)
    }

    /// Writes the chunks already compressed. The chunk being filled is not cut short, so
    /// flushing never changes the output.
    fn flush(&mut self) -> io::Result<()> {
        while self.write_next(false)? {}
        self.inner.flush()
    }
}

/// A worker: compress the jobs it takes until the queue closes.
fn work(level: u32, jobs: &Mutex<Receiver<Job>>, done: &Sender<Done>) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => rx.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut crc = Crc::new();
        crc.update(&job.data);
        let deflate = compress_chunk(level, &job.dictionary, &job.data, job.last);
        if done
            .send(Done {
                seq: job.seq,
                deflate,
                crc,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Raw deflate of one chunk by a compressor of its own.
///
/// A compressor reused across chunks (reset, then primed with the next dictionary) carries
/// state from the chunks it compressed before into the next one, so the bytes of a chunk would
/// depend on which chunks the same thread had compressed, that is on the scheduling. A fresh
/// compressor per chunk makes each chunk's bytes a function of its dictionary and data alone;
/// it costs an allocation of the deflate state per MiB of input.
fn compress_chunk(level: u32, dictionary: &[u8], data: &[u8], last: bool) -> io::Result<Vec<u8>> {
    let mut compress = Compress::new(Compression::new(level), false);
    deflate_chunk(&mut compress, dictionary, data, last)
}

/// Raw deflate of `data` primed with `dictionary`, ended by a sync flush, or by the final
/// block when `last`.
pub(crate) fn deflate_chunk(
    compress: &mut Compress,
    dictionary: &[u8],
    data: &[u8],
    last: bool,
) -> io::Result<Vec<u8>> {
    let failed = |e: flate2::CompressError| io::Error::other(format!("gzip: {e}"));
    if !dictionary.is_empty() {
        compress.set_dictionary(dictionary).map_err(failed)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
    let start = compress.total_in();
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = usize::try_from(compress.total_in() - start).unwrap_or(data.len());
        let status = compress
            .compress_vec(&data[consumed.min(data.len())..], &mut out, flush)
            .map_err(failed)?;
        let all_in = compress.total_in() - start == data.len() as u64;
        match status {
            Status::StreamEnd => return Ok(out),
            // With room left over after a sync flush, the flush is complete.
            Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => {
                return Ok(out);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Bytes that compress about 3:1, with repeats farther apart than a chunk.
    fn sample(len: usize) -> Vec<u8> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let words: Vec<Vec<u8>> = (0..500)
            .map(|i| format!("word{i:x}-{} ", i * 7919 % 1000).into_bytes())
            .collect();
        let mut out = Vec::with_capacity(len + 32);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            out.extend_from_slice(&words[(state % 500) as usize]);
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], level: u32, threads: usize, piece: usize) -> Vec<u8> {
        let mut w = ParallelGzip::with_threads(Vec::new(), level, threads);
        for part in data.chunks(piece.max(1)) {
            w.write_all(part).unwrap();
        }
        w.finish().unwrap()
    }

    fn gunzip(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    #[test]
    fn round_trips_and_ignores_the_thread_count() {
        let data = sample(3 * CHUNK + 12_345);
        let one = gzip(&data, 6, 1, 70_000);
        assert_eq!(gunzip(&one), data);
        assert!(one.len() < data.len() / 2, "{} bytes", one.len());
        for threads in [2, 3, 4] {
            assert_eq!(gzip(&data, 6, threads, 4096), one, "{threads} threads");
        }
        assert_eq!(&one[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        let isize = u32::from_le_bytes(one[one.len() - 4..].try_into().unwrap());
        assert_eq!(isize as usize, data.len());
    }

    #[test]
    fn the_dictionary_reaches_back_across_a_cut() {
        // A chunk of noise, then its last 16 KiB again: primed with the chunk's end, the
        // second chunk costs a few bytes instead of 16 KiB. (deflate reaches back a little less
        // than 32 KiB, so a repeat at exactly 32 KiB would find nothing.)
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut data: Vec<u8> = (0..CHUNK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        data.extend_from_within(CHUNK - (16 << 10)..);
        let gz = gzip(&data, 6, 2, 10_000);
        assert_eq!(gunzip(&gz), data);
        assert!(gz.len() < CHUNK + 4096, "{} bytes", gz.len());
    }

    #[test]
    fn empty_and_exact_multiples() {
        for len in [0, 1, CHUNK, 2 * CHUNK] {
            let data = sample(len);
            let gz = gzip(&data, 9, 3, 100_000);
            assert_eq!(gunzip(&gz), data, "{len} bytes");
            assert_eq!(gz[8], 2, "level 9 hint");
        }
    }

    #[test]
    fn flushing_does_not_change_the_output() {
        let data = sample(CHUNK + 5000);
        let mut w = ParallelGzip::with_threads(Vec::new(), 6, 2);
        for part in data.chunks(1000) {
            w.write_all(part).unwrap();
            w.flush().unwrap();
        }
        assert_eq!(w.finish().unwrap(), gzip(&data, 6, 2, data.len()));
    }

    #[test]
    fn crc_combine_equals_the_crc_of_the_whole() {
        let data = sample(100_000);
        let mut whole = Crc::new();
        whole.update(&data);
        for cut in [0, 1, 4095, 65_536, 99_999, 100_000] {
            let (a, b) = data.split_at(cut);
            let mut first = Crc::new();
            first.update(a);
            let mut second = Crc::new();
            second.update(b);
            first.combine(&second);
            assert_eq!(first.sum(), whole.sum(), "cut at {cut}");
            assert_eq!(first.amount(), 100_000);
        }
        // The check value of the CRC-32 used by gzip.
        let mut check = Crc::new();
        check.update(b"123456789");
        assert_eq!(check.sum(), 0xcbf4_3926);
    }
}
