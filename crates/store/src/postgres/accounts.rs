//! Users, tokens (only their SHA-256), products, authorization codes and sessions on
//! PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{PgStore, backend, unique_violation};
use crate::{CodeRecord, Product, Result, Session, StoreError, TokenRecord, User};

pub(super) fn to_hash(v: Vec<u8>) -> [u8; 32] {
    let mut h = [0u8; 32];
    if v.len() == 32 {
        h.copy_from_slice(&v);
    }
    h
}

fn to_user(r: &Row) -> User {
    User { id: r.get(0), login: r.get(1), password_hash: r.get(2), created_at: r.get(3) }
}

const TOKEN_COLUMNS: &str = "hash, user_id, product_id, permissions, structures, client_version, created_at, label, revoked_xid IS NOT NULL, device_id";

fn to_token(r: &Row) -> TokenRecord {
    TokenRecord {
        hash: to_hash(r.get(0)),
        user_id: r.get(1),
        product_id: r.get(2),
        permissions: r.get::<_, i64>(3) as u32,
        structures: serde_json::from_str(r.get(4)).unwrap_or_default(),
        client_version: r.get::<_, i64>(5) as u64,
        created_at: r.get(6),
        label: r.get(7),
        revoked: r.get(8),
        device_id: r.get(9),
    }
}

const PRODUCT_COLUMNS: &str =
    "id, name, description, secret_hash, redirect_uris, permissions, client_version, created_at, owner";

fn to_product(r: &Row) -> Product {
    Product {
        id: r.get(0),
        name: r.get(1),
        description: r.get(2),
        secret_hash: r.get(3),
        redirect_uris: serde_json::from_str(r.get(4)).unwrap_or_default(),
        permissions: r.get::<_, i64>(5) as u32,
        client_version: r.get::<_, i64>(6) as u64,
        created_at: r.get(7),
        owner: r.get(8),
    }
}

const CODE_COLUMNS: &str = "hash, product_id, user_id, permissions, structures, client_version, redirect_uri, code_challenge, expires_at, token_hash";

fn to_code(r: &Row) -> CodeRecord {
    CodeRecord {
        hash: to_hash(r.get(0)),
        product_id: r.get(1),
        user_id: r.get(2),
        permissions: r.get::<_, i64>(3) as u32,
        structures: serde_json::from_str(r.get(4)).unwrap_or_default(),
        client_version: r.get::<_, i64>(5) as u64,
        redirect_uri: r.get(6),
        code_challenge: r.get(7),
        expires_at: r.get(8),
        token_hash: r.get::<_, Option<Vec<u8>>>(9).map(to_hash),
    }
}

/// Inserts a token row, alone or inside a transaction.
async fn insert_token_row(client: &impl GenericClient, token: &TokenRecord) -> Result<()> {
    client
        .execute(
            "INSERT INTO tokens(hash, user_id, product_id, permissions, structures, client_version, created_at, label, device_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &token.hash.as_slice(),
                &token.user_id,
                &token.product_id,
                &i64::from(token.permissions),
                &serde_json::to_string(&token.structures).unwrap_or_default(),
                &(token.client_version as i64),
                &token.created_at,
                &token.label,
                &token.device_id,
            ],
        )
        .await
        .map_err(backend)?;
    Ok(())
}

