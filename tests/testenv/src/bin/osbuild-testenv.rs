//! `osbuild-testenv`: the fixture registry for the demo, the benchmark and trying osbuild by
//! hand, and a compression timer for the benchmark's floor.
//!
//! - `serve [--all-modules] [--redis] [--ready-file FILE]`: start a registry on loopback, push
//!   the fixtures, print its address and serve until interrupted.
//! - `compress gzip|zstd FILE`: compress FILE to /dev/null with osbuild's compressor and print
//!   the seconds it took.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use osbuild::archive::compress::{Compression, Compressor};
use osbuild_testenv::fixtures::{Environment, Pusher, push_package, push_redis};

fn serve(args: &[String]) -> Result<()> {
    let flag = |name: &str| args.iter().any(|a| a == name);
    let ready = args
        .iter()
        .position(|a| a == "--ready-file")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = stop.clone();
    ctrlc::set_handler(move || stopper.store(true, Ordering::SeqCst))?;
    let mut env = Environment::start()?;
    let pusher = Pusher::new(&env.registry.addr())?;
    if flag("--all-modules") {
        env.images.insert(
            "kernel-full",
            push_package(
                &pusher,
                &Path::new(env!("CARGO_MANIFEST_DIR")).join("../bench/kernel-full"),
                "osbuild/kernel:6.1-full",
            )?,
        );
    }
    if flag("--redis") {
        env.images.insert("redis", push_redis(&pusher)?);
    }
    for (name, reference) in &env.images {
        eprintln!("{name}: {reference}");
    }
    println!("{}", env.registry.addr());
    if let Some(file) = ready {
        std::fs::write(file, env.registry.addr())?;
    }
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn compress(args: &[String]) -> Result<()> {
    let (Some(codec), Some(file)) = (args.first(), args.get(1)) else {
        bail!("usage: osbuild-testenv compress gzip|zstd FILE");
    };
    let codec: Compression = codec.parse().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut input = std::fs::File::open(file)?;
    let mut c = Compressor::new(codec, std::io::sink())?;
    std::io::copy(&mut input, &mut c)?;
    c.flush()?;
    c.finish()?;
    println!("{:.2}", started.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("compress") => compress(&args[1..]),
        _ => bail!(
            "usage: osbuild-testenv serve [--all-modules] [--redis] [--ready-file FILE] | compress gzip|zstd FILE"
        ),
    }
}
