//! dockersave: fetch a container image from a Docker/OCI registry without Docker and write an
//! archive that `docker load` accepts.
//!
//! The modules follow the data: `reference` names the image, `registry` (http, auth, client)
//! fetches it, `manifest` picks what to fetch, `pipeline` (with `decompress` and `digest`) turns
//! each layer blob into a verified tar, `archive` writes Docker's save format, `pull` drives
//! them. `main` only parses options, asks for credentials and maps errors to exit codes.

mod archive;
mod cli;
mod decompress;
mod digest;
mod error;
mod manifest;
mod pipeline;
mod pull;
mod reference;
mod registry;

use cli::{Command, Options};
use error::Error;
use registry::auth::Credentials;
use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("dockersave: error: {error}");
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(1))
        }
    }
}

fn run() -> Result<(), Error> {
    let options = match cli::parse(std::env::args_os())? {
        Command::Help => {
            print!("{}", cli::HELP);
            return Ok(());
        }
        Command::Version => {
            println!(
                "dockersave {} ({}, commit {})",
                env!("CARGO_PKG_VERSION"),
                env!("DOCKERSAVE_TARGET"),
                env!("DOCKERSAVE_COMMIT")
            );
            return Ok(());
        }
        Command::Pull(options) => options,
    };
    let credentials = credentials(&options)?;
    let written = pull::pull(&options, credentials)?;
    println!("{}", written.display());
    Ok(())
}

/// The credentials from the command line or, with `--ilogin` (or `--user` alone), the terminal.
fn credentials(options: &Options) -> Result<Option<Credentials>, Error> {
    if options.password.is_some() {
        eprintln!("warning: a password given with --password can end up in your shell history; prefer --ilogin");
    }
    let user = match (&options.user, options.ilogin) {
        (Some(user), _) => user.clone(),
        (None, true) => prompt_user()?,
        (None, false) => return Ok(None),
    };
    let password = match &options.password {
        Some(password) => password.clone(),
        None => rpassword::prompt_password(format!("Password for {user}: ")).map_err(|e| {
            Error::Usage(format!(
                "cannot read the password from the terminal ({e}); use --password"
            ))
        })?,
    };
    Ok(Some(Credentials { user, password }))
}

fn prompt_user() -> Result<String, Error> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Error::Usage(
            "--ilogin needs a terminal to ask for the user name; use --user".into(),
        ));
    }
    eprint!("User: ");
    let _ = std::io::stderr().flush();
    let mut user = String::new();
    stdin
        .lock()
        .read_line(&mut user)
        .map_err(|e| Error::Usage(format!("cannot read the user name ({e})")))?;
    let user = user.trim().to_string();
    if user.is_empty() {
        return Err(Error::Usage("no user name given".into()));
    }
    Ok(user)
}
