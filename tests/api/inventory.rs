//! `PUT /v1/inventory/{sku}` and `GET /v1/inventory/{sku}`: set, read, and every bad input.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{error_fields, problem, spawn_app};

#[tokio::test]
async fn stock_is_set_and_read_back() {
    let app = spawn_app().await;
    let response = app
        .put_json("/v1/inventory/SKU-7", &json!({"available": 10}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"sku": "SKU-7", "available": 10, "reserved": 0})
    );

    let read: Value = app.get("/v1/inventory/SKU-7").await.json().await.unwrap();
    assert_eq!(read, body);

    // Setting again replaces the amount; 0 is allowed.
    let response = app
        .put_json("/v1/inventory/SKU-7", &json!({"available": 0}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = app.get("/v1/inventory/SKU-7").await.json().await.unwrap();
    assert_eq!(read["available"], 0);
}

#[tokio::test]
async fn unknown_or_invalid_skus_are_404_on_read() {
    let app = spawn_app().await;
    let body = problem(
        app.get("/v1/inventory/SKU-404").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "/problems/sku-not-found");
    assert!(body["detail"].as_str().unwrap().contains("SKU-404"));
    let body = problem(
        app.get("/v1/inventory/not%20a%20sku").await,
        StatusCode::NOT_FOUND,
    )
    .await;
    assert_eq!(body["type"], "/problems/sku-not-found");
}

#[tokio::test]
async fn bad_stock_updates_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    app.put_json("/v1/inventory/SKU-1", &json!({"available": 5}))
        .await;

    let negative = app
        .put_json("/v1/inventory/SKU-1", &json!({"available": -1}))
        .await;
    let body = problem(negative, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["available"]);

    let bad_sku = app
        .put_json("/v1/inventory/bad%20sku", &json!({"available": 1}))
        .await;
    let body = problem(bad_sku, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&body), ["sku"]);
    let long = "S".repeat(65);
    let body = problem(
        app.put_json(&format!("/v1/inventory/{long}"), &json!({"available": 1}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&body), ["sku"]);

    // Missing or of the wrong JSON type: 422 naming the field; unknown fields: 400.
    for (wrong, says) in [
        (json!({}), "is required"),
        (json!({"available": "ten"}), "integer"),
        (json!({"available": 1.5}), "integer"),
        (json!({"available": null}), "integer"),
    ] {
        let body = problem(
            app.put_json("/v1/inventory/SKU-1", &wrong).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .await;
        assert_eq!(error_fields(&body), ["available"], "{wrong}");
        assert!(
            body["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{wrong}: {body}"
        );
    }
    let body = problem(
        app.put_json(
            "/v1/inventory/SKU-1",
            &json!({"available": 1, "extra": true}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(body["type"], "/problems/invalid-request");
    assert_eq!(error_fields(&body), ["extra"], "{body}");

    // A bad SKU and a bad body: both named at once.
    let body = problem(
        app.put_json("/v1/inventory/bad%20sku", &json!({})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&body), ["available", "sku"]);

    let read: Value = app.get("/v1/inventory/SKU-1").await.json().await.unwrap();
    assert_eq!(read["available"], 5, "nothing changed");
    assert_eq!(
        app.get("/v1/inventory/bad%20sku").await.status(),
        StatusCode::NOT_FOUND
    );
}
