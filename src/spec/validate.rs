//! Checks a merged spec before anything is pulled: names, references, capabilities, ids,
//! rlimits, binds, supervision keys (`timeout`, `restart`, `dependsOn`), files and volumes. Each failure names the file, line, column and key.

use std::collections::BTreeMap;
use std::path::Path;

use super::capabilities::{is_known_capability, suggest};
use super::load::{LoadedSpec, SpecError};
use super::node::entry_error;
use super::sources::resolve_source;
use super::{FileSpec, IdRef, ImageSpec, Loc, PKG_PREFIX, supervise};
use crate::image::Reference;
use crate::tree::{TreePath, TreePathError, abbreviate};

/// The resource limits LinuxKit accepts.
pub const RLIMITS: [&str; 16] = [
    "RLIMIT_CPU",
    "RLIMIT_FSIZE",
    "RLIMIT_DATA",
    "RLIMIT_STACK",
    "RLIMIT_CORE",
    "RLIMIT_RSS",
    "RLIMIT_NPROC",
    "RLIMIT_NOFILE",
    "RLIMIT_MEMLOCK",
    "RLIMIT_AS",
    "RLIMIT_LOCKS",
    "RLIMIT_SIGPENDING",
    "RLIMIT_MSGQUEUE",
    "RLIMIT_NICE",
    "RLIMIT_RTPRIO",
    "RLIMIT_RTTIME",
];

/// A parsed `name,soft,hard` limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rlimit {
    /// `RLIMIT_*`.
    pub kind: String,
    /// Soft limit (`u64::MAX` for unlimited).
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Parse an rlimit as LinuxKit does: `RLIMIT_` optional, any case, `unlimited` allowed.
pub fn parse_rlimit(text: &str) -> Result<Rlimit, String> {
    let parts: Vec<&str> = text.splitn(3, ',').map(str::trim).collect();
    let [name, soft, hard] = parts[..] else {
        return Err(format!("rlimit {text:?} is not name,soft,hard"));
    };
    let upper = name.to_ascii_uppercase();
    let kind = if upper.starts_with("RLIMIT_") {
        upper
    } else {
        format!("RLIMIT_{upper}")
    };
    if !RLIMITS.contains(&kind.as_str()) {
        return Err(format!("unknown rlimit {name:?}"));
    }
    let value = |v: &str| -> Result<u64, String> {
        if v.eq_ignore_ascii_case("unlimited") {
            Ok(u64::MAX)
        } else {
            v.parse()
                .map_err(|_| format!("rlimit value {v:?} is not a number or unlimited"))
        }
    };
    Ok(Rlimit {
        soft: value(soft)?,
        hard: value(hard)?,
        kind,
    })
}

/// Whether `name` can be a container or volume directory name.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Check an image reference (`@pkg:` ones are checked when packages are resolved).
fn check_reference(file: &Path, loc: &Loc<String>, key: &str) -> Result<(), SpecError> {
    if let Some(path) = loc.value.strip_prefix(PKG_PREFIX) {
        if path.trim().is_empty() {
            return Err(SpecError::at(
                file,
                loc,
                key,
                "`@pkg:` needs the path of a package folder",
            ));
        }
        return Ok(());
    }
    Reference::parse(&loc.value).map(|_| ()).map_err(|e| {
        SpecError::at(
            file,
            loc,
            key,
            e.reason.clone() + &format!(" ({:?})", loc.value),
        )
    })
}

fn check_caps(file: &Path, caps: &[Loc<String>], key: &str) -> Result<(), SpecError> {
    if let [only] = caps
        && matches!(only.value.to_ascii_lowercase().as_str(), "all" | "none")
    {
        return Ok(());
    }
    for (i, cap) in caps.iter().enumerate() {
        if !is_known_capability(&cap.value) {
            let hint = match suggest(&cap.value) {
                Some(s) => format!(" (did you mean {s}?)"),
                None => String::new(),
            };
            return Err(SpecError::at(
                file,
                cap,
                format!("{key}[{i}]"),
                format!("unknown capability {:?}{hint}", cap.value),
            ));
        }
    }
    Ok(())
}

