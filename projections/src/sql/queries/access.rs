//! Organizations' own small resources: API keys, connections, stored files.

use super::PageRequest;
use crate::sql::rows::{connection_row, decode, ConnectionRow, CONNECTION_COLUMNS};
use crate::sql::SqlError;
use ledger_core::domain::api_key::ApiKey;
use ledger_core::domain::file::StoredFile;
use ledger_core::ids::{ApiKeyId, ConnectionId, FileId, OrganizationId};
use rusqlite::types::Value as Sql;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension};

/// A key with its secret's hash, for authentication only: the hash of a
/// 256-bit random secret verifies a presented secret and reveals nothing
/// usable, which is why it may sit in the read models (the secret never does).
pub fn credential(c: &Connection, id: ApiKeyId) -> Result<Option<ApiKey>, SqlError> {
    let row: Option<(Vec<u8>, String)> = c
        .prepare_cached("SELECT state, secret_sha256 FROM api_keys WHERE id = ?1")?
        .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((state, hash)) = row else {
        return Ok(None);
    };
    let mut key: ApiKey = decode("api_keys", &state)?;
    hex::decode_to_slice(&hash, &mut key.secret_hash)
        .map_err(|e| crate::sql::corrupt("api_keys", id, e))?;
    Ok(Some(key))
}

/// The organization's keys, oldest first (without their hashes).
pub fn api_keys_of(c: &Connection, org: OrganizationId) -> Result<Vec<ApiKey>, SqlError> {
    let mut stmt =
        c.prepare_cached("SELECT state FROM api_keys WHERE organization_id = ?1 ORDER BY seq")?;
    let rows = stmt.query_map([org.to_string()], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|b| decode("api_keys", &b?)).collect()
}

pub fn api_key_of(
    c: &Connection,
    org: OrganizationId,
    id: ApiKeyId,
) -> Result<Option<ApiKey>, SqlError> {
    one(
        c,
        "SELECT state FROM api_keys WHERE id = ?1 AND organization_id = ?2",
        "api_keys",
        &id.to_string(),
        org,
    )
}

fn one<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    table: &'static str,
    id: &str,
    org: OrganizationId,
) -> Result<Option<T>, SqlError> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached(sql)?
        .query_row(params![id, org.to_string()], |r| r.get(0))
        .optional()?;
    bytes.map(|b| decode(table, &b)).transpose()
}

/// A connection `org` is party to.
pub fn connection_of(
    c: &Connection,
    org: OrganizationId,
    id: ConnectionId,
) -> Result<Option<ConnectionRow>, SqlError> {
    let sql = format!(
        "SELECT {CONNECTION_COLUMNS} FROM connections WHERE id = ?1
           AND (seller_organization_id = ?2 OR buyer_organization_id = ?2)"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(params![id.to_string(), org.to_string()])?;
    rows.next()?.map(|r| connection_row(r, 0)).transpose()
}

/// Keyset page over rows ordered by id (ids are UUID v7: creation order):
/// `select` starts with the id column, `row` reads the rest from column 1.
fn page_by_id_with<T>(
    c: &Connection,
    select: &str,
    mut args: Vec<Sql>,
    page: &PageRequest<'_>,
    row: impl Fn(&rusqlite::Row<'_>) -> Result<T, SqlError>,
) -> Result<(Vec<T>, Option<String>), SqlError> {
    let mut sql = select.to_owned();
    if let Some(after) = page.after_key {
        sql.push_str(" AND id > ?");
        args.push(Sql::Text(after.to_owned()));
    }
    sql.push_str(" ORDER BY id LIMIT ?");
    args.push(Sql::Integer(page.limit as i64 + 1));
    let mut stmt = c.prepare_cached(&sql)?;
    let mut rows = stmt.query(params_from_iter(args))?;
    let mut items: Vec<(String, T)> = Vec::new();
    while let Some(r) = rows.next()? {
        let id: String = r.get(0)?;
        items.push((id, row(r)?));
    }
    let next = if items.len() > page.limit {
        items.truncate(page.limit);
        items.last().map(|(id, _)| id.clone())
    } else {
        None
    };
    Ok((items.into_iter().map(|(_, t)| t).collect(), next))
}

/// [`page_by_id_with`] over `SELECT id, state`: the resource as encoded.
fn page_by_id<T: serde::de::DeserializeOwned>(
    c: &Connection,
    table: &'static str,
    select: &str,
    args: Vec<Sql>,
    page: &PageRequest<'_>,
) -> Result<(Vec<T>, Option<String>), SqlError> {
    page_by_id_with(c, select, args, page, |r| {
        let state: Vec<u8> = r.get(1)?;
        decode(table, &state)
    })
}

/// The connections `org` is party to, optionally of one status.
pub fn connections_of(
    c: &Connection,
    org: OrganizationId,
    status: Option<&str>,
    page: &PageRequest<'_>,
) -> Result<(Vec<ConnectionRow>, Option<String>), SqlError> {
    let mut select = format!(
        "SELECT id, {CONNECTION_COLUMNS} FROM connections
         WHERE (seller_organization_id = ? OR buyer_organization_id = ?)"
    );
    let mut args = vec![Sql::Text(org.to_string()), Sql::Text(org.to_string())];
    if let Some(s) = status {
        select.push_str(" AND status = ?");
        args.push(Sql::Text(s.to_owned()));
    }
    page_by_id_with(c, &select, args, page, |r| connection_row(r, 1))
}

/// The organization's files, not deleted.
pub fn files_of(
    c: &Connection,
    org: OrganizationId,
    page: &PageRequest<'_>,
) -> Result<(Vec<StoredFile>, Option<String>), SqlError> {
    page_by_id(
        c,
        "files",
        "SELECT id, state FROM files WHERE organization_id = ? AND deleted = 0",
        vec![Sql::Text(org.to_string())],
        page,
    )
}

/// The file, if `org` owns it or may see an invoice it is attached to.
pub fn readable_file(
    c: &Connection,
    org: OrganizationId,
    id: FileId,
) -> Result<Option<StoredFile>, SqlError> {
    one(
        c,
        "SELECT f.state FROM files f WHERE f.id = ?1 AND f.deleted = 0
           AND (f.organization_id = ?2 OR EXISTS (
                 SELECT 1 FROM invoice_attachments a
                 JOIN invoice_parties p ON p.invoice_id = a.invoice_id
                 WHERE a.file_id = f.id AND p.organization_id = ?2))",
        "files",
        &id.to_string(),
        org,
    )
}

/// A file by id whoever owns it, deleted or not (the operator's view).
pub fn file(c: &Connection, id: FileId) -> Result<Option<StoredFile>, SqlError> {
    let bytes: Option<Vec<u8>> = c
        .prepare_cached("SELECT state FROM files WHERE id = ?1")?
        .query_row([id.to_string()], |r| r.get(0))
        .optional()?;
    bytes.map(|b| decode("files", &b)).transpose()
}

/// Files not deleted, every organization's, by id after `after`: the
/// primary key pages them without a sort, so a walk over a large store stays
/// cheap page after page.
pub fn live_files(
    c: &Connection,
    after: Option<FileId>,
    limit: usize,
) -> Result<Vec<StoredFile>, SqlError> {
    let mut stmt = c.prepare_cached(
        "SELECT state FROM files WHERE deleted = 0 AND id > ?1 ORDER BY id LIMIT ?2",
    )?;
    let after = after.map(|id| id.to_string()).unwrap_or_default();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![after, limit], |r| r.get::<_, Vec<u8>>(0))?;
    rows.map(|b| decode("files", &b?)).collect()
}
