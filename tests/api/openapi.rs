//! The OpenAPI document: every route is in it, and real answers (orders, events, problems,
//! health) validate against the schemas it declares for their status and content type.
//!
//! The validator is small on purpose: it resolves `$ref`, and checks `type` (also the 3.1
//! form `["string", "null"]`), `enum`, `required`, `properties`, `items`, `oneOf`, `anyOf`
//! and `allOf`.

use reqwest::{Method, Response, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use std::sync::Arc;

use orderflow_bus::dlq::{self, DeadLetter};
use orderflow_bus::{Delivery, Handler};
use orderflow_domain::OrderCommand;
use orderflow_store::steps::StepOutcome;
use orderflow_testkit::TestBus;
use orderflow_workers::loyalty::LoyaltyWorker;
use orderflow_workers::notifications::{LogChannel, NotificationsWorker};

use crate::helpers::{spawn_admin_app, spawn_app, valid_order, TestApp, ADMIN_TOKEN};

/// Every route the gateway serves, as the document must name it.
const ROUTES: [(&str, &str); 28] = [
    ("post", "/v1/orders"),
    ("get", "/v1/orders"),
    ("get", "/v1/customers/{id}/orders"),
    ("get", "/v1/customers/{id}/loyalty"),
    ("put", "/v1/inventory/{sku}"),
    ("get", "/v1/inventory/{sku}"),
    ("get", "/v1/orders/{id}/notifications"),
    ("get", "/v1/analytics/summary"),
    ("get", "/v1/admin/consumers"),
    ("post", "/v1/admin/consumers/{name}/replay"),
    ("get", "/v1/admin/projections"),
    ("post", "/v1/admin/projections/{name}/rebuild"),
    ("get", "/v1/admin/orders/{id}/replay"),
    ("get", "/v1/admin/orders/{id}/trace"),
    ("get", "/v1/admin/dlq"),
    ("get", "/v1/admin/dlq/{seq}"),
    ("post", "/v1/admin/dlq/{seq}/redrive"),
    ("get", "/v1/admin/stream/verify"),
    ("post", "/v1/admin/customers/{id}/forget"),
    ("get", "/v1/admin/console/stream"),
    ("get", "/metrics"),
    ("get", "/v1/orders/{id}"),
    ("post", "/v1/orders/{id}/cancel"),
    ("get", "/v1/orders/{id}/events"),
    ("get", "/v1/orders/{id}/state"),
    ("get", "/health"),
    ("get", "/ready"),
    ("get", "/openapi.json"),
];

struct Validator<'a> {
    document: &'a Value,
}

impl Validator<'_> {
    fn resolve<'s>(&'s self, schema: &'s Value) -> &'s Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                let pointer = reference
                    .strip_prefix('#')
                    .unwrap_or_else(|| panic!("only local references: {reference}"));
                let target = self
                    .document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling reference {reference}"));
                self.resolve(target)
            }
            None => schema,
        }
    }

    /// Every way `value` (at `path`) breaks `schema`.
    fn errors(&self, schema: &Value, value: &Value, path: &str) -> Vec<String> {
        let schema = self.resolve(schema);
        let mut errors = Vec::new();
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for part in all {
                errors.extend(self.errors(part, value, path));
            }
        }
        for keyword in ["oneOf", "anyOf"] {
            if let Some(options) = schema.get(keyword).and_then(Value::as_array) {
                let matching = options
                    .iter()
                    .filter(|option| self.errors(option, value, path).is_empty())
                    .count();
                let ok = if keyword == "oneOf" {
                    matching == 1
                } else {
                    matching >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{path}: {matching} of the {keyword} schemas match {value}"
                    ));
                }
            }
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(one) => vec![one.as_str()],
                Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
                other => panic!("odd type {other}"),
            };
            if !allowed.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{path}: {value} is not of type {allowed:?}"));
                return errors;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                errors.push(format!("{path}: {value} is not one of {options:?}"));
            }
        }
        if let Value::Object(object) = value {
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for name in required.iter().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        errors.push(format!("{path}: required member {name} is missing"));
                    }
                }
            }
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, member) in object {
                    match properties.get(name) {
                        Some(property) => {
                            errors.extend(self.errors(property, member, &format!("{path}.{name}")))
                        }
                        None if schema.get("additionalProperties").is_none()
                            || schema["additionalProperties"] == json!(false) =>
                        {
                            errors.push(format!("{path}: member {name} is not in the schema"))
                        }
                        None => {}
                    }
                }
            }
        }
        if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                errors.extend(self.errors(item_schema, item, &format!("{path}[{i}]")));
            }
        }
        errors
    }

    /// Checks a real answer against the operation's declared answer for its status.
    async fn check(&self, method: &str, route: &str, response: Response) -> Value {
        let status = response.status().as_u16().to_string();
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let body: Value = response.json().await.unwrap();
        let declared = self.document["paths"][route][method]["responses"]
            .get(&status)
            .unwrap_or_else(|| panic!("{method} {route} does not declare status {status}"));
        let schema = declared["content"]
            .get(&content_type)
            .unwrap_or_else(|| {
                panic!("{method} {route} {status} does not declare content type {content_type}")
            })
            .get("schema")
            .expect("a schema");
        let errors = self.errors(schema, &body, "$");
        assert!(
            errors.is_empty(),
            "{method} {route} {status} does not match the document:\n{}\nbody: {body}",
            errors.join("\n")
        );
        body
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        other => panic!("unknown type {other}"),
    }
}

