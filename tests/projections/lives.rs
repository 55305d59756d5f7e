//! Orders with varied lives (placed, confirmed, rejected, cancelled, shipped, delivered),
//! seeded through the real store over several days, for the projection tests.

use chrono::{DateTime, Duration, TimeZone, Utc};
use futures::{stream, StreamExt};
use orderflow_domain::values::Sku;
use orderflow_domain::OrderCommand;
use orderflow_store::{CommandError, CommandMetadata, OrderStore};
use orderflow_testkit::OrderFixture;
use uuid::Uuid;

/// How an order's life goes, chosen from its index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Life {
    Placed,
    Confirmed,
    Rejected,
    CancelledPlaced,
    CancelledConfirmed,
    Shipped,
    Delivered,
}

impl Life {
    pub(crate) fn of(i: usize) -> Self {
        match (i * 7 + 3) % 9 {
            0 => Life::Placed,
            1 | 2 => Life::Confirmed,
            3 => Life::Rejected,
            4 => Life::CancelledPlaced,
            5 => Life::CancelledConfirmed,
            6 | 7 => Life::Shipped,
            _ => Life::Delivered,
        }
    }
}

pub(crate) fn customer(i: usize) -> String {
    format!("c-{}", i % 13)
}

/// A valid `PlaceOrder` with 1 to 3 lines over 5 SKUs, in EUR or USD, placed at `placed_at`.
pub(crate) fn place_command(id: Uuid, i: usize, placed_at: DateTime<Utc>) -> OrderCommand {
    (0..=(i % 3))
        .fold(OrderFixture::new(), |order, l| {
            order.priced_line(
                &format!("SKU-{}", (i + l * 2) % 5),
                ((i + l) % 4 + 1) as i64,
                ((i * 37 + l * 101) % 5000 + 99) as i64,
            )
        })
        .id(id)
        .customer(&customer(i))
        .currency(if i % 4 == 0 { "USD" } else { "EUR" })
        .placed_at(placed_at)
        .command()
}

/// A fixed base time, so days and ordering are reproducible.
pub(crate) fn base_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 8, 0, 0).unwrap()
}

/// Places order number `i` and takes it through its [`Life`]. Returns its id.
pub(crate) async fn live_an_order(store: &OrderStore, i: usize, placed_at: DateTime<Utc>) -> Uuid {
    let id = Uuid::now_v7();
    let meta = CommandMetadata::from_request(&format!("req-{i}"));
    let run = |command: OrderCommand| {
        let meta = meta.clone();
        async move {
            // The PostgreSQL server is shared with every other test binary: ride out a
            // moment without free connections instead of failing the seeding.
            for attempt in 1.. {
                match store.execute_retrying(id, command.clone(), &meta, 5).await {
                    Ok(()) => return,
                    Err(
                        CommandError::Store(error)
                        | CommandError::Unavailable(error)
                        | CommandError::OutcomeUnknown(error),
                    ) if attempt < 20 => {
                        eprintln!("seeding order {i}: {error}; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    }
                    Err(error) => panic!("command refused: {error}"),
                }
            }
        }
    };
    run(place_command(id, i, placed_at)).await;
    let life = Life::of(i);
    let confirm = OrderCommand::ConfirmOrder {
        reservation_id: Uuid::from_u128(i as u128 + 1),
    };
    let cancel = OrderCommand::CancelOrder {
        reason: "changed my mind".into(),
        cancelled_by: "customer".into(),
    };
    match life {
        Life::Placed => {}
        Life::Rejected => {
            run(OrderCommand::RejectOrder {
                reason: "out of stock".into(),
                unavailable_skus: vec![Sku::parse("SKU-1").unwrap()],
            })
            .await
        }
        Life::CancelledPlaced => run(cancel).await,
        Life::Confirmed | Life::CancelledConfirmed | Life::Shipped | Life::Delivered => {
            run(confirm).await;
            if life == Life::CancelledConfirmed {
                run(cancel).await;
            }
            if matches!(life, Life::Shipped | Life::Delivered) {
                run(OrderCommand::StartShipment {
                    shipment_id: Uuid::from_u128(1_000_000 + i as u128),
                    carrier: "simulated".into(),
                    tracking_number: format!("TRK-{i}"),
                })
                .await;
            }
            if life == Life::Delivered {
                run(OrderCommand::MarkDelivered).await;
            }
        }
    }
    id
}

/// Places orders `range` concurrently (8 at a time), order `i` placed `i` minutes after the
/// base time (several per day, over several days). Returns their ids.
pub(crate) async fn live_orders(store: &OrderStore, range: std::ops::Range<usize>) -> Vec<Uuid> {
    stream::iter(range)
        .map(|i| live_an_order(store, i, base_time() + Duration::minutes(i as i64 * 7)))
        .buffer_unordered(8)
        .collect()
        .await
}
