//! The `floe` binary: parse the command line, set up logging, run the service or the agent.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use floe::config::{AuthMode, CaArgs, CaCommand, Cli, Command, LogFormat};
use tracing_subscriber::EnvFilter;

/// mimalloc: markedly fewer cycles per allocation than glibc's malloc under a multi-threaded
/// request load (measured in BENCHMARKS.md), for every request floe serves.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `floe serve` serves its connections on worker threads of its own (`--workers`); the
    // main thread is left to accept them and for housekeeping, which one thread does.
    let runtime = match cli.command {
        Command::Serve(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    }
    .enable_all()
    .build();
    match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(error) => {
            eprintln!("floe: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command `cli` names.
async fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(config) => {
            init_logging(config.log_format);
            match serve(&config).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail("floe", config.log_format, &error),
            }
        }
        Command::Agent(config) => {
            init_logging(config.log_format);
            match floe::agent::run(&config, signal_received()).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail("floe agent", config.log_format, &error),
            }
        }
        Command::ImportFlocker(args) => {
            init_logging(args.log_format);
            match floe::import::import_flocker(&args.file, &args.data_dir).await {
                Ok(summary) => {
                    print_import(&summary);
                    ExitCode::SUCCESS
                }
                Err(error) => fail("floe import-flocker", args.log_format, &error),
            }
        }
        Command::AdminToken(args) => match floe::issue_admin_token(&args.data_dir, &args.user) {
            Ok(path) => {
                println!(
                    "wrote a new token for {} to {} (mode 0600); earlier tokens still work until revoked",
                    args.user,
                    path.display()
                );
                ExitCode::SUCCESS
            }
            Err(error) => fail("floe admin-token", LogFormat::Text, &error),
        },
        Command::Backup(args) => {
            // For its warnings (a directory that cannot be synced).
            init_logging(LogFormat::Text);
            match floe::store::backup::backup(&args.data_dir, &args.file) {
                Ok(summary) => {
                    println!(
                        "wrote {} (mode 0600): {}",
                        args.file.display(),
                        describe_store(&summary)
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => fail("floe backup", LogFormat::Text, &error),
            }
        }
        Command::Restore(args) => {
            // For its warnings (an owner that cannot be copied, a directory not synced).
            init_logging(LogFormat::Text);
            match floe::store::backup::restore(&args.data_dir, &args.file) {
                Ok(restored) => {
                    println!(
                        "restored {} into {}: {}",
                        args.file.display(),
                        args.data_dir.display(),
                        describe_store(&restored.summary)
                    );
                    if let Some(kept) = &restored.replaced {
                        println!("the database it replaced is kept as {}", kept.display());
                    }
                    if args.data_dir.join(floe::ADMIN_TOKEN_FILE).exists() {
                        println!(
                            "tokens issued after the backup was taken no longer work, {} included if it is newer: `floe admin-token` issues a new one",
                            floe::ADMIN_TOKEN_FILE
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => fail("floe restore", LogFormat::Text, &error),
            }
        }
        Command::Openapi(args) => print_openapi(args.auth),
        Command::Ca(args) => match ca(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("floe ca: {error}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Prints the OpenAPI document. A reader that stops early (`floe openapi | head`) is not an
/// error.
fn print_openapi(auth: AuthMode) -> ExitCode {
    use std::io::Write;
    let document = floe::api::openapi::document(auth == AuthMode::Token);
    let text = serde_json::to_string_pretty(&document).expect("the document serialises");
    match writeln!(std::io::stdout().lock(), "{text}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("floe openapi: {error}");
            ExitCode::FAILURE
        }
    }
}

/// "revision N, M datasets", for what a backup or a restore holds.
fn describe_store(summary: &floe::store::backup::StoreSummary) -> String {
    let plural = if summary.datasets == 1 { "" } else { "s" };
    format!(
        "revision {}, {} dataset{plural}",
        summary.revision, summary.datasets
    )
}

/// Says what an import brought in and what it left behind.
fn print_import(summary: &floe::import::ImportSummary) {
    let counts = &summary.counts;
    println!(
        "imported Flocker configuration (version {}): {} datasets ({} deleted), {} leases, {} containers",
        summary.version, counts.datasets, counts.deleted, counts.leases, counts.containers
    );
    println!("configuration tag: {}", summary.tag);
    if summary.not_carried.is_empty() {
        println!("nothing was left out");
    }
    for line in &summary.not_carried {
        println!("not carried over: {line}");
    }
}

/// Reports why `command` stopped, as one line on standard error, and fails. JSON logs also get
/// the error as an event, for whatever collects them; text logs do not, because there it would
/// only repeat the same message on a second line.
fn fail(command: &str, format: LogFormat, error: &dyn std::fmt::Display) -> ExitCode {
    if format == LogFormat::Json {
        tracing::error!("{error:#}");
    }
    eprintln!("{command}: {error:#}");
    ExitCode::FAILURE
}

/// Runs a `floe ca` subcommand and says what it wrote.
fn ca(args: &CaArgs) -> Result<(), floe::ca::CaError> {
    let written = match &args.command {
        CaCommand::Init { name } => floe::ca::init(&args.dir, name)?,
        CaCommand::Control { hostname } => floe::ca::control(&args.dir, hostname)?,
        CaCommand::Node { uuid } => {
            let (node, written) = floe::ca::node(&args.dir, *uuid)?;
            println!("node UUID: {node}");
            written
        }
        CaCommand::User { name } => floe::ca::user(&args.dir, name)?,
    };
    println!("wrote {}", written.cert.display());
    println!("wrote {} (keep it secret)", written.key.display());
    Ok(())
}

/// Binds the address first (a port in use is refused before anything is opened), then opens
/// the store, and only then listens: a client that finds the port open is answered, and the
/// first administrator's token file is already there.
async fn serve(config: &floe::ServeConfig) -> anyhow::Result<()> {
    floe::serve::raise_open_file_limit_and_log();
    let cannot_listen = |e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen);
    let socket = bind(config.listen).map_err(cannot_listen)?;
    let server = floe::Server::open(config)?;
    let listener = socket.listen(ACCEPT_QUEUE).map_err(cannot_listen)?;
    server.serve(listener, shutdown_signal()).await?;
    Ok(())
}

/// How many connections may wait to be accepted: clients that wait for changes hold
/// thousands of connections, and when many (re)connect at once (an agent fleet after a
/// restart) a short queue drops their SYNs and makes them retry seconds later.
const ACCEPT_QUEUE: u32 = 8192;

/// A socket bound to `address`, not listening yet: until it listens, connections to it are
/// refused rather than left waiting.
fn bind(address: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpSocket> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket)
}

/// Completes on SIGINT, SIGTERM or SIGHUP; the server then finishes what is in flight.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    let received = signal_received();
    async move {
        received.await;
        tracing::info!("shutdown requested; finishing in-flight requests");
    }
}

/// Completes on SIGINT, SIGTERM or SIGHUP. A hang-up (the terminal floe ran in went away)
/// stops it as gracefully as the others: by default it would end the process at once, with
/// nothing logged. The handlers are installed when this is called, not when the future is
/// first polled, so that a signal sent as soon as the server says it listens is caught.
fn signal_received() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler can be installed");
    let mut terminate =
        signal(SignalKind::terminate()).expect("a SIGTERM handler can be installed");
    let mut hangup = signal(SignalKind::hangup()).expect("a SIGHUP handler can be installed");
    async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
            _ = hangup.recv() => {},
        }
    }
}

/// Logs at `RUST_LOG`'s levels, `info` without it. A `RUST_LOG` that does not parse is said
/// to be so, once logging works: silently logging at another level than asked hides what an
/// operator turned debugging on to see.
fn init_logging(format: LogFormat) {
    let asked = std::env::var("RUST_LOG").ok();
    let (filter, refused) = match asked.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new("info"), Some(error)),
        None => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let (Some(asked), Some(error)) = (asked, refused) {
        tracing::warn!(rust_log = %asked, %error, "RUST_LOG is not a valid filter; logging at info");
    }
}
