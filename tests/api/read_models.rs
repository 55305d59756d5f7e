//! Read models behind HTTP: the notifications of an order (recorded by the notifications
//! worker, driven here directly on numbered events) and the analytics summary (the analytics
//! projection, folded here as its consumer does).

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use orderflow_bus::{Delivery, Handler};
use orderflow_domain::OrderCommand;
use orderflow_workers::notifications::{LogChannel, NotificationsWorker};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{error_fields, problem, spawn_app};

#[tokio::test]
async fn an_orders_notifications_are_listed_once_each() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let (quiet, _) = app.place_order().await;
    let worker = NotificationsWorker::new(app.db.pool.clone(), Arc::new(LogChannel));

    // Before the worker ran: an empty list.
    let body: Value = app
        .get(&format!("/v1/orders/{id}/notifications"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"order_id": id.to_string(), "notifications": []})
    );

    app.command(
        id,
        OrderCommand::ConfirmOrder {
            reservation_id: Uuid::now_v7(),
        },
    )
    .await;
    app.number_events().await;
    let events = app.events_after(0).await;
    for event in events.iter().filter(|e| e.order_id == id) {
        worker.handle(event, Delivery::live(1)).await.unwrap();
        // A redelivery changes nothing.
        worker.handle(event, Delivery::live(2)).await.unwrap();
    }

    let response = app.get(&format!("/v1/orders/{id}/notifications")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["order_id"], id.to_string());
    let list = body["notifications"].as_array().unwrap();
    let types: Vec<&str> = list
        .iter()
        .map(|n| n["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderConfirmed"]);
    for n in list {
        assert_eq!(n["status"], "sent", "{n}");
        assert_eq!(n["channel"], "log");
        assert_eq!(n["recipient"], "ada@example.com");
        assert_eq!(n["order_id"], id.to_string());
        assert!(n["subject"].as_str().is_some_and(|s| !s.is_empty()));
    }

    let other: Value = app
        .get(&format!("/v1/orders/{quiet}/notifications"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["notifications"].as_array().unwrap().len(), 0);

    for unknown in [Uuid::now_v7().to_string(), "not-an-id".to_string()] {
        let body = problem(
            app.get(&format!("/v1/orders/{unknown}/notifications"))
                .await,
            StatusCode::NOT_FOUND,
        )
        .await;
        assert_eq!(body["type"], "/problems/order-not-found");
    }
}

#[tokio::test]
async fn the_analytics_summary_counts_what_the_log_says() {
    let app = spawn_app().await;
    let day1 = Utc.with_ymd_and_hms(2026, 11, 20, 9, 0, 0).unwrap();
    let day2 = day1 + Duration::days(1);
    // Day 1: three orders, two confirmed. Day 2: two orders, one confirmed, one cancelled.
    let mut ids = Vec::new();
    for (at, sku) in [
        (day1, "SKU-A"),
        (day1, "SKU-A"),
        (day1, "SKU-B"),
        (day2, "SKU-A"),
        (day2, "SKU-B"),
    ] {
        ids.push(app.place_at("c-1", sku, at).await);
    }
    for id in [ids[0], ids[2], ids[3]] {
        app.command(
            id,
            OrderCommand::ConfirmOrder {
                reservation_id: Uuid::now_v7(),
            },
        )
        .await;
    }
    app.command(
        ids[4],
        OrderCommand::CancelOrder {
            reason: "no".into(),
            cancelled_by: "customer".into(),
        },
    )
    .await;
    app.project().await;

    let response = app.get("/v1/analytics/summary").await;
    assert_eq!(response.status(), StatusCode::OK);
    let all: Value = response.json().await.unwrap();
    // Each order is 2 units at 1000.
    assert_eq!(
        all["revenue_totals"],
        json!([{"currency": "EUR", "orders": 3, "revenue": 6000}])
    );
    let count = |summary: &Value, status: &str| {
        summary["orders_by_status"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["status"] == status)
            .map(|s| s["orders"].as_i64().unwrap())
    };
    assert_eq!(count(&all, "placed"), Some(1));
    assert_eq!(count(&all, "confirmed"), Some(3));
    assert_eq!(count(&all, "cancelled"), Some(1));
    assert_eq!(all["position"], app.number_events().await);
    assert!(all["from"].is_null() && all["to"].is_null());

    let day: Value = app
        .get("/v1/analytics/summary?from=2026-11-20&to=2026-11-20")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(day["from"], "2026-11-20");
    assert_eq!(
        day["revenue_per_day"],
        json!([{"day": "2026-11-20", "currency": "EUR", "orders": 2, "revenue": 4000}])
    );
    assert_eq!(count(&day, "placed"), Some(1));
    let skus: Vec<(&str, i64)> = day["skus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["sku"].as_str().unwrap(), s["units"].as_i64().unwrap()))
        .collect();
    assert_eq!(skus, [("SKU-A", 2), ("SKU-B", 2)]);

    let later: Value = app
        .get("/v1/analytics/summary?from=2026-11-21")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later["revenue_totals"][0]["revenue"], 2000);
}

#[tokio::test]
async fn bad_analytics_ranges_are_422() {
    let app = spawn_app().await;
    let cases = [
        ("?from=2026-13-01", vec!["from"]),
        ("?to=yesterday", vec!["to"]),
        ("?from=x&to=y", vec!["from", "to"]),
        ("?from=2026-11-25&to=2026-11-24", vec!["from"]),
    ];
    for (query, fields) in cases {
        let body = problem(
            app.get(&format!("/v1/analytics/summary{query}")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&body), fields, "{query}");
    }
    // An empty range is fine.
    let response = app
        .get("/v1/analytics/summary?from=2026-11-25&to=2026-11-25")
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}
