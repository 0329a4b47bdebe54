//! Docker-style image references: `[registry[:port]/]repository[:tag][@sha256:digest]`, with
//! Docker's defaults (`docker.io`, `library/`, `latest`).

use std::fmt;
use std::str::FromStr;

/// The default registry.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    /// Registry host (and port), e.g. `docker.io`, `127.0.0.1:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/redis`.
    pub repository: String,
    /// Tag, if any (`latest` when neither tag nor digest was given).
    pub tag: Option<String>,
    /// `sha256:<hex>` digest, if pinned.
    pub digest: Option<String>,
}

/// Why a string is not an image reference.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The text given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits.
pub fn is_sha256_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by '.', '_', '__' or runs of '-'.
    if c.is_empty()
        || !c
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return false;
    }
    if !c
        .bytes()
        .last()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    {
        return false;
    }
    let mut prev_sep = String::new();
    for ch in c.chars() {
        if ch.is_ascii_lowercase() || ch.is_ascii_digit() {
            let separator_ok = prev_sep.is_empty()
                || matches!(prev_sep.as_str(), "." | "_" | "__")
                || prev_sep.chars().all(|s| s == '-');
            if !separator_ok {
                return false;
            }
            prev_sep.clear();
        } else if matches!(ch, '.' | '_' | '-') {
            prev_sep.push(ch);
        } else {
            return false;
        }
    }
    true
}

fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    tag.len() <= 128
        && bytes
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn looks_like_registry(first: &str) -> bool {
    first.contains('.')
        || first.contains(':')
        || first == "localhost"
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

impl Reference {
    /// Parse `text` with Docker's rules.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        if text.bytes().any(|b| b.is_ascii_whitespace()) {
            return Err(err("contains white space"));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                if !is_sha256_digest(digest) {
                    return Err(err(
                        "the digest must be sha256: followed by 64 lowercase hex digits",
                    ));
                }
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(err(
                        "invalid tag (letters, digits, '_', '.', '-', at most 128)",
                    ));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path)) if looks_like_registry(first) => {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if registry.is_empty()
            || registry.bytes().any(|b| {
                !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
            })
        {
            return Err(err("invalid registry host"));
        }
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if repository.split('/').any(|c| !valid_component(c)) {
            return Err(err(
                "invalid repository name (lowercase letters, digits and separators '.', '_', '-')",
            ));
        }
        if repository.len() > 255 {
            return Err(err("repository name longer than 255 characters"));
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// This reference pinned to `digest` (the tag kept for readers).
    pub fn pinned(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }

    /// The equivalent `oci-client` reference.
    pub fn to_oci(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(tag), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone(),
                d.clone(),
            ),
            (_, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (tag, None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        }
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn normalises_like_docker() {
        for (input, want) in [
            ("redis", "docker.io/library/redis:latest"),
            ("redis:7-alpine", "docker.io/library/redis:7-alpine"),
            ("linuxkit/init:v1.0", "docker.io/linuxkit/init:v1.0"),
            ("docker.io/redis", "docker.io/library/redis:latest"),
            (
                "index.docker.io/linuxkit/kernel:6.6",
                "docker.io/linuxkit/kernel:6.6",
            ),
            ("127.0.0.1:5000/a/b:c", "127.0.0.1:5000/a/b:c"),
            ("localhost/x", "localhost/x:latest"),
            ("ghcr.io/o/r/deep/name:1.2.3", "ghcr.io/o/r/deep/name:1.2.3"),
            ("quay.io/a_b/c__d--e.f", "quay.io/a_b/c__d--e.f:latest"),
        ] {
            assert_eq!(
                Reference::parse(input).unwrap().to_string(),
                want,
                "{input}"
            );
        }
        let pinned = Reference::parse(&format!("redis@{D}")).unwrap();
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.digest.as_deref(), Some(D));
        let both = Reference::parse(&format!("localhost:5000/r:t@{D}")).unwrap();
        assert_eq!(both.to_string(), format!("localhost:5000/r:t@{D}"));
    }

    #[test]
    fn rejects_malformed_references() {
        for input in [
            "",
            "Redis",
            "redis:",
            "redis:-bad",
            "a//b",
            "redis@sha256:abc",
            "redis@md5:0123",
            "-x/y",
            "x/y-",
            "has space",
            "r:t:u",
        ] {
            let err = Reference::parse(input).unwrap_err();
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
    }
}
