//! Given/when/then tests of every legal and illegal transition of the Order aggregate.

use super::*;
use crate::commands::PlaceOrder;
use crate::values::{Quantity, Sku};
use cqrs_es::test::TestFramework;

type OrderTest = TestFramework<Order>;

fn order_id() -> Uuid {
    Uuid::from_u128(42)
}

fn line(sku: &str, quantity: i64, unit_price: i64) -> OrderLine {
    OrderLine {
        sku: Sku::parse(sku).unwrap(),
        quantity: Quantity::parse(quantity).unwrap(),
        unit_price: Money::parse(unit_price).unwrap(),
    }
}

fn place() -> PlaceOrder {
    PlaceOrder::new(
        order_id(),
        "c-42",
        Email::parse("ada@example.com").unwrap(),
        Currency::parse("EUR").unwrap(),
        vec![line("SKU-1", 2, 1299), line("SKU-2", 1, 500)],
        ShippingAddress::parse("Ada L", "1 Main St", None, "Berlin", "10115", "DE").unwrap(),
        DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
    )
    .unwrap()
}

fn placed() -> OrderEvent {
    place().into_event()
}

fn confirmed() -> OrderEvent {
    OrderEvent::OrderConfirmed {
        reservation_id: Uuid::from_u128(7),
    }
}

fn rejected() -> OrderEvent {
    OrderEvent::OrderRejected {
        reason: "out of stock".into(),
        unavailable_skus: vec![Sku::parse("SKU-1").unwrap()],
    }
}

fn cancelled() -> OrderEvent {
    OrderEvent::OrderCancelled {
        reason: "changed my mind".into(),
        cancelled_by: "customer".into(),
    }
}

fn shipped() -> OrderEvent {
    OrderEvent::ShipmentStarted {
        shipment_id: Uuid::from_u128(9),
        carrier: "simulated".into(),
        tracking_number: "SIM-1".into(),
    }
}

fn confirm(reservation: u128) -> OrderCommand {
    OrderCommand::ConfirmOrder {
        reservation_id: Uuid::from_u128(reservation),
    }
}

fn reject() -> OrderCommand {
    OrderCommand::RejectOrder {
        reason: "out of stock".into(),
        unavailable_skus: vec![Sku::parse("SKU-1").unwrap()],
    }
}

fn cancel() -> OrderCommand {
    OrderCommand::CancelOrder {
        reason: "changed my mind".into(),
        cancelled_by: "customer".into(),
    }
}

fn ship(shipment: u128) -> OrderCommand {
    OrderCommand::StartShipment {
        shipment_id: Uuid::from_u128(shipment),
        carrier: "simulated".into(),
        tracking_number: "SIM-1".into(),
    }
}

fn wrong(command: &'static str, status: OrderStatus) -> OrderError {
    OrderError::WrongState {
        order_id: order_id(),
        command,
        status,
    }
}

// ---- placing ----

