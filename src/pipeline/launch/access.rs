//! How a launch's sandbox reaches its model APIs and its repository without holding a credential:
//! the launch's grant (real keys, the token, the one branch it may push) and what the sandbox gets
//! instead — a placeholder in each key variable, the gateway's URLs through each CLI's own
//! override, proxy settings for everything else — or, on a provider whose egress adds headers
//! itself (E2B), the rules that make it do so.

use base64::Engine;

use std::sync::Arc;

use super::spend::Metering;
use super::{Ending, Launch, Launcher};
use crate::catalog::LaunchMode;
use crate::gateway::{
    credential_header, Gateway, GitGrant, Grant, GrantGuard, Meter, ModelApi, ModelGrant,
    ModelTraffic, Push, Reach, UnixSocketGuard, NO_PROXY,
};
use crate::model::Phase;
use crate::sandbox::{HeaderRule, NetworkPolicy, SandboxHandle};
use crate::secret::Secret;

/// Variables by name, as the agent is given them.
type Variables = Vec<(String, Secret)>;

/// The port on a sandbox's own loopback that leads to the gateway.
pub(super) const GATEWAY_PORT: u16 = 3128;

/// What one launch holds at the gateway, for as long as it runs: dropping it ends the grant (its
/// placeholder is refused from then on) and the sandbox's socket.
pub(super) struct Access {
    grant: GrantGuard,
    route: Route,
    /// The upstream of each granted model API, as the launch resolved it.
    upstreams: Vec<(ModelApi, url::Url)>,
    socket: Option<UnixSocketGuard>,
    /// The meter of traffic through the gateway (none when the provider's egress carries it).
    metering: Option<Metering>,
}

/// How the sandbox's traffic leaves it.
enum Route {
    /// Through the gateway at this address: a bridge on the sandbox's own loopback, or the host's
    /// loopback when the sandbox shares the host's network.
    Gateway { reach: Reach, bridged: bool },
    /// Straight to the upstreams, the provider's egress adding the credentials and refusing
    /// unlisted hosts.
    ProviderRules,
}

impl Access {
    /// Ends the grant (the placeholder stops working, open streams are cut) and the sandbox's
    /// socket; the meter is handed back to settle.
    pub(super) fn end(self) -> Option<Metering> {
        let Access {
            grant,
            socket,
            metering,
            ..
        } = self;
        grant.revoke();
        drop(socket);
        metering
    }

    /// The launch's meter, when its model traffic goes through the gateway.
    pub(super) fn meter(&self) -> Option<&Meter> {
        self.metering.as_ref().map(|m| &m.meter)
    }

    pub(super) fn placeholder(&self) -> &str {
        self.grant.placeholder().expose()
    }

    /// Variables every command in the sandbox sees: the gateway's egress proxy for installs and
    /// setup, which reaches only the allow-listed hosts.
    pub(super) fn sandbox_env(&self) -> Vec<(String, Secret)> {
        let Route::Gateway { reach, .. } = &self.route else {
            return Vec::new();
        };
        let proxy = reach.proxy_url(&self.grant);
        let mut env: Vec<(String, Secret)> =
            ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"]
                .into_iter()
                .map(|name| (name.to_string(), proxy.clone()))
                .collect();
        env.extend(["NO_PROXY", "no_proxy"].map(|name| (name.to_string(), Secret::new(NO_PROXY))));
        env
    }

    /// The base URL the agent's CLI is given for `api`.
    fn model_base_url(&self, api: ModelApi) -> Option<String> {
        match &self.route {
            Route::Gateway { reach, .. } => Some(reach.model_base_url(api)),
            Route::ProviderRules => self
                .upstreams
                .iter()
                .find(|(a, _)| *a == api)
                .map(|(_, url)| url.as_str().trim_end_matches('/').to_string()),
        }
    }

    /// The URL the sandbox clones the repository from, when it goes through the gateway or the
    /// provider's rules (`None`: a repository mounted into the sandbox).
    pub(super) fn clone_url(&self) -> Option<Secret> {
        let git = self.grant.grant().git.as_ref()?;
        match &self.route {
            Route::Gateway { reach, .. } => reach.git_remote_url(&self.grant),
            Route::ProviderRules => Some(Secret::new(git.upstream.as_str())),
        }
    }

