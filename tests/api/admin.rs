//! The admin routes: off (404 saying how to turn them on) without a token, 401 without the
//! right one, and each route's answers and errors. Routes that need JetStream run against
//! the real NATS server with a stream pair of their own (`TestBus`).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use orderflow_bus::dlq::{self, DeadLetter};
use orderflow_bus::runtime::{Consumer, ConsumerOptions};
use orderflow_domain::OrderCommand;
use orderflow_testkit::TestBus;
use orderflow_workers::notifications::{LogChannel, NotificationsWorker};
use orderflow_workers::WorkerDeps;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    error_fields, problem, spawn_admin_app, spawn_app_with, TestApp, ADMIN_TOKEN,
};

/// One request to every admin route.
fn admin_routes() -> Vec<(Method, String)> {
    let id = Uuid::now_v7();
    vec![
        (Method::GET, "/v1/admin/consumers".into()),
        (
            Method::POST,
            "/v1/admin/consumers/notifications/replay".into(),
        ),
        (Method::GET, "/v1/admin/projections".into()),
        (
            Method::POST,
            "/v1/admin/projections/order-summary/rebuild".into(),
        ),
        (Method::GET, format!("/v1/admin/orders/{id}/replay?at=1")),
        (Method::GET, format!("/v1/admin/orders/{id}/trace")),
        (Method::GET, "/v1/admin/dlq".into()),
        (Method::GET, "/v1/admin/dlq/1".into()),
        (Method::POST, "/v1/admin/dlq/1/redrive".into()),
        (Method::GET, "/v1/admin/no-such-route".into()),
    ]
}