async fn document(app: &TestApp) -> Value {
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_lists_every_route() {
    let app = spawn_app().await;
    let document = document(&app).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    for (method, route) in ROUTES {
        let operation = &document["paths"][route][method];
        assert!(
            operation.is_object(),
            "{method} {route} is missing from the document"
        );
        assert!(
            operation["responses"].is_object(),
            "{method} {route} has no responses"
        );
    }
    let paths = document["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        operations,
        ROUTES.len(),
        "no undocumented extras: {:?}",
        paths.keys()
    );
    // Admin operations name the bearer scheme, and the document declares it.
    assert_eq!(
        document["components"]["securitySchemes"]["admin_token"]["scheme"],
        "bearer"
    );
    for (method, route) in ROUTES.iter().filter(|(_, r)| r.starts_with("/v1/admin/")) {
        assert_eq!(
            document["paths"][route][method]["security"],
            json!([{"admin_token": []}]),
            "{method} {route}"
        );
    }
    assert!(
        document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]["text/plain"]
            .is_object()
    );
    // The request body of POST /v1/orders is the code's own type.
    let body = &document["paths"]["/v1/orders"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    assert_eq!(body["$ref"], "#/components/schemas/PlaceOrderRequest");
}

#[tokio::test]
async fn the_validator_catches_mismatches() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let validator = Validator {
        document: &document,
    };
    let order = json!({"$ref": "#/components/schemas/OrderResponse"});
    let errors = validator.errors(&order, &json!({"id": 5, "status": "lost"}), "$");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("required member customer_id")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("$.id")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("$.status")), "{errors:?}");
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let errors = validator.errors(
        &problem,
        &json!({"type": "t", "title": "t", "status": "422", "detail": "d", "errors": [{"field": 1}]}),
        "$",
    );
    assert_eq!(errors.len(), 3, "{errors:?}");
}

