//! The `metadata` binary against fake cloud metadata services that answer the documented
//! protocols on the real addresses (169.254.169.254, and Azure's WireServer 168.63.129.16),
//! put on the loopback link of a network namespace of the test's own (`ip netns`). Each
//! service runs in a thread of this process that moved into the namespace (setns is per
//! thread); the binary runs there too (`ip netns exec`), in a UTS namespace of its own
//! (`unshare --uts`) so that the host name it sets can be read back without touching the
//! host's. DMI is a directory of files given with `--sys`, the config directory a temporary
//! one. The services enforce what the real ones do (the EC2 token, GCE's and Azure's request
//! headers), and record every request so the test can check what was asked and reported.
//!
//! Needs root (network namespaces); says so and passes without it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const IMDS: &str = "169.254.169.254:80";
const WIRESERVER: &str = "168.63.129.16:80";
const AZURE_TAG: &str = "7783-7084-3265-9085-8269-3286-77";

// ---------------------------------------------------------------------------------------
// The namespace.

/// A network namespace with the services' addresses on its loopback link, deleted on drop.
struct Netns {
    name: String,
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Netns {
    /// A new namespace with the services' addresses, or `None` (with a message) where the
    /// test cannot make one.
    fn new() -> Option<Netns> {
        let ns = Netns::bare()?;
        for addr in ["169.254.169.254/32", "168.63.129.16/32"] {
            ok(Command::new("ip").args(["-n", &ns.name, "addr", "add", addr, "dev", "lo"]));
        }
        Some(ns)
    }

    /// A new namespace with only its loopback link up.
    fn bare() -> Option<Netns> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        if !osbuild_test_skip::is_root() {
            osbuild_test_skip::skip("needs root to make network namespaces (ip netns)");
            return None;
        }
        for tool in ["ip", "unshare"] {
            if Command::new(tool).arg("-V").output().is_err() {
                osbuild_test_skip::skip(&format!("{tool} not found"));
                return None;
            }
        }
        let name = format!(
            "osbuild-metadata-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        ok(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ok(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]));
        Some(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

// ---------------------------------------------------------------------------------------
// The fake services.

/// A request as a service saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// An answer.
struct Answer {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    chunked: bool,
}

fn answer(status: u16, body: impl Into<Vec<u8>>) -> Answer {
    Answer {
        status,
        headers: Vec::new(),
        body: body.into(),
        chunked: false,
    }
}

type Handler = Arc<dyn Fn(&Seen) -> Answer + Send + Sync>;

/// A service listening on one address inside a namespace, stopped on drop.
struct Service {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl Service {
    fn start(ns: &Netns, addr: &str, handler: Handler) -> Service {
        let netns = PathBuf::from("/run/netns").join(&ns.name);
        let addr: SocketAddr = addr.parse().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready, bound) = mpsc::channel();
        let thread = {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let listener = (|| -> std::io::Result<TcpListener> {
                    let ns = fs::File::open(&netns)?;
                    rustix::thread::move_into_link_name_space(
                        ns.as_fd(),
                        Some(rustix::thread::LinkNameSpaceType::Network),
                    )?;
                    let l = TcpListener::bind(addr)?;
                    l.set_nonblocking(true)?;
                    Ok(l)
                })();
                let listener = match listener {
                    Ok(l) => {
                        ready.send(Ok(())).unwrap();
                        l
                    }
                    Err(e) => {
                        ready.send(Err(e.to_string())).unwrap();
                        return;
                    }
                };
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(req) = serve_one(stream, &handler) {
                                seen.lock().unwrap().push(req);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        bound
            .recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        Service {
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Read one request, answer it, close.
fn serve_one(stream: TcpStream, handler: &Handler) -> Option<Seen> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).ok()?;
    let seen = Seen {
        method,
        path,
        headers,
        body,
    };
    let a = handler(&seen);
    let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", a.status);
    for (name, value) in &a.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    let mut bytes;
    if a.chunked {
        out.push_str("Transfer-Encoding: chunked\r\n\r\n");
        bytes = out.into_bytes();
        for chunk in a.body.chunks(7) {
            bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            bytes.extend_from_slice(chunk);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        out.push_str(&format!("Content-Length: {}\r\n\r\n", a.body.len()));
        bytes = out.into_bytes();
        bytes.extend_from_slice(&a.body);
    }
    let mut stream = stream;
    stream.write_all(&bytes).ok()?;
    Some(seen)
}

const TOKEN: &str = "AQAEAFake-Token_0123456789==";
const KEY_A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA first@example";
const KEY_B: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ second@example";
const KEY_C: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTY project@example";
const JSON_USERDATA: &str = r#"{"app":{"greeting":{"perm":"0600","content":"hello"}},"ssh":{"sshd_config":{"content":"PermitRootLogin prohibit-password\n"}}}"#;

/// EC2's IMDS requiring IMDSv2: GETs without the token get 401.
fn aws() -> Handler {
    Arc::new(|r: &Seen| {
        if r.method == "PUT" && r.path == "/latest/api/token" {
            return match r
                .header("x-aws-ec2-metadata-token-ttl-seconds")
                .and_then(|t| t.parse::<u32>().ok())
            {
                Some(1..=21600) => answer(200, TOKEN),
                _ => answer(400, "missing or bad TTL"),
            };
        }
        if r.method != "GET" {
            return answer(405, "");
        }
        if r.header("x-aws-ec2-metadata-token") != Some(TOKEN) {
            return answer(401, "");
        }
        match r.path.as_str() {
            "/latest/meta-data/" => answer(200, "hostname\nlocal-hostname\npublic-keys/"),
            "/latest/meta-data/hostname" => answer(200, "ip-10-1-2-3.ec2.internal"),
            "/latest/meta-data/public-keys/" => answer(200, "0=first\n1=second"),
            "/latest/meta-data/public-keys/0/openssh-key" => answer(200, format!("{KEY_A}\n")),
            "/latest/meta-data/public-keys/1/openssh-key" => answer(200, format!("{KEY_B}\n")),
            "/latest/user-data" => answer(200, JSON_USERDATA),
            _ => answer(404, "not found"),
        }
    })
}

/// GCE's metadata server: 403 without `Metadata-Flavor: Google`, which every answer carries;
/// bodies chunked.
fn gce(block_project_keys: bool) -> Handler {
    Arc::new(move |r: &Seen| {
        let mut a = if r.header("metadata-flavor") != Some("Google") {
            answer(403, "Missing Metadata-Flavor:Google header.")
        } else {
            match r.path.as_str() {
                "/computeMetadata/v1/instance/hostname" => {
                    answer(200, "vm-1.us-central1-a.c.proj.internal")
                }
                "/computeMetadata/v1/instance/attributes/ssh-keys" => {
                    answer(200, format!("alice:{KEY_A}\nbob:{KEY_B}\n"))
                }
                "/computeMetadata/v1/instance/attributes/block-project-ssh-keys"
                    if block_project_keys =>
                {
                    answer(200, "true")
                }
                "/computeMetadata/v1/project/attributes/ssh-keys" => {
                    answer(200, format!("carol:{KEY_C}"))
                }
                "/computeMetadata/v1/instance/attributes/user-data" => {
                    answer(200, "#cloud-config\nhostname: ignored\n")
                }
                _ => answer(404, "not found"),
            }
        };
        a.headers.push(("Metadata-Flavor", "Google".into()));
        a.chunked = true;
        a
    })
}

const CONTAINER: &str = "2b3c8a6e-0c31-4b2c-9c33-5b8b3c1d8f10";
const INSTANCE: &str = "7d2f4c5e-1b1a-4d2b-a3f1-0e7c8c9f2b11.vm-1";

/// Azure's IMDS: 400 without `Metadata: true`.
fn azure_imds() -> Handler {
    Arc::new(|r: &Seen| {
        if r.header("metadata") != Some("true") {
            return answer(
                400,
                r#"{"error":"Bad request. Required metadata header not specified"}"#,
            );
        }
        match r.path.as_str() {
            "/metadata/instance?api-version=2021-02-01" => {
                let doc = serde_json_like(&[
                    ("name", "vm-resource-name"),
                    ("computerName", "web-1"),
                    ("key1", KEY_A),
                    ("key2", KEY_B),
                ]);
                answer(200, doc)
            }
            "/metadata/instance/compute/userData?api-version=2021-01-01&format=text" => {
                answer(200, base64(JSON_USERDATA.as_bytes()))
            }
            _ => answer(404, ""),
        }
    })
}

/// The instance document (written out by hand: the test needs no JSON writer).
fn serde_json_like(f: &[(&str, &str)]) -> String {
    let get = |k: &str| f.iter().find(|(n, _)| *n == k).unwrap().1;
    format!(
        r#"{{"compute":{{"location":"westeurope","name":"{}","osProfile":{{"adminUsername":"azureuser","computerName":"{}"}},"publicKeys":[{{"keyData":"{}","path":"/home/azureuser/.ssh/authorized_keys"}},{{"keyData":"{}","path":"/home/azureuser/.ssh/authorized_keys"}}],"vmId":"x"}},"network":{{}}}}"#,
        get("name"),
        get("computerName"),
        get("key1"),
        get("key2")
    )
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The WireServer: the goal state (with `x-ms-version: 2012-11-30`), and health reports.
fn wireserver() -> Handler {
    Arc::new(|r: &Seen| {
        if r.header("x-ms-version") != Some("2012-11-30") {
            return answer(400, "");
        }
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/machine/?comp=goalstate") => answer(
                200,
                format!(
                    "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<GoalState>\n  <Version>2012-11-30</Version>\n  \
                     <Incarnation>3</Incarnation>\n  <Machine><ExpectedState>Started</ExpectedState></Machine>\n  \
                     <Container>\n    <ContainerId>{CONTAINER}</ContainerId>\n    <RoleInstanceList>\n      \
                     <RoleInstance>\n        <InstanceId>{INSTANCE}</InstanceId>\n        <State>Started</State>\n      \
                     </RoleInstance>\n    </RoleInstanceList>\n  </Container>\n</GoalState>\n"
                ),
            ),
            ("POST", "/machine?comp=health" | "/machine/?comp=health") => answer(200, ""),
            _ => answer(404, ""),
        }
    })
}

// ---------------------------------------------------------------------------------------
// Running the binary.

struct Run {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    /// The UTS namespace's host name after the run.
    hostname: String,
    elapsed: Duration,
}

/// A fake sysfs: DMI fields, and no block devices.
fn fake_sys(dir: &Path, dmi: &[(&str, &str)]) -> PathBuf {
    let sys = dir.join("sys");
    fs::create_dir_all(sys.join("class/dmi/id")).unwrap();
    fs::create_dir_all(sys.join("class/block")).unwrap();
    for (name, value) in dmi {
        fs::write(sys.join("class/dmi/id").join(name), format!("{value}\n")).unwrap();
    }
    sys
}

fn run(ns: &Netns, config: &Path, sys: &Path, extra: &[&str]) -> Run {
    let start = Instant::now();
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "unshare", "--uts", "sh", "-c"])
        .arg("hostname before-metadata; \"$@\"; rc=$?; echo \"uts-hostname: $(cat /proc/sys/kernel/hostname)\"; exit $rc")
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_metadata"))
        .arg("--config-dir")
        .arg(config)
        .arg("--sys")
        .arg(sys)
        .args(extra)
        .output()
        .unwrap();
    let elapsed = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // Shown with --nocapture, and for a failing test.
    eprint!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let hostname = stdout
        .lines()
        .find_map(|l| l.strip_prefix("uts-hostname: "))
        .unwrap_or("")
        .to_string();
    Run {
        success: out.status.success(),
        code: out.status.code(),
        stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        hostname,
        elapsed,
    }
}

fn read(dir: &Path, path: &str) -> String {
    fs::read_to_string(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn mode(dir: &Path, path: &str) -> u32 {
    fs::metadata(dir.join(path)).unwrap().permissions().mode() & 0o7777
}

/// The JSON user data's layout, as the CIDATA volume's has always been laid out.
fn assert_json_layout(config: &Path) {
    assert_eq!(read(config, "userdata"), JSON_USERDATA);
    assert_eq!(read(config, "app/greeting"), "hello");
    assert_eq!(mode(config, "app/greeting"), 0o600);
    assert_eq!(
        read(config, "ssh/sshd_config"),
        "PermitRootLogin prohibit-password\n"
    );
}

// ---------------------------------------------------------------------------------------
// The cases.

#[test]
fn aws_imdsv2_with_the_token_the_service_requires() {
    let Some(ns) = Netns::new() else { return };
    let imds = Service::start(&ns, IMDS, aws());
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(
        tmp.path(),
        &[("sys_vendor", "Amazon EC2"), ("product_name", "m6i.large")],
    );
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    let line = format!(
        "metadata: aws (IMDSv2): hostname ip-10-1-2-3.ec2.internal, 2 ssh keys, {} bytes of user data (3 files) into {}",
        JSON_USERDATA.len(),
        config.display()
    );
    assert!(r.stdout.contains(&line), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hostname, "ip-10-1-2-3.ec2.internal");
    assert_eq!(read(&config, "provider"), "aws");
    assert_eq!(read(&config, "hostname"), "ip-10-1-2-3.ec2.internal");
    // The user data's ssh/ directory sits beside the keys.
    assert_eq!(
        read(&config, "ssh/authorized_keys"),
        format!("{KEY_A}\n{KEY_B}\n")
    );
    assert_eq!(mode(&config, "ssh/authorized_keys"), 0o600);
    assert_json_layout(&config);

    let seen = imds.seen();
    assert_eq!(seen[0].method, "PUT", "{seen:?}");
    assert_eq!(seen[0].path, "/latest/api/token");
    assert_eq!(
        seen[0].header("x-aws-ec2-metadata-token-ttl-seconds"),
        Some("21600")
    );
    assert_eq!(seen[0].header("host"), Some("169.254.169.254"));
    for s in &seen[1..] {
        assert_eq!(s.method, "GET", "{s:?}");
        assert_eq!(s.header("x-aws-ec2-metadata-token"), Some(TOKEN), "{s:?}");
    }
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    for p in [
        "/latest/meta-data/hostname",
        "/latest/meta-data/public-keys/",
        "/latest/meta-data/public-keys/0/openssh-key",
        "/latest/meta-data/public-keys/1/openssh-key",
        "/latest/user-data",
    ] {
        assert!(paths.contains(&p), "{p} not asked: {paths:?}");
    }
}

#[test]
fn aws_without_user_data_or_keys() {
    let Some(ns) = Netns::new() else { return };
    let bare: Handler = Arc::new(|r: &Seen| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => answer(200, TOKEN),
        (_, _) if r.header("x-aws-ec2-metadata-token") != Some(TOKEN) => answer(401, ""),
        (_, "/latest/meta-data/local-hostname") => answer(200, "ip-10-9-9-9.internal\n"),
        _ => answer(404, ""),
    });
    let imds = Service::start(&ns, IMDS, bare);
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(tmp.path(), &[("bios_vendor", "Amazon EC2")]);
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "metadata: aws (IMDSv2): hostname ip-10-9-9-9.internal into {}",
            config.display()
        )),
        "{}",
        r.stdout
    );
    assert!(!config.join("userdata").exists());
    assert!(!config.join("ssh").exists());
    assert!(
        imds.seen()
            .iter()
            .all(|s| s.path != "/latest/meta-data/public-keys/0/openssh-key")
    );
}

#[test]
fn gce_with_the_flavor_header_after_aws_is_turned_away() {
    let Some(ns) = Netns::new() else { return };
    let server = Service::start(&ns, IMDS, gce(false));
    let tmp = tempfile::tempdir().unwrap();
    // No DMI: the services are asked in turn, EC2's first (refused: no Metadata-Flavor).
    let sys = fake_sys(tmp.path(), &[]);
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    let userdata = "#cloud-config\nhostname: ignored\n";
    let line = format!(
        "metadata: gce (metadata server): hostname vm-1.us-central1-a.c.proj.internal, 3 ssh keys, {} bytes of user data into {}",
        userdata.len(),
        config.display()
    );
    assert!(r.stdout.contains(&line), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hostname, "vm-1.us-central1-a.c.proj.internal");
    assert_eq!(read(&config, "provider"), "gce");
    assert_eq!(
        read(&config, "ssh/authorized_keys"),
        format!("{KEY_A}\n{KEY_B}\n{KEY_C}\n")
    );
    assert_eq!(read(&config, "userdata"), userdata);
    let seen = server.seen();
    assert_eq!(seen[0].path, "/latest/api/token", "{seen:?}");
    let google: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/computeMetadata/"))
        .collect();
    assert!(google.len() >= 4, "{seen:?}");
    for s in google {
        assert_eq!(s.header("metadata-flavor"), Some("Google"), "{s:?}");
    }
}

#[test]
fn gce_project_keys_can_be_blocked() {
    let Some(ns) = Netns::new() else { return };
    let _server = Service::start(&ns, IMDS, gce(true));
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(
        tmp.path(),
        &[
            ("sys_vendor", "Google"),
            ("product_name", "Google Compute Engine"),
        ],
    );
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        read(&config, "ssh/authorized_keys"),
        format!("{KEY_A}\n{KEY_B}\n")
    );
}

#[test]
fn azure_imds_then_the_ready_report() {
    let Some(ns) = Netns::new() else { return };
    let imds = Service::start(&ns, IMDS, azure_imds());
    let wire = Service::start(&ns, WIRESERVER, wireserver());
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(
        tmp.path(),
        &[
            ("sys_vendor", "Microsoft Corporation"),
            ("product_name", "Virtual Machine"),
            ("chassis_asset_tag", AZURE_TAG),
        ],
    );
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    let line = format!(
        "metadata: azure (IMDS): hostname web-1, 2 ssh keys, {} bytes of user data (3 files) into {}",
        JSON_USERDATA.len(),
        config.display()
    );
    assert!(r.stdout.contains(&line), "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "metadata: azure: reported Ready to 168.63.129.16 (incarnation 3, container {CONTAINER}, instance {INSTANCE})"
        )),
        "{}",
        r.stdout
    );
    assert_eq!(r.hostname, "web-1");
    assert_eq!(read(&config, "provider"), "azure");
    assert_eq!(
        read(&config, "ssh/authorized_keys"),
        format!("{KEY_A}\n{KEY_B}\n")
    );
    assert_json_layout(&config);

