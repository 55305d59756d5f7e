//! Every bad input: the status AND the problem+json body. Bad input never reaches the store,
//! and is never a 500.

use orderflow_domain::{
    MAX_ADDRESS_LINE_CHARS, MAX_CITY_CHARS, MAX_CUSTOMER_ID_CHARS, MAX_LINES,
    MAX_POSTAL_CODE_CHARS, MAX_QUANTITY, MAX_UNIT_PRICE,
};
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
async fn a_unit_price_over_the_most_is_422_and_the_dearest_order_fits() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"][0]["unit_price"] = i64::MAX.into();
    body["lines"][0]["quantity"] = 2.into();
    body["lines"][1]["unit_price"] = (MAX_UNIT_PRICE + 1).into();
    expect_invalid(&app, &body, &["lines[0].unit_price", "lines[1].unit_price"]).await;
    // The most lines of the most units at the highest price: the total does not overflow.
    let mut body = valid_order();
    body["lines"] = (0..MAX_LINES)
        .map(|i| json!({"sku": format!("SKU-{i}"), "quantity": MAX_QUANTITY, "unit_price": MAX_UNIT_PRICE}))
        .collect();
    let response = app.post_order(&body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
}

/// JSON Schema's `integer`, which the document gives quantities, prices and stock, is any
/// number without a fraction: `2.0` is the integer 2. The server used to refuse it (422).
#[tokio::test]
async fn integers_written_with_a_zero_fraction_are_taken() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["lines"][0]["quantity"] = json!(2.5);
    expect_invalid(&app, &body, &["lines[0].quantity"]).await;
    let mut body = valid_order();
    body["lines"][0]["quantity"] = json!(2.0);
    body["lines"][0]["unit_price"] = json!(1.5e3);
    let response = app.post_order(&body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let order: Value = response.json().await.unwrap();
    assert_eq!(order["lines"][0]["quantity"], 2);
    assert_eq!(order["lines"][0]["unit_price"], 1500);
}

/// Lengths are characters (Unicode code points), as JSON Schema's `maxLength` counts them,
/// of the text as sent. The server used to count the UTF-8 bytes of the trimmed text, so 200
/// characters of `ü` (400 bytes) were refused though the document allowed them.
#[tokio::test]
async fn text_lengths_are_characters_as_sent() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["shipping_address"]["name"] = "ü".repeat(MAX_ADDRESS_LINE_CHARS).into();
    body["shipping_address"]["postal_code"] = "€".repeat(MAX_POSTAL_CODE_CHARS).into();
    let response = app.post_order(&body).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let mut body = valid_order();
    body["shipping_address"]["name"] = "ü".repeat(MAX_ADDRESS_LINE_CHARS + 1).into();
    body["shipping_address"]["city"] = format!(" {}", "x".repeat(MAX_CITY_CHARS)).into();
    body["customer_id"] = format!("{} ", "c".repeat(MAX_CUSTOMER_ID_CHARS)).into();
    let bad = vec![
        "customer_id",
        "shipping_address.city",
        "shipping_address.name",
    ];
    let response = app.post_order(&body).await;
    let problem = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&problem), bad, "{problem}");
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
async fn unknown_fields_are_422_at_every_level() {
    let app = spawn_app().await;
    let mut top = valid_order();
    top["coupon"] = "FREE".into();
    let mut in_line = valid_order();
    in_line["lines"][0]["discount"] = 5.into();
    let mut in_address = valid_order();
    in_address["shipping_address"]["planet"] = "Mars".into();
    for (body, field) in [
        (top, "coupon"),
        (in_line, "lines[0].discount"),
        (in_address, "shipping_address.planet"),
    ] {
        expect_invalid(&app, &body, &[field]).await;
    }
}

/// The `message` of the error about `field` in a problem's `errors[]`.
fn message_for<'p>(problem: &'p Value, field: &str) -> &'p str {
    problem["errors"]
        .as_array()
        .and_then(|errors| errors.iter().find(|e| e["field"] == field))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_else(|| panic!("no error about {field}: {problem}"))
}

#[tokio::test]
async fn an_empty_object_names_every_missing_field() {
    let app = spawn_app().await;
    let problem = expect_invalid(
        &app,
        &json!({}),
        &[
            "customer_id",
            "customer_email",
            "currency",
            "lines",
            "shipping_address",
        ],
    )
    .await;
    for field in ["customer_id", "lines", "shipping_address"] {
        assert_eq!(message_for(&problem, field), "is required", "{problem}");
    }

    // Nested ones too, by their JSON path; optional ones (line2) are not named.
    let mut body = valid_order();
    body["lines"][1].as_object_mut().unwrap().remove("quantity");
    body["shipping_address"] = json!({"name": "Ada L"});
    expect_invalid(
        &app,
        &body,
        &[
            "lines[1].quantity",
            "shipping_address.city",
            "shipping_address.country",
            "shipping_address.line1",
            "shipping_address.postal_code",
        ],
    )
    .await;
}

