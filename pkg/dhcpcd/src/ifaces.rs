//! Which interfaces to configure, from /sys/class/net, and waiting for them: at boot the
//! network driver (virtio_net) may still be loading when dhcpcd starts.

use std::path::Path;
use std::time::Duration;

use tokio::time::Instant;

/// ARPHRD_ETHER, the `type` of an ethernet interface in sysfs.
const ARPHRD_ETHER: &str = "1";
/// How often sysfs is looked at while waiting.
const POLL: Duration = Duration::from_millis(100);

/// The ethernet interfaces under `sys_net` (a /sys/class/net), sorted: type 1 (ARPHRD_ETHER),
/// and not a bridge, a bond master or a wireless device, whose own configuration is a matter
/// for another tool.
pub fn ethernet(sys_net: &Path) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(sys_net) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| {
            let iface = sys_net.join(name);
            let kind = std::fs::read_to_string(iface.join("type")).unwrap_or_default();
            kind.trim() == ARPHRD_ETHER
                && !["bridge", "bonding", "wireless", "phy80211"]
                    .iter()
                    .any(|marker| iface.join(marker).exists())
        })
        .collect();
    names.sort();
    names
}

/// Wait until `sys_net` shows at least one ethernet interface, or `until`; then, after a short
/// settling pause for devices probed together, return what is there.
pub async fn wait_for_ethernet(sys_net: &Path, until: Instant) -> Vec<String> {
    loop {
        if !ethernet(sys_net).is_empty() {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return ethernet(sys_net);
        }
        if Instant::now() >= until {
            return Vec::new();
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until every interface of `names` is in `sys_net`, or `until`; the missing ones.
pub async fn wait_for_names(sys_net: &Path, names: &[String], until: Instant) -> Vec<String> {
    loop {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| !sys_net.join(n).exists())
            .cloned()
            .collect();
        if missing.is_empty() || Instant::now() >= until {
            return missing;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Wait until the link of `name` is operational (a cable, a peer, a virtual NIC that is up),
/// or `until`; whether it is. The carrier alone is not enough: the kernel drops what is sent
/// until its link watch has also activated the queue, which `operstate` shows (`unknown` for
/// drivers that do not report it, then the carrier is what there is). DHCP can still be tried
/// without: the raw socket sends anyway.
pub async fn wait_for_link(sys_net: &Path, name: &str, until: Instant) -> bool {
    let dir = sys_net.join(name);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    loop {
        let operstate = read("operstate");
        match operstate.trim() {
            "up" => return true,
            "unknown" if read("carrier").trim() == "1" => return true,
            _ => {}
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_iface(root: &Path, name: &str, kind: &str, marker: Option<&str>) {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("type"), format!("{kind}\n")).unwrap();
        if let Some(m) = marker {
            std::fs::create_dir(dir.join(m)).unwrap();
        }
    }

    #[test]
    fn only_plain_ethernet() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fake_iface(root, "lo", "772", None);
        fake_iface(root, "eth1", "1", None);
        fake_iface(root, "eth0", "1", None);
        fake_iface(root, "br0", "1", Some("bridge"));
        fake_iface(root, "bond0", "1", Some("bonding"));
        fake_iface(root, "wlan0", "1", Some("wireless"));
        fake_iface(root, "sit0", "776", None);
        assert_eq!(ethernet(root), vec!["eth0", "eth1"]);
        assert!(ethernet(&root.join("missing")).is_empty());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn waiting_sees_a_late_interface_and_gives_up() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let until = Instant::now() + Duration::from_millis(300);
        assert!(wait_for_ethernet(&root, until).await.is_empty());

        let late = root.clone();
        let appear = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            fake_iface(&late, "eth0", "1", None);
        });
        let until = Instant::now() + Duration::from_secs(5);
        assert_eq!(wait_for_ethernet(&root, until).await, vec!["eth0"]);
        appear.await.unwrap();
        let names = ["eth0".to_string(), "eth9".to_string()];
        let until = Instant::now() + Duration::from_millis(200);
        assert_eq!(wait_for_names(&root, &names, until).await, vec!["eth9"]);
    }
}
