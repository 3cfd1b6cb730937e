//! Names and texts the launch sequence gives things: feature branches, commit messages, pull requests.

use std::time::Duration;

use crate::ids::SandboxId;

/// `codecourier/<short-id>-<slug of the prompt>`: unique by the id, readable by the slug.
pub fn branch_name(id: SandboxId, prompt: &str) -> String {
    let slug = slug(prompt, 40);
    if slug.is_empty() {
        format!("codecourier/{}", id.short())
    } else {
        format!("codecourier/{}-{slug}", id.short())
    }
}

/// Lower-case ASCII words joined by `-`, at most `max` bytes, cut at a word boundary.
pub fn slug(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in text
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = word.to_ascii_lowercase();
        let needed = if out.is_empty() {
            word.len()
        } else {
            word.len() + 1
        };
        if out.len() + needed > max {
            if out.is_empty() {
                out.push_str(&word[..max]);
            }
            break;
        }
        if !out.is_empty() {
            out.push('-');
        }
        out.push_str(&word);
    }
    out
}

/// The message for changes the agent left uncommitted.
pub fn commit_message(id: SandboxId, prompt: &str) -> String {
    let first = prompt
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut subject: String = first.chars().take(60).collect();
    if first.chars().count() > 60 {
        subject.push('…');
    }
    format!("CodeCourier: {subject}\n\nChanges left uncommitted by the agent in sandbox {id}.")
}

/// A pull request's title: the prompt's first line, cut to what GitHub lists readably.
pub fn pull_request_title(prompt: &str) -> String {
    let first = prompt
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("CodeCourier changes")
        .trim();
    if first.chars().count() <= 72 {
        first.to_string()
    } else {
        format!("{}…", first.chars().take(71).collect::<String>())
    }
}

/// What a pull request's body is made from.
pub struct PullRequestFacts<'a> {
    pub prompt: &'a str,
    /// The agent's final answer, already redacted.
    pub summary: &'a str,
    pub launched_by: &'a str,
    pub sandbox: SandboxId,
    pub cost_usd: Option<f64>,
    pub duration: Duration,
}

/// The body: the task, the agent's summary, and who launched it with what. Never a chat link: the
/// repository may be more public than the channel.
pub fn pull_request_body(f: &PullRequestFacts<'_>) -> String {
    let quote = |text: &str, max: usize| {
        let cut: String = text.chars().take(max).collect();
        let more = if text.chars().count() > max {
            "\n…"
        } else {
            ""
        };
        cut.lines()
            .map(|l| format!("> {l}"))
            .collect::<Vec<_>>()
            .join("\n")
            + more
    };
    let summary = if f.summary.trim().is_empty() {
        "(the agent gave no summary)"
    } else {
        f.summary.trim()
    };
    let cost = f
        .cost_usd
        .map(|c| format!("${c:.4}"))
        .unwrap_or_else(|| "not reported".into());
    format!(
        "## Task\n\n{}\n\n## Summary\n\n{}\n\n---\nLaunched by {} via CodeCourier · sandbox `{}` · cost {cost} · duration {}\n",
        quote(f.prompt.trim(), 3000),
        summary.chars().take(6000).collect::<String>(),
        f.launched_by,
        f.sandbox,
        humantime::format_duration(Duration::from_secs(f.duration.as_secs())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_short_lowercase_words() {
        assert_eq!(
            slug("Fix the flaky test in CI!", 40),
            "fix-the-flaky-test-in-ci"
        );
        assert_eq!(
            slug("--force: ünïcode & symbols", 40),
            "force-n-code-symbols"
        );
        assert_eq!(slug("one two three", 8), "one-two");
        assert_eq!(slug("abcdefghijklmnop", 5), "abcde");
        assert_eq!(slug("!!!", 40), "");
    }

    #[test]
    fn branch_names_start_with_the_short_id() {
        let id = SandboxId::new();
        assert_eq!(
            branch_name(id, "Add a README"),
            format!("codecourier/{}-add-a-readme", id.short())
        );
        assert_eq!(
            branch_name(id, "???"),
            format!("codecourier/{}", id.short())
        );
    }

    #[test]
    fn pull_requests_say_who_launched_what_without_a_chat_link() {
        let id = SandboxId::new();
        assert_eq!(
            pull_request_title("Fix the login bug\nDetails"),
            "Fix the login bug"
        );
        assert_eq!(pull_request_title(&"x".repeat(100)).chars().count(), 72);
        let body = pull_request_body(&PullRequestFacts {
            prompt: "Fix the login bug\nIt fails on Safari",
            summary: "Fixed the cookie flag.",
            launched_by: "alice",
            sandbox: id,
            cost_usd: Some(0.1234),
            duration: Duration::from_secs(75),
        });
        assert!(
            body.contains("> Fix the login bug\n> It fails on Safari"),
            "{body}"
        );
        assert!(body.contains("## Summary\n\nFixed the cookie flag."));
        assert!(body.contains(&format!(
            "Launched by alice via CodeCourier · sandbox `{id}` · cost $0.1234 · duration 1m 15s"
        )));
        assert!(!body.contains("discord.com"));
    }

    #[test]
    fn commit_messages_name_the_sandbox_and_prompt() {
        let id = SandboxId::new();
        let msg = commit_message(id, "\n  Add a README\nwith details");
        assert!(msg.starts_with("CodeCourier: Add a README\n\n"));
        assert!(msg.contains(&id.to_string()));
    }
}
