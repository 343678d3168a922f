//! Network namespaces for real partitions (root only; needs iproute2, nothing else).
//!
//! Each node gets a namespace with one interface on a bridge that lives in a separate "hub"
//! namespace (so the host's firewall, e.g. Docker's FORWARD policy, never sees the traffic);
//! the test process reaches every node through a veth into the hub. Isolating a node adds blackhole routes between it and every
//! other node, in both directions, while clients on the bridge still reach it: exactly the
//! situation of a node cut off from its peers but not from its clients.

use std::process::Command;
use std::sync::Mutex;

use anyhow::{bail, Context, Result};

/// Namespaces, veth pairs and a bridge, removed when dropped.
pub struct Namespaces {
    prefix: String,
    subnet: u8,
    count: u64,
    routes: Mutex<Vec<(String, String)>>,
}

fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

impl Namespaces {
    /// Creates `count` namespaces on a fresh bridge.
    pub fn create(count: u64) -> Result<Namespaces> {
        if !nix::unistd::geteuid().is_root() {
            bail!("partition tests need root (network namespaces); run them as root");
        }
        let pid = std::process::id();
        let namespaces = Namespaces {
            prefix: format!("qt{}", pid % 100_000),
            subnet: (pid % 200) as u8 + 20,
            count,
            routes: Mutex::new(Vec::new()),
        };
        namespaces.setup().inspect_err(|_| namespaces.teardown())?;
        Ok(namespaces)
    }

    fn hub(&self) -> String {
        format!("{}hub", self.prefix)
    }

    fn host_link(&self) -> String {
        format!("{}h", self.prefix)
    }

    /// The namespace of node `id`.
    pub fn name(&self, id: u64) -> String {
        format!("{}n{id}", self.prefix)
    }

    /// Node `id`'s address.
    pub fn address(&self, id: u64) -> String {
        format!("10.213.{}.{id}", self.subnet)
    }

    fn setup(&self) -> Result<()> {
        let hub = self.hub();
        let in_hub = |args: &[&str]| {
            let mut all = vec!["netns", "exec", hub.as_str(), "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        ip(&["netns", "add", &hub])?;
        in_hub(&["link", "add", "name", "qbr", "type", "bridge"])?;
        in_hub(&["link", "set", "qbr", "up"])?;
        // The test process's way in.
        let host = self.host_link();
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", "uplink", "netns", &hub,
        ])?;
        let host_address = format!("10.213.{}.254/24", self.subnet);
        ip(&["addr", "add", &host_address, "dev", &host])?;
        ip(&["link", "set", &host, "up"])?;
        in_hub(&["link", "set", "uplink", "master", "qbr"])?;
        in_hub(&["link", "set", "uplink", "up"])?;
        for id in 1..=self.count {
            let ns = self.name(id);
            let port = format!("p{id}");
            ip(&["netns", "add", &ns])?;
            in_hub(&[
                "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            in_hub(&["link", "set", &port, "master", "qbr"])?;
            in_hub(&["link", "set", &port, "up"])?;
            let address = format!("{}/24", self.address(id));
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &address, "dev", "eth0",
            ])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "eth0", "up"])?;
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    fn teardown(&self) {
        let _ = self.heal();
        for id in 1..=self.count {
            let _ = ip(&["netns", "del", &self.name(id)]);
        }
        let _ = ip(&["link", "del", &self.host_link()]);
        let _ = ip(&["netns", "del", &self.hub()]);
    }

    fn blackhole(&self, from: u64, to: u64) -> Result<()> {
        let ns = self.name(from);
        let target = format!("{}/32", self.address(to));
        ip(&[
            "netns",
            "exec",
            &ns,
            "ip",
            "route",
            "add",
            "blackhole",
            &target,
        ])?;
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ns, target));
        Ok(())
    }

    /// Drops all traffic between node `id` and every other node.
    pub fn isolate(&self, id: u64) -> Result<()> {
        for other in (1..=self.count).filter(|&o| o != id) {
            self.blackhole(id, other)?;
            self.blackhole(other, id)?;
        }
        Ok(())
    }

    /// Removes every blackhole route.
    pub fn heal(&self) -> Result<()> {
        let routes = std::mem::take(&mut *self.routes.lock().unwrap_or_else(|e| e.into_inner()));
        for (ns, target) in routes {
            ip(&[
                "netns",
                "exec",
                &ns,
                "ip",
                "route",
                "del",
                "blackhole",
                &target,
            ])?;
        }
        Ok(())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.teardown();
    }
}
