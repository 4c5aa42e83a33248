//! `seta events`: policy-verdict and drop events.
use crate::*;

pub async fn run(since: u64, cli: &Cli, json: bool) -> Result<i32> {
    let evs: Vec<serde_json::Value> = client(cli.node.as_deref())?.events(since).await?;
    if json {
        return print_json(&evs);
    }
    for e in evs {
        println!(
            "#{} {} {} {} endpoint {} identity {}->{}: {} -> {} {}{}",
            e["seq"],
            e["type"].as_str().unwrap_or(""),
            e["direction"].as_str().unwrap_or(""),
            e["verdict"].as_str().unwrap_or(""),
            e["endpoint"],
            e["src-identity"],
            e["dst-identity"],
            e["src"].as_str().unwrap_or(""),
            e["dst"].as_str().unwrap_or(""),
            e["protocol"].as_str().unwrap_or(""),
            e["drop-reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    }
    Ok(0)
}
