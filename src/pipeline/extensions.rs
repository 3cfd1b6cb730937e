//! Skills and commands a project gives its agents: checked the same way whether a person adds them
//! from the terminal or from Discord, before they are stored and later written into sandboxes.

use crate::model::NamedText;

/// A project holds at most this many skills, and as many commands.
pub const MAX_PER_PROJECT: usize = 50;
/// One skill or command file's size limit.
pub const MAX_BYTES: usize = 32 * 1024;

/// A name that is safe as a file or directory name in every CLI's layout: lowercase letters,
/// digits and hyphens, as Claude Code asks of skill names.
pub fn check_name(name: &str) -> Result<String, String> {
    let name = name.trim();
    if name.is_empty() || name.len() > 64 {
        return Err(format!(
            "the name \"{name}\" must be 1 to 64 characters long"
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        || name.starts_with('-')
    {
        return Err(format!(
            "the name \"{name}\" may hold only lowercase letters, digits and hyphens (e.g. run-tests)"
        ));
    }
    Ok(name.to_string())
}

/// The value of `key:` in a leading `---` front matter block, if there is one.
fn front_matter_value(text: &str, key: &str) -> Option<String> {
    let rest = text.strip_prefix("---")?;
    let end = rest.find("\n---")?;
    rest[..end]
        .lines()
        .find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"').trim_matches('\'').to_string())
        })
        .filter(|v| !v.is_empty())
}

fn check_size(text: &str) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("the text is empty".into());
    }
    if text.len() > MAX_BYTES {
        return Err(format!(
            "the text is {} bytes; at most {MAX_BYTES} fit",
            text.len()
        ));
    }
    Ok(())
}

/// A skill (a `SKILL.md`): its name from `name` or the front matter, and a description, which every
/// CLI needs to know when to use the skill — from the front matter, or given and then written into
/// one.
pub fn skill(
    name: Option<&str>,
    description: Option<&str>,
    body: &str,
) -> Result<NamedText, String> {
    check_size(body)?;
    let name = match name
        .map(str::to_string)
        .or_else(|| front_matter_value(body, "name"))
    {
        Some(name) => check_name(&name)?,
        None => {
            return Err(
                "the skill needs a name: give one, or put `name:` in its front matter".into(),
            )
        }
    };
    let text = match (front_matter_value(body, "description"), description) {
        (Some(_), _) => body.to_string(),
        (None, Some(description)) if !description.trim().is_empty() => {
            if body.starts_with("---") {
                return Err("the skill's front matter has no `description:`; add it there".into());
            }
            format!(
                "---\nname: {name}\ndescription: {}\n---\n\n{}",
                description.trim().replace('\n', " "),
                body.trim_start()
            )
        }
        _ => {
            return Err(
                "the skill needs a description (when an agent should use it): give one, or put `description:` in its front matter"
                    .into(),
            )
        }
    };
    check_size(&text)?;
    Ok(NamedText { name, text })
}

/// A command (a prompt template run as `/name`).
pub fn command(name: &str, body: &str) -> Result<NamedText, String> {
    check_size(body)?;
    Ok(NamedText {
        name: check_name(name)?,
        text: body.to_string(),
    })
}

/// `list` with `item` added (replacing one of the same name), within the per-project limit.
pub fn with_added(mut list: Vec<NamedText>, item: NamedText) -> Result<Vec<NamedText>, String> {
    list.retain(|i| i.name != item.name);
    if list.len() >= MAX_PER_PROJECT {
        return Err(format!(
            "the project already has {MAX_PER_PROJECT}, the most it may hold; remove one first"
        ));
    }
    list.push(item);
    list.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_path_components() {
        assert_eq!(check_name("run-tests").unwrap(), "run-tests");
        for bad in ["", "../x", "Run", "a b", "-x", "a/b", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_skill_takes_its_name_and_description_from_front_matter_or_gets_them() {
        let md = "---\nname: deploy\ndescription: How to deploy\n---\nSteps";
        let s = skill(None, None, md).unwrap();
        assert_eq!((s.name.as_str(), s.text.as_str()), ("deploy", md));
        let s = skill(Some("lint"), Some("Lint the code"), "Run make lint").unwrap();
        assert_eq!(
            s.text,
            "---\nname: lint\ndescription: Lint the code\n---\n\nRun make lint"
        );
        assert!(skill(Some("lint"), None, "Run make lint")
            .unwrap_err()
            .contains("needs a description"));
        assert!(skill(None, Some("d"), "body")
            .unwrap_err()
            .contains("needs a name"));
        assert!(skill(Some("x"), Some("d"), &"a".repeat(MAX_BYTES + 1)).is_err());
    }

    #[test]
    fn adding_replaces_a_namesake_and_stops_at_the_limit() {
        let item = |n: &str| NamedText {
            name: n.into(),
            text: "t".into(),
        };
        let list = with_added(vec![item("a")], item("a")).unwrap();
        assert_eq!(list.len(), 1);
        let full: Vec<NamedText> = (0..MAX_PER_PROJECT)
            .map(|i| item(&format!("s{i}")))
            .collect();
        assert!(with_added(full.clone(), item("new")).is_err());
        assert_eq!(with_added(full, item("s3")).unwrap().len(), MAX_PER_PROJECT);
    }
}
