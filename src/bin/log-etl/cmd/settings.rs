//! `log-etl settings`: every environment variable read, its value now, its default and range.

use log_etl::config::var::{self, Kind, Setting};
use log_etl::source::SafeUrl;

use super::{CliError, config};

/// List every setting (environment variable) with the value it has in this environment, its
/// default, allowed values and meaning; the settings are checked first, as a run checks them.
#[derive(clap::Args)]
pub struct Args {
    /// Print the names only, one a line.
    #[arg(long)]
    names: bool,
}

/// What a setting is set to here, fit to print: a key is only said to be set, and a URL loses
/// what may hold a credential (user info, query): LOG_API_URL, AWS_ENDPOINT_URL.
fn shown(setting: &Setting, value: Option<String>) -> String {
    match value {
        None => "(not set)".to_owned(),
        Some(_) if setting.name == var::FERNET_KEY.name => "(set)".to_owned(),
        Some(url) if setting.name.ends_with("_URL") => {
            SafeUrl::parse(&url).map_or_else(|| "(set)".to_owned(), |url| format!("= {url}"))
        }
        Some(value) => format!("= {value}"),
    }
}

pub fn run(args: Args) -> Result<(), CliError> {
    if args.names {
        for setting in var::ALL {
            println!("{}", setting.name);
        }
        return Ok(());
    }
    config()?;
    for setting in var::ALL {
        let values = match setting.kind {
            Kind::Text { default: Some(d) } => format!("default {d}"),
            Kind::Text { default: None } => "no default".to_owned(),
            Kind::Number { default, min, max } => format!("default {default}, {min} to {max}"),
            Kind::Duration { default, max_secs } => {
                format!("default {default}, at most {max_secs} s")
            }
        };
        let now = shown(&setting, std::env::var(setting.name).ok());
        println!(
            "{:<24} {:<32} {:<36} {}",
            setting.name, now, values, setting.about
        );
    }
    Ok(())
}
