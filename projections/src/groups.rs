//! Queries of the groups and permissions tables.

use sqlx::PgPool;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionView {
    pub codename: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    pub name: String,
    pub permissions: Vec<PermissionView>,
}

/// Adds one (group, permission) row of a query ordered by group name, then codename.
fn push_row(
    groups: &mut Vec<GroupView>,
    group: String,
    codename: Option<String>,
    name: Option<String>,
) {
    if groups.last().is_none_or(|last| last.name != group) {
        groups.push(GroupView {
            name: group,
            permissions: Vec::new(),
        });
    }
    if let (Some(codename), Some(name), Some(current)) = (codename, name, groups.last_mut()) {
        current.permissions.push(PermissionView { codename, name });
    }
}

/// The names among `names` that are not existing groups, in the order given.
pub async fn unknown(pool: &PgPool, names: &[String]) -> sqlx::Result<Vec<String>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    // PostgreSQL text cannot hold NUL: such a name is unknown without asking.
    let askable: Vec<&String> = names.iter().filter(|name| !name.contains('\0')).collect();
    let existing: Vec<String> = sqlx::query_scalar("SELECT name FROM groups WHERE name = ANY($1)")
        .bind(askable)
        .fetch_all(pool)
        .await?;
    Ok(names
        .iter()
        .filter(|name| !existing.contains(name))
        .cloned()
        .collect())
}

/// Every group with its permissions, and the `group_catalog` version they are as of.
pub async fn catalog(pool: &PgPool) -> sqlx::Result<(i64, Vec<GroupView>)> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        r#"
        SELECT (SELECT version FROM group_catalog), g.name, p.codename, p.name
          FROM groups g
          LEFT JOIN group_permissions gp ON gp.group_name = g.name
          LEFT JOIN permissions p ON p.codename = gp.codename
         ORDER BY g.name, p.codename
        "#,
    )
    .fetch_all(pool)
    .await?;
    let mut version = 0;
    let mut groups: Vec<GroupView> = Vec::new();
    for (catalog_version, group, codename, name) in rows {
        version = catalog_version;
        push_row(&mut groups, group, codename, name);
    }
    Ok((version, groups))
}

/// Every group with its permissions, in name order.
pub async fn list_all(pool: &PgPool) -> sqlx::Result<Vec<GroupView>> {
    Ok(catalog(pool).await?.1)
}

#[derive(Debug, thiserror::Error)]
pub enum CreateGroupError {
    #[error("a group named {0:?} already exists")]
    Exists(String),
    #[error("unknown permission(s): {0}")]
    UnknownPermissions(String),
    #[error("a group name must be 1 to 150 characters without NUL")]
    InvalidName,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Creates a group with the given permissions (codenames).
pub async fn create(
    pool: &PgPool,
    name: &str,
    codenames: &[String],
) -> Result<(), CreateGroupError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 150 || name.contains('\0') {
        return Err(CreateGroupError::InvalidName);
    }
    let known: Vec<String> =
        sqlx::query_scalar("SELECT codename FROM permissions WHERE codename = ANY($1)")
            .bind(codenames)
            .fetch_all(pool)
            .await?;
    let unknown: Vec<&str> = codenames
        .iter()
        .filter(|c| !known.contains(c))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(CreateGroupError::UnknownPermissions(unknown.join(", ")));
    }
    let mut tx = pool.begin().await?;
    let inserted = sqlx::query("INSERT INTO groups (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    if inserted.rows_affected() == 0 {
        return Err(CreateGroupError::Exists(name.to_owned()));
    }
    sqlx::query(
        "INSERT INTO group_permissions (group_name, codename) SELECT $1, unnest($2::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(codenames)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}
