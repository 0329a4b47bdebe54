//! Supervision keys: how the image's init runs a container, set in the spec only (never in an
//! image label). `timeout` (onboot and onshutdown entries): a duration after which the init
//! kills the container and goes on. `restart` (services): `always` (default), `on-failure` or
//! `no`. `dependsOn` (services): services started first; unknown names, a service naming
//! itself, a name given twice and cycles are errors.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::load::{LoadedSpec, SpecError};
use super::node::{entry_error, unit_loc};
use super::{ImageSpec, Loc};

/// The forms a duration may take, for messages.
const DURATION_FORMS: &str =
    "whole seconds (30) or numbers with units ms, s, m, h (500ms, 30s, 2m, 1h, 1m30s)";

/// A `timeout`: a positive duration in whole milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timeout {
    millis: u64,
}

impl Timeout {
    /// A timeout of `millis` milliseconds (`None` for zero).
    pub fn from_millis(millis: u64) -> Option<Timeout> {
        (millis > 0).then_some(Timeout { millis })
    }

    /// Parse `30` (seconds), `500ms`, `30s`, `2m`, `1h` or a combination such as `1m30s`.
    pub fn parse(text: &str) -> Result<Timeout, String> {
        let bad = || format!("timeout {text:?} is not a duration: give {DURATION_FORMS}");
        let s = text.trim();
        if s.is_empty() {
            return Err(bad());
        }
        if s.bytes().all(|b| b.is_ascii_digit()) {
            let secs: u64 = s.parse().map_err(|_| too_large(text))?;
            return Timeout::seconds(secs, text);
        }
        let mut millis: u64 = 0;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            let letters = rest[digits..]
                .bytes()
                .take_while(u8::is_ascii_alphabetic)
                .count();
            if digits == 0 || letters == 0 {
                return Err(bad());
            }
            let number: u64 = rest[..digits].parse().map_err(|_| too_large(text))?;
            let unit: u64 = match &rest[digits..digits + letters] {
                "ms" => 1,
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                _ => return Err(bad()),
            };
            millis = number
                .checked_mul(unit)
                .and_then(|n| millis.checked_add(n))
                .ok_or_else(|| too_large(text))?;
            rest = &rest[digits + letters..];
        }
        Timeout::from_millis(millis).ok_or_else(|| zero(text))
    }

    fn seconds(secs: u64, text: &str) -> Result<Timeout, String> {
        let millis = secs.checked_mul(1_000).ok_or_else(|| too_large(text))?;
        Timeout::from_millis(millis).ok_or_else(|| zero(text))
    }

    /// The duration in milliseconds.
    pub fn as_millis(self) -> u64 {
        self.millis
    }

    /// The duration in seconds (`0.5` for `500ms`), as written to `supervise.json`.
    pub fn as_secs_f64(self) -> f64 {
        self.millis as f64 / 1_000.0
    }

    /// The duration.
    pub fn duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

fn zero(text: &str) -> String {
    format!("timeout {text:?} must be longer than zero")
}

fn too_large(text: &str) -> String {
    format!("timeout {text:?} is too large")
}