    /// The launch's variables as the agent sees them: each key's placeholder instead of the key,
    /// no `*_BASE_URL` of the launch's (it became the grant's upstream), and the base URL of
    /// each granted API where the agent must send it.
    pub(super) fn agent_env(
        &self,
        keys: &[(String, Secret)],
        env: &[(String, Secret)],
    ) -> (Variables, Variables) {
        let placeholder = Secret::new(self.placeholder());
        let agent_keys = keys
            .iter()
            .map(|(name, _)| (name.clone(), placeholder.clone()))
            .collect();
        let hidden = |name: &str| {
            ModelApi::ALL.iter().any(|api| api.base_url_var() == name)
                || keys.iter().any(|(key, _)| key == name)
        };
        let mut agent_env: Vec<(String, Secret)> = env
            .iter()
            .filter(|(name, _)| !hidden(name))
            .cloned()
            .collect();
        for model in &self.grant.grant().models {
            if let Some(url) = self.model_base_url(model.api) {
                if !agent_env.iter().any(|(n, _)| n == model.api.base_url_var()) {
                    agent_env.push((model.api.base_url_var().to_string(), Secret::new(url)));
                }
            }
        }
        (agent_keys, agent_env)
    }

    /// The provision phase's words on the sandbox's network.
    pub(super) fn describe(&self, egress_open: bool) -> String {
        let git = match &self.grant.grant().git {
            Some(GitGrant {
                push: Push::Branch(branch),
                ..
            }) => format!("; git: the repository only, pushes only to {branch}"),
            Some(GitGrant {
                push: Push::Refused,
                ..
            }) => "; git: the repository only, read-only".to_string(),
            None => String::new(),
        };
        let egress = if egress_open {
            "any public host (CODECOURIER_EGRESS=open)"
        } else {
            "the package registries and CODECOURIER_EGRESS_ALLOW only"
        };
        match &self.route {
            Route::Gateway { bridged: true, .. } => format!(
                "network: its own; model APIs and git through CodeCourier's gateway with a placeholder that ends with the launch{git}; other traffic through its proxy to {egress}"
            ),
            Route::Gateway { bridged: false, .. } => format!(
                "network: the host's (egress open); model APIs and git through CodeCourier's gateway with a placeholder that ends with the launch{git}"
            ),
            Route::ProviderRules => {
                let git = if self.grant.grant().git.is_some() {
                    "; git: E2B adds the token on every request to the git host, so any repository the token reaches there is open to the VM, and pushes are not limited to the branch (only what CodeCourier pushes from its own copy is published)"
                } else {
                    ""
                };
                format!(
                    "network: E2B's egress adds the model keys on the way out (the VM holds placeholders) and lets out only the model APIs, the git host and {egress}{git}"
                )
            }
        }
    }
}

impl Launcher {
    /// Where this process's gateway listens on this machine, once a launch has started it.
    pub fn gateway_addr(&self) -> Option<std::net::SocketAddr> {
        self.gateway.get().map(Gateway::addr)
    }

    /// The gateway of this process, started on first use.
    pub(super) async fn gateway(&self) -> Result<&Gateway, Ending> {
        self.gateway
            .get_or_try_init(|| Gateway::start(self.gateway_settings.clone()))
            .await
            .map_err(|e| Ending::Failed {
                phase: Phase::Provision,
                error: format!("the credential gateway could not start: {e}"),
            })
    }

    /// The launch's grant: each key for its API and upstream (the launch's own `*_BASE_URL`, else
    /// the configured one), and a GitHub repository reached over HTTP with its token, pushable
    /// only on the launch's branch (never by a read-only launch). The placeholder joins what the
    /// launch's output hides.
    pub(super) async fn grant_access(&self, launch: &mut Launch<'_>) -> Result<Access, Ending> {
        let fail = Ending::failed(Phase::Provision);
        let mut models = Vec::new();
        let mut upstreams = Vec::new();
        for (name, value) in launch.keys {
            let (api, key) = ModelApi::of_key(name, value).ok_or_else(|| {
                fail(format!(
                    "the credential gateway does not know which model API {name} is for, and a key never enters a sandbox"
                ))
            })?;
            let own = launch
                .request
                .env
                .iter()
                .find(|(n, v)| n == api.base_url_var() && !v.expose().is_empty());
            let upstream = match own {
                Some((var, value)) => Some(url::Url::parse(value.expose()).map_err(|_| {
                    fail(format!(
                        "{var} is not a URL such as https://api.example.com"
                    ))
                })?),
                None => None,
            };
            let resolved = upstream
                .clone()
                .unwrap_or_else(|| self.gateway_settings.upstreams.get(api).clone());
            upstreams.push((api, resolved));
            models.push(ModelGrant { api, key, upstream });
        }
        let git = match (launch.remote.upstream(), &launch.remote.token) {
            (Some(upstream), Some(token)) => Some(GitGrant {
                upstream: upstream.clone(),
                token: token.clone(),
                push: match launch.request.mode {
                    LaunchMode::Work => Push::Branch(launch.branch.clone()),
                    LaunchMode::Scan(_) | LaunchMode::Check => Push::Refused,
                },
            }),
            _ => None,
        };
        let caps = self.provider.capabilities();
        let route = if caps.egress_rules {
            Route::ProviderRules
        } else if caps.host_network {
            Route::Gateway {
                reach: self.gateway().await?.reach_on_host(),
                bridged: false,
            }
        } else {
            Route::Gateway {
                reach: Reach::bridged(GATEWAY_PORT),
                bridged: true,
            }
        };
        // Traffic through the gateway is metered there; on a provider whose egress carries it,
        // `prepare` refused a budget.
        let metering = match route {
            Route::Gateway { .. } => Some(self.start_metering(launch)),
            Route::ProviderRules => None,
        };
        let traffic = metering
            .as_ref()
            .map(|m| Arc::new(m.meter.clone()) as Arc<dyn ModelTraffic>);
        let grant = self.gateway().await?.grant(Grant {
            label: launch.id.to_string(),
            models,
            git,
            traffic,
        });
        launch.redactor.add(grant.placeholder().expose());
        Ok(Access {
            grant,
            route,
            upstreams,
            socket: None,
            metering,
        })
    }

