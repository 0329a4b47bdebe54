//! The kernel side, over route netlink: links up, MTU, address, routes.

use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::lease::{LeaseInfo, Route, in_subnet};

/// A route netlink connection, its task spawned on the current runtime.
pub fn connect() -> Result<Handle, String> {
    let (connection, handle, _) =
        rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
    tokio::spawn(connection);
    Ok(handle)
}

/// The index of the interface `name`.
pub async fn index(handle: &Handle, name: &str) -> Result<u32, String> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(link.header.index),
        Ok(None) => Err("no such interface".into()),
        Err(e) => Err(format!("looking the interface up: {e}")),
    }
}

/// Bring the link `index` up.
pub async fn set_up(handle: &Handle, index: u32) -> Result<(), String> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(|e| format!("bringing the link up: {e}"))
}

/// Apply a lease to the interface `index`: the MTU, the address (without a lifetime: nothing
/// renews it), then the routes, each replacing what is there so a second run does not fail.
pub async fn apply(handle: &Handle, index: u32, lease: &LeaseInfo) -> Result<(), String> {
    if let Some(mtu) = lease.mtu {
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .mtu(u32::from(mtu))
                    .build(),
            )
            .execute()
            .await
            .map_err(|e| format!("setting the MTU to {mtu}: {e}"))?;
    }
    handle
        .address()
        .add(index, IpAddr::V4(lease.address), lease.prefix)
        .replace()
        .execute()
        .await
        .map_err(|e| format!("adding {}/{}: {e}", lease.address, lease.prefix))?;
    for route in &lease.routes {
        // A gateway outside the leased subnet (cloud /32 leases) needs a route to itself on
        // the link first.
        if let Some(gateway) = route.gateway
            && !in_subnet(gateway, lease.address, lease.prefix)
        {
            let host = Route {
                destination: gateway,
                prefix: 32,
                gateway: None,
            };
            add_route(handle, index, lease.address, &host).await?;
        }
        add_route(handle, index, lease.address, route).await?;
    }
    Ok(())
}

async fn add_route(
    handle: &Handle,
    index: u32,
    source: Ipv4Addr,
    route: &Route,
) -> Result<(), String> {
    let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(route.destination, route.prefix)
        .output_interface(index)
        .pref_source(source)
        .protocol(RouteProtocol::Dhcp);
    builder = match route.gateway {
        Some(gateway) => builder.gateway(gateway),
        None => builder.scope(RouteScope::Link),
    };
    handle
        .route()
        .add(builder.build())
        .replace()
        .execute()
        .await
        .map_err(|e| {
            let via = route
                .gateway
                .map(|g| format!(" via {g}"))
                .unwrap_or_default();
            format!(
                "adding the route {}/{}{via}: {e}",
                route.destination, route.prefix
            )
        })
}
