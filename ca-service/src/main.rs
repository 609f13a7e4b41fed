use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ca_service::cli::Cli::parse();
    match ca_service::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
