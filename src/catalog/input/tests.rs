//! Validation's tests: each field's boundaries and forms, defaults from the catalog, and every
//! error reported together without echoing values.

use super::*;

fn input() -> LaunchInput {
    LaunchInput {
        prompt: Some("Add a README".into()),
        repo: Some("acme/widgets".into()),
        ..Default::default()
    }
}

fn check(input: LaunchInput) -> Result<LaunchRequest, ValidationErrors> {
    input.validate(&Catalog::built_in(), true)
}

fn error_for(input: LaunchInput, field: &str) -> String {
    let errors = check(input).unwrap_err();
    errors
        .field(field)
        .unwrap_or_else(|| panic!("no error for {field}: {errors}"))
        .to_string()
}

#[test]
fn each_model_has_its_default_effort_and_an_explicit_one_wins() {
    let with = |model: &str, effort: Option<&str>| {
        check(LaunchInput {
            model: Some(model.into()),
            effort: effort.map(str::to_string),
            ..input()
        })
        .unwrap()
        .effort
    };
    assert_eq!(with("claude-opus-4-6", None), Effort::High);
    assert_eq!(with("claude-sonnet-4-6", Some("")), Effort::Medium);
    assert_eq!(with("claude-haiku-4-5", None), Effort::None);
    assert_eq!(with("claude-opus-4-6", Some("low")), Effort::Low);
    assert_eq!(with("claude-opus-4-6", Some("none")), Effort::None);
    let codex = check(LaunchInput {
        tool: Some("codex".into()),
        model: Some("gpt-5.4-codex".into()),
        ..input()
    })
    .unwrap();
    assert_eq!(codex.effort, Effort::High);
    let opencode = check(LaunchInput {
        tool: Some("opencode".into()),
        ..input()
    })
    .unwrap();
    assert_eq!(opencode.effort, Effort::None);
}

#[test]
fn defaults_come_from_the_catalog() {
    let r = check(input()).unwrap();
    assert_eq!(r.tool, "claude-code");
    assert_eq!(r.model, "claude-sonnet-4-6");
    assert_eq!(r.effort, Effort::Medium);
    assert_eq!(
        r.resources,
        Resources {
            memory_mb: 1024,
            cpus: 2,
            timeout_ms: 900_000
        }
    );
    assert_eq!(r.template.to_string(), "codecourier-claude-code");
    assert_eq!(r.checker_template(), &r.template);
    assert_eq!(r.base_branch, None);
}

#[test]
fn memory_boundaries() {
    for (mb, ok) in [
        (255, false),
        (256, true),
        (8192, true),
        (8193, false),
        (-1, false),
    ] {
        let result = check(LaunchInput {
            memory_mb: Some(mb),
            ..input()
        });
        assert_eq!(result.is_ok(), ok, "{mb} MB");
    }
    let msg = error_for(
        LaunchInput {
            memory_mb: Some(100),
            ..input()
        },
        "memory_mb",
    );
    assert_eq!(
        msg,
        "memory_mb: 100 is outside the allowed range 256–8192 MB (default 1024)"
    );
}

#[test]
fn cpu_boundaries() {
    for (cpus, ok) in [(0, false), (1, true), (8, true), (9, false)] {
        let result = check(LaunchInput {
            cpus: Some(cpus),
            ..input()
        });
        assert_eq!(result.is_ok(), ok, "{cpus} CPUs");
    }
    assert!(error_for(
        LaunchInput {
            cpus: Some(9),
            ..input()
        },
        "cpus"
    )
    .contains("1–8"));
}

#[test]
fn timeout_boundaries_and_forms() {
    for (text, expected) in [
        ("59s", None),
        ("1m", Some(60_000)),
        ("60000", Some(60_000)),
        ("90s", Some(90_000)),
        ("15m", Some(900_000)),
        ("2h", Some(7_200_000)),
        ("4h", Some(14_400_000)),
        ("4h 1s", None),
        ("4h1s", None),
        ("59999", None),
    ] {
        let result = check(LaunchInput {
            timeout: Some(text.into()),
            ..input()
        });
        assert_eq!(
            result.ok().map(|r| r.resources.timeout_ms),
            expected,
            "{text}"
        );
    }
    let msg = error_for(
        LaunchInput {
            timeout: Some("59s".into()),
            ..input()
        },
        "timeout",
    );
    assert!(
        msg.contains("1 minute to 4 hours (default 15 minutes)"),
        "{msg}"
    );
    let msg = error_for(
        LaunchInput {
            timeout: Some("soon".into()),
            ..input()
        },
        "timeout",
    );
    assert!(msg.contains("\"soon\" is not a duration"), "{msg}");
}