/// The shortest form: `1h`, `1m30s`, `500ms`, `1s500ms`.
impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut left = self.millis;
        for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if left >= size {
                write!(f, "{}{unit}", left / size)?;
                left %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Timeout;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration: {DURATION_FORMS}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Timeout, E> {
                Timeout::seconds(v, &v.to_string()).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Timeout, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(zero(&v.to_string()))),
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Timeout, E> {
                Err(E::custom(format!(
                    "timeout {v} is not a duration: give {DURATION_FORMS}"
                )))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Timeout, E> {
                Timeout::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Timeout {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A service's `restart` policy: the bundle contract's, so the spec's spelling is the one
/// `supervise.json` carries.
pub use osbuild_bundle::Restart;

/// For the supervision keys: a key that is present must hold a value (`timeout: ~` is an
/// error, not an unset key).
pub(super) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d)?
        .map(Some)
        .ok_or_else(|| de::Error::custom("the key is given without a value"))
}

/// The supervision keys set in `c` (a label may set none: they come from the spec only).
pub(super) fn set_keys(c: &ImageSpec) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if c.timeout.is_some() {
        keys.push("timeout");
    }
    if c.restart.is_some() {
        keys.push("restart");
    }
    if c.depends_on.is_some() {
        keys.push("dependsOn");
    }
    keys
}

/// Check that the supervision keys of entry `key` (`onboot[2]`) of `section` belong there.
pub(super) fn check_section(
    loaded: &LoadedSpec,
    c: &ImageSpec,
    section: &str,
    key: &str,
) -> Result<(), SpecError> {
    let file = loaded.file(c.file);
    let misplaced = |field: &str, loc: Option<Loc<()>>, allowed: &str| {
        let key = format!("{key}.{field}");
        let message = format!("`{field}` is allowed only in {allowed}, not in `{section}`");
        entry_error(file, c, loc, key, message)
    };
    if section == "services" {
        if let Some(t) = &c.timeout {
            return Err(misplaced(
                "timeout",
                Some(unit_loc(t)),
                "`onboot` and `onshutdown`",
            ));
        }
    } else {
        if let Some(r) = &c.restart {
            return Err(misplaced("restart", Some(unit_loc(r)), "`services`"));
        }
        if let Some(deps) = &c.depends_on {
            let first = deps.first().map(unit_loc);
            return Err(misplaced("dependsOn", first, "`services`"));
        }
    }
    Ok(())
}

/// Check every `dependsOn` of the services: each names another service, once, and the
/// dependencies have no cycle (reported as `a -> b -> a` at the first service of the cycle
/// in spec order, on its entry naming the next one).
pub(super) fn check_dependencies(loaded: &LoadedSpec) -> Result<(), SpecError> {
    let services = &loaded.spec.services;
    let index: BTreeMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name(), i))
        .collect();
    let others: BTreeMap<&str, &str> = [
        ("onboot", &loaded.spec.onboot),
        ("onshutdown", &loaded.spec.onshutdown),
    ]
    .into_iter()
    .flat_map(|(section, list)| list.iter().map(move |c| (c.name(), section)))
    .collect();
    // edges[i]: (service index, position in dependsOn) of each dependency of service i.
    let mut edges: Vec<Vec<(usize, usize)>> = vec![Vec::new(); services.len()];
    for (i, c) in services.iter().enumerate() {
        let file = loaded.file(c.file);
        for (j, dep) in c.depends_on.iter().flatten().enumerate() {
            let key = format!("services[{i}].dependsOn[{j}]");
            let name = dep.value.as_str();
            if name == c.name() {
                return Err(SpecError::at(
                    file,
                    dep,
                    key,
                    format!("service {name:?} cannot depend on itself"),
                ));
            }
            let Some(&target) = index.get(name) else {
                let message = match others.get(name) {
                    Some(section) => format!(
                        "{name:?} is an {section} container, not a service (only services can be depended on)"
                    ),
                    None => format!("{name:?} is not a service of this spec"),
                };
                return Err(SpecError::at(file, dep, key, message));
            };
            if let Some((_, first)) = edges[i].iter().find(|(t, _)| *t == target) {
                return Err(SpecError::at(
                    file,
                    dep,
                    key,
                    format!("{name:?} is already listed (dependsOn[{first}])"),
                ));
            }
            edges[i].push((target, j));
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        let start = cycle[0];
        let next = cycle[1];
        let c = &services[start];
        let (_, j) = edges[start]
            .iter()
            .find(|(t, _)| *t == next)
            .copied()
            .unwrap_or((next, 0));
        let names: Vec<&str> = cycle.iter().map(|&i| services[i].name()).collect();
        let key = format!("services[{start}].dependsOn[{j}]");
        let message = format!("dependency cycle: {}", names.join(" -> "));
        let file = loaded.file(c.file);
        let dep = c.depends_on.as_ref().and_then(|d| d.get(j)).map(unit_loc);
        return Err(entry_error(file, c, dep, key, message));
    }
    Ok(())
}

