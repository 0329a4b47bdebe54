//! Kernel modules without modprobe: the devices' modaliases (`/sys/devices/**/modalias`)
//! matched against the image's `modules.alias`, loaded with their `modules.dep` closure by
//! finit_module(2). The same code answers the kernel's own module requests (`net-pf-17`,
//! `fs-overlay`, ...) when this program is the kernel's modprobe helper.

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use nix::kmod::{ModuleInitFlags, finit_module};

/// The image's module index for the running kernel.
pub struct Index {
    dir: PathBuf,
    /// (pattern, module) in file order.
    aliases: Vec<(String, String)>,
    /// module -> (file relative to `dir`, dependencies' files).
    deps: HashMap<String, (String, Vec<String>)>,
    loaded: BTreeSet<String>,
}

/// A module's name from its file (`kernel/net/virtio_net.ko.xz` -> `virtio_net`).
pub fn module_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let base = base.split(".ko").next().unwrap_or(base);
    base.replace('-', "_")
}

impl Index {
    /// Read `/lib/modules/RELEASE/modules.{alias,dep}`; None when the image has no modules.
    pub fn load() -> Option<Index> {
        let release = nix::sys::utsname::uname()
            .ok()?
            .release()
            .to_string_lossy()
            .into_owned();
        let dir = Path::new("/lib/modules").join(release);
        let dep = std::fs::read_to_string(dir.join("modules.dep")).ok()?;
        let alias = std::fs::read_to_string(dir.join("modules.alias")).unwrap_or_default();
        let loaded = std::fs::read_to_string("/proc/modules")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').next().map(str::to_string))
            .collect();
        Some(Index::parse(dir, &dep, &alias, loaded))
    }

    /// Build an index from the text of `modules.dep` and `modules.alias`.
    pub fn parse(dir: PathBuf, dep: &str, alias: &str, loaded: BTreeSet<String>) -> Index {
        let deps = dep
            .lines()
            .filter_map(|l| l.split_once(':'))
            .map(|(file, rest)| {
                let list = rest.split_whitespace().map(str::to_string).collect();
                (module_name(file), (file.to_string(), list))
            })
            .collect();
        let aliases = alias
            .lines()
            .filter_map(|l| l.strip_prefix("alias "))
            .filter_map(|l| l.rsplit_once(' '))
            .map(|(pattern, module)| (pattern.to_string(), module.replace('-', "_")))
            .collect();
        Index {
            dir,
            aliases,
            deps,
            loaded,
        }
    }

    /// The modules whose alias patterns match `alias` (or the module so named).
    pub fn resolve(&self, alias: &str) -> Vec<String> {
        let plain = alias.replace('-', "_");
        if self.deps.contains_key(&plain) {
            return vec![plain];
        }
        let mut found: Vec<String> = Vec::new();
        for (pattern, module) in &self.aliases {
            if glob(pattern.as_bytes(), alias.as_bytes()) && !found.contains(module) {
                found.push(module.clone());
            }
        }
        found
    }

    /// Load `module` after its dependencies; returns the modules newly loaded.
    pub fn load_module(&mut self, module: &str) -> Result<Vec<String>, String> {
        let Some((file, deps)) = self.deps.get(module).cloned() else {
            return Ok(Vec::new()); // built in, or not shipped
        };
        let mut done = Vec::new();
        // modules.dep lists a module's dependencies with the ones they need after them.
        for dep in deps.iter().rev().chain(std::iter::once(&file)) {
            let name = module_name(dep);
            if self.loaded.contains(&name) {
                continue;
            }
            let path = self.dir.join(dep);
            let f = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let flags = if dep.ends_with(".ko") {
                ModuleInitFlags::empty()
            } else {
                // MODULE_INIT_COMPRESSED_FILE: the kernel decompresses .ko.xz/.zst/.gz.
                ModuleInitFlags::from_bits_retain(4)
            };
            match finit_module(&f, c"", flags) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(format!("loading {name}: {e}")),
            }
            self.loaded.insert(name.clone());
            done.push(name);
        }
        Ok(done)
    }

    /// Load the modules of every device present, again until nothing new appears (a bus
    /// driver makes the devices on it visible). Returns the modules loaded and the errors.
    pub fn load_for_devices(&mut self) -> (Vec<String>, Vec<String>) {
        let mut loaded = Vec::new();
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        for _round in 0..5 {
            let mut aliases = BTreeSet::new();
            collect_modaliases(Path::new("/sys/devices"), &mut aliases, 0);
            let new: Vec<_> = aliases.difference(&seen).cloned().collect();
            if new.is_empty() {
                break;
            }
            for alias in &new {
                for module in self.resolve(alias) {
                    match self.load_module(&module) {
                        Ok(mut l) => loaded.append(&mut l),
                        Err(e) => errors.push(e),
                    }
                }
            }
            seen.extend(new);
        }
        (loaded, errors)
    }
}

