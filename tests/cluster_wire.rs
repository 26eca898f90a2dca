//! The cluster's edges: `driver serve` / `executor` / `driver submit --master` / `driver
//! status` as a user runs them; refusals (wrong secret, different build); and bad input on the
//! wire, after which every process keeps serving.

mod common;

use discnn_proto::pb;
use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `driver serve` and its executors, killed when dropped; their logs are printed if a test
/// fails while it is alive.
struct Served {
    address: String,
    secret_file: std::path::PathBuf,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Served {
    fn start(executors: usize) -> Served {
        let dir = tempfile::tempdir().unwrap();
        let secret_file = dir.path().join("secret");
        std::fs::write(&secret_file, "correct horse\n").unwrap();
        let address = format!("127.0.0.1:{}", free_port());
        let mut children = vec![Command::new(env!("CARGO_BIN_EXE_driver"))
            .args(["serve", "--listen", &address, "--heartbeat-timeout", "3"])
            .arg("--secret-file")
            .arg(&secret_file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("driver serve")];
        for _ in 0..executors {
            children.push(
                Command::new(env!("CARGO_BIN_EXE_executor"))
                    .args([
                        "--driver",
                        &address,
                        "--cores",
                        "1",
                        "--listen",
                        "127.0.0.1:0",
                    ])
                    .arg("--secret-file")
                    .arg(&secret_file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("executor"),
            );
        }
        let s = Served {
            address,
            secret_file,
            children,
            _dir: dir,
        };
        s.wait_for_executors(executors);
        s
    }

    fn status(&self) -> serde_json::Value {
        let o = self.driver(&["status", "--master", &self.address, "--json"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("one JSON object")
    }

    fn wait_for_executors(&self, n: usize) {
        let start = Instant::now();
        loop {
            let o = self.driver(&["status", "--master", &self.address, "--json"]);
            if o.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
                let alive = v["executors"]
                    .as_array()
                    .map_or(0, |a| a.iter().filter(|e| e["state"] == "alive").count());
                if alive >= n {
                    return;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "executors did not register"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn driver(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_driver"))
            .args(args)
            .arg("--secret-file")
            .arg(&self.secret_file)
            .output()
            .expect("run driver")
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            for (i, c) in self.children.iter_mut().enumerate() {
                let mut log = String::new();
                if let Some(e) = c.stderr.as_mut() {
                    let _ = e.read_to_string(&mut log);
                }
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- process {i} ---");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

#[test]
fn serve_submit_and_status_from_the_command_line() {
    let s = Served::start(2);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "b a b\nc b a\n").unwrap();
    // Relative paths are resolved by the client, then read and written by the executors.
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .current_dir(dir.path())
        .args(["submit", "--master", &s.address, "--json", "wordcount"])
        .args(["--input", "in.txt", "--output", "out"])
        .arg("--secret-file")
        .arg(&s.secret_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
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
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .current_dir(dir.path())
        .args(["submit", "--master", &s.address, "wordcount"])
        .args(["--input", "in.txt", "--output", "out"])
        .arg("--secret-file")
        .arg(&s.secret_file)
        .output()
        .unwrap();
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
        discnn_engine::cluster::auth::ClientAuth(Some(secret)),
    )
}

#[test]
fn bad_messages_get_error_replies_and_the_cluster_keeps_serving() {
    let s = Served::start(1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let secret = discnn_engine::cluster::Secret::new("correct horse").unwrap();
    rt.block_on(async {
        let mut c = client(&s.address, secret.clone()).await;
        // A stream with no header message.
        let r = c.task_finished(tokio_stream::iter(Vec::new())).await;
        assert_eq!(r.expect_err("empty").code(), tonic::Code::InvalidArgument);
        // A result for no running task, with garbage bytes: ignored.
        let part = pb::TaskResultPart {
            executor_id: "exec-99".into(),
            task_id: 12345,
            data: vec![0xff; 17],
        };
        c.task_finished(tokio_stream::iter(vec![part]))
            .await
            .expect("accepted and dropped");
        // A frame over the explicit message limit.
        let big = pb::TaskResultPart {
            executor_id: "x".into(),
            task_id: 1,
            data: vec![0; 5 << 20],
        };
        let mut c = c.max_encoding_message_size(64 << 20);
        let r = c.task_finished(tokio_stream::iter(vec![big])).await;
        assert!(r.is_err(), "an oversized frame is refused");
        // A submission of a job this driver does not know.
        let r = c
            .submit(pb::SubmitRequest {
                fingerprint: discnn_engine::op::fingerprint(),
                job_json: "{\"job\":\"no-such-job\"}".into(),
            })
            .await;
        assert_eq!(
            r.err().map(|e| e.code()),
            Some(tonic::Code::InvalidArgument)
        );
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
    let o = Command::new(env!("CARGO_BIN_EXE_driver"))
        .current_dir(dir.path())
        .args([
            "submit",
            "--master",
            &s.address,
            "wordcount",
            "--input",
            "in.txt",
        ])
        .args(["--output", "out"])
        .arg("--secret-file")
        .arg(&s.secret_file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(s.status()["executors"][0]["state"], "alive");
}
