//! Data on object storage, against a real S3 server on loopback (moto): wordcount from and to
//! S3 equals the local run byte for byte; a cnn-job reads its CIFAR-10 batches from S3 on a
//! `local-cluster`, writes its model there byte-identical to a local run (also with an executor
//! killed mid-job), resumes from there, and cnn-eval reads it back; missing input, an existing
//! output, a bad record and a refused credential are exit 2 naming the URL.

mod common;

use common::s3::S3;
use discnn_cnn::cifar;
use std::path::Path;
use std::process::{Command, Output};

fn driver(s3: &S3, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_driver"));
    c.args(["submit", "--no-progress"])
        .args(args)
        .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"));
    s3.env(&mut c);
    c.output().unwrap()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn refused(o: &Output, needle: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(needle), "`{needle}` in: {err}");
}

/// A server with a CIFAR-format folder of `train` and `test` images per batch file, made in a
/// fresh directory and uploaded to `s3://data/PREFIX/`; the server, the directory and the folder.
fn with_cifar(
    prefix: &str,
    train: usize,
    test: usize,
) -> Option<(S3, tempfile::TempDir, std::path::PathBuf)> {
    let s3 = S3::start()?;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("cifar");
    cifar::write_synthetic_folder(&data, train, test, 3).unwrap();
    s3.create_bucket("data");
    s3.upload_dir("data", prefix, &data);
    Some((s3, dir, data))
}

/// Two files of Zipf-ish words, big enough for several byte-range splits each.
fn write_words(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in 0..2u64 {
        let mut text = String::new();
        for i in 0..4000u64 {
            let w = (i * 7919 + f * 13) % 97;
            text.push_str(&format!("w{} w{} x{}\n", w % 11, w, (i + f) % 5));
        }
        std::fs::write(dir.join(format!("part-{f}.txt")), text).unwrap();
    }
}

#[test]
fn wordcount_from_and_to_s3_equals_the_local_run() {
    let Some(s3) = S3::start() else { return };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_words(&input);
    s3.create_bucket("data");
    s3.upload_dir("data", "words", &input);
    // Hidden and underscore names are not input, as in a local folder.
    s3.put("data", "words/_SUCCESS", b"");
    let local = dir.path().join("out");
    ok(&driver(
        &s3,
        &[
            "--master",
            "local[2]",
            "wordcount",
            "--input",
            input.to_str().unwrap(),
            "--output",
            local.to_str().unwrap(),
        ],
    ));
    let o = driver(
        &s3,
        &[
            "--master",
            "local[2]",
            "wordcount",
            "--input",
            "s3://data/words",
            "--output",
            "s3://data/counts",
        ],
    );
    ok(&o);
    let keys = s3.keys("data", "counts/");
    let mut want: Vec<String> = std::fs::read_dir(&local)
        .unwrap()
        .flatten()
        .map(|e| format!("counts/{}", e.file_name().to_string_lossy()))
        .collect();
    want.sort();
    assert_eq!(
        keys, want,
        "the same parts and _SUCCESS, nothing temporary left"
    );
    for k in &keys {
        let name = k.trim_start_matches("counts/");
        assert_eq!(
            s3.get("data", k).unwrap(),
            std::fs::read(local.join(name)).unwrap(),
            "{k}"
        );
    }
    // file:// URLs are the local paths they name.
    let via_url = dir.path().join("out-url");
    ok(&driver(
        &s3,
        &[
            "--master",
            "local[2]",
            "wordcount",
            "--input",
            &format!("file://{}", input.display()),
            "--output",
            &format!("file://{}", via_url.display()),
        ],
    ));
    for k in &keys {
        let name = k.trim_start_matches("counts/");
        assert_eq!(
            std::fs::read(via_url.join(name)).unwrap(),
            std::fs::read(local.join(name)).unwrap()
        );
    }
    // Writing there again is refused: the output exists.
    let again = driver(
        &s3,
        &[
            "wordcount",
            "--input",
            "s3://data/words",
            "--output",
            "s3://data/counts",
        ],
    );
    refused(&again, "s3://data/counts");
}