    // DMI named Azure: its IMDS was asked first, with the header it requires.
    let seen = imds.seen();
    assert_eq!(
        seen[0].path, "/metadata/instance?api-version=2021-02-01",
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|s| s.header("metadata") == Some("true")),
        "{seen:?}"
    );

    // The goal state, then one health report repeating it and saying Ready.
    let wire = wire.seen();
    assert_eq!(wire.len(), 2, "{wire:?}");
    assert_eq!(
        (wire[0].method.as_str(), wire[0].path.as_str()),
        ("GET", "/machine/?comp=goalstate")
    );
    let report = &wire[1];
    assert_eq!(report.method, "POST");
    assert!(report.path.ends_with("?comp=health"), "{report:?}");
    assert_eq!(report.header("x-ms-version"), Some("2012-11-30"));
    assert!(
        report
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/xml")),
        "{report:?}"
    );
    let xml = String::from_utf8(report.body.clone()).unwrap();
    let element = |tag: &str| {
        let open = format!("<{tag}>");
        let start = xml
            .find(&open)
            .unwrap_or_else(|| panic!("no {tag} in {xml}"))
            + open.len();
        xml[start..start + xml[start..].find(&format!("</{tag}>")).unwrap()].to_string()
    };
    assert!(
        xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>"),
        "{xml}"
    );
    assert!(xml.contains("<Health xmlns:xsi="), "{xml}");
    assert_eq!(element("GoalStateIncarnation"), "3");
    assert_eq!(element("ContainerId"), CONTAINER);
    assert_eq!(element("InstanceId"), INSTANCE);
    assert_eq!(element("State"), "Ready");
    // InstanceId sits in Container/RoleInstanceList/Role.
    let role = element("Role");
    assert!(
        role.contains(&format!("<InstanceId>{INSTANCE}</InstanceId>")),
        "{xml}"
    );
    assert!(element("RoleInstanceList").contains("<Role>"), "{xml}");
}

