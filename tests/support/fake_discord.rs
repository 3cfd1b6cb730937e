//! A fake Discord on loopback that the real serenity/poise client talks to over the real wire
//! protocol: a REST server (every request recorded, model-valid answers, Discord's error bodies
//! for the mistakes Discord rejects) and a gateway websocket (HELLO, IDENTIFY, READY, heartbeat
//! ACKs, RESUME, dispatches with increasing `s`). See reference/discord/FAKE_DISCORD.md for why
//! each payload has the fields it has.
//!
//! The fake keeps a small world (one guild, its roles and members, channels, messages,
//! interactions, registered commands) so that answers are consistent: a message edited twice
//! keeps its id, a thread started from a message has the message's id, `@original` exists only
//! after the interaction was answered with a message. What tests dispatch teaches the world too
//! (a dispatched interaction's member, message and channel become known), so REST lookups agree
//! with the payloads.
//!
//! Waiting never sleeps blindly: every `wait_*` waits on recorded events with a timeout and, on
//! timeout, panics listing what did happen.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use futures_util::{SinkExt, StreamExt};
use regex::Regex;
use serde_json::{json, Map, Value};
use serenity::all::{Context, Event, HttpBuilder, Interaction, RawEventHandler, UnknownEvent};
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request, Response as WsResponse,
};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message as WsMessage;

// ---------------------------------------------------------------------------------------------
// The world's fixed ids. Old-looking snowflakes, so they never collide with the fresh ones the
// fake hands out (those are made from the current time).

pub const APP_ID: u64 = 1_100_000_000_000_000_001;
/// Deliberately different from APP_ID, so a bot that mixes up the two fails here.
pub const BOT_ID: u64 = 1_100_000_000_000_000_002;
pub const GUILD_ID: u64 = 1_100_000_000_000_000_010;
/// The guild's text channel `#general`.
pub const CHANNEL_ID: u64 = 1_100_000_000_000_000_020;
/// The guild owner: neither Alice nor Bob, so owner short-cuts never hide a permission check.
pub const OWNER_ID: u64 = 1_100_000_000_000_000_030;
/// A role granting Manage Server (MANAGE_GUILD).
pub const MANAGER_ROLE_ID: u64 = 1_100_000_000_000_000_040;
/// The bot's managed role.
pub const BOT_ROLE_ID: u64 = 1_100_000_000_000_000_041;
pub const ALICE: u64 = 1_100_000_000_000_000_101;
pub const BOB: u64 = 1_100_000_000_000_000_102;
/// The bot token the fake accepts (REST `Authorization: Bot <token>` and IDENTIFY).
pub const BOT_TOKEN: &str = "fake-discord-bot-token";

// Permission bits (https://discord.com/developers/docs/topics/permissions).
pub const MANAGE_GUILD: u64 = 1 << 5;
pub const ADD_REACTIONS: u64 = 1 << 6;
pub const VIEW_CHANNEL: u64 = 1 << 10;
pub const SEND_MESSAGES: u64 = 1 << 11;
pub const MANAGE_MESSAGES: u64 = 1 << 13;
pub const EMBED_LINKS: u64 = 1 << 14;
pub const ATTACH_FILES: u64 = 1 << 15;
pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
pub const USE_APPLICATION_COMMANDS: u64 = 1 << 31;
pub const MANAGE_THREADS: u64 = 1 << 34;
pub const CREATE_PUBLIC_THREADS: u64 = 1 << 35;
pub const CREATE_PRIVATE_THREADS: u64 = 1 << 36;
pub const SEND_MESSAGES_IN_THREADS: u64 = 1 << 38;

/// What `@everyone` may do in the fake guild: an ordinary member.
pub const PERMS_MEMBER: u64 = VIEW_CHANNEL
    | SEND_MESSAGES
    | SEND_MESSAGES_IN_THREADS
    | CREATE_PUBLIC_THREADS
    | READ_MESSAGE_HISTORY
    | EMBED_LINKS
    | ATTACH_FILES
    | ADD_REACTIONS
    | USE_APPLICATION_COMMANDS;
/// An ordinary member who also has Manage Server.
pub const PERMS_MANAGE_SERVER: u64 = PERMS_MEMBER | MANAGE_GUILD;
/// The bot's role: an ordinary member's permissions plus managing messages and threads.
pub const PERMS_BOT: u64 = PERMS_MEMBER | MANAGE_MESSAGES | MANAGE_THREADS | CREATE_PRIVATE_THREADS;

/// Real Discord answers with this error body when it rate-limits a route.
pub const RATE_LIMIT_MESSAGE: &str = "You are being rate limited.";

const TIMESTAMP_ZERO: &str = "2025-01-01T00:00:00.000000+00:00";
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// Discord's message flags: EPHEMERAL and LOADING (a deferred "thinking…" response).
const FLAG_EPHEMERAL: u64 = 1 << 6;
const FLAG_LOADING: u64 = 1 << 7;

// ---------------------------------------------------------------------------------------------
// Configuration and recorded data.

#[derive(Clone, Debug)]
pub struct Config {
    /// HELLO's heartbeat interval. serenity heartbeats one interval after IDENTIFY and reconnects
    /// if a heartbeat stays un-ACKed for an interval; the default keeps tests quiet.
    pub heartbeat_interval_ms: u64,
    /// The only token REST and IDENTIFY accept.
    pub token: String,
    /// How long after its dispatch an interaction may still get its first callback. Discord
    /// allows 3 s, then answers 404 Unknown interaction. None disables the check.
    pub interaction_deadline: Option<Duration>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            heartbeat_interval_ms: 41_250,
            token: BOT_TOKEN.into(),
            interaction_deadline: Some(Duration::from_secs(3)),
        }
    }
}

/// A file uploaded in a multipart request.
#[derive(Clone, Debug)]
pub struct UploadedFile {
    /// The form field, e.g. `files[0]` (serenity numbers attachments from 0).
    pub field: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub bytes: Vec<u8>,
}

/// One REST request as the fake saw it, and what it answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Position in arrival order, from 0.
    pub seq: usize,
    /// When the fake received it (for pacing checks such as "one edit per 1.5 s").
    pub at: std::time::Instant,
    pub method: String,
    /// Without the `/api/v10` prefix (`/channels/1/messages`). Requests outside the API (an
    /// attachment download) keep their full path.
    pub path: String,
    /// The raw query string without `?` (serenity writes `&limit=50`).
    pub query: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub audit_log_reason: Option<String>,
    /// The JSON body; for multipart requests the `payload_json` part parsed. Null when empty.
    pub body: Value,
    /// Files of a multipart request, in form order.
    pub files: Vec<UploadedFile>,
    pub status: u16,
    /// The JSON the fake answered (Null for an empty body).
    pub response: Value,
    /// Headers the fake answered with beyond content-type (the 429's `retry-after`, say).
    pub response_headers: Vec<(String, String)>,
    /// False when no route of the fake matched: the bot called something unexpected.
    pub handled: bool,
    /// The rate-limit bucket the request counted against (method + path with minor ids folded).
    pub route: String,
}

impl Recorded {
    pub fn is_multipart(&self) -> bool {
        self.content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("multipart/form-data"))
    }

    /// A header of the fake's answer, by case-insensitive name.
    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `METHOD /path?query -> status`, for failure messages.
    pub fn summary(&self) -> String {
        let query = if self.query.is_empty() {
            String::new()
        } else {
            format!("?{}", self.query)
        };
        let unhandled = if self.handled {
            ""
        } else {
            " (no such route in the fake)"
        };
        format!(
            "{} {}{} -> {}{}",
            self.method, self.path, query, self.status, unhandled
        )
    }
}

/// Which paths a wait matches. A string matches that exact path, or every path starting with
/// it when it ends in `*` (`/channels/1/*`); exact by default because `/channels/1/messages` is
/// also a prefix of `/channels/1/messages/2/threads`. A `Regex` is searched in the path.
#[derive(Clone, Debug)]
pub enum PathPattern {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

impl PathPattern {
    pub fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            Self::Prefix(p) => path.starts_with(p.as_str()),
            Self::Regex(r) => r.is_match(path),
        }
    }
}

impl From<&str> for PathPattern {
    fn from(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(prefix) => Self::Prefix(prefix.to_string()),
            None => Self::Exact(s.to_string()),
        }
    }
}

impl From<String> for PathPattern {
    fn from(s: String) -> Self {
        s.as_str().into()
    }
}

impl From<&String> for PathPattern {
    fn from(s: &String) -> Self {
        s.as_str().into()
    }
}

impl From<Regex> for PathPattern {
    fn from(r: Regex) -> Self {
        Self::Regex(r)
    }
}

impl std::fmt::Display for PathPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(p) => write!(f, "{p}"),
            Self::Prefix(p) => write!(f, "{p}*"),
            Self::Regex(r) => write!(f, "/{r}/"),
        }
    }
}

fn method_matches(wanted: &str, method: &str) -> bool {
    wanted == "*" || wanted.eq_ignore_ascii_case(method)
}

/// Discord-style per-route rate limiting: more than `max_requests` requests on one route within
/// `window` get `429` with Discord's body and headers. Requests answered 429 do not count.
#[derive(Clone, Debug)]
pub struct RateLimit {
    pub max_requests: usize,
    pub window: Duration,
    /// Limit only requests with this method (`*` for any) and path.
    pub only: Option<(String, PathPattern)>,
}

impl RateLimit {
    pub fn new(max_requests: usize, window: Duration) -> Self {
        Self {
            max_requests,
            window,
            only: None,
        }
    }

    pub fn only(mut self, method: &str, path: impl Into<PathPattern>) -> Self {
        self.only = Some((method.to_string(), path.into()));
        self
    }
}

/// One gateway connection as the fake saw it.
#[derive(Clone, Debug)]
pub struct GatewayConnection {
    /// Position in connection order, from 0.
    pub index: usize,
    /// The websocket request URI (serenity asks for `/?v=10`).
    pub uri: String,
    pub identify: Option<Value>,
    pub resume: Option<Value>,
    pub session_id: Option<String>,
    pub ready_sent: bool,
    pub resumed_sent: bool,
    pub open: bool,
    pub heartbeats: u32,
    /// Every other frame the client sent (presence updates, member requests, …).
    pub received: Vec<Value>,
    /// The close code the client sent, if it closed cleanly.
    pub close_code: Option<u16>,
}

// ---------------------------------------------------------------------------------------------
// The fake's state.

enum Outgoing {
    Frame(Value),
    Close(u16, String),
}

struct Conn {
    info: GatewayConnection,
    tx: mpsc::UnboundedSender<Outgoing>,
}

struct TrackedInteraction {
    token: String,
    /// Interaction type: 2 command, 3 component, 4 autocomplete, 5 modal submit.
    kind: u64,
    channel_id: u64,
    dispatched_at: Instant,
    /// The callback type it was answered with.
    answered: Option<u64>,
    /// The message `@original` refers to.
    original: Option<u64>,
    /// For components (and modals opened from one): the message the component is on.
    source_message: Option<u64>,
    /// A deferred (type 5) answer not yet replaced: Discord turns the first follow-up into an
    /// edit of the loading message.
    deferred_pending: bool,
}

struct Override {
    method: String,
    path: PathPattern,
    status: u16,
    body: Value,
}

struct World {
    requests: Vec<(Recorded, bool)>,
    connections: Vec<Conn>,
    ready_cursor: usize,
    resumed_cursor: usize,
    /// session id → last sequence number sent in it.
    sessions: HashMap<String, u64>,
    channels: BTreeMap<u64, Value>,
    messages: BTreeMap<u64, Value>,
    /// user id → role ids (members of the guild).
    members: BTreeMap<u64, Vec<u64>>,
    /// The guild's roles.
    roles: Vec<Value>,
    users: BTreeMap<u64, Value>,
    interactions: HashMap<u64, TrackedInteraction>,
    /// `None` for global commands, else the guild.
    commands: BTreeMap<Option<u64>, Vec<Value>>,
    /// Servers the bot was invited to besides `GUILD_ID`.
    other_guilds: Vec<u64>,
    files: HashMap<u64, (String, Vec<u8>)>,
    rate_limit: Option<RateLimit>,
    hits: HashMap<String, VecDeque<Instant>>,
    rate_limited: usize,
    overrides: Vec<Override>,
    interaction_deadline: Option<Duration>,
}

struct Inner {
    world: Mutex<World>,
    changed: Notify,
    next_id: AtomicU64,
    config: Config,
    rest_base: String,
    ws_url: String,
}

