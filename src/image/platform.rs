//! Target architectures and their names in OCI, in the kernel and in QEMU.

use std::fmt;
use std::str::FromStr;

/// An architecture osbuild builds images for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    /// x86-64.
    Amd64,
    /// 64-bit ARM.
    Arm64,
    /// IBM Z.
    S390x,
}

impl Arch {
    /// Every supported architecture.
    pub const ALL: [Arch; 3] = [Arch::Amd64, Arch::Arm64, Arch::S390x];

    /// The architecture of this machine (amd64 when it is none of the supported ones).
    pub fn host() -> Arch {
        match std::env::consts::ARCH {
            "aarch64" => Arch::Arm64,
            "s390x" => Arch::S390x,
            _ => Arch::Amd64,
        }
    }

    /// The OCI/Go name: `amd64`, `arm64`, `s390x`.
    pub fn oci(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
            Arch::S390x => "s390x",
        }
    }

    /// The kernel/QEMU name: `x86_64`, `aarch64`, `s390x`.
    pub fn uname(self) -> &'static str {
        match self {
            Arch::Amd64 => "x86_64",
            Arch::Arm64 => "aarch64",
            Arch::S390x => "s390x",
        }
    }
}

impl FromStr for Arch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            "s390x" => Ok(Arch::S390x),
            other => Err(format!(
                "unknown architecture {other:?}: use amd64, arm64 or s390x"
            )),
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.oci())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.oci().parse::<Arch>(), Ok(a));
            assert_eq!(a.uname().parse::<Arch>(), Ok(a));
        }
        assert!("riscv64".parse::<Arch>().unwrap_err().contains("riscv64"));
    }
}
