//! Every route template, written once: the routes build their warp path filters from these
//! ([`super::Resource`]), the OpenAPI attributes name them as `path`, and the request metrics
//! label answers with them. A `{name}` segment is a path parameter.

pub const ORDERS: &str = "/v1/orders";
pub const ORDER: &str = "/v1/orders/{id}";
pub const ORDER_CANCEL: &str = "/v1/orders/{id}/cancel";
pub const ORDER_EVENTS: &str = "/v1/orders/{id}/events";
pub const ORDER_STATE: &str = "/v1/orders/{id}/state";
pub const ORDER_NOTIFICATIONS: &str = "/v1/orders/{id}/notifications";
pub const CUSTOMER_ORDERS: &str = "/v1/customers/{id}/orders";
pub const INVENTORY_SKU: &str = "/v1/inventory/{sku}";
pub const ANALYTICS_SUMMARY: &str = "/v1/analytics/summary";

/// Where every admin route lives; the admin token is checked once for all of it.
pub const ADMIN_PREFIX: &str = "/v1/admin";
/// The metrics label of admin answers no admin route made (refusals, unknown admin paths).
pub const ADMIN_ANY: &str = "/v1/admin/*";
pub const ADMIN_CONSUMERS: &str = "/v1/admin/consumers";
pub const ADMIN_CONSUMER_REPLAY: &str = "/v1/admin/consumers/{name}/replay";
pub const ADMIN_PROJECTIONS: &str = "/v1/admin/projections";
pub const ADMIN_PROJECTION_REBUILD: &str = "/v1/admin/projections/{name}/rebuild";
pub const ADMIN_ORDER_REPLAY: &str = "/v1/admin/orders/{id}/replay";
pub const ADMIN_DLQ: &str = "/v1/admin/dlq";
pub const ADMIN_DLQ_LETTER: &str = "/v1/admin/dlq/{seq}";
pub const ADMIN_DLQ_REDRIVE: &str = "/v1/admin/dlq/{seq}/redrive";

pub const METRICS: &str = "/metrics";
pub const HEALTH: &str = "/health";
pub const READY: &str = "/ready";
pub const OPENAPI: &str = "/openapi.json";
