//! Amazon EC2's instance metadata service. IMDSv2: a session token from
//! `PUT /latest/api/token` (its lifetime in `X-aws-ec2-metadata-token-ttl-seconds`), sent
//! back in `X-aws-ec2-metadata-token` with every GET; without it an instance that requires
//! IMDSv2 answers 401. Services that do not offer tokens (404 or 405 to the PUT: EC2-compatible
//! ones, IMDSv1) are read without. Read: `/latest/meta-data/hostname` (or `local-hostname`),
//! the key list `/latest/meta-data/public-keys/` (lines `INDEX=NAME`) and each
//! `/latest/meta-data/public-keys/INDEX/openssh-key`, and `/latest/user-data` (404: none).

use super::{CloudError, IMDS, Probe, first, optional, text};
use crate::found::{Found, clean_hostname, key_lines};
use crate::http::{Client, Request};

/// The token's lifetime asked for, in seconds (the most the service grants, six hours).
const TOKEN_TTL: &str = "21600";
/// Keys read, at most.
const MAX_KEYS: usize = 64;

/// Read the service's metadata.
pub fn fetch(client: &Client) -> Result<Probe, CloudError> {
    let put = Request::new("PUT", IMDS, "/latest/api/token")
        .header("X-aws-ec2-metadata-token-ttl-seconds", TOKEN_TTL);
    let answer = match first(client, &put)? {
        Ok(r) => r,
        Err(probe) => return Ok(probe),
    };
    let token = match answer.status {
        200 => {
            let token = answer.text();
            if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(CloudError::Invalid {
                    request: put.describe(),
                    why: "not a token".into(),
                });
            }
            Some(token)
        }
        404 | 405 => None,
        _ => return Ok(Probe::NotThis),
    };
    let get = |path: &str| {
        let mut r = Request::get(IMDS, path);
        if let Some(t) = &token {
            r = r.header("X-aws-ec2-metadata-token", t);
        }
        optional(client, &r)
    };
    if token.is_none() {
        // Without tokens, make sure this is an EC2-style service before reading on.
        let probe = Request::get(IMDS, "/latest/meta-data/");
        match client.send(&probe) {
            Ok(r) if r.status == 200 => {}
            _ => return Ok(Probe::NotThis),
        }
    }
    let hostname = match text(get("/latest/meta-data/hostname")?) {
        Some(h) => Some(h),
        None => text(get("/latest/meta-data/local-hostname")?),
    };
    let mut keys = Vec::new();
    if let Some(list) = text(get("/latest/meta-data/public-keys/")?) {
        for index in key_indices(&list).into_iter().take(MAX_KEYS) {
            let path = format!("/latest/meta-data/public-keys/{index}/openssh-key");
            if let Some(key) = text(get(&path)?) {
                keys.push(key);
            }
        }
    }
    let userdata = get("/latest/user-data")?.filter(|d| !d.is_empty());
    Ok(Probe::Found(Found {
        provider: "aws",
        via: if token.is_some() { "IMDSv2" } else { "IMDSv1" }.into(),
        hostname: hostname.as_deref().and_then(clean_hostname),
        ssh_keys: key_lines(keys.iter().map(String::as_str)),
        userdata,
        report_ready: false,
    }))
}

/// The indices of the key list's `INDEX=NAME` lines.
fn key_indices(list: &str) -> Vec<u32> {
    list.lines()
        .filter_map(|l| l.trim().split('=').next()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_list_lines_give_indices() {
        assert_eq!(key_indices("0=my-key\n1=other=x\n\nbad\n12=z"), [0, 1, 12]);
        assert!(key_indices("").is_empty());
    }
}
