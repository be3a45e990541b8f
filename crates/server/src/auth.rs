//! Bearer tokens → grants. Tokens are stored only as SHA-256; lookups go through a cache that
//! revocations (local ones at once, other processes' through the store's feed) clear.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use roost_model::PermissionSet;
use roost_model::view::Viewer;
use roost_store::{Store, StoreError, TokenRecord};
use sha2::{Digest, Sha256};

/// What a token may do: whose homes, which of them, with which permissions.
#[derive(Debug)]
pub struct Grant {
    pub hash: [u8; 32],
    pub user_id: String,
    pub product_id: Option<String>,
    pub permissions: PermissionSet,
    pub structures: Vec<String>,
    pub client_version: u64,
    /// A device's own credential: the device it speaks for.
    pub device_id: Option<String>,
    /// Unix seconds after which the grant is no longer live: the end of the sign-in session
    /// a home app's token belongs to. `None`: until revoked.
    pub expires_at: Option<i64>,
}

/// How a home app's token names its session (`label`), followed by the session's hash in hex.
pub const SESSION_TOKEN_LABEL: &str = "Home app, session ";

impl Grant {
    /// Who the grant looks as, for the model's views.
    pub fn viewer(&self) -> Viewer<'_> {
        Viewer { permissions: self.permissions, device_id: self.device_id.as_deref() }
    }

    /// Whether the grant covers structure `id`.
    pub fn covers(&self, id: &str) -> bool {
        self.structures.iter().any(|s| s == id)
    }
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Tokens are `c.` + 43 base64url characters; anything far off is refused before hashing.
fn plausible(token: &str) -> bool {
    (8..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

#[derive(Default)]
pub struct Grants {
    cache: RwLock<HashMap<[u8; 32], Arc<Grant>>>,
}

/// Most grants cached; past it the cache is cleared (a lookup is one indexed read).
const CACHE_MAX: usize = 100_000;

impl Grants {
    /// The live grant of a token, or `None` (unknown or revoked).
    pub async fn resolve(&self, store: &dyn Store, token: &str) -> Result<Option<Arc<Grant>>, StoreError> {
        if !plausible(token) {
            return Ok(None);
        }
        let hash = hash_token(token);
        if let Some(g) = self.cache.read().get(&hash).cloned() {
            // Only a session's token has an end to look at the clock for.
            if g.expires_at.is_none_or(|t| t > chrono::Utc::now().timestamp()) {
                return Ok(Some(g));
            }
            self.revoked(&hash);
            return Ok(None);
        }
        let Some(record) = store.token(&hash).await? else {
            return Ok(None);
        };
        // A home app's token lives only as long as the session it was made for.
        let now = chrono::Utc::now().timestamp();
        let expires_at = match record.label.strip_prefix(SESSION_TOKEN_LABEL) {
            Some(session) => {
                let live = match crate::ids::unhex32(session) {
                    Some(session) => {
                        store.session(&session).await?.map(|s| s.expires_at).filter(|t| *t > now)
                    }
                    None => None,
                };
                match live {
                    Some(t) => Some(t),
                    None => return Ok(None),
                }
            }
            None => None,
        };
        let grant = Arc::new(Grant { expires_at, ..grant_of(record) });
        {
            let mut c = self.cache.write();
            if c.len() >= CACHE_MAX {
                c.clear();
            }
            c.insert(hash, grant.clone());
        }
        Ok(Some(grant))
    }

    /// Forgets a revoked token (its streams are ended by `stream::Streams::revoke`).
    pub fn revoked(&self, hash: &[u8; 32]) {
        {
            let mut c = self.cache.write();
            c.remove(hash);
        }
    }
}

fn grant_of(r: TokenRecord) -> Grant {
    Grant {
        hash: r.hash,
        user_id: r.user_id,
        product_id: r.product_id,
        permissions: PermissionSet::from_bits(r.permissions),
        structures: r.structures,
        client_version: r.client_version,
        device_id: r.device_id,
        expires_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roost_store::{Session, SqliteStore, StoreOptions, User};

    fn token(name: &str, label: String) -> TokenRecord {
        TokenRecord {
            hash: hash_token(name),
            user_id: "u".into(),
            product_id: None,
            permissions: PermissionSet::all().bits(),
            structures: Vec::new(),
            client_version: 1,
            created_at: "t".into(),
            label,
            revoked: false,
            device_id: None,
        }
    }

    #[tokio::test]
    async fn a_home_app_token_lives_only_as_long_as_its_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("roost.db"), StoreOptions::default()).unwrap();
        let user = User { id: "u".into(), login: "u".into(), password_hash: None, created_at: "t".into() };
        store.create_user(user).await.unwrap();
        let now = chrono::Utc::now().timestamp();
        for (secret, expires_at) in [("live-session", now + 3600), ("ended-session", now - 1)] {
            let session =
                Session { hash: hash_token(secret), user_id: "u".into(), csrf: "c".into(), expires_at };
            store.insert_session(session).await.unwrap();
            let label = format!("{SESSION_TOKEN_LABEL}{}", crate::ids::hex(&hash_token(secret)));
            store.insert_token(token(&format!("token-of-{secret}"), label)).await.unwrap();
        }
        let missing = format!("{SESSION_TOKEN_LABEL}{}", crate::ids::hex(&hash_token("no-such-session")));
        store.insert_token(token("token-of-no-session", missing)).await.unwrap();
        store.insert_token(token("an-ordinary-token", "cli".into())).await.unwrap();
        let grants = Grants::default();
        let live = grants.resolve(store.as_ref(), "token-of-live-session").await.unwrap().unwrap();
        assert_eq!(live.expires_at, Some(now + 3600));
        assert!(grants.resolve(store.as_ref(), "token-of-ended-session").await.unwrap().is_none());
        assert!(grants.resolve(store.as_ref(), "token-of-no-session").await.unwrap().is_none());
        let ordinary = grants.resolve(store.as_ref(), "an-ordinary-token").await.unwrap().unwrap();
        assert_eq!(ordinary.expires_at, None, "other tokens live until revoked");
    }
}