#[test]
fn azure_without_the_wireserver_fails_the_run() {
    let Some(ns) = Netns::new() else { return };
    let _imds = Service::start(&ns, IMDS, azure_imds());
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(tmp.path(), &[("chassis_asset_tag", AZURE_TAG)]);
    let config = tmp.path().join("config");
    // The report is tried for --wait seconds; refused connections fail at once each time.
    let r = run(&ns, &config, &sys, &["--wait", "1"]);
    assert_eq!(r.code, Some(1), "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("metadata: azure (IMDS): ready report: GET http://168.63.129.16:80/machine/?comp=goalstate: connecting to 168.63.129.16:80"), "{}", r.stderr);
    // The data is in place all the same.
    assert_eq!(read(&config, "hostname"), "web-1");
}

#[test]
fn no_service_answering_ends_quickly_and_successfully() {
    let Some(ns) = Netns::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(tmp.path(), &[("sys_vendor", "QEMU")]);
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    assert!(r.elapsed < Duration::from_secs(5), "{:?}", r.elapsed);
    assert!(
        r.stdout.contains(
            "metadata: no metadata: no CIDATA volume, config drive or CD-ROM with data; \
             no metadata service (connecting to 169.254.169.254:80: Connection refused"
        ),
        "{}",
        r.stdout
    );
    assert!(!config.exists());
    assert_eq!(r.hostname, "before-metadata");
}

#[test]
fn a_network_where_nothing_answers_is_left_after_one_connect_timeout() {
    let Some(ns) = Netns::bare() else { return };
    // A default route through a gateway nobody answers for (a veth pair whose other end has
    // no address): connections to 169.254.169.254 neither succeed nor fail, they time out.
    for args in [
        &["link", "add", "v0", "type", "veth", "peer", "name", "v1"][..],
        &["link", "set", "v0", "up"],
        &["link", "set", "v1", "up"],
        &["addr", "add", "10.9.0.1/24", "dev", "v0"],
        &["route", "add", "default", "via", "10.9.0.2"],
    ] {
        ok(Command::new("ip").args(["-n", &ns.name]).args(args));
    }
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(tmp.path(), &[]);
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &[]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    // One connect timeout (1 s), not one per service.
    assert!(r.elapsed < Duration::from_millis(2500), "{:?}", r.elapsed);
    assert!(
        r.stdout
            .contains("no metadata service (connecting to 169.254.169.254:80: "),
        "{}",
        r.stdout
    );
}

#[test]
fn the_cloud_dmi_names_is_waited_for_a_bounded_time() {
    let Some(ns) = Netns::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sys = fake_sys(tmp.path(), &[("sys_vendor", "Amazon EC2")]);
    let config = tmp.path().join("config");
    let r = run(&ns, &config, &sys, &["--wait", "1.5"]);
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.elapsed >= Duration::from_millis(1500) && r.elapsed < Duration::from_secs(6),
        "{:?}",
        r.elapsed
    );
    assert!(
        r.stdout.contains("metadata: no metadata: no CIDATA volume, config drive or CD-ROM with data; DMI names aws, but connecting to 169.254.169.254:80"),
        "{}",
        r.stdout
    );
}