    /// For a provider that enforces egress itself: the hosts the sandbox may reach and the
    /// credential headers its egress adds.
    pub(super) fn network_policy(&self, access: &Access) -> Option<NetworkPolicy> {
        if !matches!(access.route, Route::ProviderRules) {
            return None;
        }
        let mut rules: Vec<HeaderRule> = Vec::new();
        let mut add = |host: &str, name: String, value: Secret| match rules
            .iter_mut()
            .find(|r| r.host == host)
        {
            Some(rule) => rule.headers.push((name, value)),
            None => rules.push(HeaderRule {
                host: host.to_string(),
                headers: vec![(name, value)],
            }),
        };
        let grant = access.grant.grant();
        for model in &grant.models {
            let Some((_, upstream)) = access.upstreams.iter().find(|(a, _)| *a == model.api) else {
                continue;
            };
            let (name, value) = credential_header(model.api, &model.key);
            if let Some(host) = upstream.host_str() {
                add(
                    host,
                    name.to_string(),
                    Secret::new(value.to_str().unwrap_or_default()),
                );
            }
        }
        if let Some(git) = &grant.git {
            if let Some(host) = git.upstream.host_str() {
                let basic = base64::engine::general_purpose::STANDARD
                    .encode(format!("x-access-token:{}", git.token.expose()));
                add(
                    host,
                    "Authorization".to_string(),
                    Secret::new(format!("Basic {basic}")),
                );
            }
        }
        let mut allow_out: Vec<String> = rules.iter().map(|r| r.host.clone()).collect();
        for pattern in self.gateway_settings.egress.allow.iter() {
            // E2B's list takes names, not ports.
            let text = pattern.to_string();
            let name = text.split(':').next().unwrap_or_default().to_string();
            if !allow_out.contains(&name) {
                allow_out.push(name);
            }
        }
        Some(NetworkPolicy {
            open: self.gateway_settings.egress.open,
            allow_out,
            header_rules: rules,
        })
    }

    /// After the sandbox exists: a sandbox with a network of its own gets its bridge to the
    /// gateway (a socket of the gateway's that the sandbox's user may connect to, forwarded to
    /// its loopback port).
    pub(super) async fn connect_access(
        &self,
        access: &mut Access,
        handle: &SandboxHandle,
    ) -> Result<(), Ending> {
        let Route::Gateway { bridged: true, .. } = access.route else {
            return Ok(());
        };
        let fail = Ending::failed(Phase::Provision);
        let dir = self.data_dir.join("gateway");
        std::fs::create_dir_all(&dir)
            .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(format!("{}.sock", handle.provider_id));
        let socket = self.gateway().await?.listen_unix(&path).map_err(|e| {
            fail(format!(
                "the gateway cannot listen on {}: {e}",
                path.display()
            ))
        })?;
        {
            use std::os::unix::fs::PermissionsExt;
            // The sandbox's user owns nothing on the host; the placeholder is what admits it.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).map_err(
                |e| {
                    fail(format!(
                        "cannot open {} to the sandbox: {e}",
                        path.display()
                    ))
                },
            )?;
        }
        self.provider
            .forward(handle, GATEWAY_PORT, &path)
            .await
            .map_err(|e| Ending::from_sandbox(Phase::Provision, e))?;
        access.socket = Some(socket);
        Ok(())
    }
}
