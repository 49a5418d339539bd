//! Client authentication: gateway API keys (stored as SHA-256 digests) mapped to tenants, and
//! the admin token of `/api/*` writes.
//!
//! Keys are compared by digest, so the configuration never holds a usable key. The client's key
//! arrives where its SDK puts it (`Authorization: Bearer` for OpenAI, `x-api-key` for
//! Anthropic) and is never forwarded upstream: the provider uses its own secret.

use std::sync::Arc;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::{
    config::AuthConfig,
    keys::{KeyEntry, KeyRegistry},
};

/// Lowercase hex SHA-256 of a key.
pub fn hash_key(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// The client's key from `Authorization: Bearer …` or `x-api-key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "));
        if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
            return Some(token);
        }
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim).filter(|t| !t.is_empty())
}

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Authentication is off (no client keys): the tenant is the `x-llmopt-tenant` label the
    /// client chose (possibly none). A label, not an identity: open mode isolates nothing.
    Open(Option<String>),
    /// A client key: acts on its own tenant only.
    Tenant(String),
    /// The admin token: the loop's controls, and reads of every tenant.
    Admin,
    /// A virtual key made at run time (`POST /api/keys`): a client key of its tenant, with its
    /// own budget, models and rate.
    Key(Arc<KeyEntry>),
}

impl Caller {
    /// The tenant a call is recorded under.
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Open(tenant) => tenant.as_deref(),
            Caller::Tenant(tenant) => Some(tenant),
            Caller::Key(entry) => Some(&entry.key.tenant),
            Caller::Admin => None,
        }
    }

    /// The virtual key of the call, if it was made with one.
    pub fn key(&self) -> Option<&Arc<KeyEntry>> {
        match self {
            Caller::Key(entry) => Some(entry),
            _ => None,
        }
    }

    /// The only tenant whose data this caller may read or change; `None`: every tenant.
    pub fn only_tenant(&self) -> Option<&str> {
        match self {
            Caller::Tenant(tenant) => Some(tenant),
            Caller::Key(entry) => Some(&entry.key.tenant),
            Caller::Open(_) | Caller::Admin => None,
        }
    }

    /// The tenant a report is about: a client key's own (asking for another tenant's is
    /// refused); for the admin and in open mode, the one asked for, or every tenant.
    pub fn report_tenant(&self, asked: Option<String>) -> Result<Option<String>, AuthError> {
        match (self.only_tenant(), asked) {
            (Some(own), Some(asked)) if asked != own => Err(AuthError::OtherTenant),
            (Some(own), _) => Ok(Some(own.to_owned())),
            (None, asked) => Ok(asked),
        }
    }
}

/// What a route needs. The table in README ("Who can do what") is this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The proxy routes: a client key (the call is recorded and billed to its tenant).
    Proxy,
    /// Feedback, ingest and the reports: a client key (own tenant) or the admin token.
    Client,
    /// `/metrics` (every tenant's figures): the admin token once client keys exist, unless
    /// `auth.metrics_public` opens it for a scraper without a token.
    Metrics,
    /// The loop's state and the configuration: the admin token, once any key or token is
    /// configured (a gateway with neither is open to read on loopback).
    AdminRead,
    /// The loop's controls: always the admin token.
    AdminWrite,
}

#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// (digest, tenant) of every client key.
    client_keys: Vec<([u8; 32], String)>,
    admin_token_digest: Option<[u8; 32]>,
    metrics_public: bool,
    /// The virtual keys made at run time (process-wide: they outlive configuration reloads).
    virtual_keys: Option<Arc<KeyRegistry>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing API key: send `Authorization: Bearer <key>` or `x-api-key: <key>`")]
    Missing,
    #[error("invalid API key")]
    Invalid,
    #[error("admin token required")]
    AdminRequired,
    #[error("admin writes are disabled: no admin token is configured")]
    AdminDisabled,
    #[error("the admin token is not a client key: proxy calls need a client key")]
    AdminIsNotAClient,
    #[error("a client key reads and acts on its own tenant only")]
    OtherTenant,
    #[error("this API key has expired")]
    Expired,
    #[error("this API key has been revoked")]
    Revoked,
}

