//! streamOptimized VMDK, OVA, GNU sparse tar and parallel gzip, checked with the reference
//! tools: `qemu-img check/info/compare` for the VMDK, GNU tar for the sparse tar and the OVA,
//! gzip for the parallel gzip writer.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use osbuild::archive::pgzip::ParallelGzip;
use osbuild::archive::{sparse_tar, tar};
use osbuild::disk::vm::vmdk::{self, Adapter, VmdkOptions};
use osbuild::disk::vm::{RawDisk, ovf};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

mod support;

use support::sparse::sparse_disk;

/// Run a tool; panic with its output when it fails. Returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn opts() -> VmdkOptions {
    VmdkOptions {
        cid: 0x0bad_cafe,
        uuid: uuid::Uuid::from_bytes(*b"osbuild-vmdk-id!"),
        adapter: Adapter::Lsilogic,
        file_name: "disk.vmdk".into(),
        threads: 0,
    }
}

/// Write the VMDK of `raw_path` and check it with qemu-img against the raw disk.
fn check_vmdk(dir: &Path, raw_path: &Path, size: u64) -> u64 {
    let f = File::open(raw_path).unwrap();
    let raw = RawDisk::new(&f, size);
    let out = dir.join("disk.vmdk");
    let file = File::create(&out).unwrap();
    let n = vmdk::write_stream_optimized(&raw, std::io::BufWriter::new(file), &opts())
        .unwrap()
        .bytes;
    assert_eq!(n, std::fs::metadata(&out).unwrap().len());
    run(Command::new("qemu-img")
        .args(["check", "-f", "vmdk"])
        .arg(&out));
    let info: serde_json::Value = serde_json::from_str(&run(Command::new("qemu-img")
        .args(["info", "-f", "vmdk", "--output", "json"])
        .arg(&out)))
    .unwrap();
    assert_eq!(info["format"], "vmdk");
    assert_eq!(info["virtual-size"], size);
    let data = &info["format-specific"]["data"];
    assert_eq!(data["create-type"], "streamOptimized", "{info}");
    assert_eq!(data["cid"], 0x0bad_cafe_u32);
    assert_eq!(data["parent-cid"], 0xffff_ffff_u32);
    assert_eq!(data["extents"][0]["compressed"], true, "{info}");
    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "vmdk"])
        .arg(raw_path)
        .arg(&out));
    n
}

/// Write the sparse tar of `raw_path` (gzipped when `gz`), extract it with GNU tar and compare.
fn check_sparse_tar(dir: &Path, raw_path: &Path, size: u64, gz: bool) -> u64 {
    let f = File::open(raw_path).unwrap();
    let raw = RawDisk::new(&f, size);
    let archive = dir.join(if gz { "disk.tar.gz" } else { "disk.tar" });
    let file = File::create(&archive).unwrap();
    let n = if gz {
        let mut w = ParallelGzip::with_threads(file, 6, 2);
        let n = sparse_tar::write_sparse_disk(&mut w, "disk.raw", &raw, 1_600_000_000).unwrap();
        w.finish().unwrap();
        n
    } else {
        let mut w = std::io::BufWriter::new(file);
        let n = sparse_tar::write_sparse_disk(&mut w, "disk.raw", &raw, 1_600_000_000).unwrap();
        w.flush().unwrap();
        assert_eq!(n, std::fs::metadata(&archive).unwrap().len());
        n
    };
    let flags = if gz { "-tvzf" } else { "-tvf" };
    let listing = run(Command::new("tar").arg(flags).arg(&archive));
    let fields: Vec<&str> = listing.split_whitespace().collect();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert_eq!(fields.last(), Some(&"disk.raw"), "{listing}");
    assert_eq!(fields[2], size.to_string(), "{listing}");
    let out = dir.join("x");
    std::fs::create_dir_all(&out).unwrap();
    let flags = if gz { "-xzSf" } else { "-xSf" };
    run(Command::new("tar")
        .arg(flags)
        .arg(&archive)
        .current_dir(&out));
    let extracted = out.join("disk.raw");
    // qemu-img compares by block status, so holes cost nothing (cmp reads them).
    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "raw"])
        .arg(raw_path)
        .arg(&extracted));
    if size < 256 << 20 {
        run(Command::new("cmp").arg(raw_path).arg(&extracted));
    }
    let meta = std::fs::metadata(&extracted).unwrap();
    assert_eq!(meta.len(), size);
    // Sparse: holes stay holes, so the file allocates no more than the archive stores.
    let stored = n;
    assert!(
        meta.blocks() * 512 <= stored + (1 << 20),
        "extracted file allocates {} bytes, the archive stores {stored}",
        meta.blocks() * 512
    );
    std::fs::remove_dir_all(&out).unwrap();
    n
}

