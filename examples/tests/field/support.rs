//! Starting the real programs the field tests put between a client and its hub (HAProxy,
//! tinyproxy), on free ports, and stopping them however a test ends.
//!
//! A program that is not installed skips its test with a message saying how to install it;
//! under `CI=true` it fails the test instead: CI never skips a field test.

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use signalr_client::{HubConnection, HubConnectionBuilder, protocol::TransportKind};

/// The program `name` (from Debian's package `package`), or `None` when a local run should
/// skip. Panics under `CI=true` when it is missing.
pub(crate) fn program(name: &str, package: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    // Debian puts daemons in sbin, which is not always on a user's PATH.
    let found = std::env::split_paths(&dirs)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into(), "/sbin".into()])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    if found.is_none() {
        let hint =
            format!("{name} is not installed: `apt-get install -y {package}` (Debian's package)");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{hint}; under CI=true a field test may not be skipped"
        );
        eprintln!("skipping: {hint}");
    }
    found
}

/// A free TCP port on 127.0.0.1, for a program that cannot be told to pick one itself.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A program started by a test: killed when dropped, whatever happens to the test.
pub(crate) struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    /// Starts `program` with `args`, its stdout and stderr going to `log`, and waits until it
    /// accepts connections on `port`.
    pub(crate) async fn start(program: &Path, args: &[&str], log: PathBuf, port: u16) -> Self {
        let out = std::fs::File::create(&log).expect("create the log");
        let err = out.try_clone().expect("clone the log");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        let mut running = Self {
            name: program.display().to_string(),
            child,
            log,
        };
        running.wait_for(port).await;
        running
    }

    async fn wait_for(&mut self, port: u16) {
        for _ in 0..200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited ({status}) before listening:\n{}",
                    self.name,
                    self.log_text()
                );
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "{} did not listen on {port} within 5 s:\n{}",
            self.name,
            self.log_text()
        );
    }

    /// What the program has logged so far.
    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills it now, as a crash would (SIGKILL).
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A HAProxy configuration, written piece by piece.
pub(crate) struct HaproxyConfig {
    text: String,
}

impl HaproxyConfig {
    pub(crate) fn new() -> Self {
        // Logs to stdout (the test's log file); generous timeouts: a long poll is held 90 s,
        // a WebSocket is a tunnel.
        let text = "global\n    maxconn 2000\n    log stdout format raw local0\n\
                    defaults\n    mode http\n    log global\n    option httplog\n\
                    timeout connect 5s\n    timeout client 120s\n    timeout server 120s\n\
                    timeout tunnel 1h\n"
            .to_owned();
        Self { text }
    }

    /// A frontend on `port` (TLS with `tls`) that sends everything to `backend`.
    pub(crate) fn frontend(mut self, port: u16, tls: Option<&str>, backend: &str) -> Self {
        let _ = write!(
            self.text,
            "frontend f{port}\n    bind 127.0.0.1:{port}{}\n    default_backend {backend}\n",
            tls.map(|t| format!(" {t}")).unwrap_or_default()
        );
        self
    }

    /// A raw line in the last section.
    pub(crate) fn line(mut self, line: &str) -> Self {
        let _ = writeln!(self.text, "    {line}");
        self
    }

    /// A backend over `servers` with round-robin balancing; with `affinity`, cookie-based sticky
    /// sessions (`cookie SRV insert indirect nocache`, the usual set-up for SignalR).
    pub(crate) fn backend(mut self, name: &str, servers: &[SocketAddr], affinity: bool) -> Self {
        let _ = writeln!(self.text, "backend {name}\n    balance roundrobin");
        if affinity {
            self.text
                .push_str("    cookie SRV insert indirect nocache\n");
        }
        for (i, addr) in servers.iter().enumerate() {
            let cookie = if affinity {
                format!(" cookie s{i}")
            } else {
                String::new()
            };
            let _ = writeln!(self.text, "    server s{i} {addr}{cookie}");
        }
        self
    }

    /// Starts HAProxy with this configuration; `ports` are the frontends to wait for.
    pub(crate) async fn start(self, haproxy: &Path, dir: &Path, ports: &[u16]) -> Running {
        let cfg = dir.join(format!("haproxy-{}.cfg", ports[0]));
        std::fs::write(&cfg, &self.text).expect("write the configuration");
        let cfg = cfg.display().to_string();
        let running = Running::start(
            haproxy,
            &["-db", "-f", &cfg],
            dir.join(format!("haproxy-{}.log", ports[0])),
            ports[0],
        )
        .await;
        for &port in &ports[1..] {
            tokio::time::timeout(Duration::from_secs(5), async {
                while tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .is_err()
                {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
            })
            .await
            .expect("the other frontends listen");
        }
        running
    }
}

/// Starts tinyproxy on a free port; `extra` lines go into its configuration (`BasicAuth u p`).
pub(crate) async fn tinyproxy(tinyproxy: &Path, dir: &Path, extra: &[&str]) -> (Running, u16) {
    let port = free_port();
    let log = dir.join(format!("tinyproxy-{port}.log"));
    // No ConnectPort line: CONNECT is allowed to every port. No Allow line: every client.
    let mut conf = format!(
        "Port {port}\nListen 127.0.0.1\nTimeout 600\nLogFile \"{}\"\nLogLevel Connect\nMaxClients 200\n",
        log.display()
    );
    for line in extra {
        conf.push_str(line);
        conf.push('\n');
    }
    let path = dir.join(format!("tinyproxy-{port}.conf"));
    std::fs::write(&path, conf).expect("write the configuration");
    let path = path.display().to_string();
    let mut running = Running::start(
        tinyproxy,
        &["-d", "-c", &path],
        dir.join(format!("tinyproxy-{port}.out")),
        port,
    )
    .await;
    // Its own log is the one requests go to.
    running.log = log;
    (running, port)
}

/// The transport × protocol pairs every client supports (Server-Sent Events are text only).
pub(crate) const PAIRS: [(TransportKind, bool); 5] = [
    (TransportKind::WebSockets, false),
    (TransportKind::WebSockets, true),
    (TransportKind::ServerSentEvents, false),
    (TransportKind::LongPolling, false),
    (TransportKind::LongPolling, true),
];

/// A builder for `url` restricted to `transport`, with MessagePack when `messagepack`.
pub(crate) fn builder(
    url: &str,
    transport: TransportKind,
    messagepack: bool,
) -> HubConnectionBuilder {
    let builder = HubConnectionBuilder::new(url).with_transports([transport]);
    if messagepack {
        builder.with_messagepack()
    } else {
        builder
    }
}

/// Runs the whole hub contract on `conn`; panics with every failed step.
pub(crate) async fn contract(conn: &HubConnection, what: &str) {
    let results = examples::contract::run(conn).await;
    let failed: Vec<_> = results
        .iter()
        .filter(|(_, step)| !matches!(step, examples::contract::Step::Passed))
        .collect();
    assert!(failed.is_empty(), "{what}: {failed:?}");
}

/// The instance a connection is on.
pub(crate) async fn server_name(conn: &HubConnection) -> String {
    conn.invoke("GetServerName", ())
        .await
        .expect("GetServerName")
}

/// Runs the `interop_client` binary with `args` and `env`; its exit code and stdout.
pub(crate) async fn interop_client(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_interop_client"));
    command.args(args).kill_on_drop(true);
    // A proxy in the test's own environment must not change what is measured.
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let out = tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("interop_client finished")
        .expect("interop_client ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
