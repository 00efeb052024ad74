//! Customer imports over HTTP (issue 18): the file is the request body, as it is on disk.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::imports::BatchRow;
use crate::domain::imports::{Counts, Encoding, Mapping, Outcome, Undone, Upload, MAX_BYTES};
use crate::domain::{Actor, DomainError, Msg};
use actix_web::http::StatusCode;

use crate::web::error::{api_tr, json_error, ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize, IntoParams)]
pub struct ImportQuery {
    /// Only judge the rows; nothing is stored.
    #[serde(default)]
    pub dry_run: bool,
    /// For CSV: `utf-8`, `windows-1251`, `utf-16le`, `utf-16be`; detected when absent.
    #[serde(default)]
    pub encoding: String,
    /// One field per column, comma-separated, empty for "not imported":
    /// `name,phone,,tags`. Fields: name, phone, company, tags, notes, language, birthday,
    /// email, address, telegram, kind, opt_in. Guessed from the header when absent.
    #[serde(default)]
    pub mapping: String,
    /// With `mapping`: whether the first row is a header (default true).
    pub header: Option<bool>,
    /// The file's name, for the batch list.
    #[serde(default)]
    pub file_name: String,
    /// Verdicts returned in `rows` (default 1000, at most 100 000).
    pub limit: Option<usize>,
}

#[derive(Serialize, ToSchema)]
pub struct RowVerdict {
    /// The row's number in the file.
    pub row: usize,
    /// `new`, `match`, `duplicate` or `invalid`.
    pub verdict: &'static str,
    pub name: String,
    pub phones: Vec<String>,
    /// For `match`: the existing customer.
    pub customer_id: Option<i64>,
    /// For `duplicate`: the earlier row of the file it merges into.
    pub same_as_row: Option<usize>,
    /// For `invalid`: why, in the request's language.
    pub reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ImportReport {
    pub dry_run: bool,
    /// `csv` or `excel`.
    pub format: &'static str,
    pub encoding: Option<Encoding>,
    pub mapping: Mapping,
    pub counts: Counts,
    /// Set when something was imported.
    pub outcome: Option<Outcome>,
    /// Invalid rows first, then the others, up to `limit`.
    pub rows: Vec<RowVerdict>,
}

/// The body, up to [`MAX_BYTES`]; a bigger one is answered 413 at once.
async fn body_bytes(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Vec<u8>, Result<HttpResponse, ApiError>> {
    use futures_util::StreamExt;
    let mut buf = Vec::new();
    while let Some(chunk) = payload.next().await {
        let b = chunk.map_err(|_| {
            Err(ApiError::from(DomainError::invalid(
                "err.import.malformed_upload",
            )))
        })?;
        if buf.len() + b.len() > MAX_BYTES {
            // Read on (without keeping it, up to a bound) so that the client, still
            // sending, gets the answer rather than a reset connection.
            let mut seen = buf.len() + b.len();
            while let Some(Ok(more)) = payload.next().await {
                seen += more.len();
                if seen > 2 * MAX_BYTES {
                    break;
                }
            }
            let m = Msg::new("err.import.too_large").with("max", MAX_BYTES / (1024 * 1024));
            return Err(Ok(json_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                api_tr(req).msg(&m),
            )));
        }
        buf.extend_from_slice(&b);
    }
    if buf.is_empty() {
        return Err(Err(DomainError::invalid("err.import.empty").into()));
    }
    Ok(buf)
}

/// Imports customers from the CSV or Excel file in the body (or, with `dry_run`, only
/// judges its rows). All valid rows go in together, or none; rows whose phone belongs to
/// a customer merge into them. The batch can be undone.
#[utoipa::path(post, path = "/api/v1/imports/customers", tag = "imports", params(ImportQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = ImportReport), (status = 201, body = ImportReport),
              (status = 413, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn import_customers(
    req: HttpRequest,
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<ImportQuery>,
    payload: web::Payload,
) -> ApiResult {
    let bytes = match body_bytes(&req, payload).await {
        Ok(b) => b,
        Err(answer) => return answer,
    };
    let encoding = Encoding::parse(&q.encoding)?;
    let mapping = if q.mapping.trim().is_empty() {
        None
    } else {
        Some(Mapping::parse_list(&q.mapping, q.header.unwrap_or(true))?)
    };
    let imports = &state.ctx.imports;
    let tr = api_tr(&req);
    let limit = q.limit.unwrap_or(1000).min(100_000);
    let (outcome, preview) = if q.dry_run {
        (
            None,
            imports
                .preview_of(
                    bytes,
                    encoding,
                    mapping,
                    None,
                    crate::domain::imports::importer(&actor, None)?,
                )
                .await?,
        )
    } else {
        let up = Upload {
            file_name: q.file_name.clone(),
            bytes,
            encoding,
        };
        let (o, p) = imports.import_file(Some(&actor), up, mapping, None).await?;
        (Some(o), p)
    };
    let mut rows: Vec<RowVerdict> = Vec::new();
    let (bad, good): (Vec<_>, Vec<_>) = preview
        .plan
        .rows
        .iter()
        .partition(|r| r.verdict.code() == "invalid");
    for r in bad.into_iter().chain(good).take(limit) {
        use crate::domain::imports::Verdict;
        rows.push(RowVerdict {
            row: r.row,
            verdict: r.verdict.code(),
            name: r.name.clone(),
            phones: r.phones.clone(),
            customer_id: match &r.verdict {
                Verdict::Match { customer_id, .. } => Some(*customer_id),
                _ => None,
            },
            same_as_row: match &r.verdict {
                Verdict::SameAs { row } => Some(*row),
                _ => None,
            },
            reason: match &r.verdict {
                Verdict::Invalid(m) => Some(tr.msg(m)),
                _ => None,
            },
        });
    }
    let counts = preview.plan.counts();
    let report = ImportReport {
        dry_run: q.dry_run,
        format: preview.format,
        encoding: preview.encoding,
        mapping: preview.mapping,
        counts,
        outcome,
        rows,
    };
    Ok(if q.dry_run {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::Created().json(report)
    })
}

/// Import batches, newest first.
#[utoipa::path(get, path = "/api/v1/imports", tag = "imports",
    responses((status = 200, body = [BatchRow])))]
pub async fn list(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.imports.list(200).await?))
}

#[utoipa::path(get, path = "/api/v1/imports/{id}", tag = "imports", params(("id" = i64, Path)),
    responses((status = 200, body = BatchRow), (status = 404, body = ErrorBody)))]
pub async fn get(state: web::Data<WebState>, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.imports.get(id.into_inner()).await?))
}

/// Undoes an imported batch: the customers it created go, the ones it merged into get
/// back what they had; a customer edited since (or with orders or calls) is kept.
#[utoipa::path(post, path = "/api/v1/imports/{id}/undo", tag = "imports", params(("id" = i64, Path)),
    responses((status = 200, body = Undone), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn undo(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .imports
            .undo(Some(&actor), id.into_inner())
            .await?,
    ))
}
