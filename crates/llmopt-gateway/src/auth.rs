//! Client authentication: gateway API keys (stored as SHA-256 digests) mapped to tenants, and
//! the admin token of `/api/*` writes.
//!
//! Keys are compared by digest, so the configuration never holds a usable key. The client's key
//! arrives where its SDK puts it (`Authorization: Bearer` for OpenAI, `x-api-key` for
//! Anthropic) and is never forwarded upstream: the provider uses its own secret.

use std::collections::HashMap;

use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

use crate::config::AuthConfig;

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

/// Outcome of authenticating a `/v1/*` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authenticated {
    /// Authentication is off: the tenant is whatever `x-llmopt-tenant` says (possibly none).
    Open(Option<String>),
    Tenant(String),
}

impl Authenticated {
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Authenticated::Open(tenant) => tenant.as_deref(),
            Authenticated::Tenant(tenant) => Some(tenant),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    /// digest → tenant
    tenants_by_digest: HashMap<String, String>,
    admin_token_digest: Option<String>,
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
}

impl Authenticator {
    /// `admin_token`: the token's value read from the environment by the caller.
    pub fn new(config: &AuthConfig, admin_token: Option<&str>) -> Authenticator {
        Authenticator {
            tenants_by_digest: config
                .keys
                .iter()
                .map(|key| (key.sha256.to_ascii_lowercase(), key.tenant.clone()))
                .collect(),
            admin_token_digest: admin_token.filter(|t| !t.is_empty()).map(hash_key),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.tenants_by_digest.is_empty()
    }

    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Authenticated, AuthError> {
        if !self.enabled() {
            let tenant = headers
                .get("x-llmopt-tenant")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            return Ok(Authenticated::Open(tenant));
        }
        let key = presented_key(headers).ok_or(AuthError::Missing)?;
        self.tenants_by_digest
            .get(&hash_key(key))
            .map(|tenant| Authenticated::Tenant(tenant.clone()))
            .ok_or(AuthError::Invalid)
    }

    /// Checks the admin token of an `/api/*` write.
    pub fn authorize_admin(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(expected) = &self.admin_token_digest else {
            return Err(AuthError::AdminDisabled);
        };
        let presented = presented_key(headers).ok_or(AuthError::AdminRequired)?;
        // Digests of equal length compared in full: no early exit on the first difference.
        let actual = hash_key(presented);
        let difference =
            actual.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 { Ok(()) } else { Err(AuthError::AdminRequired) }
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
    fn keys_map_to_tenants() {
        let config = AuthConfig {
            keys: vec![ApiKeyConfig { sha256: hash_key("k1"), tenant: "team-a".into() }],
            admin_token_env: None,
        };
        let auth = Authenticator::new(&config, Some("root"));
        let mut headers = HeaderMap::new();
        assert_eq!(auth.authenticate(&headers), Err(AuthError::Missing));
        headers.insert("x-api-key", "k2".parse().unwrap());
        assert_eq!(auth.authenticate(&headers), Err(AuthError::Invalid));
        headers.insert("authorization", "Bearer k1".parse().unwrap());
        assert_eq!(auth.authenticate(&headers), Ok(Authenticated::Tenant("team-a".into())));
        assert_eq!(auth.authorize_admin(&headers), Err(AuthError::AdminRequired));
        headers.insert("authorization", "Bearer root".parse().unwrap());
        assert_eq!(auth.authorize_admin(&headers), Ok(()));
        let no_admin = Authenticator::new(&config, None);
        assert_eq!(no_admin.authorize_admin(&headers), Err(AuthError::AdminDisabled));
    }
}
