//! The git proxy: a sandbox's remote is `http://x-access-token:<placeholder>@<gateway>/git/<path of
//! the upstream URL>`. Only the launch's repository and only its smart-HTTP endpoints are
//! forwarded, with the real token; a push is read before anything goes upstream and passes only
//! when every ref it updates is the launch's branch.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyDataStream, BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};

use super::grants::{GitGrant, LiveGrant, Push};
use super::listener::{basic_credential, basic_password, full, strip_hop_by_hop, text, Body};
use super::Shared;

/// The user name git sends with the placeholder; GitHub takes the same for a token.
pub(super) const USER: &str = "x-access-token";

/// The most bytes of ref-update commands read before a push is judged (a push of thousands of
/// refs stays far below it).
const MAX_COMMAND_BYTES: usize = 1024 * 1024;
/// How much of a refused push's pack is read and thrown away, so git sees the refusal rather
/// than a broken connection.
const MAX_DRAINED_BYTES: usize = 1024 * 1024 * 1024;

/// The gateway path that stands for the grant's repository: `/git` and the upstream URL's path.
pub(super) fn route_of(grant: &GitGrant) -> String {
    format!("/git{}", grant.upstream.path().trim_end_matches('/'))
}

/// Which smart-HTTP call a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Advertise { push: bool },
    UploadPack,
    ReceivePack,
}

fn call_of(method: &Method, rest: &str, query: Option<&str>) -> Option<Call> {
    match (method, rest, query) {
        (&Method::GET, "/info/refs", Some("service=git-upload-pack")) => {
            Some(Call::Advertise { push: false })
        }
        (&Method::GET, "/info/refs", Some("service=git-receive-pack")) => {
            Some(Call::Advertise { push: true })
        }
        (&Method::POST, "/git-upload-pack", None) => Some(Call::UploadPack),
        (&Method::POST, "/git-receive-pack", None) => Some(Call::ReceivePack),
        _ => None,
    }
}

pub(super) async fn forward(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let Some(placeholder) = basic_password(request.headers().get(header::AUTHORIZATION)) else {
        return unauthorized("CodeCourier gateway: this remote needs the launch's credentials");
    };
    let Some(live) = shared.grants.lookup(&placeholder) else {
        return unauthorized(
            "CodeCourier gateway: not a live launch's credentials (they stop working when the launch ends)",
        );
    };
    let Some(grant) = live.grant.git.as_ref() else {
        return text(
            StatusCode::FORBIDDEN,
            "CodeCourier gateway: this launch has no repository",
        );
    };
    let route = route_of(grant);
    let path = request.uri().path();
    let call = path
        .strip_prefix(route.as_str())
        .and_then(|rest| call_of(request.method(), rest, request.uri().query()));
    let Some(call) = call else {
        return text(
            StatusCode::FORBIDDEN,
            &format!(
                "CodeCourier gateway: this launch may reach only its own repository, {route} (git smart HTTP)"
            ),
        );
    };
    tracing::debug!(launch = %live.grant.label, ?call, "gateway: git request");
    match (call, &grant.push) {
        (Call::Advertise { push: true }, Push::Refused) => text(
            StatusCode::FORBIDDEN,
            "CodeCourier gateway: this launch is read-only; it may not push",
        ),
        (Call::ReceivePack, _) => inspect_push(shared, &live, grant, request).await,
        _ => {
            let (parts, body) = request.into_parts();
            let body = (parts.method == Method::POST)
                .then(|| reqwest::Body::wrap_stream(BodyDataStream::new(body)));
            send_upstream(shared, &live, grant, parts, body).await
        }
    }
}