impl PgStore {
    pub(super) async fn create_user(&self, user: User) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO users(id, login, password_hash, created_at) VALUES ($1, $2, $3, $4)",
                &[&user.id, &user.login, &user.password_hash, &user.created_at],
            )
            .await
            .map_err(|e| {
                if unique_violation(&e) { StoreError::AlreadyExists(user.login.clone()) } else { backend(e) }
            })?;
        Ok(())
    }

    /// The user whose `column` (`id` or `login`, never input) is `value`.
    pub(super) async fn user_where(&self, column: &'static str, value: &str) -> Result<Option<User>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!(
                "SELECT id, login, password_hash, created_at FROM users WHERE {column} = $1"
            ))
            .await
            .map_err(backend)?;
        Ok(client.query_opt(&st, &[&value]).await.map_err(backend)?.as_ref().map(to_user))
    }

    pub(super) async fn users(&self) -> Result<Vec<User>> {
        let client = self.client().await?;
        let rows = client
            .query("SELECT id, login, password_hash, created_at FROM users ORDER BY login", &[])
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(to_user).collect())
    }

    pub(super) async fn set_password(&self, id: &str, hash: &str) -> Result<()> {
        let client = self.client().await?;
        let n = client
            .execute("UPDATE users SET password_hash = $1 WHERE id = $2", &[&hash, &id])
            .await
            .map_err(backend)?;
        if n == 1 { Ok(()) } else { Err(StoreError::NotFound(id.to_string())) }
    }

    pub(super) async fn insert_token(&self, token: TokenRecord) -> Result<()> {
        let client = self.client().await?;
        insert_token_row(&client, &token).await
    }

    pub(super) async fn token(&self, hash: &[u8; 32]) -> Result<Option<TokenRecord>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1 AND revoked_xid IS NULL"
            ))
            .await
            .map_err(backend)?;
        Ok(client.query_opt(&st, &[&hash.as_slice()]).await.map_err(backend)?.as_ref().map(to_token))
    }

    pub(super) async fn revoke_token(&self, hash: &[u8; 32]) -> Result<bool> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE tokens SET revoked_xid = pg_current_xact_id() WHERE hash = $1 AND revoked_xid IS NULL",
                &[&hash.as_slice()],
            )
            .await
            .map_err(backend)?;
        Ok(n == 1)
    }

    pub(super) async fn tokens_of(&self, user_id: &str) -> Result<Vec<TokenRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE user_id = $1 ORDER BY created_at"),
                &[&user_id],
            )
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(to_token).collect())
    }

    pub(super) async fn device_tokens(&self) -> Result<Vec<TokenRecord>> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE device_id IS NOT NULL AND revoked_xid IS NULL"
                ),
                &[],
            )
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(to_token).collect())
    }

    pub(super) async fn revoke_device_tokens(&self, device_id: &str) -> Result<usize> {
        let client = self.client().await?;
        let n = client
            .execute(
                "UPDATE tokens SET revoked_xid = pg_current_xact_id() WHERE device_id = $1 AND revoked_xid IS NULL",
                &[&device_id],
            )
            .await
            .map_err(backend)?;
        Ok(n as usize)
    }

    pub(super) async fn create_product(&self, product: Product) -> Result<()> {
        let client = self.client().await?;
        let uris = serde_json::to_string(&product.redirect_uris).unwrap_or_default();
        client
            .execute(
                "INSERT INTO products(id, name, description, secret_hash, redirect_uris, permissions, client_version, created_at, owner)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &product.id,
                    &product.name,
                    &product.description,
                    &product.secret_hash,
                    &uris,
                    &i64::from(product.permissions),
                    &(product.client_version as i64),
                    &product.created_at,
                    &product.owner,
                ],
            )
            .await
            .map_err(|e| if unique_violation(&e) { StoreError::AlreadyExists(product.id.clone()) } else { backend(e) })?;
        Ok(())
    }

    pub(super) async fn product(&self, id: &str) -> Result<Option<Product>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached(&format!("SELECT {PRODUCT_COLUMNS} FROM products WHERE id = $1"))
            .await
            .map_err(backend)?;
        Ok(client.query_opt(&st, &[&id]).await.map_err(backend)?.as_ref().map(to_product))
    }

    pub(super) async fn products(&self) -> Result<Vec<Product>> {
        let client = self.client().await?;
        let rows = client
            .query(&format!("SELECT {PRODUCT_COLUMNS} FROM products ORDER BY name"), &[])
            .await
            .map_err(backend)?;
        Ok(rows.iter().map(to_product).collect())
    }

    pub(super) async fn update_product_permissions(&self, id: &str, permissions: u32) -> Result<u64> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "UPDATE products SET permissions = $1, client_version = client_version + 1 WHERE id = $2
                 RETURNING client_version",
                &[&i64::from(permissions), &id],
            )
            .await
            .map_err(backend)?;
        row.map(|r| r.get::<_, i64>(0) as u64).ok_or_else(|| StoreError::NotFound(id.to_string()))
    }

    pub(super) async fn insert_code(&self, code: CodeRecord) -> Result<()> {
        let client = self.client().await?;
        let structures = serde_json::to_string(&code.structures).unwrap_or_default();
        client
            .execute(
                "INSERT INTO codes(hash, product_id, user_id, permissions, structures, client_version, redirect_uri, code_challenge, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &code.hash.as_slice(),
                    &code.product_id,
                    &code.user_id,
                    &i64::from(code.permissions),
                    &structures,
                    &(code.client_version as i64),
                    &code.redirect_uri,
                    &code.code_challenge,
                    &code.expires_at,
                ],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    /// One transaction: the code is locked (`FOR UPDATE`), so two nodes exchanging it at
    /// once take turns and the second sees it used.
    pub(super) async fn exchange_code(
        &self,
        hash: &[u8; 32],
        token: TokenRecord,
    ) -> Result<std::result::Result<CodeRecord, CodeRecord>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend)?;
        let code = tx
            .query_opt(
                &format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = $1 FOR UPDATE"),
                &[&hash.as_slice()],
            )
            .await
            .map_err(backend)?
            .as_ref()
            .map(to_code)
            .ok_or_else(|| StoreError::NotFound("code".into()))?;
        if let Some(first) = code.token_hash {
            // A replayed code: the token its first use produced is revoked in this same
            // transaction, so the security step cannot fail apart from the answer.
            tx.execute(
                "UPDATE tokens SET revoked_xid = pg_current_xact_id() WHERE hash = $1 AND revoked_xid IS NULL",
                &[&first.as_slice()],
            )
            .await
            .map_err(backend)?;
            tx.commit().await.map_err(backend)?;
            return Ok(Err(code));
        }
        tx.execute(
            "UPDATE codes SET token_hash = $1 WHERE hash = $2",
            &[&token.hash.as_slice(), &hash.as_slice()],
        )
        .await
        .map_err(backend)?;
        insert_token_row(&tx, &token).await?;
        tx.commit().await.map_err(backend)?;
        Ok(Ok(code))
    }

    pub(super) async fn code(&self, hash: &[u8; 32]) -> Result<Option<CodeRecord>> {
        let client = self.client().await?;
        let row = client
            .query_opt(&format!("SELECT {CODE_COLUMNS} FROM codes WHERE hash = $1"), &[&hash.as_slice()])
            .await
            .map_err(backend)?;
        Ok(row.as_ref().map(to_code))
    }

    pub(super) async fn insert_session(&self, session: Session) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO sessions(hash, user_id, csrf, expires_at) VALUES ($1, $2, $3, $4)",
                &[&session.hash.as_slice(), &session.user_id, &session.csrf, &session.expires_at],
            )
            .await
            .map_err(backend)?;
        Ok(())
    }

    pub(super) async fn session(&self, hash: &[u8; 32]) -> Result<Option<Session>> {
        let client = self.client().await?;
        let st = client
            .prepare_cached("SELECT hash, user_id, csrf, expires_at FROM sessions WHERE hash = $1")
            .await
            .map_err(backend)?;
        let row = client.query_opt(&st, &[&hash.as_slice()]).await.map_err(backend)?;
        Ok(row.map(|r| Session {
            hash: to_hash(r.get(0)),
            user_id: r.get(1),
            csrf: r.get(2),
            expires_at: r.get(3),
        }))
    }

    pub(super) async fn delete_session(&self, hash: &[u8; 32]) -> Result<()> {
        let client = self.client().await?;
        client.execute("DELETE FROM sessions WHERE hash = $1", &[&hash.as_slice()]).await.map_err(backend)?;
        Ok(())
    }
}