#[tokio::test]
async fn a_wrong_json_type_names_the_field_and_the_expected_type() {
    let app = spawn_app().await;
    let mut word = valid_order();
    word["lines"][0]["quantity"] = "two".into();
    let problem = expect_invalid(&app, &word, &["lines[0].quantity"]).await;
    let message = message_for(&problem, "lines[0].quantity");
    assert!(message.contains("integer"), "{problem}");
    assert!(message.contains("string"), "says what it got: {problem}");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .starts_with("lines[0].quantity: "));

    let mut not_a_list = valid_order();
    not_a_list["lines"] = 5.into();
    let problem = expect_invalid(&app, &not_a_list, &["lines"]).await;
    assert!(
        message_for(&problem, "lines").contains("array"),
        "{problem}"
    );

    let mut fractional = valid_order();
    fractional["lines"][0]["quantity"] = 1.5.into();
    let problem = expect_invalid(&app, &fractional, &["lines[0].quantity"]).await;
    assert!(message_for(&problem, "lines[0].quantity").contains("integer"));

    // Wrong types and missing fields together, and null for a required string.
    let mut mixed = valid_order();
    mixed.as_object_mut().unwrap().remove("customer_email");
    mixed["currency"] = Value::Null;
    mixed["shipping_address"] = json!("1 Main St");
    mixed["lines"][1]["sku"] = 7.into();
    let problem = expect_invalid(
        &app,
        &mixed,
        &[
            "currency",
            "customer_email",
            "lines[1].sku",
            "shipping_address",
        ],
    )
    .await;
    assert!(message_for(&problem, "currency").contains("string"));
    assert!(message_for(&problem, "shipping_address").contains("object"));
}

#[tokio::test]
async fn a_body_that_is_not_an_object_is_400() {
    let app = spawn_app().await;
    for raw in ["[1, 2]", "5", "\"order\"", "null"] {
        let response = app.post_raw("/v1/orders", raw.to_string(), &[]).await;
        let body = problem(response, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["type"], "/problems/malformed-body", "{raw}");
    }
    assert_eq!(app.event_count().await, 0);
}

#[tokio::test]
async fn a_body_that_is_not_json_by_its_content_type_is_415() {
    let app = crate::helpers::spawn_admin_app(|state| state).await;
    let (id, _) = app.place_order().await;
    let order = valid_order().to_string();
    let routes = [
        (
            reqwest::Method::POST,
            "/v1/orders".to_string(),
            order.clone(),
        ),
        (
            reqwest::Method::POST,
            format!("/v1/orders/{id}/cancel"),
            r#"{"reason": "x"}"#.to_string(),
        ),
        (
            reqwest::Method::PUT,
            "/v1/inventory/SKU-1".to_string(),
            r#"{"available": 1}"#.to_string(),
        ),
        (
            reqwest::Method::POST,
            "/v1/admin/projections/order-summary/rebuild".to_string(),
            "{}".to_string(),
        ),
        (
            reqwest::Method::POST,
            "/v1/admin/consumers/analytics/replay".to_string(),
            r#"{"from": 1, "dry_run": true}"#.to_string(),
        ),
    ];
    for (method, path, body) in &routes {
        for content_type in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/xml",
        ] {
            let response = app
                .send_raw(
                    method.clone(),
                    path,
                    Some(content_type),
                    body,
                    Some(crate::helpers::ADMIN_TOKEN),
                )
                .await;
            let problem = problem(response, StatusCode::UNSUPPORTED_MEDIA_TYPE).await;
            assert_eq!(problem["type"], "/problems/unsupported-media-type");
            assert!(
                problem["detail"].as_str().unwrap().contains(content_type),
                "{method} {path}: {problem}"
            );
        }
    }
    assert_eq!(app.event_count().await, 1, "only the order placed above");
    let order: Value = app.get_order(&id.to_string()).await.json().await.unwrap();
    assert_eq!(order["status"], "placed");
}

#[tokio::test]
async fn json_bodies_are_taken_with_a_json_content_type_or_none() {
    let app = spawn_app().await;
    let order = valid_order().to_string();
    for content_type in [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON"),
        Some("application/merge-patch+json"),
        None,
    ] {
        let response = app
            .send_raw(
                reqwest::Method::POST,
                "/v1/orders",
                content_type,
                &order,
                None,
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{content_type:?}");
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
    for raw in ["{", "[]", "\"x\""] {
        let response = app.post_raw(&path, raw.to_string(), &[]).await;
        problem(response, StatusCode::BAD_REQUEST).await;
    }
    let response = app
        .post_raw(&path, "{\"reason\": \"x\", \"extra\": 1}".into(), &[])
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["extra"]);
    let response = app.cancel_order(&id, &json!({"reason": 5})).await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["reason"]);
    assert!(message_for(&body, "reason").contains("string"), "{body}");
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

/// PostgreSQL stores no U+0000 in text or JSON, so a NUL character in a text field or a
/// customer id reached the database and failed there (500). It is refused first (422), and
/// the document's patterns say so.
#[tokio::test]
async fn a_nul_character_is_422_not_500() {
    let app = spawn_app().await;
    let mut body = valid_order();
    body["shipping_address"]["line1"] = "1 Main\u{0}St".into();
    body["customer_id"] = "c-\u{0}42".into();
    expect_invalid(&app, &body, &["customer_id", "shipping_address.line1"]).await;
    for path in ["/v1/orders?customer_id=c%00", "/v1/customers/c%00/orders"] {
        let body = problem(app.get(path).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), ["customer_id"], "{path}");
    }
    let (id, _) = app.place_order().await;
    let response = app
        .cancel_order(&id.to_string(), &json!({"reason": "late\u{0}"}))
        .await;
    let body = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["reason"]);
}
