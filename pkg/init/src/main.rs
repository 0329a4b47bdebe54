//! `init`: PID 1 of osbuild images, the container runtime it uses, the kernel's module helper
//! and the `svc` control command, in one static program chosen by how it is called.

mod console;
mod log;
mod netlink;
mod pid1;
mod runtime;
mod supervisor;
mod svc;

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let name = args
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a))
        .unwrap_or("init");
    let rest = args.get(1..).unwrap_or(&[]);
    match (name, rest.first().map(String::as_str)) {
        ("svc", _) => std::process::exit(svc::main(rest)),
        (_, Some("svc")) => std::process::exit(svc::main(&rest[1..])),
        (_, Some(runtime::STAGE1)) if rest.len() == 2 => runtime::stage1(Path::new(&rest[1])),
        (_, Some(runtime::STAGE2)) if rest.len() == 2 => runtime::stage2(Path::new(&rest[1])),
        // How the kernel runs its modprobe helper.
        (_, Some("-q")) if rest.len() == 3 && rest[1] == "--" => {
            std::process::exit(pid1::modprobe(&rest[2]))
        }
        _ if std::process::id() == 1 => pid1::main(&args[0]),
        _ => {
            eprintln!("init: run as PID 1 by the kernel; `init svc ...` controls the services");
            std::process::exit(2);
        }
    }
}
