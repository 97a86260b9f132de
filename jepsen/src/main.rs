//! `rill-jepsen`: see jepsen/README.md.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("rill-jepsen: not yet wired (see jepsen/README.md)")
}
