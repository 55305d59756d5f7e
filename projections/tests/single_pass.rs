//! A full rebuild's single pass against the real PostgreSQL: with a bound so small that rows
//! are evicted and read back, and with the default bound, it yields exactly the rows of the
//! batch loop (the live path's way), for both views; its pages are reported as progress.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{Duration, TimeZone, Utc};
use orderflow_domain::OrderCommand;
use orderflow_projections::rebuild::{rebuild_with, RebuildOptions};
use orderflow_projections::{Phase, SinglePass};
use orderflow_store::CommandMetadata;
use orderflow_testkit::log::{no_progress, number_events};
use orderflow_testkit::{OrderFixture, World};
use uuid::Uuid;

/// Places `count` orders through the real store (sealed personal fields included), each
/// taken some steps further, the steps of different orders interleaved so an order's events
/// lie far apart in the log.
async fn seed(world: &World, count: usize) -> i64 {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let base = Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap();
    for (i, id) in ids.iter().enumerate() {
        let place = OrderFixture::new()
            .priced_line(&format!("SKU-{}", i % 5), (i % 3 + 1) as i64, 1000)
            .priced_line("SKU-X", 1, 250)
            .id(*id)
            .customer(&format!("c-{}", i % 7))
            .currency(if i % 4 == 0 { "USD" } else { "EUR" })
            .placed_at(base + Duration::minutes(i as i64 * 97))
            .command();
        run(world, *id, i, place).await;
    }
    for (i, id) in ids.iter().enumerate() {
        let next = match i % 5 {
            0 => continue,
            1 => OrderCommand::CancelOrder {
                reason: "changed my mind".into(),
                cancelled_by: "customer".into(),
            },
            _ => OrderCommand::ConfirmOrder {
                reservation_id: Uuid::from_u128(i as u128 + 1),
            },
        };
        run(world, *id, i, next).await;
    }
    for (i, id) in ids.iter().enumerate().filter(|(i, _)| i % 5 >= 3) {
        let next = if i % 5 == 3 {
            OrderCommand::CancelOrder {
                reason: "too late".into(),
                cancelled_by: "support".into(),
            }
        } else {
            OrderCommand::StartShipment {
                shipment_id: Uuid::from_u128(1_000_000 + i as u128),
                carrier: "simulated".into(),
                tracking_number: format!("TRK-{i}"),
            }
        };
        run(world, *id, i, next).await;
    }
    number_events(world.pool()).await
}

async fn run(world: &World, id: Uuid, i: usize, command: OrderCommand) {
    let meta = CommandMetadata::from_request(&format!("req-{i}"));
    world
        .store
        .execute_retrying(id, command, &meta, 5)
        .await
        .unwrap_or_else(|e| panic!("order {i}: {e}"));
}

#[tokio::test]
async fn the_single_pass_yields_the_rows_of_the_batch_loop_with_evictions_and_read_backs() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    let head = seed(&world, 60).await;
    assert_eq!(head, 60 + 48 + 24, "events");

    for projection in orderflow_projections::all() {
        // The batch loop builds the live tables; the single pass must find them equal, with a
        // bound of 4 open rows (rows evicted after every page, read back when continued) and
        // with the default bound (every row held to the end).
        let pages = AtomicU64::new(0);
        let report = rebuild_with(
            &pool,
            projection.as_ref(),
            RebuildOptions {
                verify_only: false,
                batch_size: 7,
            },
            SinglePass::off(),
            &no_progress,
        )
        .await
        .unwrap();
        assert!(report.swapped);
        for max_open_rows in [4, 1, SinglePass::DEFAULT_MAX_OPEN_ROWS] {
            let report = rebuild_with(
                &pool,
                projection.as_ref(),
                RebuildOptions {
                    verify_only: true,
                    batch_size: 7,
                },
                SinglePass { max_open_rows },
                &|p| {
                    if p.phase == Phase::Folding {
                        pages.fetch_add(1, Ordering::Relaxed);
                    }
                },
            )
            .await
            .unwrap();
            assert_eq!(report.position, head);
            assert_eq!(report.events as i64, head);
            assert_eq!(
                report.difference_count(),
                0,
                "{} with at most {max_open_rows} open rows: {:#?}",
                projection.name(),
                report.differences
            );
        }
        assert!(
            pages.load(Ordering::Relaxed) >= 3 * 18,
            "progress after every page of 7 events"
        );

        // And the other way round: the single pass swaps in, the batch loop verifies.
        rebuild_with(
            &pool,
            projection.as_ref(),
            RebuildOptions {
                verify_only: false,
                batch_size: 7,
            },
            SinglePass { max_open_rows: 3 },
            &no_progress,
        )
        .await
        .unwrap();
        let report = rebuild_with(
            &pool,
            projection.as_ref(),
            RebuildOptions {
                verify_only: true,
                batch_size: 50,
            },
            SinglePass::off(),
            &no_progress,
        )
        .await
        .unwrap();
        assert_eq!(
            report.difference_count(),
            0,
            "{}: {:#?}",
            projection.name(),
            report.differences
        );
    }
}