#[tokio::test]
async fn real_answers_match_the_document() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let v = Validator {
        document: &document,
    };

    let placed = v
        .check("post", "/v1/orders", app.post_order(&valid_order()).await)
        .await;
    let id = placed["id"].as_str().unwrap().to_string();
    v.check("get", "/v1/orders/{id}", app.get_order(&id).await)
        .await;
    v.check(
        "get",
        "/v1/orders/{id}/state",
        app.order_state(&id, "?at_sequence=1").await,
    )
    .await;

    // A shipped order shows its optional members.
    let (shipped, _) = app.place_order().await;
    app.ship(shipped).await;
    let body = v
        .check(
            "get",
            "/v1/orders/{id}",
            app.get_order(&shipped.to_string()).await,
        )
        .await;
    assert!(body["tracking_number"].is_string());

    let cancelled = app.cancel_order(&id, &json!({"reason": "test"})).await;
    v.check("post", "/v1/orders/{id}/cancel", cancelled).await;
    let events = v
        .check("get", "/v1/orders/{id}/events", app.order_events(&id).await)
        .await;
    assert_eq!(events["events"].as_array().unwrap().len(), 2);

    // Problems.
    let mut bad = valid_order();
    bad["currency"] = "x".into();
    let invalid = v
        .check("post", "/v1/orders", app.post_order(&bad).await)
        .await;
    assert!(invalid["errors"].is_array());
    v.check(
        "post",
        "/v1/orders",
        app.post_raw("/v1/orders", "{".into(), &[]).await,
    )
    .await;
    let unknown = Uuid::now_v7().to_string();
    v.check("get", "/v1/orders/{id}", app.get_order(&unknown).await)
        .await;
    v.check(
        "get",
        "/v1/orders/{id}/events",
        app.order_events(&unknown).await,
    )
    .await;
    v.check(
        "get",
        "/v1/orders/{id}/state",
        app.order_state(&id, "?at_sequence=9").await,
    )
    .await;
    let again = app.cancel_order(&id, &json!({"reason": "again"})).await;
    v.check("post", "/v1/orders/{id}/cancel", again).await;
    let missing = v
        .check("post", "/v1/orders", app.post_order(&json!({})).await)
        .await;
    assert_eq!(missing["errors"].as_array().unwrap().len(), 5);
    let not_json = app
        .send_raw(Method::POST, "/v1/orders", Some("text/plain"), "hi", None)
        .await;
    v.check("post", "/v1/orders", not_json).await;
    let not_json = app
        .send_raw(
            Method::POST,
            &format!("/v1/orders/{id}/cancel"),
            Some("text/plain"),
            "hi",
            None,
        )
        .await;
    v.check("post", "/v1/orders/{id}/cancel", not_json).await;
    let not_json = app
        .send_raw(
            Method::PUT,
            "/v1/inventory/SKU-1",
            Some("text/plain"),
            "1",
            None,
        )
        .await;
    v.check("put", "/v1/inventory/{sku}", not_json).await;
    let mistyped = app
        .put_json("/v1/inventory/SKU-1", &json!({"available": "ten"}))
        .await;
    v.check("put", "/v1/inventory/{sku}", mistyped).await;

    // The cancel body is optional, and says so; a body, when sent, is an object.
    let cancel = &document["paths"]["/v1/orders/{id}/cancel"]["post"]["requestBody"];
    assert_eq!(cancel["required"], false, "{cancel}");
    let schema = &cancel["content"]["application/json"]["schema"];
    assert_eq!(
        schema["$ref"], "#/components/schemas/CancelOrderRequest",
        "{schema}"
    );

    v.check("get", "/health", app.request(Method::GET, "/health").await)
        .await;
    v.check("get", "/ready", app.request(Method::GET, "/ready").await)
        .await;
}

