//! A stand-in npm registry on loopback (127.0.0.2), serving packuments and tarballs as npm's registry does
//! (`GET /<name>` → the packument JSON, `GET /<name>/-/<name>-<version>.tgz` → the gzipped tarball),
//! and counting tarball downloads. It also writes what a repository needs to install from it:
//! `package.json`, a lockfile whose entries resolve here with their integrity, and an `.npmrc`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use serde_json::json;
use sha1::Digest as _;

/// One published version of a package.
struct Published {
    version: String,
    tarball: Vec<u8>,
    integrity: String,
    shasum: String,
}

struct Shared {
    base: String,
    packages: BTreeMap<String, Published>,
    tarballs_served: AtomicUsize,
    /// Added to every answer, as a registry across the internet takes its round trip.
    latency: std::time::Duration,
}

pub struct NpmRegistry {
    /// `http://127.0.0.2:<port>/`
    pub url: String,
    /// `127.0.0.2:<port>`, as `CODECOURIER_EGRESS_ALLOW` lists it.
    pub host_port: String,
    shared: Arc<Shared>,
}

/// A gzipped tarball of `package/…` as npm packs it: (path under `package/`, bytes, mode).
fn pack(files: &[(String, Vec<u8>, u32)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::default(),
    ));
    for (path, body, mode) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(*mode);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("package/{path}"), body.as_slice())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

/// A library package's tarball: `package.json` and `index.js`.
fn tarball(name: &str, version: &str) -> Vec<u8> {
    let manifest = json!({"name": name, "version": version, "main": "index.js"}).to_string();
    let index = format!("module.exports = {:?};\n", format!("{name}@{version}"));
    pack(&[
        ("package.json".into(), manifest.into_bytes(), 0o644),
        ("index.js".into(), index.into_bytes(), 0o644),
    ])
}

impl NpmRegistry {
    /// Serves `packages` (name, version) on a free loopback port.
    pub async fn start(packages: &[(&str, &str)]) -> Self {
        Self::start_with_latency(packages, std::time::Duration::ZERO).await
    }

    /// As `start`, each answer given after `latency`.
    pub async fn start_with_latency(
        packages: &[(&str, &str)],
        latency: std::time::Duration,
    ) -> Self {
        // Not 127.0.0.1: the sandbox's NO_PROXY sends that to its own loopback, while this
        // address goes through the egress proxy, which reaches it once it is allow-listed.
        let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let host_port = listener.local_addr().unwrap().to_string();
        let base = format!("http://{host_port}/");
        let packages = packages
            .iter()
            .map(|(name, version)| {
                let tarball = tarball(name, version);
                let integrity = format!(
                    "sha512-{}",
                    base64::engine::general_purpose::STANDARD
                        .encode(sha2::Sha512::digest(&tarball))
                );
                let shasum = hex::encode(sha1::Sha1::digest(&tarball));
                let package = Published {
                    version: version.to_string(),
                    tarball,
                    integrity,
                    shasum,
                };
                (name.to_string(), package)
            })
            .collect();
        let shared = Arc::new(Shared {
            base: base.clone(),
            packages,
            tarballs_served: AtomicUsize::new(0),
            latency,
        });
        let app = Router::new()
            .route("/{name}", get(packument))
            .route("/{name}/-/{file}", get(download))
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: base,
            host_port,
            shared,
        }
    }

    /// How many tarballs were downloaded so far.
    pub fn tarballs_served(&self) -> usize {
        self.shared.tarballs_served.load(Ordering::SeqCst)
    }

    /// Writes `package.json`, `package-lock.json` (version 3, every package resolved here with its
    /// integrity) and `.npmrc` (this registry) into `dir`, for a project depending on all packages.
    pub fn write_project(&self, dir: &Path, project: &str) {
        let dependencies: serde_json::Map<String, serde_json::Value> = self
            .shared
            .packages
            .iter()
            .map(|(name, p)| (name.clone(), json!(p.version)))
            .collect();
        let mut lock_packages = serde_json::Map::new();
        lock_packages.insert(
            String::new(),
            json!({"name": project, "version": "1.0.0", "dependencies": dependencies}),
        );
        for (name, p) in &self.shared.packages {
            lock_packages.insert(
                format!("node_modules/{name}"),
                json!({
                    "version": p.version,
                    "resolved": tarball_url(&self.shared.base, name, &p.version),
                    "integrity": p.integrity,
                }),
            );
        }
        let manifest = json!({"name": project, "version": "1.0.0", "private": true, "dependencies": dependencies});
        let lock = json!({"name": project, "version": "1.0.0", "lockfileVersion": 3, "requires": true, "packages": lock_packages});
        std::fs::write(
            dir.join("package.json"),
            serde_json::to_string_pretty(&manifest).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.join("package-lock.json"),
            serde_json::to_string_pretty(&lock).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.join(".npmrc"), format!("registry={}\n", self.url)).unwrap();
    }
}

