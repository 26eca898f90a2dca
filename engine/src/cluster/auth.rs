//! The shared secret. Every RPC carries `x-discnn-auth: <unix-ms>.<nonce>.<hmac>` where the HMAC
//! (SHA-256, keyed by the secret) covers the timestamp, the nonce, the *audience* — the process
//! the call is for: [`DRIVER`] for the driver, an executor's random instance id (which it
//! announces when it registers) for an executor — and the RPC method's path. The secret never
//! crosses the wire, a token is checked in constant time, and a server refuses a token it has
//! seen before, one older than [`MAX_SKEW`], one for another process and one for another
//! method. So a token sniffed off the network opens nothing: its own process has already seen
//! it, and every other process refuses it. Without TLS the payloads still travel in the clear
//! and are not covered by the token: an attacker who can intercept *and hold back* a call can
//! change its body; use TLS on a network you do not trust.

use dashmap::DashMap;
use hmac::{KeyInit, Mac};
use rand::RngCore;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tonic::metadata::MetadataValue;
use tonic::{Request, Status};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The metadata header that carries a call's token.
pub const HEADER: &str = "x-discnn-auth";
/// The audience of every call to the driver.
pub const DRIVER: &str = "driver";
/// How far a token's clock may be from the server's.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// A cluster's shared secret. Its `Debug` never prints it.
#[derive(Clone)]
pub struct Secret(Arc<Vec<u8>>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A secret file that other users can read is a secret they share: say so (as ssh does for a
/// private key), but go on, since a container's mounted secret may carry any mode.
fn warn_if_readable_by_others(file: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file) {
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            tracing::warn!(
                "secret file {} is readable by group or others (mode {:o}); chmod 600 it",
                file.display(),
                mode & 0o777
            );
        }
    }
}

impl Secret {
    /// A secret of these bytes; `None` for an empty one (no secret).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Secret> {
        let b: Vec<u8> = bytes.into();
        (!b.is_empty()).then(|| Secret(Arc::new(b)))
    }

    /// Whether `candidate` is this secret, compared in constant time (an HTTP password).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        // Equal lengths are not secret; the bytes are compared without an early exit.
        candidate.len() == self.0.len()
            && candidate
                .iter()
                .zip(self.0.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// A random secret (for `local-cluster`, handed to its executors through the environment).
    pub fn random() -> Secret {
        let mut b = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut b);
        Secret(Arc::new(hex(&b).into_bytes()))
    }

    /// `--secret-file FILE` wins over the `DISCNN_SECRET` variable; surrounding whitespace of the
    /// file is ignored. An empty secret is an error, not "no secret".
    pub fn from_file_or_env(file: Option<&Path>) -> Result<Option<Secret>, String> {
        if let Some(f) = file {
            let text = std::fs::read(f)
                .map_err(|e| format!("cannot read secret file {}: {e}", f.display()))?;
            warn_if_readable_by_others(f);
            let trimmed = text.trim_ascii().to_vec();
            return Secret::new(trimmed)
                .map(Some)
                .ok_or_else(|| format!("secret file {} is empty", f.display()));
        }
        match std::env::var_os("DISCNN_SECRET") {
            Some(v) if !v.is_empty() => Ok(Secret::new(v.into_encoded_bytes())),
            Some(_) => Err("DISCNN_SECRET is set but empty".into()),
            None => Ok(None),
        }
    }

    /// The secret as the `DISCNN_SECRET` value a child process inherits.
    pub(crate) fn as_env_value(&self) -> std::ffi::OsString {
        // On Unix an environment value may hold any bytes but NUL, and a secret read from a
        // file or the environment is handed back byte for byte.
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(self.0.to_vec())
    }

    fn mac(&self, ts: &str, nonce: &str, audience: &str, method: &str) -> HmacSha256 {
        // HMAC accepts keys of any length, so this cannot fail.
        let mut m = <HmacSha256 as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        // Lengths first, so no two (audience, method) pairs run together into the same bytes.
        m.update(b"discnn-rpc-v2|");
        for part in [ts, nonce, audience, method] {
            m.update(&(part.len() as u64).to_le_bytes());
            m.update(part.as_bytes());
        }
        m
    }

    /// A fresh token for a call of `method` (its path, `/discnn.Driver/Heartbeat`) to the
    /// process named `audience`.
    pub fn token(&self, audience: &str, method: &str) -> String {
        let ts = now_ms().to_string();
        let mut n = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut n);
        let nonce = hex(&n);
        let tag = hex(&self
            .mac(&ts, &nonce, audience, method)
            .finalize()
            .into_bytes());
        format!("{ts}.{nonce}.{tag}")
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A new process's audience: what its callers' tokens must name.
pub fn new_instance_id() -> String {
    let mut n = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut n);
    hex(&n)
}

