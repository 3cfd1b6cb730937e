//! Names the launch sequence gives things: feature branches and commit messages.

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
    fn commit_messages_name_the_sandbox_and_prompt() {
        let id = SandboxId::new();
        let msg = commit_message(id, "\n  Add a README\nwith details");
        assert!(msg.starts_with("CodeCourier: Add a README\n\n"));
        assert!(msg.contains(&id.to_string()));
    }
}
