//! Startup suite (written by the lead).

pub fn run(_args: &[String]) -> anyhow::Result<()> {
    anyhow::bail!("startup suite not written yet")
}
