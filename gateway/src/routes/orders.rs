//! The order routes: place, read, cancel, history, time travel, and the list. Reads of one
//! order go to the event store, so they are never stale; the list reads the order-summary
//! projection. Writes run in a task of their own, so a client that hangs
//! up cannot cut their database work in half. Handlers never reject: they answer their errors
//! as problems.

use chrono::{DateTime, Utc};
use orderflow_domain::{CustomerId, FieldError, OrderCommand, OrderError, OrderStatus};
use orderflow_projections::order_summary::{self, ListError, OrderFilter, OrderPage};
use orderflow_store::idempotency::{self, KeyClaim};
use orderflow_store::{CommandError, CommandMetadata};
use tracing::{Instrument, Span};
use uuid::Uuid;
use warp::filters::BoxedFilter;
use warp::http::header::HeaderName;
use warp::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use warp::reply::Response;
use warp::Filter;

use crate::body::{self, Body};
use crate::dto::{CancelOrderRequest, OrderEventsResponse, OrderResponse, PlaceOrderRequest};
use crate::params::{
    is_idempotency_key, EventSequence, IdempotencyKey, OrderListCursor, OrderListLimit,
    MAX_IDEMPOTENCY_KEY_CHARS,
};
use crate::problem::ApiError;
use crate::reply::{respond2, respond3, Json};
use crate::request_id::{request_id, RequestId};
use crate::routes::{detached, paths, query_param, with_state, Resource};
use crate::GatewayState;

/// The header that makes `POST /v1/orders` safe to retry.
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
/// Set (to `true`) on an answer that replays an earlier request with the same key.
pub const IDEMPOTENT_REPLAY_HEADER: &str = "idempotent-replayed";

/// Every order route, each with its own 405 for other methods.
pub fn routes(state: GatewayState) -> BoxedFilter<(Response,)> {
    let s = &state;
    let orders = Resource::new(paths::ORDERS)
        .on(Method::POST, |path| {
            path.and(with_state(s))
                .and(warp::header::headers_cloned())
                .and(body::limited())
                .and(request_id())
                .then(respond3(place_order))
                .boxed()
        })
        .on(Method::GET, |path| {
            path.and(with_state(s))
                .and(warp::query::<Vec<(String, String)>>())
                .and(request_id())
                .then(respond2(list_orders))
                .boxed()
        })
        .build();
    let order = Resource::new(paths::ORDER)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(get_order))
                .boxed()
        })
        .build();
    let cancel = Resource::new(paths::ORDER_CANCEL)
        .on_param(Method::POST, |path| {
            path.and(with_state(s))
                .and(body::limited())
                .and(request_id())
                .then(respond3(cancel_order))
                .boxed()
        })
        .build();
    let events = Resource::new(paths::ORDER_EVENTS)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(request_id())
                .then(respond2(order_events))
                .boxed()
        })
        .build();
    let at = Resource::new(paths::ORDER_STATE)
        .on_param(Method::GET, |path| {
            path.and(with_state(s))
                .and(warp::query::<Vec<(String, String)>>())
                .and(request_id())
                .then(respond3(order_state_at))
                .boxed()
        })
        .build();
    orders
        .or(order)
        .unify()
        .or(cancel)
        .unify()
        .or(events)
        .unify()
        .or(at)
        .unify()
        .boxed()
}

/// List orders from the order-summary projection, newest first, a page at a time.
///
/// The projection follows the event log closely but not instantly: an order placed a moment
/// ago may be missing for a moment. Walking `next_cursor` returns every order that existed
/// when the walk began exactly once.
#[utoipa::path(
    get,
    path = paths::ORDERS,
    tag = "orders",
    params(
        ("customer_id" = Option<CustomerId>, Query, description = "Only this customer's orders (trimmed, as when the order was placed)"),
        ("status" = Option<OrderStatus>, Query, description = "Only orders in this status"),
        ("placed_after" = Option<DateTime<Utc>>, Query, description = "Only orders placed strictly after this RFC 3339 time"),
        ("limit" = Option<OrderListLimit>, Query, description = "Orders per page"),
        ("cursor" = Option<OrderListCursor>, Query, description = "The `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of orders, newest first", body = OrderPage),
        (status = 400, description = "The query string cannot be parsed"),
        (status = 422, description = "A parameter has an invalid value, named in `errors`"),
        (status = 500, description = "The read model failed; the cause is logged, not shown"),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id))]
