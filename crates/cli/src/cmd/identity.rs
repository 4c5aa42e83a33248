//! `seta identity`: security identities.
use crate::*;

#[derive(Subcommand)]
pub enum IdentityCmd {
    List,
    Get { id: u32 },
}

pub async fn run(cmd: &IdentityCmd, cli: &Cli, json: bool) -> Result<i32> {
    match cmd {
        IdentityCmd::List => {
            let ids: Vec<seta_core::api::IdentityEntry> = client(cli.node.as_deref())?.identities().await?;
            if json {
                return print_json(&ids);
            }
            let mut rows = vec![];
            for i in &ids {
                let mut first = true;
                for l in i.labels.iter().chain(i.labels.is_empty().then_some(&String::new())) {
                    rows.push(vec![
                        if first { i.id.to_string() } else { String::new() },
                        l.clone(),
                        if first {
                            i.refcount.map(|r| r.to_string()).unwrap_or_default()
                        } else {
                            String::new()
                        },
                    ]);
                    first = false;
                }
            }
            table(&["ID", "LABELS", "REFCOUNT"], rows);
        }
        IdentityCmd::Get { id } => {
            let i: seta_core::api::IdentityEntry = client(cli.node.as_deref())?.identity(*id).await?;
            if json {
                return print_json(&i);
            }
            kv(&[
                ("ID", i.id.to_string()),
                ("Labels", i.labels.join(" ")),
                ("Refcount", i.refcount.map(|r| r.to_string()).unwrap_or_else(|| "-".into())),
            ]);
        }
    }
    Ok(0)
}
