//! API keys: who may call what. `--api-keys-file` holds one key per non-empty line with its scopes,
//! `KEY SCOPE[,SCOPE...]`; lines starting with `#` are comments. Only each key's SHA-256 is kept, and a
//! presented key is compared with every one of them in constant time. The file is re-read when it
//! changes, so a rotated Kubernetes Secret takes effect without a restart; a file that no longer parses
//! leaves the previous keys in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::Error;

/// What a key allows. Liveness, readiness and metrics need none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Inference, and the models' metadata, configuration and statistics.
    Infer,
    /// `GET /api/...`: the prediction log and its aggregates.
    Read,
    /// `POST /api/.../feedback`.
    Write,
}

impl Scope {
    const ALL: [Scope; 3] = [Scope::Infer, Scope::Read, Scope::Write];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Infer => "infer",
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Scope::Infer => 1,
            Scope::Read => 2,
            Scope::Write => 4,
        }
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A key that is not in the file.
    Unknown,
    /// A known key without the scope the route needs.
    Forbidden(Scope),
}

/// The keys of one version of the file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Keys {
    entries: Vec<([u8; 32], u8)>,
}

/// The shortest key accepted: a guessable key is no key.
const MIN_KEY_LEN: usize = 16;

impl Keys {
    /// Parses the file's text. Errors name the line, never the key.
    pub fn parse(text: &str) -> Result<Keys, String> {
        let mut entries: Vec<([u8; 32], u8)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let n = i + 1;
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [key, scopes] = fields[..] else {
                return Err(format!("line {n}: expected `KEY SCOPE[,SCOPE...]`"));
            };
            if key.len() < MIN_KEY_LEN {
                return Err(format!("line {n}: a key must be at least {MIN_KEY_LEN} characters"));
            }
            let mut bits = 0;
            for scope in scopes.split(',') {
                let known = Scope::ALL.iter().find(|s| s.as_str() == scope).ok_or_else(|| {
                    format!("line {n}: unknown scope {scope:?}; the scopes are infer, read and write")
                })?;
                bits |= known.bit();
            }
            let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
            if entries.iter().any(|(d, _)| *d == digest) {
                return Err(format!("line {n}: this key is already on an earlier line"));
            }
            entries.push((digest, bits));
        }
        if entries.is_empty() {
            return Err("holds no keys, so every request would be refused".into());
        }
        Ok(Keys { entries })
    }

    /// Whether `authorization` (the header's value) carries a key with `scope`.
    pub fn check(&self, authorization: Option<&[u8]>, scope: Scope) -> Result<(), Denied> {
        let key = authorization.and_then(bearer).ok_or(Denied::Missing)?;
        let digest: [u8; 32] = Sha256::digest(key).into();
        let mut granted = None;
        // Every entry is compared, so the time taken does not depend on which one matches.
        for (known, bits) in &self.entries {
            if bool::from(known.ct_eq(&digest)) {
                granted = Some(*bits);
            }
        }
        match granted {
            None => Err(Denied::Unknown),
            Some(bits) if bits & scope.bit() == 0 => Err(Denied::Forbidden(scope)),
            Some(_) => Ok(()),
        }
    }
}

fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, key) = value.split_at_checked(7)?;
    (scheme.eq_ignore_ascii_case(b"bearer ") && !key.is_empty()).then_some(key.trim_ascii())
}

/// The keys file and the keys last read from it.
pub struct KeyFile {
    path: PathBuf,
    keys: RwLock<(Vec<u8>, Arc<Keys>)>,
}

impl KeyFile {
    /// Reads `path`; at start-up a missing or invalid file is an error naming it.
    pub fn open(path: &Path) -> Result<KeyFile, Error> {
        let text = read(path)?;
        let keys = parse(path, &text)?;
        Ok(KeyFile { path: path.to_path_buf(), keys: RwLock::new((text, Arc::new(keys))) })
    }

    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }

    /// Re-reads the file if its content changed. Returns whether new keys took effect; a file that
    /// cannot be read or parsed is logged and the keys in force stay.
    pub fn reload(&self) -> bool {
        let text = match read(&self.path) {
            Ok(text) => text,
            Err(e) => {
                tracing::error!(error = %e, "cannot re-read the API keys file; keeping the keys in force");
                return false;
            }
        };
        if self.keys.read().unwrap_or_else(|p| p.into_inner()).0 == text {
            return false;
        }
        match parse(&self.path, &text) {
            Ok(keys) => {
                tracing::info!(path = %self.path.display(), keys = keys.entries.len(), "API keys reloaded");
                *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (text, Arc::new(keys));
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "the API keys file changed but is invalid; keeping the keys in force");
                false
            }
        }
    }

    /// Re-reads the file every `interval` for as long as the process runs.
    pub fn watch(self: Arc<Self>, interval: Duration) {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                self.reload();
            }
        });
    }
}