#[test]
fn placing_a_new_order_records_everything_consumers_need() {
    OrderTest::with(())
        .given_no_previous_events()
        .when(OrderCommand::PlaceOrder(place()))
        .then_expect_events(vec![placed()]);
    match placed() {
        OrderEvent::OrderPlaced { total, lines, .. } => {
            assert_eq!(total.minor_units(), 2 * 1299 + 500);
            assert_eq!(lines.len(), 2);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn placing_an_existing_order_is_refused() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(OrderCommand::PlaceOrder(place()))
        .then_expect_error(OrderError::AlreadyExists(order_id()));
}

#[test]
fn commands_on_an_order_never_placed_are_not_found() {
    for command in [
        confirm(7),
        reject(),
        cancel(),
        ship(9),
        OrderCommand::MarkDelivered,
    ] {
        OrderTest::with(())
            .given_no_previous_events()
            .when(command)
            .then_expect_error(OrderError::NotFound);
    }
}

#[test]
fn place_order_refuses_no_lines_and_too_many_lines_and_the_dearest_fits() {
    let build = |lines: Vec<OrderLine>| {
        PlaceOrder::new(
            order_id(),
            "c-1",
            Email::parse("a@b.co").unwrap(),
            Currency::parse("EUR").unwrap(),
            lines,
            ShippingAddress::parse("A", "B", None, "C", "1", "DE").unwrap(),
            DateTime::from_timestamp(0, 0).unwrap(),
        )
    };
    assert_eq!(build(vec![]).unwrap_err()[0].field, "lines");
    assert_eq!(
        build(vec![line("S", 1, 1); 101]).unwrap_err()[0].field,
        "lines"
    );
    assert!(build(vec![line("S", 1, 1); 100]).is_ok());
    // Unit prices stop at MAX_UNIT_PRICE, so that the dearest order's total still fits.
    let dearest = build(vec![line("S", 1000, crate::MAX_UNIT_PRICE); 100]).unwrap();
    assert_eq!(
        dearest.total().minor_units(),
        crate::MAX_UNIT_PRICE * 100_000
    );
}

// ---- confirming ----

#[test]
fn a_placed_order_is_confirmed() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(confirm(7))
        .then_expect_events(vec![confirmed()]);
}

#[test]
fn a_repeated_confirmation_is_a_no_op_in_every_later_state() {
    for history in [
        vec![placed(), confirmed()],
        vec![placed(), confirmed(), shipped()],
        vec![
            placed(),
            confirmed(),
            shipped(),
            OrderEvent::OrderDelivered {},
        ],
        vec![placed(), confirmed(), cancelled()],
    ] {
        OrderTest::with(())
            .given(history)
            .when(confirm(7))
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_confirmation_for_a_cancelled_order_changes_nothing() {
    OrderTest::with(())
        .given(vec![placed(), cancelled()])
        .when(confirm(8))
        .then_expect_events(vec![]);
}

#[test]
fn a_second_different_reservation_is_a_conflict() {
    OrderTest::with(())
        .given(vec![placed(), confirmed()])
        .when(confirm(8))
        .then_expect_error(OrderError::Conflicting {
            what: "reservation",
            status: OrderStatus::Confirmed,
        });
}

#[test]
fn a_rejected_order_cannot_be_confirmed() {
    OrderTest::with(())
        .given(vec![placed(), rejected()])
        .when(confirm(7))
        .then_expect_error(wrong("ConfirmOrder", OrderStatus::Rejected));
}

// ---- rejecting ----

#[test]
fn a_placed_order_is_rejected() {
    OrderTest::with(())
        .given(vec![placed()])
        .when(reject())
        .then_expect_events(vec![rejected()]);
}

#[test]
fn a_repeated_or_late_rejection_changes_nothing() {
    for history in [vec![placed(), rejected()], vec![placed(), cancelled()]] {
        OrderTest::with(())
            .given(history)
            .when(reject())
            .then_expect_events(vec![]);
    }
}

#[test]
fn a_confirmed_or_shipped_order_cannot_be_rejected() {
    OrderTest::with(())
        .given(vec![placed(), confirmed()])
        .when(reject())
        .then_expect_error(wrong("RejectOrder", OrderStatus::Confirmed));
    OrderTest::with(())
        .given(vec![placed(), confirmed(), shipped()])
        .when(reject())
        .then_expect_error(wrong("RejectOrder", OrderStatus::Shipped));
}

// ---- cancelling ----

#[test]
fn placed_and_confirmed_orders_can_be_cancelled() {
    for history in [vec![placed()], vec![placed(), confirmed()]] {
        OrderTest::with(())
            .given(history)
            .when(cancel())
            .then_expect_events(vec![cancelled()]);
    }
}

#[test]
fn shipped_delivered_rejected_and_cancelled_orders_cannot_be_cancelled() {
    let cases = [
        (vec![placed(), confirmed(), shipped()], OrderStatus::Shipped),
        (
            vec![
                placed(),
                confirmed(),
                shipped(),
                OrderEvent::OrderDelivered {},
            ],
            OrderStatus::Delivered,
        ),
        (vec![placed(), rejected()], OrderStatus::Rejected),
        (vec![placed(), cancelled()], OrderStatus::Cancelled),
    ];
    for (history, status) in cases {
        OrderTest::with(())
            .given(history)
            .when(cancel())
            .then_expect_error(wrong("CancelOrder", status));
    }
}

// ---- shipping ----

#[test]
fn a_confirmed_order_starts_shipping() {
    OrderTest::with(())
        .given(vec![placed(), confirmed()])
        .when(ship(9))
        .then_expect_events(vec![shipped()]);
}

#[test]
fn a_repeated_shipment_is_a_no_op_and_another_one_a_conflict() {
    OrderTest::with(())
        .given(vec![placed(), confirmed(), shipped()])
        .when(ship(9))
        .then_expect_events(vec![]);
    OrderTest::with(())
        .given(vec![placed(), confirmed(), shipped()])
        .when(ship(10))
        .then_expect_error(OrderError::Conflicting {
            what: "shipment",
            status: OrderStatus::Shipped,
        });
}

#[test]
fn only_confirmed_orders_ship() {
    let cases = [
        (vec![placed()], OrderStatus::Placed),
        (vec![placed(), rejected()], OrderStatus::Rejected),
        (
            vec![placed(), confirmed(), cancelled()],
            OrderStatus::Cancelled,
        ),
    ];
    for (history, status) in cases {
        OrderTest::with(())
            .given(history)
            .when(ship(9))
            .then_expect_error(wrong("StartShipment", status));
    }
}

// ---- delivering ----

#[test]
fn a_shipped_order_is_delivered_once() {
    OrderTest::with(())
        .given(vec![placed(), confirmed(), shipped()])
        .when(OrderCommand::MarkDelivered)
        .then_expect_events(vec![OrderEvent::OrderDelivered {}]);
    OrderTest::with(())
        .given(vec![
            placed(),
            confirmed(),
            shipped(),
            OrderEvent::OrderDelivered {},
        ])
        .when(OrderCommand::MarkDelivered)
        .then_expect_events(vec![]);
}

#[test]
fn only_shipped_orders_are_delivered() {
    let cases = [
        (vec![placed()], OrderStatus::Placed),
        (vec![placed(), confirmed()], OrderStatus::Confirmed),
        (vec![placed(), rejected()], OrderStatus::Rejected),
        (vec![placed(), cancelled()], OrderStatus::Cancelled),
    ];
    for (history, status) in cases {
        OrderTest::with(())
            .given(history)
            .when(OrderCommand::MarkDelivered)
            .then_expect_error(wrong("MarkDelivered", status));
    }
}

// ---- state ----

#[test]
fn folding_events_gives_the_state_a_reader_sees() {
    let order = Order::from_events(&[placed(), confirmed(), shipped()]);
    let state = order.state().expect("placed");
    assert_eq!(state.status, OrderStatus::Shipped);
    assert_eq!(state.reservation_id, Some(Uuid::from_u128(7)));
    assert_eq!(state.shipment.as_ref().unwrap().tracking_number, "SIM-1");
    assert_eq!(state.total.minor_units(), 3098);
    assert!(Order::default().state().is_none());
    assert_eq!(OrderStatus::parse("shipped"), Some(OrderStatus::Shipped));
    assert_eq!(OrderStatus::parse("lost"), None);
}

#[test]
fn a_cancel_without_a_reason_leaves_no_reason() {
    let without = OrderEvent::OrderCancelled {
        reason: String::new(),
        cancelled_by: "customer".into(),
    };
    let order = Order::from_events(&[placed(), without]);
    let state = order.state().expect("placed");
    assert_eq!(state.status, OrderStatus::Cancelled);
    assert_eq!(state.cancellation_reason, None);
    let order = Order::from_events(&[placed(), cancelled()]);
    assert_eq!(
        order.state().unwrap().cancellation_reason.as_deref(),
        Some("changed my mind")
    );
}

// ---- refusals, in words ----

#[test]
fn refusals_read_in_the_users_words_without_command_names() {
    let id = order_id();
    let cases = [
        (
            "CancelOrder",
            OrderStatus::Shipped,
            format!("order {id} has shipped and can no longer be cancelled"),
        ),
        (
            "CancelOrder",
            OrderStatus::Delivered,
            format!("order {id} has been delivered and can no longer be cancelled"),
        ),
        (
            "CancelOrder",
            OrderStatus::Rejected,
            format!("order {id} was rejected and can no longer be cancelled"),
        ),
        (
            "CancelOrder",
            OrderStatus::Cancelled,
            format!("order {id} is already cancelled"),
        ),
        (
            "StartShipment",
            OrderStatus::Placed,
            format!("order {id} is placed and cannot be shipped yet"),
        ),
        (
            "ConfirmOrder",
            OrderStatus::Rejected,
            format!("order {id} was rejected and can no longer be confirmed"),
        ),
    ];
    for (command, status, text) in cases {
        let error = wrong(command, status);
        assert_eq!(error.to_string(), text);
        assert!(!error.to_string().contains(command));
    }
}
