//! `orderflow` on a three-node JetStream cluster: it takes the nodes' URLs as one
//! comma-separated `ORDERFLOW_NATS_URL` and creates both streams with the replicas of
//! `ORDERFLOW_STREAM_REPLICAS`, one on each node.

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
