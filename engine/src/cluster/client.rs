//! What `driver submit --master HOST:PORT` and `driver status` do: talk to a running driver.
//! A client only ever reaches the driver, never an executor.

use super::auth::Secret;
use super::remote;
use super::ClusterError;
use discnn_proto::pb;

fn runtime() -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(ClusterError::Runtime)
}

fn unreachable(master: &str, s: &tonic::Status) -> ClusterError {
    match s.code() {
        tonic::Code::Unauthenticated | tonic::Code::FailedPrecondition => {
            ClusterError::Refused(s.message().to_string())
        }
        _ => ClusterError::Unreachable {
            address: master.to_string(),
            message: s.message().to_string(),
        },
    }
}

fn connect(master: &str, secret: Option<Secret>) -> Result<remote::DriverRpc, ClusterError> {
    remote::driver_client(master, secret).map_err(|message| ClusterError::Unreachable {
        address: master.to_string(),
        message,
    })
}

/// How a submitted job ended.
#[derive(Debug, Clone)]
pub struct JobEnd {
    pub exit_code: i32,
    pub error: Option<String>,
}

/// Submits a job and streams its events until it ends. Dropping the connection (the client
/// exits, Ctrl-C) cancels the job on the cluster.
pub fn submit(
    master: &str,
    secret: Option<Secret>,
    job_json: &str,
    mut on_event: impl FnMut(pb::job_event::Event),
) -> Result<JobEnd, ClusterError> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut driver = connect(master, secret)?;
        let mut events = driver
            .submit(pb::SubmitRequest {
                fingerprint: crate::op::fingerprint(),
                job_json: job_json.to_string(),
            })
            .await
            .map_err(|s| unreachable(master, &s))?
            .into_inner();
        loop {
            match events.message().await {
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
                Err(s) => return Err(unreachable(master, &s)),
            }
        }
    })
}

/// The driver's view of its executors and jobs.
pub fn status(master: &str, secret: Option<Secret>) -> Result<pb::StatusReply, ClusterError> {
    let rt = runtime()?;
    rt.block_on(async {
        let mut driver = connect(master, secret)?;
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            driver.status(pb::Empty {}),
        )
        .await
        .map_err(|_| ClusterError::Unreachable {
            address: master.to_string(),
            message: "no answer within 10 s".into(),
        })?
        .map_err(|s| unreachable(master, &s))?;
        Ok(r.into_inner())
    })
}
