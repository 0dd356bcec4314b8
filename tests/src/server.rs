//! Private database servers that a fault test starts, kills, pauses and restarts.
//!
//! A [`Server`] runs in its own temporary directory on a spare loopback port, with no
//! persistence settings that slow tests down (`fsync=off`, no Redis snapshots). It is
//! killed (SIGKILL, with every process it forked) when dropped.
//!
//! - [`Server::redis`]: `redis-server --save "" --appendonly no`;
//! - [`Server::postgres`]: `initdb` then `postgres`, run as the `postgres` user because
//!   PostgreSQL refuses to run as root (the temporary directory is handed to that user);
//! - [`Server::mariadb`]: `mariadb-install-db` then `mariadbd --skip-grant-tables`.
//!
//! [`Server::kill`] stops it hard, [`Server::pause`] / [`Server::resume`] send
//! SIGSTOP / SIGCONT to every process of the server (a hung server: connections stay
//! open, nothing answers), and [`Server::start`] starts it again on the same port and
//! directory.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which server a [`Server`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerKind {
    /// `redis-server`.
    Redis,
    /// PostgreSQL (`postgres`, initialised by `initdb`).
    Postgres,
    /// MariaDB (`mariadbd`, initialised by `mariadb-install-db`).
    MariaDb,
}

/// How long a server may take to accept connections after a (re)start.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// A private database server on `127.0.0.1:<port>`, in a temporary directory.
pub struct Server {
    kind: ServerKind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("kind", &self.kind)
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

/// A port no one listens on right now.
fn spare_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The uid and gid of `user`, from `/etc/passwd`.
fn user_ids(user: &str) -> io::Result<(u32, u32)> {
    let passwd = fs::read_to_string("/etc/passwd")?;
    for line in passwd.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&user) && fields.len() > 3 {
            let parse = |s: &str| {
                s.parse::<u32>()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            };
            return Ok((parse(fields[2])?, parse(fields[3])?));
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!("no user {user} in /etc/passwd"),
    ))
}

/// Runs `cmd` to completion, failing with its output when it fails.
fn run(cmd: &mut Command, what: &str) -> io::Result<()> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

/// The parent pid of `pid`, from `/proc/<pid>/stat`.
fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may contain spaces, so split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// `pid` and every process descending from it, parents before children.
fn process_tree(pid: u32) -> Vec<u32> {
    let all: Vec<(u32, u32)> = fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| Some((p, parent_of(p)?)))
        .collect();
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(all.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        i += 1;
    }
    tree
}

