//! `GET /inbox/{id}/export.pdf`: a conversation as a PDF, for disputes.

use actix_web::http::header;
use actix_web::{web, HttpResponse, ResponseError};

use crate::domain::documents;
use crate::domain::Actor;
use crate::web::auth::Ui;
use crate::web::error::PageError;

pub async fn export_pdf(ui: Ui, actor: Actor, path: web::Path<i64>) -> HttpResponse {
    let id = path.into_inner();
    let ctx = &ui.state.ctx;
    match documents::conversation_pdf(
        &ctx.conversations,
        &ctx.db,
        ctx.clock.get(),
        &actor,
        id,
        ui.tr.lang,
    )
    .await
    {
        Ok(pdf) => HttpResponse::Ok()
            .content_type("application/pdf")
            .insert_header((
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"conversation-{id}.pdf\""),
            ))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .body(pdf),
        Err(err) => PageError { err, tr: ui.tr }.error_response(),
    }
}
