//! The `dockersave` command: parse options, ask for credentials if told to, hand the run to the
//! library's `Client`, and turn an error into one line on stderr and an exit code.

use dockersave::cli::{self, Command, Session};
use dockersave::error::Error;
use dockersave::progress::Progress;
use dockersave::Client;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

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
    dockersave::interrupt::install();
    // A list of images is a few KiB; a device or a runaway pipe given by mistake is cut off.
    const MAX_LIST: u64 = dockersave::limits::MAX_LIST_BYTES;
    let read_list = |path: &std::path::Path| {
        let input: Box<dyn Read> = if path.as_os_str() == "-" {
            Box::new(std::io::stdin())
        } else {
            Box::new(std::fs::File::open(path)?)
        };
        let mut text = String::new();
        input.take(MAX_LIST + 1).read_to_string(&mut text)?;
        if text.len() as u64 > MAX_LIST {
            return Err(std::io::Error::other(
                "it is over 4 MiB, more than a list of images",
            ));
        }
        Ok(text)
    };
    match cli::parse(
        std::env::args_os(),
        |name| std::env::var(name).ok(),
        read_list,
    )? {
        Command::Help => print!("{}", cli::help()),
        Command::Version => {
            // The build, and the platform this machine pulls by default, for bug reports.
            let features = match dockersave::features::BUILT {
                [] => "none".to_string(),
                built => built.join(", "),
            };
            println!(
                "dockersave {} ({}, commit {}; features: {features}; this machine: {})",
                env!("CARGO_PKG_VERSION"),
                env!("DOCKERSAVE_TARGET"),
                env!("DOCKERSAVE_COMMIT"),
                dockersave::host::platform()
            );
        }
        Command::Pull(session, options) => {
            if let Some(written) = client(&session)?.run_pull(&options)? {
                println!("{}", written.display());
            }
        }
        Command::Inspect(session, options) => {
            let mut out = std::io::stdout().lock();
            client(&session)?.run_inspect(&options, &mut out)?;
        }
        Command::Push(session, options) => {
            for pushed in client(&session)?.run_push(&options)? {
                println!("{pushed}");
            }
        }
        Command::Copy(session, options) => {
            for copied in client(&session)?.run_copy(&options)? {
                println!("{copied}");
            }
        }
        Command::Artifact(session, options) => {
            let mut out = std::io::stdout().lock();
            for written in client(&session)?.run_artifact(&options, &mut out)? {
                println!("{}", written.display());
            }
        }
    }
    Ok(())
}

/// The library's client for this run: the credentials the command line gives (prompting if
/// the session says so), which the client keeps for the registry of the image the run names,
/// Docker's stored ones for the rest, and progress on stderr at the session's verbosity. Not
/// inlined into each command's arm: one copy keeps the binary its size.
#[inline(never)]
fn client(session: &Session) -> Result<Client, Error> {
    let progress = Arc::new(Progress::new(session.verbosity));
    let mut client = Client::new().progress(progress.clone());
    if let Some(dir) = &session.docker_config {
        client = client.docker_config(dir);
    }
    if let Some((user, password)) = asked(session, &progress)? {
        client = client.credentials(&user, &password);
    }
    Ok(client)
}

/// The credentials the command line gives for `image`'s registry: `--user` with `--password`,
/// `--password-stdin` or a prompt; or `--ilogin`. Without them the client looks up Docker's
/// config.json and credential helpers, else goes anonymously.
fn asked(session: &Session, progress: &Progress) -> Result<Option<(String, String)>, Error> {
    let login = &session.login;
    if login.password.is_some() {
        progress.warn("a password given with --password can end up in your shell history; prefer --password-stdin or --ilogin");
    }
    let user = match (&login.user, login.ilogin) {
        (Some(user), _) => user.clone(),
        (None, true) => prompt_user()?,
        (None, false) => return Ok(None),
    };
    let password = if let Some(password) = &login.password {
        password.clone()
    } else if login.password_stdin {
        let mut password = String::new();
        std::io::stdin()
            .read_to_string(&mut password)
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot read the password from standard input ({e})"
                ))
            })?;
        password.trim_end_matches(['\n', '\r']).to_string()
    } else {
        rpassword::prompt_password(format!("Password for {user}: ")).map_err(|e| {
            Error::Usage(format!(
                "cannot read the password from the terminal ({e}); use --password-stdin"
            ))
        })?
    };
    if password.is_empty() {
        return Err(Error::Usage("the password is empty".into()));
    }
    Ok(Some((user, password)))
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