/// Sends `signal` (a `kill` name: `STOP`, `CONT`, `KILL`) to each of `pids`.
fn signal(pids: &[u32], signal: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

impl Server {
    /// Starts a private `redis-server` without persistence.
    ///
    /// # Errors
    ///
    /// When `redis-server` cannot be run or does not answer in time.
    pub fn redis() -> io::Result<Self> {
        Self::init(ServerKind::Redis, tempfile::tempdir()?)
    }

    /// Initialises a PostgreSQL cluster (`initdb`, trust authentication, user
    /// `postgres`) and starts it. Needs the `postgres` system user when run as root.
    ///
    /// # Errors
    ///
    /// When `initdb` or `postgres` fail or the server does not answer in time.
    pub fn postgres() -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (uid, gid) = user_ids("postgres")?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        run(
            Command::new("initdb")
                .arg("-D")
                .arg(dir.path().join("data"))
                .args(["-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"])
                .uid(uid)
                .gid(gid),
            "initdb",
        )?;
        Self::init(ServerKind::Postgres, dir)
    }

    /// Initialises a MariaDB data directory (with an empty `test` database) and starts
    /// `mariadbd` with `--skip-grant-tables` (any user, no password).
    ///
    /// # Errors
    ///
    /// When `mariadb-install-db` or `mariadbd` fail or the server does not answer in time.
    pub fn mariadb() -> io::Result<Self> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        run(
            Command::new("mariadb-install-db")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                // Its own tmpdir: installs running at once collide in the shared /tmp.
                .arg(format!("--tmpdir={}", dir.path().display()))
                .args(["--user=root", "--skip-test-db", "--skip-name-resolve"]),
            "mariadb-install-db",
        )?;
        // A database is a directory to MariaDB.
        fs::create_dir(data.join("test"))?;
        Self::init(ServerKind::MariaDb, dir)
    }

    fn init(kind: ServerKind, dir: tempfile::TempDir) -> io::Result<Self> {
        let mut server = Self {
            kind,
            port: spare_port()?,
            dir,
            child: None,
        };
        server.start()?;
        Ok(server)
    }

    /// Which server this is.
    #[must_use]
    pub fn kind(&self) -> ServerKind {
        self.kind
    }

    /// The loopback port it listens on (the same across restarts).
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a store connects with: `redis://127.0.0.1:<port>/`,
    /// `postgres://postgres@127.0.0.1:<port>/postgres` or
    /// `mysql://root@127.0.0.1:<port>/test`.
    #[must_use]
    pub fn url(&self) -> String {
        match self.kind {
            ServerKind::Redis => format!("redis://127.0.0.1:{}/", self.port),
            ServerKind::Postgres => format!("postgres://postgres@127.0.0.1:{}/postgres", self.port),
            ServerKind::MariaDb => format!("mysql://root@127.0.0.1:{}/test", self.port),
        }
    }

    /// The server's log file.
    #[must_use]
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self) -> io::Result<Command> {
        let dir = self.dir.path();
        let port = self.port.to_string();
        let mut cmd = match self.kind {
            ServerKind::Redis => {
                let mut cmd = Command::new("redis-server");
                cmd.args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                    .args(["--appendonly", "no", "--dir"])
                    .arg(dir);
                cmd
            }
            ServerKind::Postgres => {
                let (uid, gid) = user_ids("postgres")?;
                let mut cmd = Command::new("postgres");
                cmd.arg("-D")
                    .arg(dir.join("data"))
                    .args(["-p", &port, "-k"])
                    .arg(dir)
                    .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
                    .uid(uid)
                    .gid(gid);
                cmd
            }
            ServerKind::MariaDb => {
                let mut cmd = Command::new("mariadbd");
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", dir.join("data").display()))
                    .arg(format!("--port={port}"))
                    .arg(format!("--socket={}", dir.join("sock").display()))
                    .arg(format!("--pid-file={}", dir.join("pid").display()))
                    .arg(format!("--tmpdir={}", dir.display()))
                    .args([
                        "--skip-grant-tables",
                        "--user=root",
                        "--bind-address=127.0.0.1",
                    ])
                    .args(["--innodb-buffer-pool-size=16M", "--skip-name-resolve"]);
                cmd
            }
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        Ok(cmd)
    }

    /// Starts the server (again) on its port and directory and waits until it answers.
    /// Does nothing if it runs already.
    ///
    /// # Errors
    ///
    /// When the server cannot be started or does not answer within 30 seconds.
    pub fn start(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        self.child = Some(self.command()?.spawn()?);
        let started = Instant::now();
        loop {
            if self.ready() {
                return Ok(());
            }
            if let Some(child) = &mut self.child
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Err(io::Error::other(format!(
                    "{:?} exited ({status}): {}",
                    self.kind,
                    fs::read_to_string(self.log_path()).unwrap_or_default()
                )));
            }
            if started.elapsed() > READY_WITHIN {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{:?} did not answer on port {}", self.kind, self.port),
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the server accepts and serves connections.
    fn ready(&self) -> bool {
        match self.kind {
            ServerKind::Redis => ping_redis(self.port).unwrap_or(false),
            ServerKind::Postgres => Command::new("pg_isready")
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success()),
            ServerKind::MariaDb => {
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                    && self.dir.path().join("sock").exists()
            }
        }
    }

    /// The pids of the server and every process it forked (PostgreSQL backends...).
    fn pids(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|c| process_tree(c.id()))
            .unwrap_or_default()
    }

    /// Kills the server and every process it forked (SIGKILL), and waits for it. Open
    /// connections are reset; the port is free for [`start`](Self::start).
    pub fn kill(&mut self) {
        // Resume first: a stopped process still dies of SIGKILL, but its children would
        // keep their connections open while stopped.
        let pids = self.pids();
        signal(&pids, "KILL");
        signal(&pids, "CONT");
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        // Forked children are reparented, not reaped by us: wait until they are gone.
        let deadline = Instant::now() + Duration::from_secs(10);
        while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Freezes the server (SIGSTOP to every one of its processes): connections stay
    /// open and connects are still accepted by the kernel, but nothing is answered.
    pub fn pause(&self) {
        // The parent first, so it forks no process that would escape the stop.
        for pid in self.pids() {
            signal(&[pid], "STOP");
        }
    }

    /// Unfreezes a [`pause`](Self::pause)d server.
    pub fn resume(&self) {
        signal(&self.pids(), "CONT");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Sends `PING` on a fresh connection; true on `+PONG`.
fn ping_redis(port: u16) -> io::Result<bool> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    conn.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 7];
    conn.read_exact(&mut buf)?;
    Ok(&buf == b"+PONG\r\n")
}
