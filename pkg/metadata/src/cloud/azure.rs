//! Azure's instance metadata service (IMDS): requests carry `Metadata: true` (others are
//! refused with 400). `GET /metadata/instance?api-version=2021-02-01` answers a JSON document
//! whose `compute` object names the machine (`osProfile.computerName`, the host name given at
//! creation, else `name`, the VM's resource name) and lists `publicKeys` (`keyData` each);
//! `GET /metadata/instance/compute/userData?api-version=2021-01-01&format=text` answers the
//! user data base64-encoded (empty: none). The ready report that follows is
//! [`super::wireserver`]'s.

use serde_json::Value;

use super::{CloudError, IMDS, Probe, first, optional, text};
use crate::found::{Found, clean_hostname, key_lines};
use crate::http::{Client, Request};

const INSTANCE: &str = "/metadata/instance?api-version=2021-02-01";
const USER_DATA: &str = "/metadata/instance/compute/userData?api-version=2021-01-01&format=text";

fn request(path: &str) -> Request {
    Request::get(IMDS, path).header("Metadata", "true")
}

/// Read the service's metadata.
pub fn fetch(client: &Client) -> Result<Probe, CloudError> {
    let instance = request(INSTANCE);
    let answer = match first(client, &instance)? {
        Ok(r) => r,
        Err(probe) => return Ok(probe),
    };
    if answer.status != 200 {
        return Ok(Probe::NotThis);
    }
    let Some(compute) = parse_instance(&answer.body) else {
        return Ok(Probe::NotThis);
    };
    let users = request(USER_DATA);
    let userdata = match text(optional(client, &users)?) {
        None => None,
        Some(encoded) => {
            Some(
                crate::base64::decode(&encoded).ok_or_else(|| CloudError::Invalid {
                    request: users.describe(),
                    why: "user data is not base64".into(),
                })?,
            )
        }
    };
    Ok(Probe::Found(Found {
        provider: "azure",
        via: "IMDS".into(),
        hostname: compute.hostname,
        ssh_keys: compute.keys,
        userdata: userdata.filter(|d| !d.is_empty()),
        report_ready: true,
    }))
}

/// What the instance document says.
#[derive(Debug, PartialEq, Eq)]
struct Compute {
    hostname: Option<String>,
    keys: Vec<String>,
}

/// The instance document's `compute` part; `None` when the body is no such document.
fn parse_instance(body: &[u8]) -> Option<Compute> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    let compute = doc.get("compute")?.as_object()?;
    let string = |v: Option<&Value>| v.and_then(Value::as_str).and_then(clean_hostname);
    let hostname = string(compute.get("osProfile").and_then(|p| p.get("computerName")))
        .or_else(|| string(compute.get("name")));
    let keys = compute
        .get("publicKeys")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|k| k.get("keyData")?.as_str())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    Some(Compute {
        hostname,
        keys: key_lines(keys),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_instance_document() {
        let doc = br#"{"compute":{"name":"vm-resource","osProfile":{"adminUsername":"azureuser",
            "computerName":"web-1"},"publicKeys":[{"keyData":"ssh-rsa AAA a\r\n",
            "path":"/home/azureuser/.ssh/authorized_keys"},{"keyData":"ssh-ed25519 BBB b"}]},
            "network":{}}"#;
        assert_eq!(
            parse_instance(doc),
            Some(Compute {
                hostname: Some("web-1".into()),
                keys: vec!["ssh-rsa AAA a".into(), "ssh-ed25519 BBB b".into()],
            })
        );
        let bare = br#"{"compute":{"name":"vm-resource","osProfile":{"computerName":""}}}"#;
        assert_eq!(
            parse_instance(bare),
            Some(Compute {
                hostname: Some("vm-resource".into()),
                keys: vec![],
            })
        );
        assert_eq!(parse_instance(b"{\"error\":\"Bad request\"}"), None);
        assert_eq!(parse_instance(b"<html/>"), None);
    }
}