fn tarball_url(base: &str, name: &str, version: &str) -> String {
    format!("{base}{name}/-/{name}-{version}.tgz")
}

async fn packument(State(shared): State<Arc<Shared>>, UrlPath(name): UrlPath<String>) -> Response {
    tokio::time::sleep(shared.latency).await;
    let Some(p) = shared.packages.get(&name) else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Not found"})),
        )
            .into_response();
    };
    let version = json!({
        "name": name,
        "version": p.version,
        "main": "index.js",
        "dist": {
            "tarball": tarball_url(&shared.base, &name, &p.version),
            "integrity": p.integrity,
            "shasum": p.shasum,
        },
    });
    axum::Json(json!({
        "name": name,
        "dist-tags": {"latest": p.version},
        "versions": {p.version.clone(): version},
    }))
    .into_response()
}

async fn download(
    State(shared): State<Arc<Shared>>,
    UrlPath((name, file)): UrlPath<(String, String)>,
) -> Response {
    tokio::time::sleep(shared.latency).await;
    match shared.packages.get(&name) {
        Some(p) if file == format!("{name}-{}.tgz", p.version) => {
            shared.tarballs_served.fetch_add(1, Ordering::SeqCst);
            (
                [(header::CONTENT_TYPE, "application/octet-stream")],
                p.tarball.clone(),
            )
                .into_response()
        }
        _ => (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": "Not found"})),
        )
            .into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// Agent CLIs: packages with executables, as a sandbox without its CLI installs them.

/// A package to publish: `bin` maps each command to the file shipped as `bin/<command>`.
pub struct Package {
    pub name: String,
    pub version: String,
    pub bin: Vec<(String, PathBuf)>,
}

pub struct Registry {
    pub url: String,
    /// Every path asked for, in order.
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// A CLI package's tarball: `package.json` and its executables under `bin/`.
fn cli_tarball(package: &Package) -> Vec<u8> {
    let bin: serde_json::Map<String, serde_json::Value> = package
        .bin
        .iter()
        .map(|(command, _)| (command.clone(), json!(format!("bin/{command}"))))
        .collect();
    let manifest = json!({"name": package.name, "version": package.version, "bin": bin});
    let mut files = vec![(
        "package.json".to_string(),
        manifest.to_string().into_bytes(),
        0o644,
    )];
    for (command, file) in &package.bin {
        files.push((
            format!("bin/{command}"),
            std::fs::read(file).unwrap(),
            0o755,
        ));
    }
    pack(&files)
}

/// Serves CLI packages (scoped names too) on 127.0.0.1, logging every path asked for: what a
/// sandbox installs an agent CLI from.
pub async fn serve(packages: Vec<Package>) -> Registry {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut documents = HashMap::new();
    let mut tarballs = HashMap::new();
    for (i, package) in packages.iter().enumerate() {
        let path = format!("/-/tarballs/{i}.tgz");
        let bin: serde_json::Map<String, serde_json::Value> = package
            .bin
            .iter()
            .map(|(command, _)| (command.clone(), json!(format!("bin/{command}"))))
            .collect();
        documents.insert(
            package.name.clone(),
            json!({"name": package.name, "dist-tags": {"latest": package.version},
                "versions": {package.version.clone(): {"name": package.name, "version": package.version,
                    "bin": bin, "dist": {"tarball": format!("{url}{path}")}}}}),
        );
        tarballs.insert(path, cli_tarball(package));
    }
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let (documents, tarballs) = (Arc::new(documents), Arc::new(tarballs));
    let app = Router::new().fallback(move |uri: Uri| {
        let (documents, tarballs, seen) = (documents.clone(), tarballs.clone(), seen.clone());
        async move {
            let path = uri.path().to_string();
            seen.lock().unwrap().push(path.clone());
            if let Some(bytes) = tarballs.get(&path) {
                return (
                    [("content-type", "application/octet-stream")],
                    bytes.clone(),
                )
                    .into_response();
            }
            let name = path
                .trim_start_matches('/')
                .replace("%2f", "/")
                .replace("%2F", "/");
            match documents.get(&name) {
                Some(document) => Json(document.clone()).into_response(),
                None => {
                    (StatusCode::NOT_FOUND, Json(json!({"error": "Not found"}))).into_response()
                }
            }
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Registry { url, requests }
}
