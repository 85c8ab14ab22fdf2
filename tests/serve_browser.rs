//! The page in a real browser: headless Chromium (Debian's `chromium`),
//! driven by chromedriver (`chromium-driver`) through fantoccini. It loads
//! the page, types a command, waits for the action, clicks a word, checks
//! that the heatmap on the canvas changed (pixels read back), switches the
//! method, steps to Align, hovers a patch, asks in Korean, uploads a
//! picture, and checks that the browser's console logged no error. The
//! screenshot is kept as target/serve-screenshot.png.
//!
//! chromedriver missing is a failure that says how to install it, never a
//! silent pass. Run with `cargo test --release --test serve_browser` (~20 s).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use serde_json::{json, Value};
use vla_demo::checkpoint::Source;
use vla_demo::serve::{client, Limits, ServeConfig, Server};
use vla_demo::Pipeline;

/// chromedriver, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .flat_map(|d| names.iter().map(move |n| d.join(n)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_driver() -> (Driver, SocketAddr) {
    let exe = find(&["chromedriver"]).expect(
        "chromedriver is not installed: the browser test needs Debian's chromium and \
         chromium-driver (apt-get install -y chromium chromium-driver; .ci/run does this)",
    );
    let port = free_port();
    let child = Command::new(exe)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start chromedriver");
    let driver = Driver(child);
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t0 = Instant::now();
    while client::get(addr, "/status", Duration::from_secs(2))
        .map(|a| a.status)
        .ok()
        != Some(200)
    {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "chromedriver did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (driver, addr)
}

/// A hash of the canvas's pixels, read back in the page.
const CANVAS_HASH: &str = "const c = document.getElementById('view');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261;
  for (let i = 0; i < d.length; i++) { h = Math.imul(h ^ d[i], 16777619) >>> 0; }
  return h;";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_predicts_and_redraws_where_a_word_looked() {
    let (_driver, driver_addr) = start_driver();
    let server = Server::start(
        Pipeline::load(&Source::Embedded, "cpu").unwrap(),
        &ServeConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            limits: Limits::default(),
        },
    )
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1500,1150",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--user-data-dir={}", profile.path().display()));
    let mut options = json!({ "args": args });
    if let Some(chromium) = find(&["chromium", "chromium-browser"]) {
        options["binary"] = json!(chromium);
    }
    let caps = json!({ "goog:chromeOptions": options, "goog:loggingPrefs": { "browser": "ALL" } });
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{driver_addr}"))
        .await
        .expect("chromedriver could not start chromium");

    c.goto(&server.url()).await.unwrap();
    // The first example scene is shown once the page has its list.
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//p[@id='scene-label'][normalize-space()!='']",
        ))
        .await
        .unwrap();
    let cmd = c.find(Locator::Id("cmd")).await.unwrap();
    cmd.send_keys("pick up the red cup").await.unwrap();
    c.find(Locator::Id("predict"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#actions .chip"))
        .await
        .unwrap();
    let actions = c
        .find(Locator::Id("actions"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        actions.contains("<x_") && actions.contains("<eoa>"),
        "{actions}"
    );
    let error = c
        .find(Locator::Id("error"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(error, "", "the page reported an error");

    let before = c.execute(CANVAS_HASH, vec![]).await.unwrap();
    let words = c.find_all(Locator::Css("#words .chip")).await.unwrap();
    assert_eq!(words.len(), 5, "one chip per command token");
    words[3].click().await.unwrap(); // "red"
    let after_word = c.execute(CANVAS_HASH, vec![]).await.unwrap();
    assert_ne!(before, after_word, "clicking a word redraws the heatmap");
    let step_text = c
        .find(Locator::Id("steps"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(step_text.contains("Score: e_i"), "{step_text}");

    // The method menu comes from the answer; rollout draws another map.
    let method = c.find(Locator::Id("method")).await.unwrap();
    method.select_by_value("rollout").await.unwrap();
    let after_method = c.execute(CANVAS_HASH, vec![]).await.unwrap();
    assert_ne!(after_word, after_method, "switching the method redraws");
    method.select_by_value("relevance").await.unwrap();
    let after_relevance = c.execute(CANVAS_HASH, vec![]).await.unwrap();
    assert_ne!(after_method, after_relevance, "relevance draws its own map");
    method.select_by_value("attention").await.unwrap();
    c.find(Locator::Css("button.step[data-step='1']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let align = c
        .find(Locator::Id("steps"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(align.contains("Align: α = softmax(e)"), "{align}");

    // Hovering a patch names its score, weight and object.
    let hover = "const c = document.getElementById('view'); const r = c.getBoundingClientRect();
      c.dispatchEvent(new MouseEvent('mousemove', { clientX: r.left + r.width * 0.55, clientY: r.top + r.height * 0.26, bubbles: true }));
      return document.getElementById('hover').textContent;";
    let text = c.execute(hover, vec![]).await.unwrap();
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("raw score") && text.contains("on red cup"),
        "{text}"
    );

    let shot = c.screenshot().await.unwrap();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("serve-screenshot.png"), &shot).unwrap();

    // A Korean command works the same way.
    cmd.clear().await.unwrap();
    cmd.send_keys("빨간 컵을 집어").await.unwrap();
    c.find(Locator::Id("predict"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath(
            "//div[@id='words']/button[contains(., '컵')]",
        ))
        .await
        .unwrap();

    // An upload of a wide picture: drawn at its own aspect ratio.
    let wide = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/scenes/shapes.png");
    let upload = c.find(Locator::Id("upload")).await.unwrap();
    upload.send_keys(&wide.display().to_string()).await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//p[@id='scene-label'][starts-with(., 'upload')]",
        ))
        .await
        .unwrap();
    c.find(Locator::Id("predict"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("#actions .chip"))
        .await
        .unwrap();
    let size = c
        .execute(
            "const c = document.getElementById('view'); return [c.width, c.height];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(size, json!([448, 112]), "1024×256 drawn at 448×112");

    // The console: chromedriver's log endpoint, nothing at SEVERE.
    let session = c.session_id().await.unwrap().unwrap();
    let body = br#"{"type":"browser"}"#;
    let log = client::raw(
        driver_addr,
        &format!("POST /session/{session}/se/log HTTP/1.1\r\nHost: {driver_addr}\r\nContent-Type: application/json\r\nContent-Length: {}", body.len()),
        body,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(log.status, 200, "{}", String::from_utf8_lossy(&log.body));
    let entries = log.json().unwrap()["value"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let severe: Vec<&Value> = entries.iter().filter(|e| e["level"] == "SEVERE").collect();
    assert!(severe.is_empty(), "console errors: {severe:?}");
    c.close().await.unwrap();
}
