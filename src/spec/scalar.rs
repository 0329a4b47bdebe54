//! Scalars with LinuxKit's readings: ids that are numbers or container names, and octal modes
//! read from the text as written (`0600` and `"0600"` alike), never as YAML 1.2 decimals.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A user or group id: a number, or the name of a container (whose allocated id it means),
/// or `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdRef {
    /// A numeric id.
    Number(u32),
    /// A container name or `root`.
    Name(String),
}

impl<'de> Deserialize<'de> for IdRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IdRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a numeric id or a container name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IdRef, E> {
                u32::try_from(v)
                    .map(IdRef::Number)
                    .map_err(|_| E::custom(format!("id {v} is larger than 4294967295")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IdRef, E> {
                u32::try_from(v)
                    .map(IdRef::Number)
                    .map_err(|_| E::custom(format!("id {v} is not between 0 and 4294967295")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IdRef, E> {
                if v.is_empty() {
                    return Err(E::custom("empty id"));
                }
                Ok(match v.parse::<u32>() {
                    Ok(n) if v.bytes().all(|b| b.is_ascii_digit()) => IdRef::Number(n),
                    _ => IdRef::Name(v.to_string()),
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for IdRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IdRef::Number(n) => s.serialize_u32(*n),
            IdRef::Name(n) => s.serialize_str(n),
        }
    }
}

/// Permission bits written in octal (`"0644"`, `0644`, `"755"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(pub u32);

impl Mode {
    /// Parse octal text; at most `07777`.
    pub fn parse(text: &str) -> Result<Mode, String> {
        let digits = text.trim();
        if digits.is_empty()
            || digits.len() > 5
            || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
        {
            return Err(format!(
                "mode {text:?} is not an octal number such as \"0644\""
            ));
        }
        let value = u32::from_str_radix(digits, 8).map_err(|e| e.to_string())?;
        if value > 0o7777 {
            return Err(format!("mode {text:?} is larger than 07777"));
        }
        Ok(Mode(value))
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an octal mode such as \"0644\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Mode, E> {
                Mode::parse(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Mode, E> {
                // Only reached when the text was not kept; read its decimal digits as octal.
                Mode::parse(&v.to_string()).map_err(E::custom)
            }
        }
        // Ask for a string: the YAML reader hands over the scalar as written, so `0600`
        // keeps its leading zero instead of becoming the YAML 1.2 integer 600.
        d.deserialize_string(V)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{:04o}", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct M {
        mode: Mode,
        uid: IdRef,
    }

    #[test]
    fn modes_are_octal_however_written() {
        for (yaml, want) in [
            ("mode: 0600\nuid: 0", 0o600),
            ("mode: \"0644\"\nuid: 0", 0o644),
            ("mode: 755\nuid: 0", 0o755),
            ("mode: '4755'\nuid: 0", 0o4755),
        ] {
            let m: M = serde_saphyr::from_str(yaml).unwrap();
            assert_eq!(m.mode, Mode(want), "{yaml}");
        }
        for bad in [
            "mode: 0999\nuid: 0",
            "mode: rwx\nuid: 0",
            "mode: 77777\nuid: 0",
        ] {
            assert!(serde_saphyr::from_str::<M>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_numbers_or_names() {
        let m: M = serde_saphyr::from_str("mode: '0'\nuid: 100").unwrap();
        assert_eq!(m.uid, IdRef::Number(100));
        let m: M = serde_saphyr::from_str("mode: '0'\nuid: redis").unwrap();
        assert_eq!(m.uid, IdRef::Name("redis".into()));
        assert!(serde_saphyr::from_str::<M>("mode: '0'\nuid: -1").is_err());
    }
}