/// Adds a fresh token for `audience` and the call's method to every outgoing request.
#[derive(Clone)]
pub struct ClientAuth {
    /// The secret to sign with; `None` sends no token.
    pub secret: Option<Secret>,
    /// Whom the tokens are for (the callee's role and id).
    pub audience: String,
}

impl ClientAuth {
    /// Signs calls to `audience` with `secret`.
    pub fn new(secret: Option<Secret>, audience: impl Into<String>) -> Self {
        ClientAuth {
            secret,
            audience: audience.into(),
        }
    }
}

impl tonic::service::Interceptor for ClientAuth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(s) = &self.secret {
            // Generated clients name the method of every call.
            let method = req
                .extensions()
                .get::<tonic::GrpcMethod>()
                .map(|m| format!("/{}/{}", m.service(), m.method()))
                .unwrap_or_default();
            let v = MetadataValue::try_from(s.token(&self.audience, &method))
                .map_err(|_| Status::internal("token is not ASCII"))?;
            req.metadata_mut().insert(HEADER, v);
        }
        Ok(req)
    }
}

/// The request's path, put where the server's interceptor can read it ([`RpcPathLayer`]).
#[derive(Debug, Clone)]
pub struct RpcPath(pub String);

/// A tower layer under every server that copies the HTTP path of each request into its
/// extensions: interceptors see metadata and extensions, not the URI.
#[derive(Debug, Clone, Copy, Default)]
pub struct RpcPathLayer;

impl<S> tower_layer::Layer<S> for RpcPathLayer {
    type Service = WithRpcPath<S>;
    fn layer(&self, inner: S) -> WithRpcPath<S> {
        WithRpcPath(inner)
    }
}

/// Puts the called RPC's path where the auth layer can read it (tonic hides it from
/// interceptors).
#[derive(Debug, Clone)]
pub struct WithRpcPath<S>(S);

impl<S, B> tower_service::Service<http::Request<B>> for WithRpcPath<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let path = RpcPath(req.uri().path().to_string());
        req.extensions_mut().insert(path);
        self.0.call(req)
    }
}

/// Checks every incoming request's token; refusals are logged at error level with the peer's
/// address (never the token).
#[derive(Clone)]
pub struct ServerAuth {
    secret: Option<Secret>,
    /// Nonces seen within the clock-skew window; every RPC checks one: a sharded map.
    seen: Arc<DashMap<String, u64>>,
    role: &'static str,
    /// Who this process is, as its callers' tokens must say.
    audience: String,
}

impl ServerAuth {
    /// Checks calls to this process (`role`, known to callers as `audience`) against `secret`.
    pub fn new(secret: Option<Secret>, role: &'static str, audience: impl Into<String>) -> Self {
        ServerAuth {
            secret,
            seen: Arc::default(),
            role,
            audience: audience.into(),
        }
    }

