//! Users, tokens (only their SHA-256), products, authorization codes and sessions.

use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, backend, unique_violation};
use crate::{BoxFuture, CodeRecord, Product, Result, Session, StoreError, TokenRecord, User};

pub(super) fn row_to_token(row: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    let hash: Vec<u8> = row.get(0)?;
    let mut h = [0u8; 32];
    if hash.len() == 32 {
        h.copy_from_slice(&hash);
    }
    let structures: String = row.get(4)?;
    Ok(TokenRecord {
        hash: h,
        user_id: row.get(1)?,
        product_id: row.get(2)?,
        permissions: row.get::<_, i64>(3)? as u32,
        structures: serde_json::from_str(&structures).unwrap_or_default(),
        client_version: row.get::<_, i64>(5)? as u64,
        created_at: row.get(6)?,
        label: row.get(7)?,
        revoked: row.get::<_, Option<i64>>(8)?.is_some(),
        device_id: row.get(9)?,
    })
}

pub(super) fn row_to_user(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User { id: row.get(0)?, login: row.get(1)?, password_hash: row.get(2)?, created_at: row.get(3)? })
}

pub(super) const TOKEN_COLUMNS: &str = "hash, user_id, product_id, permissions, structures, client_version, created_at, label, revoked_seq, device_id";

pub(super) const PRODUCT_COLUMNS: &str =
    "id, name, description, secret_hash, redirect_uris, permissions, client_version, created_at, owner";

pub(super) fn row_to_product(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    let uris: String = r.get(4)?;
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        secret_hash: r.get(3)?,
        redirect_uris: serde_json::from_str(&uris).unwrap_or_default(),
        permissions: r.get::<_, i64>(5)? as u32,
        client_version: r.get::<_, i64>(6)? as u64,
        created_at: r.get(7)?,
        owner: r.get(8)?,
    })
}

pub(super) const CODE_COLUMNS: &str = "hash, product_id, user_id, permissions, structures, client_version, redirect_uri, code_challenge, expires_at, token_hash";

pub(super) fn to_hash(v: Vec<u8>) -> [u8; 32] {
    let mut h = [0u8; 32];
    if v.len() == 32 {
        h.copy_from_slice(&v);
    }
    h
}

pub(super) fn row_to_code(r: &rusqlite::Row<'_>) -> rusqlite::Result<CodeRecord> {
    let structures: String = r.get(4)?;
    Ok(CodeRecord {
        hash: to_hash(r.get(0)?),
        product_id: r.get(1)?,
        user_id: r.get(2)?,
        permissions: r.get::<_, i64>(3)? as u32,
        structures: serde_json::from_str(&structures).unwrap_or_default(),
        client_version: r.get::<_, i64>(5)? as u64,
        redirect_uri: r.get(6)?,
        code_challenge: r.get(7)?,
        expires_at: r.get(8)?,
        token_hash: r.get::<_, Option<Vec<u8>>>(9)?.map(to_hash),
    })
}

pub(super) fn insert_token_row(conn: &Connection, token: &TokenRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO tokens(hash, user_id, product_id, permissions, structures, client_version, created_at, label, device_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            token.hash.to_vec(),
            token.user_id,
            token.product_id,
            i64::from(token.permissions),
            serde_json::to_string(&token.structures).unwrap_or_default(),
            token.client_version as i64,
            token.created_at,
            token.label,
            token.device_id,
        ],
    )
    .map_err(backend)?;
    Ok(())
}

