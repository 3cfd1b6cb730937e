//! A stand-in npm registry on loopback: serves packages made in the test (a `package.json` and
//! executables) the way the public registry serves them to `npm install` — the packument at
//! `/<name>` (a scoped name's `/` encoded as `%2f`) and a gzipped tarball of `package/`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, Uri};
use axum::response::IntoResponse;
use axum::{Json, Router};
use serde_json::json;

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

/// `package/package.json` and `package/bin/*` as npm packs them.
fn tarball(package: &Package) -> Vec<u8> {
    let bin: serde_json::Map<String, serde_json::Value> = package
        .bin
        .iter()
        .map(|(command, _)| (command.clone(), json!(format!("bin/{command}"))))
        .collect();
    let manifest = json!({"name": package.name, "version": package.version, "bin": bin});
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut archive = tar::Builder::new(gz);
    let mut add = |path: &str, bytes: &[u8], mode: u32| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive.append_data(&mut header, path, bytes).unwrap();
    };
    add(
        "package/package.json",
        manifest.to_string().as_bytes(),
        0o644,
    );
    for (command, file) in &package.bin {
        add(
            &format!("package/bin/{command}"),
            &std::fs::read(file).unwrap(),
            0o755,
        );
    }
    archive.into_inner().unwrap().finish().unwrap()
}

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
        tarballs.insert(path, tarball(package));
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