    pub(crate) fn verify(&self, token: Option<&str>, method: &str) -> Result<(), &'static str> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let token = token.ok_or("no secret was presented")?;
        let mut parts = token.splitn(3, '.');
        let (Some(ts), Some(nonce), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("malformed token");
        };
        let t: u64 = ts.parse().map_err(|_| "malformed token")?;
        let now = now_ms();
        if t.abs_diff(now) > MAX_SKEW.as_millis() as u64 {
            return Err("token expired (clocks differ by more than 5 minutes?)");
        }
        let tag = unhex(tag).ok_or("malformed token")?;
        secret
            .mac(ts, nonce, &self.audience, method)
            .verify_slice(&tag)
            .map_err(|_| "wrong secret, or a token for another process or method")?;
        let seen = &self.seen;
        let horizon = now.saturating_sub(2 * MAX_SKEW.as_millis() as u64);
        if seen.len() > 100_000 {
            seen.retain(|_, at| *at >= horizon);
        }
        if seen.insert(nonce.to_string(), t).is_some() {
            return Err("replayed token");
        }
        Ok(())
    }
}

impl tonic::service::Interceptor for ServerAuth {
    fn call(&mut self, req: Request<()>) -> Result<Request<()>, Status> {
        let token = req.metadata().get(HEADER).and_then(|v| v.to_str().ok());
        let method = req
            .extensions()
            .get::<RpcPath>()
            .map_or("", |p| p.0.as_str());
        match self.verify(token, method) {
            Ok(()) => Ok(req),
            Err(why) => {
                let peer = req
                    .remote_addr()
                    .map_or_else(|| "an unknown peer".to_string(), |a| a.to_string());
                tracing::error!("{} refused a request from {peer}: {why}", self.role);
                Err(Status::unauthenticated(format!(
                    "refused by the {}: {why}; every process of a cluster needs the same secret \
                     (--secret-file or DISCNN_SECRET)",
                    self.role
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_once_and_only_with_the_same_secret() {
        let a = Secret::new("alpha").expect("non-empty");
        let b = Secret::new("beta").expect("non-empty");
        let m = "/discnn.Executor/FetchShuffle";
        let server = ServerAuth::new(Some(a.clone()), "test", "exec-a");
        let t = a.token("exec-a", m);
        assert!(!t.contains("alpha"));
        assert_eq!(server.verify(Some(&t), m), Ok(()));
        assert_eq!(server.verify(Some(&t), m), Err("replayed token"));
        let wrong = Err("wrong secret, or a token for another process or method");
        assert_eq!(server.verify(Some(&b.token("exec-a", m)), m), wrong);
        assert_eq!(server.verify(None, m), Err("no secret was presented"));
        assert_eq!(server.verify(Some("1.2"), m), Err("malformed token"));
        let open = ServerAuth::new(None, "test", "exec-a");
        assert_eq!(open.verify(None, m), Ok(()));
        assert_eq!(format!("{a:?}"), "Secret(<redacted>)");
    }

    /// A token sniffed on its way to one process opens no other process, and no other method
    /// of its own (whose replay cache has seen it anyway).
    #[test]
    fn a_token_is_bound_to_its_process_and_method() {
        let s = Secret::new("shared").expect("non-empty");
        let heartbeat = "/discnn.Driver/Heartbeat";
        let launch = "/discnn.Executor/FetchShuffle";
        let driver = ServerAuth::new(Some(s.clone()), "driver", DRIVER);
        let exec_a = ServerAuth::new(Some(s.clone()), "executor", "a");
        let exec_b = ServerAuth::new(Some(s.clone()), "executor", "b");
        let wrong = Err("wrong secret, or a token for another process or method");
        let hb = s.token(DRIVER, heartbeat);
        assert_eq!(
            exec_a.verify(Some(&hb), launch),
            wrong,
            "a heartbeat's token"
        );
        assert_eq!(exec_a.verify(Some(&hb), heartbeat), wrong);
        assert_eq!(driver.verify(Some(&hb), launch), wrong);
        let to_a = s.token("a", launch);
        assert_eq!(
            exec_b.verify(Some(&to_a), launch),
            wrong,
            "another executor"
        );
        assert_eq!(exec_a.verify(Some(&to_a), launch), Ok(()));
        assert_eq!(driver.verify(Some(&hb), heartbeat), Ok(()));
    }
}