/// The running fake. Dropping it stops its servers.
pub struct FakeDiscord {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FakeDiscord {
    /// REST and gateway on 127.0.0.1, ephemeral ports, default configuration.
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Self {
        // reqwest sends even loopback requests through an environment proxy unless NO_PROXY
        // exempts them; the fake would then never see them (FAKE_DISCORD.md §2).
        let exempt = ["NO_PROXY", "no_proxy"].iter().any(|var| {
            std::env::var(var)
                .is_ok_and(|v| v.split(',').any(|h| matches!(h.trim(), "*" | "127.0.0.1")))
        });
        for var in [
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "ALL_PROXY",
            "http_proxy",
            "https_proxy",
            "all_proxy",
        ] {
            assert!(
                exempt || std::env::var_os(var).is_none(),
                "{var} is set: serenity's HTTP client would send the fake's requests through it \
                 (add 127.0.0.1 to NO_PROXY)"
            );
        }
        let rest = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gateway = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let rest_addr: SocketAddr = rest.local_addr().unwrap();
        let gateway_addr: SocketAddr = gateway.local_addr().unwrap();
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let inner = Arc::new(Inner {
            world: Mutex::new(World::new(config.interaction_deadline)),
            changed: Notify::new(),
            next_id: AtomicU64::new((now_ms - DISCORD_EPOCH_MS) << 22),
            config,
            rest_base: format!("http://{rest_addr}"),
            // No path and no query: serenity appends `?v=10` blindly (FAKE_DISCORD.md §3).
            ws_url: format!("ws://{gateway_addr}"),
        });
        let app = Router::new()
            .fallback(rest_handler)
            .with_state(inner.clone());
        let rest_task = tokio::spawn(async move {
            axum::serve(rest, app).await.unwrap();
        });
        let gateway_inner = inner.clone();
        let gateway_task = tokio::spawn(async move {
            while let Ok((stream, _)) = gateway.accept().await {
                tokio::spawn(serve_gateway(stream, gateway_inner.clone()));
            }
        });
        Self {
            inner,
            tasks: vec![rest_task, gateway_task],
        }
    }

    /// `http://127.0.0.1:PORT`, for serenity's `HttpBuilder::proxy`.
    pub fn api_base(&self) -> String {
        self.inner.rest_base.clone()
    }

    /// `ws://127.0.0.1:PORT`, what `GET /gateway` answers.
    pub fn gateway_url(&self) -> String {
        self.inner.ws_url.clone()
    }

    /// serenity's `Http` pointed at the fake with the fake's token. Only `proxy` and
    /// `ratelimiter_disabled` differ from production: with the ratelimiter on, serenity builds
    /// requests without the proxy and would call the real discord.com (FAKE_DISCORD.md §2).
    pub fn http(&self) -> serenity::all::Http {
        HttpBuilder::new(&self.inner.config.token)
            .proxy(self.api_base())
            .ratelimiter_disabled(true)
            .build()
    }

    /// A fresh snowflake, unique within this fake.
    pub fn snowflake(&self) -> u64 {
        self.inner.snowflake()
    }

    // ------------------------------------------------------------------ gateway

    /// Waits for the next connection (one not returned by an earlier call) to have been sent
    /// READY, and returns it. Call once per expected (re)connection.
    pub async fn wait_ready(&self, timeout: Duration) -> GatewayConnection {
        self.wait_until("a READY on a new gateway connection", timeout, |w| {
            let next = w
                .connections
                .iter()
                .filter(|c| c.info.ready_sent)
                .nth(w.ready_cursor)
                .map(|c| c.info.clone());
            if next.is_some() {
                w.ready_cursor += 1;
            }
            next
        })
        .await
    }

    /// Waits for the next connection that resumed a session and was sent RESUMED.
    pub async fn wait_resumed(&self, timeout: Duration) -> GatewayConnection {
        self.wait_until("a RESUMED on a new gateway connection", timeout, |w| {
            let next = w
                .connections
                .iter()
                .filter(|c| c.info.resumed_sent)
                .nth(w.resumed_cursor)
                .map(|c| c.info.clone());
            if next.is_some() {
                w.resumed_cursor += 1;
            }
            next
        })
        .await
    }

    /// Waits until connection `index` is closed (by either side).
    pub async fn wait_closed(&self, index: usize, timeout: Duration) -> GatewayConnection {
        self.wait_until(
            &format!("gateway connection {index} to close"),
            timeout,
            |w| {
                w.connections
                    .get(index)
                    .filter(|c| !c.info.open)
                    .map(|c| c.info.clone())
            },
        )
        .await
    }

    /// Waits until connection `index` has sent at least `n` heartbeats (the fake ACKs each).
    pub async fn wait_heartbeats(
        &self,
        index: usize,
        n: u32,
        timeout: Duration,
    ) -> GatewayConnection {
        self.wait_until(
            &format!("{n} heartbeats on gateway connection {index}"),
            timeout,
            |w| {
                w.connections
                    .get(index)
                    .filter(|c| c.info.heartbeats >= n)
                    .map(|c| c.info.clone())
            },
        )
        .await
    }

    pub fn connections(&self) -> Vec<GatewayConnection> {
        self.world()
            .connections
            .iter()
            .map(|c| c.info.clone())
            .collect()
    }

    /// Sends a dispatch (op 0) with the next sequence number on the newest live session. Panics
    /// if serenity would not understand `d` (it would silently drop it as `Event::Unknown`,
    /// FAKE_DISCORD.md §3) or if no session is ready. What it carries becomes known to the fake:
    /// an interaction (for callback checks), its member, its channel, its messages.
    pub fn dispatch(&self, event: &str, d: Value) {
        check_dispatch(event, &d);
        self.dispatch_unchecked(event, d);
    }

    /// Like `dispatch` without the check: for tests that send malformed payloads on purpose.
    pub fn dispatch_unchecked(&self, event: &str, d: Value) {
        let mut w = self.world();
        let Some(conn) = w.live_connection() else {
            // Not panicking with the lock held keeps the fake usable for the failure report.
            let seen = w.describe();
            drop(w);
            panic!("dispatch {event}: no gateway session is ready (wait_ready first)\n{seen}");
        };
        w.learn_from_dispatch(event, &d);
        let session = w.connections[conn].info.session_id.clone().unwrap();
        let seq = w.sessions.get_mut(&session).unwrap();
        *seq += 1;
        let frame = json!({"op": 0, "s": *seq, "t": event, "d": d});
        // The connection task writes frames in channel order, so sequence numbers arrive in order.
        let _ = w.connections[conn].tx.send(Outgoing::Frame(frame));
    }

    /// Sends op 7 RECONNECT on the newest live session: serenity reconnects and resumes.
    pub fn request_reconnect(&self) {
        let w = self.world();
        let conn = w.live_connection().expect("no live gateway session");
        let _ = w.connections[conn].tx.send(Outgoing::Frame(
            json!({"op": 7, "d": null, "s": null, "t": null}),
        ));
    }

    /// Closes the newest live connection with `code` (4000 "unknown error" lets serenity resume).
    pub fn drop_connection(&self, code: u16) {
        let w = self.world();
        let conn = w.live_connection().expect("no live gateway session");
        let _ = w.connections[conn]
            .tx
            .send(Outgoing::Close(code, "closed by the fake".into()));
    }

    // ------------------------------------------------------------------ REST

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.world()
            .requests
            .iter()
            .map(|(r, _)| r.clone())
            .collect()
    }

    /// Requests no route of the fake answered.
    pub fn unhandled(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| !r.handled).collect()
    }

    /// Waits for the earliest request not yet returned by `wait_for`/`take_unread` whose method
    /// (`*` for any) and path match, marks it read and returns it. On timeout, panics listing
    /// every request the fake saw.
    pub async fn wait_for(
        &self,
        method: &str,
        path: impl Into<PathPattern>,
        timeout: Duration,
    ) -> Recorded {
        let path = path.into();
        self.wait_until(&format!("{method} {path}"), timeout, |w| {
            let (rec, read) = w.requests.iter_mut().find(|(r, read)| {
                !*read && method_matches(method, &r.method) && path.matches(&r.path)
            })?;
            *read = true;
            Some(rec.clone())
        })
        .await
    }

    /// Waits until a request whose method and path match has arrived, and returns the earliest,
    /// leaving it as it was (read or not): for checks about reading itself.
    pub async fn wait_seen(
        &self,
        method: &str,
        path: impl Into<PathPattern>,
        timeout: Duration,
    ) -> Recorded {
        let path = path.into();
        self.wait_until(&format!("{method} {path}"), timeout, |w| {
            w.requests
                .iter()
                .find(|(r, _)| method_matches(method, &r.method) && path.matches(&r.path))
                .map(|(r, _)| r.clone())
        })
        .await
    }

    /// Every request not yet returned by `wait_for`/`take_unread`, now marked read.
    pub fn take_unread(&self) -> Vec<Recorded> {
        let mut w = self.world();
        let mut out = Vec::new();
        for (rec, read) in w.requests.iter_mut().filter(|(_, read)| !*read) {
            *read = true;
            out.push(rec.clone());
        }
        out
    }

    /// Panics, listing them, if there are requests no `wait_for`/`take_unread` has seen.
    pub fn assert_no_unread(&self) {
        let unread = self.take_unread();
        assert!(
            unread.is_empty(),
            "unexpected requests:\n{}",
            unread
                .iter()
                .map(|r| format!("  {}\n    body: {}", r.summary(), r.body))
                .collect::<String>()
        );
    }

    /// Turns per-route rate limiting on (Some) or off (None).
    pub fn set_rate_limit(&self, limit: Option<RateLimit>) {
        let mut w = self.world();
        w.rate_limit = limit;
        w.hits.clear();
    }

    /// How many requests were answered 429.
    pub fn rate_limited_count(&self) -> usize {
        self.world().rate_limited
    }

    /// The next request matching method and path is answered with `status` and `body` (e.g. 403
    /// `{"code":50013,"message":"Missing Permissions"}`) instead of its usual answer.
    pub fn respond_once(
        &self,
        method: &str,
        path: impl Into<PathPattern>,
        status: u16,
        body: Value,
    ) {
        self.world().overrides.push(Override {
            method: method.into(),
            path: path.into(),
            status,
            body,
        });
    }

    pub fn set_interaction_deadline(&self, deadline: Option<Duration>) {
        self.world().interaction_deadline = deadline;
    }

    // ------------------------------------------------------------------ world

    /// Adds (or replaces) a channel object, e.g. another text channel or a thread.
    pub fn add_channel(&self, channel: Value) {
        let id = snowflake_of(&channel["id"]).expect("channel needs an id");
        self.world().channels.insert(id, channel);
    }

    /// Adds (or replaces) a message someone else posted, e.g. one a test will start a thread on.
    pub fn add_message(&self, message: Value) {
        let id = snowflake_of(&message["id"]).expect("message needs an id");
        self.world().messages.insert(id, message);
    }

    pub fn channel(&self, id: u64) -> Option<Value> {
        self.world().channels.get(&id).cloned()
    }

    pub fn message(&self, id: u64) -> Option<Value> {
        self.world().messages.get(&id).cloned()
    }

    /// Waits until message `id`, as it is now, satisfies `done` (the bot edits status messages in
    /// place), and returns it. On timeout, panics showing every state the message went through.
    pub async fn wait_message(
        &self,
        id: u64,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        self.wait_until_reporting(
            &format!("message {id} to show {what}"),
            timeout,
            |w| w.messages.get(&id).filter(|m| done(m)).cloned(),
            |w| w.message_history(id),
        )
        .await
    }

    /// Messages in a channel, oldest first.
    pub fn messages_in(&self, channel_id: u64) -> Vec<Value> {
        self.world()
            .messages
            .values()
            .filter(|m| snowflake_of(&m["channel_id"]) == Some(channel_id))
            .cloned()
            .collect()
    }

    /// The message `@original` of an interaction refers to, by interaction token.
    pub fn original_response(&self, token: &str) -> Option<Value> {
        let w = self.world();
        let i = w.interactions.values().find(|i| i.token == token)?;
        w.messages.get(&i.original?).cloned()
    }

    /// Commands registered globally (None) or in a guild, as the fake stored them (with ids).
    pub fn registered_commands(&self, guild: Option<u64>) -> Vec<Value> {
        self.world()
            .commands
            .get(&guild)
            .cloned()
            .unwrap_or_default()
    }

    /// Gives (or takes) a member the Manage Server role, as REST lookups see it (poise's
    /// `required_permissions` asks REST, not the interaction payload). Dispatching an interaction
    /// built with `with_manage_server` does the same.
    pub fn set_manage_server(&self, user_id: u64, yes: bool) {
        let mut w = self.world();
        let roles = w.members.entry(user_id).or_default();
        roles.retain(|r| *r != MANAGER_ROLE_ID);
        if yes {
            roles.push(MANAGER_ROLE_ID);
        }
    }

    /// Adds a role to the guild (REST lists it with the guild's roles), e.g. one an access rule
    /// names. Members get it through the interactions that carry it.
    pub fn add_role(&self, id: u64, name: &str, permissions: u64) {
        let mut w = self.world();
        let position = w.roles.len() as u64;
        w.roles
            .push(role_json(id, name, permissions, position, false));
    }

    /// The bot joins another server (its commands can be registered there).
    pub fn join_guild(&self, id: u64) {
        self.world().other_guilds.push(id);
    }

    /// Hosts a file the way Discord's CDN would and returns its attachment object, e.g. for a
    /// slash command's attachment option. `Attachment::download` fetches it from the fake.
    pub fn host_file(&self, filename: &str, bytes: &[u8]) -> Value {
        let mut w = self.world();
        self.inner.attachment(&mut w, filename, None, bytes)
    }

    // ------------------------------------------------------------------ helpers

    fn world(&self) -> MutexGuard<'_, World> {
        self.inner.world()
    }

    /// Re-checks `f` whenever the world changes until it yields, or panics after `timeout`
    /// with everything the fake saw.
    async fn wait_until<T>(
        &self,
        what: &str,
        timeout: Duration,
        f: impl FnMut(&mut World) -> Option<T>,
    ) -> T {
        self.wait_until_reporting(what, timeout, f, World::describe)
            .await
    }

    /// `wait_until` whose timeout panic shows `report` of the world.
    async fn wait_until_reporting<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&mut World) -> Option<T>,
        report: impl Fn(&World) -> String,
    ) -> T {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Register interest before checking, so a change between the check and the wait is
            // not missed.
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(found) = f(&mut self.world()) {
                return found;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let seen = report(&self.world());
                panic!("timed out after {timeout:?} waiting for {what}\n{seen}");
            }
        }
    }
}