fn check_id(
    loaded: &LoadedSpec,
    file: &Path,
    id: &Option<Loc<IdRef>>,
    key: &str,
) -> Result<(), SpecError> {
    if let Some(id) = id {
        loaded.ids.resolve(&id.value).map_err(|name| {
            SpecError::at(
                file,
                id,
                key,
                format!("{name:?} is neither a number, root, nor a container name"),
            )
        })?;
    }
    Ok(())
}

fn check_container(loaded: &LoadedSpec, c: &ImageSpec, key: &str) -> Result<(), SpecError> {
    let file = loaded.file(c.file);
    let (Some(name), Some(image)) = (&c.name, &c.image) else {
        let missing = if c.name.is_none() { "name" } else { "image" };
        return Err(match c.name.as_ref().or(c.image.as_ref()) {
            Some(loc) => SpecError::at(file, loc, key, format!("missing `{missing}`")),
            None => entry_error(file, c, None, key, "missing `name` and `image`"),
        });
    };
    if !valid_name(&name.value) {
        return Err(SpecError::at(
            file,
            name,
            format!("{key}.name"),
            format!(
                "{:?} is not a valid name (letters, digits, '_', '.', '-')",
                name.value
            ),
        ));
    }
    check_reference(file, image, &format!("{key}.image"))?;
    for (field, caps) in [
        ("capabilities", &c.capabilities),
        ("capabilities.add", &c.capabilities_add),
        ("ambient", &c.ambient),
    ] {
        if let Some(caps) = caps {
            check_caps(file, caps, &format!("{key}.{field}"))?;
        }
    }
    for (i, r) in c.rlimits.iter().flatten().enumerate() {
        parse_rlimit(&r.value)
            .map_err(|m| SpecError::at(file, r, format!("{key}.rlimits[{i}]"), m))?;
    }
    for (field, binds) in [("binds", &c.binds), ("binds.add", &c.binds_add)] {
        for (i, b) in binds.iter().flatten().enumerate() {
            let parts = b.value.split(':').count();
            if !(2..=3).contains(&parts) {
                return Err(SpecError::at(
                    file,
                    b,
                    format!("{key}.{field}[{i}]"),
                    format!("bind {:?} is not src:dst[:options]", b.value),
                ));
            }
        }
    }
    for (i, t) in c.tmpfs.iter().flatten().enumerate() {
        if t.value.split(':').count() > 2 || t.value.is_empty() {
            return Err(SpecError::at(
                file,
                t,
                format!("{key}.tmpfs[{i}]"),
                format!("tmpfs {:?} is not dst[:options]", t.value),
            ));
        }
    }
    check_id(loaded, file, &c.uid, &format!("{key}.uid"))?;
    check_id(loaded, file, &c.gid, &format!("{key}.gid"))?;
    for (i, g) in c.additional_gids.iter().flatten().enumerate() {
        check_id(
            loaded,
            file,
            &Some(g.clone()),
            &format!("{key}.additionalGids[{i}]"),
        )?;
    }
    for (i, d) in c.devices.iter().flatten().enumerate() {
        if d.path != "all" && d.mode.is_none() {
            return Err(entry_error(
                file,
                c,
                None,
                format!("{key}.devices[{i}]"),
                "a device needs a mode",
            ));
        }
    }
    Ok(())
}

