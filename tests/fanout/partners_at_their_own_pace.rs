//! Partners at their own pace: a slow carrier or mail service slows its own calls, never the
//! consumer. `orderflow serve` books with a carrier and sends notifications to a webhook,
//! both local partners that answer like real ones do (`orderflow_testkit::partner`): slowly,
//! not at all for a while, or with 429 above a rate. Nothing here reads a clock to decide:
//! each test waits for what the partner or the log shows, with deadlines a starved machine
//! meets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use orderflow_testkit::fixture::sku;
use orderflow_testkit::partner::{Behaviour, PartnerServer};
use orderflow_testkit::{orderflow, Process, World};
use orderflow_workers::inventory;
use uuid::Uuid;

const SKU: &str = "SKU-PARTNER";
const WITHIN: Duration = Duration::from_secs(240);

/// A world with stock, and `orders` orders placed in it.
async fn world_with_orders(orders: usize) -> (World, Vec<Uuid>) {
    let world = World::builder().max_connections(8).build().await;
    inventory::set_stock(world.pool(), &sku(SKU), 1_000_000)
        .await
        .unwrap();
    let ids = world.place_many(SKU, orders).await;
    (world, ids)
}

/// `orderflow serve` booking with `carrier` and notifying through `mail`.
fn serve(world: &World, carrier: &PartnerServer, mail: &PartnerServer) -> (Process, String) {
    orderflow!(world)
        .envs(&[
            ("ORDERFLOW_CARRIER", "http"),
            ("ORDERFLOW_CARRIER_URL", &carrier.url),
            ("ORDERFLOW_NOTIFY_CHANNEL", "webhook"),
            ("ORDERFLOW_NOTIFY_WEBHOOK_URL", &mail.url),
            ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8"),
        ])
        .serve(&[])
}

/// How many of `ids` have shipped, by the log.
async fn shipped(world: &World, ids: &[Uuid]) -> usize {
    let ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE event_type = 'ShipmentStarted'
            AND aggregate_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(world.pool())
    .await
    .unwrap();
    usize::try_from(count).unwrap()
}