#[tokio::test]
async fn without_a_token_the_admin_routes_are_off_and_say_how_to_enable_them() {
    let app = spawn_app_with(|state| state.with_admin_token("  ")).await;
    for (method, path) in admin_routes() {
        for token in [None, Some(ADMIN_TOKEN)] {
            let response = app
                .send(method.clone(), &path, token, Some(&json!({})))
                .await;
            let body = problem(response, StatusCode::NOT_FOUND).await;
            assert_eq!(body["type"], "/problems/admin-disabled", "{method} {path}");
            assert!(
                body["detail"]
                    .as_str()
                    .unwrap()
                    .contains("set ORDERFLOW_ADMIN_TOKEN"),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn with_a_token_the_admin_routes_need_it() {
    let app = spawn_admin_app(|state| state).await;
    for (method, path) in admin_routes() {
        for token in [None, Some("wrong"), Some(&ADMIN_TOKEN[1..])] {
            let response = app
                .send(method.clone(), &path, token, Some(&json!({})))
                .await;
            let challenge = response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string());
            assert!(
                challenge
                    .as_deref()
                    .is_some_and(|c| c.starts_with("Bearer")),
                "{method} {path}: {challenge:?}"
            );
            let body = problem(response, StatusCode::UNAUTHORIZED).await;
            assert_eq!(body["type"], "/problems/unauthorized");
        }
        let basic = app
            .client
            .request(method.clone(), app.url(&path))
            .basic_auth("admin", Some(ADMIN_TOKEN))
            .send()
            .await
            .unwrap();
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    // With the token, an unknown admin path is a plain 404 and a wrong method a 405.
    let body = problem(
        app.admin_get("/v1/admin/no-such-route").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "/problems/not-found");
    let response = app
        .send(
            Method::DELETE,
            "/v1/admin/projections",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(response.headers()["allow"], "GET");
    problem(response, StatusCode::METHOD_NOT_ALLOWED).await;
    let response = app
        .send(
            Method::GET,
            "/v1/admin/dlq/1/redrive",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(response.headers()["allow"], "POST");
}

/// Places an order, confirms it, and numbers the log. Returns the order id.
async fn confirmed_order(app: &TestApp) -> Uuid {
    let (id, _) = app.place_order().await;
    app.command(
        id,
        OrderCommand::ConfirmOrder {
            reservation_id: Uuid::now_v7(),
        },
    )
    .await;
    app.number_events().await;
    id
}

#[tokio::test]
async fn consumers_show_their_lag() {
    let test_bus = TestBus::fresh().await;
    let bus = test_bus.bus.clone();
    let app = spawn_admin_app(|state| state.with_bus(bus.clone())).await;

    let response = app.admin_get("/v1/admin/consumers").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let names: Vec<&str> = body["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "inventory",
            "notifications",
            "shipments",
            "loyalty",
            "order-summary",
            "analytics"
        ]
    );
    assert!(body["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["exists"] == false && c["last_handled_position"].is_null()));
    assert_eq!(body["consumers"][3]["kind"], "worker");
    assert_eq!(body["consumers"][4]["kind"], "projection");

    // Two events reach the stream; the notifications consumer handles them.
    confirmed_order(&app).await;
    let events = app.events_after(0).await;
    for event in &events {
        bus.jetstream()
            .publish(
                event.subject(bus.prefix()),
                serde_json::to_vec(event).unwrap().into(),
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let worker = Arc::new(NotificationsWorker::new(
        app.db.pool.clone(),
        Arc::new(LogChannel),
    ));
    let consumer = Consumer::bind(worker, bus.clone(), ConsumerOptions::default())
        .await
        .unwrap();
    consumer.drain().await.unwrap();

    let body: Value = app
        .admin_get("/v1/admin/consumers")
        .await
        .json()
        .await
        .unwrap();
    let notifications = &body["consumers"][1];
    assert_eq!(
        notifications,
        &json!({"name": "notifications", "kind": "worker", "exists": true, "pending": 0,
                "ack_pending": 0, "redelivered": 0,
                "last_handled_position": events.last().unwrap().position})
    );

    // One more message: pending until the consumer pulls it.
    let last = events.last().unwrap();
    bus.jetstream()
        .publish(
            last.subject(bus.prefix()),
            serde_json::to_vec(last).unwrap().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let body: Value = app
        .admin_get("/v1/admin/consumers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["consumers"][1]["pending"], 1, "{body}");
    assert_eq!(body["consumers"][0]["exists"], false);
    test_bus.cleanup().await.unwrap();

    // Without NATS the route says so.
    let no_bus = spawn_admin_app(|state| state).await;
    let body = problem(
        no_bus.admin_get("/v1/admin/consumers").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("NATS"), "{body}");
    problem(
        no_bus.admin_get("/v1/admin/dlq").await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
}

fn projection<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["projections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {list}"))
}

#[tokio::test]
async fn projections_are_listed_rebuilt_in_the_background_and_verified() {
    let app = spawn_admin_app(|state| state).await;
    for _ in 0..5 {
        confirmed_order(&app).await;
    }
    app.project().await;
    let head = app.number_events().await;

    let list: Value = app
        .admin_get("/v1/admin/projections")
        .await
        .json()
        .await
        .unwrap();
    let summary = projection(&list, "order-summary");
    assert_eq!(summary["position"], head);
    assert_eq!(summary["lag"], 0);
    assert_eq!(summary["state"], "live");
    assert!(summary["rebuild"].is_null());
    projection(&list, "analytics");

    // A rebuild answers at once and runs in the background.
    let response = app
        .admin_post("/v1/admin/projections/order-summary/rebuild", &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(response.headers()["location"], "/v1/admin/projections");
    let task: Value = response.json().await.unwrap();
    assert_eq!(task["projection"], "order-summary");
    assert_eq!(task["state"], "running");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let done = loop {
        let list: Value = app
            .admin_get("/v1/admin/projections")
            .await
            .json()
            .await
            .unwrap();
        let summary = projection(&list, "order-summary").clone();
        if summary["rebuild"]["state"] != "running" {
            break summary;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never ended"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(done["rebuild"]["state"], "done", "{done}");
    assert_eq!(done["rebuild"]["position"], head);
    assert_eq!(done["state"], "live");
    assert_eq!(done["position"], head);
    // The list route answers from the rebuilt tables.
    let page: Value = app.get("/v1/orders?limit=500").await.json().await.unwrap();
    assert_eq!(page["orders"].as_array().unwrap().len(), 5);

    // Verify runs inline and reports no difference...
    let response = app
        .admin_post(
            "/v1/admin/projections/order-summary/rebuild",
            &json!({"verify": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["differences"], 0, "{report}");
    assert_eq!(report["position"], head);
    // ...until the live table is tampered with.
    sqlx::query("DELETE FROM order_summary WHERE id = (SELECT id FROM order_summary LIMIT 1)")
        .execute(&app.db.pool)
        .await
        .unwrap();
    let report: Value = app
        .admin_post(
            "/v1/admin/projections/order-summary/rebuild",
            &json!({"verify": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["differences"], 1, "{report}");
    assert_eq!(report["tables"][0]["missing"], 1, "{report}");

    // An empty body is a rebuild too; errors are problems.
    let empty = app
        .send(
            Method::POST,
            "/v1/admin/projections/analytics/rebuild",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
    assert_eq!(empty.status(), StatusCode::ACCEPTED);
    let body = problem(
        app.admin_post("/v1/admin/projections/nope/rebuild", &json!({}))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "/problems/projection-not-found");
    let body = problem(
        app.admin_post(
            "/v1/admin/projections/order-summary/rebuild",
            &json!({"verify": "yes"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&body), ["verify"]);
    assert!(
        body["detail"].as_str().unwrap().contains("boolean"),
        "{body}"
    );
}

#[tokio::test]
async fn an_orders_replay_shows_each_state_and_stops_at_a_sequence() {
    let app = spawn_admin_app(|state| state).await;
    let id = confirmed_order(&app).await;
    let current: Value = app.get_order(&id.to_string()).await.json().await.unwrap();

    let response = app
        .admin_get(&format!("/v1/admin/orders/{id}/replay"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let timeline: Value = response.json().await.unwrap();
    assert_eq!(timeline["order_id"], id.to_string());
    assert_eq!(timeline["version"], 2);
    let entries = timeline["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["type"], "OrderPlaced");
    assert_eq!(entries[1]["type"], "OrderConfirmed");
    assert!(entries[1]["position"].is_i64());
    assert!(entries[1]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "status" && c["after"] == "confirmed"));
    assert_eq!(timeline["state"]["status"], current["status"]);
    assert_eq!(timeline["state"]["status"], "confirmed");

    let at_1: Value = app
        .admin_get(&format!("/v1/admin/orders/{id}/replay?at=1"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(at_1["entries"].as_array().unwrap().len(), 1);
    assert_eq!(at_1["state"]["status"], "placed");

    for bad in ["0", "3", "x"] {
        let body = problem(
            app.admin_get(&format!("/v1/admin/orders/{id}/replay?at={bad}"))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&body), ["at"]);
    }
    for unknown in [Uuid::now_v7().to_string(), "nope".into()] {
        let body = problem(
            app.admin_get(&format!("/v1/admin/orders/{unknown}/replay"))
                .await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(body["type"], "/problems/order-not-found");
    }
}

async fn notification_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM notifications")
        .fetch_one(&app.db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn replaying_to_a_consumer_reports_what_each_event_did() {
    let app = spawn_admin_app(|state| state).await;
    let id = confirmed_order(&app).await;
    let head = app.number_events().await;

    // A dry run to the notifications worker says what it would send, and sends nothing.
    let response = app
        .admin_post(
            "/v1/admin/consumers/notifications/replay",
            &json!({"from": 1, "dry_run": true}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await.unwrap();
    assert_eq!(report["consumer"], "notifications");
    assert_eq!(
        (report["from"].as_i64(), report["to"].as_i64()),
        (Some(1), Some(head))
    );
    assert_eq!(report["dry_run"], true);
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    for event in events {
        assert_eq!(event["outcome"], "done", "{event}");
        assert_eq!(event["order_id"], id.to_string());
        let effects = event["effects"].as_array().unwrap();
        assert!(
            effects[0].as_str().unwrap().starts_with("would notify"),
            "{event}"
        );
    }
    assert_eq!(
        notification_count(&app).await,
        0,
        "a dry run records nothing"
    );

    // For real, a worker needs the workers' configuration.
    let body = problem(
        app.admin_post(
            "/v1/admin/consumers/notifications/replay",
            &json!({"from": 1}),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("dry_run"),
        "{body}"
    );
    let pool = app.db.pool.clone();
    let real = spawn_app_with(|state| {
        orderflow_gateway::GatewayState {
            pool: pool.clone(),
            orders: orderflow_store::OrderStore::new(pool.clone()),
            ..state
        }
        .with_admin_token(ADMIN_TOKEN)
        .with_worker_deps(WorkerDeps::new(pool.clone()))
    })
    .await;
    let report: Value = real
        .admin_post(
            "/v1/admin/consumers/notifications/replay",
            &json!({"from": "1", "to": head}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(report["events"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(notification_count(&app).await, 2);
    // Again: the inbox keeps it from acting twice, and the report says it skipped them.
    let again: Value = real
        .admin_post(
            "/v1/admin/consumers/notifications/replay",
            &json!({"from": 1}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert!(again["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["outcome"] == "skipped"));
    assert_eq!(notification_count(&app).await, 2);

    // A projection, from a time.
    let since = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let report: Value = app
        .admin_post(
            "/v1/admin/consumers/order-summary/replay",
            &json!({"from": since, "dry_run": true}),
        )
        .await
        .json()
        .await
        .unwrap();
    let events = report["events"].as_array().unwrap();
    assert_eq!(events.len(), 2, "{report}");
    assert!(events[0]["effects"][0]
        .as_str()
        .unwrap()
        .contains("would apply"));

    // Errors.
    let body = problem(
        app.admin_post("/v1/admin/consumers/nope/replay", &json!({"from": 1}))
            .await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "/problems/consumer-not-found");
    for (request, field) in [
        (json!({"from": "yesterday"}), "from"),
        (json!({"from": -1}), "from"),
        (json!({"from": 2, "to": 1}), "to"),
        (json!({"from": 1, "to": "soon"}), "to"),
    ] {
        let body = problem(
            app.admin_post("/v1/admin/consumers/analytics/replay", &request)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&body), [field], "{request}");
    }
    // The CLI refuses the same range with the same words (tests/system).
    let body = problem(
        app.admin_post(
            "/v1/admin/consumers/analytics/replay",
            &json!({"from": 5, "to": 2}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert!(
        body.to_string()
            .contains("to (2) is before from (5): nothing to replay"),
        "{body}"
    );
    for (wrong, says) in [
        (json!({}), "is required"),
        (json!({"from": true}), "from"),
        (json!({"from": 1, "dry_run": "yes"}), "boolean"),
    ] {
        let body = problem(
            app.admin_post("/v1/admin/consumers/analytics/replay", &wrong)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        let field = if wrong.get("dry_run").is_some() {
            "dry_run"
        } else {
            "from"
        };
        assert_eq!(error_fields(&body), [field], "{wrong}");
        assert!(
            body["detail"].as_str().unwrap().contains(says),
            "{wrong}: {body}"
        );
    }
    let body = problem(
        app.admin_post(
            "/v1/admin/consumers/analytics/replay",
            &json!({"from": 1, "dry": true}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&body), ["dry"], "{body}");
}

#[tokio::test]
async fn dead_letters_are_listed_shown_and_redriven() {
    let test_bus = TestBus::fresh().await;
    let bus = test_bus.bus.clone();
    let app = spawn_admin_app(|state| state.with_bus(bus.clone())).await;

    let empty: Value = app.admin_get("/v1/admin/dlq").await.json().await.unwrap();
    assert_eq!(empty, json!({"dead_letters": []}));

    let id = confirmed_order(&app).await;
    let event = app.events_after(0).await.remove(0);
    let subject = event.subject(bus.prefix());
    let letter = DeadLetter {
        consumer: "notifications".into(),
        error: "the channel refused it".into(),
        attempts: 5,
        original_subject: subject.clone(),
        original_stream_sequence: 1,
        original_message_id: Some(event.message_id()),
        parked_at: Utc::now(),
        body: serde_json::to_string(&event).unwrap(),
    };
    dlq::park(&bus, &letter).await.unwrap();

    let list: Value = app.admin_get("/v1/admin/dlq").await.json().await.unwrap();
    let letters = list["dead_letters"].as_array().unwrap();
    assert_eq!(letters.len(), 1);
    let parked = &letters[0];
    assert_eq!(parked["consumer"], "notifications");
    assert_eq!(parked["error"], "the channel refused it");
    assert_eq!(parked["attempts"], 5);
    assert_eq!(parked["body"]["order_id"], id.to_string());
    let sequence = parked["sequence"].as_u64().unwrap();
    let filtered: Value = app
        .admin_get("/v1/admin/dlq?consumer=inventory")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["dead_letters"].as_array().unwrap().len(), 0);

    let shown: Value = app
        .admin_get(&format!("/v1/admin/dlq/{sequence}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(&shown, parked);

    let response = app
        .admin_post(&format!("/v1/admin/dlq/{sequence}/redrive"), &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let redriven: Value = response.json().await.unwrap();
    assert_eq!(redriven["consumer"], "notifications");
    assert_eq!(redriven["subject"], subject.as_str());
    let messages = test_bus.messages().await.unwrap();
    assert_eq!(messages.len(), 1, "the redrive reached the main stream");
    assert_eq!(messages[0].subject, subject);

    // Gone from the dead-letter stream.
    for path in [
        format!("/v1/admin/dlq/{sequence}"),
        "/v1/admin/dlq/999".into(),
        "/v1/admin/dlq/abc".into(),
        // Sequences start at 1; JetStream answers 0 with "bad request", not "not found".
        "/v1/admin/dlq/0".into(),
    ] {
        let body = problem(app.admin_get(&path).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "/problems/dead-letter-not-found", "{path}");
    }
    for redrive in [
        format!("/v1/admin/dlq/{sequence}/redrive"),
        "/v1/admin/dlq/0/redrive".into(),
    ] {
        problem(
            app.admin_post(&redrive, &json!({})).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
    for limit in ["0", "1001", "x"] {
        let body = problem(
            app.admin_get(&format!("/v1/admin/dlq?limit={limit}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&body), ["limit"]);
    }
    test_bus.cleanup().await.unwrap();
}

#[tokio::test]
async fn a_rebuild_while_another_runs_is_409() {
    let app = spawn_admin_app(|state| state).await;
    confirmed_order(&app).await;
    app.project().await;
    // Another process rebuilding holds the projection's rebuild lock.
    let mut other = app.db.pool.acquire().await.unwrap();
    sqlx::query("SELECT pg_advisory_lock(20261125, hashtext('order-summary'))")
        .execute(&mut *other)
        .await
        .unwrap();
    let list: Value = app
        .admin_get("/v1/admin/projections")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(projection(&list, "order-summary")["state"], "rebuilding");
    for verify in [false, true] {
        let body = problem(
            app.admin_post(
                "/v1/admin/projections/order-summary/rebuild",
                &json!({"verify": verify}),
            )
            .await,
            StatusCode::CONFLICT,
        )
        .await;
        assert_eq!(body["type"], "/problems/busy");
    }
    sqlx::query("SELECT pg_advisory_unlock(20261125, hashtext('order-summary'))")
        .execute(&mut *other)
        .await
        .unwrap();
    let response = app
        .admin_post("/v1/admin/projections/order-summary/rebuild", &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn the_order_list_answers_throughout_a_rebuild() {
    let app = spawn_admin_app(|state| state).await;
    let base = Utc::now() - chrono::Duration::days(1);
    let placed = 400;
    for i in 0..placed {
        app.place_at(
            &format!("c-{}", i % 7),
            "SKU-1",
            base + chrono::Duration::seconds(i),
        )
        .await;
    }
    app.project().await;

    let response = app
        .admin_post("/v1/admin/projections/order-summary/rebuild", &json!({}))
        .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let mut answered_while_running = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let list: Value = app
            .admin_get("/v1/admin/projections")
            .await
            .json()
            .await
            .unwrap();
        let running = projection(&list, "order-summary")["rebuild"]["state"] == "running";
        let response = app.get("/v1/orders?limit=500").await;
        assert_eq!(response.status(), StatusCode::OK);
        let page: Value = response.json().await.unwrap();
        assert_eq!(
            page["orders"].as_array().unwrap().len(),
            placed as usize,
            "every order, before and after the swap"
        );
        if !running {
            assert_eq!(
                projection(&list, "order-summary")["rebuild"]["state"],
                "done"
            );
            break;
        }
        answered_while_running += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "the rebuild never ended"
        );
    }
    println!("{answered_while_running} list requests answered while the rebuild ran");
}
