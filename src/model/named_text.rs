//! A named text a project carries into its sandboxes: a skill (`SKILL.md` body) or a slash command.

use serde::{Deserialize, Serialize};

/// A skill (`SKILL.md` body) or a slash command, as stored on a project.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedText {
    pub name: String,
    pub text: String,
}