/// Polls `check` until it is true; `what` says what was awaited.
async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < WITHIN, "{what}: not within {WITHIN:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of the counter of `name` whose labels include every one of `labels`, from a
/// `/metrics` text.
fn metric(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Every key the partner booked came once, and there is one per order.
fn one_booking_per_order(carrier: &PartnerServer, orders: usize) {
    let keys = carrier.keys();
    let repeated: BTreeMap<&String, &usize> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert_eq!(keys.len(), orders, "one booking key per order");
    assert!(repeated.is_empty(), "keys booked twice: {repeated:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_carrier_is_called_far_beyond_sixteen_at_once_and_an_orders_mail_goes_in_order() {
    const ORDERS: usize = 300;
    let (world, ids) = world_with_orders(ORDERS).await;
    let carrier = PartnerServer::start(Behaviour {
        latency: Duration::from_secs(1),
        ..Behaviour::default()
    })
    .await;
    let mail = PartnerServer::start(Behaviour {
        latency: Duration::from_millis(500),
        ..Behaviour::default()
    })
    .await;
    let (served, _base) = serve(&world, &carrier, &mail);

    wait_until("every order shipped", || async {
        shipped(&world, &ids).await == ORDERS
    })
    .await;
    wait_until("every order's three notifications delivered", || async {
        mail.served().len() >= 3 * ORDERS
    })
    .await;
    assert!(
        carrier.most_in_flight() > 16,
        "the carrier never had more than {} bookings in flight: a slow partner bounds the \
         consumer",
        carrier.most_in_flight()
    );
    one_booking_per_order(&carrier, ORDERS);

    // Each order's notifications reached the mail service one after another, in the order
    // of its events, although the service took half a second over each.
    let mut by_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in mail.served() {
        by_order
            .entry(request.body["order_id"].as_str().unwrap().to_string())
            .or_default()
            .push(request.body["event_type"].as_str().unwrap().to_string());
    }
    assert_eq!(by_order.len(), ORDERS);
    for (order, events) in &by_order {
        assert_eq!(
            events,
            &["OrderPlaced", "OrderConfirmed", "ShipmentStarted"],
            "order {order}'s notifications in the order of its events"
        );
    }
    assert!(world.bus().dead_letters().await.unwrap().is_empty());
    served.terminate(Duration::from_secs(60)).await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_outage_parks_nothing_and_spends_no_attempt() {
    const ORDERS: usize = 60;
    let (world, ids) = world_with_orders(ORDERS).await;
    let carrier = PartnerServer::start(Behaviour {
        latency: Duration::from_millis(20),
        ..Behaviour::default()
    })
    .await;
    let mail = PartnerServer::start(Behaviour::default()).await;
    carrier.down();
    let (served, base) = serve(&world, &carrier, &mail);

    wait_until("orderflow takes the carrier for down", || async {
        metric(
            &metrics(&base).await,
            "orderflow_partner_down",
            &["partner=\"carrier\""],
        ) == 1.0
    })
    .await;
    let refused_while_down = carrier.answered(503);
    carrier.up();
    wait_until("every order shipped once the carrier is back", || async {
        shipped(&world, &ids).await == ORDERS
    })
    .await;

    assert!(
        world.bus().dead_letters().await.unwrap().is_empty(),
        "nothing is parked for an outage"
    );
    let text = metrics(&base).await;
    let retried = metric(
        &text,
        "orderflow_consumer_messages_total",
        &["consumer=\"shipments\"", "outcome=\"retried\""],
    );
    // Before five failures in a row take the carrier for down, a booking that failed twice
    // is retried as an attempt of its message; from then on, none is.
    let limit = f64::from(orderflow_workers::partner::FAILURES_TO_DOWN);
    assert!(
        retried <= limit,
        "{retried} messages naked for the outage: it spent attempts after the carrier was down"
    );
    let info = world
        .bus()
        .bus
        .stream()
        .await
        .unwrap()
        .consumer_info("shipments")
        .await
        .unwrap();
    assert!(
        (info.delivered.consumer_sequence - info.delivered.stream_sequence) as f64 <= retried,
        "a message was delivered again that was not naked: {info:?}"
    );
    assert!(refused_while_down >= 5, "the carrier was called while down");
    one_booking_per_order(&carrier, ORDERS);
    served.terminate(Duration::from_secs(60)).await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carrier_that_refuses_above_its_rate_is_not_overrun() {
    const ORDERS: usize = 200;
    const RATE: usize = 40;
    let (world, ids) = world_with_orders(ORDERS).await;
    let carrier = PartnerServer::start(Behaviour {
        max_per_second: Some(RATE),
        ..Behaviour::default()
    })
    .await;
    let mail = PartnerServer::start(Behaviour::default()).await;
    let (served, _base) = serve(&world, &carrier, &mail);

    wait_until("every order shipped", || async {
        shipped(&world, &ids).await == ORDERS
    })
    .await;
    assert!(world.bus().dead_letters().await.unwrap().is_empty());
    // A client that ignored the 429s would be refused many times for each booking; one
    // that slows down and waits out `Retry-After` is refused less often than it books.
    assert!(
        carrier.answered(429) < ORDERS,
        "{} refusals for {ORDERS} bookings: the carrier was overrun",
        carrier.answered(429)
    );
    one_booking_per_order(&carrier, ORDERS);
    served.terminate(Duration::from_secs(60)).await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_or_a_kill_with_bookings_in_flight_loses_nothing_and_books_each_order_once() {
    // More than one batch (256), so that bookings are still to come after the first stop.
    const ORDERS: usize = 400;
    let (world, ids) = world_with_orders(ORDERS).await;
    // Slower than the stop's grace, quicker than the carrier client's timeout (10 s).
    let carrier = PartnerServer::start(Behaviour {
        latency: Duration::from_secs(5),
        ..Behaviour::default()
    })
    .await;
    let mail = PartnerServer::start(Behaviour::default()).await;
    let serve = || {
        orderflow!(&world)
            .envs(&[
                ("ORDERFLOW_CARRIER", "http"),
                ("ORDERFLOW_CARRIER_URL", &carrier.url),
                ("ORDERFLOW_NOTIFY_CHANNEL", "webhook"),
                ("ORDERFLOW_NOTIFY_WEBHOOK_URL", &mail.url),
                ("ORDERFLOW_DATABASE_MAX_CONNECTIONS", "8"),
                ("ORDERFLOW_SHUTDOWN_GRACE_SECS", "1"),
                // What a killed process held comes back after this.
                ("ORDERFLOW_ACK_WAIT_SECS", "5"),
            ])
            .serve(&[])
            .0
    };

    // SIGTERM while bookings are in flight: serve finishes the batch it started (or gives
    // what it did not start back) and stops.
    let served = serve();
    wait_until("bookings in flight", || async { carrier.in_flight() >= 5 }).await;
    served.terminate(Duration::from_secs(60)).await;

    // kill -9 while bookings are in flight again: nothing is settled, all comes back.
    let served = serve();
    wait_until("bookings in flight again", || async {
        carrier.in_flight() >= 5
    })
    .await;
    served.kill();

    let served = serve();
    wait_until("every order shipped", || async {
        shipped(&world, &ids).await == ORDERS
    })
    .await;
    // A booking asked again carries the same key, which the carrier books once; each order
    // has one key and one shipment.
    assert_eq!(carrier.keys().len(), ORDERS, "one booking key per order");
    let started: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'ShipmentStarted'")
            .fetch_one(world.pool())
            .await
            .unwrap();
    assert_eq!(started, ORDERS as i64, "each order shipped once");
    assert!(world.bus().dead_letters().await.unwrap().is_empty());
    served.terminate(Duration::from_secs(60)).await;
    world.cleanup().await;
}
