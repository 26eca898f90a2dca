//! What every command shares: logging to stderr, the version string, and exit codes
//! (0 success, 1 the job failed, 2 bad usage or bad input).

use discnn_engine::cluster::Tls;
use discnn_engine::EngineError;
use std::process::ExitCode;
use std::sync::OnceLock;

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
    eprintln!("error: {err:#}");
    ExitCode::from(exit_code_number(err) as u8)
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
