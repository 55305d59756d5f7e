//! The event store against the real PostgreSQL: commands append events that postgres-es and
//! orderflow's own readers agree on, migrations re-apply cleanly, and positions are assigned
//! only once a transaction is final.

use orderflow_domain::{OrderCommand, OrderError, OrderStatus};
use orderflow_store::{log, migrate, CommandError, CommandMetadata, OrderStore};
use orderflow_testkit::{OrderFixture, TestDatabase};
use uuid::Uuid;

fn place(order_id: Uuid) -> OrderCommand {
    OrderFixture::new()
        .id(order_id)
        .priced_line("SKU-1", 2, 1299)
        .command()
}

#[tokio::test]
async fn commands_append_events_with_metadata_and_orders_load_back() {
    let db = TestDatabase::fresh().await;
    migrate(&db.pool)
        .await
        .expect("migrations re-apply cleanly");
    let store = OrderStore::new(db.pool.clone());
    let id = Uuid::now_v7();
    let meta = CommandMetadata::from_request("req-1");
    store.execute(id, place(id), &meta).await.unwrap();
    let confirm = OrderCommand::ConfirmOrder {
        reservation_id: Uuid::from_u128(1),
    };
    store.execute(id, confirm.clone(), &meta).await.unwrap();
    store.execute(id, confirm, &meta).await.unwrap();

    let events = store.events(id).await.unwrap();
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["OrderPlaced", "OrderConfirmed"],
        "a repeated confirm appends nothing"
    );
    assert_eq!(events[0].sequence, 1);
    assert_eq!(events[0].metadata.correlation_id.as_deref(), Some("req-1"));
    assert_eq!(events[0].payload["total"], 2598);
    assert_eq!(
        events[0].position, None,
        "not numbered before the relay runs"
    );

    let now = store.load(id).await.unwrap().unwrap();
    assert_eq!((now.state.status, now.version), (OrderStatus::Confirmed, 2));
    let then = store.load_at(id, Some(1)).await.unwrap().unwrap();
    assert_eq!((then.state.status, then.version), (OrderStatus::Placed, 1));
    assert!(store.load(Uuid::now_v7()).await.unwrap().is_none());
}

