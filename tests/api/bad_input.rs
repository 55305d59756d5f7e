//! Every bad input of issue 2 point 4: the status AND the problem+json body. Bad input never
//! reaches the store, and is never a 500.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{error_fields, problem, spawn_app, valid_order, TestApp};

/// POSTs `body`, expects 422 naming exactly `fields`, and that nothing was stored.
async fn expect_invalid(app: &TestApp, body: &Value, fields: &[&str]) -> Value {
    let response = app.post_order(body).await;
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    let mut expected: Vec<String> = fields.iter().map(|f| f.to_string()).collect();
    expected.sort();
    assert_eq!(error_fields(&problem), expected, "{problem}");
    assert_eq!(problem["type"], "/problems/invalid-request");
    assert_eq!(
        app.event_count().await,
        0,
        "bad input never reaches the store"
    );
    problem
}

#[tokio::test]
async fn quantity_zero_is_422_naming_the_line() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"][1]["quantity"] = 0.into();
    let problem = expect_invalid(&app, &body, &["lines[1].quantity"]).await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("lines[1].quantity"));
}

#[tokio::test]
async fn quantity_over_a_thousand_or_negative_is_422() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"][0]["quantity"] = 1001.into();
    body["lines"][1]["quantity"] = (-3).into();
    expect_invalid(&app, &body, &["lines[0].quantity", "lines[1].quantity"]).await;
}

#[tokio::test]
async fn negative_price_is_422() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"][0]["unit_price"] = (-1).into();
    expect_invalid(&app, &body, &["lines[0].unit_price"]).await;
}

#[tokio::test]
async fn bad_currency_is_422() {
    let app = spawn_app().await;
    for currency in ["eur", "EURO", "E1", ""] {
        let mut body = valid_order();
        body["currency"] = currency.into();
        expect_invalid(&app, &body, &["currency"]).await;
    }
}

#[tokio::test]
async fn no_lines_is_422() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"] = json!([]);
    expect_invalid(&app, &body, &["lines"]).await;
}

