//! The vault on a real database: personal data sealed on append and opened on read, plaintext
//! events of before sealing still read, forgetting erases both kinds, and a master key
//! rotation keeps every data key usable under the new key only.

use orderflow_domain::{Order, OrderCommand, OrderEvent};
use orderflow_store::vault::{ERASED, SEALED_FIELD};
use orderflow_store::{CommandMetadata, MasterKey, OrderStore, Vault, VaultError};
use orderflow_testkit::database::TEST_MASTER_KEY;
use orderflow_testkit::{OrderFixture, TestDatabase};
use uuid::Uuid;

async fn stored_payload(db: &TestDatabase, id: Uuid) -> serde_json::Value {
    sqlx::query_scalar("SELECT payload FROM events WHERE aggregate_id = $1 AND sequence = 1")
        .bind(id.to_string())
        .fetch_one(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn sealed_and_plaintext_placements_read_back_and_forgetting_erases_both() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-vault");

    // Sealed on append, opened on read.
    let sealed = Uuid::now_v7();
    let fixture = OrderFixture::new()
        .id(sealed)
        .customer("c-v")
        .email("sealed@example.com");
    store
        .place_new(sealed, fixture.command(), &meta)
        .await
        .unwrap();
    let stored = stored_payload(&db, sealed).await;
    assert!(
        stored["OrderPlaced"].get("customer_email").is_none(),
        "{stored}"
    );
    assert!(
        stored["OrderPlaced"].get("shipping_address").is_none(),
        "{stored}"
    );
    assert!(stored["OrderPlaced"][SEALED_FIELD]["sealed"].is_string());
    let loaded = store.load(sealed).await.unwrap().unwrap();
    assert_eq!(loaded.state.customer_email.as_str(), "sealed@example.com");

    // A plaintext placement written before sealing existed (as cqrs-es wrote it) still reads.
    let plain = Uuid::now_v7();
    let OrderCommand::PlaceOrder(command) = OrderFixture::new()
        .id(plain)
        .customer("c-v")
        .email("plain@example.com")
        .command()
    else {
        unreachable!()
    };
    let order = Order::default();
    let event: OrderEvent = order
        .decide(OrderCommand::PlaceOrder(command))
        .unwrap()
        .remove(0);
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Order', $1, 1, 'OrderPlaced', '1.0', $2, '{}')",
    )
    .bind(plain.to_string())
    .bind(serde_json::to_value(&event).unwrap())
    .execute(&db.pool)
    .await
    .unwrap();
    let loaded = store.load(plain).await.unwrap().unwrap();
    assert_eq!(loaded.state.customer_email.as_str(), "plain@example.com");

    // Forgotten: both read as erased, never as an error; the rest stays.
    let total = store.load(sealed).await.unwrap().unwrap().state.total;
    let forgotten = store.vault().forget("c-v").await.unwrap();
    assert_eq!((forgotten.keys_deleted, forgotten.orders), (1, 2));
    for id in [sealed, plain] {
        let state = store.load(id).await.unwrap().unwrap().state;
        assert_eq!(state.customer_email.as_str(), ERASED);
        assert_eq!(state.shipping_address.line1, ERASED);
        assert_eq!(state.lines.len(), 1);
    }
    assert_eq!(
        store.load(sealed).await.unwrap().unwrap().state.total,
        total
    );
    let rewritten = stored_payload(&db, plain).await.to_string();
    assert!(!rewritten.contains("plain@example.com"), "{rewritten}");
    assert!(!rewritten.contains(&orderflow_testkit::fixture::address().line1));
    // Commands still run on a forgotten customer's order.
    store
        .execute(
            sealed,
            OrderCommand::CancelOrder {
                reason: String::new(),
                cancelled_by: "customer".into(),
            },
            &meta,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn rotating_the_master_key_rewraps_every_data_key() {
    let db = TestDatabase::fresh().await;
    let store = OrderStore::new(db.pool.clone());
    let meta = CommandMetadata::from_request("req-rotate");
    let id = Uuid::now_v7();
    let fixture = OrderFixture::new().id(id).email("rotate@example.com");
    store.place_new(id, fixture.command(), &meta).await.unwrap();

    let old = MasterKey::from_hex(TEST_MASTER_KEY).unwrap();
    let new = MasterKey::generate();
    let rotated = Vault::with_key(db.pool.clone(), old.clone())
        .rotate_master(&new)
        .await
        .unwrap();
    assert_eq!(rotated, 1);
    let mut events = orderflow_store::log::order_events(&db.pool, id)
        .await
        .unwrap();
    let with_old = Vault::with_key(db.pool.clone(), old.clone())
        .open_all(&mut events.clone())
        .await;
    assert!(
        matches!(with_old, Err(VaultError::WrongMasterKey(_))),
        "{with_old:?}"
    );
    Vault::with_key(db.pool.clone(), new.clone())
        .open_all(&mut events)
        .await
        .unwrap();
    assert_eq!(events[0].payload["customer_email"], "rotate@example.com");
    // Back again, so the test key of this process opens it.
    Vault::with_key(db.pool.clone(), new)
        .rotate_master(&old)
        .await
        .unwrap();
    let state = store.load(id).await.unwrap().unwrap().state;
    assert_eq!(state.customer_email.as_str(), "rotate@example.com");
}