#[tokio::test]
async fn placing_a_new_order_without_a_load_stores_what_cqrs_es_stores_and_refuses_a_taken_id() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-2");
    let through_cqrs = Uuid::now_v7();
    store
        .execute(through_cqrs, place(through_cqrs), &meta)
        .await
        .unwrap();
    let direct = Uuid::now_v7();
    let answered = store.place_new(direct, place(direct), &meta).await.unwrap();

    // The same row apart from the id, and the answer is what a load reads back.
    let row = |id: Uuid| {
        let pool = db.pool.clone();
        async move {
            sqlx::query_as::<_, (String, i64, String, String, String, String)>(
                "SELECT aggregate_type, sequence, event_type, event_version,
                        replace(payload::text, $1, 'ID'), metadata::text
                   FROM events WHERE aggregate_id = $1",
            )
            .bind(id.to_string())
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let (a, b) = (row(through_cqrs).await, row(direct).await);
    assert_eq!((&a.0, a.1, &a.2, &a.3), (&b.0, b.1, &b.2, &b.3));
    let payload = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let (mut pa, mut pb) = (payload(&a.4), payload(&b.4));
    for p in [&mut pa, &mut pb] {
        p["OrderPlaced"]["placed_at"] = serde_json::Value::Null;
        // Both sealed under the customer's one key; the ciphertexts differ (fresh nonces).
        assert!(p["OrderPlaced"].get("customer_email").is_none(), "{p}");
        assert!(p["OrderPlaced"]["personal"]["sealed"].is_string(), "{p}");
        p["OrderPlaced"]["personal"]["sealed"] = serde_json::Value::Null;
    }
    assert_eq!(pa, pb);
    assert_eq!(payload(&a.5), payload(&b.5));
    assert_eq!(Some(answered.clone()), store.load(direct).await.unwrap());
    // cqrs-es reads it as its own: a later command goes through either way, and a repeat
    // through the appender appends nothing.
    let confirm = OrderCommand::ConfirmOrder {
        reservation_id: Uuid::from_u128(1),
    };
    store.execute(direct, confirm.clone(), &meta).await.unwrap();
    store
        .execute_appending(direct, confirm, &meta)
        .await
        .unwrap();
    assert_eq!(
        store.load(direct).await.unwrap().unwrap().state.status,
        OrderStatus::Confirmed
    );

    let again = store.place_new(direct, place(direct), &meta).await;
    assert!(matches!(again, Err(CommandError::Conflict)), "{again:?}");
    assert_eq!(store.events(direct).await.unwrap().len(), 2);
    let ship = OrderCommand::StartShipment {
        shipment_id: Uuid::from_u128(2),
        carrier: "DHL".into(),
        tracking_number: "T-1".into(),
    };
    store
        .execute_appending(through_cqrs, ship.clone(), &meta)
        .await
        .expect_err("an unconfirmed order cannot ship");
    let unknown = store.execute_appending(Uuid::now_v7(), ship, &meta).await;
    assert!(
        matches!(unknown, Err(CommandError::Domain(_))),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn wrong_state_and_unknown_orders_are_domain_errors() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-2");
    let unknown = store
        .execute(Uuid::now_v7(), OrderCommand::MarkDelivered, &meta)
        .await;
    assert!(matches!(
        unknown,
        Err(CommandError::Domain(OrderError::NotFound))
    ));
    let id = Uuid::now_v7();
    store.execute(id, place(id), &meta).await.unwrap();
    let again = store.execute(id, place(id), &meta).await;
    assert!(matches!(
        again,
        Err(CommandError::Domain(OrderError::AlreadyExists(_)))
    ));
}

#[tokio::test]
async fn a_late_commit_is_numbered_late_and_positions_stay_gapless() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-3");
    let first = Uuid::now_v7();
    store.execute(first, place(first), &meta).await.unwrap();

    // An open transaction that already wrote a row: its row cannot be numbered before it
    // commits, and must not be lost when it commits after later rows were numbered.
    let mut open = db.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Order', $1, 1, 'OrderDelivered', '1.0', '{\"OrderDelivered\": {}}', '{}')",
    )
    .bind(Uuid::now_v7().to_string())
    .execute(&mut *open)
    .await
    .unwrap();
    let later = Uuid::now_v7();
    store.execute(later, place(later), &meta).await.unwrap();

    assert_eq!(log::assign_positions(&db.pool, 100).await.unwrap(), 2);
    let cursor = log::head_position(&db.pool).await.unwrap();
    open.commit().await.unwrap();
    assert_eq!(log::assign_positions(&db.pool, 100).await.unwrap(), 1);
    assert_eq!(log::assign_positions(&db.pool, 100).await.unwrap(), 0);

    let all = log::events_after(&db.pool, 0, None, 100).await.unwrap();
    let positions: Vec<_> = all.iter().map(|e| e.position.unwrap()).collect();
    assert_eq!(positions, [1, 2, 3]);
    assert_eq!(all[0].order_id, first, "the first commit is numbered first");
    assert_eq!(all[1].order_id, later);
    let after_cursor = log::events_after(&db.pool, cursor, None, 100)
        .await
        .unwrap();
    assert_eq!(
        after_cursor.len(),
        1,
        "the late commit appears after the cursor"
    );
    assert_eq!(after_cursor[0].event_type, "OrderDelivered");
    assert_eq!(log::head_position(&db.pool).await.unwrap(), 3);
}

#[tokio::test]
async fn a_batch_of_commands_is_decided_in_order_and_appended_at_once_with_refusals_per_command() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-3");
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    for id in [a, b] {
        store.place_new(id, place(id), &meta).await.unwrap();
    }
    let confirm = |n| OrderCommand::ConfirmOrder {
        reservation_id: Uuid::from_u128(n),
    };
    let ship = OrderCommand::StartShipment {
        shipment_id: Uuid::from_u128(9),
        carrier: "DHL".into(),
        tracking_number: "T-9".into(),
    };
    let results = store
        .execute_all(
            vec![
                (a, confirm(1), meta.clone()),
                // Sees the confirmation just decided for the same order.
                (a, ship.clone(), meta.clone()),
                // Not confirmed: refused, alone.
                (b, ship.clone(), meta.clone()),
                (Uuid::now_v7(), confirm(2), meta.clone()),
                (b, confirm(3), meta.clone()),
            ],
            3,
        )
        .await;
    assert!(
        results[0].is_ok() && results[1].is_ok() && results[4].is_ok(),
        "{results:?}"
    );
    assert!(
        matches!(results[2], Err(CommandError::Domain(_))),
        "{results:?}"
    );
    assert!(
        matches!(results[3], Err(CommandError::Domain(_))),
        "{results:?}"
    );
    let types = |id| {
        let store = store.clone();
        async move {
            store
                .events(id)
                .await
                .unwrap()
                .into_iter()
                .map(|e| (e.sequence, e.event_type))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        types(a).await,
        [
            (1, "OrderPlaced".to_string()),
            (2, "OrderConfirmed".to_string()),
            (3, "ShipmentStarted".to_string())
        ]
    );
    assert_eq!(
        types(b).await,
        [
            (1, "OrderPlaced".to_string()),
            (2, "OrderConfirmed".to_string())
        ]
    );
    assert_eq!(
        store.load(a).await.unwrap().unwrap().state.status,
        OrderStatus::Shipped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_share_commits_and_a_conflict_is_told_only_to_the_one_that_met_it() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-4");
    let mut tasks = Vec::new();
    for _ in 0..200 {
        let (store, meta) = (store.clone(), meta.clone());
        tasks.push(tokio::spawn(async move {
            let id = Uuid::now_v7();
            store.place_new(id, place(id), &meta).await.map(|_| id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().expect("every new order is placed"));
    }
    let (events, transactions): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT tx_id) FROM events")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(events, 200);
    assert!(
        transactions < 200,
        "200 concurrent placements, {transactions} commits: appends were not grouped"
    );

    // Twenty confirmations of one order at once: grouped with each other, they conflict on
    // the order's next sequence; each is answered on its own, exactly one gets through.
    let order = ids[0];
    let mut tasks = Vec::new();
    for n in 0..20u128 {
        let (store, meta) = (store.clone(), meta.clone());
        tasks.push(tokio::spawn(async move {
            let confirm = OrderCommand::ConfirmOrder {
                reservation_id: Uuid::from_u128(100 + n),
            };
            store.execute_appending(order, confirm, &meta).await
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(()) => accepted += 1,
            Err(CommandError::Conflict | CommandError::Domain(_)) => {}
            Err(other) => panic!("unexpected: {other:?}"),
        }
    }
    let types: Vec<_> = store
        .events(order)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(types, ["OrderPlaced", "OrderConfirmed"]);
    assert!(accepted >= 1, "one confirmation got through");
}
