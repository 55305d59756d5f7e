//! `orderflow` on a three-node JetStream cluster: it takes the nodes' URLs as one
//! comma-separated `ORDERFLOW_NATS_URL` and creates both streams with the replicas of
//! `ORDERFLOW_STREAM_REPLICAS`, one on each node.

use orderflow_bus::{Bus, BusOptions};
use orderflow_testkit::nats::NatsCluster;
use uuid::Uuid;

use crate::harness::System;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comma_separated_url_list_reaches_the_cluster_and_the_streams_get_three_replicas() {
    let system = System::start_cluster().await;
    assert!(system.nats.urls().contains(','), "{}", system.nats.urls());
    // `republish` connects, creates the streams, and has nothing to publish yet.
    let said = system.orderflow().run(&["republish"]);
    assert!(said.contains("republished"), "{said}");

    for stream in [system.bus.stream().await, system.bus.dlq_stream().await] {
        let info = stream
            .expect("the binary created the stream")
            .get_info()
            .await
            .expect("the stream's info");
        assert_eq!(info.config.num_replicas, 3, "{}", info.config.name);
        let cluster = info.cluster.expect("a clustered stream has cluster info");
        let leader = cluster.leader.expect("the stream has a leader");
        let mut nodes: Vec<String> = cluster.replicas.into_iter().map(|r| r.name).collect();
        nodes.push(leader);
        nodes.sort();
        assert_eq!(nodes, ["n1", "n2", "n3"], "{}", info.config.name);
    }
    system.world.cleanup().await;
}

/// A cluster that has lost the quorum of its meta group answers no JetStream request (they
/// time out). Creating the streams waits that out instead of failing the start: here two of
/// the three nodes are away for longer than a request's timeout, then come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_the_streams_waits_for_a_cluster_that_cannot_answer_yet() {
    let mut cluster = NatsCluster::start().await;
    cluster.kill(1);
    cluster.kill(2);
    let id = Uuid::new_v4().simple().to_string();
    let options = BusOptions {
        nats_url: cluster.url(0),
        stream: format!("Q_{id}"),
        subject_prefix: format!("q_{id}"),
        replicas: 3,
        ..BusOptions::default()
    };
    let creating = tokio::spawn(Bus::connect_and_ensure(options.clone()));
    // Proof that the cluster cannot answer, for longer than the creation's first request
    // waits: two JetStream requests of the test's own in a row fail (each times out), the
    // second made once the first failed, so after the creation's first request was made.
    let probe = Bus::connect(options.clone()).await.unwrap();
    for _ in 0..2 {
        let unanswered = probe.jetstream().query_account().await;
        assert!(
            unanswered.is_err(),
            "a cluster without two of its three nodes answered: {unanswered:?}"
        );
    }
    assert!(
        !creating.is_finished(),
        "the creation gave up on a cluster that cannot answer yet: {:?}",
        creating.await
    );

    cluster.restart(1).await;
    cluster.restart(2).await;
    let bus = creating
        .await
        .unwrap()
        .expect("the streams are created once the cluster answers");
    let info = bus.stream().await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    bus.jetstream()
        .delete_stream(bus.dlq_stream_name())
        .await
        .unwrap();
    bus.jetstream()
        .delete_stream(bus.stream_name())
        .await
        .unwrap();
}