pub async fn list_orders(
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<OrderPage>, ApiError> {
    let filter = order_filter(&query, None)?;
    list_page(&state, &filter).await
}

/// The filter a list query asks for; `customer_id` from the path wins over the query's.
///
/// # Errors
/// [`ApiError::Invalid`] naming every parameter with an invalid value.
pub fn order_filter(
    query: &[(String, String)],
    customer_id: Option<String>,
) -> Result<OrderFilter, ApiError> {
    let mut errors = Vec::new();
    let customer_id = customer_id
        .as_deref()
        .or_else(|| query_param(query, "customer_id"))
        .and_then(|raw| CustomerId::parse(raw).map_err(|e| errors.push(e)).ok());
    let status = query_param(query, "status").and_then(|raw| {
        OrderStatus::parse(raw).or_else(|| {
            let known: Vec<&str> = OrderStatus::ALL.iter().map(|s| s.as_str()).collect();
            errors.push(FieldError::new(
                "status",
                format!("must be one of {}", known.join(", ")),
            ));
            None
        })
    });
    let placed_after = query_param(query, "placed_after").and_then(|raw| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                errors.push(FieldError::new(
                    "placed_after",
                    "must be an RFC 3339 time, such as 2026-11-25T10:00:00Z",
                ))
            })
            .ok()
    });
    let limit_error = || {
        FieldError::new(
            "limit",
            format!("must be an integer from 1 to {}", order_summary::MAX_LIMIT),
        )
    };
    let limit = query_param(query, "limit").and_then(|raw| match raw.trim().parse::<u32>() {
        Ok(n) if (1..=order_summary::MAX_LIMIT).contains(&n) => Some(n),
        _ => {
            errors.push(limit_error());
            None
        }
    });
    let cursor = query_param(query, "cursor").map(str::to_string);
    if !errors.is_empty() {
        return Err(ApiError::Invalid(errors));
    }
    Ok(OrderFilter {
        customer_id: customer_id.map(CustomerId::into_string),
        status,
        placed_after,
        limit,
        cursor,
    })
}

/// One page of the order-summary projection as an answer.
///
/// # Errors
/// [`ApiError::Invalid`] for a limit or cursor the projection refuses, [`ApiError::Internal`]
/// when the query fails.
pub async fn list_page(
    state: &GatewayState,
    filter: &OrderFilter,
) -> Result<Json<OrderPage>, ApiError> {
    match order_summary::list_orders(&state.pool, filter).await {
        Ok(page) => Ok(Json::ok(page)),
        Err(ListError::Database(e)) => Err(e.into()),
        Err(ListError::InvalidCursor) => Err(ApiError::invalid(
            "cursor",
            "is not a cursor this server handed out; start again without it",
        )),
        Err(e @ ListError::InvalidLimit(_)) => Err(ApiError::invalid("limit", e.to_string())),
    }
}

