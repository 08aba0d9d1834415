//! The chromedriver process the browser sessions of a test run share, Debian's chromium,
//! and the few plain HTTP calls made to chromedriver outside the WebDriver client (its
//! readiness, and deleting a session from `Drop`, where nothing can be awaited).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Overrides of the two programs' paths (Debian's packages by default).
pub const CHROMIUM_ENV: &str = "APPEALFLOW_CHROMIUM";
pub const CHROMEDRIVER_ENV: &str = "APPEALFLOW_CHROMEDRIVER";

/// Chromium's switches for the tests: headless, no sandbox (containers), no GPU, no
/// background traffic, one fixed window size so screenshots and layouts are comparable.
pub const CHROMIUM_ARGS: &[&str] = &[
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
];

/// The two programs the browser tests run.
#[derive(Debug, Clone)]
pub struct Tools {
    pub chromium: PathBuf,
    pub chromedriver: PathBuf,
}

impl Tools {
    /// Both programs, or a sentence naming what is missing.
    pub fn find() -> Result<Tools, String> {
        let chromium = configured(CHROMIUM_ENV, "/usr/bin/chromium");
        let chromedriver = configured(CHROMEDRIVER_ENV, "/usr/bin/chromedriver");
        let missing: Vec<String> =
            [(&chromium, "chromium", CHROMIUM_ENV), (&chromedriver, "chromedriver", CHROMEDRIVER_ENV)]
                .into_iter()
                .filter(|(path, _, _)| !is_executable(path))
                .map(|(path, name, env)| {
                    format!(
                        "{name} ({} not found; set {env} or apt-get install chromium chromium-driver)",
                        path.display()
                    )
                })
                .collect();
        if missing.is_empty() { Ok(Tools { chromium, chromedriver }) } else { Err(missing.join(", ")) }
    }
}

fn configured(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env).filter(|v| !v.is_empty()).map_or_else(|| PathBuf::from(default), PathBuf::from)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The WebDriver capabilities of one session: Debian's chromium, headless, with its own
/// profile directory.
pub fn capabilities(chromium: &Path, profile: &Path) -> fantoccini::wd::Capabilities {
    let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|a| a.to_string()).collect();
    args.push(format!("--user-data-dir={}", profile.display()));
    let caps = serde_json::json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "goog:chromeOptions": { "binary": chromium, "args": args },
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// A running chromedriver on a loopback port; terminated when the last session using it
/// is dropped.
pub struct Driver {
    child: Mutex<Child>,
    pub port: u16,
    /// chromedriver's own output, quoted when it does not come up.
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// The driver the live sessions share: a weak handle, so that the last session's drop
/// ends the process (statics are never dropped).
static SHARED: Mutex<Weak<Driver>> = Mutex::new(Weak::new());

impl Driver {
    /// The running shared driver, or a new one.
    pub fn shared(chromedriver: &Path) -> Arc<Driver> {
        let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(driver) = slot.upgrade() {
            return driver;
        }
        let driver = Arc::new(Driver::spawn(chromedriver));
        *slot = Arc::downgrade(&driver);
        driver
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts chromedriver on a free loopback port and waits until it reports ready. The
    /// port is chosen by binding and releasing it, so another process may take it first:
    /// a driver that exits at once is started again on another port.
    fn spawn(chromedriver: &Path) -> Driver {
        let dir = tempfile::Builder::new().prefix("appealflow-chromedriver-").tempdir().expect("a temporary directory");
        let log = dir.path().join("chromedriver.log");
        let mut last_error = String::new();
        for _ in 0..3 {
            let port = free_port();
            let out = std::fs::File::create(&log).expect("chromedriver's log file");
            let err = out.try_clone().expect("chromedriver's log file");
            let mut child = Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .arg("--log-level=WARNING")
                // Its own process group, with the chromium processes it starts: ended
                // together, so no browser outlives the driver.
                .process_group(0)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
            match wait_ready(&mut child, port, Duration::from_secs(20)) {
                Ok(()) => return Driver { child: Mutex::new(child), port, log, _dir: dir },
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = e;
                }
            }
        }
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        panic!("chromedriver did not come up: {last_error}\n--- chromedriver output ---\n{output}");
    }

    /// What chromedriver has written so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let child = self.child.get_mut().unwrap_or_else(|e| e.into_inner());
        let Ok(group) = i32::try_from(child.id()) else { return };
        // SIGTERM to the whole group (chromedriver and any browser still running), then,
        // if chromedriver is still there after a moment, SIGKILL.
        // SAFETY: kill(2) on the process group our own unreaped child leads.
        unsafe { libc::kill(-group, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // SAFETY: as above; a group whose members are all gone answers ESRCH.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a loopback port");
    listener.local_addr().expect("a bound address").port()
}

fn wait_ready(child: &mut Child, port: u16, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("chromedriver exited ({status}) before it was ready on port {port}"));
        }
        if let Ok((200, body)) = http(port, "GET", "/status")
            && body.contains("\"ready\":true")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("chromedriver on port {port} not ready within {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request to chromedriver without a body; its status and body.
pub fn http(port: u16, method: &str, path: &str) -> std::io::Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    // Read the head, then exactly Content-Length bytes (or to the end of the stream).
    let (head_end, length) = loop {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no complete response head"));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            break (i + 4, length);
        }
    };
    loop {
        if length.is_some_and(|l| raw.len() - head_end >= l) {
            break;
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body_end = length.map_or(raw.len(), |l| (head_end + l).min(raw.len()));
    Ok((status, String::from_utf8_lossy(&raw[head_end..body_end]).into_owned()))
}
