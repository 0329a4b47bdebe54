//! Pulling from a registry that demands basic auth, with credentials from a Docker config.

mod support;

use base64::Engine;
use osbuild_testenv::fixtures::Pusher;
use osbuild_testenv::registry::{BasicAuth, Registry};
use support::{Scratch, ok, osbuild_in, stderr};

#[test]
fn credentials_from_docker_config_open_a_protected_registry() {
    let auth = BasicAuth {
        user: "builder".into(),
        password: "s3cret-pw".into(),
    };
    let registry = Registry::start_with(Some(&auth)).unwrap();
    let s = Scratch::new();
    let config = s.dir.path().join("docker-config.json");
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", auth.user, auth.password));
    std::fs::write(
        &config,
        format!(
            r#"{{"auths":{{"{}":{{"auth":"{token}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let pusher = Pusher::with_credentials(&registry.addr(), Some(&config)).unwrap();
    let image = pusher.push_init("private/init:1").unwrap();
    let spec = s.spec("p.yml", &format!("init:\n  - {image}\n"));
    let out = s.out();
    let run = |extra: &[&str]| {
        let args = [
            "build",
            "-f",
            "tar",
            "--dir",
            out.to_str().unwrap(),
            spec.to_str().unwrap(),
        ];
        osbuild_in(
            &s.dir.path().join(format!("cache{}", extra.len())),
            &[&args[..], extra].concat(),
        )
    };
    // Without credentials the registry refuses, and the error says so with the reference.
    let empty = s.dir.path().join("empty.json");
    std::fs::write(&empty, "{}").unwrap();
    let o = run(&["--docker-config", empty.to_str().unwrap(), "-q"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{image}: access denied by registry {}",
            registry.addr()
        )),
        "{}",
        stderr(&o)
    );
    assert!(s.outputs().is_empty());
    // With them it builds.
    ok(&run(&["--docker-config", config.to_str().unwrap()]));
    assert_eq!(s.outputs(), ["p.json", "p.tar"]);
}