/// Place an order.
///
/// The server chooses the order id (UUID v7). With an `Idempotency-Key`, a retry with the same
/// key and body returns the original order and appends nothing; the same key with another
/// body is refused (422).
#[utoipa::path(
    post,
    path = paths::ORDERS,
    tag = "orders",
    request_body(content = PlaceOrderRequest, content_type = "application/json"),
    params(
        ("Idempotency-Key" = Option<IdempotencyKey>, Header,
         description = "Makes the request safe to retry"),
        ("X-Request-Id" = Option<String>, Header,
         description = "Request id, stored as the events' correlation id; generated if absent"),
    ),
    responses(
        (status = 201, description = "The order was placed (or, with a known Idempotency-Key, had been placed)",
         body = OrderResponse,
         headers(("Location" = String, description = "/v1/orders/{id}"),
                 ("X-Request-Id" = String, description = "The request id"))),
        (status = 400, description = "Malformed JSON, or not an object"),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "Fields unknown, missing, of the wrong JSON type or with invalid values, all in one answer, one entry per field in `errors` (by JSON path, e.g. `lines[0].quantity`); or an Idempotency-Key reused with another body"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
        (status = 503, description = "The event store (PostgreSQL) does not answer or is too busy. Type `/problems/database-unavailable`: nothing was done. Type `/problems/outcome-unknown`: the connection broke after the order was sent to PostgreSQL, so it may have been stored; retry with the same Idempotency-Key to get it (placed at most once). Answered within about 1.5 s, with `Retry-After`",
         headers(("Retry-After" = u16, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = tracing::field::Empty))]
pub async fn place_order(
    state: GatewayState,
    headers: HeaderMap,
    body: Body,
    request_id: RequestId,
) -> Result<Json<OrderResponse>, ApiError> {
    let work = place(state, request_id, headers, body).instrument(Span::current());
    detached(work).await
}

async fn place(
    state: GatewayState,
    request_id: RequestId,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<OrderResponse>, ApiError> {
    let key = idempotency_key(&headers)?;
    let (request, json): (PlaceOrderRequest, _) =
        body::parse_json_checked(&body?, |request: &PlaceOrderRequest| {
            request
                .clone()
                .into_command(Uuid::nil(), Utc::now())
                .err()
                .unwrap_or_default()
        })?;
    let order_id = Uuid::now_v7();
    let command = request
        .clone()
        .into_command(order_id, Utc::now())
        .map_err(ApiError::Invalid)?;
    let metadata = CommandMetadata::from_request(request_id.as_str());
    let claim = match &key {
        None => KeyClaim::New(order_id),
        Some(key) => idempotency::claim(&state.pool, key, &json, order_id).await?,
    };
    let (order_id, replayed) = match claim {
        KeyClaim::Mismatch => return Err(ApiError::IdempotencyKeyReused),
        KeyClaim::New(id) => (id, false),
        KeyClaim::Replay(id) => (id, true),
    };
    Span::current().record("order_id", tracing::field::display(order_id));
    if replayed {
        if let Some(order) = state.orders.load(order_id).await? {
            tracing::info!("idempotent replay of an order already placed");
            return Ok(created(order.into(), true));
        }
        // The first request with this key has not placed its order (yet, or it failed):
        // place it under the id the key holds. Whichever request gets there first wins.
    }
    let command = if order_id == command.order_id() {
        command
    } else {
        // The key holds another id; the body is the same as the first request's (the claim
        // compared them), so it is valid too.
        request
            .into_command(order_id, Utc::now())
            .map_err(ApiError::Invalid)?
    };
    let placed = if replayed {
        state
            .orders
            .execute(order_id, OrderCommand::PlaceOrder(command), &metadata)
            .await
    } else {
        // The id was made by this request (and a key, if any, claimed for it): a new order,
        // placed without a load and answered from its own events.
        match state
            .orders
            .place_new(order_id, OrderCommand::PlaceOrder(command), &metadata)
            .await
        {
            Ok(order) => {
                tracing::info!(total = order.state.total.minor_units(), "order placed");
                return Ok(created(order.into(), false));
            }
            Err(e) => Err(e),
        }
    };
    match placed {
        Ok(()) => {}
        // A concurrent request with the same key placed it first.
        Err(CommandError::Domain(OrderError::AlreadyExists(_)) | CommandError::Conflict)
            if key.is_some() =>
        {
            tracing::info!("concurrent request with the same idempotency key placed the order");
        }
        Err(e) => return Err(ApiError::from_command(order_id, e)),
    }
    let order = state.orders.load(order_id).await?.ok_or_else(|| {
        ApiError::Internal(format!("order {order_id} was placed but cannot be loaded"))
    })?;
    tracing::info!(total = order.state.total.minor_units(), "order placed");
    Ok(created(order.into(), replayed))
}

fn created(order: OrderResponse, replayed: bool) -> Json<OrderResponse> {
    let location = HeaderValue::from_str(&format!("/v1/orders/{}", order.id));
    let mut reply = Json::with_status(order, StatusCode::CREATED);
    if let Ok(location) = location {
        reply = reply.header(header::LOCATION, location);
    }
    if replayed {
        reply = reply.header(
            HeaderName::from_static(IDEMPOTENT_REPLAY_HEADER),
            HeaderValue::from_static("true"),
        );
    }
    reply
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
        return Ok(None);
    };
    match value.to_str() {
        Ok(key) if is_idempotency_key(key) => Ok(Some(key.to_string())),
        _ => Err(ApiError::BadRequest(format!(
            "the Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} visible ASCII \
             characters"
        ))),
    }
}

/// Read an order as the event log says it is now.
#[utoipa::path(
    get,
    path = paths::ORDER,
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 200, description = "The order", body = OrderResponse),
        (status = 404, description = "No such order"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
        (status = 503, description = "The event store (PostgreSQL) does not answer or is too busy; nothing was done. Answered within about 1.5 s, with `Retry-After`",
         headers(("Retry-After" = u16, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn get_order(
    raw_id: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<OrderResponse>, ApiError> {
    let order_id = parse_order_id(&raw_id)?;
    let order = state
        .orders
        .load(order_id)
        .await?
        .ok_or_else(|| ApiError::OrderNotFound(order_id.to_string()))?;
    Ok(Json::ok(OrderResponse::from(order)))
}

/// Cancel an order, with a reason or without. Allowed while placed or confirmed; 409 once it
/// has shipped, was delivered, rejected or cancelled.
///
/// The body is optional: none (or `{}`) cancels without a reason, as the customer.
#[utoipa::path(
    post,
    path = paths::ORDER_CANCEL,
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order id")),
    request_body(content = CancelOrderRequest, content_type = "application/json",
                 description = "Optional; no body is the same as `{}`"),
    responses(
        (status = 200, description = "The cancelled order", body = OrderResponse),
        (status = 400, description = "Malformed JSON, or not an object"),
        (status = 404, description = "No such order"),
        (status = 409, description = "The order can no longer be cancelled; `detail` says why, e.g. \"order … has shipped and can no longer be cancelled\""),
        (status = 413, description = "Body over 64 KiB"),
        (status = 415, description = "A body sent as another media type than JSON"),
        (status = 422, description = "An unknown field, one of the wrong JSON type, or a blank or over-long reason or canceller, one entry per field in `errors`"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
        (status = 503, description = "The event store (PostgreSQL) does not answer or is too busy. Type `/problems/database-unavailable`: nothing was done. Type `/problems/outcome-unknown`: the connection broke after the cancellation was sent, so it may have been stored; read the order to see. Answered within about 1.5 s, with `Retry-After`",
         headers(("Retry-After" = u16, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn cancel_order(
    raw_id: String,
    state: GatewayState,
    body: Body,
    request_id: RequestId,
) -> Result<Json<OrderResponse>, ApiError> {
    let metadata = CommandMetadata::from_request(request_id.as_str());
    detached(
        async move {
            let order_id = parse_order_id(&raw_id)?;
            let (request, _): (CancelOrderRequest, _) =
                body::parse_optional_json_checked(&body?, |request: &CancelOrderRequest| {
                    request.validate().err().unwrap_or_default()
                })?;
            let (reason, cancelled_by) = request.validate().map_err(ApiError::Invalid)?;
            let command = OrderCommand::CancelOrder {
                reason,
                cancelled_by,
            };
            state
                .orders
                .execute(order_id, command, &metadata)
                .await
                .map_err(|e| ApiError::from_command(order_id, e))?;
            let order = state
                .orders
                .load(order_id)
                .await?
                .ok_or_else(|| ApiError::OrderNotFound(order_id.to_string()))?;
            tracing::info!("order cancelled");
            Ok(Json::ok(OrderResponse::from(order)))
        }
        .instrument(Span::current()),
    )
    .await
}

/// The order's event history, by sequence.
#[utoipa::path(
    get,
    path = paths::ORDER_EVENTS,
    tag = "orders",
    params(("id" = Uuid, Path, description = "The order id")),
    responses(
        (status = 200, description = "Every event of the order, by sequence", body = OrderEventsResponse),
        (status = 404, description = "No such order"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
        (status = 503, description = "The event store (PostgreSQL) does not answer or is too busy; nothing was done. Answered within about 1.5 s, with `Retry-After`",
         headers(("Retry-After" = u16, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn order_events(
    raw_id: String,
    state: GatewayState,
    request_id: RequestId,
) -> Result<Json<OrderEventsResponse>, ApiError> {
    let order_id = parse_order_id(&raw_id)?;
    let events = state.orders.events(order_id).await?;
    if events.is_empty() {
        return Err(ApiError::OrderNotFound(order_id.to_string()));
    }
    Ok(Json::ok(OrderEventsResponse { order_id, events }))
}

/// The order as it was right after its event number `at_sequence` (time travel).
#[utoipa::path(
    get,
    path = paths::ORDER_STATE,
    tag = "orders",
    params(
        ("id" = Uuid, Path, description = "The order id"),
        ("at_sequence" = EventSequence, Query, description = "Sequence of the last event to include, from 1 to the order's version"),
    ),
    responses(
        (status = 200, description = "The order after event `at_sequence`; `version` equals `at_sequence`", body = OrderResponse),
        (status = 404, description = "No such order"),
        (status = 422, description = "`at_sequence` missing, not an integer, or outside 1 to the order's version"),
        (status = 500, description = "The event store failed; the cause is logged, not shown"),
        (status = 503, description = "The event store (PostgreSQL) does not answer or is too busy; nothing was done. Answered within about 1.5 s, with `Retry-After`",
         headers(("Retry-After" = u16, description = "Seconds to wait before retrying"))),
    )
)]
#[tracing::instrument(skip_all, fields(request_id = %request_id, order_id = %raw_id))]
pub async fn order_state_at(
    raw_id: String,
    state: GatewayState,
    query: Vec<(String, String)>,
    request_id: RequestId,
) -> Result<Json<OrderResponse>, ApiError> {
    let order_id = parse_order_id(&raw_id)?;
    let at = query
        .iter()
        .find(|(name, _)| name == "at_sequence")
        .map(|(_, value)| value.as_str());
    let events = state.orders.events(order_id).await?;
    let Some(last) = events.last().map(|e| e.sequence) else {
        return Err(ApiError::OrderNotFound(order_id.to_string()));
    };
    let out_of_range = || {
        ApiError::invalid(
            "at_sequence",
            format!("must be an integer from 1 to {last}, the order's current version"),
        )
    };
    let at = match at {
        None => return Err(ApiError::invalid("at_sequence", "is required")),
        Some(raw) => raw.trim().parse::<i64>().map_err(|_| out_of_range())?,
    };
    if !(1..=last).contains(&at) {
        return Err(out_of_range());
    }
    let order = orderflow_store::orders::fold(&events, Some(at))?
        .ok_or_else(|| ApiError::OrderNotFound(order_id.to_string()))?;
    Ok(Json::ok(OrderResponse::from(order)))
}

/// A path id that is not a UUID names no order: 404, not 400.
fn parse_order_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::OrderNotFound(raw.to_string()))
}
