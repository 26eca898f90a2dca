//! An S3 server on loopback for tests: moto in server mode (`pip install 'moto[server]'` into a
//! virtualenv outside the repository; `.ci/run` does), started per test and stopped on drop.
//! Found as `$DISCNN_MOTO_SERVER` or `moto_server` on the PATH; without it a test skips with a
//! message, except under `CI=true`, where it fails.

use super::http::{request, Response};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct S3 {
    child: Child,
    /// The access key and secret our programs are given.
    pub credentials: (String, String),
    /// The python of moto's virtualenv (it has boto3).
    python: PathBuf,
    pub addr: String,
    _log: tempfile::TempDir,
}

/// The first moto release the credential test has passed with (see `start_authenticated`).
const SIGNATURES_CHECKED_FROM: (u32, u32, u32) = (5, 2, 5);

fn moto_server() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DISCNN_MOTO_SERVER").map(PathBuf::from) {
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("moto_server"))
        .find(|p| p.is_file())
}

impl S3 {
    /// A fresh server, or `None` (after saying why) when moto is not installed. It takes any
    /// credentials.
    pub fn start() -> Option<S3> {
        S3::launch(None)
    }

    /// A server that checks credentials: its first few requests (made here, with boto3) create
    /// a user with an access key allowed everything, and a bucket `data`; after them a request
    /// needs that key and secret.
    pub fn start_authenticated() -> Option<S3> {
        let mut s = S3::launch(Some(4))?;
        let version = s.moto_version();
        if version < SIGNATURES_CHECKED_FROM {
            // Seen with 5.2.1 (the one some machine images carry on PATH): a correctly signed
            // list request is answered with SignatureDoesNotMatch. 5.2.5 is the first release
            // this test has passed with.
            let msg = format!(
                "moto {version:?} checks request signatures wrongly; the credential test needs \
                 {SIGNATURES_CHECKED_FROM:?} or later (.ci/run installs the latest)"
            );
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return None;
        }
        let script = r#"
import boto3, json, sys
ep = sys.argv[1]
iam = boto3.client("iam", endpoint_url=ep, aws_access_key_id="x", aws_secret_access_key="x",
                   region_name="us-east-1")
iam.create_user(UserName="discnn")
k = iam.create_access_key(UserName="discnn")["AccessKey"]
policy = {"Version": "2012-10-17",
          "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
iam.put_user_policy(UserName="discnn", PolicyName="all", PolicyDocument=json.dumps(policy))
s3 = boto3.client("s3", endpoint_url=ep, aws_access_key_id=k["AccessKeyId"],
                  aws_secret_access_key=k["SecretAccessKey"], region_name="us-east-1")
s3.create_bucket(Bucket="data")
print(k["AccessKeyId"], k["SecretAccessKey"])
"#;
        let o = Command::new(&s.python)
            .args(["-c", script, &format!("http://{}", s.addr)])
            .output()
            .expect("moto's python runs");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8(o.stdout).unwrap();
        let mut it = out.split_whitespace();
        s.credentials = (it.next().unwrap().into(), it.next().unwrap().into());
        Some(s)
    }

    fn launch(free_requests: Option<u32>) -> Option<S3> {
        let Some(bin) = moto_server() else {
            let msg = "no moto_server (pip install 'moto[server]' into a virtualenv, then put \
                       its bin/ on PATH or set DISCNN_MOTO_SERVER)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("SKIPPED: {msg}");
            return None;
        };
        let port = super::served::free_port();
        let log = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(&bin);
        if let Some(n) = free_requests {
            // moto checks signatures after the first n requests.
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", n.to_string());
        }
        let child = cmd
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log.path().join("moto.log")).unwrap())
            .spawn()
            .expect("moto_server starts");
        let python = bin.with_file_name("python3");
        let s = S3 {
            child,
            credentials: ("testing".into(), "testing".into()),
            python,
            addr: format!("127.0.0.1:{port}"),
            _log: log,
        };
        // Poll until it answers rather than sleep.
        let start = Instant::now();
        while std::net::TcpStream::connect(&s.addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(s)
    }

    /// moto's version as (major, minor, patch), from its own python.
    fn moto_version(&self) -> (u32, u32, u32) {
        let o = Command::new(&self.python)
            .args(["-c", "import moto; print(moto.__version__)"])
            .output()
            .expect("moto's python runs");
        let text = String::from_utf8_lossy(&o.stdout);
        let mut parts = text
            .trim()
            .split('.')
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let mut next = || parts.next().unwrap_or(0);
        (next(), next(), next())
    }

    /// The variables `AmazonS3Builder::from_env` reads, pointing at this server.
    pub fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ACCESS_KEY_ID", &self.credentials.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.credentials.1)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_ENDPOINT", format!("http://{}", self.addr))
            .env("AWS_ALLOW_HTTP", "true");
    }

    fn call(&self, method: &str, path: &str, body: &[u8]) -> Response {
        // A PUT's body is bytes (not a form); a GET carries no body headers.
        let headers = match method {
            "PUT" => "Content-Type: application/octet-stream\r\n",
            _ => "",
        };
        request(&self.addr, method, path, headers, body)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let r = self.call("PUT", &format!("/{bucket}"), &[]);
        assert_eq!(r.status, 200, "create bucket {bucket}: {}", r.body);
    }

    pub fn put(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let r = self.call("PUT", &format!("/{bucket}/{key}"), bytes);
        assert_eq!(r.status, 200, "put {key}: {}", r.body);
    }

    /// The object's bytes, or `None` when there is none. Objects our programs wrote are
    /// private to their (signed) writer, so this reads as a client with credentials does:
    /// boto3, from moto's own virtualenv.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let script = r#"
import boto3, sys
s = boto3.client("s3", endpoint_url=sys.argv[1], aws_access_key_id=sys.argv[4],
                 aws_secret_access_key=sys.argv[5], region_name="us-east-1")
try:
    sys.stdout.buffer.write(s.get_object(Bucket=sys.argv[2], Key=sys.argv[3])["Body"].read())
except s.exceptions.NoSuchKey:
    sys.exit(3)
"#;
        let o = Command::new(&self.python)
            .args(["-c", script, &format!("http://{}", self.addr), bucket, key])
            .args([&self.credentials.0, &self.credentials.1])
            .output()
            .expect("moto's python runs");
        match o.status.code() {
            Some(0) => Some(o.stdout),
            Some(3) => None,
            _ => panic!("get {key}: {}", String::from_utf8_lossy(&o.stderr)),
        }
    }

    /// The keys under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let r = self.call(
            "GET",
            &format!("/{bucket}?list-type=2&prefix={prefix}"),
            &[],
        );
        assert_eq!(r.status, 200, "list {prefix}: {}", r.body);
        let mut keys: Vec<String> = r
            .body
            .split("<Key>")
            .skip(1)
            .filter_map(|s| s.split("</Key>").next())
            .map(str::to_string)
            .collect();
        keys.sort();
        keys
    }

    /// Every file of `dir` (not recursive) as `prefix/NAME`.
    pub fn upload_dir(&self, bucket: &str, prefix: &str, dir: &Path) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            self.put(
                bucket,
                &format!("{prefix}/{name}"),
                &std::fs::read(e.path()).unwrap(),
            );
        }
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
