//! Azure's WireServer (168.63.129.16) and the provisioning ready report: Azure considers a VM
//! created from a generalized image provisioned only once the VM says it is ready. The VM
//! reads its goal state, `GET /machine/?comp=goalstate` with `x-ms-version: 2012-11-30`, an
//! XML document giving the `Incarnation`, the `Container`'s `ContainerId` and its
//! `RoleInstance`'s `InstanceId`; then `POST /machine?comp=health` with a `Health` document
//! that repeats the three and says `<State>Ready</State>` (`Content-Type: text/xml`).

use std::thread::sleep;
use std::time::{Duration, Instant};

use super::CloudError;
use crate::http::{Client, Request};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The WireServer's address.
pub const WIRESERVER: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(168, 63, 129, 16), 80));
/// The protocol version both requests name.
const VERSION: &str = "2012-11-30";
/// Who reports.
const AGENT: &str = "osbuild-metadata";
/// Each request's bounds.
const CLIENT: Client = Client {
    connect: Duration::from_secs(2),
    total: Duration::from_secs(10),
};
/// Between attempts (the goal state may not be there the moment the VM boots).
const RETRY: Duration = Duration::from_secs(1);

/// The goal state's identifiers, which the report repeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoalState {
    /// `Incarnation`.
    pub incarnation: String,
    /// `Container/ContainerId`.
    pub container_id: String,
    /// `Container/RoleInstanceList/RoleInstance/InstanceId`.
    pub instance_id: String,
}

/// Read the goal state and report `Ready`, trying again for up to `patience`; returns the
/// goal state reported against.
pub fn report_ready(patience: Duration) -> Result<GoalState, CloudError> {
    let start = Instant::now();
    loop {
        match try_report() {
            Ok(goal) => return Ok(goal),
            Err(_) if start.elapsed() + RETRY < patience => sleep(RETRY),
            Err(e) => return Err(e),
        }
    }
}

fn try_report() -> Result<GoalState, CloudError> {
    let get = Request::get(WIRESERVER, "/machine/?comp=goalstate")
        .header("x-ms-version", VERSION)
        .header("x-ms-agent-name", AGENT);
    let answer = CLIENT.send(&get).map_err(|source| CloudError::Http {
        request: get.describe(),
        source,
    })?;
    if answer.status != 200 {
        return Err(CloudError::Status {
            request: get.describe(),
            status: answer.status,
        });
    }
    let goal = parse_goal_state(&String::from_utf8_lossy(&answer.body)).ok_or_else(|| {
        CloudError::Invalid {
            request: get.describe(),
            why: "no Incarnation, ContainerId or RoleInstance InstanceId".into(),
        }
    })?;
    let post = Request::new("POST", WIRESERVER, "/machine?comp=health")
        .header("x-ms-version", VERSION)
        .header("x-ms-agent-name", AGENT)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(health_report(&goal).into_bytes());
    let answer = CLIENT.send(&post).map_err(|source| CloudError::Http {
        request: post.describe(),
        source,
    })?;
    if !(200..300).contains(&answer.status) {
        return Err(CloudError::Status {
            request: post.describe(),
            status: answer.status,
        });
    }
    Ok(goal)
}

/// The text of the first `<tag>` element in `xml` (entities decoded), `None` when there is
/// none or it is empty.
fn element<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&close)?;
    Some(xml[start..start + len].trim()).filter(|t| !t.is_empty())
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// The identifiers of a goal state document.
pub fn parse_goal_state(xml: &str) -> Option<GoalState> {
    let container = element(xml, "Container")?;
    let role = element(container, "RoleInstance")?;
    let value = |within: &str, tag: &str| element(within, tag).map(unescape);
    Some(GoalState {
        incarnation: value(xml, "Incarnation")?,
        container_id: value(container, "ContainerId")?,
        instance_id: value(role, "InstanceId")?,
    })
}

/// The `Health` document saying the role instance of `goal` is ready.
pub fn health_report(goal: &GoalState) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <Health xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
         xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\">\n\
         <GoalStateIncarnation>{}</GoalStateIncarnation>\n\
         <Container>\n\
         <ContainerId>{}</ContainerId>\n\
         <RoleInstanceList>\n\
         <Role>\n\
         <InstanceId>{}</InstanceId>\n\
         <Health>\n\
         <State>Ready</State>\n\
         </Health>\n\
         </Role>\n\
         </RoleInstanceList>\n\
         </Container>\n\
         </Health>\n",
        escape(&goal.incarnation),
        escape(&goal.container_id),
        escape(&goal.instance_id),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOAL_STATE: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<GoalState xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:noNamespaceSchemaLocation="goalstate10.xsd">
  <Version>2012-11-30</Version>
  <Incarnation>3</Incarnation>
  <Machine>
    <ExpectedState>Started</ExpectedState>
    <StopRolesDeadlineHint>300000</StopRolesDeadlineHint>
  </Machine>
  <Container>
    <ContainerId>2b3c8a6e-0c31-4b2c-9c33-5b8b3c1d8f10</ContainerId>
    <RoleInstanceList>
      <RoleInstance>
        <InstanceId>7d2f4c5e-1b1a-4d2b-a3f1-0e7c8c9f2b11.vm-1</InstanceId>
        <State>Started</State>
        <Configuration>
          <HostingEnvironmentConfig>http://168.63.129.16:80/machine/x?comp=config</HostingEnvironmentConfig>
        </Configuration>
      </RoleInstance>
    </RoleInstanceList>
  </Container>
</GoalState>"#;

    #[test]
    fn goal_state_identifiers() {
        assert_eq!(
            parse_goal_state(GOAL_STATE),
            Some(GoalState {
                incarnation: "3".into(),
                container_id: "2b3c8a6e-0c31-4b2c-9c33-5b8b3c1d8f10".into(),
                instance_id: "7d2f4c5e-1b1a-4d2b-a3f1-0e7c8c9f2b11.vm-1".into(),
            })
        );
        assert_eq!(
            parse_goal_state(&GOAL_STATE.replace("InstanceId", "Other")),
            None
        );
        assert_eq!(parse_goal_state("<GoalState/>"), None);
        assert_eq!(parse_goal_state(""), None);
    }

    #[test]
    fn the_report_repeats_the_goal_state_escaped() {
        let goal = GoalState {
            incarnation: "1".into(),
            container_id: "c&<id>".into(),
            instance_id: "i'd\"".into(),
        };
        let xml = health_report(&goal);
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Health "));
        assert!(xml.contains("<GoalStateIncarnation>1</GoalStateIncarnation>"));
        assert!(xml.contains("<ContainerId>c&amp;&lt;id&gt;</ContainerId>"));
        assert!(xml.contains("<InstanceId>i&apos;d&quot;</InstanceId>"));
        assert!(xml.contains("<State>Ready</State>"));
        // What the report says, read back, is the goal state.
        let back = GoalState {
            incarnation: element(&xml, "GoalStateIncarnation").map(unescape).unwrap(),
            container_id: element(&xml, "ContainerId").map(unescape).unwrap(),
            instance_id: element(&xml, "InstanceId").map(unescape).unwrap(),
        };
        assert_eq!(back, goal);
    }
}
