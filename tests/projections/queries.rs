//! The order-summary and analytics queries: cursor pages that are stable and complete,
//! filters, typed errors for bad input, and analytics totals equal to what the log says.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::{Duration, NaiveDate};
use futures::{stream, StreamExt};
use orderflow_domain::OrderStatus;
use orderflow_projections::analytics::{summary, SummaryError, REVENUE_STATUSES};
use orderflow_projections::order_summary::{list_orders, ListError, OrderFilter};
use orderflow_projections::{AnalyticsProjection, OrderSummaryProjection, ProjectionHandler};
use orderflow_testkit::log::*;
use orderflow_testkit::World;
use uuid::Uuid;

use crate::lives::*;

async fn walk(
    pool: &sqlx::PgPool,
    filter: OrderFilter,
) -> Vec<(chrono::DateTime<chrono::Utc>, Uuid)> {
    let mut seen = Vec::new();
    let mut filter = filter;
    loop {
        let page = list_orders(pool, &filter).await.unwrap();
        assert!(page.orders.len() <= filter.limit.unwrap_or(50) as usize);
        seen.extend(page.orders.iter().map(|o| (o.placed_at, o.id)));
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => return seen,
        }
    }
}

#[tokio::test]
async fn cursor_pages_are_stable_and_complete_and_filters_apply() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    // Placed times tie in threes, so the id breaks ties.
    let ids: Vec<Uuid> = stream::iter(0..120usize)
        .map(|i| {
            live_an_order(
                &world.store,
                i,
                base_time() + Duration::minutes((i / 3) as i64),
            )
        })
        .buffer_unordered(8)
        .collect()
        .await;
    number_events(&pool).await;
    let summary_handler = ProjectionHandler::new(pool.clone(), Arc::new(OrderSummaryProjection));
    drain(&pool, &summary_handler).await;

    // Walk with a small page while newer and older orders arrive: every order that existed
    // when the walk began comes exactly once, newest first.
    let mut filter = OrderFilter {
        limit: Some(7),
        ..OrderFilter::default()
    };
    let mut walked = Vec::new();
    let mut pages = 0;
    loop {
        let page = list_orders(&pool, &filter).await.unwrap();
        walked.extend(page.orders.iter().map(|o| (o.placed_at, o.id)));
        pages += 1;
        if pages == 3 {
            for i in 500..505 {
                live_an_order(&world.store, i, base_time() + Duration::days(30)).await;
            }
            number_events(&pool).await;
            drain(&pool, &summary_handler).await;
        }
        match page.next_cursor {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    let mut sorted = walked.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(walked, sorted, "newest first, ties broken by id");
    let walked_ids: HashSet<Uuid> = walked.iter().map(|(_, id)| *id).collect();
    assert_eq!(walked_ids.len(), walked.len(), "no order twice");
    assert_eq!(walked_ids, ids.iter().copied().collect::<HashSet<_>>());
    assert_eq!(pages, 120usize.div_ceil(7));

    // Filters: customer, status, placed_after; each page walk agrees with a direct count.
    let customer = customer(1);
    let mine = walk(
        &pool,
        OrderFilter {
            customer_id: Some(customer.clone()),
            limit: Some(4),
            ..OrderFilter::default()
        },
    )
    .await;
    let expected: i64 =
        sqlx::query_scalar("SELECT count(*) FROM order_summary WHERE customer_id = $1")
            .bind(&customer)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(mine.len() as i64, expected);
    assert!(expected > 0);
    for status in OrderStatus::ALL {
        let page = list_orders(
            &pool,
            &OrderFilter {
                status: Some(status),
                limit: Some(500),
                ..OrderFilter::default()
            },
        )
        .await
        .unwrap();
        assert!(page.orders.iter().all(|o| o.status == status));
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM order_summary WHERE status = $1")
            .bind(status.as_str())
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(page.orders.len() as i64, count, "{status}");
    }
    let after = base_time() + Duration::minutes(30);
    let recent = walk(
        &pool,
        OrderFilter {
            placed_after: Some(after),
            limit: Some(500),
            ..OrderFilter::default()
        },
    )
    .await;
    assert!(recent.iter().all(|(t, _)| *t > after));
    assert_eq!(recent.len(), (120 - 31 * 3) + 5);

    // Shipped orders carry their tracking number.
    let shipped = list_orders(
        &pool,
        &OrderFilter {
            status: Some(OrderStatus::Shipped),
            ..OrderFilter::default()
        },
    )
    .await
    .unwrap();
    assert!(shipped.orders.iter().all(|o| o.tracking_number.is_some()));
    assert!(!shipped.orders.is_empty());

    // Bad input is a typed error naming its field.
    for limit in [0, 501] {
        let bad = list_orders(
            &pool,
            &OrderFilter {
                limit: Some(limit),
                ..OrderFilter::default()
            },
        )
        .await;
        assert!(matches!(bad, Err(ListError::InvalidLimit(l)) if l == limit));
    }
    let bad = list_orders(
        &pool,
        &OrderFilter {
            cursor: Some("not-a-cursor".into()),
            ..OrderFilter::default()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(bad.field(), Some("cursor"));
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    revenue: BTreeMap<(NaiveDate, String), (i64, i64)>,
    status: BTreeMap<String, i64>,
    skus: BTreeMap<(String, String), (i64, i64)>,
}

/// What the log says, order by order (folded by the event store, not by the projection).
async fn expected_from_log(
    world: &World,
    ids: &[Uuid],
    from: NaiveDate,
    to: NaiveDate,
) -> Expected {
    let mut e = Expected::default();
    for id in ids {
        let order = world.store.load(*id).await.unwrap().unwrap().state;
        let day = order.placed_at.date_naive();
        if day < from || day > to {
            continue;
        }
        *e.status
            .entry(order.status.as_str().to_string())
            .or_default() += 1;
        if REVENUE_STATUSES.contains(&order.status) {
            let currency = order.currency.as_str().to_string();
            let r = e.revenue.entry((day, currency.clone())).or_default();
            r.0 += 1;
            r.1 += order.total.minor_units();
            for line in &order.lines {
                let s = e
                    .skus
                    .entry((line.sku.as_str().to_string(), currency.clone()))
                    .or_default();
                s.0 += i64::from(line.quantity.get());
                s.1 += line.line_total().unwrap().minor_units();
            }
        }
    }
    e
}

#[tokio::test]
async fn analytics_totals_equal_what_the_log_says() {
    let world = World::without_nats().await;
    let pool = world.pool().clone();
    // Orders over about five days, 40 minutes apart.
    let ids: Vec<Uuid> = stream::iter(0..180usize)
        .map(|i| {
            live_an_order(
                &world.store,
                i,
                base_time() + Duration::minutes(i as i64 * 40),
            )
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let head = number_events(&pool).await;
    let analytics = ProjectionHandler::new(pool.clone(), Arc::new(AnalyticsProjection));
    drain(&pool, &analytics).await;

    let first = base_time().date_naive();
    let last = (base_time() + Duration::minutes(179 * 40)).date_naive();
    for (from, to) in [
        (first, last),
        (first + Duration::days(1), first + Duration::days(2)),
    ] {
        let expected = expected_from_log(&world, &ids, from, to).await;
        let got = summary(&pool, Some(from), Some(to)).await.unwrap();
        assert_eq!(got.position, head);
        let revenue: BTreeMap<_, _> = got
            .revenue_per_day
            .iter()
            .map(|d| ((d.day, d.currency.clone()), (d.orders, d.revenue)))
            .collect();
        assert_eq!(revenue, expected.revenue, "{from}..{to}");
        let status: BTreeMap<_, _> = got
            .orders_by_status
            .iter()
            .filter(|s| s.orders > 0)
            .map(|s| (s.status.as_str().to_string(), s.orders))
            .collect();
        assert_eq!(status, expected.status);
        assert_eq!(got.orders_by_status.len(), 6, "every status listed");
        let skus: BTreeMap<_, _> = got
            .skus
            .iter()
            .map(|s| ((s.sku.clone(), s.currency.clone()), (s.units, s.revenue)))
            .collect();
        assert_eq!(skus, expected.skus);
        let totals: i64 = got.revenue_totals.iter().map(|t| t.revenue).sum();
        assert_eq!(totals, expected.revenue.values().map(|v| v.1).sum::<i64>());
        assert!(got.skus.windows(2).all(|w| w[0].revenue >= w[1].revenue));
    }
    let open = summary(&pool, None, None).await.unwrap();
    assert_eq!(
        open.orders_by_status.iter().map(|s| s.orders).sum::<i64>(),
        ids.len() as i64
    );
    assert!(matches!(
        summary(&pool, Some(last), Some(first)).await,
        Err(SummaryError::InvalidRange { .. })
    ));
}
