//! A bundle's `supervise.json` ([`osbuild_bundle::Supervise`], the type the init reads): the
//! spec's supervision keys for the image's init, only those set: `timeout` (seconds, a JSON
//! number such as `0.5`), `restart` (`always`, `on-failure`, `no`) and `dependsOn` (service
//! names, left out when empty); `{}` when none is set.

use osbuild_bundle::Supervise;

use super::oci_config::pretty_json;
use crate::spec::ImageSpec;

/// `supervise.json` for the container `spec` (a validated spec entry).
pub fn supervise_json(spec: &ImageSpec) -> Result<Vec<u8>, String> {
    pretty_json(&Supervise {
        timeout: spec.timeout.as_ref().map(|t| t.value.as_secs_f64()),
        restart: spec.restart.as_ref().map(|r| r.value),
        depends_on: spec
            .depends_on
            .iter()
            .flatten()
            .map(|d| d.value.clone())
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(yaml: &str) -> String {
        let spec: ImageSpec = serde_saphyr::from_str(yaml).unwrap();
        String::from_utf8(supervise_json(&spec).unwrap()).unwrap()
    }

    #[test]
    fn only_the_keys_set_are_written() {
        assert_eq!(json("name: a\nimage: b\n"), "{}\n");
        assert_eq!(
            json("name: a\nimage: b\ntimeout: 500ms\n"),
            "{\n    \"timeout\": 0.5\n}\n"
        );
        assert_eq!(
            json("name: a\nimage: b\ntimeout: 30\n"),
            "{\n    \"timeout\": 30.0\n}\n"
        );
        assert_eq!(
            json("name: a\nimage: b\nrestart: on-failure\ndependsOn: [x, y]\n"),
            "{\n    \"restart\": \"on-failure\",\n    \"dependsOn\": [\n        \"x\",\n        \"y\"\n    ]\n}\n"
        );
        assert_eq!(json("name: a\nimage: b\ndependsOn: []\n"), "{}\n");
        let all: serde_json::Value = serde_json::from_str(&json(
            "name: a\nimage: b\ntimeout: 1m30s\nrestart: no\ndependsOn: [x]\n",
        ))
        .unwrap();
        assert_eq!(
            all,
            serde_json::json!({"timeout": 90.0, "restart": "no", "dependsOn": ["x"]})
        );
    }
}
