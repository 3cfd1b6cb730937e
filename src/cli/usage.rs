//! `codecourier usage`: what launches spent, metered by CodeCourier's gateway, grouped by person,
//! project, model or tool, over a window.

use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};

use super::CliError;
use crate::config::Config;
use crate::model::usage::{Since, UsageBy};
use crate::store::{Store, UsageReport, UsageRow, UsageScope};

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// What each row is: person, project, model or tool
    #[arg(long, default_value = "person")]
    by: UsageBy,
    /// Only launches started within this window: 90m, 12h, 7d, 4w [default: 30d]
    #[arg(long, value_parser = Since::parse)]
    since: Option<Since>,
    /// Print the report as JSON
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: UsageArgs) -> Result<ExitCode, CliError> {
    let store = Store::open(config).await?;
    let since = args.since.unwrap_or_else(Since::default_window);
    let report = store
        .usage(
            args.by,
            since.start(chrono::Utc::now()),
            UsageScope::Everything,
        )
        .await?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report serialises")
        );
    } else {
        print!("{}", table(&report, &since));
    }
    Ok(ExitCode::SUCCESS)
}

fn table(report: &UsageReport, since: &Since) -> String {
    let heading = format!(
        "Usage by {} over the last {} (launches since {}):\n",
        report.by,
        since.label,
        report.since.format("%Y-%m-%d %H:%M UTC")
    );
    if report.total.launches == 0 {
        return format!("{heading}no launches in this window.\n");
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(vec![
            report.by.as_str(),
            "launches",
            "requests",
            "input",
            "output",
            "cache read",
            "cache write",
            "metered",
            "CLI reported",
        ]);
    for row in report.rows.iter().chain([&report.total]) {
        table.add_row(vec![
            row.name.clone(),
            row.launches.to_string(),
            row.requests.to_string(),
            row.input_tokens.to_string(),
            row.output_tokens.to_string(),
            row.cache_read_tokens.to_string(),
            row.cache_write_tokens.to_string(),
            format!("${:.4}", row.metered_cost_usd),
            row.reported_cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "—".into()),
        ]);
    }
    format!("{heading}{table}\n{}", unpriced_note(&report.total))
}

/// Tokens that have no price: counted, and said to be.
fn unpriced_note(total: &UsageRow) -> String {
    match total.unpriced_tokens {
        0 => String::new(),
        n => format!(
            "{n} tokens were of models the catalog has no price for: counted, not in the metered cost.\n"
        ),
    }
}
