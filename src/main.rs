//! The `dockersave` command: parse options, resolve credentials (prompting if asked), pull, and
//! turn an error into one line on stderr and an exit code.

use dockersave::cli::{self, Command, Session};
use dockersave::copy;
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
    let read_list = |path: &std::path::Path| {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map(|_| text)
        } else {
            std::fs::read_to_string(path)
        }
    };
    match cli::parse(
        std::env::args_os(),
        |name| std::env::var(name).ok(),
        read_list,
    )? {
        Command::Help => print!("{}", cli::help()),
        Command::Version => {
            // The build, and the platform this machine pulls by default, for bug reports.
            println!(
                "dockersave {} ({}, commit {}; this machine: {})",
                env!("CARGO_PKG_VERSION"),
                env!("DOCKERSAVE_TARGET"),
                env!("DOCKERSAVE_COMMIT"),
                dockersave::host::platform()
            );
        }
        Command::Pull(session, options) => {
            let logins = Logins::new(&session, &options.image)?;
            let progress = logins.progress.clone();
            let logins = pull::Logins {
                registry: &|r| logins.for_image(r),
                mirror: &|host| logins.for_mirror(host),
            };
            if let Some(written) = pull::pull(&options, &logins, progress)? {
                println!("{}", written.display());
            }
        }
        Command::Inspect(session, options) => {
            let logins = Logins::new(&session, &options.image)?;
            let progress = logins.progress.clone();
            let logins = pull::Logins {
                registry: &|_| logins.given.clone(),
                mirror: &|host| logins.for_mirror(host),
            };
            pull::inspect::inspect(&options, &logins, progress)?;
        }
        Command::Push(session, options) => {
            let logins = Logins::new(&session, &options.destination)?;
            let progress = logins.progress.clone();
            for pushed in push::push(&options, &|r| logins.for_image(r), progress)? {
                println!("{pushed}");
            }
        }
        Command::Copy(session, options) => {
            // The command line's credentials are for the source; the destination gets what
            // is stored for its own registry.
            let logins = Logins::new(&session, &options.images[0])?;
            let progress = logins.progress.clone();
            let destination = |r: &Reference| stored_credentials(&session, &r.registry, &progress);
            let pulls = pull::Logins {
                registry: &|r| logins.for_image(r),
                mirror: &|host| logins.for_mirror(host),
            };
            for copied in copy::copy(&options, &pulls, &destination, progress.clone())? {
                println!("{copied}");
            }
        }
    }
    Ok(())
}

/// The credentials for each image a run touches: those given or found for the run's own image
/// serve every image on its registry; an image elsewhere gets that registry's stored ones.
struct Logins<'a> {
    session: &'a Session,
    image: &'a Reference,
    given: Option<Credentials>,
    progress: Arc<Progress>,
}

impl<'a> Logins<'a> {
    /// Asks for or looks up the credentials for `image` (prompting if the session says so).
    fn new(session: &'a Session, image: &'a Reference) -> Result<Logins<'a>, Error> {
        let progress = Arc::new(Progress::new(session.verbosity));
        let given = credentials(session, image, &progress)?;
        Ok(Logins {
            session,
            image,
            given,
            progress,
        })
    }

    fn for_image(&self, reference: &Reference) -> Option<Credentials> {
        if reference.registry == self.image.registry {
            self.given.clone()
        } else {
            stored_credentials(self.session, &reference.registry, &self.progress)
        }
    }

    /// A mirror's: only those stored for its own host, never the command line's (they are for
    /// the registry named in IMAGE).
    fn for_mirror(&self, host: &str) -> Option<Credentials> {
        stored_credentials(self.session, host, &self.progress)
    }
}

/// The credentials to use, in this order: `--user` with `--password`, `--password-stdin` or a
/// prompt; `--ilogin`; then Docker's config.json and credential helpers; else anonymous.
fn credentials(
    session: &Session,
    image: &Reference,
    progress: &Progress,
) -> Result<Option<Credentials>, Error> {
    let login = &session.login;
    if login.password.is_some() {
        progress.warn("a password given with --password can end up in your shell history; prefer --password-stdin or --ilogin");
    }
    let user = match (&login.user, login.ilogin) {
        (Some(user), _) => user.clone(),
        (None, true) => prompt_user()?,
        (None, false) => return Ok(stored_credentials(session, &image.registry, progress)),
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
    Ok(Some(Credentials::password(&user, &password)))
}

/// Docker's stored credentials for a registry (`docker.io` for Hub) or a mirror's host. A broken
/// config or a missing helper is a warning, not an error: public images still pull anonymously.
fn stored_credentials(
    session: &Session,
    registry: &str,
    progress: &Progress,
) -> Option<Credentials> {
    let dir = session.docker_config.as_ref()?;
    match registry::credentials::lookup(dir, registry) {
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
