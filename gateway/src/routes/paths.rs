//! Every route template, written once: the routes build their warp path filters from these
//! ([`super::Resource`]), the OpenAPI attributes name them as `path`, and the request metrics
//! label answers with them. A `{name}` segment is a path parameter.

/// Orders: `POST` places one, `GET` lists them from the order-summary read model.
pub const ORDERS: &str = "/v1/orders";
/// One order as the event log says it is now (`GET`).
pub const ORDER: &str = "/v1/orders/{id}";
/// Cancel an order (`POST`).
pub const ORDER_CANCEL: &str = "/v1/orders/{id}/cancel";
/// An order's events, by sequence (`GET`).
pub const ORDER_EVENTS: &str = "/v1/orders/{id}/events";
/// An order as it was right after one of its events, `?at_sequence=` (`GET`).
pub const ORDER_STATE: &str = "/v1/orders/{id}/state";
/// The notifications sent for an order (`GET`).
pub const ORDER_NOTIFICATIONS: &str = "/v1/orders/{id}/notifications";
/// One customer's orders, newest first, a page at a time (`GET`).
pub const CUSTOMER_ORDERS: &str = "/v1/customers/{id}/orders";
/// One customer's loyalty points: the balance and the newest entries (`GET`).
pub const CUSTOMER_LOYALTY: &str = "/v1/customers/{id}/loyalty";
/// The stock of one SKU: `GET` reads it, `PUT` sets it.
pub const INVENTORY_SKU: &str = "/v1/inventory/{sku}";
/// Analytics of the orders placed between two UTC days, from the analytics read model (`GET`).
pub const ANALYTICS_SUMMARY: &str = "/v1/analytics/summary";

/// Where every admin route lives; the admin token is checked once for all of it.
pub const ADMIN_PREFIX: &str = "/v1/admin";
/// The metrics label of admin answers no admin route made (refusals, unknown admin paths).
pub const ADMIN_ANY: &str = "/v1/admin/*";
/// The lag of every durable consumer (`GET`).
pub const ADMIN_CONSUMERS: &str = "/v1/admin/consumers";
/// Replay a range of the log to one consumer (`POST`).
pub const ADMIN_CONSUMER_REPLAY: &str = "/v1/admin/consumers/{name}/replay";
/// Every projection's state and last rebuild (`GET`).
pub const ADMIN_PROJECTIONS: &str = "/v1/admin/projections";
/// Rebuild one projection, or verify it against the log (`POST`).
pub const ADMIN_PROJECTION_REBUILD: &str = "/v1/admin/projections/{name}/rebuild";
/// One order's timeline, event by event (`GET`).
pub const ADMIN_ORDER_REPLAY: &str = "/v1/admin/orders/{id}/replay";
/// One order's full trace: its events, what every consumer did with each, what each caused
/// (`GET`).
pub const ADMIN_ORDER_TRACE: &str = "/v1/admin/orders/{id}/trace";
/// The stream compared with the event log.
pub const ADMIN_STREAM_VERIFY: &str = "/v1/admin/stream/verify";
/// Forget a customer: delete their data key, erase their personal data (`POST`).
pub const ADMIN_CUSTOMER_FORGET: &str = "/v1/admin/customers/{id}/forget";
/// The operator console's live feed of the event log, as server-sent events (`GET`).
pub const ADMIN_CONSOLE_STREAM: &str = "/v1/admin/console/stream";
/// The dead letters (`GET`).
pub const ADMIN_DLQ: &str = "/v1/admin/dlq";
/// One dead letter, by its sequence in the dead-letter stream (`GET`).
pub const ADMIN_DLQ_LETTER: &str = "/v1/admin/dlq/{seq}";
/// Send a dead letter back to the consumer that parked it (`POST`).
pub const ADMIN_DLQ_REDRIVE: &str = "/v1/admin/dlq/{seq}/redrive";

/// Prometheus metrics in the text exposition format (`GET`).
pub const METRICS: &str = "/metrics";
/// Liveness: answers `ok` while the process serves requests (`GET`).
pub const HEALTH: &str = "/health";
/// Readiness: whether the database and NATS are reachable (`GET`).
pub const READY: &str = "/ready";
/// The operator console: its page and static files (`GET`), outside the OpenAPI document.
pub const CONSOLE: &str = "/console";
/// This API's OpenAPI document (`GET`).
pub const OPENAPI: &str = "/openapi.json";
