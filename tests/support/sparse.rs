//! Raw disks for the VM container tests, and QEMU's reader as the oracle.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

/// A sparse raw disk of `size` bytes at `path` with each `(offset, bytes)` written (cut at the
/// disk's end), open for reading and writing.
pub fn sparse_disk(path: &Path, size: u64, writes: &[(u64, Vec<u8>)]) -> File {
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .expect("create the raw disk");
    file.set_len(size).expect("size the raw disk");
    for (at, bytes) in writes {
        let len = (bytes.len() as u64).min(size.saturating_sub(*at)) as usize;
        file.write_all_at(&bytes[..len], *at)
            .expect("write the raw disk");
    }
    file
}

/// Assert that `image`, read by QEMU as `format`, holds exactly the raw disk `raw`
/// (`qemu-img compare -f raw -F FORMAT`).
pub fn assert_holds(raw: &Path, format: &str, image: &Path) {
    let o = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", format])
        .arg(raw)
        .arg(image)
        .output()
        .expect("run qemu-img");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("Images are identical"),
        "qemu-img compare -F {format} {}: {text}{}",
        image.display(),
        String::from_utf8_lossy(&o.stderr)
    );
}
