//! The `dockersave` command: parse options, resolve credentials (prompting if asked), pull, and
//! turn an error into one line on stderr and an exit code.

use dockersave::cli::{self, Command, Options};
use dockersave::error::Error;
use dockersave::progress::Progress;
use dockersave::pull;
use dockersave::push;
use dockersave::reference::Reference;
use dockersave::registry::{self, auth::Credentials};
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
    let options = match cli::parse(std::env::args_os(), |name| std::env::var(name).ok())? {
        Command::Help => {
            print!("{}", cli::HELP);
            return Ok(());
        }
        Command::Version => {
            // The build, and the platform this machine pulls by default, for bug reports.
            println!(
                "dockersave {} ({}, commit {}; this machine: {})",
                env!("CARGO_PKG_VERSION"),
                env!("DOCKERSAVE_TARGET"),
                env!("DOCKERSAVE_COMMIT"),
                dockersave::host::platform()
            );
            return Ok(());
        }
        Command::Pull(options) => options,
    };
    let progress = Arc::new(Progress::new(options.verbosity));
    let given = credentials(&options, &progress)?;
    // The credentials given or found for the first image serve every image on its registry;
    // an image elsewhere gets that registry's stored ones.
    let for_image = |reference: &Reference| {
        if reference.registry == options.image.registry {
            given.clone()
        } else {
            stored_credentials(&options, reference, &progress)
        }
    };
    if matches!(options.output, cli::Output::Push { .. }) {
        for pushed in push::push(&options, &for_image, progress.clone())? {
            println!("{pushed}");
        }
        return Ok(());
    }
    if let Some(written) = pull::pull(&options, &for_image, progress.clone())? {
        println!("{}", written.display());
    }
    Ok(())
}

/// The credentials to use, in this order: `--user` with `--password`, `--password-stdin` or a
/// prompt; `--ilogin`; then Docker's config.json and credential helpers; else anonymous.
fn credentials(options: &Options, progress: &Progress) -> Result<Option<Credentials>, Error> {
    if options.password.is_some() {
        progress.warn("a password given with --password can end up in your shell history; prefer --password-stdin or --ilogin");
    }
    let user = match (&options.user, options.ilogin) {
        (Some(user), _) => user.clone(),
        (None, true) => prompt_user()?,
        (None, false) => return Ok(stored_credentials(options, &options.image, progress)),
    };
    let password = if let Some(password) = &options.password {
        password.clone()
    } else if options.password_stdin {
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
    Ok(Some(Credentials::password(&user, &password)))
}

/// Docker's stored credentials for the image's registry. A broken config or a missing helper is
/// a warning, not an error: public images still pull anonymously.
fn stored_credentials(
    options: &Options,
    reference: &Reference,
    progress: &Progress,
) -> Option<Credentials> {
    let dir = options.docker_config.as_ref()?;
    match registry::credentials::lookup(dir, &reference.registry) {
        Ok(found) => found,
        Err(e) => {
            progress.warn(&format!("ignoring stored Docker credentials: {e}"));
            None
        }
    }
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
