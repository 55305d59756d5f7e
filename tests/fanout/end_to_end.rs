//! End to end: the relay, every worker and the analytics projection running together, as
//! `orderflow serve` runs them: 200 orders with stock for 150 end with 150 shipped (tracking
//! numbers), 50 rejected, one notification per notifiable event of the log, and analytics
//! totals equal to what the log says.

use std::sync::Arc;
use std::time::Duration;

use orderflow_bus::Handler;
use orderflow_domain::OrderStatus;
use orderflow_projections::{analytics, AnalyticsProjection, ProjectionHandler};

use orderflow_bus::relay::{run_relay, RelayOptions};
use orderflow_bus::runtime::run_consumer;
use orderflow_workers::inventory;
use orderflow_workers::registry::{build_worker, WorkerDeps, WORKER_NAMES};
use tokio_util::sync::CancellationToken;

use super::checks::wait_until_settled;
use orderflow_testkit::fixture::sku;
use orderflow_testkit::{fast_consumer, orderflow, World};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_orders_with_stock_for_150_end_as_the_log_says() {
    let world = World::builder().max_connections(12).build().await;
    inventory::set_stock(&world.db.pool, &sku("SKU-E"), 150)
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let mut roles = vec![tokio::spawn({
        let (pool, bus, stop) = (
            world.db.pool.clone(),
            world.bus().bus.clone(),
            shutdown.clone(),
        );
        async move {
            run_relay(pool, bus, RelayOptions::default(), stop)
                .await
                .map_err(|e| e.to_string())
        }
    })];
    let mut handlers: Vec<Arc<dyn Handler>> = WORKER_NAMES
        .iter()
        .map(|name| build_worker(name, WorkerDeps::new(world.db.pool.clone())).unwrap())
        .collect();
    handlers.push(Arc::new(ProjectionHandler::new(
        world.db.pool.clone(),
        Arc::new(AnalyticsProjection),
    )));
    let consumers: Vec<String> = handlers.iter().map(|h| h.name().to_string()).collect();
    let consumers: Vec<&str> = consumers.iter().map(String::as_str).collect();
    for handler in handlers {
        let (bus, stop) = (world.bus().bus.clone(), shutdown.clone());
        roles.push(tokio::spawn(async move {
            run_consumer(handler, bus, fast_consumer(), stop)
                .await
                .map_err(|e| e.to_string())
        }));
    }

    let ids = world.place_many("SKU-E", 200).await;
    wait_until_settled(&world, &ids, 150, 50, &consumers, Duration::from_secs(50)).await;
    shutdown.cancel();
    for role in roles {
        role.await.unwrap().unwrap();
    }

    let stock = inventory::get_stock(&world.db.pool, &sku("SKU-E"))
        .await
        .unwrap()
        .unwrap();
    // Every unit went to a confirmed order, and every confirmed order shipped: the reserved
    // units were deducted for good when the shipments started.
    assert_eq!((stock.available, stock.reserved), (0, 0));
    let shipped: i64 =
        sqlx::query_scalar("SELECT count(*) FROM inventory_reservations WHERE status = 'shipped'")
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(shipped, 150);
    let mut tracking = std::collections::HashSet::new();
    for id in &ids {
        let order = world.store.load(*id).await.unwrap().unwrap().state;
        if let Some(shipment) = order.shipment {
            assert_eq!(shipment.carrier, "simulated");
            assert!(
                tracking.insert(shipment.tracking_number),
                "tracking numbers are unique"
            );
        }
    }
    assert_eq!(tracking.len(), 150);

    // One notification per notifiable event, each sent once.
    let notifiable: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = ANY($1)")
            .bind(
                orderflow_workers::notifications::NOTIFIABLE
                    .map(String::from)
                    .to_vec(),
            )
            .fetch_one(&world.db.pool)
            .await
            .unwrap();
    assert_eq!(notifiable, 200 + 150 + 50 + 150);
    let (notes, sent, once, matched): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*),
                count(*) FILTER (WHERE status = 'sent'),
                count(*) FILTER (WHERE attempts = 1),
                count(*) FILTER (WHERE EXISTS (SELECT 1 FROM events e
                                 WHERE e.event_id = n.event_id AND e.event_type = n.event_type))
           FROM notifications n",
    )
    .fetch_one(&world.db.pool)
    .await
    .unwrap();
    assert_eq!(
        (notes, sent, once, matched),
        (notifiable, notifiable, notifiable, notifiable)
    );

    // Analytics agrees with the log.
    let summary = analytics::summary(&world.db.pool, None, None)
        .await
        .unwrap();
    let head = orderflow_store::log::head_position(&world.db.pool)
        .await
        .unwrap();
    assert_eq!(summary.position, head);
    let count = |status| {
        summary
            .orders_by_status
            .iter()
            .find(|c| c.status == status)
            .map_or(0, |c| c.orders)
    };
    assert_eq!(
        (
            count(OrderStatus::Shipped),
            count(OrderStatus::Rejected),
            count(OrderStatus::Placed)
        ),
        (150, 50, 0),
        "{summary:?}"
    );
    let eur = summary
        .revenue_totals
        .iter()
        .find(|t| t.currency == "EUR")
        .unwrap();
    assert_eq!((eur.orders, eur.revenue), (150, 150 * 1000));
    let sold = summary.skus.iter().find(|s| s.sku == "SKU-E").unwrap();
    assert_eq!((sold.units, sold.revenue), (150, 150 * 1000));
    world.cleanup().await;
}

/// A worker process records what it does and serves it at `--metrics-addr`.
#[tokio::test]
async fn a_worker_role_serves_its_metrics() {
    let world = World::builder().max_connections(12).build().await;
    world.place(&[("SKU-M", 1)]).await;
    world.relay().await;
    let port = orderflow_testkit::free_port();
    let address = format!("127.0.0.1:{port}");
    let _worker = orderflow!(&world)
        .envs(&[("ORDERFLOW_METRICS_ADDR", address.as_str())])
        .start(&["worker", "inventory"]);
    let http = reqwest::Client::new();
    let wanted = "orderflow_consumer_messages_total{consumer=\"inventory\",outcome=\"handled\"} 1";
    let started = std::time::Instant::now();
    loop {
        let text = match http.get(format!("http://{address}/metrics")).send().await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if text.contains(wanted) {
            assert!(
                text.contains("# HELP orderflow_consumer_messages_total "),
                "{text}"
            );
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "the worker's /metrics never showed {wanted}:\n{text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    world.cleanup().await;
}
