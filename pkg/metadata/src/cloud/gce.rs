//! Google Compute Engine's metadata server, `/computeMetadata/v1/`: every request carries
//! `Metadata-Flavor: Google` (the server refuses others with 403) and every answer carries it
//! back (which tells the server from anything else on the address). Read:
//! `instance/hostname`, the SSH keys of `instance/attributes/ssh-keys` and, unless the
//! instance sets `block-project-ssh-keys` to true, `project/attributes/ssh-keys` (lines
//! `USER:KEY`; all keys go to one list, the user names are dropped), and
//! `instance/attributes/user-data`.

use super::{CloudError, IMDS, Probe, first, optional, text};
use crate::found::{Found, clean_hostname, key_lines};
use crate::http::{Client, Request};

const BASE: &str = "/computeMetadata/v1/";

fn request(path: &str) -> Request {
    Request::get(IMDS, &format!("{BASE}{path}")).header("Metadata-Flavor", "Google")
}

fn from_google(r: &crate::http::Response) -> bool {
    r.header("Metadata-Flavor") == Some("Google")
}

/// Read the server's metadata.
pub fn fetch(client: &Client) -> Result<Probe, CloudError> {
    let first_request = request("instance/hostname");
    let answer = match first(client, &first_request)? {
        Ok(r) => r,
        Err(probe) => return Ok(probe),
    };
    if answer.status != 200 || !from_google(&answer) {
        return Ok(Probe::NotThis);
    }
    let hostname = answer.text();
    let get = |path: &str| optional(client, &request(path));
    let mut lines = Vec::new();
    if let Some(keys) = text(get("instance/attributes/ssh-keys")?) {
        lines.push(keys);
    }
    let blocked = text(get("instance/attributes/block-project-ssh-keys")?)
        .is_some_and(|b| b.eq_ignore_ascii_case("true"));
    if !blocked && let Some(keys) = text(get("project/attributes/ssh-keys")?) {
        lines.push(keys);
    }
    let userdata = get("instance/attributes/user-data")?.filter(|d| !d.is_empty());
    Ok(Probe::Found(Found {
        provider: "gce",
        via: "metadata server".into(),
        hostname: clean_hostname(&hostname),
        ssh_keys: key_lines(lines.iter().flat_map(|l| l.lines()).filter_map(key_of)),
        userdata,
        report_ready: false,
    }))
}

/// The key of a `USER:KEY` line.
fn key_of(line: &str) -> Option<&str> {
    let (user, key) = line.trim().split_once(':')?;
    (!user.is_empty() && !user.contains(char::is_whitespace)).then_some(key.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lose_their_user_names() {
        assert_eq!(
            key_of("alice:ssh-ed25519 AAAA alice@host"),
            Some("ssh-ed25519 AAAA alice@host")
        );
        assert_eq!(
            key_of(" bob:ecdsa-sha2-nistp256 BBBB google-ssh {\"userName\":\"bob\"} "),
            Some("ecdsa-sha2-nistp256 BBBB google-ssh {\"userName\":\"bob\"}")
        );
        assert_eq!(key_of("ssh-rsa AAAA no-user"), None);
        assert_eq!(key_of(":ssh-rsa AAAA"), None);
    }
}
