//! `tinyo ps ID`: the processes of a container (pids as seen from the host).

use anyhow::Result;
use tinyo_core::container::Runtime;

use super::list::Format;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output format: a PID/CMD table, or a JSON array of pids (as runc prints).
    #[arg(short, long, default_value = "table")]
    pub format: Format,
    /// Container id.
    pub id: String,
}

pub fn run(rt: &Runtime, args: Args) -> Result<i32> {
    let pids = rt.pids(&args.id)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string(&pids)?),
        Format::Table => {
            println!("{:<8} CMD", "PID");
            for pid in pids {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd: Vec<String> = cmd
                    .split(|b| *b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                println!("{pid:<8} {}", cmd.join(" "));
            }
        }
    }
    Ok(0)
}