impl AuthError {
    /// 401 when no valid credential was presented, 403 when it is valid but not enough.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            AuthError::Missing | AuthError::Invalid | AuthError::Expired | AuthError::Revoked
        )
    }

    /// The `code` of the error object, for the kinds a client can tell apart.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            AuthError::Invalid => Some("invalid_api_key"),
            AuthError::Expired => Some("key_expired"),
            AuthError::Revoked => Some("key_revoked"),
            _ => None,
        }
    }
}

pub(crate) fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality that reads every byte whatever differs (no early exit).
fn same(left: &[u8; 32], right: &[u8; 32]) -> bool {
    left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

fn from_hex(hex: &str) -> Option<[u8; 32]> {
    let mut bytes = [0u8; 32];
    if hex.len() != 64 {
        return None;
    }
    for (index, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
    }
    Some(bytes)
}

impl Authenticator {
    /// `admin_token`: the token's value read from the environment by the caller.
    pub fn new(config: &AuthConfig, admin_token: Option<&str>) -> Authenticator {
        Authenticator {
            // Configuration validation has checked the digests are 64 hex digits.
            client_keys: config
                .keys
                .iter()
                .filter_map(|key| Some((from_hex(&key.sha256)?, key.tenant.clone())))
                .collect(),
            admin_token_digest: admin_token.filter(|t| !t.is_empty()).map(digest),
            metrics_public: config.metrics_public,
            virtual_keys: None,
        }
    }

    /// Also accepts the virtual keys of `registry`.
    pub fn attach_keys(&mut self, registry: Arc<KeyRegistry>) {
        self.virtual_keys = Some(registry);
    }

    /// Whether client keys are configured or were made at run time (otherwise the proxy is
    /// open).
    pub fn enabled(&self) -> bool {
        !self.client_keys.is_empty() || self.virtual_keys.as_ref().is_some_and(|keys| keys.any())
    }

    /// Who presented these headers. Every configured key is compared in full (constant time
    /// in the presented key): the time taken does not tell which key, or how much of it,
    /// matched.
    fn identify(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        let Some(presented) = presented_key(headers) else {
            return Err(AuthError::Missing);
        };
        let presented = digest(presented);
        let admin = self.admin_token_digest.as_ref().is_some_and(|admin| same(admin, &presented));
        let mut tenant = None;
        for (key, key_tenant) in &self.client_keys {
            if same(key, &presented) {
                tenant = Some(key_tenant);
            }
        }
        match (admin, tenant) {
            (true, _) => Ok(Caller::Admin),
            (false, Some(tenant)) => Ok(Caller::Tenant(tenant.clone())),
            (false, None) => {
                // A virtual key is found by its digest: a lookup keyed by a SHA-256 digest
                // tells nothing useful about other keys.
                let entry = self.virtual_keys.as_ref().and_then(|keys| {
                    keys.by_digest(&presented).map(|entry| (entry, keys.now_ms()))
                });
                match entry {
                    None => Err(AuthError::Invalid),
                    Some((entry, _)) if entry.revoked_ms().is_some() => Err(AuthError::Revoked),
                    Some((entry, now_ms)) if entry.key.is_expired(now_ms) => {
                        Err(AuthError::Expired)
                    }
                    Some((entry, _)) => Ok(Caller::Key(entry)),
                }
            }
        }
    }

    fn open_tenant(headers: &HeaderMap) -> Option<String> {
        headers
            .get("x-llmopt-tenant")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }

    /// Checks that the caller may use a route that needs `access`.
    pub fn authorize(&self, headers: &HeaderMap, access: Access) -> Result<Caller, AuthError> {
        let open = !self.enabled();
        match access {
            Access::Metrics if self.metrics_public || open => Ok(Caller::Open(None)),
            Access::Proxy | Access::Client if open => {
                match presented_key(headers).map(|_| self.identify(headers)) {
                    // In open mode the admin token still identifies the admin.
                    Some(Ok(Caller::Admin)) if access != Access::Proxy => Ok(Caller::Admin),
                    _ => Ok(Caller::Open(Self::open_tenant(headers))),
                }
            }
            Access::Proxy => match self.identify(headers)? {
                Caller::Admin => Err(AuthError::AdminIsNotAClient),
                caller => Ok(caller),
            },
            Access::Client => self.identify(headers),
            Access::AdminRead if open && self.admin_token_digest.is_none() => {
                Ok(Caller::Open(None))
            }
            Access::Metrics | Access::AdminRead | Access::AdminWrite => {
                if self.admin_token_digest.is_none() {
                    return Err(AuthError::AdminDisabled);
                }
                match self.identify(headers) {
                    Ok(Caller::Admin) => Ok(Caller::Admin),
                    Ok(_) => Err(AuthError::AdminRequired),
                    Err(error) => Err(error),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    #[test]
    fn sha256_matches_the_published_test_vector() {
        // FIPS 180-2 example "abc".
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn each_access_level_admits_whom_it_should() {
        let config = AuthConfig {
            keys: vec![ApiKeyConfig { sha256: hash_key("k1"), tenant: "team-a".into() }],
            ..AuthConfig::default()
        };
        let auth = Authenticator::new(&config, Some("root"));
        let with = |key: Option<&str>| {
            let mut headers = HeaderMap::new();
            if let Some(key) = key {
                headers.insert("authorization", format!("Bearer {key}").parse().unwrap());
            }
            headers
        };
        let client = Ok(Caller::Tenant("team-a".into()));
        for access in [Access::Proxy, Access::Client] {
            assert_eq!(auth.authorize(&with(None), access), Err(AuthError::Missing));
            assert_eq!(auth.authorize(&with(Some("k2")), access), Err(AuthError::Invalid));
            assert_eq!(auth.authorize(&with(Some("k1")), access), client);
        }
        assert_eq!(
            auth.authorize(&with(Some("root")), Access::Proxy),
            Err(AuthError::AdminIsNotAClient)
        );
        assert_eq!(auth.authorize(&with(Some("root")), Access::Client), Ok(Caller::Admin));
        for access in [Access::Metrics, Access::AdminRead, Access::AdminWrite] {
            assert_eq!(auth.authorize(&with(Some("k1")), access), Err(AuthError::AdminRequired));
            assert_eq!(auth.authorize(&with(None), access), Err(AuthError::Missing));
            assert_eq!(auth.authorize(&with(Some("root")), access), Ok(Caller::Admin));
        }
        let no_admin = Authenticator::new(&config, None);
        assert_eq!(
            no_admin.authorize(&with(Some("root")), Access::AdminRead),
            Err(AuthError::AdminDisabled)
        );
    }

    #[test]
    fn open_mode_reads_are_open_and_writes_still_need_the_token() {
        let open = Authenticator::new(&AuthConfig::default(), None);
        let mut headers = HeaderMap::new();
        headers.insert("x-llmopt-tenant", "team-b".parse().unwrap());
        assert_eq!(
            open.authorize(&headers, Access::Proxy),
            Ok(Caller::Open(Some("team-b".into())))
        );
        assert_eq!(open.authorize(&headers, Access::AdminRead), Ok(Caller::Open(None)));
        assert_eq!(open.authorize(&headers, Access::AdminWrite), Err(AuthError::AdminDisabled));
        let with_token = Authenticator::new(&AuthConfig::default(), Some("root"));
        assert_eq!(with_token.authorize(&headers, Access::AdminRead), Err(AuthError::Missing));
    }

    #[test]
    fn a_client_key_reports_on_its_own_tenant_only() {
        let tenant = Caller::Tenant("a".into());
        assert_eq!(tenant.report_tenant(None), Ok(Some("a".into())));
        assert_eq!(tenant.report_tenant(Some("a".into())), Ok(Some("a".into())));
        assert_eq!(tenant.report_tenant(Some("b".into())), Err(AuthError::OtherTenant));
        assert_eq!(Caller::Admin.report_tenant(Some("b".into())), Ok(Some("b".into())));
        assert_eq!(Caller::Admin.report_tenant(None), Ok(None));
    }
}
