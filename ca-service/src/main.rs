use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = ca_service::cli::Cli::parse();
    match ca_service::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // A verifier's verdict is an answer, not a failure of the tool: printed as is.
        Err(e) if e.is::<ca_service::ota::Refused>() => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