#[test]
fn limits_are_written_in_words() {
    let minutes = |n: u64| human_ms(n * 60_000);
    assert_eq!(minutes(1), "1 minute");
    assert_eq!(minutes(21), "21 minutes");
    assert_eq!(minutes(60), "1 hour");
    assert_eq!(minutes(90), "90 minutes");
    assert_eq!(minutes(120), "2 hours");
    assert_eq!(minutes(21 * 60), "21 hours");
    assert_eq!(human_ms(90_500), "1m 30s 500ms");
}

#[test]
fn effort_per_tool() {
    let catalog = Catalog::built_in();
    for tool in &catalog.tools {
        for effort in Effort::ALL {
            let result = check(LaunchInput {
                tool: Some(tool.id.clone()),
                effort: Some(effort.as_str().to_uppercase()),
                ..input()
            });
            let allowed = effort == Effort::None || tool.capabilities.effort;
            assert_eq!(result.is_ok(), allowed, "{} {effort}", tool.id);
            if allowed {
                assert_eq!(result.unwrap().effort, effort);
            } else {
                let msg = result.unwrap_err().to_string();
                assert!(msg.contains("not available for OpenCode"), "{msg}");
            }
        }
    }
    let msg = error_for(
        LaunchInput {
            effort: Some("extreme".into()),
            ..input()
        },
        "effort",
    );
    assert!(msg.contains("high, medium, low or none"), "{msg}");
}

#[test]
fn model_must_belong_to_the_tool() {
    assert_eq!(
        check(LaunchInput {
            model: Some("claude-opus-4-6".into()),
            ..input()
        })
        .unwrap()
        .model,
        "claude-opus-4-6"
    );
    let msg = error_for(
        LaunchInput {
            model: Some("gpt-5.4".into()),
            ..input()
        },
        "model",
    );
    assert!(
        msg.contains("not a Claude Code model") && msg.contains("claude-sonnet-4-6"),
        "{msg}"
    );
    let msg = error_for(
        LaunchInput {
            tool: Some("codex".into()),
            model: Some("openai/gpt-5.4".into()),
            ..input()
        },
        "model",
    );
    assert!(msg.contains("not a Codex model"), "{msg}");
    let r = check(LaunchInput {
        tool: Some("codex".into()),
        ..input()
    })
    .unwrap();
    assert_eq!(
        (r.model.as_str(), r.template.to_string().as_str()),
        ("gpt-5.4", "codecourier-codex")
    );
}

#[test]
fn open_model_tools_take_any_openrouter_id() {
    for tool in ["opencode", "pi"] {
        for model in ["deepseek/deepseek-r1:free", "openrouter/qwen/qwen3-coder"] {
            let r = check(LaunchInput {
                tool: Some(tool.into()),
                model: Some(model.into()),
                ..input()
            });
            assert_eq!(r.unwrap().model, model);
        }
        for model in ["gemini", "/x", "a//b", "a/b c"] {
            let msg = error_for(
                LaunchInput {
                    tool: Some(tool.into()),
                    model: Some(model.into()),
                    ..input()
                },
                "model",
            );
            assert!(msg.contains("any OpenRouter id"), "{msg}");
        }
    }
}

#[test]
fn unknown_tool_lists_the_choices() {
    let msg = error_for(
        LaunchInput {
            tool: Some("aider".into()),
            ..input()
        },
        "tool",
    );
    assert_eq!(
        msg,
        "tool: \"aider\" is not a tool; choose claude-code (default), opencode, codex, pi"
    );
    let msg = error_for(
        LaunchInput {
            checker_cli_id: Some("aider".into()),
            ..input()
        },
        "checker_cli_id",
    );
    assert!(msg.contains("\"aider\" is not a tool"));
}

