//! Guarantee 1, no lost event: every committed event reaches the stream exactly once, even
//! when the relay is killed mid-load, and the store can re-publish what JetStream lost.

use std::time::Duration;

use orderflow_bus::relay::{self, run_relay, RelayOptions};
use tokio_util::sync::CancellationToken;

use super::checks::assert_stream_matches_log;
use orderflow_testkit::world::write_load;
use orderflow_testkit::{orderflow, World};

fn quick_relay() -> RelayOptions {
    RelayOptions {
        batch_size: 200,
        fallback_tick: Duration::from_millis(200),
        standby_poll: Duration::from_millis(100),
        retry_delay: Duration::from_millis(200),
        gather: Duration::from_millis(3),
        ..RelayOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_writers_5000_events_reach_the_stream_exactly_once_in_log_order() {
    let world = World::builder().max_connections(12).build().await;
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(run_relay(
        world.db.pool.clone(),
        world.bus().bus.clone(),
        quick_relay(),
        shutdown.clone(),
    ));
    write_load(&world.store, 64, 1250).await;
    assert_eq!(world.stored_events().await, 5000);
    world.wait_for_stream(5000, Duration::from_secs(30)).await;
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    assert_stream_matches_log(&world).await;
    world.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_sigkilled_during_the_64_writer_load_is_replaced_and_every_event_is_there_once() {
    let world = World::builder().max_connections(12).build().await;
    // The real binary, as deployed: relay A publishes, relay B stands by.
    let a = orderflow!(&world).start(&["relay"]);
    let store = world.store.clone();
    let writers = tokio::spawn(async move { write_load(&store, 64, 1250).await });
    world.wait_for_stream(100, Duration::from_secs(30)).await;
    let mut b = orderflow!(&world).start(&["relay"]);
    world.wait_for_stream(1000, Duration::from_secs(30)).await;
    // SIGKILL mid-load: no shutdown code runs; its lock session dies with it.
    assert!(
        world.stored_events().await < 5000,
        "the load was over before the kill"
    );
    a.kill();
    let mut restarted = orderflow!(&world).start(&["relay"]);
    writers.await.unwrap();
    assert_eq!(world.stored_events().await, 5000);
    world.wait_for_stream(5000, Duration::from_secs(30)).await;
    b.assert_running();
    restarted.assert_running();
    drop((b, restarted));
    assert_stream_matches_log(&world).await;
    world.cleanup().await;
}

#[tokio::test]
async fn events_jetstream_lost_are_published_again_from_the_store() {
    let world = World::builder().max_connections(12).build().await;
    for _ in 0..20 {
        world.place(&[("SKU-1", 1)]).await;
    }
    assert_eq!(world.relay().await, 20);
    // JetStream loses acknowledged messages (here: the whole stream, as after a lost disk).
    let js = world.bus().bus.jetstream();
    js.delete_stream(world.bus().bus.stream_name())
        .await
        .unwrap();
    world.bus().bus.ensure_streams().await.unwrap();
    let summary = relay::publish_range(&world.db.pool, &world.bus().bus, 0, None, 7)
        .await
        .unwrap();
    assert_eq!(summary.published, 20);
    assert_eq!(summary.last_position, 20);
    assert_eq!(world.relay().await, 0, "the checkpoint stays where it was");
    assert_stream_matches_log(&world).await;
    world.cleanup().await;
}

#[tokio::test]
async fn the_relay_wakes_on_commit_instead_of_waiting_for_its_tick() {
    let world = World::builder().max_connections(12).build().await;
    // Neither its tick nor its stream check would publish the event within the test.
    let tick = Duration::from_secs(600);
    let shutdown = CancellationToken::new();
    let relay = tokio::spawn(run_relay(
        world.db.pool.clone(),
        world.bus().bus.clone(),
        RelayOptions {
            fallback_tick: tick,
            check_every: tick,
            ..RelayOptions::default()
        },
        shutdown.clone(),
    ));
    // An event committed before the relay took the lock goes out with its first round: once
    // it is on the stream, the relay holds the lock, listens for commits, and waits.
    world.place(&[("SKU-1", 1)]).await;
    world.wait_for_stream(1, Duration::from_secs(60)).await;
    // The next one goes out because its commit wakes the relay.
    world.place(&[("SKU-1", 1)]).await;
    let woken_within = tick / 10;
    let started = std::time::Instant::now();
    loop {
        let mut stream = world.bus().bus.stream().await.unwrap();
        if stream.info().await.unwrap().state.messages >= 2 {
            break;
        }
        assert!(
            started.elapsed() < woken_within,
            "the commit did not wake the relay: the event is not on the stream {woken_within:?} \
             after it (the relay's tick is {tick:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("published {:?} after the commit", started.elapsed());
    shutdown.cancel();
    relay.await.unwrap().unwrap();
    world.cleanup().await;
}
