//! `seta kvstore`: the cluster state in the agent's kvstore.
use crate::*;

#[derive(Subcommand)]
pub enum KvCmd {
    /// Keys under PREFIX, e.g. /seta/identities/v1/
    List { prefix: String },
    /// One key
    Get { key: String },
}

pub async fn run(k: &KvCmd, cli: &Cli, json: bool) -> Result<i32> {
    let c = client(cli.node.as_deref())?;
    let kvs = match k {
        KvCmd::List { prefix } => c.kvstore_list(prefix).await?,
        KvCmd::Get { key } => c.kvstore_get(key).await?,
    };
    if json {
        return print_json(&kvs);
    }
    if kvs.is_empty() {
        eprintln!("(no keys)");
    }
    for kv in kvs {
        println!("{} => {}", kv["key"].as_str().unwrap_or(""), kv["value"].as_str().unwrap_or(""));
    }
    Ok(0)
}
