//! Idempotency keys of creates, shared by every instance through the database.

use serde_json::Value;
use sqlx::PgPool;

/// What a request with an idempotency key should do.
#[derive(Debug, PartialEq)]
pub enum Claim {
    /// The key is new (or expired, or abandoned): create the user with this id.
    Run { user_id: i64 },
    /// The key was used with this body and finished: answer as then.
    Replay {
        user_id: i64,
        response: Value,
        version: i64,
    },
    /// The first request with this key is still running (or died before it wrote anything
    /// and is not yet old enough to be taken over).
    InProgress { user_id: i64 },
    /// The key was used with another body.
    Mismatch,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    fingerprint: Vec<u8>,
    user_id: i64,
    response: Option<Value>,
    version: Option<i64>,
    abandoned: bool,
}

/// Claims `key` for `caller_id`, or reports how it was used. A row older than `ttl_secs`
/// counts as absent; one unfinished for longer than `abandon_secs` may be taken over.
pub async fn claim(
    pool: &PgPool,
    caller_id: i64,
    key: &str,
    fingerprint: &[u8],
    new_user_id: i64,
    ttl_secs: i64,
    abandon_secs: i64,
) -> sqlx::Result<Claim> {
    loop {
        let inserted: Option<i64> = sqlx::query_scalar(
            r#"
        INSERT INTO idempotency_keys (caller_id, key, fingerprint, user_id)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (caller_id, key) DO UPDATE
           SET fingerprint = EXCLUDED.fingerprint, user_id = EXCLUDED.user_id,
               response = NULL, version = NULL, created_at = now()
         WHERE idempotency_keys.created_at < now() - make_interval(secs => $5)
        RETURNING user_id
        "#,
        )
        .bind(caller_id)
        .bind(key)
        .bind(fingerprint)
        .bind(new_user_id)
        .bind(ttl_secs as f64)
        .fetch_optional(pool)
        .await?;
        if let Some(user_id) = inserted {
            return Ok(Claim::Run { user_id });
        }
        let row: Option<KeyRow> = sqlx::query_as(
            r#"
        SELECT fingerprint, user_id, response, version,
               created_at < now() - make_interval(secs => $3) AS abandoned
          FROM idempotency_keys
         WHERE caller_id = $1 AND key = $2
        "#,
        )
        .bind(caller_id)
        .bind(key)
        .bind(abandon_secs as f64)
        .fetch_optional(pool)
        .await?;
        let Some(KeyRow {
            fingerprint: stored,
            user_id,
            response,
            version,
            abandoned,
        }) = row
        else {
            // Deleted in between (expired, or its request failed): claim again.
            continue;
        };
        if stored != fingerprint {
            return Ok(Claim::Mismatch);
        }
        if let Some(response) = response {
            return Ok(Claim::Replay {
                user_id,
                response,
                version: version.unwrap_or(1),
            });
        }
        if abandoned {
            // Take it over, unless another retry just did.
            let taken = sqlx::query(
                r#"
            UPDATE idempotency_keys SET created_at = now()
             WHERE caller_id = $1 AND key = $2 AND response IS NULL
               AND created_at < now() - make_interval(secs => $3)
            "#,
            )
            .bind(caller_id)
            .bind(key)
            .bind(abandon_secs as f64)
            .execute(pool)
            .await?
            .rows_affected();
            if taken == 1 {
                return Ok(Claim::Run { user_id });
            }
        }
        return Ok(Claim::InProgress { user_id });
    }
}

/// Records the response of the request that holds the key.
pub async fn complete(
    pool: &PgPool,
    caller_id: i64,
    key: &str,
    response: &Value,
    version: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE idempotency_keys SET response = $3, version = $4 WHERE caller_id = $1 AND key = $2",
    )
    .bind(caller_id)
    .bind(key)
    .bind(response)
    .bind(version)
    .execute(pool)
    .await?;
    Ok(())
}

/// Frees the key after its request failed, so that a corrected retry can use it.
pub async fn release(pool: &PgPool, caller_id: i64, key: &str) -> sqlx::Result<()> {
    sqlx::query(
        "DELETE FROM idempotency_keys WHERE caller_id = $1 AND key = $2 AND response IS NULL",
    )
    .bind(caller_id)
    .bind(key)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deletes keys older than `ttl_secs`; returns how many.
pub async fn delete_expired(pool: &PgPool, ttl_secs: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)",
    )
    .bind(ttl_secs as f64)
    .execute(pool)
    .await?
    .rows_affected())
}
