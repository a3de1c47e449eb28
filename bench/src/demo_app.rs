//! `disco-demo-app`: the demo application. Answers every path with its version (e.g.
//! `v2`) and `/healthz` with `ok`, until SIGTERM/SIGINT. Used by docker-compose.yml;
//! the native demo runs the same server in-process.
//!
//! Usage: disco-demo-app --listen 0.0.0.0:8080 --version v1

fn main() {
    let mut listen = "0.0.0.0:8080".to_string();
    let mut version = "v1".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--listen", Some(v)) => listen = v,
            ("--version", Some(v)) => version = v,
            _ => {
                eprintln!("usage: disco-demo-app --listen HOST:PORT --version NAME");
                std::process::exit(2);
            }
        }
    }
    if let Err(e) = disco::validate::name("version", &version) {
        eprintln!("disco-demo-app: {e}");
        std::process::exit(2);
    }
    let backend = match disco_harness::Backend::start_on(&listen, &version) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("disco-demo-app: listening on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("disco-demo-app {version} listening on {}", backend.addr());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    drop(backend);
}
