//! A real OCI registry (Debian's `docker-registry`, CNCF distribution) on loopback, in a
//! temporary directory, on a free port. Stopped when dropped.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Runs `$2 serve $3` until process `$1` exits or the shell gets SIGTERM. When process `$1` is
/// gone (a registry held in a static is never dropped), it also removes the registry's
/// directory `$4`, which the dropped `TempDir` would otherwise have removed.
const WATCHDOG: &str = r#"
"$2" serve "$3" &
R=$!
trap 'kill $R 2>/dev/null; wait $R; exit 0' TERM INT
while kill -0 "$1" 2>/dev/null && kill -0 $R 2>/dev/null; do sleep 0.2; done
kill $R 2>/dev/null
wait $R
kill -0 "$1" 2>/dev/null || rm -rf "$4"
"#;

/// A running registry.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

/// Basic-auth credentials the registry demands (htpasswd with bcrypt).
#[derive(Debug, Clone)]
pub struct BasicAuth {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
}

impl Registry {
    /// Start an anonymous registry.
    pub fn start() -> Result<Registry> {
        Registry::start_with(None)
    }

    /// Start a registry, requiring basic auth when `auth` is given.
    pub fn start_with(auth: Option<&BasicAuth>) -> Result<Registry> {
        let binary = Path::new("/usr/bin/docker-registry");
        if !binary.exists() {
            bail!("docker-registry is not installed (apt-get install docker-registry)");
        }
        let mut last_err = None;
        for _ in 0..5 {
            let dir = tempfile::Builder::new()
                .prefix("osbuild-registry-")
                .tempdir()?;
            let port = free_port()?;
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            );
            if let Some(auth) = auth {
                let htpasswd = dir.path().join("htpasswd");
                write_htpasswd(&htpasswd, auth)?;
                config.push_str(&format!(
                    "auth:\n  htpasswd:\n    realm: osbuild-test\n    path: {}\n",
                    htpasswd.display()
                ));
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config)?;
            let log = std::fs::File::create(dir.path().join("registry.log"))?;
            // A watchdog shell runs the registry and stops it when this process is gone, so a
            // registry shared by a test binary (never dropped) does not outlive the tests.
            let child = Command::new("sh")
                .arg("-c")
                .arg(WATCHDOG)
                .arg("registry-watchdog")
                .arg(std::process::id().to_string())
                .arg(binary)
                .arg(&config_path)
                .arg(dir.path())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting docker-registry")?;
            let mut registry = Registry { child, port, dir };
            match registry.wait_ready(Duration::from_secs(15)) {
                Ok(()) => return Ok(registry),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("registry did not start")))
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the registry keeps its blobs (to tamper with them in tests).
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Stop the registry now (the port then refuses connections).
    pub fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
        }
        let _ = self.child.wait();
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                let log = std::fs::read_to_string(self.dir.path().join("registry.log"))
                    .unwrap_or_default();
                bail!("docker-registry exited with {status}: {log}");
            }
            if let Ok(status) = http_status(self.port, "/v2/")
                && (status == 200 || status == 401)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop();
        bail!(
            "docker-registry did not answer on port {} in time",
            self.port
        )
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn http_status(port: u16, path: &str) -> Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    let text = String::from_utf8_lossy(&head[9..12]).into_owned();
    Ok(text.parse()?)
}

fn write_htpasswd(path: &Path, auth: &BasicAuth) -> Result<()> {
    // The registry only accepts bcrypt entries; htpasswd from apache2-utils makes them.
    let out = Command::new("htpasswd")
        .args(["-Bbn", &auth.user, &auth.password])
        .output()
        .context("running htpasswd (apt-get install apache2-utils)")?;
    if !out.status.success() {
        bail!("htpasswd failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::write(path, out.stdout)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let mut registry = Registry::start().unwrap();
        assert_eq!(http_status(registry.port(), "/v2/").unwrap(), 200);
        assert_eq!(
            http_status(registry.port(), "/v2/nope/manifests/x").unwrap(),
            404
        );
        registry.stop();
        assert!(http_status(registry.port(), "/v2/").is_err());
    }
}