impl Inner {
    /// The world, even after a panic elsewhere poisoned the lock: a failing test should still get
    /// its report of what the fake saw.
    fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn snowflake(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn notify(&self) {
        self.changed.notify_waiters();
    }

    fn attachment(
        &self,
        w: &mut World,
        filename: &str,
        content_type: Option<&str>,
        bytes: &[u8],
    ) -> Value {
        let id = self.snowflake();
        w.files.insert(id, (filename.to_string(), bytes.to_vec()));
        let url = format!("{}/attachments/{id}/{filename}", self.rest_base);
        json!({
            "id": id.to_string(), "filename": filename, "size": bytes.len(),
            "url": url, "proxy_url": url,
            "content_type": content_type.map(str::to_string).unwrap_or_else(|| guess_content_type(filename)),
        })
    }
}

impl World {
    fn new(interaction_deadline: Option<Duration>) -> Self {
        let mut channels = BTreeMap::new();
        channels.insert(CHANNEL_ID, text_channel(CHANNEL_ID, "general"));
        let mut members = BTreeMap::new();
        members.insert(BOT_ID, vec![BOT_ROLE_ID]);
        members.insert(OWNER_ID, vec![]);
        members.insert(ALICE, vec![]);
        members.insert(BOB, vec![]);
        let users = [BOT_ID, OWNER_ID, ALICE, BOB]
            .into_iter()
            .map(|id| (id, user_json(id)))
            .collect();
        Self {
            requests: Vec::new(),
            connections: Vec::new(),
            ready_cursor: 0,
            resumed_cursor: 0,
            sessions: HashMap::new(),
            channels,
            messages: BTreeMap::new(),
            members,
            roles: roles_json().as_array().unwrap().clone(),
            users,
            interactions: HashMap::new(),
            commands: BTreeMap::new(),
            other_guilds: Vec::new(),
            files: HashMap::new(),
            rate_limit: None,
            hits: HashMap::new(),
            rate_limited: 0,
            overrides: Vec::new(),
            interaction_deadline,
        }
    }

    /// The newest open connection whose session is ready or resumed.
    fn live_connection(&self) -> Option<usize> {
        self.connections
            .iter()
            .rposition(|c| c.info.open && (c.info.ready_sent || c.info.resumed_sent))
    }

    fn learn_from_dispatch(&mut self, event: &str, d: &Value) {
        match event {
            "INTERACTION_CREATE" => {
                if let Some(member) = d.get("member") {
                    self.learn_member(member);
                }
                if let Some(channel) = d.get("channel").filter(|c| c.get("name").is_some()) {
                    let id = snowflake_of(&channel["id"]).unwrap_or_default();
                    self.channels
                        .entry(id)
                        .or_insert_with(|| with_guild(channel.clone()));
                }
                if let Some(message) = d.get("message") {
                    self.learn_message(message);
                }
                if let Some(messages) = d
                    .pointer("/data/resolved/messages")
                    .and_then(Value::as_object)
                {
                    for m in messages.values() {
                        self.learn_message(m);
                    }
                }
                if let (Some(id), Some(token)) = (snowflake_of(&d["id"]), d["token"].as_str()) {
                    self.interactions.insert(
                        id,
                        TrackedInteraction {
                            token: token.into(),
                            kind: d["type"].as_u64().unwrap_or_default(),
                            channel_id: snowflake_of(&d["channel_id"]).unwrap_or(CHANNEL_ID),
                            dispatched_at: Instant::now(),
                            answered: None,
                            original: None,
                            source_message: d.get("message").and_then(|m| snowflake_of(&m["id"])),
                            deferred_pending: false,
                        },
                    );
                }
            }
            "MESSAGE_CREATE" | "MESSAGE_UPDATE" => {
                if let Some(member) = d.get("member") {
                    let mut member = member.clone();
                    member["user"] = d["author"].clone();
                    self.learn_member(&member);
                }
                self.learn_message(d);
            }
            "CHANNEL_CREATE" | "CHANNEL_UPDATE" | "THREAD_CREATE" | "THREAD_UPDATE" => {
                if let Some(id) = snowflake_of(&d["id"]) {
                    self.channels.insert(id, d.clone());
                }
            }
            _ => {}
        }
    }

    fn learn_member(&mut self, member: &Value) {
        let Some(user_id) = snowflake_of(&member["user"]["id"]) else {
            return;
        };
        let roles = member["roles"]
            .as_array()
            .map(|r| r.iter().filter_map(snowflake_of).collect())
            .unwrap_or_default();
        self.members.insert(user_id, roles);
        self.users.insert(user_id, member["user"].clone());
    }

    fn learn_message(&mut self, message: &Value) {
        if let Some(id) = snowflake_of(&message["id"]) {
            self.messages.insert(id, message.clone());
        }
    }

    /// Every state message `id` went through (its post, its edits, updates in answer to a
    /// component on it), then how it is now: for failure messages.
    fn message_history(&self, id: u64) -> String {
        let edit_path = format!("/messages/{id}");
        let mut out = format!("message {id} went through:\n");
        for (r, _) in &self.requests {
            let posted = r.method == "POST" && snowflake_of(&r.response["id"]) == Some(id);
            let edited = r.method == "PATCH" && r.path.ends_with(&edit_path);
            let updated = r.path.ends_with("/callback")
                && r.body["type"] == 7
                && r.path
                    .split('/')
                    .nth(2)
                    .and_then(|i| i.parse().ok())
                    .and_then(|i: u64| self.interactions.get(&i))
                    .is_some_and(|i| i.source_message == Some(id));
            if posted || edited || updated {
                let body = if updated { &r.body["data"] } else { &r.body };
                let _ = writeln!(
                    out,
                    "  #{} {}: {:?} buttons {}",
                    r.seq,
                    r.summary(),
                    truncate(body["content"].as_str().unwrap_or_default(), 600),
                    button_labels(&body["components"])
                );
            }
        }
        match self.messages.get(&id) {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "now: {:?} buttons {}",
                    truncate(m["content"].as_str().unwrap_or_default(), 600),
                    button_labels(&m["components"])
                );
            }
            None => out.push_str("now: unknown to the fake\n"),
        }
        out
    }

    /// Everything the fake saw, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::from("REST requests the fake saw:\n");
        if self.requests.is_empty() {
            out.push_str("  (none)\n");
        }
        for (r, read) in &self.requests {
            let mark = if *read { " " } else { "*" };
            let _ = writeln!(out, " {mark}#{} {}", r.seq, r.summary());
            if !r.body.is_null() {
                let _ = writeln!(out, "      body: {}", truncate(&r.body.to_string(), 300));
            }
            if !r.files.is_empty() {
                let names: Vec<_> = r.files.iter().map(|f| f.filename.as_str()).collect();
                let _ = writeln!(out, "      files: {names:?}");
            }
        }
        out.push_str("  (* = not yet returned by wait_for/take_unread)\nGateway connections:\n");
        if self.connections.is_empty() {
            out.push_str("  (none)\n");
        }
        for c in &self.connections {
            let i = &c.info;
            let _ = writeln!(
                out,
                "  #{} uri={} identified={} resumed={} ready_sent={} open={} heartbeats={} close_code={:?} other frames={}",
                i.index,
                i.uri,
                i.identify.is_some(),
                i.resume.is_some(),
                i.ready_sent,
                i.open,
                i.heartbeats,
                i.close_code,
                i.received.len()
            );
        }
        out
    }
}

/// `["Stop"]`: the labels of the buttons in a message's component rows.
fn button_labels(rows: &Value) -> String {
    let labels: Vec<&str> = rows
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().into_iter().flatten())
        .filter_map(|c| c["label"].as_str())
        .collect();
    format!("{labels:?}")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

// ---------------------------------------------------------------------------------------------
// REST.

/// What a route answers.
struct Reply {
    status: u16,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    raw: Option<(String, Vec<u8>)>,
    handled: bool,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: Some(body),
            headers: Vec::new(),
            raw: None,
            handled: true,
        }
    }

    fn ok(body: Value) -> Self {
        Self::json(200, body)
    }

    fn no_content() -> Self {
        Self {
            status: 204,
            body: None,
            headers: Vec::new(),
            raw: None,
            handled: true,
        }
    }

    /// Discord's error body: `{"code","message"}` (serenity parses it into `DiscordJsonError`).
    fn error(status: u16, code: u64, message: &str) -> Self {
        Self::json(status, json!({"code": code, "message": message}))
    }

    fn not_found_route() -> Self {
        let mut r = Self::json(404, json!({"code": 0, "message": "404: Not Found"}));
        r.handled = false;
        r
    }
}

struct Req<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    body: &'a Value,
    files: &'a [UploadedFile],
}

async fn rest_handler(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let content_type = header("content-type");
    let (body, files) = match content_type.as_deref() {
        Some(ct) if ct.starts_with("multipart/form-data") => parse_multipart(ct, &bytes),
        _ if bytes.is_empty() => (Value::Null, Vec::new()),
        _ => (
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
            Vec::new(),
        ),
    };
    let full_path = uri.path();
    let (in_api, path) = match full_path.strip_prefix("/api/v10") {
        Some(p) => (true, p.to_string()),
        None => (false, full_path.to_string()),
    };
    let query = uri.query().unwrap_or_default().to_string();
    let authorization = header("authorization");

    let mut w = inner.world();
    let req = Req {
        method: method.as_str(),
        path: &path,
        query: &query,
        body: &body,
        files: &files,
    };
    let route = route_key(method.as_str(), &path);
    let reply = answer(
        &inner,
        &mut w,
        &req,
        in_api,
        authorization.as_deref(),
        &route,
    );
    let recorded = Recorded {
        seq: w.requests.len(),
        at: std::time::Instant::now(),
        method: method.to_string(),
        path: path.clone(),
        query,
        authorization,
        content_type,
        audit_log_reason: header("x-audit-log-reason"),
        body,
        files,
        status: reply.status,
        response: reply.body.clone().unwrap_or(Value::Null),
        response_headers: reply
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        handled: reply.handled,
        route,
    };
    w.requests.push((recorded, false));
    drop(w);
    inner.notify();

    let mut response = Response::builder().status(StatusCode::from_u16(reply.status).unwrap());
    for (name, value) in &reply.headers {
        response = response.header(*name, value);
    }
    match (reply.raw, reply.body) {
        (Some((ct, bytes)), _) => response.header("content-type", ct).body(Body::from(bytes)),
        (None, Some(body)) => response
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        (None, None) => response.body(Body::empty()),
    }
    .unwrap()
}

