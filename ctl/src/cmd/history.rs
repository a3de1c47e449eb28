//! `discoctl history APP [--limit N]`: the app's audit log, oldest first: sequence,
//! when, who, what, from → to, why, and the revision it was committed at (the audit
//! key's mod revision, which is the change's own revision: both are written in one
//! transaction).

use clap::Args;
use disco::model::HistoryRecord;
use disco::Key;
use serde_json::json;

use crate::context::{Ctx, Output};
use crate::exit::{self, Result};

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The app.
    #[arg(value_parser = super::app_name)]
    app: String,
    /// Only the newest N records.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    limit: Option<u32>,
}

pub async fn run(ctx: &Ctx, args: HistoryArgs) -> Result {
    let ks = &ctx.keyspace;
    let (_, kvs) = ctx.store.get_prefix(&ks.history(&args.app), None).await?;
    if kvs.is_empty() {
        let (_, app_keys) = ctx.store.get_prefix(&ks.app(&args.app), None).await?;
        if app_keys.is_empty() {
            return Err(exit::usage(format!(
                "unknown app {:?}: nothing is stored under {} or {}",
                args.app,
                ks.app(&args.app),
                ks.history(&args.app)
            )));
        }
    }
    let skip = match args.limit {
        Some(n) => kvs.len().saturating_sub(n as usize),
        None => 0,
    };
    let mut records: Vec<(i64, HistoryRecord)> = Vec::new();
    for kv in kvs.into_iter().skip(skip) {
        if !matches!(ks.parse(&kv.key), Ok(Key::History { .. })) {
            eprintln!("warning: {}: not an audit key; skipped", kv.key);
            continue;
        }
        match serde_json::from_slice::<HistoryRecord>(&kv.value) {
            Ok(r) => records.push((kv.mod_revision, r)),
            Err(e) => eprintln!(
                "warning: {}: unreadable audit record ({e}); skipped",
                kv.key
            ),
        }
    }
    match ctx.output {
        Output::Json => {
            let records: Vec<_> = records
                .iter()
                .map(|(revision, r)| {
                    let mut v = json!(r);
                    v["revision"] = json!(revision);
                    v
                })
                .collect();
            let doc = json!({ "app": args.app, "records": records });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Output::Table => {
            let rows: Vec<Vec<String>> = records
                .iter()
                .map(|(revision, r)| {
                    let routes = crate::describe::routes_change(&r.from, &r.to);
                    let change = match &r.policy {
                        Some(p) => {
                            let policy =
                                crate::describe::policy_change(p.from.as_ref(), p.to.as_ref());
                            if routes.is_empty() {
                                policy
                            } else {
                                format!("{routes}; {policy}")
                            }
                        }
                        None => routes,
                    };
                    vec![
                        r.seq.to_string(),
                        r.at.clone(),
                        r.actor.clone(),
                        r.action.to_string(),
                        change,
                        revision.to_string(),
                        r.reason.clone().unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            crate::table::print(
                &[
                    "SEQ", "AT", "ACTOR", "ACTION", "CHANGE", "REVISION", "REASON",
                ],
                &rows,
            );
        }
    }
    Ok(())
}
