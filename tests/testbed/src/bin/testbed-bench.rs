//! Benchmark of the in-memory API server: ConfigMap creates per second over HTTP with kube-rs
//! (concurrent clients) while watchers stream the events, and watch events per second delivered.
//! `cargo run --release -p testbed --bin testbed-bench -- --creates 20000 --concurrency 64 --watchers 4`
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use testbed::ApiServer;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 20_000)]
    creates: usize,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    #[arg(long, default_value_t = 4)]
    watchers: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server =
        ApiServer::start_with(testbed::ApiServerOptions { history_window: args.creates + 1000, ..Default::default() })
            .await?;
    let client = server.client();
    let api: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let received = Arc::new(AtomicU64::new(0));
    let start_rv = server.resource_version().to_string();
    let mut watchers = Vec::new();
    for _ in 0..args.watchers {
        let api = api.clone();
        let received = received.clone();
        let rv = start_rv.clone();
        let total = args.creates as u64;
        watchers.push(tokio::spawn(async move {
            let mut seen = 0u64;
            let mut s = api.watch(&WatchParams::default().timeout(290), &rv).await.unwrap().boxed();
            while let Some(ev) = s.next().await {
                if let Ok(WatchEvent::Added(_)) = ev {
                    seen += 1;
                    received.fetch_add(1, Ordering::Relaxed);
                    if seen == total {
                        break;
                    }
                }
            }
        }));
    }
    let next = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut writers = Vec::new();
    for _ in 0..args.concurrency {
        let api = api.clone();
        let next = next.clone();
        let n = args.creates as u64;
        writers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let cm: ConfigMap = serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("cm-{i}"), "labels": {"bench": "true"}},
                    "data": {"key": "value"}
                }))
                .unwrap();
                api.create(&PostParams::default(), &cm).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await?;
    }
    let create_secs = t0.elapsed().as_secs_f64();
    for w in watchers {
        w.await?;
    }
    let watch_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let list = api.list(&Default::default()).await?;
    let list_ms = t1.elapsed().as_millis();
    println!(
        "creates: {} in {:.2}s = {:.0} creates/s ({} concurrent clients)",
        args.creates,
        create_secs,
        args.creates as f64 / create_secs,
        args.concurrency
    );
    println!(
        "watch events: {} to {} watchers in {:.2}s = {:.0} events/s",
        received.load(Ordering::Relaxed),
        args.watchers,
        watch_secs,
        received.load(Ordering::Relaxed) as f64 / watch_secs
    );
    println!("list of {} ConfigMaps: {} ms", list.items.len(), list_ms);
    Ok(())
}
