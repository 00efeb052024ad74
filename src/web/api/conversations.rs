//! Conversations with customers over JSON: the inbox list, a thread, replies, assignment,
//! and the quick replies.

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::domain::conversations::{
    ConversationRow, InboxQuery, MessageRow, QuickReply, ReplyInput, Tab, Thread,
};
use crate::domain::{Actor, DomainError};
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// unassigned (default), mine, all (open), closed.
    pub tab: Option<String>,
    /// Customer name or phone (last four digits or more), sender name, or message text.
    pub q: Option<String>,
    pub customer_id: Option<i64>,
    /// Only threads with unread customer messages.
    pub unread: Option<bool>,
    /// Keyset cursor from the previous page: `<last_message_at>.<id>` of its last row.
    pub before: Option<String>,
    /// 1-200, default 50.
    pub limit: Option<i64>,
}

/// Conversations, newest activity first.
#[utoipa::path(get, path = "/api/v1/conversations", tag = "conversations", params(ListParams),
    responses((status = 200, body = [ConversationRow]), (status = 400, body = ErrorBody)))]
pub async fn list(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<ListParams>,
) -> ApiResult {
    let q = q.into_inner();
    let bad = || ApiError::bad_query(DomainError::invalid("err.inbox.bad_query"));
    let tab = match q.tab.as_deref() {
        None | Some("") => Tab::Unassigned,
        Some(t) => Tab::parse(t).ok_or_else(bad)?,
    };
    let before = match q.before.as_deref() {
        None | Some("") => None,
        Some(b) => {
            let (at, id) = b.split_once('.').ok_or_else(bad)?;
            Some((
                at.parse().map_err(|_| bad())?,
                id.parse().map_err(|_| bad())?,
            ))
        }
    };
    let rows = state
        .ctx
        .conversations
        .list(
            &actor,
            InboxQuery {
                tab,
                search: q.q,
                customer_id: q.customer_id,
                unread_only: q.unread.unwrap_or(false),
                before,
                limit: q.limit.unwrap_or(50),
            },
        )
        .await?;
    Ok(HttpResponse::Ok().json(rows))
}

#[derive(Serialize, ToSchema)]
pub struct Unread {
    /// Open threads with unread customer messages, unassigned or the caller's.
    pub unread: i64,
}

/// The header badge's count.
#[utoipa::path(get, path = "/api/v1/conversations/unread", tag = "conversations",
    responses((status = 200, body = Unread)))]
pub async fn unread(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    let unread = state.ctx.conversations.unread(&actor).await?;
    Ok(HttpResponse::Ok().json(Unread { unread }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ThreadParams {
    /// Messages before this message id (older pages).
    pub before: Option<i64>,
}

/// A conversation with its latest 100 messages; reading it marks it read.
#[utoipa::path(get, path = "/api/v1/conversations/{id}", tag = "conversations", params(("id" = i64, Path), ThreadParams),
    responses((status = 200, body = Thread), (status = 404, body = ErrorBody)))]
pub async fn get(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    q: web::Query<ThreadParams>,
) -> ApiResult {
    let t = state
        .ctx
        .conversations
        .thread(&actor, id.into_inner(), q.before)
        .await?;
    Ok(HttpResponse::Ok().json(t))
}

/// A conversation's messages, oldest first (100 per page; `before` pages back).
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", tag = "conversations", params(("id" = i64, Path), ThreadParams),
    responses((status = 200, body = [MessageRow]), (status = 404, body = ErrorBody)))]
pub async fn messages(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    q: web::Query<ThreadParams>,
) -> ApiResult {
    let t = state
        .ctx
        .conversations
        .thread(&actor, id.into_inner(), q.before)
        .await?;
    Ok(HttpResponse::Ok().json(t.messages))
}

/// Replies to the customer (queued to Telegram; its delivery shows on the message), or
/// adds a staff-only note.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", tag = "conversations", params(("id" = i64, Path)),
    request_body = ReplyInput,
    responses((status = 201, body = MessageRow), (status = 404, body = ErrorBody),
              (status = 409, description = "the customer blocked the bot", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn reply(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<ReplyInput>,
) -> ApiResult {
    let m = state
        .ctx
        .conversations
        .reply(&actor, id.into_inner(), body.into_inner(), None)
        .await?;
    Ok(HttpResponse::Created().json(m))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignInput {
    /// The agent; null returns the thread to the unassigned queue.
    pub user_id: Option<i64>,
    /// Shown in the thread's history with the transfer.
    #[serde(default)]
    pub note: String,
}

/// Assigns or transfers a conversation.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/assign", tag = "conversations", params(("id" = i64, Path)),
    request_body = AssignInput,
    responses((status = 200, body = ConversationRow), (status = 404, body = ErrorBody),
              (status = 409, description = "another agent has it (only an admin moves it)", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub async fn assign(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<AssignInput>,
) -> ApiResult {
    let b = body.into_inner();
    let c = state
        .ctx
        .conversations
        .assign(&actor, id.into_inner(), b.user_id, &b.note)
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

/// Closes a conversation (a new customer message reopens it).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/close", tag = "conversations", params(("id" = i64, Path)),
    responses((status = 200, body = ConversationRow), (status = 404, body = ErrorBody)))]
pub async fn close(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    let c = state
        .ctx
        .conversations
        .close(&actor, id.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(c))
}

/// The shop's quick replies (every language).
#[utoipa::path(get, path = "/api/v1/quick-replies", tag = "conversations",
    responses((status = 200, body = [QuickReply])))]
pub async fn quick_replies(state: web::Data<WebState>, actor: Actor) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.conversations.quick_replies(&actor).await?))
}

/// Creates (id 0 or absent) or updates a quick reply (admin).
#[utoipa::path(post, path = "/api/v1/quick-replies", tag = "conversations", request_body = QuickReply,
    responses((status = 200, body = QuickReply), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn save_quick_reply(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<QuickReply>,
) -> ApiResult {
    let r = state
        .ctx
        .conversations
        .save_quick_reply(&actor, body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(r))
}

/// Deletes a quick reply (admin).
#[utoipa::path(delete, path = "/api/v1/quick-replies/{id}", tag = "conversations", params(("id" = i64, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_quick_reply(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    state
        .ctx
        .conversations
        .delete_quick_reply(&actor, id.into_inner())
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
