//! Section 6: identity allocation through etcd vs the embedded store.
use crate::*;

/// New identities allocated per second through a real etcd (loopback), by 1
/// and by 10 concurrent agents, next to the embedded store.
pub(crate) async fn bench_identity_alloc(args: &Args) -> Result<Vec<Row>> {
    use seta_kvstore::{etcd::EtcdStore, identity::ClusterIdentities, memory::MemoryStore};
    use std::sync::Arc;
    eprintln!("==> identity allocation throughput: etcd (1 and 10 agents) vs embedded store");
    let etcd = seta_kvstore::testing::EtcdServer::start("bench").context("etcd-server is needed (apt install etcd-server)")?;
    let ep = vec![etcd.endpoint.clone()];
    const PER_ROUND: usize = 200;
    let mut round = 0usize;
    let (mut one, mut ten, mut mem) = (vec![], vec![], vec![]);
    for _ in 0..args.rounds {
        for agents in [1usize, 10] {
            round += 1;
            let t = Instant::now();
            let mut tasks = Vec::new();
            for a in 0..agents {
                let ep = ep.clone();
                let r = round;
                tasks.push(tokio::spawn(async move {
                    let store = Arc::new(EtcdStore::connect(&ep).await?);
                    let ids = ClusterIdentities::new(store, "/bench", &format!("n{a}"), 0);
                    for i in (a..PER_ROUND).step_by(agents) {
                        ids.allocate(&seta_core::labels::parse_list(&format!("app=r{r}x{i}"), "k8s").map_err(anyhow::Error::msg)?)
                            .await?;
                    }
                    anyhow::Ok(())
                }));
            }
            for t in tasks {
                t.await??;
            }
            let ops = PER_ROUND as f64 / t.elapsed().as_secs_f64();
            if agents == 1 {
                one.push(ops)
            } else {
                ten.push(ops)
            }
        }
        let store = Arc::new(MemoryStore::new());
        let ids = ClusterIdentities::new(store, "/bench", "n0", 0);
        let t = Instant::now();
        for i in 0..PER_ROUND {
            ids.allocate(&seta_core::labels::parse_list(&format!("app=m{i}"), "k8s").map_err(anyhow::Error::msg)?)
                .await?;
        }
        mem.push(PER_ROUND as f64 / t.elapsed().as_secs_f64());
    }
    let m = summarize(&mem);
    Ok(vec![
        Row {
            name: "identity allocation, etcd, 1 agent".into(),
            unit: "ops/s",
            seta: summarize(&one),
            base_name: "embedded store",
            base: m,
            higher_is_better: true,
            goal: "".into(),
        },
        Row {
            name: "identity allocation, etcd, 10 concurrent agents".into(),
            unit: "ops/s",
            seta: summarize(&ten),
            base_name: "embedded store",
            base: m,
            higher_is_better: true,
            goal: "".into(),
        },
    ])
}