/// Rate limiting, one-shot overrides and authentication, then the route.
fn answer(
    inner: &Inner,
    w: &mut World,
    req: &Req,
    in_api: bool,
    authorization: Option<&str>,
    route: &str,
) -> Reply {
    if let Some(limited) = rate_limit(w, req, route) {
        return limited;
    }
    if let Some(i) = w
        .overrides
        .iter()
        .position(|o| method_matches(&o.method, req.method) && o.path.matches(req.path))
    {
        let o = w.overrides.remove(i);
        return Reply::json(o.status, o.body);
    }
    if !in_api {
        return serve_file(w, req);
    }
    // Interaction callbacks and interaction webhooks are authenticated by their token alone, and
    // `GET /gateway` needs no authentication. Answering it whatever the token also keeps serenity
    // on the fake: when it fails, serenity falls back to the real gateway (FAKE_DISCORD.md §3).
    // A wrong token is refused at IDENTIFY instead (close 4004), as Discord does.
    let open_route = req.path.starts_with("/interactions/")
        || req.path.starts_with("/webhooks/")
        || (req.method == "GET" && req.path == "/gateway");
    let expected = format!("Bot {}", inner.config.token);
    if !open_route && authorization != Some(expected.as_str()) {
        return Reply::error(401, 0, "401: Unauthorized");
    }
    route_api(inner, w, req)
}

/// Discord buckets rate limits per route and "major parameter": the channel, guild, webhook (and
/// token) or interaction (and token) stay in the key, other ids are folded.
fn route_key(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.split('/').collect();
    let mut out = Vec::with_capacity(segments.len());
    for (i, seg) in segments.iter().enumerate() {
        let prev = i.checked_sub(1).map(|j| segments[j]).unwrap_or("");
        let prev2 = i.checked_sub(2).map(|j| segments[j]).unwrap_or("");
        let major = matches!(prev, "channels" | "guilds" | "webhooks" | "interactions")
            || matches!(prev2, "webhooks" | "interactions");
        if !major && !seg.is_empty() && seg.chars().all(|c| c.is_ascii_digit()) {
            out.push("{id}");
        } else {
            out.push(seg);
        }
    }
    format!("{method} {}", out.join("/"))
}

fn rate_limit(w: &mut World, req: &Req, route: &str) -> Option<Reply> {
    let limit = w.rate_limit.clone()?;
    if let Some((method, path)) = &limit.only {
        if !(method_matches(method, req.method) && path.matches(req.path)) {
            return None;
        }
    }
    let now = Instant::now();
    let hits = w.hits.entry(route.to_string()).or_default();
    while hits
        .front()
        .is_some_and(|t| now.duration_since(*t) >= limit.window)
    {
        hits.pop_front();
    }
    if hits.len() < limit.max_requests {
        hits.push_back(now);
        return None;
    }
    // The bucket resets when its oldest request leaves the window.
    let retry_after = limit.window - now.duration_since(*hits.front().unwrap());
    let secs = (retry_after.as_secs_f64() * 1000.0).ceil() / 1000.0;
    w.rate_limited += 1;
    let mut reply = Reply::json(
        429,
        json!({"message": RATE_LIMIT_MESSAGE, "retry_after": secs, "global": false}),
    );
    reply.headers = vec![
        // HTTP's Retry-After is whole seconds; the body carries the precise value.
        ("retry-after", (secs.ceil() as u64).max(1).to_string()),
        ("x-ratelimit-limit", limit.max_requests.to_string()),
        ("x-ratelimit-remaining", "0".into()),
        ("x-ratelimit-reset-after", format!("{secs:.3}")),
        ("x-ratelimit-bucket", format!("{:x}", fxhash(route))),
        ("x-ratelimit-scope", "user".into()),
    ];
    Some(reply)
}

