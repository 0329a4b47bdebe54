//! Standard base64 (RFC 4648 section 4, `+` and `/`, `=` padding) decoding, for the user data
//! Azure's instance metadata service hands out encoded. White space (line breaks) is skipped.

/// The bytes `text` encodes; `None` when it is not base64.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let symbols: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let padding = symbols.iter().rev().take_while(|&&b| b == b'=').count();
    if !symbols.len().is_multiple_of(4) || padding > 2 {
        return None;
    }
    let body = &symbols[..symbols.len() - padding];
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for &b in body {
        let value = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Bits left over must be zero (a canonical encoding).
    (acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4648_test_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(
                decode(encoded).as_deref(),
                Some(plain.as_bytes()),
                "{encoded}"
            );
        }
    }

    #[test]
    fn all_bytes_and_line_breaks() {
        // 0x00..=0xff encoded by `base64` (GNU coreutils), wrapped at 76 columns.
        let wrapped = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4\n\
                       OTo7PD0+P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3Bx\n\
                       cnN0dXZ3eHl6e3x9fn+AgYKDhIWGh4iJiouMjY6PkJGSk5SVlpeYmZqbnJ2en6ChoqOkpaanqKmq\n\
                       q6ytrq+wsbKztLW2t7i5uru8vb6/wMHCw8TFxsfIycrLzM3Oz9DR0tPU1dbX2Nna29zd3t/g4eLj\n\
                       5OXm5+jp6uvs7e7v8PHy8/T19vf4+fr7/P3+/w==\n";
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(wrapped), Some(all));
    }

    #[test]
    fn not_base64() {
        for bad in ["Zg=", "Zg===", "Z===", "Zm9v!", "Zh==", "=Zg="] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }
}
