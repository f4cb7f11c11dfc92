//! `tinyo list`: the containers under --root, as a table or JSON.

use anyhow::Result;
use tinyo_core::container::Runtime;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format.
    #[arg(short, long, default_value = "table")]
    pub format: Format,
    /// Print only the ids.
    #[arg(short, long)]
    pub quiet: bool,
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    let states = rt.list()?;
    if args.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&states)?),
        Format::Table => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<32} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<32} {}",
                    s.id,
                    s.pid,
                    s.status.to_string(),
                    s.bundle.display(),
                    s.created,
                    s.owner
                );
            }
        }
    }
    Ok(0)
}
