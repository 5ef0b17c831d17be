//! Failed-login bookkeeping for throttling, in the database so that every instance of the
//! service counts the same failures.

use sqlx::PgPool;

/// Seconds until `key` may try again, when it has `limit` or more failures within the last
/// `window_secs` seconds: until the `limit`-th newest of them leaves the window.
pub async fn retry_after(
    pool: &PgPool,
    key: &str,
    limit: i64,
    window_secs: i64,
) -> sqlx::Result<Option<i64>> {
    if limit <= 0 {
        return Ok(None);
    }
    let seconds: Option<f64> = sqlx::query_scalar(
        r#"
        SELECT extract(epoch FROM failed_at + make_interval(secs => $3) - now())::float8
          FROM login_failures
         WHERE key = $1 AND failed_at > now() - make_interval(secs => $3)
         ORDER BY failed_at DESC
        OFFSET $2 - 1 LIMIT 1
        "#,
    )
    .bind(key)
    .bind(limit)
    .bind(window_secs as f64)
    .fetch_optional(pool)
    .await?;
    Ok(seconds.map(|s| (s.ceil() as i64).max(1)))
}

/// Records one failure under each key and forgets their failures older than the window.
pub async fn record_failure(pool: &PgPool, keys: &[String], window_secs: i64) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("INSERT INTO login_failures (key) SELECT unnest($1::text[])")
        .bind(keys)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DELETE FROM login_failures
          WHERE key = ANY($1) AND failed_at <= now() - make_interval(secs => $2)",
    )
    .bind(keys)
    .bind(window_secs as f64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Forgets the failures of `key` (after a successful login).
pub async fn clear(pool: &PgPool, key: &str) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM login_failures WHERE key = $1")
        .bind(key)
        .execute(pool)
        .await?;
    Ok(())
}