/// An ISO 9660 image of `files` labelled `label` (written by osbuild, whose labels are
/// d-characters: a label with others is patched in afterwards).
fn iso(path: &Path, label: &str, files: &[(&str, &[u8])]) {
    use osbuild::disk::iso9660::{IsoImage, write_iso};
    use osbuild::disk::source::Source;
    let bodies: Vec<Vec<u8>> = files.iter().map(|(_, d)| d.to_vec()).collect();
    let list: Vec<(&str, &dyn Source)> = files
        .iter()
        .zip(&bodies)
        .map(|((n, _), b)| (*n, b as &dyn Source))
        .collect();
    let mut f = fs::File::create(path).unwrap();
    write_iso(&mut f, &IsoImage::plain("PLACEHOLDER", 0, &list)).unwrap();
    let mut image = fs::read(path).unwrap();
    let field = &mut image[16 * 2048 + 40..16 * 2048 + 72];
    field.fill(b' ');
    field[..label.len()].copy_from_slice(label.as_bytes());
    fs::write(path, image).unwrap();
}

#[test]
fn an_openstack_config_drive_comes_before_any_service() {
    let Some(ns) = Netns::new() else { return };
    let imds = Service::start(&ns, IMDS, aws());
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!(
        r#"{{"uuid":"83679162-1378-4288-a2d4-70e13ec132aa","hostname":"os-vm.novalocal","name":"os-vm",
            "public_keys":{{"mykey":"{KEY_A}"}},"keys":[{{"name":"mykey","type":"ssh","data":"{KEY_A}"}}],
            "launch_index":0,"availability_zone":"nova"}}"#
    );
    let drive = tmp.path().join("config-drive.iso");
    iso(
        &drive,
        "config-2",
        &[
            ("ec2/latest/meta-data.json", b"{}"),
            (
                "openstack/2012-08-10/meta_data.json",
                b"{\"hostname\":\"old\"}",
            ),
            ("openstack/latest/meta_data.json", meta.as_bytes()),
            ("openstack/latest/user_data", JSON_USERDATA.as_bytes()),
            ("openstack/latest/network_data.json", b"{}"),
        ],
    );
    let not_iso = tmp.path().join("zeros.img");
    fs::write(&not_iso, vec![0u8; 64 << 10]).unwrap();
    // DMI says EC2, and its service is there: the local volume still wins.
    let sys = fake_sys(tmp.path(), &[("sys_vendor", "Amazon EC2")]);
    let config = tmp.path().join("config");
    let r = run(
        &ns,
        &config,
        &sys,
        &[
            "--device",
            not_iso.to_str().unwrap(),
            "--device",
            drive.to_str().unwrap(),
        ],
    );
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    let line = format!(
        "metadata: openstack (config drive {}): hostname os-vm.novalocal, 1 ssh key, {} bytes of user data (3 files) into {}",
        drive.display(),
        JSON_USERDATA.len(),
        config.display()
    );
    assert!(r.stdout.contains(&line), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.hostname, "os-vm.novalocal");
    assert_eq!(read(&config, "provider"), "openstack");
    assert_eq!(read(&config, "ssh/authorized_keys"), format!("{KEY_A}\n"));
    assert_json_layout(&config);
    assert!(imds.seen().is_empty(), "{:?}", imds.seen());
}