#[tokio::test]
async fn a_hundred_and_one_lines_is_422_and_a_hundred_are_fine() {
    let app = spawn_app().await;
    let line = |i: usize| json!({"sku": format!("SKU-{i}"), "quantity": 1, "unit_price": 100});
    let mut body = valid_order();
    body["lines"] = (0..101).map(line).collect::<Vec<_>>().into();
    expect_invalid(&app, &body, &["lines"]).await;

    body["lines"] = (0..100).map(line).collect::<Vec<_>>().into();
    let response = app.post_order(&body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_email_is_422() {
    let app = spawn_app().await;
    for email in [
        "ada",
        "ada@",
        "@example.com",
        "ada@example",
        "a da@example.com",
    ] {
        let mut body = valid_order();
        body["customer_email"] = email.into();
        expect_invalid(&app, &body, &["customer_email"]).await;
    }
}

#[tokio::test]
async fn every_bad_field_is_named_at_once() {
    let app = spawn_app().await;
    let body = json!({
        "customer_id": "",
        "customer_email": "nope",
        "currency": "eur",
        "lines": [{"sku": "SKU-1", "quantity": 0, "unit_price": -5},
                  {"sku": "not a sku", "quantity": 1, "unit_price": 1}],
        "shipping_address": {"name": " ", "line1": "1 Main St", "city": "Berlin",
                             "postal_code": "10115", "country": "germany"}
    });
    let problem = expect_invalid(
        &app,
        &body,
        &[
            "customer_id",
            "customer_email",
            "currency",
            "lines[0].quantity",
            "lines[0].unit_price",
            "lines[1].sku",
            "shipping_address.name",
            "shipping_address.country",
        ],
    )
    .await;
    assert_eq!(problem["detail"], "8 fields are invalid");
}

#[tokio::test]
async fn a_total_that_overflows_is_422_not_500() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"][0]["unit_price"] = i64::MAX.into();
    body["lines"][0]["quantity"] = 2.into();
    expect_invalid(&app, &body, &["lines"]).await;
}

#[tokio::test]
async fn malformed_json_is_400() {
    let app = spawn_app().await;
    for raw in ["{", "not json", "", "[1, 2]", "{\"customer_id\": }"] {
        let response = app.post_raw("/v1/orders", raw.to_string(), &[]).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["type"], "/problems/malformed-body", "{raw:?}");
        assert!(body.get("errors").is_none());
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn unknown_fields_are_400_at_every_level() {
    let app = spawn_app().await;
    let mut top = valid_order();
    top["coupon"] = "FREE".into();
    let mut in_line = valid_order();
    in_line["lines"][0]["discount"] = 5.into();
    let mut in_address = valid_order();
    in_address["shipping_address"]["planet"] = "Mars".into();
    for (body, field) in [
        (top, "coupon"),
        (in_line, "discount"),
        (in_address, "planet"),
    ] {
        let response = app.post_order(&body).await;
        let problem = problem(response, StatusCode::BAD_REQUEST).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(field),
            "the detail names {field}: {problem}"
        );
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn wrong_types_and_missing_fields_are_400() {
    let app = spawn_app().await;
    let mut wrong_type = valid_order();
    wrong_type["lines"][0]["quantity"] = "two".into();
    let mut fractional = valid_order();
    fractional["lines"][0]["quantity"] = 1.5.into();
    let mut missing = valid_order();
    missing.as_object_mut().unwrap().remove("customer_email");
    for body in [wrong_type, fractional, missing] {
        let response = app.post_order(&body).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn a_body_over_64_kib_is_413() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["customer_id"] = "x".repeat(65 * 1024).into();
    let response = app.post_order(&body).await;
    let body = problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;
    assert_eq!(body["type"], "/problems/payload-too-large");

    // Well over the limit: still a readable 413, not a reset connection.
    let mut huge = valid_order();
    huge["customer_id"] = "x".repeat(512 * 1024).into();
    let response = app.post_order(&huge).await;
    problem(response, StatusCode::PAYLOAD_TOO_LARGE).await;

    // Without a Content-Length (chunked), the limit holds too.
    let mut request = String::from(
        "POST /v1/orders HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for _ in 0..70 {
        request.push_str(&format!("400\r\n{}\r\n", "x".repeat(1024)));
    }
    request.push_str("0\r\n\r\n");
    let answer = crate::helpers::raw_http(&app, request.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer
        .to_ascii_lowercase()
        .contains("content-type: application/problem+json"));
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_body_just_under_the_limit_is_read() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["shipping_address"]["line2"] = "y".repeat(60 * 1024).into();
    // Too long for the address (422), but read and parsed: not a 413.
    let response = app.post_order(&body).await;
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&problem), ["shipping_address.line2"]);
}

#[tokio::test]
async fn unknown_or_malformed_order_ids_are_404() {
    let app = spawn_app().await;
    let unknown = Uuid::now_v7().to_string();
    for id in [unknown.as_str(), "not-a-uuid", "42"] {
        let body = problem(app.get_order(id).await, StatusCode::NOT_FOUND).await;
        assert_eq!(body["type"], "/problems/order-not-found");
        problem(app.order_events(id).await, StatusCode::NOT_FOUND).await;
        problem(
            app.cancel_order(id, &json!({"reason": "x"})).await,
            StatusCode::NOT_FOUND,
        )
        .await;
    }
}

#[tokio::test]
async fn bad_cancel_bodies_are_400_or_422() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let id = id.to_string();
    let path = format!("/v1/orders/{id}/cancel");
    for raw in [
        "",
        "{",
        "{\"reason\": \"x\", \"extra\": 1}",
        "{}",
        "{\"reason\": 5}",
    ] {
        let response = app.post_raw(&path, raw.to_string(), &[]).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    let response = app.cancel_order(&id, &json!({"reason": "  "})).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["reason"]);
    let response = app
        .cancel_order(&id, &json!({"reason": "x".repeat(501), "cancelled_by": ""}))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["cancelled_by", "reason"]);
    let order: Value = app.get_order(&id).await.json().await.unwrap();
    assert_eq!(
        order["status"], "placed",
        "a refused cancel changes nothing"
    );
}
