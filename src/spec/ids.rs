//! uid/gid allocation: each onboot, onshutdown and service container, in that order, gets an
//! id from 100 upward, which `uid: NAME`, `gid: NAME` and `additionalGids` refer to (as
//! LinuxKit does; a name used twice means its last container).

use std::collections::BTreeMap;

use super::{IdRef, Spec};

/// The first id given to a container.
pub const FIRST_ID: u32 = 100;

/// Container names and their ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdMap {
    ids: BTreeMap<String, u32>,
}

impl IdMap {
    /// Allocate ids for the containers of `spec`.
    pub fn allocate(spec: &Spec) -> IdMap {
        let mut ids = BTreeMap::new();
        let containers = spec
            .onboot
            .iter()
            .chain(&spec.onshutdown)
            .chain(&spec.services);
        for (i, c) in containers.enumerate() {
            ids.insert(c.name().to_string(), FIRST_ID + i as u32);
        }
        IdMap { ids }
    }

    /// The number `id` stands for; `Err(name)` when it names no container.
    pub fn resolve(&self, id: &IdRef) -> Result<u32, String> {
        match id {
            IdRef::Number(n) => Ok(*n),
            IdRef::Name(n) if n == "root" => Ok(0),
            IdRef::Name(n) => self.ids.get(n).copied().ok_or_else(|| n.clone()),
        }
    }

    /// The id of container `name`.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_container_gets_an_id_in_section_order_and_names_resolve() {
        let spec = crate::spec::load_str(
            "services:\n  - {name: web, image: x}\n  - {name: db, image: x}\nonshutdown:\n  - {name: save, image: x}\nonboot:\n  - {name: dhcp, image: x}\n  - {name: web, image: x}\n",
            Path::new("s.yml"),
            0,
        )
        .unwrap();
        let ids = IdMap::allocate(&spec);
        // onboot dhcp=100, web=101; onshutdown save=102; services web=103, db=104.
        assert_eq!(ids.get("dhcp"), Some(100));
        assert_eq!(ids.get("save"), Some(102));
        assert_eq!(ids.get("db"), Some(104));
        assert_eq!(
            ids.get("web"),
            Some(103),
            "a name used twice means its last container"
        );
        assert_eq!(ids.resolve(&IdRef::Name("root".into())), Ok(0));
        assert_eq!(ids.resolve(&IdRef::Number(7)), Ok(7));
        assert_eq!(ids.resolve(&IdRef::Name("db".into())), Ok(104));
        assert_eq!(
            ids.resolve(&IdRef::Name("nobody".into())),
            Err("nobody".into())
        );
    }
}
