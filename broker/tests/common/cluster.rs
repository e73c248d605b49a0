//! A cluster of combined `sluice` nodes on loopback (ids 1..=N, all voters), for the quorum tests.

use std::time::{Duration, Instant};

use super::{free_port, Broker};

/// Quorum and session timings that keep the tests short (Kafka's names).
pub const FAST_TIMINGS: &[&str] = &[
    "--set",
    "controller.quorum.election.timeout.ms=500",
    "--set",
    "broker.heartbeat.interval.ms=300",
    "--set",
    "broker.session.timeout.ms=3000",
];

/// N combined nodes; `nodes[i]` has node id `i + 1`.
pub struct Cluster {
    pub nodes: Vec<Broker>,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Starts N nodes at once (a quorum needs a majority before any is ready) and waits for all.
    pub fn start(n: usize, extra_args: &[&str]) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..n).map(|_| (free_port(), free_port())).collect();
        let voters: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1)).collect();
        let voters = voters.join(",");
        let mut nodes: Vec<Broker> = ports
            .iter()
            .enumerate()
            .map(|(i, (k, c))| {
                let id = (i + 1).to_string();
                let mut args: Vec<&str> = vec!["--node-id", &id, "--controller-quorum", &voters];
                args.extend_from_slice(FAST_TIMINGS);
                args.extend_from_slice(extra_args);
                Broker::unstarted(
                    tmp.path().join(format!("node-{id}")),
                    *k,
                    format!("PLAINTEXT://127.0.0.1:{k},CONTROLLER://127.0.0.1:{c}"),
                    &args,
                )
            })
            .collect();
        let ready: Vec<_> = nodes.iter_mut().map(Broker::launch).collect();
        for (node, rx) in nodes.iter().zip(&ready) {
            node.wait_ready(rx);
        }
        Self { nodes, _tmp: tmp }
    }

    pub fn node(&mut self, id: i32) -> &mut Broker {
        &mut self.nodes[(id - 1) as usize]
    }

    /// Every node's client listener.
    pub fn bootstrap(&self) -> String {
        self.nodes.iter().map(Broker::bootstrap).collect::<Vec<_>>().join(",")
    }

    /// The bootstrap of the running nodes only.
    pub fn live_bootstrap(&mut self) -> String {
        self.nodes.iter_mut().filter_map(|n| n.is_running().then(|| n.bootstrap())).collect::<Vec<_>>().join(",")
    }

    /// The active controller as node `via` reports it (DescribeQuorum), waiting up to `timeout`
    /// for one to be elected.
    pub fn active_controller(&self, via: i32, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        let addr = self.nodes[(via - 1) as usize].bootstrap();
        loop {
            if let Ok(text) = sluice::tools::describe_quorum(&addr) {
                let leader = text
                    .lines()
                    .find_map(|l| l.strip_prefix("LeaderId:"))
                    .and_then(|v| v.trim().parse::<i32>().ok())
                    .unwrap_or(-1);
                if leader > 0 {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "no active controller seen through node {via} in {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}
