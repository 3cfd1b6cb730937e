//! Reading one variable: text, ids, secrets, numbers, URLs, flags and paths, and the gateway's and
//! GitHub App's groups of variables; every problem is kept to report all at once.

use std::path::PathBuf;

use super::{
    AppKey, ConfigProblem, GatewayConfig, GithubApp, ANTHROPIC_BASE_URL, OPENAI_BASE_URL,
    OPENROUTER_BASE_URL,
};
use crate::gateway::HostPattern;
use crate::ids::DiscordId;
use crate::secret::Secret;

pub(super) struct Reader<'a> {
    pub(super) lookup: &'a dyn Fn(&str) -> Option<String>,
    pub(super) problems: Vec<ConfigProblem>,
}

impl Reader<'_> {
    pub(super) fn problem(&mut self, var: &str, message: &str) {
        self.problems.push(ConfigProblem {
            var: var.into(),
            message: message.into(),
        });
    }

    pub(super) fn text(&mut self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated list of Discord ids (`what`: "server", "role"), when set.
    pub(super) fn ids(&mut self, var: &str, what: &str) -> Option<Vec<DiscordId>> {
        let list = self.text(var)?;
        let ids: Result<Vec<DiscordId>, _> = list
            .split(',')
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .map(str::parse)
            .collect();
        Some(ids.unwrap_or_else(|_| {
            self.problem(
                var,
                &format!("\"{list}\" is not a comma-separated list of {what} ids (numbers; in Discord enable Developer Mode, right-click the {what} and Copy ID)"),
            );
            Vec::new()
        }))
    }

    pub(super) fn secret(&mut self, var: &str) -> Option<Secret> {
        self.text(var).map(Secret::new)
    }

    pub(super) fn parsed<T: std::str::FromStr>(&mut self, var: &str, hint: &str) -> Option<T> {
        let raw = self.text(var)?;
        match raw.parse() {
            Ok(v) => Some(v),
            Err(_) => {
                self.problem(var, &format!("\"{raw}\" {hint}"));
                None
            }
        }
    }

    pub(super) fn optional_url(&mut self, var: &str) -> Option<String> {
        let raw = self.text(var)?;
        match url::Url::parse(&raw) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {
                Some(raw.trim_end_matches('/').to_string())
            }
            _ => {
                self.problem(
                    var,
                    &format!("\"{raw}\" is not an http(s) URL such as https://example.com"),
                );
                None
            }
        }
    }

    pub(super) fn url(&mut self, var: &str, default: &str) -> String {
        self.optional_url(var)
            .unwrap_or_else(|| default.to_string())
    }

    /// A duration of at least a second (`90s`, `10m`), `default` when unset.
    pub(super) fn duration(
        &mut self,
        var: &str,
        default: std::time::Duration,
        example: &str,
    ) -> std::time::Duration {
        let Some(text) = self.text(var) else {
            return default;
        };
        match humantime::parse_duration(&text) {
            Ok(d) if d >= std::time::Duration::from_secs(1) => d,
            _ => {
                self.problem(
                    var,
                    &format!("\"{text}\" is not a duration of at least 1s, {example}"),
                );
                default
            }
        }
    }

    pub(super) fn flag(&mut self, var: &str) -> bool {
        match self.text(var).map(|s| s.to_ascii_lowercase()).as_deref() {
            None | Some("false" | "0" | "no" | "off") => false,
            Some("true" | "1" | "yes" | "on") => true,
            Some(other) => {
                self.problem(var, &format!("\"{other}\" is not true or false"));
                false
            }
        }
    }

    pub(super) fn existing_path(&mut self, var: &str, dir: bool) -> Option<PathBuf> {
        let path = PathBuf::from(self.text(var)?);
        let ok = if dir { path.is_dir() } else { path.is_file() };
        if !ok {
            let kind = if dir { "directory" } else { "file" };
            self.problem(
                var,
                &format!(
                    "{} is not an existing {kind}; fix the path or unset it",
                    path.display()
                ),
            );
            return None;
        }
        Some(path)
    }

    pub(super) fn gateway(&mut self) -> GatewayConfig {
        let anthropic_base_url = self.url("ANTHROPIC_BASE_URL", ANTHROPIC_BASE_URL);
        let openai_base_url = self.url("OPENAI_BASE_URL", OPENAI_BASE_URL);
        let openrouter_base_url = self.url("OPENROUTER_BASE_URL", OPENROUTER_BASE_URL);
        let egress_allow = self
            .text("CODECOURIER_EGRESS_ALLOW")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|entry| !entry.is_empty())
                    .filter_map(|entry| match HostPattern::parse(entry) {
                        Ok(pattern) => Some(pattern),
                        Err(why) => {
                            self.problem("CODECOURIER_EGRESS_ALLOW", &format!("{why}; list entries such as registry.example.com, *.example.com or host:8443, separated by commas"));
                            None
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let egress_open = match self
            .text("CODECOURIER_EGRESS")
            .map(|s| s.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("list") => false,
            Some("open") => true,
            Some(other) => {
                self.problem(
                    "CODECOURIER_EGRESS",
                    &format!("\"{other}\" is neither list (only allow-listed hosts) nor open (any public host)"),
                );
                false
            }
        };
        GatewayConfig {
            anthropic_base_url,
            openai_base_url,
            openrouter_base_url,
            egress_allow,
            egress_open,
        }
    }

    pub(super) fn github_app(&mut self) -> Option<GithubApp> {
        let id = self.parsed::<u64>(
            "GITHUB_APP_ID",
            "is not a GitHub App id (a number, shown on the App's settings page)",
        );
        let key = self.text("GITHUB_APP_PRIVATE_KEY").map(|k| {
            if k.contains("-----BEGIN") {
                AppKey::Pem(Secret::new(k))
            } else {
                AppKey::Path(PathBuf::from(k))
            }
        });
        match (id, key) {
            (None, None) => None,
            (Some(_), None) => {
                self.problem("GITHUB_APP_PRIVATE_KEY", "is required with GITHUB_APP_ID: the App's private key (PEM text or the path of the .pem file)");
                None
            }
            (None, Some(_)) => {
                if self.text("GITHUB_APP_ID").is_none() {
                    self.problem("GITHUB_APP_ID", "is required with GITHUB_APP_PRIVATE_KEY");
                }
                None
            }
            (Some(_), Some(AppKey::Path(path))) if !path.is_file() => {
                self.problem(
                    "GITHUB_APP_PRIVATE_KEY",
                    &format!(
                        "{} is neither PEM text nor an existing file",
                        path.display()
                    ),
                );
                None
            }
            (Some(app_id), Some(private_key)) => Some(GithubApp {
                app_id,
                private_key,
            }),
        }
    }
}