/// Reads the ref updates at the head of a receive-pack request; forwards the whole request when
/// they are the launch's branch, answers git's own report of refused refs otherwise.
async fn inspect_push(
    shared: &Arc<Shared>,
    live: &Arc<LiveGrant>,
    grant: &GitGrant,
    request: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let gzip = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"gzip"));
    let mut reader = CommandReader::new(gzip);
    let mut data = BodyDataStream::new(body);
    let (updates, capabilities) = loop {
        let chunk = match data.next().await {
            Some(Ok(chunk)) => chunk,
            Some(Err(_)) | None => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "CodeCourier gateway: the push ended before its ref updates",
                )
            }
        };
        if reader.push(&chunk).is_err() {
            return text(
                StatusCode::BAD_REQUEST,
                "CodeCourier gateway: the push's gzip body is corrupt",
            );
        }
        match parse_commands(reader.decoded()) {
            Parsed::Complete {
                updates,
                capabilities,
            } => break (updates, capabilities),
            Parsed::Malformed(why) => {
                return text(
                    StatusCode::BAD_REQUEST,
                    &format!("CodeCourier gateway: {why}"),
                )
            }
            Parsed::Incomplete if reader.decoded().len() > MAX_COMMAND_BYTES => {
                return text(
                    StatusCode::BAD_REQUEST,
                    "CodeCourier gateway: the push updates too many refs",
                )
            }
            Parsed::Incomplete => {}
        }
    };

    if let Some(reasons) = refusals(&grant.push, &updates) {
        tracing::info!(launch = %live.grant.label, refs = ?updates.iter().map(|u| &u.name).collect::<Vec<_>>(), "gateway: push refused");
        // Read the pack to its end (and drop it) so git is listening when the report comes.
        let mut drained = 0;
        while let Some(Ok(chunk)) = data.next().await {
            drained += chunk.len();
            if drained > MAX_DRAINED_BYTES {
                break;
            }
        }
        return rejection(&updates, &reasons, &capabilities);
    }
    let head = futures_util::stream::once(async move { Ok::<_, hyper::Error>(reader.into_raw()) });
    let body = reqwest::Body::wrap_stream(head.chain(data));
    send_upstream(shared, live, grant, parts, Some(body)).await
}

async fn send_upstream(
    shared: &Arc<Shared>,
    live: &Arc<LiveGrant>,
    grant: &GitGrant,
    parts: http::request::Parts,
    body: Option<reqwest::Body>,
) -> Response<Body> {
    let route = route_of(grant);
    let rest = &parts.uri.path()[route.len()..];
    let mut url = format!("{}{rest}", grant.upstream.as_str().trim_end_matches('/'));
    if let Some(query) = parts.uri.query() {
        url.push('?');
        url.push_str(query);
    }
    let mut headers = parts.headers;
    strip_hop_by_hop(&mut headers);
    headers.remove(header::COOKIE);
    headers.remove(header::EXPECT);
    headers.insert(
        header::AUTHORIZATION,
        basic_credential(USER, grant.token.expose()),
    );
    let mut outgoing = shared.http.request(parts.method, url).headers(headers);
    if let Some(body) = body {
        outgoing = outgoing.body(body);
    }
    let upstream = match outgoing.send().await {
        Ok(upstream) => upstream,
        Err(e) => {
            tracing::warn!(launch = %live.grant.label, "gateway: git upstream unreachable: {}", e.without_url());
            return text(
                StatusCode::BAD_GATEWAY,
                "CodeCourier gateway: the repository's host cannot be reached",
            );
        }
    };
    let status = upstream.status();
    let mut response_headers = upstream.headers().clone();
    strip_hop_by_hop(&mut response_headers);
    // A challenge from upstream is about the gateway's token, not anything git could answer.
    response_headers.remove(header::WWW_AUTHENTICATE);
    let stream = upstream
        .bytes_stream()
        .take_until(live.revoked.clone().cancelled_owned())
        .map_ok(Frame::data)
        .map_err(Into::into);
    let mut response = Response::new(BodyExt::boxed_unsync(StreamBody::new(stream)));
    *response.status_mut() = status;
    *response.headers_mut() = response_headers;
    response
}

fn unauthorized(message: &str) -> Response<Body> {
    let mut response = text(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"CodeCourier gateway\""),
    );
    response
}

/// The head of a receive-pack body as it arrives: the raw bytes (forwarded unchanged) and, for a
/// gzip body, what they decode to so far.
struct CommandReader {
    raw: Vec<u8>,
    gunzip: Option<flate2::write::GzDecoder<Vec<u8>>>,
}

impl CommandReader {
    fn new(gzip: bool) -> Self {
        Self {
            raw: Vec::new(),
            gunzip: gzip.then(|| flate2::write::GzDecoder::new(Vec::new())),
        }
    }

    fn push(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        self.raw.extend_from_slice(chunk);
        if let Some(gunzip) = &mut self.gunzip {
            gunzip.write_all(chunk)?;
            gunzip.flush()?;
        }
        Ok(())
    }

    fn decoded(&self) -> &[u8] {
        match &self.gunzip {
            Some(gunzip) => gunzip.get_ref(),
            None => &self.raw,
        }
    }