fn fxhash(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn serve_file(w: &World, req: &Req) -> Reply {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if let ("GET", ["attachments", id, _name]) = (req.method, segments.as_slice()) {
        if let Some((filename, bytes)) = id.parse().ok().and_then(|id: u64| w.files.get(&id)) {
            let mut r = Reply::no_content();
            r.status = 200;
            r.raw = Some((guess_content_type(filename), bytes.clone()));
            return r;
        }
    }
    Reply::not_found_route()
}

fn route_api(inner: &Inner, w: &mut World, req: &Req) -> Reply {
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    let id = |s: &str| s.parse::<u64>().ok();
    match (req.method, segments.as_slice()) {
        ("GET", ["gateway"]) => Reply::ok(json!({"url": inner.ws_url})),
        ("GET", ["gateway", "bot"]) => Reply::ok(json!({
            "url": inner.ws_url, "shards": 1,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
        })),
        ("GET", ["oauth2", "applications", "@me"]) | ("GET", ["applications", "@me"]) => {
            Reply::ok(application_json())
        }
        ("GET", ["users", "@me"]) => Reply::ok(user_json(BOT_ID)),
        ("GET", ["users", user]) => match id(user).and_then(|u| w.users.get(&u)) {
            Some(u) => Reply::ok(u.clone()),
            None => Reply::error(404, 10013, "Unknown User"),
        },
        ("POST", ["users", "@me", "channels"]) => {
            let Some(user) = snowflake_of(&req.body["recipient_id"]) else {
                return invalid_form(&[(
                    "recipient_id",
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                )]);
            };
            // One DM channel per recipient, like Discord.
            let existing = w
                .channels
                .values()
                .find(|c| c["type"] == 1 && snowflake_of(&c["recipients"][0]["id"]) == Some(user));
            if let Some(c) = existing {
                return Reply::ok(c.clone());
            }
            let channel_id = inner.snowflake();
            let recipient = w
                .users
                .get(&user)
                .cloned()
                .unwrap_or_else(|| user_json(user));
            let channel = json!({
                "id": channel_id.to_string(), "type": 1, "last_message_id": null, "flags": 0,
                "recipients": [recipient],
            });
            w.channels.insert(channel_id, channel.clone());
            Reply::ok(channel)
        }

        // Application commands.
        (m, ["applications", app, "commands", rest @ ..]) => {
            commands_route(inner, w, req, m, app, None, rest)
        }
        (m, ["applications", app, "guilds", guild, "commands", rest @ ..]) => {
            commands_route(inner, w, req, m, app, Some(guild), rest)
        }

        // Interactions.
        ("POST", ["interactions", interaction, token, "callback"]) => {
            callback(inner, w, req, interaction, token)
        }
        (m, ["webhooks", app, token, rest @ ..]) => {
            interaction_webhook(inner, w, req, m, app, token, rest)
        }

        // Channels and messages.
        ("GET", ["channels", channel]) => match id(channel).and_then(|c| w.channels.get(&c)) {
            Some(c) => Reply::ok(c.clone()),
            None => unknown_channel(),
        },
        ("PATCH", ["channels", channel]) => edit_channel(w, req, channel),
        ("DELETE", ["channels", channel]) => {
            match id(channel).and_then(|c| w.channels.remove(&c)) {
                Some(c) => Reply::ok(c),
                None => unknown_channel(),
            }
        }
        ("POST", ["channels", channel, "messages"]) => post_message(inner, w, req, channel),
        ("GET", ["channels", channel, "messages"]) => {
            let Some(channel) = id(channel).filter(|c| w.channels.contains_key(c)) else {
                return unknown_channel();
            };
            let limit = query_param(req.query, "limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50);
            let mut messages: Vec<Value> = w
                .messages
                .values()
                .filter(|m| snowflake_of(&m["channel_id"]) == Some(channel))
                .cloned()
                .collect();
            messages.reverse();
            messages.truncate(limit);
            Reply::ok(Value::Array(messages))
        }
        ("GET", ["channels", channel, "messages", message]) => {
            match find_message(w, channel, message) {
                Some(m) => Reply::ok(m.clone()),
                None => unknown_message(),
            }
        }
        ("PATCH", ["channels", channel, "messages", message]) => {
            edit_channel_message(inner, w, req, channel, message)
        }
        ("DELETE", ["channels", channel, "messages", message]) => {
            match find_message(w, channel, message) {
                Some(_) => {
                    w.messages.remove(&id(message).unwrap());
                    Reply::no_content()
                }
                None => unknown_message(),
            }
        }
        ("POST", ["channels", channel, "threads"]) => create_thread(inner, w, req, channel, None),
        ("POST", ["channels", channel, "messages", message, "threads"]) => {
            create_thread(inner, w, req, channel, Some(message))
        }
        ("POST", ["channels", _, "typing"]) => Reply::no_content(),
        ("PUT" | "DELETE", ["channels", _, "pins", _]) => Reply::no_content(),
        ("PUT" | "DELETE", ["channels", _, "messages", _, "reactions", ..]) => Reply::no_content(),
        ("PUT" | "DELETE", ["channels", _, "thread-members", _]) => Reply::no_content(),
        ("GET", ["channels", _, "thread-members"]) => Reply::ok(json!([])),

        // The guild.
        ("GET", ["guilds", guild]) if id(guild) == Some(GUILD_ID) => {
            let mut guild = guild_json();
            guild["roles"] = Value::Array(w.roles.clone());
            Reply::ok(guild)
        }
        ("GET", ["guilds", guild, "roles"]) if id(guild) == Some(GUILD_ID) => {
            Reply::ok(Value::Array(w.roles.clone()))
        }
        ("GET", ["guilds", guild, "channels"]) if id(guild) == Some(GUILD_ID) => {
            Reply::ok(Value::Array(
                w.channels
                    .values()
                    .filter(|c| matches!(c["type"].as_u64(), Some(0 | 2 | 4 | 5 | 13 | 15)))
                    .cloned()
                    .collect(),
            ))
        }
        ("GET", ["guilds", guild, "members", user]) if id(guild) == Some(GUILD_ID) => {
            match id(user).and_then(|u| w.members.get(&u).map(|roles| (u, roles))) {
                Some((u, roles)) => {
                    let user = w.users.get(&u).cloned().unwrap_or_else(|| user_json(u));
                    Reply::ok(member_object(user, roles, None))
                }
                None => Reply::error(404, 10007, "Unknown Member"),
            }
        }
        ("GET" | "PATCH" | "POST" | "PUT" | "DELETE", ["guilds", guild, ..])
            if id(guild) != Some(GUILD_ID) =>
        {
            Reply::error(404, 10004, "Unknown Guild")
        }
        _ => Reply::not_found_route(),
    }
}

fn unknown_channel() -> Reply {
    Reply::error(404, 10003, "Unknown Channel")
}

fn unknown_message() -> Reply {
    Reply::error(404, 10008, "Unknown Message")
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn find_message<'a>(w: &'a World, channel: &str, message: &str) -> Option<&'a Value> {
    let m = w.messages.get(&message.parse().ok()?)?;
    (snowflake_of(&m["channel_id"]) == channel.parse().ok()).then_some(m)
}

fn commands_route(
    inner: &Inner,
    w: &mut World,
    req: &Req,
    method: &str,
    app: &str,
    guild: Option<&str>,
    rest: &[&str],
) -> Reply {
    if app.parse() != Ok(APP_ID) {
        return Reply::error(403, 50001, "Missing Access");
    }
    let guild = match guild.map(|g| g.parse::<u64>()) {
        None => None,
        Some(Ok(GUILD_ID)) => Some(GUILD_ID),
        Some(Ok(other)) if w.other_guilds.contains(&other) => Some(other),
        Some(_) => return Reply::error(403, 50001, "Missing Access"),
    };
    match (method, rest) {
        ("GET", []) => Reply::ok(Value::Array(
            w.commands.get(&guild).cloned().unwrap_or_default(),
        )),
        ("PUT", []) => {
            let Some(list) = req.body.as_array() else {
                return invalid_form(&[("_", "BASE_TYPE_ARRAY", "Must be an array")]);
            };
            let errors = validate_commands(list);
            if !errors.is_empty() {
                return invalid_form_owned(errors);
            }
            // Re-registering an unchanged command keeps its id, as on Discord.
            let old = w.commands.remove(&guild).unwrap_or_default();
            let stored: Vec<Value> = list
                .iter()
                .map(|c| {
                    let kind = c["type"].as_u64().unwrap_or(1);
                    let existing = old
                        .iter()
                        .find(|o| o["name"] == c["name"] && o["type"].as_u64() == Some(kind))
                        .and_then(|o| snowflake_of(&o["id"]));
                    command_echo(inner, c, existing, guild)
                })
                .collect();
            w.commands.insert(guild, stored.clone());
            Reply::ok(Value::Array(stored))
        }
        ("POST", []) => {
            let errors = validate_commands(std::slice::from_ref(req.body));
            if !errors.is_empty() {
                return invalid_form_owned(
                    errors
                        .into_iter()
                        .map(|(p, c, m)| (p.trim_start_matches("0.").to_string(), c, m))
                        .collect(),
                );
            }
            let list = w.commands.entry(guild).or_default();
            let kind = req.body["type"].as_u64().unwrap_or(1);
            let existing = list
                .iter()
                .position(|o| o["name"] == req.body["name"] && o["type"].as_u64() == Some(kind));
            let id = existing.and_then(|i| snowflake_of(&list[i]["id"]));
            let echoed = command_echo(inner, req.body, id, guild);
            match existing {
                Some(i) => list[i] = echoed.clone(),
                None => list.push(echoed.clone()),
            }
            Reply::json(if existing.is_some() { 200 } else { 201 }, echoed)
        }
        ("GET", ["permissions"]) => Reply::ok(json!([])),
        ("GET" | "PATCH" | "DELETE", [command]) => {
            let list = w.commands.entry(guild).or_default();
            let Some(i) = list.iter().position(|c| c["id"].as_str() == Some(*command)) else {
                return Reply::error(404, 10063, "Unknown application command");
            };
            match method {
                "GET" => Reply::ok(list[i].clone()),
                "DELETE" => {
                    list.remove(i);
                    Reply::no_content()
                }
                _ => {
                    merge(&mut list[i], req.body);
                    Reply::ok(list[i].clone())
                }
            }
        }
        _ => Reply::not_found_route(),
    }
}

/// A registered command as Discord returns it: the request plus the fields serenity's `Command`
/// requires.
fn command_echo(inner: &Inner, c: &Value, id: Option<u64>, guild: Option<u64>) -> Value {
    let mut out = c.clone();
    let id = id.unwrap_or_else(|| inner.snowflake());
    out["id"] = json!(id.to_string());
    out["application_id"] = json!(APP_ID.to_string());
    out["version"] = json!(inner.snowflake().to_string());
    if out.get("type").is_none() {
        out["type"] = json!(1);
    }
    if out.get("description").is_none() {
        out["description"] = json!("");
    }
    if let Some(g) = guild {
        out["guild_id"] = json!(g.to_string());
    }
    out
}

fn callback(inner: &Inner, w: &mut World, req: &Req, interaction: &str, token: &str) -> Reply {
    let deadline = w.interaction_deadline;
    let Some(tracked) = interaction
        .parse::<u64>()
        .ok()
        .and_then(|id| w.interactions.get(&id))
        .filter(|i| i.token == token)
    else {
        return Reply::error(404, 10062, "Unknown interaction");
    };
    if tracked.answered.is_some() {
        return Reply::error(400, 40060, "Interaction has already been acknowledged.");
    }
    if deadline.is_some_and(|d| tracked.dispatched_at.elapsed() > d) {
        return Reply::error(404, 10062, "Unknown interaction");
    }
    let kind = tracked.kind;
    let channel_id = tracked.channel_id;
    let source = tracked.source_message;
    let response_type = req.body["type"].as_u64().unwrap_or(0);
    // Which answers Discord accepts for which interaction type.
    let allowed = match kind {
        2 => matches!(response_type, 4 | 5 | 9),
        3 => matches!(response_type, 4 | 5 | 6 | 7 | 9),
        4 => response_type == 8,
        5 => matches!(response_type, 4..=7),
        _ => true,
    };
    if !allowed {
        return invalid_form(&[(
            "type",
            "INTERACTION_RESPONSE_TYPE_INVALID",
            &format!("Interaction response type {response_type} is not valid for interaction type {kind}"),
        )]);
    }
    let data = &req.body["data"];
    let errors = match response_type {
        4 | 7 => validate_message(data, req.files.len(), "data"),
        8 => validate_choices(data),
        9 => validate_modal(data),
        _ => Vec::new(),
    };
    if !errors.is_empty() {
        return invalid_form_owned(errors);
    }

    let id: u64 = interaction.parse().unwrap();
    let (original, deferred) = match response_type {
        4 | 5 => {
            let message_id = inner.snowflake();
            let mut message =
                build_message(inner, w, message_id, channel_id, data, req.files, None);
            message["type"] = json!(if kind == 2 { 20 } else { 19 });
            message["webhook_id"] = json!(APP_ID.to_string());
            message["application_id"] = json!(APP_ID.to_string());
            if response_type == 5 {
                let flags = message["flags"].as_u64().unwrap_or(0) | FLAG_LOADING;
                message["flags"] = json!(flags);
            }
            w.messages.insert(message_id, message);
            (Some(message_id), response_type == 5)
        }
        6 => (source, false),
        7 => {
            if let Some(m) = source.and_then(|s| w.messages.get(&s).cloned()) {
                let updated = build_message(
                    inner,
                    w,
                    source.unwrap(),
                    channel_id,
                    data,
                    req.files,
                    Some(&m),
                );
                w.messages.insert(source.unwrap(), updated);
            }
            (source, false)
        }
        _ => (None, false),
    };
    let tracked = w.interactions.get_mut(&id).unwrap();
    tracked.answered = Some(response_type);
    tracked.original = original;
    tracked.deferred_pending = deferred;
    Reply::no_content()
}

/// `/webhooks/{app}/{token}/...`: follow-ups and `@original` of interactions.
fn interaction_webhook(
    inner: &Inner,
    w: &mut World,
    req: &Req,
    method: &str,
    app: &str,
    token: &str,
    rest: &[&str],
) -> Reply {
    let Some((&interaction_id, _)) = w
        .interactions
        .iter()
        .find(|(_, i)| i.token == token && i.answered.is_some())
        .filter(|_| app.parse() == Ok(APP_ID))
    else {
        // Discord creates the interaction's webhook when the interaction is answered.
        return Reply::error(404, 10015, "Unknown Webhook");
    };
    let tracked = &w.interactions[&interaction_id];
    let (channel_id, original, deferred_pending) = (
        tracked.channel_id,
        tracked.original,
        tracked.deferred_pending,
    );
    match (method, rest) {
        ("POST", []) => {
            let errors = validate_message(req.body, req.files.len(), "");
            if !errors.is_empty() {
                return invalid_form_owned(errors);
            }
            // After a deferred message response, Discord makes the first follow-up an edit of the
            // loading message.
            if deferred_pending {
                let original = original.unwrap();
                w.interactions
                    .get_mut(&interaction_id)
                    .unwrap()
                    .deferred_pending = false;
                return edit_stored_message(inner, w, req, original);
            }
            let message_id = inner.snowflake();
            let mut message =
                build_message(inner, w, message_id, channel_id, req.body, req.files, None);
            message["webhook_id"] = json!(APP_ID.to_string());
            message["application_id"] = json!(APP_ID.to_string());
            w.messages.insert(message_id, message.clone());
            Reply::ok(message)
        }
        (_, ["messages", which]) => {
            let message_id = if *which == "@original" {
                original
            } else {
                which.parse().ok()
            };
            let Some(message_id) = message_id.filter(|m| w.messages.contains_key(m)) else {
                return unknown_message();
            };
            match method {
                "GET" => Reply::ok(w.messages[&message_id].clone()),
                "PATCH" => {
                    let errors = validate_message(req.body, req.files.len(), "");
                    if !errors.is_empty() {
                        return invalid_form_owned(errors);
                    }
                    if Some(message_id) == original {
                        w.interactions
                            .get_mut(&interaction_id)
                            .unwrap()
                            .deferred_pending = false;
                    }
                    edit_stored_message(inner, w, req, message_id)
                }
                "DELETE" => {
                    w.messages.remove(&message_id);
                    Reply::no_content()
                }
                _ => Reply::not_found_route(),
            }
        }
        _ => Reply::not_found_route(),
    }
}

fn edit_stored_message(inner: &Inner, w: &mut World, req: &Req, message_id: u64) -> Reply {
    let previous = w.messages[&message_id].clone();
    let channel_id = snowflake_of(&previous["channel_id"]).unwrap_or(CHANNEL_ID);
    let mut message = build_message(
        inner,
        w,
        message_id,
        channel_id,
        req.body,
        req.files,
        Some(&previous),
    );
    // An edit resolves a deferred "thinking…" message.
    if let Some(flags) = message["flags"].as_u64() {
        message["flags"] = json!(flags & !FLAG_LOADING);
    }
    w.messages.insert(message_id, message.clone());
    Reply::ok(message)
}

fn post_message(inner: &Inner, w: &mut World, req: &Req, channel: &str) -> Reply {
    let Some(channel_id) = channel
        .parse::<u64>()
        .ok()
        .filter(|c| w.channels.contains_key(c))
    else {
        return unknown_channel();
    };
    let b = req.body;
    let has_content = b["content"].as_str().is_some_and(|s| !s.is_empty())
        || b["embeds"].as_array().is_some_and(|e| !e.is_empty())
        || b["components"].as_array().is_some_and(|e| !e.is_empty())
        || b["sticker_ids"].as_array().is_some_and(|e| !e.is_empty())
        || b.get("poll").is_some_and(|p| !p.is_null())
        || !req.files.is_empty();
    if !has_content {
        return Reply::error(400, 50006, "Cannot send an empty message");
    }
    let errors = validate_message(b, req.files.len(), "");
    if !errors.is_empty() {
        return invalid_form_owned(errors);
    }
    let message_id = inner.snowflake();
    let mut message = build_message(inner, w, message_id, channel_id, b, req.files, None);
    if b.get("message_reference").is_some_and(|r| !r.is_null()) {
        message["type"] = json!(19);
        message["message_reference"] = b["message_reference"].clone();
    }
    w.messages.insert(message_id, message.clone());
    if let Some(channel) = w.channels.get_mut(&channel_id) {
        channel["last_message_id"] = json!(message_id.to_string());
    }
    Reply::ok(message)
}

fn edit_channel_message(
    inner: &Inner,
    w: &mut World,
    req: &Req,
    channel: &str,
    message: &str,
) -> Reply {
    let Some(previous) = find_message(w, channel, message).cloned() else {
        return unknown_message();
    };
    if snowflake_of(&previous["author"]["id"]) != Some(BOT_ID) {
        return Reply::error(403, 50005, "Cannot edit a message authored by another user");
    }
    let errors = validate_message(req.body, req.files.len(), "");
    if !errors.is_empty() {
        return invalid_form_owned(errors);
    }
    edit_stored_message(inner, w, req, message.parse().unwrap())
}

fn create_thread(
    inner: &Inner,
    w: &mut World,
    req: &Req,
    channel: &str,
    message: Option<&str>,
) -> Reply {
    let Some((parent_id, parent)) = channel
        .parse::<u64>()
        .ok()
        .and_then(|c| w.channels.get(&c).map(|p| (c, p.clone())))
    else {
        return unknown_channel();
    };
    if !matches!(parent["type"].as_u64(), Some(0 | 5 | 15)) {
        return Reply::error(400, 50024, "Cannot execute action on this channel type");
    }
    let name = req.body["name"].as_str().unwrap_or_default();
    if name.is_empty() || name.chars().count() > 100 {
        return invalid_form(&[(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        )]);
    }
    let forum = parent["type"] == 15;
    let (thread_id, kind) = match message {
        // A thread started from a message has the message's id.
        Some(m) => {
            let Some(m) = find_message(w, channel, m).and_then(|m| snowflake_of(&m["id"])) else {
                return unknown_message();
            };
            if w.channels.contains_key(&m) {
                return Reply::error(
                    400,
                    160004,
                    "A thread has already been created for this message",
                );
            }
            (m, 11)
        }
        // Without a message, Discord still defaults to a private thread.
        None => (
            inner.snowflake(),
            if forum {
                11
            } else {
                req.body["type"].as_u64().unwrap_or(12)
            },
        ),
    };
    let now = now_timestamp();
    let auto_archive = req.body["auto_archive_duration"].as_u64().unwrap_or(4320);
    let thread = json!({
        "id": thread_id.to_string(), "type": kind, "guild_id": GUILD_ID.to_string(),
        "parent_id": parent_id.to_string(), "owner_id": BOT_ID.to_string(), "name": name,
        "last_message_id": null, "rate_limit_per_user": req.body["rate_limit_per_user"].as_u64().unwrap_or(0),
        "flags": 0, "message_count": 0, "member_count": 1, "total_message_sent": 0,
        "thread_metadata": {
            "archived": false, "auto_archive_duration": auto_archive, "archive_timestamp": now,
            "locked": false, "create_timestamp": now,
            "invitable": req.body["invitable"].as_bool().unwrap_or(true),
        },
        "member": {"id": thread_id.to_string(), "user_id": BOT_ID.to_string(), "join_timestamp": now, "flags": 0},
    });
    w.channels.insert(thread_id, thread.clone());
    if forum {
        // A forum post's starter message shares the thread's id.
        let starter = build_message(
            inner,
            w,
            thread_id,
            thread_id,
            &req.body["message"],
            req.files,
            None,
        );
        w.messages.insert(thread_id, starter.clone());
        let mut out = thread;
        out["message"] = starter;
        return Reply::json(201, out);
    }
    Reply::json(201, thread)
}

fn edit_channel(w: &mut World, req: &Req, channel: &str) -> Reply {
    let Some(c) = channel
        .parse::<u64>()
        .ok()
        .and_then(|c| w.channels.get_mut(&c))
    else {
        return unknown_channel();
    };
    let mut body = req.body.clone();
    if let (Some(meta), Some(obj)) = (c.get_mut("thread_metadata"), body.as_object_mut()) {
        for key in ["archived", "locked", "auto_archive_duration", "invitable"] {
            if let Some(v) = obj.remove(key) {
                meta[key] = v;
            }
        }
    }
    merge(c, &body);
    Reply::ok(c.clone())
}

/// A message object as Discord returns it, from a create/edit body (`previous` for edits).
fn build_message(
    inner: &Inner,
    w: &mut World,
    id: u64,
    channel_id: u64,
    body: &Value,
    files: &[UploadedFile],
    previous: Option<&Value>,
) -> Value {
    let mut m = previous.cloned().unwrap_or_else(|| {
        json!({
            "id": id.to_string(), "channel_id": channel_id.to_string(), "author": user_json(BOT_ID),
            "content": "", "timestamp": now_timestamp(), "edited_timestamp": null, "tts": false,
            "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
            "embeds": [], "components": [], "pinned": false, "type": 0, "flags": 0,
        })
    });
    if previous.is_some() {
        m["edited_timestamp"] = json!(now_timestamp());
    }
    for key in ["content", "embeds", "components", "tts", "poll"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            m[key] = v.clone();
        }
    }
    if let Some(flags) = body["flags"].as_u64() {
        let kept = m["flags"].as_u64().unwrap_or(0) & FLAG_EPHEMERAL;
        m["flags"] = json!(flags | kept);
    }
    // Attachments: `attachments` in the body lists what the message keeps (existing ids) and the
    // new uploads (placeholder ids matching the `files[N]` fields). Without it, an edit keeps
    // what was there and adds the uploads.
    let previous_attachments = m["attachments"].as_array().cloned().unwrap_or_default();
    let upload = |w: &mut World, placeholder: Option<u64>, description: &Value| -> Option<Value> {
        let file = match placeholder {
            Some(n) => files.iter().find(|f| f.field == format!("files[{n}]")),
            None => None,
        }?;
        let mut a = inner.attachment(w, &file.filename, file.content_type.as_deref(), &file.bytes);
        if !description.is_null() {
            a["description"] = description.clone();
        }
        Some(a)
    };
    let attachments: Vec<Value> = match body["attachments"].as_array() {
        Some(list) => list
            .iter()
            .filter_map(|a| {
                let aid = snowflake_of(&a["id"]);
                previous_attachments
                    .iter()
                    .find(|p| aid.is_some() && snowflake_of(&p["id"]) == aid)
                    .cloned()
                    .or_else(|| upload(w, aid, &a["description"]))
            })
            .collect(),
        None => {
            let mut kept = previous_attachments;
            for f in files {
                kept.push(inner.attachment(w, &f.filename, f.content_type.as_deref(), &f.bytes));
            }
            kept
        }
    };
    m["attachments"] = Value::Array(attachments);
    m
}