/// A cycle of the graph `edges` as the list of its nodes, first node repeated at the end and
/// rotated to start at its lowest index; the cycle found is the same for the same graph.
fn find_cycle(edges: &[Vec<(usize, usize)>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        OnStack,
        Done,
    }
    let mut state = vec![State::New; edges.len()];
    for root in 0..edges.len() {
        if state[root] != State::New {
            continue;
        }
        // Depth-first, iteratively: the path from `root` and, per node, the next edge to try.
        let mut path: Vec<(usize, usize)> = vec![(root, 0)];
        state[root] = State::OnStack;
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            match edges[node].get(*next) {
                Some(&(target, _)) => {
                    *next += 1;
                    match state[target] {
                        State::New => {
                            state[target] = State::OnStack;
                            path.push((target, 0));
                        }
                        State::OnStack => {
                            let from = path.iter().position(|(n, _)| *n == target)?;
                            let mut cycle: Vec<usize> =
                                path[from..].iter().map(|(n, _)| *n).collect();
                            let lowest = (0..cycle.len()).min_by_key(|&k| cycle[k])?;
                            cycle.rotate_left(lowest);
                            cycle.push(cycle[0]);
                            return Some(cycle);
                        }
                        State::Done => {}
                    }
                }
                None => {
                    state[node] = State::Done;
                    path.pop();
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_combinations() {
        for (text, millis) in [
            ("30", 30_000),
            ("500ms", 500),
            ("30s", 30_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("1m30s", 90_000),
            ("1h2m3s4ms", 3_723_004),
            (" 5s ", 5_000),
        ] {
            assert_eq!(Timeout::parse(text).unwrap().as_millis(), millis, "{text}");
        }
        assert_eq!(Timeout::parse("500ms").unwrap().as_secs_f64(), 0.5);
        for bad in [
            "", "s", "x5s", "5x", "5 s", "1.5s", "-5s", "5S", "5sec", "m5",
        ] {
            let e = Timeout::parse(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
        assert_eq!(
            Timeout::parse("0s").unwrap_err(),
            "timeout \"0s\" must be longer than zero"
        );
        assert!(
            Timeout::parse("0")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(
            Timeout::parse("0ms0s")
                .unwrap_err()
                .contains("longer than zero")
        );
        assert!(
            Timeout::parse("99999999999999999999h")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            Timeout::parse("18446744073709551615")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn durations_print_in_their_shortest_form_and_read_back() {
        for (text, shown) in [
            ("90", "1m30s"),
            ("500ms", "500ms"),
            ("1500ms", "1s500ms"),
            ("60m", "1h"),
            ("1h0m1ms", "1h1ms"),
        ] {
            let t = Timeout::parse(text).unwrap();
            assert_eq!(t.to_string(), shown);
            assert_eq!(Timeout::parse(shown).unwrap(), t);
        }
    }

    #[derive(Debug, Deserialize)]
    struct T {
        t: Timeout,
    }

    #[test]
    fn durations_deserialise_from_numbers_and_strings() {
        let t: T = serde_saphyr::from_str("t: 30").unwrap();
        assert_eq!(t.t.as_millis(), 30_000);
        let t: T = serde_saphyr::from_str("t: 250ms").unwrap();
        assert_eq!(t.t.as_millis(), 250);
        let t: T = serde_json::from_str(r#"{"t":"1m"}"#).unwrap();
        assert_eq!(t.t.as_millis(), 60_000);
        for bad in ["t: 0", "t: -3", "t: 0.5", "t: soon", "t: true", "t: [1]"] {
            assert!(serde_saphyr::from_str::<T>(bad).is_err(), "{bad}");
        }
        let e = serde_saphyr::from_str::<T>("t: -3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout \"-3\" must be longer than zero"), "{e}");
        let e = serde_saphyr::from_str::<T>("t: 0.5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("timeout 0.5 is not a duration"), "{e}");
    }

    #[derive(Debug, Deserialize)]
    struct R {
        r: Restart,
    }

    #[test]
    fn restart_policies_are_read_as_written() {
        for (text, want) in [
            ("r: always", Restart::Always),
            ("r: on-failure", Restart::OnFailure),
            ("r: no", Restart::No),
            ("r: \"no\"", Restart::No),
        ] {
            assert_eq!(serde_saphyr::from_str::<R>(text).unwrap().r, want, "{text}");
        }
        for bad in ["r: sometimes", "r: false", "r: Always", "r: 1"] {
            let e = serde_saphyr::from_str::<R>(bad).unwrap_err().to_string();
            assert!(
                e.contains("is not one of always, on-failure, no"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn cycles_are_found_deterministically() {
        let g = |edges: &[&[usize]]| -> Vec<Vec<(usize, usize)>> {
            edges
                .iter()
                .map(|e| e.iter().enumerate().map(|(j, &t)| (t, j)).collect())
                .collect()
        };
        assert_eq!(find_cycle(&g(&[&[1], &[2], &[]])), None);
        assert_eq!(find_cycle(&g(&[&[1, 2], &[2], &[]])), None, "a diamond");
        assert_eq!(find_cycle(&g(&[&[1], &[0]])), Some(vec![0, 1, 0]));
        assert_eq!(
            find_cycle(&g(&[&[], &[2], &[3], &[1]])),
            Some(vec![1, 2, 3, 1])
        );
        assert_eq!(
            find_cycle(&g(&[&[3], &[], &[], &[2], &[]])),
            None,
            "a chain reached from a root"
        );
        assert_eq!(
            find_cycle(&g(&[&[2], &[], &[3], &[2]])),
            Some(vec![2, 3, 2]),
            "rotated to the lowest index of the cycle"
        );
    }

    /// The error of loading `yaml` as `s.yml`.
    fn err(yaml: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yml");
        std::fs::write(&path, yaml).unwrap();
        let msg = crate::spec::load(std::slice::from_ref(&path))
            .unwrap_err()
            .to_string();
        msg.replace(&path.display().to_string(), "s.yml")
    }

    fn load(yaml: &str) -> crate::spec::Spec {
        crate::spec::load_str(yaml, std::path::Path::new("s.yml"), 0).unwrap()
    }

    #[test]
    fn keys_load_where_they_belong() {
        let spec = load(
            "onboot:\n  - {name: a, image: x, timeout: 30s}\nonshutdown:\n  - {name: b, image: x, timeout: 5}\nservices:\n  - {name: c, image: x, restart: on-failure, dependsOn: [d]}\n  - {name: d, image: x, restart: no}\n",
        );
        assert_eq!(
            spec.onboot[0].timeout.as_ref().unwrap().value.as_millis(),
            30_000
        );
        assert_eq!(
            spec.onshutdown[0]
                .timeout
                .as_ref()
                .unwrap()
                .value
                .as_millis(),
            5_000
        );
        assert_eq!(
            spec.services[0].restart.as_ref().unwrap().value,
            Restart::OnFailure
        );
        assert_eq!(
            spec.services[1].restart.as_ref().unwrap().value,
            Restart::No
        );
        assert_eq!(spec.services[0].depends_on.as_ref().unwrap()[0].value, "d");
    }

    #[test]
    fn bad_values_are_located() {
        assert_eq!(
            err("onboot:\n  - name: a\n    image: b\n    timeout: soon\n"),
            "s.yml:4:14: onboot[0].timeout: timeout \"soon\" is not a duration: give whole seconds (30) or numbers with units ms, s, m, h (500ms, 30s, 2m, 1h, 1m30s)"
        );
        assert_eq!(
            err("onboot:\n  - name: a\n    image: b\n    timeout: 0\n"),
            "s.yml:4:14: onboot[0].timeout: timeout \"0\" must be longer than zero"
        );
        assert_eq!(
            err("onshutdown:\n  - name: a\n    image: b\n    timeout: -1m\n"),
            "s.yml:4:14: onshutdown[0].timeout: timeout \"-1m\" is not a duration: give whole seconds (30) or numbers with units ms, s, m, h (500ms, 30s, 2m, 1h, 1m30s)"
        );
        let e = err("onboot:\n  - name: a\n    image: b\n    timeout: -5\n");
        assert_eq!(
            e,
            "s.yml:4:14: onboot[0].timeout: timeout \"-5\" must be longer than zero"
        );
        assert_eq!(
            err("services:\n  - name: a\n    image: b\n    restart: sometimes\n"),
            "s.yml:4:14: services[0].restart: restart \"sometimes\" is not one of always, on-failure, no"
        );
        let e = err("services:\n  - name: a\n    image: b\n    dependsOn: c\n");
        assert!(e.starts_with("s.yml:4:16: services[0].dependsOn: "), "{e}");
        // A key given without a value is an error, not an unset key.
        for key in ["timeout", "restart", "dependsOn"] {
            let section = if key == "timeout" {
                "onboot"
            } else {
                "services"
            };
            let e = err(&format!(
                "{section}:\n  - name: a\n    image: b\n    {key}:\n"
            ));
            assert!(e.starts_with("s.yml:4:"), "{e}");
            assert!(e.contains(&format!("{section}[0].{key}: ")), "{e}");
        }
    }

    #[test]
    fn keys_in_the_wrong_section_say_where_they_belong() {
        assert_eq!(
            err("services:\n  - name: a\n    image: b\n    timeout: 5s\n"),
            "s.yml:4:14: services[0].timeout: `timeout` is allowed only in `onboot` and `onshutdown`, not in `services`"
        );
        assert_eq!(
            err("onboot:\n  - name: a\n    image: b\n    restart: always\n"),
            "s.yml:4:14: onboot[0].restart: `restart` is allowed only in `services`, not in `onboot`"
        );
        assert_eq!(
            err("onshutdown:\n  - name: a\n    image: b\n    dependsOn: [c]\n"),
            "s.yml:4:17: onshutdown[0].dependsOn: `dependsOn` is allowed only in `services`, not in `onshutdown`"
        );
        // An empty list has no place of its own: the entry's name is given.
        assert_eq!(
            err("onboot:\n  - name: a\n    image: b\n    dependsOn: []\n"),
            "s.yml:2:11: onboot[0].dependsOn: `dependsOn` is allowed only in `services`, not in `onboot`"
        );
    }

    #[test]
    fn dependencies_must_be_other_services_without_cycles() {
        let head = "onboot:\n  - {name: setup, image: x}\nservices:\n";
        assert_eq!(
            err(&format!(
                "{head}  - name: a\n    image: x\n    dependsOn: [ghost]\n"
            )),
            "s.yml:6:17: services[0].dependsOn[0]: \"ghost\" is not a service of this spec"
        );
        assert_eq!(
            err(&format!(
                "{head}  - name: a\n    image: x\n    dependsOn: [setup]\n"
            )),
            "s.yml:6:17: services[0].dependsOn[0]: \"setup\" is an onboot container, not a service (only services can be depended on)"
        );
        assert_eq!(
            err(&format!(
                "{head}  - name: a\n    image: x\n    dependsOn: [a]\n"
            )),
            "s.yml:6:17: services[0].dependsOn[0]: service \"a\" cannot depend on itself"
        );
        assert_eq!(
            err(&format!(
                "{head}  - {{name: a, image: x, dependsOn: [b, b]}}\n  - {{name: b, image: x}}\n"
            )),
            "s.yml:4:40: services[0].dependsOn[1]: \"b\" is already listed (dependsOn[0])"
        );
        assert_eq!(
            err(&format!(
                "{head}  - name: a\n    image: x\n    dependsOn: [b]\n  - name: b\n    image: x\n    dependsOn: [a]\n"
            )),
            "s.yml:6:17: services[0].dependsOn[0]: dependency cycle: a -> b -> a"
        );
        // The cycle is named from its first service in spec order, whichever closes it.
        assert_eq!(
            err(&format!(
                "{head}  - {{name: w, image: x, dependsOn: [b]}}\n  - {{name: a, image: x, dependsOn: [c]}}\n  - {{name: b, image: x, dependsOn: [c]}}\n  - {{name: c, image: x, dependsOn: [a]}}\n"
            )),
            "s.yml:5:37: services[1].dependsOn[0]: dependency cycle: a -> c -> a"
        );
        // A diamond is fine.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.yml");
        std::fs::write(
            &path,
            format!("{head}  - {{name: a, image: x, dependsOn: [b, c]}}\n  - {{name: b, image: x, dependsOn: [d]}}\n  - {{name: c, image: x, dependsOn: [d]}}\n  - {{name: d, image: x}}\n"),
        )
        .unwrap();
        crate::spec::load(&[path]).unwrap();
    }

    #[test]
    fn merged_files_keep_the_keys_with_their_entries() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.yml");
        let b = dir.path().join("b.yml");
        std::fs::write(
            &a,
            "onboot:\n  - {name: o, image: x, timeout: 2m}\nservices:\n  - {name: db, image: x, restart: on-failure}\n",
        )
        .unwrap();
        std::fs::write(
            &b,
            "services:\n  - name: web\n    image: x\n    dependsOn: [db]\n",
        )
        .unwrap();
        let l = crate::spec::load(&[a.clone(), b.clone()]).unwrap();
        assert_eq!(
            l.spec.onboot[0].timeout.as_ref().unwrap().value.as_millis(),
            120_000
        );
        assert_eq!(
            l.spec.services[0].restart.as_ref().unwrap().value,
            Restart::OnFailure
        );
        assert_eq!(
            l.spec.services[1].depends_on.as_ref().unwrap()[0].value,
            "db"
        );
        // Errors point into the file that wrote the key.
        std::fs::write(
            &b,
            "services:\n  - name: web\n    image: x\n    dependsOn: [ghost]\n",
        )
        .unwrap();
        let e = crate::spec::load(&[a.clone(), b.clone()])
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            format!(
                "{}:4:17: services[1].dependsOn[0]: \"ghost\" is not a service of this spec",
                b.display()
            )
        );
        std::fs::write(
            &b,
            "services:\n  - {name: web, image: x, dependsOn: [db]}\n",
        )
        .unwrap();
        std::fs::write(
            &a,
            "services:\n  - {name: db, image: x, dependsOn: [web]}\n",
        )
        .unwrap();
        let e = crate::spec::load(&[a.clone(), b]).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}:2:38: services[0].dependsOn[0]: dependency cycle: db -> web -> db",
                a.display()
            )
        );
    }

    #[test]
    fn keys_round_trip_through_yaml_and_json() {
        let spec = load(
            "onboot:\n  - {name: a, image: x, timeout: 90}\nservices:\n  - {name: c, image: x, restart: no, dependsOn: [d]}\n  - {name: d, image: x, restart: always}\n",
        );
        let yaml = spec.to_yaml().unwrap();
        assert!(yaml.contains("timeout: 1m30s"), "{yaml}");
        assert!(
            yaml.contains("restart: \"no\""),
            "quoted for YAML 1.1 readers: {yaml}"
        );
        let back = load(&yaml);
        assert_eq!(back.to_yaml().unwrap(), yaml);
        assert_eq!(
            back.onboot[0].timeout.as_ref().unwrap().value.as_millis(),
            90_000
        );
        assert_eq!(
            back.services[0].restart.as_ref().unwrap().value,
            Restart::No
        );
        assert_eq!(
            back.services[1].restart.as_ref().unwrap().value,
            Restart::Always
        );
        let json = back.to_json().unwrap();
        let from_json: crate::spec::Spec = serde_json::from_str(&json).unwrap();
        assert_eq!(from_json.to_yaml().unwrap(), yaml);
    }
}
