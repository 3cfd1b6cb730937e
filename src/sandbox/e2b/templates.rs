//! E2B templates: which ones the team has (`GET /templates`), and the E2B CLI command that builds
//! one of CodeCourier's from `templates/<tool>/e2b.Dockerfile` under the catalog's name.

use reqwest::StatusCode;
use serde_json::Value;

use super::{api_error, without_url, E2bProvider};
use crate::catalog::{Limits, Tool};
use crate::sandbox::SandboxError;

/// The public template every E2B team can start from: Debian with Node.js, npm, git and bash.
pub const BASE: &str = "base";

/// One template the team can start sandboxes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamTemplate {
    /// Its names (`[namespace/]alias`), as `templateID` in a create accepts them.
    pub names: Vec<String>,
    /// `ready` when its last build succeeded; `building`, `waiting` or `error` otherwise.
    pub build_status: String,
}

impl TeamTemplate {
    /// Whether `name` (an alias, or `namespace/alias`) is one of this template's names.
    pub fn is_named(&self, name: &str) -> bool {
        self.names
            .iter()
            .any(|n| n == name || n.rsplit_once('/').is_some_and(|(_, alias)| alias == name))
    }
}

impl E2bProvider {
    /// The team's templates (E2B's public ones, such as `base`, are not listed).
    pub async fn templates(&self) -> Result<Vec<TeamTemplate>, SandboxError> {
        let response = self
            .api(reqwest::Method::GET, "/templates")
            .send()
            .await
            .map_err(|e| {
                SandboxError::Transient(format!("E2B could not be reached: {}", without_url(&e)))
            })?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        if status != StatusCode::OK {
            return Err(api_error(status, &text, "the template list"));
        }
        let items: Vec<Value> = serde_json::from_str(&text)
            .map_err(|_| SandboxError::Other(anyhow::anyhow!("E2B's template list is not JSON")))?;
        Ok(items
            .iter()
            .map(|item| {
                let strings = |field: &str| {
                    item[field]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|n| n.as_str().map(str::to_string))
                        .collect::<Vec<_>>()
                };
                let mut names = strings("names");
                for alias in strings("aliases") {
                    if !names.contains(&alias) {
                        names.push(alias);
                    }
                }
                TeamTemplate {
                    names,
                    build_status: item["buildStatus"].as_str().unwrap_or("ready").to_string(),
                }
            })
            .collect())
    }
}

/// The E2B CLI command, run in a checkout of CodeCourier, that builds the tool's template from
/// its definition under the catalog's name, with the catalog's default CPUs and memory.
pub fn build_command(tool: &Tool, limits: &Limits) -> String {
    format!(
        "e2b template create {} --path templates/{} --dockerfile e2b.Dockerfile --cpu-count {} --memory-mb {}",
        tool.default_template, tool.id, limits.cpus.default, limits.memory_mb.default
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    #[test]
    fn a_template_answers_to_its_alias_with_or_without_the_namespace() {
        let t = TeamTemplate {
            names: vec!["acme/codecourier-pi".into()],
            build_status: "ready".into(),
        };
        assert!(t.is_named("codecourier-pi"));
        assert!(t.is_named("acme/codecourier-pi"));
        assert!(!t.is_named("other/codecourier-pi"));
        assert!(!t.is_named("codecourier"));
    }

    #[test]
    fn the_build_command_names_the_catalog_template_and_its_definition() {
        let catalog = Catalog::built_in();
        let codex = catalog.tool("codex").unwrap();
        assert_eq!(
            build_command(codex, &catalog.limits),
            "e2b template create codecourier-codex --path templates/codex --dockerfile e2b.Dockerfile --cpu-count 2 --memory-mb 1024"
        );
    }
}