/// Check `loaded` as a whole.
pub fn validate(loaded: &LoadedSpec) -> Result<(), SpecError> {
    let spec = &loaded.spec;
    if let Some(k) = &spec.kernel {
        let file = loaded.file(k.file);
        match (&k.image, &k.at) {
            (Some(image), _) => check_reference(file, image, "kernel.image")?,
            (None, Some(at)) => return Err(SpecError::at(file, at, "kernel", "missing `image`")),
            (None, None) => return Err(SpecError::in_file(file, "kernel", "missing `image`")),
        }
    }
    for (i, (image, file)) in spec.init.iter().zip(&spec.init_files).enumerate() {
        check_reference(loaded.file(*file), image, &format!("init[{i}]"))?;
    }
    let sections = [
        ("onboot", &spec.onboot),
        ("onshutdown", &spec.onshutdown),
        ("services", &spec.services),
    ];
    for (section, list) in sections {
        for (i, c) in list.iter().enumerate() {
            let key = format!("{section}[{i}]");
            check_container(loaded, c, &key)?;
            supervise::check_section(loaded, c, section, &key)?;
        }
    }
    let mut seen: BTreeMap<&str, &Loc<String>> = BTreeMap::new();
    for (i, c) in spec.services.iter().enumerate() {
        if let Some(name) = &c.name
            && let Some(first) = seen.insert(&name.value, name)
        {
            return Err(SpecError::at(
                loaded.file(c.file),
                name,
                format!("services[{i}].name"),
                format!(
                    "duplicate service name {:?} (first at line {})",
                    name.value,
                    first.referenced.line()
                ),
            ));
        }
    }
    supervise::check_dependencies(loaded)?;
    let mut volumes: BTreeMap<&str, ()> = BTreeMap::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let file = loaded.file(v.file);
        if !valid_name(&v.name.value) {
            return Err(SpecError::at(
                file,
                &v.name,
                format!("volumes[{i}].name"),
                format!("{:?} is not a valid volume name", v.name.value),
            ));
        }
        if volumes.insert(&v.name.value, ()).is_some() {
            return Err(SpecError::at(
                file,
                &v.name,
                format!("volumes[{i}].name"),
                format!("duplicate volume name {:?}", v.name.value),
            ));
        }
        if let Some(image) = &v.image {
            check_reference(file, image, &format!("volumes[{i}].image"))?;
        }
        if let Some(format) = &v.format
            && !matches!(format.value.as_str(), "filesystem" | "oci")
        {
            return Err(SpecError::at(
                file,
                format,
                format!("volumes[{i}].format"),
                format!("format {:?} is not filesystem or oci", format.value),
            ));
        }
    }
    check_files(loaded)
}

/// `files[index].path` as a tree path; the root, `..`, NUL bytes and paths longer than Linux
/// allows are refused (long paths shown by their ends).
fn file_path(file: &Path, f: &FileSpec, key: &str) -> Result<TreePath, SpecError> {
    let err = |message: String| SpecError::at(file, &f.path, format!("{key}.path"), message);
    if f.path.value.is_empty() {
        return Err(err("the path is empty".into()));
    }
    let path = TreePath::parse(&f.path.value).map_err(|e| {
        err(match e {
            TreePathError::Escapes(_) => "the path may not contain '..'".into(),
            TreePathError::Nul(_) => "the path contains a NUL byte".into(),
            long @ TreePathError::TooLong { .. } => long.to_string(),
        })
    })?;
    if path.is_root() {
        return Err(err(format!(
            "{:?} names the root directory, which a file cannot replace",
            abbreviate(f.path.value.as_bytes())
        )));
    }
    Ok(path)
}

