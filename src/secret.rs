//! Secret values in memory (never printed) and the key that encrypts them at rest.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

/// A token or key. `Debug` and `Display` never show the value, so a secret inside a struct that
/// gets logged or formatted into an error stays hidden.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the few places that must hand it on (a header, a sandbox env).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Where the at-rest key came from, for `doctor`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    File(PathBuf),
    Generated(PathBuf),
}

/// The 256-bit key for secrets at rest (XChaCha20-Poly1305, random 192-bit nonces).
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

pub const KEY_FILE_NAME: &str = "secret.key";

impl SecretKey {
    /// Parses 64 hex characters. The error never repeats the input.
    pub fn from_hex(text: &str) -> Result<Self, &'static str> {
        let bytes = hex::decode(text.trim()).map_err(|_| "is not hexadecimal")?;
        let bytes: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "must be 64 hex characters (32 bytes)")?;
        Ok(Self(bytes))
    }

    pub fn generate() -> Self {
        Self(XChaCha20Poly1305::generate_key(&mut OsRng).into())
    }

    /// The key from the environment if given, else from `<data_dir>/secret.key`, creating that file
    /// (mode 0600) on first use.
    pub fn load_or_create(
        from_env: Option<&Secret>,
        data_dir: &Path,
    ) -> anyhow::Result<(Self, KeySource)> {
        if let Some(hex) = from_env {
            let key = Self::from_hex(hex.expose())
                .map_err(|why| anyhow::anyhow!("CODECOURIER_SECRET_KEY {why}"))?;
            return Ok((key, KeySource::Environment));
        }
        let path = data_dir.join(KEY_FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let key = Self::from_hex(&text).map_err(|why| {
                    anyhow::anyhow!(
                        "the key file {} {why}; restore it from a backup (secrets stored with it cannot be read without it)",
                        path.display()
                    )
                })?;
                Ok((key, KeySource::File(path)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                // Written whole under a private name, then linked into place: a command started at
                // the same moment either wins the link or reads the winner's complete key.
                // Named by process and by attempt: two stores opened at once in one process must
                // not write the same staging file.
                static ATTEMPT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let attempt = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let staging =
                    data_dir.join(format!(".{KEY_FILE_NAME}.{}.{attempt}", std::process::id()));
                write_private_file(&staging, hex::encode(key.0).as_bytes())
                    .with_context(|| format!("cannot create the key file {}", staging.display()))?;
                let linked = std::fs::hard_link(&staging, &path);
                let _ = std::fs::remove_file(&staging);
                match linked {
                    Ok(()) => Ok((key, KeySource::Generated(path))),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        Self::load_or_create(None, data_dir)
                    }
                    Err(e) => Err(e)
                        .with_context(|| format!("cannot create the key file {}", path.display())),
                }
            }
            Err(e) => {
                Err(e).with_context(|| format!("cannot read the key file {}", path.display()))
            }
        }
    }

    /// Encrypts `plaintext`, binding it to `context` (for example `"sandbox:<id>/env"`) so a ciphertext
    /// copied to another row does not decrypt. Returns (nonce, ciphertext).
    pub fn seal(&self, context: &str, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory input");
        (nonce.to_vec(), sealed)
    }

    pub fn open(&self, context: &str, nonce: &[u8], sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if nonce.len() != 24 {
            bail!("stored secret has a malformed nonce");
        }
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| {
                anyhow::anyhow!(
                    "a stored secret cannot be decrypted: the secret key differs from the one it was stored with"
                )
            })
    }
}

fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_formatting_hides_the_value() {
        let s = Secret::new("sk-ant-very-secret");
        assert!(!format!("{s:?} {s}").contains("very-secret"));
    }

    #[test]
    fn seal_and_open_round_trip_and_bind_the_context() {
        let key = SecretKey::generate();
        let (nonce, sealed) = key.seal("project:1/ANTHROPIC_API_KEY", b"sk-123");
        assert!(!sealed.windows(6).any(|w| w == b"sk-123"));
        assert_eq!(
            key.open("project:1/ANTHROPIC_API_KEY", &nonce, &sealed)
                .unwrap(),
            b"sk-123"
        );
        assert!(key
            .open("project:2/ANTHROPIC_API_KEY", &nonce, &sealed)
            .is_err());
        assert!(SecretKey::generate()
            .open("project:1/ANTHROPIC_API_KEY", &nonce, &sealed)
            .is_err());
    }

    #[test]
    fn key_file_is_generated_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let (first, source) = SecretKey::load_or_create(None, dir.path()).unwrap();
        assert!(matches!(source, KeySource::Generated(_)));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let (second, source) = SecretKey::load_or_create(None, dir.path()).unwrap();
        assert!(matches!(source, KeySource::File(_)));
        assert_eq!(first.0, second.0);
    }

    #[test]
    fn key_from_environment_must_be_64_hex_and_error_does_not_echo_it() {
        let dir = tempfile::tempdir().unwrap();
        let err =
            SecretKey::load_or_create(Some(&Secret::new("zz-not-hex")), dir.path()).unwrap_err();
        assert!(!err.to_string().contains("zz-not-hex"));
        let good = "ab".repeat(32);
        let (_, source) = SecretKey::load_or_create(Some(&Secret::new(good)), dir.path()).unwrap();
        assert_eq!(source, KeySource::Environment);
    }
}
