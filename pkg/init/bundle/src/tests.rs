use super::*;

/// JSON as the builder writes it: four-space indentation and a final newline.
fn pretty<T: Serialize>(value: &T) -> String {
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    value.serialize(&mut ser).unwrap();
    out.push(b'\n');
    String::from_utf8(out).unwrap()
}

fn s(v: &str) -> String {
    v.to_string()
}

fn full_runtime() -> Runtime {
    Runtime {
        cgroups: vec![s("systemreserved")],
        mounts: vec![
            Mount {
                destination: s("/c/tmp"),
                kind: s("tmpfs"),
                source: s("tmpfs"),
                ..Mount::default()
            },
            Mount {
                destination: s("/c/tmp"),
                options: vec![s("remount"), s("private")],
                ..Mount::default()
            },
            Mount {
                destination: s("/data"),
                kind: s("bind"),
                source: s("/var/data"),
                options: vec![s("rbind")],
                uid_mappings: vec![IdMapping {
                    host_id: 1000,
                    container_id: 0,
                    size: 1,
                }],
                gid_mappings: vec![IdMapping {
                    host_id: 2000,
                    container_id: 0,
                    size: 2,
                }],
            },
        ],
        mkdir: vec![s("/var/lib/x")],
        interfaces: vec![
            Interface {
                name: s("eth1"),
                add: s("veth"),
                peer: s("veth1"),
                create_in_root: false,
            },
            Interface {
                name: s("wg0"),
                add: s("wireguard"),
                create_in_root: true,
                ..Interface::default()
            },
        ],
        bind_ns: BindNs {
            net: s("/run/netns/n"),
            ..BindNs::default()
        },
        namespace: String::new(),
    }
}

const FULL_RUNTIME_JSON: &str = r#"{
    "cgroups": [
        "systemreserved"
    ],
    "mounts": [
        {
            "destination": "/c/tmp",
            "type": "tmpfs",
            "source": "tmpfs"
        },
        {
            "destination": "/c/tmp",
            "options": [
                "remount",
                "private"
            ]
        },
        {
            "destination": "/data",
            "type": "bind",
            "source": "/var/data",
            "options": [
                "rbind"
            ],
            "uidMappings": [
                {
                    "hostID": 1000,
                    "containerID": 0,
                    "size": 1
                }
            ],
            "gidMappings": [
                {
                    "hostID": 2000,
                    "containerID": 0,
                    "size": 2
                }
            ]
        }
    ],
    "mkdir": [
        "/var/lib/x"
    ],
    "interfaces": [
        {
            "name": "eth1",
            "add": "veth",
            "peer": "veth1",
            "createInRoot": false
        },
        {
            "name": "wg0",
            "add": "wireguard",
            "createInRoot": true
        }
    ],
    "bindNS": {
        "cgroup": "",
        "ipc": "",
        "mnt": "",
        "net": "/run/netns/n",
        "pid": "",
        "user": "",
        "uts": ""
    },
    "namespace": ""
}
"#;

#[test]
fn runtime_json_text_is_linuxkits() {
    assert_eq!(pretty(&full_runtime()), FULL_RUNTIME_JSON);
}

#[test]
fn empty_runtime_json_keeps_every_key() {
    assert_eq!(
        pretty(&Runtime::default()),
        "{\n    \"cgroups\": [],\n    \"mounts\": [],\n    \"mkdir\": [],\n    \"interfaces\": [],\n    \"bindNS\": {\n        \"cgroup\": \"\",\n        \"ipc\": \"\",\n        \"mnt\": \"\",\n        \"net\": \"\",\n        \"pid\": \"\",\n        \"user\": \"\",\n        \"uts\": \"\"\n    },\n    \"namespace\": \"\"\n}\n"
    );
}

#[test]
fn runtime_json_round_trips() {
    let back: Runtime = serde_json::from_str(FULL_RUNTIME_JSON).unwrap();
    assert_eq!(back, full_runtime());
    let empty: Runtime = serde_json::from_str(&pretty(&Runtime::default())).unwrap();
    assert_eq!(empty, Runtime::default());
}

#[test]
fn runtime_json_reading_is_lenient_but_bind_ns_is_strict() {
    let r: Runtime =
        serde_json::from_str(r#"{"mounts":[{"destination":"/x","later":1}],"later":true}"#)
            .unwrap();
    assert_eq!(r.mounts[0].destination, "/x");
    assert_eq!(r.mounts[0].kind, "");
    assert!(r.cgroups.is_empty() && r.bind_ns == BindNs::default());
    let e = serde_json::from_str::<Runtime>(r#"{"bindNS":{"time":"/run/t"}}"#).unwrap_err();
    assert!(e.to_string().contains("time"), "{e}");
}

#[test]
fn bind_ns_entries_name_every_namespace() {
    let b = BindNs {
        uts: s("/u"),
        ..BindNs::default()
    };
    let e = b.entries();
    assert_eq!(
        e.map(|(k, _)| k),
        ["cgroup", "ipc", "mnt", "net", "pid", "user", "uts"]
    );
    assert_eq!(e[6], ("uts", "/u"));
    assert!(e[..6].iter().all(|(_, p)| p.is_empty()));
}

#[test]
fn supervise_json_text() {
    let full = Supervise {
        timeout: Some(0.5),
        restart: Some(Restart::OnFailure),
        depends_on: vec![s("db"), s("net")],
    };
    assert_eq!(
        pretty(&full),
        "{\n    \"timeout\": 0.5,\n    \"restart\": \"on-failure\",\n    \"dependsOn\": [\n        \"db\",\n        \"net\"\n    ]\n}\n"
    );
    assert_eq!(pretty(&Supervise::default()), "{}\n");
    let whole = Supervise {
        timeout: Some(30.0),
        ..Supervise::default()
    };
    assert_eq!(pretty(&whole), "{\n    \"timeout\": 30.0\n}\n");
}

#[test]
fn supervise_json_round_trips() {
    for restart in [
        None,
        Some(Restart::Always),
        Some(Restart::OnFailure),
        Some(Restart::No),
    ] {
        let doc = Supervise {
            timeout: Some(90.25),
            restart,
            depends_on: vec![s("x")],
        };
        let back: Supervise = serde_json::from_str(&pretty(&doc)).unwrap();
        assert_eq!(back, doc);
    }
    let back: Supervise = serde_json::from_str("{}").unwrap();
    assert_eq!(back, Supervise::default());
}

#[test]
fn restart_is_spelt_always_on_failure_no() {
    for (r, text) in [
        (Restart::Always, "always"),
        (Restart::OnFailure, "on-failure"),
        (Restart::No, "no"),
    ] {
        assert_eq!(r.as_str(), text);
        assert_eq!(r.to_string(), text);
        assert_eq!(Restart::parse(text), Ok(r));
        assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{text}\""));
        assert_eq!(
            serde_json::from_str::<Restart>(&format!("\"{text}\"")).unwrap(),
            r
        );
    }
    assert_eq!(Restart::default(), Restart::Always);
    let e = serde_json::from_str::<Supervise>(r#"{"restart":"sometimes"}"#).unwrap_err();
    assert!(
        e.to_string()
            .contains("restart \"sometimes\" is not one of always, on-failure, no"),
        "{e}"
    );
    assert!(Restart::parse("Always").is_err());
}

#[test]
fn file_names() {
    assert_eq!(
        [CONFIG_JSON, RUNTIME_JSON, SUPERVISE_JSON],
        ["config.json", "runtime.json", "supervise.json"]
    );
}
