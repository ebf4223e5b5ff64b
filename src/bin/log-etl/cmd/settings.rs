//! `log-etl settings`: every environment variable read, with its default and range.

use log_etl::config::var::{self, Kind};

use super::CliError;

/// List every setting (environment variable) with its default, allowed values and meaning.
#[derive(clap::Args)]
pub struct Args {
    /// Print the names only, one a line.
    #[arg(long)]
    names: bool,
}

pub fn run(args: Args) -> Result<(), CliError> {
    for setting in var::ALL {
        if args.names {
            println!("{}", setting.name);
            continue;
        }
        let values = match setting.kind {
            Kind::Text { default: Some(d) } => format!("default {d}"),
            Kind::Text { default: None } => "no default".to_owned(),
            Kind::Number { default, min, max } => format!("default {default}, {min} to {max}"),
            Kind::Duration { default, max_secs } => {
                format!("default {default}, at most {max_secs} s")
            }
        };
        println!("{:<24} {:<36} {}", setting.name, values, setting.about);
    }
    Ok(())
}
