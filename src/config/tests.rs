//! The configuration's tests: `.env.example` lists exactly what is read, defaults, problems by
//! variable, and each section's parsing.

use super::*;
use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};

fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|name| env.get(name).cloned())
}

/// Names in `.env.example`: `NAME=` lines, commented out or not, each preceded by a comment.
fn example_vars() -> BTreeSet<String> {
    let text = include_str!("../../.env.example");
    let mut names = BTreeSet::new();
    let mut previous = "";
    for line in text.lines() {
        let assignment = line.trim_start_matches('#').trim();
        if let Some((name, _)) = assignment.split_once('=') {
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                assert!(
                    previous.starts_with("# ") && previous.len() > 10,
                    ".env.example: {name} needs a one-sentence comment on the line above it"
                );
                names.insert(name.to_string());
            }
        }
        previous = line;
    }
    names
}

#[test]
fn env_example_lists_exactly_the_variables_config_reads() {
    let asked = RefCell::new(BTreeSet::new());
    let _ = Config::from_lookup(|name| {
        asked.borrow_mut().insert(name.to_string());
        None
    });
    let asked = asked.into_inner();
    let documented = example_vars();
    let undocumented: Vec<_> = asked.difference(&documented).collect();
    let unread: Vec<_> = documented.difference(&asked).collect();
    assert!(
        undocumented.is_empty(),
        "read but not in .env.example: {undocumented:?}"
    );
    assert!(
        unread.is_empty(),
        "in .env.example but never read: {unread:?}"
    );
}

#[test]
fn defaults_need_no_variables() {
    let c = config_from(&[]).unwrap();
    assert_eq!(c.sandbox_provider, ProviderKind::Local);
    assert_eq!(c.discord.api_base, "https://discord.com");
    assert_eq!(c.github.api_url, "https://api.github.com");
    assert_eq!(c.e2b.api_url, "https://api.e2b.app");
    assert_eq!(c.data_dir, PathBuf::from("./data"));
    assert_eq!(c.database_url, "sqlite://./data/codecourier.db");
    assert_eq!(c.max_running_per_user, 3);
    assert!(!c.allow_local_repos);
    assert!(c.require_discord().is_err());
}

#[test]
fn e2b_is_chosen_when_its_key_is_set() {
    let c = config_from(&[("E2B_API_KEY", "e2b_x")]).unwrap();
    assert_eq!(c.sandbox_provider, ProviderKind::E2b);
    let c = config_from(&[("E2B_API_KEY", "e2b_x"), ("SANDBOX_PROVIDER", "local")]).unwrap();
    assert_eq!(c.sandbox_provider, ProviderKind::Local);
}

#[test]
fn every_problem_is_reported_at_once_by_name_without_secret_values() {
    let err = config_from(&[
        ("DISCORD_GUILD_ID", "my-server"),
        ("SANDBOX_PROVIDER", "e2b"),
        ("CODECOURIER_MAX_RUNNING_PER_USER", "0"),
        ("CODECOURIER_ALLOW_LOCAL_REPOS", "maybe"),
        ("DISCORD_API_BASE", "not a url"),
        ("CODECOURIER_SECRET_KEY", "hunter2-secret"),
        ("CODECOURIER_TOOLS_DIR", "/definitely/not/here"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = err.problems.iter().map(|p| p.var.as_str()).collect();
    for expected in [
        "DISCORD_GUILD_ID",
        "E2B_API_KEY",
        "CODECOURIER_MAX_RUNNING_PER_USER",
        "CODECOURIER_ALLOW_LOCAL_REPOS",
        "DISCORD_API_BASE",
        "CODECOURIER_SECRET_KEY",
        "CODECOURIER_TOOLS_DIR",
    ] {
        assert!(vars.contains(&expected), "{expected} missing from {vars:?}");
    }
    let text = err.to_string();
    assert!(text.starts_with("7 configuration problems"));
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn discord_ids_and_roles_parse() {
    let c = config_from(&[
        ("DISCORD_GUILD_ID", "18446744073709551615"),
        ("CODECOURIER_ALLOWED_ROLES", "456, 123 ,,"),
        ("CODECOURIER_ALLOW_LOCAL_REPOS", "TRUE"),
    ])
    .unwrap();
    assert_eq!(c.discord.guild_id, Some(DiscordId(u64::MAX)));
    assert_eq!(c.allowed_roles, vec![DiscordId(456), DiscordId(123)]);
    assert!(c.allow_local_repos);

    // A role name is refused with how to find the id: names can be renamed by anyone who manages roles.
    let err = config_from(&[("CODECOURIER_ALLOWED_ROLES", "devs")]).unwrap_err();
    assert!(err.to_string().contains("Copy ID"), "{err}");
}

#[test]
fn gateway_upstreams_default_to_the_vendors_and_egress_to_the_list() {
    let c = config_from(&[]).unwrap();
    assert_eq!(c.gateway.anthropic_base_url, "https://api.anthropic.com");
    assert_eq!(c.gateway.openai_base_url, "https://api.openai.com/v1");
    assert_eq!(
        c.gateway.openrouter_base_url,
        "https://openrouter.ai/api/v1"
    );
    assert!(c.gateway.egress_allow.is_empty());
    assert!(!c.gateway.egress_open);

    let c = config_from(&[
        ("ANTHROPIC_BASE_URL", "https://llm.corp.example/anthropic/"),
        (
            "CODECOURIER_EGRESS_ALLOW",
            "git.corp.example, *.pkg.example:8443,",
        ),
        ("CODECOURIER_EGRESS", "Open"),
    ])
    .unwrap();
    assert_eq!(
        c.gateway.anthropic_base_url,
        "https://llm.corp.example/anthropic"
    );
    let allow: Vec<String> = c
        .gateway
        .egress_allow
        .iter()
        .map(|p| p.to_string())
        .collect();
    assert_eq!(allow, ["git.corp.example", "*.pkg.example:8443"]);
    assert!(c.gateway.egress_open);

    let err = config_from(&[
        ("OPENAI_BASE_URL", "api.openai.com"),
        ("CODECOURIER_EGRESS_ALLOW", "ok.example, not a host"),
        ("CODECOURIER_EGRESS", "closed"),
    ])
    .unwrap_err();
    let vars: Vec<&str> = err.problems.iter().map(|p| p.var.as_str()).collect();
    assert_eq!(
        vars,
        [
            "OPENAI_BASE_URL",
            "CODECOURIER_EGRESS_ALLOW",
            "CODECOURIER_EGRESS"
        ]
    );
}

#[test]
fn github_app_needs_both_halves() {
    let err = config_from(&[("GITHUB_APP_ID", "42")]).unwrap_err();
    assert_eq!(err.problems[0].var, "GITHUB_APP_PRIVATE_KEY");
    let c = config_from(&[
        ("GITHUB_APP_ID", "42"),
        (
            "GITHUB_APP_PRIVATE_KEY",
            "-----BEGIN RSA PRIVATE KEY-----\nabc",
        ),
    ])
    .unwrap();
    assert_eq!(c.github.app.unwrap().app_id, 42);
}
