use clap::Parser;
use kubeinfer_server::config::{Cli, Command, LogArgs, LogFormat};
use tracing_subscriber::EnvFilter;

fn init_logging(log: &LogArgs) -> anyhow::Result<()> {
    let filter = EnvFilter::try_new(&log.log_level)
        .map_err(|e| anyhow::anyhow!("--log-level {:?} is not a valid filter: {e}", log.log_level))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match log.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let termination_log = cli.termination_log.clone();
    // Both ring (sqlx) and aws-lc-rs (the object store) are linked in: rustls needs to be told which one
    // serves connections that do not name a provider, or it panics at the first of them.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = init_logging(&cli.log) {
        eprintln!("error: {e:#}");
        return std::process::ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result: anyhow::Result<()> = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => kubeinfer_server::serve::run(*args).await?,
            Command::Pull(args) => {
                kubeinfer_server::pull::run(&args).await?;
            }
            Command::Migrate(args) => {
                kubeinfer_server::db::migrate_url(&args.database_url, args.prediction_log_retention).await?
            }
        }
        Ok(())
    });
    // Blocking tasks still running (an instance thread stuck in a batch that `serve` gave up waiting
    // for) would otherwise hold the exit until they finish.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            kubeinfer_server::termination::write(&termination_log, &format!("{e:#}"));
            std::process::ExitCode::FAILURE
        }
    }
}
