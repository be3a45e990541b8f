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
}

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
            return Ok(Some(g));
        }
        let Some(record) = store.token(&hash).await? else {
            return Ok(None);
        };
        let grant = Arc::new(grant_of(record));
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
    }
}
