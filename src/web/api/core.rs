//! Customers, orders and search over JSON, with the same rules as the pages.

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::domain::branches::{BranchInput, BranchRow};
use crate::domain::customers::{CustomerInput, CustomerRow};
use crate::domain::filters::{OrderQuery, Paging};
use crate::domain::orders::{NewOrder, OrderRow, OrderUpdate, OrderView, StatusRow, Unlock};
use crate::domain::search::SearchResults;
use crate::domain::Actor;
use crate::web::error::{ApiError, ErrorBody};
use crate::web::WebState;

type ApiResult = Result<HttpResponse, ApiError>;

#[derive(serde::Serialize, ToSchema)]
pub struct CustomerPage {
    pub items: Vec<CustomerRow>,
    /// Customers, counted up to 10 001: 10 001 means "more than 10 000".
    pub total: i64,
}

#[derive(Deserialize, IntoParams)]
pub struct CustomerListQuery {
    /// 1-500, default 50.
    pub limit: Option<String>,
    pub offset: Option<String>,
    /// Customers with this tag.
    pub tag: Option<String>,
    /// `person` or `company`.
    pub kind: Option<String>,
    /// `true`: only customers who agreed to marketing.
    pub opted_in: Option<String>,
    /// `true`: the archive instead of the live customers.
    pub archived: Option<String>,
}

/// Customers, newest first; archived ones only with `archived=true`.
#[utoipa::path(get, path = "/api/v1/customers", tag = "customers", params(CustomerListQuery),
    responses((status = 200, body = CustomerPage)))]
pub async fn list_customers(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<CustomerListQuery>,
) -> ApiResult {
    let (limit, offset) = Paging {
        limit: q.limit.clone(),
        offset: q.offset.clone(),
    }
    .parse(50)?;
    let flag = |v: &Option<String>| -> Result<Option<bool>, ApiError> {
        match v.as_deref().map(str::trim) {
            None | Some("") => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(other) => Err(ApiError::bad_query(crate::domain::DomainError::invalid(
                crate::domain::Msg::new("err.import.opt_in").with("value", other),
            ))),
        }
    };
    let kind = match q.kind.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(k @ ("person" | "company")) => Some(k.to_string()),
        Some(other) => {
            return Err(ApiError::bad_query(crate::domain::DomainError::invalid(
                crate::domain::Msg::new("err.customer.kind").with("value", other),
            )))
        }
    };
    let f = crate::domain::customers::CustomerFilter {
        tag: q
            .tag
            .as_deref()
            .map(|t| t.trim().to_lowercase())
            .filter(|t| !t.is_empty()),
        kind,
        opted_in: flag(&q.opted_in)?,
        archived: flag(&q.archived)?.unwrap_or(false),
    };
    let (items, total) = state
        .ctx
        .customers
        .list_filtered(&actor, f, limit, offset)
        .await?;
    Ok(HttpResponse::Ok().json(CustomerPage { items, total }))
}

