//! `codecourier tools`: the catalog as a table or JSON.

use std::process::ExitCode;

use comfy_table::{presets::UTF8_FULL_CONDENSED, ContentArrangement, Table};
use serde_json::json;

use super::CliError;
use crate::catalog::Catalog;

pub fn run(catalog: &Catalog, json: bool) -> Result<ExitCode, CliError> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&catalog_json(catalog)).expect("catalog serialises")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header([
            "Tool",
            "Name",
            "Models (default first) · default effort",
            "Keys (any one)",
            "Template",
            "Capabilities",
        ]);
    for tool in &catalog.tools {
        let id = if tool.id == catalog.default_tool {
            format!("{} (default)", tool.id)
        } else {
            tool.id.clone()
        };
        let mut models = tool
            .models
            .iter()
            .map(|m| format!("{m} · {}", tool.default_effort(m)))
            .collect::<Vec<_>>()
            .join("\n");
        if tool.open_models {
            models.push_str("\n+ any OpenRouter id");
        }
        let caps = tool.capabilities;
        let capabilities: Vec<&str> = [
            (caps.stream_output, "stream output"),
            (caps.claude_md, "CLAUDE.md"),
            (caps.skills, "skills"),
            (caps.learnings, "learnings"),
            (caps.effort, "effort"),
            (caps.resume_session, "resume session"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        table.add_row([
            id,
            tool.name.clone(),
            models,
            tool.keys_description().replace(" or ", "\nor "),
            tool.default_template.clone(),
            capabilities.join(", "),
        ]);
    }
    println!("{table}");
    let l = catalog.limits;
    println!(
        "Limits: memory {}–{} MB (default {}), CPUs {}–{} (default {}), timeout {}–{} min (default {}); effort high|medium|low|none (a launch that gives none gets its model's default).",
        l.memory_mb.min,
        l.memory_mb.max,
        l.memory_mb.default,
        l.cpus.min,
        l.cpus.max,
        l.cpus.default,
        l.timeout_ms.min / 60_000,
        l.timeout_ms.max / 60_000,
        l.timeout_ms.default / 60_000,
    );
    Ok(ExitCode::SUCCESS)
}

fn catalog_json(catalog: &Catalog) -> serde_json::Value {
    let tools: Vec<_> = catalog
        .tools
        .iter()
        .map(|tool| {
            json!({
                "id": tool.id,
                "name": tool.name,
                "default": tool.id == catalog.default_tool,
                "command": tool.command,
                "default_model": tool.default_model(),
                "models": tool.models,
                "default_effort": tool
                    .models
                    .iter()
                    .map(|m| (m.clone(), json!(tool.default_effort(m))))
                    .collect::<serde_json::Map<_, _>>(),
                "open_models": tool.open_models,
                "required_keys": tool.required_keys,
                "default_template": tool.default_template,
                "capabilities": tool.capabilities,
            })
        })
        .collect();
    json!({
        "default_tool": catalog.default_tool,
        "limits": catalog.limits,
        "tools": tools,
    })
}
