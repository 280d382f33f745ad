//! `sandwatch`: the command line. Parses arguments, starts the parts (runner, collector) and
//! connects them; everything a person reads on the terminal is written here.

mod baseline;
mod cli;
mod replay;
mod remote;
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
    let result = runtime.block_on(cli::dispatch(args));
    // Everything a command does is awaited inside `dispatch`; what may still run is a blocking
    // read of our stdin (forwarded to a job that has ended), which must not hold the exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            eprintln!("sandwatch: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