impl SqliteStore {
    pub(super) fn create_user(&self, user: User) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO users(id, login, password_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![user.id, user.login, user.password_hash, user.created_at],
            )
            .map_err(|e| {
                if unique_violation(&e) { StoreError::AlreadyExists(user.login.clone()) } else { backend(e) }
            })?;
            Ok(())
        }))
    }

    pub(super) fn user(&self, id: &str) -> BoxFuture<'_, Result<Option<User>>> {
        let id = id.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT id, login, password_hash, created_at FROM users WHERE id = ?1")?
                .query_row([id], row_to_user)
                .optional()
        });
        Box::pin(r)
    }

    pub(super) fn user_by_login(&self, login: &str) -> BoxFuture<'_, Result<Option<User>>> {
        let login = login.to_string();
        let r = self.read(move |c| {
            c.prepare_cached("SELECT id, login, password_hash, created_at FROM users WHERE login = ?1")?
                .query_row([login], row_to_user)
                .optional()
        });
        Box::pin(r)
    }

    pub(super) fn users(&self) -> BoxFuture<'_, Result<Vec<User>>> {
        let r = self.read(move |c| {
            let mut st =
                c.prepare("SELECT id, login, password_hash, created_at FROM users ORDER BY login")?;
            st.query_map([], row_to_user)?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn set_password(&self, user_id: &str, password_hash: &str) -> BoxFuture<'_, Result<()>> {
        let (id, hash) = (user_id.to_string(), password_hash.to_string());
        Box::pin(self.write(move |conn| {
            let n = conn
                .execute("UPDATE users SET password_hash = ?1 WHERE id = ?2", params![hash, id])
                .map_err(backend)?;
            if n == 1 { Ok(()) } else { Err(StoreError::NotFound(id)) }
        }))
    }

    pub(super) fn insert_token(&self, token: TokenRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| insert_token_row(conn, &token)))
    }

    pub(super) fn token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<TokenRecord>>> {
        let hash = *hash;
        let r = self.read(move |c| {
            c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1 AND revoked_seq IS NULL"
            ))?
            .query_row([hash.as_slice()], row_to_token)
            .optional()
        });
        Box::pin(r)
    }

    pub(super) fn revoke_token(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<bool>> {
        let hash = hash.to_vec();
        Box::pin(self.write(move |conn| {
            let n = conn
                .execute(
                    "UPDATE tokens SET revoked_seq = (SELECT COALESCE(MAX(revoked_seq), 0) + 1 FROM tokens)
                     WHERE hash = ?1 AND revoked_seq IS NULL",
                    [hash],
                )
                .map_err(backend)?;
            Ok(n == 1)
        }))
    }

    pub(super) fn device_tokens(&self) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE device_id IS NOT NULL AND revoked_seq IS NULL"
            ))?;
            st.query_map([], row_to_token)?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn revoke_device_tokens(&self, device_id: &str) -> BoxFuture<'_, Result<usize>> {
        let device_id = device_id.to_string();
        Box::pin(self.write(move |conn| {
            conn.execute(
                "UPDATE tokens SET revoked_seq = (SELECT COALESCE(MAX(revoked_seq), 0) + 1 FROM tokens)
                 WHERE device_id = ?1 AND revoked_seq IS NULL",
                [device_id],
            )
            .map_err(backend)
        }))
    }

    pub(super) fn tokens_of(&self, user_id: &str) -> BoxFuture<'_, Result<Vec<TokenRecord>>> {
        let user_id = user_id.to_string();
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = ?1 ORDER BY created_at"
            ))?;
            st.query_map([user_id], row_to_token)?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn revoked_since(&self, seq: u64) -> BoxFuture<'_, Result<(Vec<[u8; 32]>, u64)>> {
        let r = self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT hash, revoked_seq FROM tokens WHERE revoked_seq > ?1 ORDER BY revoked_seq",
            )?;
            let mut max = seq;
            let mut out = Vec::new();
            for row in
                st.query_map([seq as i64], |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, i64>(1)? as u64)))?
            {
                let (h, s) = row?;
                max = max.max(s);
                if h.len() == 32 {
                    let mut a = [0u8; 32];
                    a.copy_from_slice(&h);
                    out.push(a);
                }
            }
            Ok((out, max))
        });
        Box::pin(r)
    }

    pub(super) fn create_product(&self, product: Product) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO products(id, name, description, secret_hash, redirect_uris, permissions, client_version, created_at, owner)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    product.id,
                    product.name,
                    product.description,
                    product.secret_hash,
                    serde_json::to_string(&product.redirect_uris).unwrap_or_default(),
                    i64::from(product.permissions),
                    product.client_version as i64,
                    product.created_at,
                    product.owner,
                ],
            )
            .map_err(|e| if unique_violation(&e) { StoreError::AlreadyExists(product.id.clone()) } else { backend(e) })?;
            Ok(())
        }))
    }

    pub(super) fn product(&self, id: &str) -> BoxFuture<'_, Result<Option<Product>>> {
        let id = id.to_string();
        let r = self.read(move |c| {
            c.prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ?1"))?
                .query_row([id], row_to_product)
                .optional()
        });
        Box::pin(r)
    }

    pub(super) fn products(&self) -> BoxFuture<'_, Result<Vec<Product>>> {
        let r = self.read(move |c| {
            let mut st = c.prepare(&format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY name"))?;
            st.query_map([], row_to_product)?.collect()
        });
        Box::pin(r)
    }

    pub(super) fn update_product_permissions(
        &self,
        id: &str,
        permissions: u32,
    ) -> BoxFuture<'_, Result<u64>> {
        let id = id.to_string();
        Box::pin(self.write(move |conn| {
            let v: Option<i64> = conn
                .query_row(
                    "UPDATE products SET permissions = ?1, client_version = client_version + 1 WHERE id = ?2
                     RETURNING client_version",
                    params![i64::from(permissions), id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            v.map(|v| v as u64).ok_or(StoreError::NotFound(id))
        }))
    }

    pub(super) fn insert_code(&self, code: CodeRecord) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO codes(hash, product_id, user_id, permissions, structures, client_version, redirect_uri, code_challenge, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    code.hash.to_vec(),
                    code.product_id,
                    code.user_id,
                    i64::from(code.permissions),
                    serde_json::to_string(&code.structures).unwrap_or_default(),
                    code.client_version as i64,
                    code.redirect_uri,
                    code.code_challenge,
                    code.expires_at,
                ],
            )
            .map_err(backend)?;
            Ok(())
        }))
    }

    pub(super) fn exchange_code(
        &self,
        hash: &[u8; 32],
        token: TokenRecord,
    ) -> BoxFuture<'_, Result<std::result::Result<CodeRecord, CodeRecord>>> {
        let hash = hash.to_vec();
        Box::pin(self.write(move |conn| {
            let code = conn
                .prepare_cached(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = ?1"))
                .and_then(|mut st| st.query_row([&hash], row_to_code).optional())
                .map_err(backend)?
                .ok_or_else(|| StoreError::NotFound("code".into()))?;
            if let Some(first) = code.token_hash {
                // A replayed code: the token its first use produced is revoked in this same
                // transaction, so the security step cannot fail apart from the answer.
                conn.execute(
                    "UPDATE tokens SET revoked_seq = (SELECT COALESCE(MAX(revoked_seq), 0) + 1 FROM tokens)
                     WHERE hash = ?1 AND revoked_seq IS NULL",
                    [first.to_vec()],
                )
                .map_err(backend)?;
                return Ok(Err(code));
            }
            conn.execute(
                "UPDATE codes SET token_hash = ?1 WHERE hash = ?2",
                params![token.hash.to_vec(), hash],
            )
            .map_err(backend)?;
            insert_token_row(conn, &token)?;
            Ok(Ok(code))
        }))
    }

    pub(super) fn code(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<CodeRecord>>> {
        let hash = *hash;
        let r = self.read(move |c| {
            c.prepare_cached(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = ?1"))?
                .query_row([hash.as_slice()], row_to_code)
                .optional()
        });
        Box::pin(r)
    }

    pub(super) fn insert_session(&self, session: Session) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.write(move |conn| {
            conn.execute(
                "INSERT INTO sessions(hash, user_id, csrf, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![session.hash.to_vec(), session.user_id, session.csrf, session.expires_at],
            )
            .map_err(backend)?;
            Ok(())
        }))
    }

    pub(super) fn session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<Option<Session>>> {
        let hash = *hash;
        let r = self.read(move |c| {
            c.prepare_cached("SELECT hash, user_id, csrf, expires_at FROM sessions WHERE hash = ?1")?
                .query_row([hash.as_slice()], |r| {
                    Ok(Session {
                        hash: to_hash(r.get::<_, Vec<u8>>(0)?),
                        user_id: r.get(1)?,
                        csrf: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                })
                .optional()
        });
        Box::pin(r)
    }

    pub(super) fn delete_session(&self, hash: &[u8; 32]) -> BoxFuture<'_, Result<()>> {
        let hash = hash.to_vec();
        Box::pin(self.write(move |conn| {
            conn.execute("DELETE FROM sessions WHERE hash = ?1", [hash]).map_err(backend)?;
            Ok(())
        }))
    }
}
