//! Queries of the groups and permissions tables.

use std::collections::HashMap;

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

/// The groups of each user, in name order, each with its permissions in codename order.
pub async fn of_users(
    pool: &PgPool,
    user_ids: &[i64],
) -> sqlx::Result<HashMap<i64, Vec<GroupView>>> {
    let mut result: HashMap<i64, Vec<GroupView>> = HashMap::new();
    if user_ids.is_empty() {
        return Ok(result);
    }
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = sqlx::query_as(
        r#"
        SELECT ug.user_id, g.name, p.codename, p.name
          FROM user_groups ug
          JOIN groups g ON g.name = ug.group_name
          LEFT JOIN group_permissions gp ON gp.group_name = g.name
          LEFT JOIN permissions p ON p.codename = gp.codename
         WHERE ug.user_id = ANY($1)
         ORDER BY ug.user_id, g.name, p.codename
        "#,
    )
    .bind(user_ids)
    .fetch_all(pool)
    .await?;
    for (user_id, group, codename, name) in rows {
        let groups = result.entry(user_id).or_default();
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
    Ok(result)
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
