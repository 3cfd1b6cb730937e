//! The credential gateway: the one way a sandbox's model API, git and registry traffic leaves it
//! (DESIGN.md section 10). A launch holds a placeholder instead of any credential; the gateway adds
//! the real key or token, forwards only what the launch's grant allows to the configured upstream,
//! and refuses the placeholder from the moment the grant is dropped.
//!
//! One `Gateway` serves the whole process on `127.0.0.1:<port>`, and on any Unix sockets added with
//! `listen_unix` for sandboxes with a network of their own. One listener answers three kinds of
//! request: `/<api>/…` for the model APIs, `/git/…` for the launch's repository, and proxy requests
//! (CONNECT, or an absolute `http://` URI) for the allow-listed hosts.

mod egress;
mod git;
mod grants;
mod listener;
mod meter;
mod model;
mod usage;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use url::Url;

pub use egress::{EgressPolicy, HostPattern, REGISTRIES};
pub use grants::{GitGrant, Grant, GrantGuard, ModelGrant, ModelKey, Placeholder, Push};
pub use meter::{Meter, MeteredResponse, Spend, UNMETERED};
pub use model::{
    credential_header, ModelApi, ModelRequest, ModelTraffic, Refusal, ResponseObserver,
};

use crate::config::GatewayConfig;
use crate::secret::Secret;

/// Where each model API goes when a launch names no upstream of its own.
#[derive(Debug, Clone)]
pub struct Upstreams {
    pub anthropic: Url,
    pub openai: Url,
    pub openrouter: Url,
}

impl Upstreams {
    pub fn get(&self, api: ModelApi) -> &Url {
        match api {
            ModelApi::Anthropic => &self.anthropic,
            ModelApi::OpenAi => &self.openai,
            ModelApi::OpenRouter => &self.openrouter,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GatewaySettings {
    pub upstreams: Upstreams,
    pub egress: EgressPolicy,
}

impl GatewaySettings {
    pub fn from_config(config: &GatewayConfig) -> Self {
        let url = |text: &str| Url::parse(text).expect("Config accepts only valid URLs");
        Self {
            upstreams: Upstreams {
                anthropic: url(&config.anthropic_base_url),
                openai: url(&config.openai_base_url),
                openrouter: url(&config.openrouter_base_url),
            },
            egress: EgressPolicy::registries_and(&config.egress_allow, config.egress_open),
        }
    }
}

/// What every connection's task shares.
struct Shared {
    grants: Arc<grants::GrantTable>,
    upstreams: Upstreams,
    egress: EgressPolicy,
    /// For model APIs and git upstream: redirects go back to the client, never followed with a
    /// credential attached.
    http: reqwest::Client,
}

/// The running gateway. Dropping it stops its listeners (connections already open finish).
pub struct Gateway {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: CancellationToken,
}

impl Gateway {
    /// Listens on `127.0.0.1` on a free port.
    pub async fn start(settings: GatewaySettings) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            grants: Arc::default(),
            upstreams: settings.upstreams,
            egress: settings.egress,
            http,
        });
        let stop = CancellationToken::new();
        tokio::spawn(listener::accept_tcp(listener, shared.clone(), stop.clone()));
        tracing::info!("gateway: listening on {addr}");
        Ok(Self { shared, addr, stop })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How a sandbox on the host's network reaches the gateway.
    pub fn reach_on_host(&self) -> Reach {
        Reach {
            authority: self.addr.to_string(),
        }
    }

    /// Makes a placeholder for `grant`, valid until the guard is dropped.
    pub fn grant(&self, grant: Grant) -> GrantGuard {
        self.shared.grants.insert(grant)
    }

    /// Also serves on a Unix socket at `path` (for a bridge from inside a sandbox's own network
    /// namespace), until the returned guard is dropped, which removes the socket. A socket left at
    /// `path` by an earlier run is replaced; any other file there is an error.
    pub fn listen_unix(&self, path: &Path) -> std::io::Result<UnixSocketGuard> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        let listener = tokio::net::UnixListener::bind(path)?;
        let stop = self.stop.child_token();
        tokio::spawn(listener::accept_unix(
            listener,
            self.shared.clone(),
            stop.clone(),
        ));
        Ok(UnixSocketGuard {
            path: path.to_path_buf(),
            stop,
        })
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serving on a Unix socket; dropping it stops that listener and removes the socket file.
#[derive(Debug)]
pub struct UnixSocketGuard {
    path: PathBuf,
    stop: CancellationToken,
}

impl UnixSocketGuard {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketGuard {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// What a sandbox's proxy settings must leave out: the gateway itself is reached directly.
pub const NO_PROXY: &str = "127.0.0.1,localhost";

/// How a sandbox reaches the gateway (an address on its loopback), and so the URLs it is given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    authority: String,
}

impl Reach {
    /// Through a bridge listening on `127.0.0.1:<port>` inside the sandbox's own network
    /// namespace and forwarding to one of the gateway's Unix sockets.
    pub fn bridged(port: u16) -> Self {
        Self {
            authority: format!("127.0.0.1:{port}"),
        }
    }

    /// The base URL the CLI is given for `api` (it stands for the upstream's base URL:
    /// `/anthropic` for `https://api.anthropic.com`, `/openai` for `https://api.openai.com/v1`,
    /// `/openrouter` for `https://openrouter.ai/api/v1`).
    pub fn model_base_url(&self, api: ModelApi) -> String {
        format!("http://{}/{}", self.authority, api.path_segment())
    }

    /// The sandbox repository's remote: the placeholder as the Basic password, the upstream
    /// URL's path below `/git`. `None` when the grant has no repository.
    pub fn git_remote_url(&self, grant: &GrantGuard) -> Option<Secret> {
        let git = grant.grant().git.as_ref()?;
        Some(Secret::new(format!(
            "http://{}:{}@{}{}",
            git::USER,
            grant.placeholder().expose(),
            self.authority,
            git::route_of(git)
        )))
    }

    /// `HTTP_PROXY` and `HTTPS_PROXY` for the sandbox (with `NO_PROXY`): the egress proxy, the
    /// placeholder as its password.
    pub fn proxy_url(&self, grant: &GrantGuard) -> Secret {
        Secret::new(format!(
            "http://ccgw:{}@{}",
            grant.placeholder().expose(),
            self.authority
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bridged_sandbox_gets_urls_on_its_own_loopback_port() {
        let table = Arc::new(grants::GrantTable::default());
        let guard = table.insert(Grant {
            git: Some(GitGrant {
                upstream: Url::parse("https://github.com/acme/widgets.git").unwrap(),
                token: Secret::new("ghs_x"),
                push: Push::Refused,
            }),
            ..Grant::default()
        });
        let placeholder = guard.placeholder().expose();
        let reach = Reach::bridged(3128);
        assert_eq!(
            reach.model_base_url(ModelApi::OpenRouter),
            "http://127.0.0.1:3128/openrouter"
        );
        assert_eq!(
            reach.git_remote_url(&guard).unwrap().expose(),
            format!("http://x-access-token:{placeholder}@127.0.0.1:3128/git/acme/widgets.git")
        );
        assert_eq!(
            reach.proxy_url(&guard).expose(),
            format!("http://ccgw:{placeholder}@127.0.0.1:3128")
        );
        let no_git = table.insert(Grant::default());
        assert!(reach.git_remote_url(&no_git).is_none());
    }
}