#[test]
fn a_cidata_volume_still_comes_first() {
    let Some(ns) = Netns::new() else { return };
    let imds = Service::start(&ns, IMDS, aws());
    let tmp = tempfile::tempdir().unwrap();
    let cidata = tmp.path().join("cidata.iso");
    iso(&cidata, "CIDATA", &[("config", JSON_USERDATA.as_bytes())]);
    let drive = tmp.path().join("config-drive.iso");
    iso(
        &drive,
        "config-2",
        &[("openstack/latest/meta_data.json", b"{\"hostname\":\"no\"}")],
    );
    let sys = fake_sys(tmp.path(), &[("sys_vendor", "Amazon EC2")]);
    let config = tmp.path().join("config");
    let r = run(
        &ns,
        &config,
        &sys,
        &[
            "--device",
            cidata.to_str().unwrap(),
            "--device",
            drive.to_str().unwrap(),
        ],
    );
    assert!(r.success, "{}\n{}", r.stdout, r.stderr);
    let line = format!(
        "metadata: cidata ({}): {} bytes of user data (3 files) into {}",
        cidata.display(),
        JSON_USERDATA.len(),
        config.display()
    );
    assert!(r.stdout.contains(&line), "{}\n{}", r.stdout, r.stderr);
    assert_eq!(read(&config, "provider"), "cidata");
    assert!(!config.join("hostname").exists());
    assert_eq!(r.hostname, "before-metadata");
    assert_json_layout(&config);
    assert!(imds.seen().is_empty());
}
