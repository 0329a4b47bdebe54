//! Command lines in the style of Go's `flag` package, which LinuxKit's tools use: `-name
//! value`, `-name=value`, `--name value`, boolean `-name`, then positional arguments.

use std::collections::BTreeMap;

/// A parsed command line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Flags given a value, by name (a later one wins).
    pub values: BTreeMap<String, String>,
    /// Boolean flags given.
    pub switches: Vec<String>,
    /// Positional arguments.
    pub args: Vec<String>,
}

impl Parsed {
    /// A value flag.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// Whether a boolean flag was given.
    pub fn switch(&self, name: &str) -> bool {
        self.switches.iter().any(|s| s == name)
    }
}

/// Parse `args` knowing the flags that take a value (`valued`) and the boolean ones
/// (`switches`); an unknown flag or a missing value is a one-line error.
pub fn parse<I: IntoIterator<Item = String>>(
    args: I,
    valued: &[&str],
    switches: &[&str],
) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--" {
            parsed.args.extend(args.by_ref());
            break;
        }
        let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
            parsed.args.push(arg);
            continue;
        };
        if flag.is_empty() {
            parsed.args.push(arg);
            continue;
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (flag, None),
        };
        if valued.contains(&name) {
            let value = match inline {
                Some(v) => v,
                None => args
                    .next()
                    .ok_or_else(|| format!("flag -{name} needs a value"))?,
            };
            parsed.values.insert(name.to_string(), value);
        } else if switches.contains(&name) {
            match inline.as_deref() {
                None | Some("true") => parsed.switches.push(name.to_string()),
                Some("false") => parsed.switches.retain(|s| s != name),
                Some(v) => return Err(format!("flag -{name}: {v:?} is not true or false")),
            }
        } else {
            return Err(format!("unknown flag -{name}"));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(line: &str) -> Result<Parsed, String> {
        parse(
            line.split_whitespace().map(String::from),
            &["label", "type"],
            &["force", "verbose"],
        )
    }

    #[test]
    fn go_style_flags_are_read() {
        let parsed = p("-label data --type=ext4 -force /dev/vdb").unwrap();
        assert_eq!(parsed.value("label"), Some("data"));
        assert_eq!(parsed.value("type"), Some("ext4"));
        assert!(parsed.switch("force"));
        assert!(!parsed.switch("verbose"));
        assert_eq!(parsed.args, ["/dev/vdb"]);
        assert!(!p("-force=false").unwrap().switch("force"));
        assert_eq!(p("-- -label").unwrap().args, ["-label"]);
    }

    #[test]
    fn mistakes_are_one_line() {
        assert_eq!(p("-size 1G").unwrap_err(), "unknown flag -size");
        assert_eq!(p("-label").unwrap_err(), "flag -label needs a value");
        assert_eq!(
            p("-force=maybe").unwrap_err(),
            "flag -force: \"maybe\" is not true or false"
        );
    }
}
