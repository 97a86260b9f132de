//! The test network: a bridge in the root namespace and one network namespace per node,
//! joined to the bridge by a veth pair; partitions are nftables `drop` rules inside the node
//! namespaces.
//!
//! Layout: bridge `rjbr0` = 10.77.0.1/24 (the clients' address, root namespace); node `i`
//! (1-based) lives in namespace `rj-n{i}` with `eth0` = 10.77.0.{10+i}; its root-side veth end
//! is `rjv{i}`.
//!
//! Partitions cut node-to-node traffic only, as Jepsen does: the clients (10.77.0.1) keep
//! reaching every node, so a partition shows up to them as a node that answers but cannot
//! replicate or lead, which is the interesting case for a broker (a client cut off from a
//! whole side would just time out, which kill already covers).

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

/// The bridge in the root namespace.
pub const BRIDGE: &str = "rjbr0";
/// The clients' (root namespace) address on the bridge.
pub const HOST_IP: &str = "10.77.0.1";
/// Every namespace this harness makes starts with this (leftovers are found by it).
pub const NS_PREFIX: &str = "rj-";
const TABLE: &str = "rjepsen";

/// The namespace of node `i` (1-based).
pub fn ns(i: usize) -> String {
    format!("{NS_PREFIX}n{i}")
}