/// Random sparse disks: a size in sectors and up to six writes at random offsets, some random
/// bytes and some repetitive.
fn disk_strategy() -> impl Strategy<Value = (u64, Vec<(u64, Vec<u8>)>)> {
    (1u64..=(48 << 11)).prop_flat_map(|sectors| {
        let size = sectors * 512;
        let write = (
            0..size,
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..200_000),
                (any::<u8>(), 1usize..300_000).prop_map(|(b, n)| {
                    (0..n).map(|i| b.wrapping_add((i / 97) as u8)).collect()
                }),
            ],
        );
        (Just(size), prop::collection::vec(write, 0..6))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn vmdk_and_sparse_tar_hold_the_raw_disk((size, writes) in disk_strategy()) {
        let dir = tempfile::tempdir().unwrap();
        let raw_path = dir.path().join("disk.img");
        sparse_disk(&raw_path, size, &writes);
        check_vmdk(dir.path(), &raw_path, size);
        check_sparse_tar(dir.path(), &raw_path, size, false);
    }
}

#[test]
fn sparse_tar_with_extension_headers_and_a_trailing_hole_plain_and_gzipped() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.img");
    // 30 regions (26 past the header: two extension blocks), the last one 1 MiB before the end,
    // and one region over the 8 GiB an octal field holds.
    let size = (8u64 << 30) + (3 << 20);
    let mut writes: Vec<(u64, Vec<u8>)> = (0..29u64)
        .map(|i| (i * (1 << 20) + i * 777, vec![i as u8 + 1; 70_000]))
        .collect();
    writes.push(((8 << 30) + 4096, b"past 8 GiB".to_vec()));
    sparse_disk(&raw_path, size, &writes);
    let plain = check_sparse_tar(dir.path(), &raw_path, size, false);
    assert!(plain < 8 << 20, "{plain} bytes");
    check_sparse_tar(dir.path(), &raw_path, size, true);
    let gz = std::fs::metadata(dir.path().join("disk.tar.gz"))
        .unwrap()
        .len();
    assert!(gz < 1 << 20, "{gz} bytes");
}

#[test]
fn ten_gib_mostly_empty_vmdk_follows_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.img");
    let size = 10u64 << 30;
    // 4 MiB of incompressible data spread over the disk, the last byte included.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    };
    let writes: Vec<(u64, Vec<u8>)> = vec![
        (0, noise(1 << 20)),
        (3 << 30, noise(1 << 20)),
        (7 << 30, noise(2 << 20)),
        (size - 1, vec![0xff]),
    ];
    sparse_disk(&raw_path, size, &writes);
    let n = check_vmdk(dir.path(), &raw_path, size);
    let data = 4u64 << 20;
    println!("10 GiB disk with 4 MiB of data: VMDK of {n} bytes");
    assert!(n < data + (2 << 20), "{n} bytes");
}

fn sha256_hex(path: &Path) -> String {
    let mut f = File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

#[test]
fn ova_holds_descriptor_manifest_and_disk_with_matching_digests() {
    let dir = tempfile::tempdir().unwrap();
    let raw_path = dir.path().join("disk.img");
    let size = 64u64 << 20;
    sparse_disk(
        &raw_path,
        size,
        &[(0, vec![0x55; 5000]), (40 << 20, b"data".repeat(5000))],
    );
    let f = File::open(&raw_path).unwrap();
    let raw = RawDisk::new(&f, size);
    let mut disk = Vec::new();
    vmdk::write_stream_optimized(&raw, &mut disk, &opts()).unwrap();
    let populated = raw.allocated(64 << 10).unwrap().len() as u64 * (64 << 10);
    let descriptor = ovf::descriptor(&ovf::Appliance {
        name: "test & <appliance>",
        disk_file: "disk.vmdk",
        disk_file_size: disk.len() as u64,
        capacity: size,
        populated_size: populated,
        uefi: true,
        arch: osbuild::image::Arch::Amd64,
        cpus: 2,
        memory_mib: 512,
    });
    let sha = |b: &[u8]| hex::encode(Sha256::digest(b));
    let manifest = ovf::manifest(&[
        ("appliance.ovf", &sha(descriptor.as_bytes())),
        ("disk.vmdk", &sha(&disk)),
    ]);
    let ova = dir.path().join("appliance.ova");
    let mut out = std::io::BufWriter::new(File::create(&ova).unwrap());
    let mtime = 1_700_000_000;
    for (name, bytes) in [
        ("appliance.ovf", descriptor.as_bytes()),
        ("appliance.mf", manifest.as_bytes()),
        ("disk.vmdk", &disk[..]),
    ] {
        tar::write_file(&mut out, name, 0o644, mtime, bytes.len() as u64, bytes).unwrap();
    }
    tar::write_end(&mut out).unwrap();
    out.flush().unwrap();
    drop(out);

    let listing = run(Command::new("tar").arg("-tf").arg(&ova));
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        ["appliance.ovf", "appliance.mf", "disk.vmdk"]
    );
    let x = dir.path().join("x");
    std::fs::create_dir(&x).unwrap();
    run(Command::new("tar").arg("-xf").arg(&ova).current_dir(&x));
    let mf = std::fs::read_to_string(x.join("appliance.mf")).unwrap();
    assert_eq!(mf.lines().count(), 2);
    for line in mf.lines() {
        let (name, digest) = line
            .strip_prefix("SHA256(")
            .and_then(|l| l.split_once(")= "))
            .unwrap_or_else(|| panic!("bad manifest line {line:?}"));
        assert_eq!(sha256_hex(&x.join(name)), digest, "{name}");
    }
    let ovf_text = std::fs::read_to_string(x.join("appliance.ovf")).unwrap();
    assert!(ovf_text.contains(&format!("ovf:size=\"{}\"", disk.len())));
    assert!(ovf_text.contains(&format!("ovf:capacity=\"{size}\"")));
    assert!(ovf_text.contains("vmw:value=\"efi\""));
    if Command::new("xmllint").arg("--version").output().is_ok() {
        run(Command::new("xmllint")
            .arg("--noout")
            .arg(x.join("appliance.ovf")));
    }
    run(Command::new("qemu-img")
        .args(["compare", "-q", "-f", "raw", "-F", "vmdk"])
        .arg(&raw_path)
        .arg(x.join("disk.vmdk")));
}