    fn into_raw(self) -> Bytes {
        Bytes::from(self.raw)
    }
}

/// One ref-update command of a push.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RefUpdate {
    old: String,
    new: String,
    name: String,
}

impl RefUpdate {
    fn deletes(&self) -> bool {
        self.new.bytes().all(|b| b == b'0')
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    Incomplete,
    Complete {
        updates: Vec<RefUpdate>,
        capabilities: Vec<String>,
    },
    Malformed(&'static str),
}

/// Parses the command list of a receive-pack request: pkt-lines `<old> <new> <ref>`, the first
/// with `\0<capabilities>`, optionally preceded by `shallow <oid>` lines, ended by a flush `0000`.
fn parse_commands(buf: &[u8]) -> Parsed {
    let mut pos = 0;
    let mut updates = Vec::new();
    let mut capabilities = Vec::new();
    loop {
        let Some(length) = buf.get(pos..pos + 4) else {
            return Parsed::Incomplete;
        };
        let Some(length) = std::str::from_utf8(length)
            .ok()
            .and_then(|hex| usize::from_str_radix(hex, 16).ok())
        else {
            return Parsed::Malformed("the push is not in git's pkt-line format");
        };
        if length == 0 {
            return Parsed::Complete {
                updates,
                capabilities,
            };
        }
        if length < 4 {
            return Parsed::Malformed("the push has an unexpected delimiter");
        }
        let Some(line) = buf.get(pos + 4..pos + length) else {
            return Parsed::Incomplete;
        };
        pos += length;
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.starts_with(b"shallow ") {
            continue;
        }
        if line.starts_with(b"push-cert") {
            return Parsed::Malformed("signed pushes do not pass the CodeCourier gateway");
        }
        let (command, caps) = match line.iter().position(|&b| b == 0) {
            Some(nul) => (&line[..nul], Some(&line[nul + 1..])),
            None => (line, None),
        };
        if let Some(caps) = caps.filter(|_| updates.is_empty()) {
            capabilities = String::from_utf8_lossy(caps)
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect();
        }
        let Ok(command) = std::str::from_utf8(command) else {
            return Parsed::Malformed("a ref update is not text");
        };
        let mut fields = command.splitn(3, ' ');
        let (Some(old), Some(new), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            return Parsed::Malformed("a ref update is not `<old> <new> <ref>`");
        };
        let is_oid =
            |s: &str| matches!(s.len(), 40 | 64) && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !is_oid(old) || !is_oid(new) {
            return Parsed::Malformed("a ref update does not name two object ids");
        }
        updates.push(RefUpdate {
            old: old.to_string(),
            new: new.to_string(),
            name: name.to_string(),
        });
    }
}

/// The reason given to a ref that alone would have passed.
const HELD_BACK: &str = "not pushed: another ref in this push was refused";

/// Why each ref of a push is refused, or `None` when the whole push may go upstream. A push is
/// all or nothing: one refused ref keeps the others back too.
fn refusals(push: &Push, updates: &[RefUpdate]) -> Option<Vec<String>> {
    let own = match push {
        Push::Refused => None,
        Push::Branch(branch) => Some(format!("refs/heads/{branch}")),
    };
    let reasons: Vec<Option<String>> = updates
        .iter()
        .map(|update| match &own {
            None => Some("this launch is read-only; it may not push".to_string()),
            Some(own) if update.name != *own => Some(format!("this launch may push only to {own}")),
            Some(_) if update.deletes() => {
                Some("this launch may not delete its branch".to_string())
            }
            Some(_) => None,
        })
        .collect();
    if reasons.iter().all(Option::is_none) {
        return None;
    }
    Some(
        reasons
            .into_iter()
            .map(|reason| reason.unwrap_or_else(|| HELD_BACK.into()))
            .collect(),
    )
}

fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload);
    line
}