fn read(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|e| Error::ApiKeys { path: path.to_path_buf(), reason: format!("cannot read: {e}") })
}

fn parse(path: &Path, text: &[u8]) -> Result<Keys, Error> {
    let fail = |reason: String| Error::ApiKeys { path: path.to_path_buf(), reason };
    let text = std::str::from_utf8(text).map_err(|_| fail("the API keys file is not UTF-8".into()))?;
    Keys::parse(text).map_err(fail)
}

/// Who may call what on this server: the keys file when there is one; without it inference is open,
/// but the prediction log's entries (which may hold request bodies) only with --public-prediction-log.
#[derive(Default)]
pub struct Access {
    pub keys: Option<Arc<KeyFile>>,
    pub public_prediction_log: bool,
}

impl Access {
    /// Whether a request to `route` (its template) with this `Authorization` value may go on.
    pub fn allow(&self, route: &str, authorization: Option<&[u8]>, scope: Scope) -> Result<(), Error> {
        match &self.keys {
            Some(file) => file.keys().check(authorization, scope).map_err(Error::from),
            None if !self.public_prediction_log && route.starts_with("/api/predictions") => {
                Err(Error::PredictionLogNotPublic)
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# team keys\n\nclient-key-0123456789 infer\nanalyst-key-0123456789 read,write\n";

    #[test]
    fn a_key_is_granted_exactly_its_scopes() {
        let keys = Keys::parse(FILE).unwrap();
        let client = Some(&b"Bearer client-key-0123456789"[..]);
        assert_eq!(keys.check(client, Scope::Infer), Ok(()));
        assert_eq!(keys.check(client, Scope::Read), Err(Denied::Forbidden(Scope::Read)));
        let analyst = Some(&b"bearer analyst-key-0123456789"[..]);
        assert_eq!(keys.check(analyst, Scope::Write), Ok(()));
        assert_eq!(keys.check(analyst, Scope::Infer), Err(Denied::Forbidden(Scope::Infer)));
    }

    #[test]
    fn no_header_another_scheme_and_unknown_keys_are_told_apart() {
        let keys = Keys::parse(FILE).unwrap();
        assert_eq!(keys.check(None, Scope::Infer), Err(Denied::Missing));
        assert_eq!(keys.check(Some(b"Basic Y2xpZW50"), Scope::Infer), Err(Denied::Missing));
        assert_eq!(keys.check(Some(b"Bearer "), Scope::Infer), Err(Denied::Missing));
        assert_eq!(keys.check(Some(b"Bearer client-key-0123456788"), Scope::Infer), Err(Denied::Unknown));
    }

    #[test]
    fn mistakes_in_the_file_name_the_line_and_never_the_key() {
        assert_eq!(
            Keys::parse("k-0123456789abcdef infer\nk2-0123456789abcdef").unwrap_err(),
            "line 2: expected `KEY SCOPE[,SCOPE...]`"
        );
        assert_eq!(Keys::parse("short infer").unwrap_err(), "line 1: a key must be at least 16 characters");
        assert_eq!(
            Keys::parse("k-0123456789abcdef infer,admin").unwrap_err(),
            "line 1: unknown scope \"admin\"; the scopes are infer, read and write"
        );
        assert_eq!(
            Keys::parse("k-0123456789abcdef infer\nk-0123456789abcdef read").unwrap_err(),
            "line 2: this key is already on an earlier line"
        );
        assert_eq!(
            Keys::parse("# nothing\n").unwrap_err(),
            "holds no keys, so every request would be refused"
        );
    }

    #[test]
    fn a_rewritten_file_takes_effect_and_an_invalid_rewrite_keeps_the_old_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        std::fs::write(&path, "old-key-0123456789 infer\n").unwrap();
        let file = KeyFile::open(&path).unwrap();
        assert!(!file.reload(), "nothing changed");
        std::fs::write(&path, "new-key-0123456789 infer\n").unwrap();
        assert!(file.reload());
        assert_eq!(file.keys().check(Some(b"Bearer old-key-0123456789"), Scope::Infer), Err(Denied::Unknown));
        assert_eq!(file.keys().check(Some(b"Bearer new-key-0123456789"), Scope::Infer), Ok(()));
        std::fs::write(&path, "new-key-0123456789 everything\n").unwrap();
        assert!(!file.reload());
        assert_eq!(file.keys().check(Some(b"Bearer new-key-0123456789"), Scope::Infer), Ok(()));
    }
}
