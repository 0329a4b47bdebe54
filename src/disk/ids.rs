//! Identifiers derived from content: disk and partition GUIDs, volume serials. The same inputs
//! give the same identifiers, so images are byte-reproducible, and different images get
//! different ones.

use sha2::{Digest, Sha256};

/// A content digest that identifiers are derived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seed([u8; 32]);

impl Seed {
    /// The seed of `parts`, hashed in order with their lengths (so `["ab","c"]` and
    /// `["a","bc"]` differ).
    pub fn of(parts: &[&[u8]]) -> Seed {
        let mut h = Sha256::new();
        for p in parts {
            h.update((p.len() as u64).to_le_bytes());
            h.update(p);
        }
        Seed(h.finalize().into())
    }

    fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(purpose.as_bytes());
        h.finalize().into()
    }

    /// A GUID for `purpose` (RFC 9562 version 8, variant 1), as a GPT stores it.
    pub fn guid(&self, purpose: &str) -> uuid::Uuid {
        let d = self.derive(purpose);
        let mut b = [0u8; 16];
        b.copy_from_slice(&d[..16]);
        uuid::Builder::from_custom_bytes(b).into_uuid()
    }

    /// A 32-bit serial for `purpose` (FAT volume id, MBR disk signature), never zero.
    pub fn serial(&self, purpose: &str) -> u32 {
        let d = self.derive(purpose);
        u32::from_le_bytes([d[0], d[1], d[2], d[3]]).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_the_content_and_the_purpose() {
        let a = Seed::of(&[b"ab", b"c"]);
        assert_eq!(a, Seed::of(&[b"ab", b"c"]));
        assert_ne!(a, Seed::of(&[b"a", b"bc"]));
        assert_ne!(a.guid("disk"), a.guid("esp"));
        assert_eq!(a.guid("disk"), Seed::of(&[b"ab", b"c"]).guid("disk"));
        assert_eq!(a.guid("disk").get_version_num(), 8);
        assert_ne!(a.serial("fat"), 0);
    }
}
