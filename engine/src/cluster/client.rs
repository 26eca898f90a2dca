//! What `driver submit --master HOST:PORT` and `driver status` do: talk to a running driver.
//! A client only ever reaches the driver, never an executor.

use super::remote;
use super::{ClusterError, Credentials};
use discnn_proto::pb;

fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClusterError::Runtime)
}

fn unreachable(master: &str, creds: &Credentials, s: &tonic::Status) -> ClusterError {
    match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::FailedPrecondition => {
            ClusterError::Refused(s.message().to_string())
        }
        _ => {
            let mut message = s.message().to_string();
            if creds.tls.is_none() && speaks_tls(master) {
                message.push_str(" (the driver serves TLS: pass --tls-ca)");
            }
            ClusterError::Unreachable {
                address: master.to_string(),
                message,
            }
        }
    }
}

/// Whether the server at `master` answers like a TLS server. A plain-text client's failure
/// against one shows as "h2 protocol error" or, when the server's close overtakes its alert,
/// a bare "transport error": so ask the server directly. Five bytes that are not a TLS record
/// header make a TLS server send an alert record (content type 21) and close; an HTTP/2
/// server waits for the rest of its preface and the read times out.
fn speaks_tls(master: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::{TcpStream, ToSocketAddrs};
    let wait = std::time::Duration::from_millis(500);
    let Some(addr) = master.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return false;
    };
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, wait) else {
        return false;
    };
    let mut first = [0u8; 1];
    stream.set_read_timeout(Some(wait)).is_ok()
        && stream.write_all(b"PRI *").is_ok()
        && stream.read_exact(&mut first).is_ok()
        && first[0] == 21
}

fn connect(master: &str, creds: &Credentials) -> Result<remote::DriverRpc, ClusterError> {
    remote::driver_client(master, creds).map_err(|message| ClusterError::Unreachable {
        address: master.to_string(),
        message,
    })
}

/// How a submitted job ended.
#[derive(Debug, Clone)]
pub struct JobEnd {
    /// The job's exit code: 0 success, 1 failed, 2 bad input.
    pub exit_code: i32,
    /// Why it failed, when it did.
    pub error: Option<String>,
}

/// Exit code of a submission interrupted by Ctrl-C (128 + SIGINT, as shells report it).
pub const INTERRUPTED: i32 = 130;

/// Submits a job and streams its events until it ends. Dropping the connection (the client
/// exits) cancels the job on the cluster; Ctrl-C does so and returns [`INTERRUPTED`].
pub fn submit(
    master: &str,
    creds: &Credentials,
    job_json: &str,
    mut on_event: impl FnMut(pb::job_event::Event),
) -> Result<JobEnd, ClusterError> {
    let rt = runtime()?;
    rt.block_on(async {
        // Installed before the job exists, so that no Ctrl-C can fall between the two.
        let mut interrupted =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(ClusterError::Runtime)?;
        let mut driver = connect(master, creds)?;
        let mut events = driver
            .submit(pb::SubmitRequest {
                fingerprint: crate::exec::op::fingerprint(),
                job_json: job_json.to_string(),
            })
            .await
            .map_err(|s| unreachable(master, creds, &s))?
            .into_inner();
        loop {
            let next = tokio::select! {
                m = events.message() => m,
                _ = interrupted.recv() => {
                    // Dropping the stream resets it; the driver cancels the job on seeing that.
                    drop(events);
                    return Ok(JobEnd {
                        exit_code: INTERRUPTED,
                        error: Some("interrupted: the job is cancelled on the cluster".into()),
                    });
                }
            };
            match next {
                Ok(Some(pb::JobEvent {
                    event: Some(pb::job_event::Event::Done(d)),
                })) => {
                    return Ok(JobEnd {
                        exit_code: d.exit_code,
                        error: (!d.error.is_empty()).then_some(d.error),
                    })
                }
                Ok(Some(pb::JobEvent { event: Some(e) })) => on_event(e),
                Ok(Some(_)) => {}
                Ok(None) => {
                    return Err(ClusterError::Unreachable {
                        address: master.to_string(),
                        message: "the driver closed the job's stream before it ended".into(),
                    })
                }
                Err(s) => return Err(unreachable(master, creds, &s)),
            }
        }
    })
}

/// The driver's view of its executors and jobs.
pub fn status(master: &str, creds: &Credentials) -> Result<pb::StatusReply, ClusterError> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut driver = connect(master, creds)?;
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            driver.status(pb::Empty {}),
        )
        .await
        .map_err(|_| ClusterError::Unreachable {
            address: master.to_string(),
            message: "no answer within 10 s".into(),
        })?
        .map_err(|s| unreachable(master, creds, &s))?;
        Ok(r.into_inner())
    })
}
