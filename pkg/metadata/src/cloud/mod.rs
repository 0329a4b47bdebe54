//! The clouds' metadata services, all on the link-local address 169.254.169.254: which to ask
//! first (the one DMI names), how long to wait for it, and how to tell "no service here"
//! (nothing accepts a connection: the others on the same address are not asked either) from
//! "another kind of service" (it answers, but not to this protocol: the next is asked).

mod aws;
mod azure;
pub mod dmi;
mod gce;
pub mod wireserver;

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::found::Found;
use crate::http::{Client, HttpError, Request, Response};

/// The metadata services' address.
pub const IMDS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(169, 254, 169, 254), 80));

/// For the service DMI names: it should be there, so give it time.
const PATIENT: Client = Client {
    connect: Duration::from_secs(2),
    total: Duration::from_secs(10),
};
/// For the others: a quick look.
const QUICK: Client = Client {
    connect: Duration::from_secs(1),
    total: Duration::from_secs(3),
};
/// Between connection attempts to the service DMI names.
const RETRY: Duration = Duration::from_millis(500);

/// A cloud whose metadata service this program speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    /// Amazon EC2 (IMDSv2, or IMDSv1 where tokens are not offered).
    Aws,
    /// Google Compute Engine.
    Gce,
    /// Microsoft Azure (IMDS, then the ready report to the WireServer).
    Azure,
}

impl Cloud {
    /// Every cloud, in the order they are asked when DMI names none.
    pub const ALL: [Cloud; 3] = [Cloud::Aws, Cloud::Gce, Cloud::Azure];

    /// The short name (`aws`, `gce`, `azure`).
    pub fn name(self) -> &'static str {
        match self {
            Cloud::Aws => "aws",
            Cloud::Gce => "gce",
            Cloud::Azure => "azure",
        }
    }

    fn fetch(self, client: &Client) -> Result<Probe, CloudError> {
        match self {
            Cloud::Aws => aws::fetch(client),
            Cloud::Gce => gce::fetch(client),
            Cloud::Azure => azure::fetch(client),
        }
    }
}

/// What asking one service gave.
#[derive(Debug)]
pub enum Probe {
    /// Its metadata.
    Found(Found),
    /// Nothing accepted the connection.
    Unreachable(HttpError),
    /// Something answered, but not as this service does.
    NotThis,
}

/// A service that answered, then failed.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// No answer to a request.
    #[error("{request}")]
    Http {
        /// The request, `METHOD url`.
        request: String,
        /// Why.
        #[source]
        source: HttpError,
    },
    /// An answer with an unexpected status.
    #[error("{request}: status {status}")]
    Status {
        /// The request.
        request: String,
        /// The status code.
        status: u16,
    },
    /// An answer that does not say what it should.
    #[error("{request}: {why}")]
    Invalid {
        /// The request.
        request: String,
        /// What is wrong with it.
        why: String,
    },
}

/// `error` and its sources, `: `-separated.
pub fn chain(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Send the first request of an exchange: the answer, or, when nothing accepted the
/// connection, the probe's result.
fn first(client: &Client, request: &Request) -> Result<Result<Response, Probe>, CloudError> {
    match client.send(request) {
        Ok(r) => Ok(Ok(r)),
        Err(e) if e.is_unreachable() => Ok(Err(Probe::Unreachable(e))),
        Err(source) => Err(CloudError::Http {
            request: request.describe(),
            source,
        }),
    }
}

/// Send `request`; the body of a 200 answer, `None` for 404, an error otherwise.
fn optional(client: &Client, request: &Request) -> Result<Option<Vec<u8>>, CloudError> {
    let r = client.send(request).map_err(|source| CloudError::Http {
        request: request.describe(),
        source,
    })?;
    match r.status {
        200 => Ok(Some(r.body)),
        404 => Ok(None),
        status => Err(CloudError::Status {
            request: request.describe(),
            status,
        }),
    }
}

/// Body text, white space trimmed; `None` when empty.
fn text(body: Option<Vec<u8>>) -> Option<String> {
    body.map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .filter(|t| !t.is_empty())
}

/// What asking the services gave.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The first service's metadata.
    pub found: Option<Found>,
    /// Services that answered, then failed.
    pub errors: Vec<(Cloud, CloudError)>,
    /// Why no service was reached, when none was.
    pub unreachable: Option<String>,
}

/// Ask the services of `order`, in order, until one gives its metadata. The first is waited
/// for up to `wait` when `patient` (DMI named it); the others get one quick try each. When
/// nothing accepts a connection to the address they share, the rest are not asked.
pub fn probe(order: &[Cloud], patient: bool, wait: Duration) -> Outcome {
    let mut outcome = Outcome::default();
    let start = Instant::now();
    for (i, &cloud) in order.iter().enumerate() {
        let client = if patient && i == 0 { PATIENT } else { QUICK };
        loop {
            match cloud.fetch(&client) {
                Ok(Probe::Found(found)) => {
                    outcome.found = Some(found);
                    return outcome;
                }
                Ok(Probe::Unreachable(_)) if patient && i == 0 && start.elapsed() < wait => {
                    sleep(RETRY);
                }
                Ok(Probe::Unreachable(e)) => {
                    outcome.unreachable = Some(chain(&e));
                    return outcome;
                }
                Ok(Probe::NotThis) => break,
                Err(e) => {
                    outcome.errors.push((cloud, e));
                    break;
                }
            }
        }
    }
    outcome
}

/// `order` with `first` moved to the front.
pub fn first_of(order: &[Cloud], first: Cloud) -> Vec<Cloud> {
    let mut out = vec![first];
    out.extend(order.iter().copied().filter(|&c| c != first));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_named_cloud_goes_first() {
        assert_eq!(
            first_of(&Cloud::ALL, Cloud::Azure),
            [Cloud::Azure, Cloud::Aws, Cloud::Gce]
        );
        assert_eq!(
            first_of(&[Cloud::Gce], Cloud::Aws),
            [Cloud::Aws, Cloud::Gce]
        );
    }

    #[test]
    fn error_chains_name_every_cause() {
        let e = CloudError::Http {
            request: "GET http://169.254.169.254:80/x".into(),
            source: HttpError::Malformed("no status line".into()),
        };
        assert_eq!(
            chain(&e),
            "GET http://169.254.169.254:80/x: malformed answer: no status line"
        );
    }
}
