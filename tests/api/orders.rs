//! Placing, reading, cancelling, history and time travel of orders, through HTTP.

use orderflow_domain::OrderCommand;
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{problem, spawn_app, valid_order};

#[tokio::test]
async fn placing_an_order_returns_201_with_location_and_the_placed_order() {
    let app = spawn_app().await;
    let request_id = format!("req-{}", Uuid::new_v4());
    let response = app
        .post_raw(
            "/v1/orders",
            valid_order().to_string(),
            &[("X-Request-Id", request_id.as_str())],
        )
        .await;

    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["x-request-id"], request_id.as_str());
    let location = response.headers()["location"].to_str().unwrap().to_string();
    let order: Value = response.json().await.unwrap();
    let id: Uuid = order["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(id.get_version_num(), 7, "the server generates UUID v7 ids");
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(order["status"], "placed");
    assert_eq!(order["version"], 1);
    assert_eq!(order["currency"], "EUR");
    assert_eq!(order["total"], 2 * 1299 + 500);
    assert_eq!(order["customer_email"], "ada@example.com");
    assert_eq!(
        order["lines"][0],
        json!({"sku": "SKU-1", "quantity": 2, "unit_price": 1299})
    );
    assert_eq!(order["shipping_address"]["city"], "Berlin");
    assert!(order["placed_at"].is_string());

    let read = app.get(&location).await;
    assert_eq!(read.status(), StatusCode::OK);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read, order, "GET returns what POST returned");

    let events = app.order_events(&id.to_string()).await;
    assert_eq!(events.status(), StatusCode::OK);
    let events: Value = events.json().await.unwrap();
    assert_eq!(events["order_id"], id.to_string());
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    let placed = &events[0];
    assert_eq!(placed["type"], "OrderPlaced");
    assert_eq!(placed["sequence"], 1);
    assert_eq!(placed["version"], "1.0");
    assert_eq!(placed["metadata"]["correlation_id"], request_id.as_str());
    assert_eq!(placed["metadata"]["actor"], "api");
    assert_eq!(placed["payload"]["order_id"], id.to_string());
    assert_eq!(placed["payload"]["total"], 3098);
    assert!(placed["recorded_at"].is_string());
    assert!(placed["event_id"].is_string());
    assert!(
        placed.get("position").is_some(),
        "the global position is shown (null until numbered)"
    );
}