#[tokio::test]
async fn answers_of_the_read_model_and_admin_routes_match_the_document() {
    let test_bus = TestBus::fresh().await;
    let bus = test_bus.bus.clone();
    let app = spawn_admin_app(|state| state.with_bus(bus.clone())).await;
    let document = document(&app).await;
    let v = Validator {
        document: &document,
    };

    // An order with a life, numbered, projected and notified.
    let (id, _) = app.place_order().await;
    app.command(
        id,
        OrderCommand::ConfirmOrder {
            reservation_id: Uuid::now_v7(),
        },
    )
    .await;
    app.project().await;
    let worker = NotificationsWorker::new(app.db.pool.clone(), Arc::new(LogChannel));
    for event in app.events_after(0).await {
        worker.handle(&event, Delivery::live(1)).await.unwrap();
    }
    let unknown = Uuid::now_v7();

    // Lists.
    let page = v
        .check("get", "/v1/orders", app.get("/v1/orders?limit=1").await)
        .await;
    assert_eq!(page["orders"].as_array().unwrap().len(), 1);
    v.check("get", "/v1/orders", app.get("/v1/orders?limit=0").await)
        .await;
    v.check(
        "get",
        "/v1/customers/{id}/orders",
        app.get("/v1/customers/c-42/orders").await,
    )
    .await;
    v.check(
        "get",
        "/v1/customers/{id}/orders",
        app.get("/v1/customers/c-42/orders?status=x").await,
    )
    .await;

    // Inventory.
    let route = "/v1/inventory/{sku}";
    v.check(
        "put",
        route,
        app.put_json("/v1/inventory/SKU-1", &json!({"available": 3}))
            .await,
    )
    .await;
    v.check(
        "put",
        route,
        app.put_json("/v1/inventory/SKU-1", &json!({"available": -3}))
            .await,
    )
    .await;
    v.check(
        "put",
        route,
        app.put_json("/v1/inventory/SKU-1", &json!({"n": 3})).await,
    )
    .await;
    v.check("get", route, app.get("/v1/inventory/SKU-1").await)
        .await;
    v.check("get", route, app.get("/v1/inventory/SKU-0").await)
        .await;

    // Notifications and analytics.
    let route = "/v1/orders/{id}/notifications";
    let listed = v
        .check(
            "get",
            route,
            app.get(&format!("/v1/orders/{id}/notifications")).await,
        )
        .await;
    assert_eq!(listed["notifications"].as_array().unwrap().len(), 2);
    v.check(
        "get",
        route,
        app.get(&format!("/v1/orders/{unknown}/notifications"))
            .await,
    )
    .await;
    let route = "/v1/analytics/summary";
    let summary = v.check("get", route, app.get(route).await).await;
    assert_eq!(summary["revenue_totals"][0]["currency"], "EUR");
    v.check(
        "get",
        route,
        app.get("/v1/analytics/summary?from=2026-11-26&to=2026-11-25")
            .await,
    )
    .await;
    v.check("get", "/metrics", app.get("/metrics").await).await;

    // Admin: refusals first.
    let route = "/v1/admin/consumers";
    v.check("get", route, app.send(Method::GET, route, None, None).await)
        .await;
    let off = spawn_app().await;
    v.check(
        "get",
        route,
        off.send(Method::GET, route, Some(ADMIN_TOKEN), None).await,
    )
    .await;
    v.check("get", route, app.admin_get(route).await).await;

    let route = "/v1/admin/projections";
    let rebuild = "/v1/admin/projections/{name}/rebuild";
    v.check(
        "post",
        rebuild,
        app.admin_post(
            "/v1/admin/projections/order-summary/rebuild",
            &json!({"verify": true}),
        )
        .await,
    )
    .await;
    v.check(
        "post",
        rebuild,
        app.admin_post("/v1/admin/projections/nope/rebuild", &json!({}))
            .await,
    )
    .await;
    v.check(
        "post",
        rebuild,
        app.admin_post("/v1/admin/projections/analytics/rebuild", &json!({}))
            .await,
    )
    .await;
    let list = v.check("get", route, app.admin_get(route).await).await;
    assert!(list["projections"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["rebuild"].is_object()));

    let route = "/v1/admin/orders/{id}/replay";
    v.check(
        "get",
        route,
        app.admin_get(&format!("/v1/admin/orders/{id}/replay"))
            .await,
    )
    .await;
    v.check(
        "get",
        route,
        app.admin_get(&format!("/v1/admin/orders/{id}/replay?at=7"))
            .await,
    )
    .await;
    v.check(
        "get",
        route,
        app.admin_get(&format!("/v1/admin/orders/{unknown}/replay"))
            .await,
    )
    .await;

    // A trace with recorded steps (one failed, one handled) and pending consumers.
    let first = app.events_after(0).await[0].event_id;
    let step = |attempt, outcome, error: Option<&str>, effect: Option<&str>| {
        orderflow_store::steps::NewStep {
            event_id: first,
            attempt,
            outcome,
            started_at: chrono::Utc::now(),
            duration_ms: 4,
            error: error.map(String::from),
            effect: effect.map(String::from),
        }
    };
    orderflow_store::steps::record(
        &app.db.pool,
        "notifications",
        &[
            step(1, StepOutcome::Retrying, Some("smtp away"), None),
            step(
                2,
                StepOutcome::Handled,
                None,
                Some("notified a***@example.com"),
            ),
        ],
    )
    .await
    .unwrap();
    let route = "/v1/admin/orders/{id}/trace";
    let traced = v
        .check(
            "get",
            route,
            app.admin_get(&format!("/v1/admin/orders/{id}/trace")).await,
        )
        .await;
    let outcomes: Vec<&str> = traced["events"][0]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["consumer"] == "notifications")
        .map(|s| s["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retrying", "handled"]);
    assert_eq!(traced["events"][0]["steps"][0]["outcome"], "pending");
    v.check(
        "get",
        route,
        app.admin_get(&format!("/v1/admin/orders/{unknown}/trace"))
            .await,
    )
    .await;

    let route = "/v1/admin/customers/{id}/forget";
    let forgotten = v
        .check(
            "post",
            route,
            app.admin_post("/v1/admin/customers/c-nobody/forget", &json!({}))
                .await,
        )
        .await;
    assert_eq!(forgotten["orders"], 0);
    v.check(
        "post",
        route,
        app.admin_post("/v1/admin/customers/%20/forget", &json!({}))
            .await,
    )
    .await;

    let route = "/v1/admin/consumers/{name}/replay";
    for consumer in [
        "notifications",
        "inventory",
        "shipments",
        "loyalty",
        "order-summary",
        "analytics",
    ] {
        let report = v
            .check(
                "post",
                route,
                app.admin_post(
                    &format!("/v1/admin/consumers/{consumer}/replay"),
                    &json!({"from": 1, "dry_run": true}),
                )
                .await,
            )
            .await;
        assert_eq!(report["events"].as_array().unwrap().len(), 2, "{report}");
    }
    v.check(
        "post",
        route,
        app.admin_post(
            "/v1/admin/consumers/analytics/replay",
            &json!({"from": "x"}),
        )
        .await,
    )
    .await;
    v.check(
        "post",
        route,
        app.admin_post(
            "/v1/admin/consumers/notifications/replay",
            &json!({"from": 1}),
        )
        .await,
    )
    .await;

    // Dead letters.
    let event = app.events_after(0).await.remove(0);
    let letter = DeadLetter {
        consumer: "inventory".into(),
        error: "boom".into(),
        attempts: 1,
        original_subject: event.subject(bus.prefix()),
        original_stream_sequence: 1,
        original_message_id: None,
        parked_at: chrono::Utc::now(),
        body: "not json".into(),
    };
    dlq::park(&bus, &letter).await.unwrap();
    let list = v
        .check("get", "/v1/admin/dlq", app.admin_get("/v1/admin/dlq").await)
        .await;
    assert_eq!(list["dead_letters"][0]["body"], "not json");
    let seq = list["dead_letters"][0]["sequence"].as_u64().unwrap();
    v.check(
        "get",
        "/v1/admin/dlq",
        app.admin_get("/v1/admin/dlq?limit=0").await,
    )
    .await;
    v.check(
        "get",
        "/v1/admin/dlq/{seq}",
        app.admin_get(&format!("/v1/admin/dlq/{seq}")).await,
    )
    .await;
    let redrive = "/v1/admin/dlq/{seq}/redrive";
    v.check(
        "post",
        redrive,
        app.admin_post(&format!("/v1/admin/dlq/{seq}/redrive"), &json!({}))
            .await,
    )
    .await;
    v.check(
        "post",
        redrive,
        app.admin_post(&format!("/v1/admin/dlq/{seq}/redrive"), &json!({}))
            .await,
    )
    .await;
    v.check(
        "get",
        "/v1/admin/dlq/{seq}",
        app.admin_get(&format!("/v1/admin/dlq/{seq}")).await,
    )
    .await;
    test_bus.cleanup().await.unwrap();
}