fn collect_modaliases(dir: &Path, out: &mut BTreeSet<String>, depth: usize) {
    if depth > 32 {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_dir() {
            collect_modaliases(&e.path(), out, depth + 1);
        } else if ft.is_file()
            && e.file_name() == "modalias"
            && let Ok(a) = std::fs::read_to_string(e.path())
        {
            {
                // Some devices list several aliases, one a line.
                out.extend(
                    a.lines()
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_string),
                );
            }
        }
    }
}

/// fnmatch(3) without flags: `*`, `?` and `[...]` classes (with `!`/`^` and ranges).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star_p, mut star_t) = (None, 0);
    while t < text.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star_p = Some(p);
                    star_t = t;
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    t += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class(&pattern[p..], text[t]) {
                        if matched {
                            p += next;
                            t += 1;
                            continue;
                        }
                    } else if text[t] == b'[' {
                        p += 1;
                        t += 1;
                        continue;
                    }
                }
                c if c == text[t] => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star_p {
            Some(sp) => {
                p = sp + 1;
                star_t += 1;
                t = star_t;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|c| *c == b'*')
}

/// Match `c` against the class at the start of `pattern`; (matched, class length).
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() && (first || pattern[i] != b']') {
        first = false;
        if i + 2 < pattern.len() && pattern[i + 1] == b'-' && pattern[i + 2] != b']' {
            matched |= pattern[i] <= c && c <= pattern[i + 2];
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    (i < pattern.len()).then_some((matched != negate, i + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_like_fnmatch() {
        assert!(glob(
            b"pci:v00001AF4d00001000sv*sd*bc*sc*i*",
            b"pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00"
        ));
        assert!(!glob(
            b"pci:v00001AF4d00001001sv*",
            b"pci:v00001AF4d00001000sv00001AF4"
        ));
        assert!(glob(b"virtio:d00000001v*", b"virtio:d00000001v00001AF4"));
        assert!(glob(b"acpi*:PNP0C0C:*", b"acpi:PNP0C0C:"));
        assert!(glob(b"a[0-9]c", b"a5c") && !glob(b"a[!0-9]c", b"a5c") && glob(b"a?c*", b"abc"));
        assert!(!glob(b"abc", b"abcd") && glob(b"*", b""));
    }

    #[test]
    fn resolves_aliases_and_loads_dependencies_first() {
        let dep = "kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz\n\
                   kernel/net/core/failover.ko.xz:\nkernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz\n\
                   kernel/net/packet/af_packet.ko:\n";
        let alias = "alias virtio:d00000001v* virtio_net\nalias net-pf-17 af_packet\n";
        let index = Index::parse(PathBuf::from("/nonexistent"), dep, alias, BTreeSet::new());
        assert_eq!(index.resolve("virtio:d00000001v00001AF4"), ["virtio_net"]);
        assert_eq!(index.resolve("net-pf-17"), ["af_packet"]);
        assert_eq!(index.resolve("net-failover"), ["net_failover"]);
        assert!(index.resolve("pci:v0000DEAD").is_empty());
        let mut already = Index::parse(
            PathBuf::from("/nonexistent"),
            dep,
            alias,
            ["failover", "net_failover", "virtio_net"]
                .map(String::from)
                .into(),
        );
        assert_eq!(
            already.load_module("virtio_net").unwrap(),
            Vec::<String>::new()
        );
        let mut index = index;
        let err = index.load_module("virtio_net").unwrap_err();
        assert!(err.contains("failover.ko.xz"), "{err}");
    }
}
