//! Times loading bpf_lxc for one endpoint (used to tune the loader).
use std::time::Instant;
fn main() {
    let dp = seta_datapath::Datapath::new("/sys/fs/bpf/seta/loadtime-n0/v1").unwrap();
    let _h = dp.load_host_object().unwrap();
    for i in 0..5 {
        let t = Instant::now();
        let _e = dp
            .load_lxc_object(&seta_datapath::EndpointProgConfig {
                ep_id: 1,
                ifname: "x".into(),
                ifindex: 1,
                ipv4: "10.0.0.2".parse().unwrap(),
                sec_id: 256,
                node_mac: [2, 0, 0, 0, 0, 1],
            })
            .unwrap();
        println!("load {i}: {:?}", t.elapsed());
    }
    for _ in 0..3 {
        let t = Instant::now();
        let _l = aya::EbpfLoader::new();
        println!("EbpfLoader::new(): {:?}", t.elapsed());
    }
    dp.remove_all().unwrap();
}
#[allow(dead_code)]
fn ctor() {}