/// Random bytes, and text-like bytes that compress well.
fn gzip_inputs() -> Vec<(&'static str, Vec<u8>)> {
    let mut state = 0x1234_5678_9abc_def1u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let random: Vec<u8> = (0..(5 << 20) + 333).map(|_| next() as u8).collect();
    let mut text = Vec::new();
    while text.len() < (6 << 20) + 4321 {
        text.extend_from_slice(format!("line {} of {}\n", next() % 5000, next() % 7).as_bytes());
    }
    vec![("random", random), ("text", text), ("empty", Vec::new())]
}

#[test]
fn parallel_gzip_is_valid_gzip_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    for (what, data) in gzip_inputs() {
        let input = dir.path().join(what);
        std::fs::write(&input, &data).unwrap();
        let mut outputs = Vec::new();
        for threads in [1, 2, 4] {
            let mut w = ParallelGzip::with_threads(Vec::new(), 6, threads);
            for part in data.chunks(123_457) {
                w.write_all(part).unwrap();
            }
            outputs.push(w.finish().unwrap());
        }
        assert!(outputs[1] == outputs[0], "{what}: 2 threads differ from 1");
        assert!(outputs[2] == outputs[0], "{what}: 4 threads differ from 1");
        let gz = dir.path().join(format!("{what}.gz"));
        std::fs::write(&gz, &outputs[0]).unwrap();
        run(Command::new("gzip").arg("-t").arg(&gz));
        let status = Command::new("sh")
            .arg("-c")
            .arg("gzip -dc \"$1\" | cmp - \"$2\"")
            .arg("sh")
            .arg(&gz)
            .arg(&input)
            .status()
            .unwrap();
        assert!(status.success(), "{what}: gzip -dc differs");
        if what == "text" {
            assert!(
                outputs[0].len() < data.len() / 2,
                "{what}: {}",
                outputs[0].len()
            );
        }
    }
}

/// CPU seconds this process has used (user + system), from `/proc/self/stat` (100 Hz ticks).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<u64>() as f64 / 100.0
}

/// Throughput on ~200 MiB of a system binary repeated: flate2's single stream, then 1 and 2
/// threads. Wall-clock MB/s depend on what else the machine runs, so CPU seconds are printed
/// too. Run with `cargo test --test vm_vmdk -- --ignored --nocapture gzip_throughput`.
#[test]
#[ignore]
fn gzip_throughput() {
    let binary = ["/usr/bin/qemu-img", "/usr/bin/bash", "/bin/ls"]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .expect("a system binary");
    let total = 200usize << 20;
    let feed = |w: &mut dyn Write| {
        let mut written = 0;
        while written < total {
            let n = binary.len().min(total - written);
            w.write_all(&binary[..n]).unwrap();
            written += n;
        }
    };
    let report = |what: &str, start: std::time::Instant, cpu: f64, size: usize| {
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu;
        println!(
            "{what}: {:.0} MB/s ({secs:.2} s, {cpu:.2} CPU s, {} MiB -> {:.1} MiB)",
            total as f64 / 1e6 / secs,
            total >> 20,
            size as f64 / (1 << 20) as f64
        );
    };
    let (start, cpu) = (std::time::Instant::now(), cpu_seconds());
    let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    feed(&mut single);
    let size = single.finish().unwrap().len();
    report("flate2 GzEncoder", start, cpu, size);
    for threads in [1, 2] {
        let (start, cpu) = (std::time::Instant::now(), cpu_seconds());
        let mut w = ParallelGzip::with_threads(Vec::new(), 6, threads);
        feed(&mut w);
        let size = w.finish().unwrap().len();
        report(
            &format!("ParallelGzip, {threads} thread(s)"),
            start,
            cpu,
            size,
        );
    }
}
