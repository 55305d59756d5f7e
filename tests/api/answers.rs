//! What the answers say: one 422 naming every problem of a body at once, one title for every
//! 404, and a cancellation that echoes who cancelled.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{error_fields, problem, spawn_admin_app, spawn_app, valid_order, ADMIN_TOKEN};

/// Unknown fields, wrong types, missing fields and bad values are all named in the same 422:
/// a client fixes its body once, not once per kind of mistake.
#[tokio::test]
async fn one_request_gets_one_422_with_every_problem() {
    let app = spawn_app().await;
    let mut body = valid_order();
    let order = body.as_object_mut().unwrap();
    order.remove("customer_id");
    order.insert("coupon".into(), "FREE".into());
    body["customer_email"] = "not an address".into();
    body["currency"] = "EURO".into();
    body["lines"][0]["quantity"] = "two".into();
    body["lines"][1]["unit_price"] = (-5).into();
    body["shipping_address"]["country"] = "Germany".into();
    body["shipping_address"]["planet"] = "Mars".into();
    let response = app.post_order(&body).await;
    let answer = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(answer["type"], "/problems/invalid-request", "{answer}");
    assert_eq!(
        error_fields(&answer),
        [
            "coupon",
            "currency",
            "customer_email",
            "customer_id",
            "lines[0].quantity",
            "lines[1].unit_price",
            "shipping_address.country",
            "shipping_address.planet",
        ],
        "{answer}"
    );
    assert_eq!(
        app.event_count().await,
        0,
        "bad input never reaches the store"
    );

    // An unknown field alone is the same kind of answer.
    let mut extra = valid_order();
    extra["lines"][0]["discount"] = 5.into();
    let alone = problem(
        app.post_order(&extra).await,
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(error_fields(&alone), ["lines[0].discount"], "{alone}");
}

/// A cancellation body with an unknown field and a bad value: both named, in one 422.
#[tokio::test]
async fn a_cancel_body_gets_one_422_with_every_problem() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let response = app
        .cancel_order(&id.to_string(), &json!({"reason": "  ", "extra": 1}))
        .await;
    let answer = problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(error_fields(&answer), ["extra", "reason"], "{answer}");
}

/// Every 404 has the same title, whatever was not found; `type` and `detail` say what.
#[tokio::test]
async fn every_404_has_one_title() {
    let app = spawn_admin_app(|state| state).await;
    let unknown_order = format!("/v1/orders/{}", Uuid::now_v7());
    let mut titles = Vec::new();
    for (path, admin) in [
        (unknown_order.as_str(), false),
        ("/v1/orders/not-a-uuid", false),
        ("/v1/inventory/SKU-NEVER-STOCKED", false),
        ("/v1/no-such-route", false),
        ("/v1/admin/projections/no-such-projection/rebuild", true),
    ] {
        let request = if admin {
            app.client
                .post(app.url(path))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({}))
        } else {
            app.client.get(app.url(path))
        };
        let response = request.send().await.unwrap();
        let body: Value = problem(response, StatusCode::NOT_FOUND).await;
        titles.push((path.to_string(), body["title"].clone()));
    }
    for (path, title) in &titles {
        assert_eq!(title, "Not found", "{path}: {titles:?}");
    }
}

/// The answer to a cancel says who cancelled, as it was asked, and so does the order.
#[tokio::test]
async fn the_cancel_answer_echoes_cancelled_by() {
    let app = spawn_app().await;
    let (id, _) = app.place_order().await;
    let response = app
        .cancel_order(
            &id.to_string(),
            &json!({"reason": "changed my mind", "cancelled_by": "support"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let cancelled: Value = response.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["cancelled_by"], "support", "{cancelled}");
    assert_eq!(cancelled["cancellation_reason"], "changed my mind");
    let read: Value = app.get_order(&id.to_string()).await.json().await.unwrap();
    assert_eq!(read["cancelled_by"], "support", "{read}");

    // Without one, the default canceller is named.
    let (other, _) = app.place_order().await;
    let cancelled: Value = app
        .cancel_order(&other.to_string(), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert!(
        cancelled["cancelled_by"]
            .as_str()
            .is_some_and(|by| !by.is_empty()),
        "{cancelled}"
    );
}

/// Forgetting a customer a second time, or one never seen, says so instead of claiming to
/// erase again or saying nothing.
#[tokio::test]
async fn forgetting_twice_or_an_unknown_customer_says_what_was_already_forgotten() {
    let app = spawn_admin_app(|state| state).await;
    let mut body = valid_order();
    body["customer_id"] = "c-twice".into();
    assert_eq!(app.post_order(&body).await.status(), StatusCode::CREATED);
    let forget = |customer: &'static str| {
        let app = &app;
        async move {
            let response = app
                .admin_post(
                    &format!("/v1/admin/customers/{customer}/forget"),
                    &json!({}),
                )
                .await;
            assert_eq!(response.status(), StatusCode::OK);
            response.json::<Value>().await.unwrap()
        }
    };
    let first = forget("c-twice").await;
    assert_eq!(first["erased_now"], 1, "{first}");
    assert!(first.get("forgotten_before").is_none(), "{first}");
    assert_eq!(
        first["detail"],
        "customer c-twice forgotten: 1 data key deleted, personal data of 1 order erased"
    );

    let again = forget("c-twice").await;
    assert_eq!(again["erased_now"], 0, "{again}");
    assert_eq!(again["orders"], 1, "{again}");
    assert!(again["forgotten_before"].is_string(), "{again}");
    let detail = again["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("customer c-twice was already forgotten on ")
            && detail
                .ends_with("nothing left to erase (the personal data of 1 order reads as erased)"),
        "{again}"
    );

    let nobody = forget("c-nobody").await;
    assert_eq!(
        nobody["detail"],
        "customer c-nobody is not known here (no order, no data key): nothing to erase; the \
         request is recorded",
        "{nobody}"
    );
}
