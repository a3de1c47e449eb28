//! `disco-demo-app`: the demo application. Answers every path with its version (e.g.
//! `v2`) and `/healthz` with `ok`, until SIGTERM/SIGINT. Used by docker-compose.yml;
//! the native demo runs the same server in-process.
//!
//! Usage: disco-demo-app --listen 0.0.0.0:8080 --version v1

use clap::Parser;

/// The demo application: answers every path with its version and /healthz with ok,
/// until SIGTERM or SIGINT.
#[derive(Parser, Debug)]
#[command(name = "disco-demo-app")]
struct Args {
    /// The address to listen on (HOST:PORT).
    #[arg(long, value_name = "HOST:PORT", default_value = "0.0.0.0:8080")]
    listen: String,
    /// The version it answers with: a name as disco's keys take it.
    #[arg(long, value_name = "NAME", default_value = "v1", value_parser = version_name)]
    version: String,
}

/// A version name disco accepts (`disco::validate::name`).
fn version_name(s: &str) -> Result<String, String> {
    disco::validate::name("version", s)
        .map(|()| s.to_string())
        .map_err(|e| e.to_string())
}

fn main() {
    let Args { listen, version } = Args::parse();
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

#[cfg(test)]
mod tests {
    use super::Args;
    use disco_bench::parse_flags;

    /// Without flags, and as docker/app.sh calls it.
    #[test]
    fn the_documented_invocations_parse() {
        let a: Args = parse_flags(&[]).unwrap();
        assert_eq!(
            (a.listen.as_str(), a.version.as_str()),
            ("0.0.0.0:8080", "v1")
        );
        let a: Args = parse_flags(&["--listen", "0.0.0.0:8080", "--version", "v2"]).unwrap();
        assert_eq!(a.version, "v2");
    }

    #[test]
    fn a_version_disco_refuses_is_refused() {
        assert!(parse_flags::<Args>(&["--version", ""]).is_err());
        assert!(parse_flags::<Args>(&["--version", "v/2"]).is_err());
    }
}