/// The answer receive-pack gives when it refuses refs: `unpack ok` and one `ng <ref> <reason>` a
/// ref (git prints each as `! [remote rejected]`), with a `remote:` line before it when git asked
/// for side-band. A git that asked for no report gets a plain 403.
fn rejection(updates: &[RefUpdate], reasons: &[String], capabilities: &[String]) -> Response<Body> {
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let first_reason = reasons
        .iter()
        .find(|reason| *reason != HELD_BACK)
        .map(String::as_str)
        .unwrap_or("refused");
    if !(has("report-status") || has("report-status-v2")) {
        return text(
            StatusCode::FORBIDDEN,
            &format!("CodeCourier gateway: push refused: {first_reason}"),
        );
    }
    let mut report = pkt_line(b"unpack ok\n");
    for (update, reason) in updates.iter().zip(reasons) {
        report.extend(pkt_line(
            format!("ng {} {reason}\n", update.name).as_bytes(),
        ));
    }
    report.extend_from_slice(b"0000");
    let body = if has("side-band-64k") || has("side-band") {
        let mut body = Vec::new();
        let message = format!("CodeCourier gateway: push refused: {first_reason}\n");
        body.extend(pkt_line(&[&[2u8][..], message.as_bytes()].concat()));
        // 999 data bytes a packet fits both side-band flavours.
        for piece in report.chunks(999) {
            body.extend(pkt_line(&[&[1u8][..], piece].concat()));
        }
        body.extend_from_slice(b"0000");
        body
    } else {
        report
    };
    let mut response = Response::new(full(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-git-receive-pack-result"),
    );
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn command_list(lines: &[String]) -> Vec<u8> {
        let mut buf: Vec<u8> = lines.iter().flat_map(|l| pkt_line(l.as_bytes())).collect();
        buf.extend_from_slice(b"0000PACK....");
        buf
    }

    #[test]
    fn commands_are_read_up_to_the_flush_with_their_capabilities() {
        let buf = command_list(&[
            format!("shallow {A}\n"),
            format!("{A} {B} refs/heads/feature\0report-status side-band-64k agent=git/2.47\n"),
            format!("{ZERO} {B} refs/tags/v1\n"),
        ]);
        let Parsed::Complete {
            updates,
            capabilities,
        } = parse_commands(&buf)
        else {
            panic!("{:?}", parse_commands(&buf));
        };
        assert_eq!(
            updates.iter().map(|u| u.name.as_str()).collect::<Vec<_>>(),
            ["refs/heads/feature", "refs/tags/v1"]
        );
        assert_eq!(
            capabilities,
            ["report-status", "side-band-64k", "agent=git/2.47"]
        );
        for cut in [0, 3, 10, buf.len() - 16] {
            assert_eq!(
                parse_commands(&buf[..cut]),
                Parsed::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn what_is_not_a_ref_update_is_malformed() {
        assert!(matches!(parse_commands(b"zzzz"), Parsed::Malformed(_)));
        assert!(matches!(
            parse_commands(&command_list(&["hello world\n".into()])),
            Parsed::Malformed(_)
        ));
        assert!(matches!(
            parse_commands(&command_list(&["push-cert\0report-status\n".into()])),
            Parsed::Malformed(_)
        ));
    }

    #[test]
    fn only_the_launch_branch_may_be_updated_and_one_refusal_holds_back_all() {
        let update = |name: &str, new: &str| RefUpdate {
            old: A.into(),
            new: new.into(),
            name: name.into(),
        };
        let branch = Push::Branch("codecourier/ab12-fix".into());
        assert_eq!(
            refusals(&branch, &[update("refs/heads/codecourier/ab12-fix", B)]),
            None
        );
        let reasons = refusals(
            &branch,
            &[
                update("refs/heads/codecourier/ab12-fix", B),
                update("refs/heads/main", B),
            ],
        )
        .unwrap();
        assert!(reasons[0].contains("another ref"), "{reasons:?}");
        assert!(reasons[1].contains("only to refs/heads/codecourier/ab12-fix"));
        assert!(refusals(&branch, &[update("refs/heads/codecourier/ab12-fix", ZERO)]).is_some());
        assert!(refusals(&branch, &[update("refs/tags/codecourier/ab12-fix", B)]).is_some());
        assert!(refusals(&Push::Refused, &[update("refs/heads/x", B)]).is_some());
    }

    #[test]
    fn gzip_bodies_are_read_as_they_decode_and_forwarded_as_sent() {
        let plain = command_list(&[format!("{A} {B} refs/heads/x\0report-status\n")]);
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(&plain).unwrap();
        let compressed = encoder.finish().unwrap();
        let mut reader = CommandReader::new(true);
        for piece in compressed.chunks(7) {
            reader.push(piece).unwrap();
        }
        assert!(matches!(
            parse_commands(reader.decoded()),
            Parsed::Complete { .. }
        ));
        assert_eq!(reader.into_raw(), compressed);
    }
}
