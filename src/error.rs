//! How an error reads on one line: each error in the chain says what failed and where, and
//! leaves the why to its source, so the chain joined by ": " says everything once.

use std::error::Error;

/// `e` and its sources, outermost first, joined by ": ".
pub fn chain(e: &dyn Error) -> String {
    let mut line = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        line.push_str(": ");
        line.push_str(&s.to_string());
        source = s.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing {path}")]
    struct Write {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn the_chain_says_each_part_once_outermost_first() {
        let e = Write {
            path: "out/x-initrd.img".into(),
            source: std::io::Error::from_raw_os_error(28),
        };
        assert_eq!(
            chain(&e),
            format!(
                "writing out/x-initrd.img: {}",
                std::io::Error::from_raw_os_error(28)
            )
        );
        assert!(
            chain(&e).contains("No space left on device"),
            "{}",
            chain(&e)
        );
    }
}
