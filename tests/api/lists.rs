//! `GET /v1/orders` and `GET /v1/customers/{id}/orders`: the order-summary projection, newest
//! first, filtered, in stable and complete cursor pages; and every bad parameter.

use std::collections::HashSet;

use chrono::{Duration, TimeZone, Utc};
use orderflow_domain::OrderCommand;
use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{error_fields, problem, spawn_app, TestApp};

/// Walks every page of `path` (which has a query string) and returns the ids in order.
async fn walk(app: &TestApp, path: &str, limit: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1_000 {
        let url = match &cursor {
            Some(c) => format!("{path}&limit={limit}&cursor={c}"),
            None => format!("{path}&limit={limit}"),
        };
        let response = app.get(&url).await;
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let page: Value = response.json().await.unwrap();
        let orders = page["orders"].as_array().unwrap();
        assert!(orders.len() <= limit);
        ids.extend(
            orders
                .iter()
                .map(|o| o["id"].as_str().unwrap().parse::<Uuid>().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => {
                assert_eq!(orders.len(), limit, "only the last page is short");
                cursor = Some(next.to_string());
            }
            None => return ids,
        }
    }
    panic!("the pages never end");
}

#[tokio::test]
async fn pages_are_newest_first_stable_and_complete() {
    let app = spawn_app().await;
    let base = Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap();
    // 41 orders over 3 customers; placed times tie in pairs, so the id breaks ties.
    let mut placed = Vec::new();
    for i in 0..41i64 {
        let at = base + Duration::minutes(i / 2);
        let customer = format!("c-{}", i % 3);
        let id = app.place_at(&customer, "SKU-1", at).await;
        placed.push((at, id, customer));
    }
    // Some orders move on.
    for (i, (_, id, _)) in placed.iter().enumerate() {
        if i % 4 == 0 {
            app.command(
                *id,
                OrderCommand::ConfirmOrder {
                    reservation_id: Uuid::now_v7(),
                },
            )
            .await;
        }
    }
    app.project().await;

    let mut expected: Vec<(chrono::DateTime<Utc>, Uuid)> =
        placed.iter().map(|(at, id, _)| (*at, *id)).collect();
    expected.sort_by(|a, b| b.cmp(a));
    let expected: Vec<Uuid> = expected.into_iter().map(|(_, id)| id).collect();

    for limit in [1, 7, 41, 500] {
        let walked = walk(&app, "/v1/orders?", limit).await;
        assert_eq!(walked, expected, "limit {limit}: newest first, each once");
    }

    // Orders placed during a walk do not disturb it: the rest of the walk is what was there.
    let first: Value = app.get("/v1/orders?limit=10").await.json().await.unwrap();
    let cursor = first["next_cursor"].as_str().unwrap().to_string();
    app.place_at("c-9", "SKU-1", base + Duration::days(1)).await;
    app.place_at("c-9", "SKU-1", base - Duration::days(1)).await;
    app.project().await;
    let rest: Value = app
        .get(&format!("/v1/orders?limit=500&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    let rest: Vec<Uuid> = rest["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(
        rest[..31],
        expected[10..],
        "the older orders follow unchanged"
    );
    assert_eq!(rest.len(), 32, "plus the one placed before all of them");

    // Filters: customer, status, placed_after; the customer route is the same list.
    let c1: HashSet<Uuid> = placed
        .iter()
        .filter(|(_, _, c)| c == "c-1")
        .map(|(_, id, _)| *id)
        .collect();
    let by_query = walk(&app, "/v1/orders?customer_id=c-1", 4).await;
    assert_eq!(by_query.iter().copied().collect::<HashSet<_>>(), c1);
    let by_path = walk(&app, "/v1/customers/c-1/orders?", 4).await;
    assert_eq!(by_path, by_query);
    let confirmed = walk(&app, "/v1/orders?status=confirmed", 3).await;
    assert_eq!(confirmed.len(), 11);
    let page: Value = app
        .get("/v1/orders?status=confirmed&limit=500")
        .await
        .json()
        .await
        .unwrap();
    assert!(page["orders"]
        .as_array()
        .unwrap()
        .iter()
        .all(|o| o["status"] == "confirmed"));
    let after = walk(
        &app,
        "/v1/orders?placed_after=2026-11-20T08:15:00Z&customer_id=c-0",
        100,
    )
    .await;
    let want: Vec<Uuid> = expected
        .iter()
        .copied()
        .filter(|id| {
            placed
                .iter()
                .any(|(at, pid, c)| pid == id && c == "c-0" && *at > base + Duration::minutes(15))
        })
        .collect();
    assert_eq!(after, want);

    // A customer with no orders has an empty page, not a 404.
    let none: Value = app
        .get("/v1/customers/nobody/orders")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["orders"].as_array().unwrap().len(), 0);
    assert!(none.get("next_cursor").is_none());
}

#[tokio::test]
async fn bad_list_parameters_are_422_with_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("/v1/orders?limit=0", vec!["limit"]),
        ("/v1/orders?limit=501", vec!["limit"]),
        ("/v1/orders?limit=ten", vec!["limit"]),
        ("/v1/orders?limit=-1", vec!["limit"]),
        ("/v1/orders?status=lost", vec!["status"]),
        ("/v1/orders?placed_after=yesterday", vec!["placed_after"]),
        ("/v1/orders?cursor=nope", vec!["cursor"]),
        ("/v1/orders?customer_id=", vec!["customer_id"]),
        ("/v1/orders?limit=0&status=lost", vec!["limit", "status"]),
        ("/v1/customers/c-1/orders?limit=9999", vec!["limit"]),
        ("/v1/customers/c-1/orders?cursor=000", vec!["cursor"]),
        // 48 characters, but not all hexadecimal digits.
        (
            "/v1/orders?cursor=%2B00000000000000000000000000000000000000000000000",
            vec!["cursor"],
        ),
    ];
    for (path, fields) in cases {
        let body = problem(app.get(path).await, StatusCode::UNPROCESSABLE_ENTITY).await;
        assert_eq!(error_fields(&body), fields, "{path}");
        assert_eq!(body["type"], "/problems/invalid-request");
    }
}

/// Any 48 hexadecimal digits are a cursor, as the document says; their time may be one
/// PostgreSQL cannot hold (year -250,000 here), which used to fail the query (500).
#[tokio::test]
async fn a_cursor_at_any_time_is_a_position_not_a_500() {
    let app = spawn_app().await;
    app.place_at(
        "c-1",
        "SKU-1",
        Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap(),
    )
    .await;
    app.project().await;
    let id = "0".repeat(32);
    for (time, orders) in [
        ("8f00000000000000", 0),
        ("0000000000000000", 0),
        ("7fffffffffffffff", 1),
        ("ffffffffffffffff", 0),
    ] {
        let response = app.get(&format!("/v1/orders?cursor={time}{id}")).await;
        assert_eq!(response.status(), StatusCode::OK, "cursor time {time}");
        let page: Value = response.json().await.unwrap();
        assert_eq!(
            page["orders"].as_array().unwrap().len(),
            orders,
            "cursor time {time}"
        );
    }
}