#[test]
fn templates_are_normalised_and_checked() {
    let r = check(LaunchInput {
        template: Some("Acme/Node-20:Default".into()),
        checker_template_id: Some("checker:v2".into()),
        designer_cli_id: Some("pi".into()),
        ..input()
    })
    .unwrap();
    assert_eq!(r.template.to_string(), "acme/node-20");
    assert_eq!(r.checker_template().to_string(), "checker:v2");
    assert_eq!(r.designer_cli_id.as_deref(), Some("pi"));
    let msg = error_for(
        LaunchInput {
            template: Some("my template".into()),
            ..input()
        },
        "template",
    );
    assert!(
        msg.contains("\"my template\"") && msg.contains("[namespace/]alias[:tag]"),
        "{msg}"
    );
}

#[test]
fn pull_request_policy_defaults_to_draft() {
    assert_eq!(check(input()).unwrap().pr, PrPolicy::Draft);
    assert_eq!(
        check(LaunchInput {
            pr: Some("READY".into()),
            ..input()
        })
        .unwrap()
        .pr,
        PrPolicy::Ready
    );
    assert_eq!(
        check(LaunchInput {
            pr: Some("none".into()),
            ..input()
        })
        .unwrap()
        .pr,
        PrPolicy::None
    );
    let msg = error_for(
        LaunchInput {
            pr: Some("auto".into()),
            ..input()
        },
        "pr",
    );
    assert!(
        msg.contains("choose draft (default), ready or none"),
        "{msg}"
    );
}

#[test]
fn prompt_must_have_content() {
    assert!(error_for(
        LaunchInput {
            prompt: Some("  \n".into()),
            ..input()
        },
        "prompt"
    )
    .contains("empty"));
    assert!(error_for(
        LaunchInput {
            prompt: None,
            ..input()
        },
        "prompt"
    )
    .contains("empty"));
    let r = check(LaunchInput {
        prompt: Some("--force everything".into()),
        ..input()
    })
    .unwrap();
    assert_eq!(r.prompt, "--force everything");
    let big = "x".repeat(MAX_PROMPT_BYTES + 1);
    assert!(error_for(
        LaunchInput {
            prompt: Some(big),
            ..input()
        },
        "prompt"
    )
    .contains("limit"));
}

#[test]
fn branch_names() {
    for good in ["main", "release/1.2", "feature_x-y"] {
        assert!(is_valid_branch_name(good), "{good}");
    }
    for bad in [
        "", "a b", "-x", "a..b", "x.lock", "x/", "a~1", "a:b", "@", "a@{b",
    ] {
        assert!(!is_valid_branch_name(bad), "{bad}");
    }
}

#[test]
fn env_pairs_never_echo_values() {
    let r = check(LaunchInput {
        env: vec![
            "ANTHROPIC_BASE_URL=http://127.0.0.1:9/x=y".into(),
            "EMPTY=".into(),
        ],
        ..input()
    })
    .unwrap();
    assert_eq!(r.env[0].0, "ANTHROPIC_BASE_URL");
    assert_eq!(r.env[0].1.expose(), "http://127.0.0.1:9/x=y");
    let errors = check(LaunchInput {
        env: vec![
            "sk-secret-value".into(),
            "1BAD=sk-other".into(),
            "A=1".into(),
            "A=2".into(),
        ],
        ..input()
    })
    .unwrap_err()
    .to_string();
    assert!(!errors.contains("sk-"), "{errors}");
    assert!(
        errors.contains("(value hidden)")
            && errors.contains("\"1BAD\"")
            && errors.contains("A is given twice")
    );
}

#[test]
fn all_errors_are_reported_together() {
    let errors = check(LaunchInput {
        prompt: None,
        repo: None,
        memory_mb: Some(1),
        cpus: Some(100),
        ..Default::default()
    })
    .unwrap_err();
    let fields: Vec<_> = errors.0.iter().map(|e| e.field).collect();
    assert_eq!(fields, ["prompt", "repo", "memory_mb", "cpus"]);
}