/// The address of node `i` (1-based).
pub fn node_ip(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// Runs a command to completion; an error carries its stderr.
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("spawning {prog} {}", args.join(" ")))?;
    if !out.status.success() {
        bail!("{prog} {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `nft -f -` inside namespace `ns` with `script` on stdin.
fn nft(ns: &str, script: &str) -> Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning nft (install the nftables package)")?;
    child.stdin.take().context("nft stdin")?.write_all(script.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("nft in {ns} failed: {}\n{script}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Removes what a previous (crashed) run may have left: every `rj-*` namespace, the bridge
/// and any `rjv*` veth end. Errors are ignored: most of it usually does not exist.
pub fn remove_leftovers() {
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(NS_PREFIX) {
                let _ = run("ip", &["netns", "del", name]);
            }
        }
    }
    if let Ok(links) = run("ip", &["-o", "link", "show"]) {
        for line in links.lines() {
            // "7: rjv1@if2: <...>"
            let name = line.split(':').nth(1).unwrap_or("").trim();
            let name = name.split('@').next().unwrap_or("");
            if name.starts_with("rjv") || name == BRIDGE {
                let _ = run("ip", &["link", "del", name]);
            }
        }
    }
}

/// The network of one run. Partition state is tracked so heal is cheap and idempotent.
pub struct Net {
    nodes: usize,
    /// For each node (index i-1), the peers it currently drops.
    blocked: Vec<BTreeSet<usize>>,
}

impl Net {
    /// Creates the bridge and `nodes` namespaces (after removing leftovers of earlier runs).
    pub fn setup(nodes: usize) -> Result<Net> {
        remove_leftovers();
        run("ip", &["link", "add", BRIDGE, "type", "bridge"]).context("creating the bridge")?;
        run("ip", &["addr", "add", &format!("{HOST_IP}/24"), "dev", BRIDGE])?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for i in 1..=nodes {
            let ns = ns(i);
            let veth = format!("rjv{i}");
            run("ip", &["netns", "add", &ns]).with_context(|| format!("creating namespace {ns}"))?;
            run("ip", &["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{}/24", node_ip(i)), "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            // An empty table whose chains the partitions fill.
            nft(
                &ns,
                &format!(
                    "table inet {TABLE} {{\n chain input {{ type filter hook input priority 0; policy accept; }}\n \
                     chain output {{ type filter hook output priority 0; policy accept; }}\n}}\n"
                ),
            )?;
        }
        // Reachability shows in the cluster's readiness (clients reach nodes over the bridge).
        let net = Net { nodes, blocked: vec![BTreeSet::new(); nodes] };
        Ok(net)
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Applies a grudge: `grudge[i-1]` is the set of nodes whose packets node `i` drops (on
    /// input, as Jepsen does; TCP then fails both ways, since the replies are lost).
    /// Replaces any earlier partition.
    pub fn partition(&mut self, grudge: &[BTreeSet<usize>]) -> Result<()> {
        for i in 1..=self.nodes {
            let peers = grudge.get(i - 1).cloned().unwrap_or_default();
            self.set_blocked(i, peers)?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&mut self) -> Result<()> {
        let mut first_err = None;
        for i in 1..=self.nodes {
            if let Err(e) = self.set_blocked(i, BTreeSet::new()) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    fn set_blocked(&mut self, i: usize, peers: BTreeSet<usize>) -> Result<()> {
        if self.blocked[i - 1] == peers {
            return Ok(());
        }
        // Flush and refill in one nft transaction, so there is no window with half the rules.
        let mut script = format!("flush chain inet {TABLE} input\nflush chain inet {TABLE} output\n");
        if !peers.is_empty() {
            let ips: Vec<String> = peers.iter().map(|&p| node_ip(p)).collect();
            let set = ips.join(", ");
            script.push_str(&format!("add rule inet {TABLE} input ip saddr {{ {set} }} drop\n"));
        }
        nft(&ns(i), &script)?;
        self.blocked[i - 1] = peers;
        Ok(())
    }

    /// Deletes the namespaces and the bridge (the veth pairs go with their namespace).
    pub fn teardown(&self) {
        for i in 1..=self.nodes {
            let _ = run("ip", &["netns", "del", &ns(i)]);
        }
        let _ = run("ip", &["link", "del", BRIDGE]);
        remove_leftovers();
    }
}

/// Grudges (who drops whom) for the partition nemesis, over nodes 1..=n.
pub mod grudge {
    use super::*;

    /// Everyone in `a` drops everyone in `b` and vice versa.
    pub fn split(n: usize, a: &BTreeSet<usize>) -> Vec<BTreeSet<usize>> {
        (1..=n).map(|i| (1..=n).filter(|j| *j != i && a.contains(&i) != a.contains(j)).collect()).collect()
    }

    /// Node `x` alone on one side.
    pub fn isolate(n: usize, x: usize) -> Vec<BTreeSet<usize>> {
        split(n, &BTreeSet::from([x]))
    }

    /// Majority ring: node i (in the ring order `order`) sees itself and its nearest neighbours
    /// on both sides (n/2 of them in all), so every node sees a majority and no two see the
    /// same majority.
    pub fn majority_ring(order: &[usize]) -> Vec<BTreeSet<usize>> {
        let n = order.len();
        let reach = n / 2; // neighbours seen in total (besides itself): a majority with itself
        let mut g = vec![BTreeSet::new(); n];
        for (pos, &node) in order.iter().enumerate() {
            let mut sees = BTreeSet::from([node]);
            for k in 1..=reach {
                // Alternate right/left so the view is centred on the node.
                let off = k.div_ceil(2);
                let p = if !k.is_multiple_of(2) { (pos + off) % n } else { (pos + n - off) % n };
                sees.insert(order[p]);
            }
            g[node - 1] = (1..=n).filter(|j| !sees.contains(j)).collect();
        }
        g
    }

    /// Bridge: two halves `a` and `b` that cannot see each other, and node `mid` that sees both.
    pub fn bridge(n: usize, a: &BTreeSet<usize>, mid: usize) -> Vec<BTreeSet<usize>> {
        (1..=n)
            .map(|i| (1..=n).filter(|&j| j != i && i != mid && j != mid && a.contains(&i) != a.contains(&j)).collect())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::grudge::*;
    use std::collections::BTreeSet;

    #[test]
    fn majority_ring_gives_every_node_a_distinct_majority() {
        for n in [3usize, 5] {
            let order: Vec<usize> = (1..=n).collect();
            let g = majority_ring(&order);
            let views: BTreeSet<BTreeSet<usize>> =
                (1..=n).map(|i| (1..=n).filter(|j| !g[i - 1].contains(j)).collect()).collect();
            for v in &views {
                assert!(v.len() > n / 2, "{v:?}");
            }
            if n == 5 {
                assert_eq!(views.len(), n, "{views:?}");
            }
        }
    }

    #[test]
    fn bridge_node_sees_both_halves() {
        let g = bridge(5, &BTreeSet::from([1, 2]), 3);
        assert!(g[2].is_empty());
        assert_eq!(g[0], BTreeSet::from([4, 5]));
        assert_eq!(g[4], BTreeSet::from([1, 2]));
    }
}
