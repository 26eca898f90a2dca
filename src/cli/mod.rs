//! What every command shares: logging to stderr, the version string, and exit codes
//! (0 success, 1 the job failed, 2 bad usage or bad input).

pub(crate) mod driver;
pub(crate) mod executor;
pub(crate) mod watch;

use discnn_engine::cluster::Tls;
use discnn_engine::EngineError;
use std::process::ExitCode;
use std::sync::OnceLock;

/// Parses a command line of `program` (`driver` or `executor`; `args` after the program's
/// name) with the program's own parser, running nothing: a renamed or misspelt flag in a
/// deployment file (Kubernetes, Slurm) is found before a cluster runs it.
pub fn check_args(program: &str, args: &[String]) -> anyhow::Result<()> {
    match program {
        "driver" => driver::check_args(args),
        "executor" => executor::check_args(args),
        other => anyhow::bail!("no program named {other} (driver or executor)"),
    }
}

/// `discnn <version> (protocol N, registry HASH)`: the build fingerprint.
pub fn version() -> &'static str {
    static V: OnceLock<String> = OnceLock::new();
    V.get_or_init(discnn_engine::op::fingerprint)
}

/// Logs go to stderr; `RUST_LOG` wins over `-v` (info) / `-vv` (debug).
pub fn init_logging(verbosity: u8) {
    let default = match verbosity {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: not in `docker logs` or a redirected file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Prints the error chain and picks the exit code.
pub fn exit_code_for(err: &anyhow::Error) -> ExitCode {
    eprintln!("error: {}", chain_text(err));
    ExitCode::from(exit_code_number(err) as u8)
}

/// The error and its causes joined by ": ", leaving out a cause whose text the message before
/// it already ends with (an error type that prints its source would otherwise say the OS error
/// twice).
pub fn chain_text(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !text.ends_with(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}

/// 2 for bad usage or bad input, 1 for anything else.
pub fn exit_code_number(err: &anyhow::Error) -> i32 {
    let bad_input = err.chain().any(|c| {
        c.downcast_ref::<EngineError>()
            .is_some_and(EngineError::is_bad_input)
    }) || err
        .chain()
        .any(|c| c.downcast_ref::<UsageError>().is_some());
    if bad_input {
        2
    } else {
        1
    }
}

/// The address a server (driver or executor) binds. Without a shared secret anyone who reaches
/// the port can submit work that reads and writes files as this process's user, so the default
/// is then loopback, and an explicit address outside loopback (127.0.0.0/8, ::1) is refused —
/// before anything binds — unless `insecure`, which logs a warning. With a secret the default is
/// every interface, as before.
pub fn listen_address(
    given: Option<&str>,
    default_port: u16,
    has_secret: bool,
    insecure: bool,
) -> Result<String, UsageError> {
    let address = match given {
        Some(a) => a.to_string(),
        None if has_secret => format!("0.0.0.0:{default_port}"),
        None => format!("127.0.0.1:{default_port}"),
    };
    let resolved: Vec<std::net::SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(&address)
        .map_err(|e| UsageError(format!("--listen `{address}`: not a HOST:PORT ({e})")))?
        .collect();
    if resolved.is_empty() {
        return Err(UsageError(format!(
            "--listen `{address}`: the host resolves to no address"
        )));
    }
    let open = resolved.iter().any(|a| !a.ip().is_loopback());
    if open && !has_secret {
        if !insecure {
            return Err(UsageError(format!(
                "--listen {address} is reachable from other hosts and no shared secret is set: \
                 anyone who reaches it could run jobs that read and write files as this user. \
                 Give --secret-file (or $DISCNN_SECRET), listen on loopback, or pass --insecure"
            )));
        }
        tracing::warn!(
            "--insecure: listening on {address} without a shared secret; anyone who reaches it \
             can run jobs as this user"
        );
    }
    Ok(address)
}

/// TLS flags shared by every program that talks to a cluster. With `--tls-ca`, connections
/// use TLS; a process that serves (driver, executor) also needs its certificate and key.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// PEM certificate this process serves with (signed by --tls-ca; its names must include
    /// the host or IP others reach it at).
    #[arg(long, global = true, help_heading = "TLS", value_name = "FILE")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, help_heading = "TLS", value_name = "FILE")]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM certificate of the CA that signed the cluster's certificates; turns TLS on.
    #[arg(long, global = true, help_heading = "TLS", value_name = "FILE")]
    pub tls_ca: Option<std::path::PathBuf>,
}

impl TlsArgs {
    pub fn load(&self) -> Result<Option<std::sync::Arc<Tls>>, UsageError> {
        Tls::from_flags(
            self.tls_cert.as_ref(),
            self.tls_key.as_ref(),
            self.tls_ca.as_ref(),
        )
        .map(|t| t.map(std::sync::Arc::new))
        .map_err(|e| UsageError(e.to_string()))
    }
}

/// A usage problem found after argument parsing (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// `512m`, `2g`, `1.5G`, `64kb` or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, shift) = match s.char_indices().last() {
        Some((i, 'k')) => (&s[..i], 10),
        Some((i, 'm')) => (&s[..i], 20),
        Some((i, 'g')) => (&s[..i], 30),
        Some((i, 't')) => (&s[..i], 40),
        _ => (s, 0),
    };
    let n: f64 = num.trim().parse().ok()?;
    let bytes = n * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as usize)
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("64kb"), Some(64 << 10));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1g"), None);
    }
}
