//! Registry credentials from a Docker config file: `auths` entries (base64 `auth`, or
//! `username`/`password`, or `identitytoken`), per-registry `credHelpers` and the default
//! `credsStore` (`docker-credential-NAME get`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use serde::Deserialize;

use super::ImageError;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No credentials.
    Anonymous,
    /// User name and password (or identity token).
    Basic(String, String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic(user, _) => write!(f, "Basic({user}, <hidden>)"),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

#[derive(Debug, Deserialize)]
struct HelperReply {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// The default Docker config: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    dirs::home_dir().map(|h| h.join(".docker/config.json"))
}

/// The keys a registry may appear under in a Docker config.
fn config_keys(registry: &str) -> Vec<String> {
    if registry == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ]
    } else {
        vec![
            registry.into(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    }
}

/// Credentials for `registry` from the Docker config at `path` (anonymous when the file or the
/// entry is absent).
pub fn credentials_for(path: Option<&Path>, registry: &str) -> Result<Credentials, ImageError> {
    lookup(path, registry, None)
}

/// [`credentials_for`], with credential helpers searched in `helper_path` instead of `$PATH`.
fn lookup(
    path: Option<&Path>,
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<Credentials, ImageError> {
    let Some(path) = path else {
        return Ok(Credentials::Anonymous);
    };
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Credentials::Anonymous),
        Err(source) => {
            return Err(ImageError::Cache {
                path: path.to_owned(),
                source,
            });
        }
    };
    let config: DockerConfig = serde_json::from_slice(&bytes).map_err(|e| ImageError::Auth {
        registry: registry.into(),
        reason: format!("{}: {e}", path.display()),
    })?;
    let keys = config_keys(registry);
    if let Some(helper) = keys.iter().find_map(|k| config.cred_helpers.get(k)) {
        return run_helper(helper, &keys[0], registry, helper_path);
    }
    if let Some(entry) = keys.iter().find_map(|k| config.auths.get(k)) {
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| ImageError::Auth {
                    registry: registry.into(),
                    reason: format!("{}: auth is not base64: {e}", path.display()),
                })?;
            let text = String::from_utf8_lossy(&decoded).into_owned();
            let (user, pass) = text.split_once(':').ok_or_else(|| ImageError::Auth {
                registry: registry.into(),
                reason: format!("{}: auth is not user:password", path.display()),
            })?;
            return Ok(Credentials::Basic(user.into(), pass.into()));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Credentials::Basic(u.clone(), p.clone()));
        }
        if let Some(token) = &entry.identitytoken {
            return Ok(Credentials::Basic("<token>".into(), token.clone()));
        }
    }
    if let Some(store) = &config.creds_store {
        return run_helper(store, &keys[0], registry, helper_path);
    }
    Ok(Credentials::Anonymous)
}

fn run_helper(
    helper: &str,
    server: &str,
    registry: &str,
    helper_path: Option<&std::ffi::OsStr>,
) -> Result<Credentials, ImageError> {
    let program = format!("docker-credential-{helper}");
    let mut command = Command::new(&program);
    if let Some(p) = helper_path {
        command.env("PATH", p);
    }
    let fail = |reason: String| ImageError::Auth {
        registry: registry.into(),
        reason,
    };
    let mut child = command
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("cannot run {program}: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(server.as_bytes())
            .map_err(|e| fail(format!("{program}: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("{program}: {e}")))?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stdout).trim().to_string();
        // Helpers answer "credentials not found" for unknown servers: that is anonymous access.
        if msg.contains("credentials not found") {
            return Ok(Credentials::Anonymous);
        }
        return Err(fail(format!("{program} failed: {msg}")));
    }
    let reply: HelperReply = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("{program}: bad reply: {e}")))?;
    Ok(Credentials::Basic(reply.username, reply.secret))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn reads_auths_in_every_spelling() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        std::fs::write(
            &path,
            format!(
                r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{b64}"}},
                   "reg.example:5000":{{"username":"bob","password":"pw"}}}}}}"#
            ),
        )
        .unwrap();
        assert_eq!(
            credentials_for(Some(&path), "docker.io").unwrap(),
            Credentials::Basic("alice".into(), "s3cret".into())
        );
        assert_eq!(
            credentials_for(Some(&path), "reg.example:5000").unwrap(),
            Credentials::Basic("bob".into(), "pw".into())
        );
        assert_eq!(
            credentials_for(Some(&path), "other.io").unwrap(),
            Credentials::Anonymous
        );
        assert_eq!(
            credentials_for(Some(&dir.path().join("missing.json")), "x").unwrap(),
            Credentials::Anonymous
        );
    }

    #[test]
    fn runs_the_credential_helper_for_its_registry() {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("docker-credential-osbuildtest");
        std::fs::write(
            &helper,
            "#!/bin/sh\nread server\necho \"{\\\"Username\\\":\\\"u-$server\\\",\\\"Secret\\\":\\\"s\\\"}\"\n",
        )
        .unwrap();
        std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, r#"{"credHelpers":{"helped.io":"osbuildtest"}}"#).unwrap();
        let search =
            std::env::join_paths([dir.path(), Path::new("/usr/bin"), Path::new("/bin")]).unwrap();
        assert_eq!(
            lookup(Some(&path), "helped.io", Some(&search)).unwrap(),
            Credentials::Basic("u-helped.io".into(), "s".into())
        );
        let err = lookup(
            Some(&path),
            "helped.io",
            Some(std::ffi::OsStr::new("/nonexistent")),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("docker-credential-osbuildtest"),
            "{err}"
        );
    }
}
