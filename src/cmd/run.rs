//! (being written)

#[derive(clap::Args, Debug, Default)]
pub struct Args {}

impl Args {
    pub fn default_software_mode() -> Self {
        Args::default()
    }
}

pub fn main(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
