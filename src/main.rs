//! `sandwatch`: the command line. Parses arguments, starts the parts (runner, collector) and
//! connects them; everything a person reads on the terminal is written here.

mod baseline;
mod cli;
mod replay;
mod serve;
mod sql;
mod sql_server;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // A sandbox's init is this binary re-executed inside the sandbox: it must not parse our
    // arguments or start a runtime.
    sandwatch_runner::init::run_if_init();
    let args = cli::Args::parse();
    cli::init_logging(args.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandwatch: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(cli::dispatch(args)) {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("sandwatch: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
