//! `/usage`: what launches spent, as CodeCourier's gateway metered it — a person's own, or the
//! whole server's for a manager.

use super::reply::say_ephemeral;
use super::{access, render, Context, Error};
use crate::ids::DiscordId;
use crate::model::usage::{Since, UsageBy};
use crate::store::{UsageReport, UsageRow, UsageScope};

/// The rows shown; the rest are counted in a last line (the total covers them all).
const SHOWN_ROWS: usize = 15;

/// What launches spent: yours, or this server's (Manage Server)
#[poise::command(slash_command, guild_only)]
pub async fn usage(
    ctx: Context<'_>,
    #[description = "What each line is: person (default), project, model or tool"] by: Option<
        String,
    >,
    #[description = "Launches started within: 90m, 12h, 7d, 4w (default 30d)"] since: Option<
        String,
    >,
    #[description = "mine, or server (Manage Server; a manager's default)"] show: Option<String>,
) -> Result<(), Error> {
    let by = match by.as_deref().map(str::parse::<UsageBy>).transpose() {
        Ok(by) => by.unwrap_or_default(),
        Err(e) => return say_ephemeral(ctx, render::inert(&e)).await,
    };
    let since = match since.as_deref().map(Since::parse).transpose() {
        Ok(since) => since.unwrap_or_else(Since::default_window),
        Err(e) => return say_ephemeral(ctx, render::inert(&e)).await,
    };
    let Some(server) = ctx.guild_id().map(|g| DiscordId(g.get())) else {
        return say_ephemeral(ctx, access::NOT_SERVED).await;
    };
    let manager = access::command_by_manager(ctx);
    let me = DiscordId(ctx.author().id.get());
    let scope = match show.as_deref().map(str::trim) {
        None if manager => UsageScope::Server(server),
        None | Some("mine") => UsageScope::Person { server, user: me },
        Some("server") if manager => UsageScope::Server(server),
        Some("server") => {
            return say_ephemeral(
                ctx,
                "Only server managers see the whole server's usage; `show: mine` shows yours.",
            )
            .await
        }
        Some(other) => {
            let text = format!(
                "\"{}\" is not a choice for `show`: use mine or server.",
                render::inert(&render::cut(other, 40))
            );
            return say_ephemeral(ctx, text).await;
        }
    };
    let report = ctx
        .data()
        .ops
        .store()
        .usage(by, since.start(chrono::Utc::now()), scope)
        .await?;
    say_ephemeral(ctx, usage_text(&report, &since, scope)).await
}

/// The report as a message: the total, then a line a row, most spent first.
fn usage_text(report: &UsageReport, since: &Since, scope: UsageScope) -> String {
    let whose = match scope {
        UsageScope::Person { .. } => "your launches",
        UsageScope::Server(_) | UsageScope::Everything => "this server's launches",
    };
    let mut text = format!(
        "**Usage by {}** · {whose} · last {} (metered by CodeCourier)\n",
        report.by, since.label
    );
    if report.total.launches == 0 {
        text.push_str("No launches in this window.");
        return text;
    }
    // The total first: a long list is what gets cut at Discord's limit, never the total.
    let total = &report.total;
    text.push_str(&format!("**Total** · {}", figures(total)));
    if let Some(reported) = total.reported_cost_usd {
        text.push_str(&format!(" · the CLIs reported ${reported:.4}"));
    }
    if total.unpriced_tokens > 0 {
        text.push_str(&format!(
            " · {} tokens were of models without a price: counted, not in the cost",
            total.unpriced_tokens
        ));
    }
    text.push('\n');
    for row in report.rows.iter().take(SHOWN_ROWS) {
        text.push_str(&format!(
            "{} · {}\n",
            figures(row),
            render::inert(&render::cut(&row.name, 60))
        ));
    }
    if report.rows.len() > SHOWN_ROWS {
        text.push_str(&format!(
            "… and {} more (the total counts them)\n",
            report.rows.len() - SHOWN_ROWS
        ));
    }
    text
}

fn figures(row: &UsageRow) -> String {
    format!(
        "`${:.4}` · {} · {} tokens ({} in, {} out, {} cache)",
        row.metered_cost_usd,
        match row.launches {
            1 => "1 launch".to_string(),
            n => format!("{n} launches"),
        },
        row.input_tokens + row.output_tokens + row.cache_read_tokens + row.cache_write_tokens,
        row.input_tokens,
        row.output_tokens,
        row.cache_read_tokens + row.cache_write_tokens,
    )
}