#[tokio::test]
async fn loyalty_answers_match_the_document() {
    let app = spawn_app().await;
    let document = document(&app).await;
    let v = Validator {
        document: &document,
    };
    let route = "/v1/customers/{id}/loyalty";
    // The document states the limits the server checks.
    let limit = v
        .resolve(
            &document["paths"][route]["get"]["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == "limit")
                .unwrap()["schema"],
        )
        .clone();
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&json!(1), &json!(500)),
        "{limit}"
    );
    // Nothing yet: a balance of 0, no entries.
    let empty = v
        .check("get", route, app.get("/v1/customers/c-42/loyalty").await)
        .await;
    assert_eq!(empty["balance"], 0, "{empty}");

    let (shipped, _) = app.place_order().await;
    app.ship(shipped).await;
    app.project().await;
    let worker = LoyaltyWorker::new(app.db.pool.clone());
    for event in app.events_after(0).await {
        worker.handle(&event, Delivery::live(1)).await.unwrap();
    }
    let account = v
        .check(
            "get",
            route,
            app.get("/v1/customers/c-42/loyalty?limit=1").await,
        )
        .await;
    assert_eq!(account["entries"].as_array().unwrap().len(), 1, "{account}");
    assert_eq!(account["entries"][0]["reason"], "shipped", "{account}");
    assert!(account["balance"].as_i64().unwrap() > 0, "{account}");
    for bad in ["?limit=0", "?limit=501", "?limit=x"] {
        let response = app.get(&format!("/v1/customers/c-42/loyalty{bad}")).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        v.check("get", route, response).await;
    }
    let blank = app.get("/v1/customers/%20/loyalty").await;
    assert_eq!(blank.status(), StatusCode::UNPROCESSABLE_ENTITY);
    v.check("get", route, blank).await;
}
