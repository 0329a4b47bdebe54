//! `osbuild-testenv serve`: a registry on loopback holding the fixture images, for the demo
//! and for trying osbuild by hand. Prints the registry address, then serves until interrupted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Result, bail};
use osbuild_testenv::fixtures::Environment;
use osbuild_testenv::kernel::ModuleSet;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("serve") {
        bail!("usage: osbuild-testenv serve [--all-modules] [--ready-file FILE]");
    }
    let all = args.iter().any(|a| a == "--all-modules");
    let ready = args
        .iter()
        .position(|a| a == "--ready-file")
        .and_then(|i| args.get(i + 1))
        .cloned();
    let modules = if all {
        ModuleSet::All
    } else {
        ModuleSet::Closure(
            osbuild_testenv::fixtures::TEST_MODULES
                .iter()
                .map(|m| m.to_string())
                .collect(),
        )
    };
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))?;
    let env = Environment::start(&modules)?;
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
    drop(env);
    Ok(())
}
