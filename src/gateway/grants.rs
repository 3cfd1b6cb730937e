//! Grants: what one launch's placeholder allows (model APIs with their real keys, one repository with
//! its token and the one branch it may push), and the table of live placeholders the gateway checks.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use super::model::{ModelApi, ModelTraffic};
use crate::secret::Secret;

/// The per-launch stand-in for every credential the sandbox would otherwise hold: `ccgw-` and 32
/// hex digits. Worthless outside the gateway, and there only while its grant lives; still never
/// printed, since while the launch runs it opens what the grant allows.
#[derive(Clone, PartialEq, Eq)]
pub struct Placeholder(String);

impl Placeholder {
    fn generate() -> Self {
        Self(format!("ccgw-{}", uuid::Uuid::new_v4().simple()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `text` has the placeholder's shape (for redaction and quick refusals).
    pub fn looks_like(text: &str) -> bool {
        text.len() == 37
            && text.starts_with("ccgw-")
            && text[5..].bytes().all(|b| b.is_ascii_hexdigit())
    }
}

impl fmt::Debug for Placeholder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Placeholder([redacted])")
    }
}

/// A model API key as the launch would have used it.
#[derive(Debug, Clone)]
pub enum ModelKey {
    /// An API key (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, `OPENROUTER_API_KEY`).
    ApiKey(Secret),
    /// A Claude Code OAuth token (`CLAUDE_CODE_OAUTH_TOKEN`), sent as a bearer token.
    OAuthToken(Secret),
}

/// One model API a launch may call.
#[derive(Debug, Clone)]
pub struct ModelGrant {
    pub api: ModelApi,
    pub key: ModelKey,
    /// This launch's upstream base URL instead of the configured one (a launch's `--env` or a
    /// project variable naming `ANTHROPIC_BASE_URL`, `OPENAI_BASE_URL` or `OPENROUTER_BASE_URL`).
    pub upstream: Option<url::Url>,
}

impl ModelGrant {
    pub fn new(api: ModelApi, key: ModelKey) -> Self {
        Self {
            api,
            key,
            upstream: None,
        }
    }
}

/// What a launch may push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    /// Nothing: fetch and clone only (scans, read-only runs).
    Refused,
    /// Creating or updating this one branch (the name without `refs/heads/`).
    Branch(String),
}

/// The launch's repository.
#[derive(Debug, Clone)]
pub struct GitGrant {
    /// Its smart-HTTP URL upstream, such as `https://github.com/acme/widgets.git`.
    pub upstream: url::Url,
    /// Sent upstream as Basic `x-access-token:<token>`, as GitHub takes installation and personal
    /// tokens.
    pub token: Secret,
    pub push: Push,
}

/// Everything one launch may do through the gateway.
#[derive(Clone, Default)]
pub struct Grant {
    /// Names the launch in the gateway's logs (a sandbox id; never a secret).
    pub label: String,
    pub models: Vec<ModelGrant>,
    pub git: Option<GitGrant>,
    /// Admission and metering of this launch's model traffic; none admits everything.
    pub traffic: Option<Arc<dyn ModelTraffic>>,
}

/// A grant while its placeholder works.
pub(super) struct LiveGrant {
    pub grant: Grant,
    /// Cancelled on revoke: streams and tunnels still open for the launch end with it.
    pub revoked: CancellationToken,
}

impl LiveGrant {
    pub fn model(&self, api: ModelApi) -> Option<&ModelGrant> {
        self.grant.models.iter().find(|m| m.api == api)
    }
}

/// The live placeholders. A lookup is a hash of 128 random bits, so there is nothing to guess.
#[derive(Default)]
pub(super) struct GrantTable {
    live: RwLock<HashMap<String, Arc<LiveGrant>>>,
}

impl GrantTable {
    pub fn lookup(&self, placeholder: &str) -> Option<Arc<LiveGrant>> {
        if !Placeholder::looks_like(placeholder) {
            return None;
        }
        self.live
            .read()
            .expect("grant table poisoned")
            .get(placeholder)
            .cloned()
    }

    pub fn insert(self: &Arc<Self>, grant: Grant) -> GrantGuard {
        let placeholder = Placeholder::generate();
        let live = Arc::new(LiveGrant {
            grant,
            revoked: CancellationToken::new(),
        });
        self.live
            .write()
            .expect("grant table poisoned")
            .insert(placeholder.0.clone(), live.clone());
        GrantGuard {
            table: self.clone(),
            placeholder,
            live,
        }
    }

    fn remove(&self, placeholder: &Placeholder) {
        self.live
            .write()
            .expect("grant table poisoned")
            .remove(&placeholder.0);
    }
}

/// A launch's hold on its grant: the placeholder works until this is dropped or revoked.
pub struct GrantGuard {
    table: Arc<GrantTable>,
    placeholder: Placeholder,
    live: Arc<LiveGrant>,
}

impl GrantGuard {
    pub fn placeholder(&self) -> &Placeholder {
        &self.placeholder
    }

    pub fn grant(&self) -> &Grant {
        &self.live.grant
    }

    /// Ends the grant now (the same as dropping the guard): the placeholder is refused from here
    /// on, and the launch's open model streams and proxy tunnels are cut.
    pub fn revoke(self) {}
}

impl Drop for GrantGuard {
    fn drop(&mut self) {
        self.table.remove(&self.placeholder);
        self.live.revoked.cancel();
    }
}

impl fmt::Debug for GrantGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrantGuard")
            .field("label", &self.live.grant.label)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_random_and_hidden_when_formatted() {
        let a = Placeholder::generate();
        let b = Placeholder::generate();
        assert_ne!(a, b);
        assert!(Placeholder::looks_like(a.expose()), "{}", a.expose());
        assert!(!format!("{a:?}").contains(a.expose()));
    }

    #[test]
    fn a_dropped_guard_removes_its_placeholder_and_cancels_its_traffic() {
        let table = Arc::new(GrantTable::default());
        let guard = table.insert(Grant::default());
        let placeholder = guard.placeholder().expose().to_string();
        let live = table.lookup(&placeholder).expect("live after grant");
        assert!(table
            .lookup("ccgw-00000000000000000000000000000000")
            .is_none());
        guard.revoke();
        assert!(table.lookup(&placeholder).is_none());
        assert!(live.revoked.is_cancelled());
    }
}