fn merge(target: &mut Value, patch: &Value) {
    if let (Some(t), Some(p)) = (target.as_object_mut(), patch.as_object()) {
        for (k, v) in p {
            t.insert(k.clone(), v.clone());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Discord's documented limits, checked so a bot learns here, not in production, that Discord
// would answer 400 Invalid Form Body (code 50035) with the path of each bad field.

type FieldError = (String, &'static str, String);

fn invalid_form(errors: &[(&str, &'static str, &str)]) -> Reply {
    invalid_form_owned(
        errors
            .iter()
            .map(|(p, c, m)| (p.to_string(), *c, m.to_string()))
            .collect(),
    )
}

fn invalid_form_owned(errors: Vec<FieldError>) -> Reply {
    let mut tree = json!({});
    for (path, code, message) in errors {
        let mut node = &mut tree;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            node = node
                .as_object_mut()
                .unwrap()
                .entry(part)
                .or_insert_with(|| json!({}));
        }
        let list = node
            .as_object_mut()
            .unwrap()
            .entry("_errors")
            .or_insert_with(|| json!([]));
        list.as_array_mut()
            .unwrap()
            .push(json!({"code": code, "message": message}));
    }
    Reply::json(
        400,
        json!({"code": 50035, "message": "Invalid Form Body", "errors": tree}),
    )
}

fn join(prefix: &str, key: impl std::fmt::Display) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_len(errors: &mut Vec<FieldError>, path: String, v: &Value, min: usize, max: usize) {
    if let Some(s) = v.as_str() {
        let n = s.chars().count();
        if n < min || n > max {
            let message = if min == 0 {
                format!("Must be {max} or fewer in length.")
            } else {
                format!("Must be between {min} and {max} in length.")
            };
            errors.push((path, "BASE_TYPE_BAD_LENGTH", message));
        }
    } else if min > 0 {
        errors.push((path, "BASE_TYPE_REQUIRED", "This field is required".into()));
    }
}

fn check_count(errors: &mut Vec<FieldError>, path: String, v: &Value, max: usize) {
    if v.as_array().is_some_and(|a| a.len() > max) {
        errors.push((
            path,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {max} or fewer in length."),
        ));
    }
}

/// A message body (create, edit, follow-up, or callback `data`).
fn validate_message(b: &Value, files: usize, prefix: &str) -> Vec<FieldError> {
    let mut e = Vec::new();
    if b.is_null() {
        return e;
    }
    if b["content"].is_string() {
        check_len(&mut e, join(prefix, "content"), &b["content"], 0, 2000);
    }
    check_count(&mut e, join(prefix, "embeds"), &b["embeds"], 10);
    let mut total = 0;
    for (i, embed) in b["embeds"].as_array().into_iter().flatten().enumerate() {
        let p = join(prefix, format!("embeds.{i}"));
        for (key, max) in [("title", 256), ("description", 4096)] {
            check_len(&mut e, join(&p, key), &embed[key], 0, max);
            total += embed[key].as_str().map_or(0, |s| s.chars().count());
        }
        check_len(
            &mut e,
            join(&p, "footer.text"),
            &embed["footer"]["text"],
            0,
            2048,
        );
        check_len(
            &mut e,
            join(&p, "author.name"),
            &embed["author"]["name"],
            0,
            256,
        );
        total += embed["footer"]["text"]
            .as_str()
            .map_or(0, |s| s.chars().count());
        total += embed["author"]["name"]
            .as_str()
            .map_or(0, |s| s.chars().count());
        check_count(&mut e, join(&p, "fields"), &embed["fields"], 25);
        for (j, field) in embed["fields"].as_array().into_iter().flatten().enumerate() {
            check_len(
                &mut e,
                join(&p, format!("fields.{j}.name")),
                &field["name"],
                1,
                256,
            );
            check_len(
                &mut e,
                join(&p, format!("fields.{j}.value")),
                &field["value"],
                1,
                1024,
            );
            total += field["name"].as_str().map_or(0, |s| s.chars().count());
            total += field["value"].as_str().map_or(0, |s| s.chars().count());
        }
    }
    if total > 6000 {
        e.push((
            join(prefix, "embeds"),
            "BASE_TYPE_MAX_LENGTH",
            "Embed size exceeds maximum size of 6000".into(),
        ));
    }
    if files > 10 {
        e.push((
            join(prefix, "files"),
            "BASE_TYPE_MAX_LENGTH",
            "Must be 10 or fewer in length.".into(),
        ));
    }
    validate_components(&mut e, &join(prefix, "components"), &b["components"]);
    e
}

fn validate_components(e: &mut Vec<FieldError>, prefix: &str, rows: &Value) {
    check_count(e, prefix.to_string(), rows, 5);
    for (i, row) in rows.as_array().into_iter().flatten().enumerate() {
        let p = format!("{prefix}.{i}");
        if row["type"] != 1 {
            e.push((
                join(&p, "type"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "Top-level components must be action rows".into(),
            ));
            continue;
        }
        let children = row["components"].as_array().cloned().unwrap_or_default();
        let selects = children
            .iter()
            .filter(|c| matches!(c["type"].as_u64(), Some(3 | 5 | 6 | 7 | 8)))
            .count();
        if children.is_empty() || children.len() > 5 || (selects > 0 && children.len() > 1) {
            e.push((
                join(&p, "components"),
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "An action row holds 1 to 5 buttons or a single select menu".into(),
            ));
        }
        for (j, c) in children.iter().enumerate() {
            let cp = format!("{p}.components.{j}");
            if c["type"] == 2 && c["style"] == 5 {
                check_len(e, join(&cp, "url"), &c["url"], 1, 512);
            } else if c["type"] == 2 && c["style"] == 6 {
                // Premium buttons carry a sku_id and nothing else.
            } else {
                check_len(e, join(&cp, "custom_id"), &c["custom_id"], 1, 100);
            }
            check_len(e, join(&cp, "label"), &c["label"], 0, 80);
            check_len(e, join(&cp, "placeholder"), &c["placeholder"], 0, 150);
            if c["type"] == 3 {
                let options = c["options"].as_array().map_or(0, Vec::len);
                if !(1..=25).contains(&options) {
                    e.push((
                        join(&cp, "options"),
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 25 in length.".into(),
                    ));
                }
                for (k, o) in c["options"].as_array().into_iter().flatten().enumerate() {
                    check_len(e, format!("{cp}.options.{k}.label"), &o["label"], 1, 100);
                    check_len(e, format!("{cp}.options.{k}.value"), &o["value"], 1, 100);
                    check_len(
                        e,
                        format!("{cp}.options.{k}.description"),
                        &o["description"],
                        0,
                        100,
                    );
                }
            }
        }
    }
}

fn validate_modal(d: &Value) -> Vec<FieldError> {
    let mut e = Vec::new();
    check_len(&mut e, "data.title".into(), &d["title"], 1, 45);
    check_len(&mut e, "data.custom_id".into(), &d["custom_id"], 1, 100);
    let rows = d["components"].as_array().cloned().unwrap_or_default();
    if !(1..=5).contains(&rows.len()) {
        e.push((
            "data.components".into(),
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 5 in length.".into(),
        ));
    }
    for (i, row) in rows.iter().enumerate() {
        let p = format!("data.components.{i}");
        let inputs = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || inputs.len() != 1 || inputs[0]["type"] != 4 {
            // Label (type 18) modals are newer than serenity 0.12 and cannot be parsed back by it.
            e.push((
                p,
                "MODAL_LAYOUT_INVALID",
                "Each modal row must be an action row holding one text input".into(),
            ));
            continue;
        }
        let input = &inputs[0];
        let ip = format!("{p}.components.0");
        check_len(
            &mut e,
            format!("{ip}.custom_id"),
            &input["custom_id"],
            1,
            100,
        );
        check_len(&mut e, format!("{ip}.label"), &input["label"], 1, 45);
        check_len(
            &mut e,
            format!("{ip}.placeholder"),
            &input["placeholder"],
            0,
            100,
        );
        check_len(&mut e, format!("{ip}.value"), &input["value"], 0, 4000);
        if !matches!(input["style"].as_u64(), Some(1 | 2)) {
            e.push((
                format!("{ip}.style"),
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 2}.".into(),
            ));
        }
        if input["max_length"].as_u64().is_some_and(|m| m > 4000) {
            e.push((
                format!("{ip}.max_length"),
                "NUMBER_TYPE_MAX",
                "int value should be less than or equal to 4000.".into(),
            ));
        }
    }
    e
}

fn validate_choices(d: &Value) -> Vec<FieldError> {
    let mut e = Vec::new();
    check_count(&mut e, "data.choices".into(), &d["choices"], 25);
    for (i, c) in d["choices"].as_array().into_iter().flatten().enumerate() {
        check_len(&mut e, format!("data.choices.{i}.name"), &c["name"], 1, 100);
        if c["value"].is_string() {
            check_len(
                &mut e,
                format!("data.choices.{i}.value"),
                &c["value"],
                1,
                100,
            );
        }
    }
    e
}

/// Chat-input command and option names: 1-32 letters, digits, `-` or `_`, lowercase.
fn valid_chat_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=32).contains(&n)
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '_')
        && name.to_lowercase() == name
}

fn validate_commands(list: &[Value]) -> Vec<FieldError> {
    let mut e = Vec::new();
    let chat = list
        .iter()
        .filter(|c| c["type"].as_u64().unwrap_or(1) == 1)
        .count();
    if chat > 100 {
        e.push((
            "_".into(),
            "APPLICATION_COMMANDS_TOO_MANY",
            "Too many chat input commands (max 100)".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, c) in list.iter().enumerate() {
        let p = i.to_string();
        let kind = c["type"].as_u64().unwrap_or(1);
        let name = c["name"].as_str().unwrap_or_default();
        if !seen.insert((kind, name.to_string())) {
            e.push((
                join(&p, "name"),
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                format!("Application command names must be unique: {name}"),
            ));
        }
        if kind == 1 {
            if !valid_chat_name(name) {
                e.push((
                    join(&p, "name"),
                    "APPLICATION_COMMAND_INVALID_NAME",
                    format!("Command name is invalid: {name:?}"),
                ));
            }
            check_len(&mut e, join(&p, "description"), &c["description"], 1, 100);
            validate_options(&mut e, &join(&p, "options"), &c["options"]);
        } else {
            // User and message context menus: any case and spaces, no description.
            let n = name.chars().count();
            if !(1..=32).contains(&n) {
                e.push((
                    join(&p, "name"),
                    "BASE_TYPE_BAD_LENGTH",
                    "Must be between 1 and 32 in length.".into(),
                ));
            }
            if c["description"].as_str().is_some_and(|d| !d.is_empty())
                || c.get("options")
                    .is_some_and(|o| !o.is_null() && o.as_array().is_none_or(|a| !a.is_empty()))
            {
                e.push((
                    join(&p, "description"),
                    "APPLICATION_COMMAND_CONTEXT_MENU_FIELDS",
                    "Context menu commands cannot have a description or options".into(),
                ));
            }
        }
    }
    e
}

fn validate_options(e: &mut Vec<FieldError>, prefix: &str, options: &Value) {
    check_count(e, prefix.to_string(), options, 25);
    let mut optional_seen = false;
    for (i, o) in options.as_array().into_iter().flatten().enumerate() {
        let p = format!("{prefix}.{i}");
        let name = o["name"].as_str().unwrap_or_default();
        if !valid_chat_name(name) {
            e.push((
                join(&p, "name"),
                "APPLICATION_COMMAND_INVALID_NAME",
                format!("Option name is invalid: {name:?}"),
            ));
        }
        check_len(e, join(&p, "description"), &o["description"], 1, 100);
        check_count(e, join(&p, "choices"), &o["choices"], 25);
        let kind = o["type"].as_u64().unwrap_or(0);
        if matches!(kind, 1 | 2) {
            validate_options(e, &join(&p, "options"), &o["options"]);
        } else if o["required"].as_bool().unwrap_or(false) {
            if optional_seen {
                e.push((
                    join(&p, "required"),
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options".into(),
                ));
            }
        } else {
            optional_seen = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Multipart (what serenity sends for uploads: `files[N]` parts and a `payload_json` part).

fn parse_multipart(content_type: &str, body: &[u8]) -> (Value, Vec<UploadedFile>) {
    let Some(boundary) = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()
        .map(|b| b.trim_matches('"'))
    else {
        return (Value::Null, Vec::new());
    };
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    // Prefixing CRLF makes the first delimiter look like the others.
    let mut data = b"\r\n".to_vec();
    data.extend_from_slice(body);
    let mut parts = Vec::new();
    let mut rest = &data[..];
    while let Some(start) = find(rest, &delimiter) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let after_crlf = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let end = find(after_crlf, &delimiter).unwrap_or(after_crlf.len());
        parts.push(&after_crlf[..end]);
        rest = &after_crlf[end..];
    }
    let mut payload = Value::Null;
    let mut fields = Map::new();
    let mut files = Vec::new();
    for part in parts {
        let Some(split) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let content = &part[split + 4..];
        let mut name = None;
        let mut filename = None;
        let mut ctype = None;
        for line in head.lines() {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                name = header_param(line, "name");
                filename = header_param(line, "filename");
            } else if lower.starts_with("content-type:") {
                ctype = Some(line["content-type:".len()..].trim().to_string());
            }
        }
        let name = name.unwrap_or_default();
        match filename {
            Some(filename) => files.push(UploadedFile {
                field: name,
                filename,
                content_type: ctype,
                bytes: content.to_vec(),
            }),
            None if name == "payload_json" => {
                payload = serde_json::from_slice(content).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(content).into_owned())
                });
            }
            None => {
                fields.insert(
                    name,
                    Value::String(String::from_utf8_lossy(content).into_owned()),
                );
            }
        }
    }
    // Endpoints without payload_json send their fields as separate parts.
    if payload.is_null() && !fields.is_empty() {
        payload = Value::Object(fields);
    }
    (payload, files)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `name="files[0]"` from a Content-Disposition line (not matching inside `filename=`).
fn header_param(line: &str, key: &str) -> Option<String> {
    line.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        (k == key).then(|| v.trim_matches('"').to_string())
    })
}

fn guess_content_type(filename: &str) -> String {
    let ext = filename
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "txt" | "log" => "text/plain; charset=utf-8",
        "md" => "text/markdown; charset=utf-8",
        "json" => "application/json",
        "diff" | "patch" => "text/x-diff; charset=utf-8",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "zip" => "application/zip",
        _ => "application/octet-stream",
    }
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// Gateway.

// tungstenite's handshake callback type is fixed; its large error type is not ours to box.
#[allow(clippy::result_large_err)]
async fn serve_gateway(stream: tokio::net::TcpStream, inner: Arc<Inner>) {
    let mut uri = String::new();
    let callback = |req: &Request, resp: WsResponse| -> Result<WsResponse, ErrorResponse> {
        uri = req.uri().to_string();
        Ok(resp)
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let index = {
        let mut w = inner.world();
        let index = w.connections.len();
        w.connections.push(Conn {
            info: GatewayConnection {
                index,
                uri,
                identify: None,
                resume: None,
                session_id: None,
                ready_sent: false,
                resumed_sent: false,
                open: true,
                heartbeats: 0,
                received: Vec::new(),
                close_code: None,
            },
            tx,
        });
        index
    };
    inner.notify();
    let send = |v: Value| WsMessage::Text(v.to_string());
    let hello = json!({"op": 10, "s": null, "t": null, "d": {"heartbeat_interval": inner.config.heartbeat_interval_ms}});
    if sink.send(send(hello)).await.is_err() {
        return close_connection(&inner, index, None);
    }
    let mut close_code = None;
    loop {
        tokio::select! {
            incoming = source.next() => {
                let text = match incoming {
                    Some(Ok(WsMessage::Text(t))) => t,
                    Some(Ok(WsMessage::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Ok(WsMessage::Close(frame))) => {
                        close_code = frame.map(|f| u16::from(f.code));
                        break;
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(_)) | None => break,
                };
                let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                for reply in handle_gateway_frame(&inner, index, payload) {
                    let failed = match reply {
                        Outgoing::Frame(v) => sink.send(send(v)).await.is_err(),
                        Outgoing::Close(code, reason) => {
                            let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await;
                            true
                        }
                    };
                    if failed {
                        return close_connection(&inner, index, None);
                    }
                }
                mark_sent(&inner, index);
            }
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Frame(v)) => {
                    if sink.send(send(v)).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Close(code, reason)) => {
                    let _ = sink.send(WsMessage::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await;
                    break;
                }
                None => break,
            },
        }
    }
    close_connection(&inner, index, close_code);
}

fn close_connection(inner: &Inner, index: usize, close_code: Option<u16>) {
    let mut w = inner.world();
    let info = &mut w.connections[index].info;
    info.open = false;
    info.close_code = close_code;
    drop(w);
    inner.notify();
}

/// After the READY/RESUMED frame is on the wire, waiters may see it.
fn mark_sent(inner: &Inner, index: usize) {
    let mut w = inner.world();
    let info = &mut w.connections[index].info;
    let changed = (info.identify.is_some() && !info.ready_sent)
        || (info.resume.is_some() && info.session_id.is_some() && !info.resumed_sent);
    if info.identify.is_some() && info.session_id.is_some() {
        info.ready_sent = true;
    }
    if info.resume.is_some() && info.session_id.is_some() {
        info.resumed_sent = true;
    }
    drop(w);
    if changed {
        inner.notify();
    }
}

/// The fake's answers to one client frame.
fn handle_gateway_frame(inner: &Inner, index: usize, payload: Value) -> Vec<Outgoing> {
    let mut w = inner.world();
    let op = payload["op"].as_u64();
    let out = match op {
        Some(1) => {
            w.connections[index].info.heartbeats += 1;
            vec![Outgoing::Frame(
                json!({"op": 11, "s": null, "t": null, "d": null}),
            )]
        }
        Some(2) => {
            let token = payload["d"]["token"].as_str().unwrap_or_default();
            w.connections[index].info.identify = Some(payload.clone());
            if token.trim_start_matches("Bot ") != inner.config.token {
                vec![Outgoing::Close(4004, "Authentication failed.".into())]
            } else {
                let session_id = format!("fake-session-{index}");
                w.sessions.insert(session_id.clone(), 1);
                w.connections[index].info.session_id = Some(session_id.clone());
                vec![Outgoing::Frame(
                    json!({"op": 0, "s": 1, "t": "READY", "d": ready_json(&session_id, &inner.ws_url)}),
                )]
            }
        }
        Some(6) => {
            let session_id = payload["d"]["session_id"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            w.connections[index].info.resume = Some(payload.clone());
            match w.sessions.get_mut(&session_id) {
                Some(seq) => {
                    // Nothing was missed: the fake only sends while a connection is live.
                    *seq += 1;
                    let frame = json!({"op": 0, "s": *seq, "t": "RESUMED", "d": {}});
                    w.connections[index].info.session_id = Some(session_id);
                    vec![Outgoing::Frame(frame)]
                }
                // An unknown session cannot be resumed: the client must identify again.
                None => vec![Outgoing::Frame(
                    json!({"op": 9, "s": null, "t": null, "d": false}),
                )],
            }
        }
        _ => {
            w.connections[index].info.received.push(payload);
            Vec::new()
        }
    };
    drop(w);
    inner.notify();
    out
}

/// Panics unless serenity would decode the dispatch into the event it names.
fn check_dispatch(event: &str, d: &Value) {
    let decoded: Event = serde_json::from_value(json!({"t": event, "d": d}))
        .unwrap_or_else(|e| panic!("dispatch {event}: not a gateway event serenity can read: {e}"));
    if let Event::Unknown(_) = decoded {
        // Decode the payload on its own to say which field is wrong.
        let detail = match event {
            "INTERACTION_CREATE" => serde_json::from_value::<Interaction>(d.clone())
                .err()
                .map(|e| e.to_string()),
            "MESSAGE_CREATE" => serde_json::from_value::<serenity::all::Message>(d.clone())
                .err()
                .map(|e| e.to_string()),
            _ => None,
        };
        panic!(
            "dispatch {event}: serenity would drop this payload as Event::Unknown ({}); use dispatch_unchecked to send it anyway\n{d}",
            detail.unwrap_or_else(|| "unknown event name or missing fields".into())
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Model JSON, shaped like Discord's and accepted by serenity 0.12.5's models.

fn snowflake_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn now_timestamp() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn user_name(id: u64) -> &'static str {
    match id {
        BOT_ID => "codecourier-test",
        ALICE => "alice",
        BOB => "bob",
        OWNER_ID => "owner",
        _ => "someone",
    }
}

/// A user object; the bot's has `bot: true`.
pub fn user_json(id: u64) -> Value {
    json!({
        "id": id.to_string(), "username": user_name(id), "discriminator": "0",
        "global_name": null, "avatar": null, "bot": id == BOT_ID, "public_flags": 0, "flags": 0,
    })
}

fn member_object(user: Value, roles: &[u64], permissions: Option<u64>) -> Value {
    let mut m = json!({
        "user": user, "nick": null, "avatar": null, "banner": null,
        "roles": roles.iter().map(u64::to_string).collect::<Vec<_>>(),
        "joined_at": TIMESTAMP_ZERO, "premium_since": null, "deaf": false, "mute": false,
        "flags": 0, "pending": false, "communication_disabled_until": null,
    });
    if let Some(p) = permissions {
        m["permissions"] = json!(p.to_string());
    }
    m
}

/// A guild member as interactions carry it (with `permissions`: the member's permissions in the
/// channel). Ordinary members have no roles and `PERMS_MEMBER`.
pub fn member_json(user_id: u64, permissions: u64) -> Value {
    let roles: &[u64] = if permissions & MANAGE_GUILD != 0 {
        &[MANAGER_ROLE_ID]
    } else {
        &[]
    };
    member_object(user_json(user_id), roles, Some(permissions))
}

pub fn text_channel(id: u64, name: &str) -> Value {
    json!({
        "id": id.to_string(), "type": 0, "guild_id": GUILD_ID.to_string(), "name": name,
        "position": 0, "permission_overwrites": [], "parent_id": null, "topic": null,
        "nsfw": false, "last_message_id": null, "rate_limit_per_user": 0, "flags": 0,
    })
}

fn with_guild(mut channel: Value) -> Value {
    if channel.get("guild_id").is_none() {
        channel["guild_id"] = json!(GUILD_ID.to_string());
    }
    channel
}

fn role_json(id: u64, name: &str, permissions: u64, position: u64, managed: bool) -> Value {
    json!({
        "id": id.to_string(), "name": name, "color": 0, "colors": {"primary_color": 0},
        "hoist": false, "icon": null, "unicode_emoji": null, "position": position,
        "permissions": permissions.to_string(), "managed": managed, "mentionable": false, "flags": 0,
    })
}

fn roles_json() -> Value {
    json!([
        role_json(GUILD_ID, "@everyone", PERMS_MEMBER, 0, false),
        role_json(MANAGER_ROLE_ID, "Manager", MANAGE_GUILD, 1, false),
        role_json(BOT_ROLE_ID, "codecourier-test", PERMS_BOT, 2, true),
    ])
}

/// `GET /guilds/{id}`: the fake guild with its roles (@everyone = ordinary member, Manager =
/// Manage Server, the bot's role).
pub fn guild_json() -> Value {
    json!({
        "id": GUILD_ID.to_string(), "name": "CodeCourier Test", "icon": null, "icon_hash": null,
        "splash": null, "discovery_splash": null, "owner_id": OWNER_ID.to_string(),
        "afk_channel_id": null, "afk_timeout": 300, "widget_enabled": false, "widget_channel_id": null,
        "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
        "roles": roles_json(), "emojis": [], "features": [], "mfa_level": 0, "application_id": null,
        "system_channel_id": null, "system_channel_flags": 0, "rules_channel_id": null,
        "max_presences": null, "max_members": 500000, "vanity_url_code": null, "description": null,
        "banner": null, "premium_tier": 0, "premium_subscription_count": 0, "preferred_locale": "en-US",
        "public_updates_channel_id": null, "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50, "nsfw_level": 0, "stickers": [],
        "premium_progress_bar_enabled": false, "safety_alerts_channel_id": null,
    })
}

/// `GET /oauth2/applications/@me` (poise calls it at startup to learn the owners).
pub fn application_json() -> Value {
    json!({
        "id": APP_ID.to_string(), "name": "CodeCourier Test", "icon": null, "description": "",
        "bot_public": false, "bot_require_code_grant": false, "verify_key": "00",
        "owner": user_json(OWNER_ID), "team": null, "flags": 0, "bot": user_json(BOT_ID),
    })
}

fn ready_json(session_id: &str, ws_url: &str) -> Value {
    json!({
        "v": 10, "user": user_json(BOT_ID), "guilds": [], "session_id": session_id,
        "resume_gateway_url": ws_url, "shard": [0, 1],
        "application": {"id": APP_ID.to_string(), "flags": 0},
        "private_channels": [], "presences": [], "relationships": [],
    })
}

/// A message someone posted, for a component's `message` or a context menu's target.
pub fn message_json(id: u64, channel_id: u64, author_id: u64, content: &str) -> Value {
    json!({
        "id": id.to_string(), "channel_id": channel_id.to_string(), "author": user_json(author_id),
        "content": content, "timestamp": TIMESTAMP_ZERO, "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "components": [], "pinned": false, "type": 0, "flags": 0,
    })
}

// ---------------------------------------------------------------------------------------------
// Interaction payloads (INTERACTION_CREATE `d`), with every field serenity 0.12.5 requires.

/// A guild interaction of `kind` from `user_id` in #general, as an ordinary member.
pub fn interaction(
    kind: u64,
    interaction_id: u64,
    token: &str,
    data: Value,
    user_id: u64,
) -> Value {
    json!({
        "id": interaction_id.to_string(), "application_id": APP_ID.to_string(), "type": kind,
        "token": token, "version": 1, "data": data,
        "guild_id": GUILD_ID.to_string(), "channel_id": CHANNEL_ID.to_string(),
        "channel": {"id": CHANNEL_ID.to_string(), "type": 0, "name": "general", "guild_id": GUILD_ID.to_string(), "flags": 0},
        "member": member_json(user_id, PERMS_MEMBER),
        "app_permissions": PERMS_BOT.to_string(), "locale": "en-US", "guild_locale": "en-US",
        "entitlements": [], "authorizing_integration_owners": {"0": GUILD_ID.to_string()},
        "context": 0, "attachment_size_limit": 10_485_760,
    })
}

/// A stable fake id for a command name (Discord's `data.id`).
pub fn command_id(name: &str) -> u64 {
    1_200_000_000_000_000_000 + fxhash(name) % 1_000_000_000
}

/// `/name` with `options` (an array of `{"name","type","value"}`).
pub fn slash(interaction_id: u64, token: &str, name: &str, options: Value, user_id: u64) -> Value {
    let data = json!({
        "id": command_id(name).to_string(), "name": name, "type": 1,
        "guild_id": GUILD_ID.to_string(), "options": options,
    });
    interaction(2, interaction_id, token, data, user_id)
}

/// `/name subcommand` with the subcommand's `options`.
pub fn subcommand(
    interaction_id: u64,
    token: &str,
    name: &str,
    subcommand: &str,
    options: Value,
    user_id: u64,
) -> Value {
    slash(
        interaction_id,
        token,
        name,
        json!([{"name": subcommand, "type": 1, "options": options}]),
        user_id,
    )
}

/// Autocomplete (type 4) for `/name` while the user types `partial` into `focused_option` (a
/// string option); `other_options` are the options already filled in.
pub fn autocomplete(
    interaction_id: u64,
    token: &str,
    name: &str,
    focused_option: &str,
    partial: &str,
    other_options: Value,
    user_id: u64,
) -> Value {
    let mut options = other_options.as_array().cloned().unwrap_or_default();
    options.push(json!({"name": focused_option, "type": 3, "value": partial, "focused": true}));
    let mut d = slash(interaction_id, token, name, Value::Array(options), user_id);
    d["type"] = json!(4);
    d
}

/// A message context-menu command (command type 3) on `target` (a message object).
pub fn message_context_menu(
    interaction_id: u64,
    token: &str,
    name: &str,
    target: Value,
    user_id: u64,
) -> Value {
    let target_id = target["id"]
        .as_str()
        .expect("target message needs an id")
        .to_string();
    let data = json!({
        "id": command_id(name).to_string(), "name": name, "type": 3,
        "guild_id": GUILD_ID.to_string(), "target_id": target_id,
        "resolved": {"messages": {target_id.clone(): target}},
    });
    interaction(2, interaction_id, token, data, user_id)
}

/// A component press (type 3): a button (`component_type` 2, no values) or a select (3 string,
/// 5 user, 6 role, 7 mentionable, 8 channel) on `message` (a full message object: required).
pub fn component(
    interaction_id: u64,
    token: &str,
    custom_id: &str,
    component_type: u64,
    values: &[&str],
    message: Value,
    user_id: u64,
) -> Value {
    let mut data = json!({"custom_id": custom_id, "component_type": component_type});
    if component_type != 2 {
        data["values"] = json!(values);
    }
    let channel_id = snowflake_of(&message["channel_id"]).unwrap_or(CHANNEL_ID);
    let mut d = interaction(3, interaction_id, token, data, user_id);
    d["channel_id"] = json!(channel_id.to_string());
    d["channel"]["id"] = json!(channel_id.to_string());
    d["message"] = message;
    d
}

/// A modal submit (type 5): one action row with one text input per `(custom_id, value)`.
pub fn modal_submit(
    interaction_id: u64,
    token: &str,
    custom_id: &str,
    inputs: &[(&str, &str)],
    user_id: u64,
) -> Value {
    let rows: Vec<Value> = inputs
        .iter()
        .map(|(id, value)| json!({"type": 1, "components": [{"type": 4, "custom_id": id, "value": value}]}))
        .collect();
    interaction(
        5,
        interaction_id,
        token,
        json!({"custom_id": custom_id, "components": rows}),
        user_id,
    )
}

/// The same interaction from a member with `permissions` (the interaction's `member.permissions`
/// string; Manage Server also gives the Manager role, which REST lookups then agree with).
pub fn with_permissions(mut payload: Value, permissions: u64) -> Value {
    let user = payload["member"]["user"].clone();
    let user_id = snowflake_of(&user["id"]).unwrap_or(ALICE);
    let mut member = member_json(user_id, permissions);
    member["user"] = user;
    payload["member"] = member;
    payload
}

/// The same interaction from a member who has (or lacks) Manage Server.
pub fn with_manage_server(payload: Value, yes: bool) -> Value {
    let permissions = if yes {
        PERMS_MANAGE_SERVER
    } else {
        PERMS_MEMBER
    };
    with_permissions(payload, permissions)
}

/// The same interaction in another channel (a thread, say): `channel` is a channel object.
pub fn in_channel(mut payload: Value, channel: &Value) -> Value {
    payload["channel_id"] = channel["id"].clone();
    payload["channel"] = channel.clone();
    payload
}

// ---------------------------------------------------------------------------------------------
// The silent-drop guard (FAKE_DISCORD.md §3): serenity turns a payload it cannot read into
// `Event::Unknown`, logs it at debug level and runs no handler. Register this probe with
// `ClientBuilder::raw_event_handler` and assert it caught nothing.

#[derive(Clone, Default)]
pub struct UnknownEventProbe {
    inner: Arc<ProbeInner>,
}

#[derive(Default)]
struct ProbeInner {
    events: Mutex<Vec<UnknownEvent>>,
    seen: Mutex<usize>,
    changed: Notify,
}

#[serenity::async_trait]
impl RawEventHandler for UnknownEventProbe {
    async fn raw_event(&self, _ctx: Context, event: Event) {
        if let Event::Unknown(unknown) = event {
            self.inner.events.lock().unwrap().push(unknown);
            self.inner.changed.notify_waiters();
        }
    }
}

impl UnknownEventProbe {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event serenity could not read.
    pub fn events(&self) -> Vec<UnknownEvent> {
        self.inner.events.lock().unwrap().clone()
    }

    pub fn assert_none(&self) {
        let events = self.events();
        assert!(
            events.is_empty(),
            "serenity silently dropped {} event(s) it could not read: {:#?}",
            events.len(),
            events
        );
    }

    /// Waits for the next unknown event not returned before.
    pub async fn wait_unknown(&self, timeout: Duration) -> UnknownEvent {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let events = self.inner.events.lock().unwrap();
                let mut seen = self.inner.seen.lock().unwrap();
                if let Some(e) = events.get(*seen) {
                    *seen += 1;
                    return e.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out after {timeout:?} waiting for serenity to drop an event as Event::Unknown");
            }
        }
    }
}
