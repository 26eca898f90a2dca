//! The cluster's edges: `driver serve` / `executor` / `driver submit --master` / `driver
//! status` as a user runs them; refusals (wrong secret, different build); and bad input on the
//! wire, after which every process keeps serving.

mod common;

use common::served::Served;
use discnn_proto::pb;
use std::process::Command;

#[test]
fn serve_submit_and_status_from_the_command_line() {
    let s = Served::start(2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "b a b\nc b a\n").unwrap();
    // Relative paths are resolved by the client, then read and written by the executors.
    let v = s.wordcount_json(dir.path(), "out");
    assert_eq!(v["distinct_words"], 3);
    let mut text = String::new();
    let mut parts: Vec<_> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    for p in parts {
        text.push_str(&std::fs::read_to_string(p).unwrap());
    }
    assert_eq!(text, "b\t3\na\t2\nc\t1\n");

    // A failing job: exit 2 (its output exists), with the job's error.
    let o = s.wordcount(dir.path(), "out").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));

    let st = s.status();
    let jobs = st["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 2);
    assert_eq!(jobs[0]["state"], "succeeded");
    assert_eq!(jobs[1]["state"], "failed");
    for e in st["executors"].as_array().unwrap() {
        assert_eq!(e["state"], "alive");
        assert_eq!(e["cores"], 1);
        assert!(e["address"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
}

#[test]
fn a_wrong_secret_or_another_build_is_refused() {
    let s = Served::start(1);
    let o = Command::new(env!("CARGO_BIN_EXE_executor"))
        .args(["--driver", &s.address, "--cores", "1"])
        .env("DISCNN_SECRET", "wrong")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("wrong secret"), "{err}");
    assert!(
        !err.contains("correct horse"),
        "the secret never appears in a log"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .args(["status", "--master", &s.address])
        .env_remove("DISCNN_SECRET")
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("no secret was presented"));

    // A registration from a different build, by hand over the wire.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secret = discnn_engine::cluster::Secret::new("correct horse").unwrap();
    let status = rt.block_on(async {
        let mut c = client(&s.address, secret).await;
        c.register(pb::RegisterRequest {
            fingerprint: "0.0.0 (protocol 0, registry 0)".into(),
            address: "127.0.0.1:1".into(),
            cores: 1,
            memory_bytes: 1,
            pid: 1,
            instance: "by-hand".into(),
        })
        .await
        .expect_err("refused")
    });
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    assert!(
        status.message().contains("build mismatch"),
        "{}",
        status.message()
    );
    assert_eq!(s.status()["executors"].as_array().unwrap().len(), 1);
}

type Authed = pb::driver_client::DriverClient<
    tonic::service::interceptor::InterceptedService<
        tonic::transport::Channel,
        discnn_engine::cluster::auth::ClientAuth,
    >,
>;

async fn client(address: &str, secret: discnn_engine::cluster::Secret) -> Authed {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    pb::driver_client::DriverClient::with_interceptor(
        ch,
        discnn_engine::cluster::auth::ClientAuth::new(
            Some(secret),
            discnn_engine::cluster::auth::DRIVER,
        ),
    )
}

#[test]
fn bad_messages_get_error_replies_and_the_cluster_keeps_serving() {
    let s = Served::start(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secret = discnn_engine::cluster::Secret::new("correct horse").unwrap();
    rt.block_on(async {
        let mut c = client(&s.address, secret.clone()).await;
        // A task channel with no header message.
        let r = c.tasks(tokio_stream::iter(Vec::new())).await;
        assert_eq!(r.expect_err("empty").code(), tonic::Code::InvalidArgument);
        // One that opens with something other than its executor's id.
        let result = pb::FromExecutor {
            what: Some(pb::from_executor::What::Result(pb::TaskPart {
                task_id: 12345,
                data: vec![0xff; 17],
                last: true,
            })),
        };
        let r = c.tasks(tokio_stream::iter(vec![result])).await;
        assert_eq!(
            r.expect_err("headless").code(),
            tonic::Code::InvalidArgument
        );
        // One for an executor that never registered.
        let hello = pb::FromExecutor {
            what: Some(pb::from_executor::What::ExecutorId("exec-99".into())),
        };
        let r = c.tasks(tokio_stream::iter(vec![hello])).await;
        let e = r.expect_err("unknown executor");
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(e.message().contains("exec-99"), "{}", e.message());
        // A frame over the explicit message limit.
        let big = pb::FromExecutor {
            what: Some(pb::from_executor::What::ExecutorId("x".repeat(5 << 20))),
        };
        let mut c = c.max_encoding_message_size(64 << 20);
        let r = c.tasks(tokio_stream::iter(vec![big])).await;
        assert!(r.is_err(), "an oversized frame is refused");
        // A submission of a job this driver does not know.
        let r = c
            .submit(pb::SubmitRequest {
                fingerprint: discnn_engine::op::fingerprint(),
                job_json: r#"{"job":"no-such-job","args":{},"json":false}"#.into(),
            })
            .await;
        let e = r.expect_err("refused");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        // The refusal lists the jobs this driver has.
        let m = e.message();
        assert!(m.contains("no job named `no-such-job`"), "{m}");
        assert!(m.contains("wordcount") && m.contains("cnn-job"), "{m}");
        // A broadcast that does not exist.
        let r = c
            .fetch_broadcast(pb::BroadcastRequest {
                id: 7,
                executor_id: String::new(),
            })
            .await;
        assert_eq!(r.err().map(|e| e.code()), Some(tonic::Code::NotFound));
    });
    // Raw garbage on the TCP port, then a normal job.
    {
        use std::io::Write;
        let mut t = std::net::TcpStream::connect(&s.address).unwrap();
        let _ = t.write_all(
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x04\xff\xff\xff\xff\xff\xffgarbage",
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "x y x\n").unwrap();
    let o = s.wordcount(dir.path(), "out").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.status()["executors"][0]["state"], "alive");
}

/// A CA and one certificate for 127.0.0.1 signed by it, as PEM files in `dir`; returns the
/// flags that make a process serve and dial over TLS.
fn tls_files(dir: &std::path::Path, name: &str) -> Vec<std::ffi::OsString> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let path = |f: &str| dir.join(format!("{name}-{f}"));
    std::fs::write(path("ca.pem"), ca.pem()).unwrap();
    std::fs::write(path("cert.pem"), cert.pem()).unwrap();
    std::fs::write(path("key.pem"), key.serialize_pem()).unwrap();
    let mut flags = Vec::new();
    for (flag, f) in [
        ("--tls-ca", "ca.pem"),
        ("--tls-cert", "cert.pem"),
        ("--tls-key", "key.pem"),
    ] {
        flags.push(flag.into());
        flags.push(path(f).into_os_string());
    }
    flags
}

#[test]
fn a_cluster_on_tls_runs_jobs_and_refuses_clients_that_do_not_trust_it() {
    let certs = tempfile::tempdir().unwrap();
    let s = Served::start_with(2, tls_files(certs.path(), "cluster"));
    let dir = tempfile::tempdir().unwrap();
    // Enough words that every reducer fetches from both executors, over TLS.
    let text: String = (0..3000)
        .map(|i| format!("w{} w{}\n", i % 97, i % 13))
        .collect();
    std::fs::write(dir.path().join("in.txt"), text).unwrap();
    let v = s.wordcount_json(dir.path(), "out");
    assert_eq!(v["distinct_words"], 97);

    let status = |extra: &[std::ffi::OsString]| {
        Command::new(env!("CARGO_BIN_EXE_driver"))
            .args(["status", "--master", &s.address])
            .arg("--secret-file")
            .arg(&s.secret_file)
            .args(extra)
            .output()
            .unwrap()
    };
    // Plain text to a TLS server, and TLS trusting another CA: both fail, saying where.
    let cases = [
        (Vec::new(), "pass --tls-ca"),
        (
            tls_files(certs.path(), "other")[..2].to_vec(),
            "invalid peer certificate",
        ),
    ];
    for (extra, why) in cases {
        let o = status(&extra);
        assert_eq!(o.status.code(), Some(1));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(&s.address) && err.contains(why), "{err}");
    }
    // A certificate flag without its CA is a usage error.
    let o = status(&[
        "--tls-cert".into(),
        certs.path().join("cluster-cert.pem").into(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tls-ca"));
    assert_eq!(common::served::alive(&s.status()), 2);
}

/// A generic gRPC client reads a `Submit` stream until it ends: it must end after `done`.
#[test]
fn the_submit_stream_ends_after_its_last_message() {
    let s = Served::start(1);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    let args = discnn::jobs::WordcountArgs {
        input,
        output: dir.path().join("out"),
    };
    let spec = discnn::JobSpec::of::<discnn::jobs::Wordcount>(args, true).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secret = discnn_engine::cluster::Secret::new("correct horse").unwrap();
    rt.block_on(async {
        let mut c = client(&s.address, secret).await;
        let mut events = c
            .submit(pb::SubmitRequest {
                fingerprint: discnn_engine::op::fingerprint(),
                job_json: serde_json::to_string(&spec).unwrap(),
            })
            .await
            .unwrap()
            .into_inner();
        let mut done = None;
        let ended = tokio::time::timeout(std::time::Duration::from_secs(60), async {
            while let Some(e) = events.message().await.unwrap() {
                if let Some(pb::job_event::Event::Done(d)) = e.event {
                    done = Some(d);
                }
            }
        })
        .await;
        assert!(ended.is_ok(), "the stream did not end after done");
        assert_eq!(done.map(|d| d.exit_code), Some(0));
    });
}

/// A token is bound to the process and the method it was made for: one sniffed from a call to
/// the driver opens neither an executor nor another of the driver's methods.
#[test]
fn a_sniffed_token_opens_no_other_process_or_method() {
    let s = Served::start(1);
    let executor = s.status()["executors"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = discnn_engine::cluster::Secret::new("correct horse").unwrap();
    let fixed = |token: String| {
        move |mut req: tonic::Request<()>| {
            req.metadata_mut()
                .insert(discnn_engine::cluster::auth::HEADER, token.parse().unwrap());
            Ok(req)
        }
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let channel = |a: &str| {
            tonic::transport::Endpoint::from_shared(format!("http://{a}"))
                .unwrap()
                .connect_lazy()
        };
        let heartbeat = discnn_engine::cluster::auth::DRIVER;
        let sniffed = secret.token(heartbeat, "/discnn.Driver/Heartbeat");
        // Against the executor: refused.
        let mut e = pb::executor_client::ExecutorClient::with_interceptor(
            channel(&executor),
            fixed(sniffed.clone()),
        );
        let r = e.stats(pb::Empty {}).await;
        assert_eq!(
            r.err().map(|s| s.code()),
            Some(tonic::Code::Unauthenticated)
        );
        // Against another method of the driver: refused.
        let mut d =
            pb::driver_client::DriverClient::with_interceptor(channel(&s.address), fixed(sniffed));
        let r = d.status(pb::Empty {}).await;
        assert_eq!(
            r.err().map(|s| s.code()),
            Some(tonic::Code::Unauthenticated)
        );
        // The same kind of token, made for the method it is used on, is accepted.
        let good = secret.token(heartbeat, "/discnn.Driver/Status");
        let mut d =
            pb::driver_client::DriverClient::with_interceptor(channel(&s.address), fixed(good));
        assert!(d.status(pb::Empty {}).await.is_ok());
    });
}

/// A 6 KB archive whose tar header claims 2^62 bytes once aborted `driver serve` (and every job
/// queued behind it) when a cnn-job read it. Now the job fails alone with exit 2 naming the
/// file, and the next job runs.
#[test]
fn a_crafted_archive_fails_its_job_and_the_driver_serves_the_next() {
    let s = Served::start(1);
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("cifar-10-binary.tar.gz");
    let bytes =
        discnn_cnn::cifar::archive_claiming("data_batch_1.bin", 1 << 62, &[0u8; 6000]).unwrap();
    std::fs::write(&archive, bytes).unwrap();
    let o = s
        .submit(
            dir.path(),
            &[
                "cnn-job",
                "--data",
                archive.to_str().unwrap(),
                "--output",
                "run",
            ],
        )
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("data_batch_1.bin") && err.contains("more than a batch file may hold"),
        "{err}"
    );
    std::fs::write(dir.path().join("in.txt"), "a b a\n").unwrap();
    s.wordcount_json(dir.path(), "counts");
}
