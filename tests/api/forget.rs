//! Forgetting a customer over HTTP: personal data is sealed in the log, reads as erased once
//! the customer's key is gone (never as an error), the rest of the order stays, and the
//! notifications worker stops writing to them.

use std::sync::Arc;

use orderflow_bus::{Delivery, Handler};
use orderflow_workers::notifications::{LogChannel, NotificationsWorker};
use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{problem, spawn_admin_app, valid_order};

fn order_of(customer: &str, email: &str, street: &str) -> Value {
    let mut body = valid_order();
    body["customer_id"] = json!(customer);
    body["customer_email"] = json!(email);
    body["shipping_address"]["line1"] = json!(street);
    body
}

#[tokio::test]
async fn a_forgotten_customer_reads_as_erased_and_is_not_notified() {
    let app = spawn_admin_app(|state| state).await;
    let tag = Uuid::new_v4().simple().to_string();
    let (email, street) = (
        format!("gone-{tag}@example.com"),
        format!("{tag} Erasure Lane"),
    );
    let kept_email = format!("kept-{tag}@example.com");

    let placed = app.post_order(&order_of("c-gone", &email, &street)).await;
    assert_eq!(placed.status(), StatusCode::CREATED);
    let placed: Value = placed.json().await.unwrap();
    let id: Uuid = placed["id"].as_str().unwrap().parse().unwrap();
    let kept = app
        .post_order(&order_of("c-kept", &kept_email, &street))
        .await;
    let kept: Value = kept.json().await.unwrap();
    assert_eq!(placed["customer_email"], email.as_str());

    // Sealed in the log: the stored payload holds neither the e-mail nor the street.
    let stored: Vec<String> = sqlx::query_scalar("SELECT payload::text FROM events")
        .fetch_all(&app.db.pool)
        .await
        .unwrap();
    assert!(stored.iter().any(|p| p.contains("\"personal\"")));
    assert!(!stored
        .iter()
        .any(|p| p.contains(&email) || p.contains(&street)));
    // Opened for the routes.
    let before: Value = app.get_order(&id.to_string()).await.json().await.unwrap();
    assert_eq!(before["customer_email"], email.as_str());
    assert_eq!(before["shipping_address"]["line1"], street.as_str());

    // The placement notifies; the record holds the address.
    let worker = NotificationsWorker::new(app.db.pool.clone(), Arc::new(LogChannel));
    app.number_events().await;
    for event in app.events_after(0).await {
        worker.handle(&event, Delivery::live(1)).await.unwrap();
    }
    let recipients = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT recipient FROM notifications WHERE order_id = $1 ORDER BY created_at",
        )
        .bind(id)
        .fetch_all(&app.db.pool)
        .await
        .unwrap()
    };
    assert_eq!(recipients().await, [email.as_str()]);

    let forgotten = app
        .admin_post("/v1/admin/customers/c-gone/forget", &json!({}))
        .await;
    assert_eq!(forgotten.status(), StatusCode::OK);
    let forgotten: Value = forgotten.json().await.unwrap();
    assert_eq!(
        forgotten,
        json!({"customer_id": "c-gone", "keys_deleted": 1, "orders": 1, "erased_now": 1,
               "detail": "customer c-gone forgotten: 1 data key deleted, personal data of 1 order erased"})
    );

    // The order: personal fields erased, the rest as placed.
    let after: Value = app.get_order(&id.to_string()).await.json().await.unwrap();
    assert_eq!(after["customer_email"], "[erased]");
    assert_eq!(after["shipping_address"]["line1"], "[erased]");
    assert_eq!(after["shipping_address"]["name"], "[erased]");
    for field in [
        "id",
        "customer_id",
        "lines",
        "total",
        "currency",
        "status",
        "placed_at",
    ] {
        assert_eq!(after[field], before[field], "{field}");
    }
    // Events, state at a sequence and the timeline: erased, never an error.
    for path in [
        format!("/v1/orders/{id}/events"),
        format!("/v1/orders/{id}/state?at_sequence=1"),
    ] {
        let response = app.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let text = response.text().await.unwrap();
        assert!(
            !text.contains(&email) && !text.contains(&street),
            "{path}: {text}"
        );
        assert!(text.contains("[erased]"), "{path}: {text}");
    }
    let timeline = app
        .admin_get(&format!("/v1/admin/orders/{id}/replay"))
        .await;
    assert_eq!(timeline.status(), StatusCode::OK);
    let text = timeline.text().await.unwrap();
    assert!(
        !text.contains(&email) && text.contains("[erased]"),
        "{text}"
    );
    // The worker's record no longer holds the address.
    assert_eq!(recipients().await, ["[erased]"]);
    // Another customer is untouched.
    let other: Value = app
        .get_order(kept["id"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["customer_email"], kept_email.as_str());

    // A later event of the order notifies no one, and fails nothing.
    let cancelled = app
        .cancel_order(&id.to_string(), &json!({"reason": "forgotten"}))
        .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    app.number_events().await;
    for event in app.events_after(0).await {
        let effects = worker.handle(&event, Delivery::live(1)).await.unwrap();
        if event.order_id == id {
            assert!(effects.is_empty(), "{:?}", event.event_type);
        }
    }
    assert_eq!(recipients().await, ["[erased]"], "no new notification");

    // Forgetting again changes nothing and says so; a blank id is refused.
    let again: Value = app
        .admin_post("/v1/admin/customers/c-gone/forget", &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["keys_deleted"], 0);
    let blank = app
        .admin_post("/v1/admin/customers/%20/forget", &json!({}))
        .await;
    problem(blank, StatusCode::UNPROCESSABLE_ENTITY).await;
}
