//! A service's restart policy, spelt `always`, `on-failure` or `no`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A service's `restart` policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Restart {
    /// Restart whenever it exits (the default).
    #[default]
    Always,
    /// Restart when it exits with a failure (non-zero status or a signal).
    OnFailure,
    /// Never restart.
    No,
}

impl Restart {
    /// Every policy, as written.
    pub const VALUES: [&'static str; 3] = ["always", "on-failure", "no"];

    /// The policy as written in the spec and in `supervise.json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Restart::Always => "always",
            Restart::OnFailure => "on-failure",
            Restart::No => "no",
        }
    }

    /// Parse a policy (exactly as written: `always`, `on-failure`, `no`).
    pub fn parse(text: &str) -> Result<Restart, String> {
        match text {
            "always" => Ok(Restart::Always),
            "on-failure" => Ok(Restart::OnFailure),
            "no" => Ok(Restart::No),
            _ => Err(format!(
                "restart {text:?} is not one of {}",
                Restart::VALUES.join(", ")
            )),
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Restart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Restart;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "one of {}", Restart::VALUES.join(", "))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Restart, E> {
                Restart::parse(v).map_err(E::custom)
            }
        }
        // Ask for a string: a YAML reader hands over the scalar as written, so `no` stays the
        // word instead of becoming a YAML 1.1 boolean.
        d.deserialize_string(V)
    }
}

impl Serialize for Restart {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
