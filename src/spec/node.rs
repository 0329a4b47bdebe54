//! Where a whole mapping of the spec was written (`kernel:`, a container entry), kept so that
//! errors about what it lacks (`missing image`) can name a line and column too.

use std::path::Path;

use serde::{Deserialize, Deserializer};

use super::{ImageSpec, KernelSpec, Loc, SpecError};

/// A mapping that remembers where it was written.
pub(super) trait Placed {
    /// Record the place.
    fn place(&mut self, at: Loc<()>);
}

impl Placed for KernelSpec {
    fn place(&mut self, at: Loc<()>) {
        self.at = Some(at);
    }
}

impl Placed for ImageSpec {
    fn place(&mut self, at: Loc<()>) {
        self.at = Some(at);
    }
}

fn placed<T: Placed>(loc: Loc<T>) -> T {
    let mut value = loc.value;
    value.place(Loc {
        value: (),
        referenced: loc.referenced,
        defined: loc.defined,
    });
    value
}

/// Deserialize an optional mapping with its place.
pub(super) fn one<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Placed,
{
    Ok(Option::<Loc<T>>::deserialize(deserializer)?.map(placed))
}

/// Deserialize a list of mappings, each with its place.
pub(super) fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Placed,
{
    Ok(Vec::<Loc<T>>::deserialize(deserializer)?
        .into_iter()
        .map(placed)
        .collect())
}

/// An error at `loc`, else at the container's name, else where its entry starts.
pub(super) fn entry_error(
    file: &Path,
    c: &ImageSpec,
    loc: Option<Loc<()>>,
    key: impl Into<String>,
    message: impl Into<String>,
) -> SpecError {
    match loc
        .or_else(|| c.name.as_ref().map(unit_loc))
        .or_else(|| c.at.clone())
    {
        Some(loc) => SpecError::at(file, &loc, key, message),
        None => SpecError::in_file(file, key, message),
    }
}

/// The place of `loc` without its value.
pub(super) fn unit_loc<T>(loc: &Loc<T>) -> Loc<()> {
    Loc {
        value: (),
        referenced: loc.referenced,
        defined: loc.defined,
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::load_str;
    use std::path::Path;

    #[test]
    fn kernel_and_containers_remember_where_they_were_written() {
        let spec = load_str(
            "kernel:\n  cmdline: x\nservices:\n  - name: a\n    image: b\n  - command: [c]\n",
            Path::new("s.yml"),
            0,
        )
        .unwrap();
        let at = spec.kernel.unwrap().at.unwrap();
        assert_eq!((at.referenced.line(), at.referenced.column()), (2, 3));
        let lines: Vec<_> = spec
            .services
            .iter()
            .map(|c| {
                let at = c.at.as_ref().unwrap();
                (at.referenced.line(), at.referenced.column())
            })
            .collect();
        assert_eq!(lines, [(4, 5), (6, 5)]);
    }
}
