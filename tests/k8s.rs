//! The Kubernetes manifests (deploy/k8s): `kubectl kustomize` renders them, `kubernetes-validate
//! --strict` accepts every object against a pinned Kubernetes version, and every container's
//! command line parses with the binaries' own argument parser (a renamed flag fails here, not on
//! a cluster). No Kubernetes runs here: the manifests are schema-validated, not deployed.
//!
//! Needs `kubectl` and `kubernetes-validate` (PyPI; `$DISCNN_KUBERNETES_VALIDATE` or on the
//! PATH; PyYAML from its virtualenv reads the rendered YAML); without them the test skips with a
//! message, except under `CI=true`, where it fails (`.ci/run` installs them).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.30.0";

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

fn tools() -> Option<(PathBuf, PathBuf)> {
    let validate = std::env::var_os("DISCNN_KUBERNETES_VALIDATE")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| on_path("kubernetes-validate"));
    match (on_path("kubectl"), validate) {
        (Some(k), Some(v)) => Some((k, v)),
        _ => {
            let msg =
                "kubectl and kubernetes-validate are needed (pip install kubernetes-validate \
                       into a virtualenv; set DISCNN_KUBERNETES_VALIDATE)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
            eprintln!("SKIPPED: {msg}");
            None
        }
    }
}

/// deploy/k8s copied with the two files a user adds (the secret, the S3 settings).
fn manifests() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s");
    for e in std::fs::read_dir(&src).unwrap().flatten() {
        std::fs::copy(e.path(), dir.path().join(e.file_name())).unwrap();
    }
    std::fs::write(dir.path().join("secret"), "a-test-secret\n").unwrap();
    std::fs::write(
        dir.path().join("s3.env"),
        "AWS_ACCESS_KEY_ID=key\nAWS_SECRET_ACCESS_KEY=secret\nAWS_DEFAULT_REGION=us-east-1\n",
    )
    .unwrap();
    dir
}

fn render(kubectl: &Path, dir: &Path) -> String {
    let o = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "kubectl kustomize: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

fn validate(validate: &Path, yaml: &str) -> std::process::Output {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), yaml).unwrap();
    Command::new(validate)
        .args(["--strict", "-k", KUBERNETES])
        .arg(f.path())
        .output()
        .unwrap()
}

/// The rendered objects, read with the PyYAML of kubernetes-validate's virtualenv.
fn objects(validate: &Path, yaml: &str) -> Vec<Value> {
    let python = validate.with_file_name("python3");
    let mut child = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(sys.stdin))))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), yaml.as_bytes()).unwrap();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success());
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn the_manifests_render_validate_and_their_command_lines_parse() {
    let Some((kubectl, validator)) = tools() else {
        return;
    };
    let dir = manifests();
    let yaml = render(&kubectl, dir.path());
    let v = validate(&validator, &yaml);
    assert!(
        v.status.success(),
        "kubernetes-validate --strict -k {KUBERNETES}:\n{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    let objs = objects(&validator, &yaml);
    let kinds: Vec<String> = objs
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "Deployment/discnn-driver",
        "Deployment/discnn-executor",
        "Service/discnn-driver",
        "Job/discnn-submit-cnn-job",
    ] {
        assert!(kinds.iter().any(|k| k == want), "{want} in {kinds:?}");
    }
    let mut parsed = 0;
    for o in &objs {
        let Some(pod) = o["spec"]["template"]["spec"].as_object() else {
            continue;
        };
        assert!(
            pod["securityContext"]["runAsUser"]
                .as_u64()
                .is_some_and(|u| u > 0),
            "{}: a numeric non-root user",
            o["metadata"]["name"]
        );
        for c in pod["containers"].as_array().unwrap() {
            let program = c["command"][0].as_str().unwrap();
            let args: Vec<String> = serde_json::from_value(c["args"].clone()).unwrap();
            discnn::cli::check_args(program, &args)
                .unwrap_or_else(|e| panic!("{program} {args:?}: {e:#}"));
            parsed += 1;
            for probe in ["readinessProbe", "livenessProbe"] {
                if let Some(cmd) = c[probe]["exec"]["command"].as_array() {
                    let cmd: Vec<String> =
                        serde_json::from_value(Value::Array(cmd.clone())).unwrap();
                    discnn::cli::check_args(&cmd[0], &cmd[1..])
                        .unwrap_or_else(|e| panic!("{probe} {cmd:?}: {e:#}"));
                }
            }
            assert!(c["resources"]["limits"].is_object(), "{program}: limits");
        }
    }
    assert_eq!(parsed, 3);
}

#[test]
fn a_misspelt_flag_or_field_is_caught() {
    let Some((kubectl, validator)) = tools() else {
        return;
    };
    assert!(discnn::cli::check_args("executor", &["--drivr=x:1".into()]).is_err());
    assert!(discnn::cli::check_args("driver", &["serve".into(), "--uii=x".into()]).is_err());
    assert!(discnn::cli::check_args("driver", &["submit".into(), "cnn-jobb".into()]).is_err());
    let dir = manifests();
    let file = dir.path().join("executors.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace("terminationGracePeriodSeconds", "terminationGraceSeconds"),
    )
    .unwrap();
    let v = validate(&validator, &render(&kubectl, dir.path()));
    assert!(!v.status.success(), "--strict refuses an unknown field");
}
