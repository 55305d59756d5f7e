//! `Idempotency-Key`: a retry with the same key and body returns the same order and appends
//! nothing; another body is 422; concurrent requests with one key place one order.

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{error_fields, problem, spawn_app, valid_order};

#[tokio::test]
async fn a_retry_with_the_same_key_and_body_returns_the_same_order() {
    let app = spawn_app().await;
    let key = Uuid::new_v4().to_string();

    let first = app.post_order_with_key(&valid_order(), &key).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].clone();
    let first: Value = first.json().await.unwrap();

    // The same JSON with its members in another order is the same body.
    let mut reordered = serde_json::Map::new();
    let original = valid_order();
    for (name, value) in original.as_object().unwrap().iter().rev() {
        reordered.insert(name.clone(), value.clone());
    }
    let second = app
        .post_order_with_key(&Value::Object(reordered), &key)
        .await;
    assert_eq!(second.status(), StatusCode::CREATED);
    assert_eq!(second.headers()["location"], location);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    let second: Value = second.json().await.unwrap();

    assert_eq!(second, first);
    assert_eq!(app.event_count().await, 1, "a replay appends no event");
}

#[tokio::test]
async fn the_same_key_with_another_body_is_422() {
    let app = spawn_app().await;
    let key = Uuid::new_v4().to_string();
    let first = app.post_order_with_key(&valid_order(), &key).await;
    assert_eq!(first.status(), StatusCode::CREATED);

    let mut other = valid_order();
    other["lines"][0]["quantity"] = 3.into();
    let response = app.post_order_with_key(&other, &key).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["Idempotency-Key"]);
    assert_eq!(app.event_count().await, 1);
}

#[tokio::test]
async fn different_keys_place_different_orders() {
    let app = spawn_app().await;
    let a: Value = app
        .post_order_with_key(&valid_order(), "key-a")
        .await
        .json()
        .await
        .unwrap();
    let b: Value = app
        .post_order_with_key(&valid_order(), "key-b")
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["id"], b["id"]);
    assert_eq!(app.event_count().await, 2);
}

#[tokio::test]
async fn an_invalid_body_does_not_use_up_the_key() {
    let app = spawn_app().await;
    let mut bad = valid_order();
    bad["currency"] = "euro".into();
    let response = app.post_order_with_key(&bad, "key-1").await;
    problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let good = app.post_order_with_key(&valid_order(), "key-1").await;
    assert_eq!(good.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_malformed_key_is_400() {
    let app = spawn_app().await;
    let long = "k".repeat(256);
    let response = app
        .post_raw(
            "/v1/orders",
            valid_order().to_string(),
            &[("Idempotency-Key", long.as_str())],
        )
        .await;
    problem(response, StatusCode::BAD_REQUEST).await;
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_place_exactly_one_order() {
    let app = spawn_app().await;
    for round in 0..5 {
        let key = format!("concurrent-{round}");
        let body = valid_order();
        let requests = (0..8).map(|_| app.post_order_with_key(&body, &key));
        let responses = futures::future::join_all(requests).await;
        let mut ids = Vec::new();
        for response in responses {
            assert_eq!(response.status(), StatusCode::CREATED);
            let order: Value = response.json().await.unwrap();
            ids.push(order["id"].as_str().unwrap().to_string());
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "every request got the same order: {ids:?}");
    }
    let orders: i64 = sqlx::query_scalar("SELECT count(DISTINCT aggregate_id) FROM events")
        .fetch_one(&app.db.pool)
        .await
        .unwrap();
    assert_eq!(orders, 5, "one order per key");
    assert_eq!(app.event_count().await, 5, "one OrderPlaced per key");
}