/// Archives a customer: out of lists and search, kept with the history.
#[utoipa::path(post, path = "/api/v1/customers/{id}/archive", tag = "customers", params(("id" = i64, Path)),
    responses((status = 200, body = CustomerRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn archive_customer(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    let id = id.into_inner();
    state.ctx.customers.set_archived(&actor, id, true).await?;
    Ok(HttpResponse::Ok().json(state.ctx.customers.get(&actor, id).await?))
}

/// Brings an archived customer back.
#[utoipa::path(post, path = "/api/v1/customers/{id}/restore", tag = "customers", params(("id" = i64, Path)),
    responses((status = 200, body = CustomerRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn restore_customer(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    let id = id.into_inner();
    state.ctx.customers.set_archived(&actor, id, false).await?;
    Ok(HttpResponse::Ok().json(state.ctx.customers.get(&actor, id).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct CreateCustomer {
    #[serde(flatten)]
    pub customer: CustomerInput,
}

/// Creates a customer; a phone that belongs to someone else is 409 naming them.
#[utoipa::path(post, path = "/api/v1/customers", tag = "customers", request_body = CustomerInput,
    responses((status = 201, body = CustomerRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_customer(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<CustomerInput>,
) -> ApiResult {
    let id = state
        .ctx
        .customers
        .create(&actor, body.into_inner(), false)
        .await?;
    Ok(HttpResponse::Created().json(state.ctx.customers.get(&actor, id).await?))
}

#[derive(Deserialize, IntoParams)]
pub struct PhoneQuery {
    /// In any typed form: `90 123 45 67`, `+998-90-...`, `8 90 ...`.
    pub phone: String,
}

/// Customers with this phone number.
#[utoipa::path(get, path = "/api/v1/customers/lookup", tag = "customers", params(PhoneQuery),
    responses((status = 200, body = [CustomerRow]), (status = 422, body = ErrorBody)))]
pub async fn lookup(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<PhoneQuery>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.customers.find_by_phone(&actor, &q.phone).await?))
}

#[utoipa::path(get, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)),
    responses((status = 200, body = CustomerRow), (status = 404, body = ErrorBody)))]
pub async fn get_customer(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.customers.get(&actor, id.into_inner()).await?))
}

#[derive(Deserialize, ToSchema)]
pub struct CustomerUpdate {
    /// The version read; a stale one is 409.
    pub version: i64,
    #[serde(flatten)]
    pub customer: CustomerInput,
}

#[utoipa::path(put, path = "/api/v1/customers/{id}", tag = "customers", params(("id" = i64, Path)), request_body = CustomerUpdate,
    responses((status = 200, body = CustomerRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_customer(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<CustomerUpdate>,
) -> ApiResult {
    let id = id.into_inner();
    let b = body.into_inner();
    state
        .ctx
        .customers
        .update(&actor, id, b.version, b.customer)
        .await?;
    Ok(HttpResponse::Ok().json(state.ctx.customers.get(&actor, id).await?))
}

#[derive(serde::Serialize, ToSchema)]
pub struct OrderPage {
    pub items: Vec<OrderRow>,
    /// Matching orders, counted up to 10 001: 10 001 means "more than 10 000".
    pub total: i64,
}

/// Orders; masters get only their own.
#[utoipa::path(get, path = "/api/v1/orders", tag = "orders", params(OrderQuery),
    responses((status = 200, body = OrderPage)))]
pub async fn list_orders(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<OrderQuery>,
) -> ApiResult {
    let f = q.filter(50, &state.ctx.clock.get())?;
    let (items, total) = state.ctx.orders.list(&actor, f).await?;
    Ok(HttpResponse::Ok().json(OrderPage { items, total }))
}

#[utoipa::path(post, path = "/api/v1/orders", tag = "orders", request_body = NewOrder,
    responses((status = 201, body = OrderRow), (status = 422, body = ErrorBody)))]
pub async fn create_order(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<NewOrder>,
) -> ApiResult {
    Ok(HttpResponse::Created().json(state.ctx.orders.create(&actor, body.into_inner()).await?))
}

/// The order with lines, payments and timeline; 404 for another master's order.
#[utoipa::path(get, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, body = ErrorBody)))]
pub async fn get_order(state: web::Data<WebState>, actor: Actor, id: web::Path<i64>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.orders.view(&actor, id.into_inner()).await?))
}

