//! The UI in a real browser: Debian's chromium, driven through chromedriver (WebDriver, with
//! fantoccini), against `driver serve` while a short cnn-job trains. The Training page's chart
//! gains points as epochs end without a reload, its table's last row is `metrics.jsonl`'s last
//! line, the Executors page lists the executors, every link of every page resolves, and each
//! page is saved as a screenshot under `target/tmp/ui-screenshots/`.
//!
//! Without chromium and chromedriver the test skips with a message, except under `CI=true`,
//! where it fails (`.ci/run` installs them).

mod common;

use common::http::get;
use common::served::{free_port, Served};
use discnn_cnn::cifar;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Whether the browser is installed; if not, skip (or fail under CI).
fn browser_present() -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let msg =
        "chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)";
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}

/// chromedriver in its own process group, which the browsers it starts join: dropping this
/// kills the group, so a test that panics before closing its session leaves no chromium behind
/// (killing chromedriver alone orphans them).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_chromedriver() -> (Killed, String) {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let addr = format!("127.0.0.1:{port}");
    common::wait_until(Duration::from_secs(30), "chromedriver answers", || {
        std::net::TcpStream::connect(&addr).is_ok()
    });
    (Killed(child), format!("http://{addr}"))
}

async fn browser(webdriver: &str) -> Client {
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1400,1100"],
        },
    });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a WebDriver session")
}

async fn count(c: &Client, css: &str) -> usize {
    c.find_all(Locator::Css(css)).await.map_or(0, |v| v.len())
}

async fn screenshot(c: &Client, dir: &Path, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The hrefs of the page shown, as absolute URLs.
async fn hrefs(c: &Client) -> Vec<String> {
    let v = c
        .execute(
            "return Array.from(document.querySelectorAll('a')).map(a => a.href)",
            vec![],
        )
        .await
        .unwrap();
    serde_json::from_value(v).unwrap()
}

/// Polls `done` every 200 ms for up to `limit`.
async fn until<F, Fut>(limit: Duration, what: &str, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn the_training_page_moves_in_a_real_browser() {
    if !browser_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ui = format!("127.0.0.1:{}", free_port());
    let served = Served::start_serving(2, &["--ui", &ui]);
    let data = dir.path().join("cifar");
    // Learnable images (each class a stripe pattern under noise): the curves move.
    cifar::write_patterned_folder(&data, 800, 200, 3).unwrap();
    let out = dir.path().join("out");
    // The browser starts before the job: started after the first epoch, a slow start can open
    // the page after the last epoch, when the chart has nothing left to gain (seen once, as
    // the 120 s wait below running out).
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let (_driver, webdriver) = start_chromedriver();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let c = rt.block_on(browser(&webdriver));
    let job = served
        .submit(
            dir.path(),
            &[
                "--no-progress",
                "cnn-job",
                "--epochs",
                "8",
                "--augment",
                "none",
                "--lr",
                "0.02",
            ],
        )
        .arg("--data")
        .arg(&data)
        .arg("--output")
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The application and its first epoch, seen through the API.
    let mut id = String::new();
    common::wait_until(Duration::from_secs(120), "a first epoch", || {
        let apps = get(&ui, "/api/v1/applications").json();
        let Some(a) = apps.as_array().and_then(|a| a.first()) else {
            return false;
        };
        id = a["id"].as_str().unwrap().to_string();
        let r = get(&ui, &format!("/api/v1/applications/{id}/training"));
        r.status == 200 && !r.json().as_array().unwrap().is_empty()
    });

    let job = rt.block_on(async {
        let base = format!("http://{ui}");
        c.goto(&format!("{base}/applications/{id}/training"))
            .await
            .unwrap();
        c.execute("window.__notReloaded = true; return null;", vec![])
            .await
            .unwrap();
        let first = count(&c, "#curves circle").await;
        assert!(first >= 2, "points for the first epoch: {first}");
        assert!(
            first < 2 * 8,
            "the job ended before the page opened: {first} points"
        );
        until(
            Duration::from_secs(120),
            "the chart gains points",
            || async { count(&c, "#curves circle").await > first },
        )
        .await;
        let kept = c
            .execute("return window.__notReloaded === true;", vec![])
            .await;
        assert_eq!(kept.unwrap(), json!(true), "updated in place, not reloaded");

        let mut job = job;
        let status = job.wait().unwrap();
        assert!(status.success(), "the cnn-job failed");
        let last: Value = serde_json::from_str(
            std::fs::read_to_string(out.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .last()
                .unwrap(),
        )
        .unwrap();
        let want = vec![
            last["epoch"].to_string(),
            format!("{:.4}", last["train_loss"].as_f64().unwrap()),
            format!("{:.2}", last["test_accuracy"].as_f64().unwrap() * 100.0),
        ];
        until(
            Duration::from_secs(30),
            "the last epoch in the table",
            // The page redraws the table as events arrive: an element gone stale between two
            // reads means a redraw, so that poll reads nothing and the next one reads again.
            || async {
                let Ok(rows) = c.find_all(Locator::Css("#epochs tr")).await else {
                    return false;
                };
                let Some(row) = rows.last() else { return false };
                let Ok(cells) = row.find_all(Locator::Css("td")).await else {
                    return false;
                };
                let mut got = Vec::new();
                for cell in cells.iter().take(3) {
                    match cell.text().await {
                        Ok(t) => got.push(t),
                        Err(_) => return false,
                    }
                }
                got == want
            },
        )
        .await;
        assert_eq!(count(&c, "#curves circle").await, 2 * 8);
        screenshot(&c, &shots, "training").await;

        c.goto(&format!("{base}/applications/{id}/executors"))
            .await
            .unwrap();
        assert_eq!(count(&c, "span.alive").await, 2, "both executors listed");
        screenshot(&c, &shots, "executors").await;

        // Every link of every page: pages in the browser (a few of each kind of detail page),
        // the rest of the detail pages over HTTP.
        let mut seen = BTreeSet::new();
        let mut todo = vec![format!("{base}/")];
        let mut details = std::collections::HashMap::<&str, usize>::new();
        while let Some(url) = todo.pop() {
            if !seen.insert(url.clone()) {
                continue;
            }
            let kind = ["/jobs/", "/stages/"].into_iter().find(|k| url.contains(k));
            if let Some(k) = kind {
                let n = details.entry(k).or_default();
                *n += 1;
                if *n > 3 {
                    let path = url.trim_start_matches(&base);
                    assert_eq!(get(&ui, path).status, 200, "{url}");
                    continue;
                }
            }
            c.goto(&url).await.unwrap();
            let title = c.title().await.unwrap();
            assert!(!title.starts_with("Not found"), "{url} is {title}");
            let name = url
                .trim_start_matches(&base)
                .trim_matches('/')
                .replace(['/', '?', '='], "_");
            let name = if name.is_empty() {
                "home".to_string()
            } else {
                name
            };
            screenshot(&c, &shots, &name).await;
            for h in hrefs(&c).await {
                assert!(h.starts_with(&base), "{url} links outside the UI: {h}");
                if !seen.contains(&h) {
                    todo.push(h);
                }
            }
        }
        assert!(seen.iter().any(|u| u.ends_with("/jobs")), "{seen:?}");
        c.goto(&format!("{base}/applications/{id}/jobs"))
            .await
            .unwrap();
        screenshot(&c, &shots, "jobs").await;
        c.close().await.unwrap();
        job
    });
    drop(job);
    for page in ["training", "executors", "jobs", "home"] {
        assert!(shots.join(format!("{page}.png")).exists());
    }
    eprintln!("screenshots in {}", shots.display());
}
