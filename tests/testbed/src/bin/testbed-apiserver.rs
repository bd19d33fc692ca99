//! Runs the in-memory Kubernetes API server for trying things by hand:
//! `testbed-apiserver --port 6443 --kubeconfig-out /tmp/kubeconfig`, then
//! `KUBECONFIG=/tmp/kubeconfig kubectl get ns`.
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use testbed::apiserver::{ApiServer, Options};

#[derive(Parser)]
#[command(about = "An in-memory Kubernetes API server for tests")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Where to write a kubeconfig for the server.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
    /// Bearer token (random when absent).
    #[arg(long)]
    token: Option<String>,
    /// Watch history window in events.
    #[arg(long, default_value_t = 10_000)]
    history_window: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let options = Options {
        addr: SocketAddr::from(([127, 0, 0, 1], args.port)),
        history_window: args.history_window,
        token: args.token,
        ..Options::default()
    };
    let server = ApiServer::start_with(options).await?;
    if let Some(out) = &args.kubeconfig_out {
        // HTTPS, with the CA, the token and a client certificate
        std::fs::copy(server.kubeconfig_path(), out)?;
    }
    println!("listening on {}", server.url());
    println!("kubeconfig: {}", args.kubeconfig_out.as_deref().unwrap_or(&server.kubeconfig_path()).display());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