/// Check the `files` entries: each path, body, metadata kind, owner and source, and that no
/// entry lands under one an earlier entry made a file or a symlink (later entries replace
/// earlier ones, as they are laid out in order).
fn check_files(loaded: &LoadedSpec) -> Result<(), SpecError> {
    // The entries that are not directories: path -> (index, what it is).
    let mut leaves: BTreeMap<TreePath, (usize, &'static str)> = BTreeMap::new();
    for (i, f) in loaded.spec.files.iter().enumerate() {
        let file = loaded.file(f.file);
        let key = format!("files[{i}]");
        let path = file_path(file, f, &key)?;
        let bodies = [
            f.contents.is_some(),
            f.source.is_some(),
            f.metadata.is_some(),
            f.symlink.is_some(),
            f.directory,
        ];
        let count = bodies.iter().filter(|b| **b).count();
        if count != 1 {
            let msg = if count == 0 {
                "say what the file is: contents, source, metadata, symlink or directory"
            } else {
                "give only one of contents, source, metadata, symlink and directory"
            };
            return Err(SpecError::at(file, &f.path, key, msg));
        }
        if let Some(m) = &f.metadata
            && !matches!(m.value.as_str(), "yaml" | "json")
        {
            return Err(SpecError::at(
                file,
                m,
                format!("{key}.metadata"),
                format!("metadata {:?} is not yaml or json", m.value),
            ));
        }
        check_id(loaded, file, &f.uid, &format!("{key}.uid"))?;
        check_id(loaded, file, &f.gid, &format!("{key}.gid"))?;
        // The nearest entry at or above `path` that is not a directory (entries never sit
        // under a leaf, so it is the greatest key up to `path`).
        if let Some((above, (j, what))) = leaves.range(..=&path).next_back()
            && path.starts_with(above)
            && *above != path
        {
            let earlier = &loaded.spec.files[*j];
            let line = earlier.path.referenced.line();
            let place = if earlier.file == f.file {
                format!("line {line}")
            } else {
                format!("{}:{line}", loaded.file(earlier.file).display())
            };
            return Err(SpecError::at(
                file,
                &f.path,
                format!("{key}.path"),
                format!(
                    "{:?} is under {:?}, which files[{j}] ({place}) makes a {what}, not a directory",
                    abbreviate(&path.to_bytes()),
                    abbreviate(&above.to_bytes()),
                ),
            ));
        }
        let leaf = if f.directory {
            None
        } else if f.symlink.is_some() {
            Some("symlink")
        } else if let Some(source) = &f.source {
            match resolve_source(loaded, i, f, source)? {
                Some(s) if s.is_dir => None,
                Some(_) => Some("file"),
                // An optional source that cannot be read is left out.
                None => continue,
            }
        } else {
            Some("file")
        };
        if !f.directory {
            // Anything but `directory: true` replaces what was there, and what was under it.
            let under: Vec<TreePath> = leaves
                .range(&path..)
                .take_while(|(p, _)| p.starts_with(&path))
                .map(|(p, _)| p.clone())
                .collect();
            for p in under {
                leaves.remove(&p);
            }
        }
        match leaf {
            Some(what) => leaves.insert(path, (i, what)),
            None => leaves.remove(&path),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Load `yaml` as `dir/s.yml`; the error with its sources (each said once, as the binary
    /// prints them), the directory shown as `DIR`.
    fn err_in(dir: &Path, yaml: &str) -> String {
        let path = dir.join("s.yml");
        std::fs::write(&path, yaml).unwrap();
        let e = crate::spec::load(std::slice::from_ref(&path)).unwrap_err();
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            if !text.contains(&s.to_string()) {
                text = format!("{text}: {s}");
            }
            source = s.source();
        }
        text.replace(&dir.display().to_string(), "DIR")
    }

    fn err(yaml: &str) -> String {
        err_in(tempfile::tempdir().unwrap().path(), yaml)
    }

    #[test]
    fn errors_about_what_a_section_lacks_are_located() {
        assert_eq!(
            err("init: [i:1]\nkernel:\n  cmdline: console=ttyS0\n"),
            "DIR/s.yml:3:3: kernel: missing `image`"
        );
        assert_eq!(
            err("services:\n  - name: a\n    image: b\n  - command: [x]\n    net: host\n"),
            "DIR/s.yml:4:5: services[1]: missing `name` and `image`"
        );
        // A kernel section without an image in a later file is reported there.
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(&a, "init: [i:1]\n").unwrap();
        std::fs::write(&b, "init: [j:1]\nkernel:\n  cmdline: x\n").unwrap();
        let e = crate::spec::load(&[a, b.clone()]).unwrap_err().to_string();
        assert_eq!(e, format!("{}:3:3: kernel: missing `image`", b.display()));
    }

    #[test]
    fn file_paths_are_checked_where_written() {
        for (path, message) in [
            (
                "\".\"",
                "\".\" names the root directory, which a file cannot replace",
            ),
            (
                "/",
                "\"/\" names the root directory, which a file cannot replace",
            ),
            ("\"\"", "the path is empty"),
            ("a/../b", "the path may not contain '..'"),
            ("\"a\\0b\"", "the path contains a NUL byte"),
        ] {
            assert_eq!(
                err(&format!("files:\n  - path: {path}\n    contents: x\n")),
                format!("DIR/s.yml:2:11: files[0].path: {message}"),
                "{path}"
            );
        }
        // 5,000 characters: shown by their ends, on one short line.
        for long in [
            "x".repeat(5000),
            "a/".repeat(2500),
            format!("\\0{}", "y".repeat(5000)),
        ] {
            let e = err(&format!("files:\n  - path: \"{long}\"\n    contents: x\n"));
            assert!(e.starts_with("DIR/s.yml:2:11: files[0].path: "), "{e}");
            assert!(e.len() < 250, "{e}");
        }
    }

    #[test]
    fn a_file_under_a_file_or_symlink_is_refused_before_anything_is_pulled() {
        assert_eq!(
            err("files:\n  - path: etc/a\n    contents: x\n  - path: etc/a/b\n    contents: y\n"),
            "DIR/s.yml:4:11: files[1].path: \"etc/a/b\" is under \"etc/a\", which files[0] (line 2) makes a file, not a directory"
        );
        assert_eq!(
            err("files:\n  - path: l\n    symlink: /etc\n  - path: l/x/y\n    contents: y\n"),
            "DIR/s.yml:4:11: files[1].path: \"l/x/y\" is under \"l\", which files[0] (line 2) makes a symlink, not a directory"
        );
        // A file replacing a directory takes what was under it away.
        let e = err(
            "files:\n  - path: a/b\n    contents: x\n  - path: a\n    contents: y\n  - path: a/c\n    contents: z\n",
        );
        assert!(
            e.starts_with(
                "DIR/s.yml:6:11: files[2].path: \"a/c\" is under \"a\", which files[1] (line 4)"
            ),
            "{e}"
        );
        // Later entries replace earlier ones: a directory over a file makes room again.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yml");
        std::fs::write(
            &path,
            "files:\n  - path: a\n    contents: x\n  - path: a\n    directory: true\n  - path: a/b\n    contents: y\n  - path: a/b\n    contents: z\n",
        )
        .unwrap();
        crate::spec::load(&[path]).unwrap();
    }

    #[test]
    fn sources_are_checked_where_written() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::os::unix::fs::symlink("loop", d.join("loop")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            d.join("fifo"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let spec = |source: &str, optional: bool| {
            format!(
                "files:\n  - path: etc/x\n    contents: y\n  - path: etc/y\n    source: {source}\n    optional: {optional}\n"
            )
        };
        for (source, message) in [
            (
                "missing",
                "DIR/missing: No such file or directory (os error 2)".to_string(),
            ),
            ("loop", "DIR/loop: a loop of symbolic links".into()),
            (
                "fifo",
                "DIR/fifo: a FIFO, not a regular file or directory".into(),
            ),
            (
                "/dev/zero",
                "/dev/zero: a character device, not a regular file or directory".into(),
            ),
            (
                "/proc/self/environ",
                format!(
                    "/proc/{}/environ: on proc, a kernel filesystem whose files cannot be copied into an image",
                    std::process::id()
                ),
            ),
        ] {
            assert_eq!(
                err_in(d, &spec(source, false)),
                format!("DIR/s.yml:5:13: files[1].source: {message}"),
                "{source}"
            );
        }
        // `optional` leaves out what cannot be read, not what cannot be copied.
        for source in ["missing", "loop"] {
            std::fs::write(d.join("s.yml"), spec(source, true)).unwrap();
            crate::spec::load(&[d.join("s.yml")]).unwrap();
        }
        assert!(err_in(d, &spec("fifo", true)).contains("a FIFO, not a regular file"));
        // A source directory holds files: nothing may go under it as if it were a file.
        std::fs::write(d.join("f"), "x").unwrap();
        let e = err_in(
            d,
            "files:\n  - path: etc\n    source: f\n  - path: etc/x\n    contents: y\n",
        );
        assert!(e.contains("which files[0] (line 2) makes a file"), "{e}");
        std::fs::write(
            d.join("s.yml"),
            "files:\n  - path: etc\n    source: .\n  - path: etc/x\n    contents: y\n",
        )
        .unwrap();
        crate::spec::load(&[d.join("s.yml")]).unwrap();
    }

    #[test]
    fn rlimits_parse_like_linuxkit() {
        assert_eq!(
            parse_rlimit("nofile,1024,unlimited").unwrap(),
            Rlimit {
                kind: "RLIMIT_NOFILE".into(),
                soft: 1024,
                hard: u64::MAX
            }
        );
        assert_eq!(
            parse_rlimit(" RLIMIT_core , 0, 0").unwrap().kind,
            "RLIMIT_CORE"
        );
        assert!(
            parse_rlimit("nofile,1")
                .unwrap_err()
                .contains("name,soft,hard")
        );
        assert!(parse_rlimit("bogus,1,1").unwrap_err().contains("bogus"));
        assert!(parse_rlimit("nofile,x,1").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn names() {
        assert!(valid_name("redis-1.a_b"));
        for bad in ["", ".x", "a/b", "-x", "a b"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