#[test]
fn missing_input_on_s3_is_bad_input_naming_the_url() {
    let Some(s3) = S3::start() else { return };
    s3.create_bucket("data");
    let o = driver(
        &s3,
        &[
            "wordcount",
            "--input",
            "s3://data/nothing-here",
            "--output",
            "s3://data/x",
        ],
    );
    refused(&o, "s3://data/nothing-here");
    let o = driver(
        &s3,
        &[
            "wordcount",
            "--input",
            "s3://no-such-bucket/in",
            "--output",
            "s3://data/y",
        ],
    );
    refused(&o, "s3://no-such-bucket/in");
}

#[test]
fn a_cnn_job_reads_its_batches_from_s3_on_a_local_cluster() {
    let Some((s3, dir, data)) = with_cifar("cifar-10-batches-bin", 40, 30) else {
        return;
    };
    let args = [
        "--master",
        "local-cluster[2,1]",
        "cnn-job",
        "--epochs",
        "2",
        "--data",
    ];
    let from_disk = dir.path().join("from-disk");
    let mut c = Command::new(env!("CARGO_BIN_EXE_driver"));
    c.args(["submit", "--no-progress"])
        .args(args)
        .arg(&data)
        .arg("--output")
        .arg(&from_disk)
        .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"));
    ok(&c.output().unwrap());
    let from_s3 = dir.path().join("from-s3");
    let mut all: Vec<&str> = args.to_vec();
    all.extend([
        "s3://data/cifar-10-batches-bin",
        "--output",
        from_s3.to_str().unwrap(),
    ]);
    ok(&driver(&s3, &all));
    assert_eq!(
        std::fs::read(from_s3.join("model.safetensors")).unwrap(),
        std::fs::read(from_disk.join("model.safetensors")).unwrap(),
        "the same model from S3 as from the folder"
    );

    // A bad label: the sizes are right, so the driver accepts the data set without reading
    // it; the executor that reads the record fails the job as bad input, naming it.
    let bad = dir.path().join("bad");
    cifar::write_synthetic_folder(&bad, 40, 30, 3).unwrap();
    let file = bad.join("data_batch_2.bin");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[3 * cifar::RECORD_BYTES] = 42;
    std::fs::write(&file, bytes).unwrap();
    s3.upload_dir("data", "bad", &bad);
    let o = driver(
        &s3,
        &[
            "--master",
            "local-cluster[2,1]",
            "cnn-job",
            "--epochs",
            "1",
            "--data",
            "s3://data/bad",
            "--output",
            dir.path().join("never").to_str().unwrap(),
        ],
    );
    refused(&o, "s3://data/bad/data_batch_2.bin");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("offset {}", 3 * cifar::RECORD_BYTES)),
        "{err}"
    );
}