#[tokio::test]
async fn a_request_without_request_id_gets_one_and_it_becomes_the_correlation_id() {
    let app = spawn_app().await;
    let response = app.post_order(&valid_order()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let generated: Uuid = request_id
        .parse()
        .expect("a generated request id is a UUID");
    assert_eq!(generated.get_version_num(), 7);
    let order: Value = response.json().await.unwrap();
    let events: Value = app
        .order_events(order["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        events["events"][0]["metadata"]["correlation_id"],
        request_id.as_str()
    );
}

#[tokio::test]
async fn every_answer_echoes_the_request_id_even_errors() {
    let app = spawn_app().await;
    for (method, path) in [
        (reqwest::Method::GET, "/health"),
        (reqwest::Method::GET, "/nowhere"),
        (reqwest::Method::DELETE, "/v1/orders"),
        (reqwest::Method::GET, "/v1/orders/not-an-id"),
    ] {
        let response = app
            .client
            .request(method.clone(), app.url(path))
            .header("X-Request-Id", "echo-me")
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.headers()["x-request-id"],
            "echo-me",
            "{method} {path}"
        );
        let response = app.request(method.clone(), path).await;
        assert!(
            response.headers().contains_key("x-request-id"),
            "{method} {path}"
        );
    }
}

#[tokio::test]
async fn cancelling_a_placed_order_then_again_is_409() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let id = id.to_string();

    let response = app
        .cancel_order(&id, &json!({"reason": "changed my mind"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["version"], 2);
    assert_eq!(order["cancellation_reason"], "changed my mind");

    let events: Value = app.order_events(&id).await.json().await.unwrap();
    let cancelled = &events["events"][1];
    assert_eq!(cancelled["type"], "OrderCancelled");
    assert_eq!(cancelled["sequence"], 2);
    assert_eq!(cancelled["payload"]["cancelled_by"], "customer");

    let again = app.cancel_order(&id, &json!({"reason": "really"})).await;
    let body = problem(again, StatusCode::CONFLICT).await;
    assert!(
        body["detail"].as_str().unwrap().contains("cancelled"),
        "{body}"
    );
    assert_eq!(
        app.event_count().await,
        2,
        "a refused command appends nothing"
    );
}

#[tokio::test]
async fn cancelled_by_is_recorded_when_given() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let response = app
        .cancel_order(
            &id.to_string(),
            &json!({"reason": "fraud", "cancelled_by": "support"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let events: Value = app
        .order_events(&id.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][1]["payload"]["cancelled_by"], "support");
}

#[tokio::test]
async fn a_shipped_order_cannot_be_cancelled() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    app.ship(id).await;

    let order: Value = app.get_order(&id.to_string()).await.json().await.unwrap();
    assert_eq!(order["status"], "shipped");
    assert_eq!(order["version"], 3);
    assert_eq!(order["carrier"], "DHL");
    assert_eq!(order["tracking_number"], "TRACK-1");

    let response = app
        .cancel_order(&id.to_string(), &json!({"reason": "too late"}))
        .await;
    let body = problem(response, StatusCode::CONFLICT).await;
    assert_eq!(
        body["detail"],
        format!("order {id} has shipped and can no longer be cancelled")
    );
    assert_eq!(app.event_count().await, 3);
}

#[tokio::test]
async fn a_refused_cancel_says_why_in_the_users_words() {
    let app = spawn_app().await;
    let delivered = app.place_order().await.0;
    app.ship(delivered).await;
    app.command(delivered, OrderCommand::MarkDelivered).await;
    let rejected = app.place_order().await.0;
    app.command(
        rejected,
        OrderCommand::RejectOrder {
            reason: "out of stock".into(),
            unavailable_skus: vec![],
        },
    )
    .await;
    let cancelled = app.place_order().await.0;
    let response = app.cancel_order(&cancelled.to_string(), &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);

    for (id, detail) in [
        (
            delivered,
            format!("order {delivered} has been delivered and can no longer be cancelled"),
        ),
        (
            rejected,
            format!("order {rejected} was rejected and can no longer be cancelled"),
        ),
        (cancelled, format!("order {cancelled} is already cancelled")),
    ] {
        let response = app.cancel_order(&id.to_string(), &json!({})).await;
        let body = problem(response, StatusCode::CONFLICT).await;
        assert_eq!(body["detail"], detail, "{body}");
        assert_eq!(body["type"], "/problems/wrong-state");
    }
}

#[tokio::test]
async fn cancelling_needs_no_body_and_no_reason() {
    let app = spawn_app().await;
    let empty = app.place_order().await.0;
    let path = format!("/v1/orders/{empty}/cancel");
    // No body at all, and no Content-Type either (as `curl -X POST` sends it).
    let response = app
        .send_raw(reqwest::Method::POST, &path, None, "", None)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["status"], "cancelled");
    assert!(order.get("cancellation_reason").is_none(), "{order}");

    // An empty body with a form content type (as `curl -d ''` sends it) is no body either.
    let form = app.place_order().await.0;
    let response = app
        .send_raw(
            reqwest::Method::POST,
            &format!("/v1/orders/{form}/cancel"),
            Some("application/x-www-form-urlencoded"),
            "",
            None,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    let object = app.place_order().await.0;
    let response = app.cancel_order(&object.to_string(), &json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let events: Value = app
        .order_events(&object.to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"][1]["type"], "OrderCancelled");
    assert_eq!(events["events"][1]["payload"]["cancelled_by"], "customer");

    let by = app.place_order().await.0;
    let response = app
        .cancel_order(&by.to_string(), &json!({"cancelled_by": "support"}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn time_travel_shows_the_order_after_each_event() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    app.ship(id).await;
    let id = id.to_string();

    let expectations = [(1, "placed"), (2, "confirmed"), (3, "shipped")];
    for (sequence, status) in expectations {
        let response = app
            .order_state(&id, &format!("?at_sequence={sequence}"))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "at {sequence}");
        let order: Value = response.json().await.unwrap();
        assert_eq!(order["status"], status, "at {sequence}");
        assert_eq!(order["version"], sequence);
    }
    let at_one: Value = app
        .order_state(&id, "?at_sequence=1")
        .await
        .json()
        .await
        .unwrap();
    assert!(at_one.get("tracking_number").is_none(), "{at_one}");
}

#[tokio::test]
async fn time_travel_out_of_range_or_malformed_is_422_and_unknown_order_404() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let id = id.to_string();
    for query in [
        "?at_sequence=0",
        "?at_sequence=2",
        "?at_sequence=-1",
        "?at_sequence=abc",
        "",
    ] {
        let response = app.order_state(&id, query).await;
        let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(
            crate::helpers::error_fields(&body),
            ["at_sequence"],
            "{query}"
        );
    }
    let unknown = app
        .order_state(&Uuid::now_v7().to_string(), "?at_sequence=1")
        .await;
    problem(unknown, StatusCode::NOT_FOUND).await;
}
