//! Zero-downtime restart: `SIGUSR2` hands the listening sockets and the live streams to a
//! successor process (a new binary, a new pipeline), and no webhook is refused and no meeting
//! ends on the way.
//!
//! 1. The running host (the predecessor) starts the successor: the same executable path and
//!    arguments, the webhook and admin listening sockets passed as descriptors 3 and 4
//!    (`LISTEN_FDS`, the systemd convention), and one end of a Unix socket pair as its stdin
//!    (`RTMS_HANDOFF=1`).
//! 2. The successor loads and checks its pipeline, compiles its plugins, and serves the
//!    inherited sockets: from then on both processes accept from the same sockets, so a
//!    connection is never refused. It writes one byte on the pair: ready.
//! 3. The predecessor stops accepting, and ends its streams as for a shutdown but without
//!    ending them for the plugins: they get `on-session-end(reload)` (a new instance takes
//!    over), their session state is kept, and the journal keeps every stream's entry
//!    ([`super::journal::JournalWriter::freeze`]). Zoom sees a client that disconnected and
//!    keeps each stream's slot for its grace window. Then the predecessor exits, which closes
//!    the pair.
//! 4. The successor sees the pair close and resumes every journaled stream (Zoom's client
//!    failure scenario): plugins get `on-session-start` with `resumed = true` and their state.
//!
//! A successor that fails (a bad pipeline, a plugin that does not compile, no byte within
//! [`READY_WITHIN`]) changes nothing: the predecessor logs why and keeps serving. Hand-off
//! needs `[runtime] journal_dir`. The same inherited-socket path serves systemd socket
//! activation (`LISTEN_FDS` without `RTMS_HANDOFF`).

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use command_fds::{CommandFdExt, FdMapping};

/// Set to `1` in a successor: its stdin is the socket to its predecessor.
pub const HANDOFF_ENV: &str = "RTMS_HANDOFF";
/// The longest a successor may take to be ready (it compiles every plugin first).
pub const READY_WITHIN: Duration = Duration::from_secs(120);

/// Listening sockets a process was given at start (`LISTEN_FDS`): by a predecessor, or by
/// systemd socket activation. Index 0 is the webhook listener, 1 the admin listener.
#[derive(Debug, Default)]
pub struct Inherited {
    pub webhook: Option<std::net::TcpListener>,
    pub admin: Option<std::net::TcpListener>,
    /// The predecessor, when this process is a successor.
    pub predecessor: Option<Predecessor>,
}

impl Inherited {
    /// Takes what this process inherited. Call it first thing in `main`, before any thread
    /// starts: it reads and clears `LISTEN_FDS` / `LISTEN_PID` from the environment.
    pub fn take() -> Result<Self> {
        let mut fds = listenfd::ListenFd::from_env();
        let mut listener = |i: usize| -> Result<Option<std::net::TcpListener>> {
            let l = fds
                .take_tcp_listener(i)
                .with_context(|| format!("inherited descriptor {} is not a TCP listener", i + 3))?;
            if let Some(l) = &l {
                l.set_nonblocking(true)?;
            }
            Ok(l)
        };
        let webhook = listener(0)?;
        let admin = listener(1)?;
        let predecessor = match std::env::var(HANDOFF_ENV).as_deref() {
            Ok("1") => Some(Predecessor::from_stdin()?),
            _ => None,
        };
        Ok(Self {
            webhook,
            admin,
            predecessor,
        })
    }
}

/// A successor's link to the process handing over to it.
#[derive(Debug)]
pub struct Predecessor {
    link: UnixStream,
}

impl Predecessor {
    fn from_stdin() -> Result<Self> {
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("the hand-off link (stdin) is not open")?;
        Ok(Self {
            link: UnixStream::from(fd),
        })
    }

    /// Tells the predecessor this process serves; returns a future that completes once the
    /// predecessor has released its streams (it exited, closing the link).
    pub fn ready(self) -> Result<impl Future<Output = ()> + Send + 'static> {
        let mut link = self.link;
        link.write_all(b"R")
            .context("cannot tell the predecessor this process is ready")?;
        Ok(async move {
            let waited = tokio::task::spawn_blocking(move || {
                let mut buf = [0u8; 64];
                // Reads until the predecessor exits (end of file) or the link breaks.
                while matches!(link.read(&mut buf), Ok(n) if n > 0) {}
            })
            .await;
            if waited.is_err() {
                tracing::warn!("hand-off: lost the link to the predecessor");
            }
        })
    }
}

/// The listening sockets to pass on, duplicated while the service owns the originals.
#[derive(Debug)]
pub struct Sockets {
    webhook: OwnedFd,
    admin: Option<OwnedFd>,
}

impl Sockets {
    pub fn of(webhook: &impl AsFd, admin: Option<&impl AsFd>) -> std::io::Result<Self> {
        Ok(Self {
            webhook: webhook.as_fd().try_clone_to_owned()?,
            admin: admin.map(|a| a.as_fd().try_clone_to_owned()).transpose()?,
        })
    }
}

/// A started successor that said it is ready; dropping this (or exiting) tells it the
/// streams are released.
#[derive(Debug)]
pub struct Successor {
    pub pid: u32,
    _link: UnixStream,
    _child: Child,
}

/// Starts a successor with the same executable and arguments, gives it `sockets`, and waits
/// (at most [`READY_WITHIN`]) for it to be ready.
pub async fn start_successor(sockets: &Sockets) -> Result<Successor> {
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let (ours, theirs) = UnixStream::pair().context("cannot make the hand-off link")?;
    let mut maps = vec![FdMapping {
        parent_fd: sockets.webhook.try_clone()?,
        child_fd: 3,
    }];
    if let Some(a) = &sockets.admin {
        maps.push(FdMapping {
            parent_fd: a.try_clone()?,
            child_fd: 4,
        });
    }
    let mut cmd = Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env("LISTEN_FDS", maps.len().to_string())
        .env_remove("LISTEN_PID")
        .env(HANDOFF_ENV, "1")
        .stdin(Stdio::from(OwnedFd::from(theirs)));
    cmd.fd_mappings(maps)
        .map_err(|_| anyhow::anyhow!("descriptors 3 and 4 collide"))?;
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start the successor {}", exe.display()))?;
    let pid = child.id();
    tracing::info!(pid, exe = %exe.display(), "hand-off: successor started; waiting until it is ready");
    let mut link = ours.try_clone()?;
    link.set_read_timeout(Some(READY_WITHIN))?;
    let said = tokio::task::spawn_blocking(move || {
        let mut b = [0u8; 1];
        link.read(&mut b).map(|n| (n, b[0]))
    })
    .await?;
    match said {
        Ok((1, b'R')) => Ok(Successor {
            pid,
            _link: ours,
            _child: child,
        }),
        other => {
            let _ = child.kill();
            let status = child.wait().ok();
            bail!(
                "the successor (pid {pid}) did not become ready ({}; exit status {status:?}): its log says why",
                match other {
                    Err(e) => format!("waited {}s: {e}", READY_WITHIN.as_secs()),
                    _ => "it exited".to_owned(),
                }
            )
        }
    }
}