#[test]
fn a_cnn_job_writes_resumes_and_is_evaluated_on_s3() {
    let Some((s3, dir, data)) = with_cifar("cifar", 40, 30) else {
        return;
    };
    let local = dir.path().join("run");
    let local_s = local.to_str().unwrap();
    let data_s = data.to_str().unwrap();
    let cluster = ["--master", "local-cluster[2,1]"];
    let job = |data: &str, out: &[&str], epochs: &str| {
        let mut a: Vec<&str> = cluster.to_vec();
        a.extend([
            "cnn-job",
            "--schedule",
            "constant",
            "--checkpoint-every",
            "1",
        ]);
        a.extend(["--epochs", epochs, "--data", data]);
        a.extend_from_slice(out);
        driver(&s3, &a)
    };
    ok(&job(data_s, &["--output", local_s], "2"));
    ok(&job("s3://data/cifar", &["--output", "s3://data/run"], "2"));
    let keys = s3.keys("data", "run/");
    for k in [
        "model.safetensors",
        "metrics.jsonl",
        "run.json",
        "confusion.json",
        "SHA256SUMS",
    ] {
        assert!(keys.contains(&format!("run/{k}")), "{k} in {keys:?}");
    }
    assert!(
        keys.iter().any(|k| k.starts_with("run/checkpoint/")),
        "{keys:?}"
    );
    assert!(keys.contains(&"run/_SUCCESS".to_string()), "{keys:?}");
    assert!(
        !keys
            .iter()
            .any(|k| k.contains("_in-progress") || k.contains("_temporary")),
        "nothing left over: {keys:?}"
    );
    let model = |k: &str| s3.get("data", k).unwrap();
    assert_eq!(
        model("run/model.safetensors"),
        std::fs::read(local.join("model.safetensors")).unwrap(),
        "the model on S3 is the local run's"
    );
    let run: serde_json::Value = serde_json::from_slice(&model("run/run.json")).unwrap();
    assert_eq!(run["options"]["output"], "s3://data/run");

    // --resume from S3 extends it as a local resume extends the local run.
    ok(&job(data_s, &["--resume", local_s], "3"));
    ok(&job("s3://data/cifar", &["--resume", "s3://data/run"], "3"));
    assert_eq!(
        model("run/model.safetensors"),
        std::fs::read(local.join("model.safetensors")).unwrap(),
        "the resumed model on S3 is the resumed local one"
    );
    let metrics = String::from_utf8(model("run/metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 3);

    // cnn-eval reads the model and the data from S3 and scores as it does locally.
    let eval = |m: &str, d: &str| driver(&s3, &["cnn-eval", "--json", "--model", m, "--data", d]);
    let here = eval(local.join("model.safetensors").to_str().unwrap(), data_s);
    let there = eval("s3://data/run/model.safetensors", "s3://data/cifar");
    ok(&here);
    ok(&there);
    assert_eq!(here.stdout, there.stdout);
    refused(
        &eval("s3://data/run/no-model.safetensors", "s3://data/cifar"),
        "s3://data/run/no-model.safetensors",
    );
    // An existing output is refused unless --overwrite.
    refused(
        &job("s3://data/cifar", &["--output", "s3://data/run"], "1"),
        "s3://data/run",
    );
}

#[test]
fn a_refused_credential_is_bad_input_naming_the_url() {
    let Some(mut s3) = S3::start_authenticated() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    write_words(&input);
    let args = |out: &'static str| ["wordcount", "--input", "s3://data/words", "--output", out];
    // The data goes up through our own program, with the right key.
    let input = input.to_str().unwrap();
    let up = ["wordcount", "--input", input, "--output", "s3://data/words"];
    ok(&driver(&s3, &up));
    ok(&driver(&s3, &args("s3://data/counts")));
    s3.credentials.1 = "not-the-secret".into();
    refused(&driver(&s3, &args("s3://data/counts-2")), "s3://data/words");
}

#[test]
fn an_executor_killed_mid_job_still_ends_with_the_identical_model_on_s3() {
    let Some((s3, dir, data)) = with_cifar("cifar", 200, 30) else {
        return;
    };
    let opts = [
        "--epochs",
        "4",
        "--checkpoint-every",
        "1",
        "--partitions",
        "6",
    ];
    let local = dir.path().join("local");
    let mut a = vec!["--master", "local[2]", "cnn-job"];
    a.extend(opts);
    a.extend([
        "--data",
        data.to_str().unwrap(),
        "--output",
        local.to_str().unwrap(),
    ]);
    ok(&driver(&s3, &a));

    let mut c = Command::new(env!("CARGO_BIN_EXE_driver"));
    c.args([
        "submit",
        "--no-progress",
        "--master",
        "local-cluster[3,1]",
        "cnn-job",
    ])
    .args(opts)
    .args(["--data", "s3://data/cifar", "--output", "s3://data/run"])
    .env("DISCNN_EXECUTOR_BIN", env!("CARGO_BIN_EXE_executor"))
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::piped());
    s3.env(&mut c);
    let job = c.spawn().unwrap();
    // After the first epoch's checkpoint reached S3, one executor dies.
    common::wait_until(
        std::time::Duration::from_secs(120),
        "a first checkpoint",
        || {
            s3.keys("data", "run/_in-progress/checkpoint/")
                .iter()
                .any(|k| k.ends_with("state.json"))
        },
    );
    let executors = common::children(job.id());
    assert_eq!(executors.len(), 3, "{executors:?}");
    common::kill9(executors[1]);
    let o = job.wait_with_output().unwrap();
    ok(&o);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("lost"),
        "the driver saw the executor go: {err}"
    );
    assert_eq!(
        s3.get("data", "run/model.safetensors").unwrap(),
        std::fs::read(local.join("model.safetensors")).unwrap(),
        "the model trained through the kill is the undisturbed local run's"
    );
}
