//! Checks a merged spec before anything is pulled: names, references, capabilities, ids,
//! rlimits, binds, supervision keys (`timeout`, `restart`, `dependsOn`), files and volumes. Each failure names the file, line, column and key.

use std::collections::BTreeMap;
use std::path::Path;

use super::capabilities::{is_known_capability, suggest};
use super::load::{LoadedSpec, SpecError};
use super::{IdRef, ImageSpec, Loc, PKG_PREFIX, supervise};
use crate::image::Reference;

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
            None => SpecError::in_file(file, key, "missing `name` and `image`"),
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
            return Err(match &c.name {
                Some(n) => SpecError::at(
                    file,
                    n,
                    format!("{key}.devices[{i}]"),
                    "a device needs a mode",
                ),
                None => {
                    SpecError::in_file(file, format!("{key}.devices[{i}]"), "a device needs a mode")
                }
            });
        }
    }
    Ok(())
}

/// Check `loaded` as a whole.
pub fn validate(loaded: &LoadedSpec) -> Result<(), SpecError> {
    let spec = &loaded.spec;
    if let Some(k) = &spec.kernel {
        let file = loaded.file(k.file);
        match &k.image {
            Some(image) => check_reference(file, image, "kernel.image")?,
            None => return Err(SpecError::in_file(file, "kernel", "missing `image`")),
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
    for (i, f) in spec.files.iter().enumerate() {
        let file = loaded.file(f.file);
        let key = format!("files[{i}]");
        if f.path.value.trim_matches('/').is_empty() {
            return Err(SpecError::at(
                file,
                &f.path,
                format!("{key}.path"),
                "the path is empty",
            ));
        }
        if f.path.value.split('/').any(|c| c == "..") {
            return Err(SpecError::at(
                file,
                &f.path,
                format!("{key}.path"),
                "the path may not contain '..'",
            ));
        }
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