#[utoipa::path(put, path = "/api/v1/orders/{id}", tag = "orders", params(("id" = i64, Path)), request_body = OrderUpdate,
    responses((status = 200, body = OrderRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_order(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<OrderUpdate>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .update(&actor, id.into_inner(), body.into_inner())
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    pub version: i64,
    /// Status code, e.g. `diagnostics`, `ready`, `delivered`.
    pub to: String,
    /// Hand over although a balance is due.
    #[serde(default)]
    pub allow_debt: bool,
    #[serde(default)]
    pub note: String,
}

/// Moves the order along the workflow; a forbidden jump or a stale version is 409.
#[utoipa::path(post, path = "/api/v1/orders/{id}/status", tag = "orders", params(("id" = i64, Path)), request_body = StatusChange,
    responses((status = 200, body = OrderRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn change_status(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<StatusChange>,
) -> ApiResult {
    let b = body.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .change_status(
                &actor,
                id.into_inner(),
                b.version,
                &b.to,
                b.allow_debt,
                &b.note,
            )
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assign {
    pub master_id: Option<i64>,
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/assign", tag = "orders", params(("id" = i64, Path)), request_body = Assign,
    responses((status = 200, body = OrderRow), (status = 422, body = ErrorBody)))]
pub async fn assign(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<Assign>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .assign(&actor, id.into_inner(), body.master_id)
            .await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/orders/{id}/unlock", tag = "orders", params(("id" = i64, Path)),
    request_body = Unlock,
    responses((status = 200, body = OrderRow), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn set_unlock(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<Unlock>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .set_unlock(&actor, id.into_inner(), body.into_inner())
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    /// part or labour
    pub kind: String,
    pub name: String,
    pub qty: i64,
    pub unit_price: i64,
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/lines", tag = "orders", params(("id" = i64, Path)), request_body = NewLine,
    responses((status = 200, body = OrderRow), (status = 422, body = ErrorBody)))]
pub async fn add_line(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<NewLine>,
) -> ApiResult {
    let b = body.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .add_line(
                &actor,
                id.into_inner(),
                &b.kind,
                &b.name,
                b.qty,
                b.unit_price,
            )
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    /// prepayment, payment or refund
    pub kind: String,
    pub amount: i64,
    /// cash, card or transfer
    #[serde(default = "cash")]
    pub method: String,
    #[serde(default)]
    pub note: String,
}

fn cash() -> String {
    "cash".into()
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/payments", tag = "orders", params(("id" = i64, Path)), request_body = NewPayment,
    responses((status = 200, body = OrderRow), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn pay(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<NewPayment>,
) -> ApiResult {
    let b = body.into_inner();
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .pay(
                &actor,
                id.into_inner(),
                &b.kind,
                b.amount,
                &b.method,
                &b.note,
            )
            .await?,
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    pub text: String,
    /// Visible to the customer.
    #[serde(default)]
    pub public: bool,
}

#[utoipa::path(post, path = "/api/v1/orders/{id}/comments", tag = "orders", params(("id" = i64, Path)), request_body = NewComment,
    responses((status = 200, body = OrderRow), (status = 422, body = ErrorBody)))]
pub async fn comment(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<NewComment>,
) -> ApiResult {
    Ok(HttpResponse::Ok().json(
        state
            .ctx
            .orders
            .comment(&actor, id.into_inner(), &body.text, body.public)
            .await?,
    ))
}

#[derive(Deserialize, IntoParams)]
pub struct SearchQuery {
    pub q: String,
}

/// One search over customers (name, any phone form) and orders (number, serial/IMEI, model, complaint).
#[utoipa::path(get, path = "/api/v1/search", tag = "orders", params(SearchQuery),
    responses((status = 200, body = SearchResults)))]
pub async fn search(
    state: web::Data<WebState>,
    actor: Actor,
    q: web::Query<SearchQuery>,
) -> ApiResult {
    Ok(HttpResponse::Ok()
        .json(crate::domain::search::search(&state.ctx.db, &actor, &q.q, 50).await?))
}

/// The workflow's statuses.
#[utoipa::path(get, path = "/api/v1/statuses", tag = "orders",
    responses((status = 200, body = [StatusRow])))]
pub async fn statuses(state: web::Data<WebState>) -> ApiResult {
    Ok(HttpResponse::Ok().json(state.ctx.orders.statuses().await?))
}

#[derive(Deserialize, IntoParams)]
pub struct BranchQuery {
    /// Include closed (inactive) branches.
    #[serde(default)]
    pub all: bool,
}

/// Branches (service-center locations), active ones unless `all=true`.
#[utoipa::path(get, path = "/api/v1/branches", tag = "branches", params(BranchQuery),
    responses((status = 200, body = [BranchRow])))]
pub async fn list_branches(state: web::Data<WebState>, q: web::Query<BranchQuery>) -> ApiResult {
    Ok(HttpResponse::Ok().json(crate::domain::branches::list(&state.ctx.db, !q.all).await?))
}

/// A new branch (admins).
#[utoipa::path(post, path = "/api/v1/branches", tag = "branches", request_body = BranchInput,
    responses((status = 201, body = BranchRow), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_branch(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<BranchInput>,
) -> ApiResult {
    let b = crate::domain::branches::create(&state.ctx.store, &actor, body.into_inner()).await?;
    // A branch's business hours route its calls.
    state.ctx.telephony.push_plan().await?;
    Ok(HttpResponse::Created().json(b))
}

/// Changes a branch (admins); `active: false` closes it for new orders.
#[utoipa::path(put, path = "/api/v1/branches/{id}", tag = "branches", params(("id" = i64, Path)), request_body = BranchInput,
    responses((status = 200, body = BranchRow), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn update_branch(
    state: web::Data<WebState>,
    actor: Actor,
    id: web::Path<i64>,
    body: web::Json<BranchInput>,
) -> ApiResult {
    let b = crate::domain::branches::update(
        &state.ctx.store,
        &actor,
        id.into_inner(),
        body.into_inner(),
    )
    .await?;
    state.ctx.telephony.push_plan().await?;
    Ok(HttpResponse::Ok().json(b))
}

#[derive(Deserialize, serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerScope {
    /// true: a branch-scoped user sees and finds only the customers of their branches
    /// (created in one, or with an order in one); false: one customer base for all.
    pub per_branch: bool,
}

/// Keeps customers per branch, or shares them across the shop (the default).
#[utoipa::path(put, path = "/api/v1/customer-scope", tag = "branches", request_body = CustomerScope,
    responses((status = 200, body = CustomerScope), (status = 400, body = ErrorBody)))]
pub async fn customer_scope(
    state: web::Data<WebState>,
    actor: Actor,
    body: web::Json<CustomerScope>,
) -> ApiResult {
    let on = body.into_inner().per_branch;
    state.ctx.customers.set_per_branch(&actor, on).await?;
    Ok(HttpResponse::Ok().json(CustomerScope {
        per_branch: state.ctx.customers.per_branch().await?,
    }))
}
